"""MNIST-family datasets from IDX files (LeCun's format), gzipped or raw."""
from __future__ import annotations

import functools
import gzip
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import DATASETS, Dataset

# Where Debian's dataset-fashion-mnist package puts the files.
FASHION_MNIST_DEFAULT = "/usr/share/datasets/fashion-mnist"
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (magic 0x0000TTDD: type code TT, DD dimensions, big-endian sizes).

    Parsed arrays are kept per (path, size, mtime), so a process that builds several runs
    or evaluations decompresses Fashion-MNIST once. The result is read-only.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from None
    return _read_idx_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(name: str, size: int, mtime_ns: int) -> np.ndarray:
    path = Path(name)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: a gzip whose compressed bytes are damaged
        raise DataError(f"{path}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX file (its header needs {4 + 4 * ndim} bytes, it has {len(raw)})")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_DTYPES[raw[2]])
    count = int(np.prod(dims))
    body = raw[4 + 4 * ndim:]
    if len(body) < count * dtype.itemsize:
        raise DataError(f"{path}: truncated IDX file ({len(body)} bytes for shape {dims})")
    return np.frombuffer(body, dtype=dtype, count=count).reshape(dims)


def find_idx(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(root / (stem + ".gz"))


CLASSES = 10  # MNIST's digits, Fashion-MNIST's clothes

#: Fashion-MNIST's class names, label 0 to 9, as its authors give them (Xiao et al. 2017, Table 1):
#: ``gankit sample --class Sneaker``, ``data.exclude_classes: [Sneaker]``, the served page's menu.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def load_idx_dataset(name: str, root: Path, split: str, hint: str, names=()) -> Dataset:
    if split not in _PREFIX:
        raise DataError(f"{name}: unknown split {split!r}; use train or test")
    prefix = _PREFIX[split]
    try:
        images = read_idx(find_idx(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(find_idx(root, f"{prefix}-labels-idx1-ubyte"))
    except FileNotFoundError as e:
        raise DataError(f"{name}: no IDX file at {e.args[0]} (nor unzipped); {hint}") from None
    if images.ndim != 3 or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{name}: {root} holds images {images.shape} and labels {labels.shape}; the images file "
                        "must be (N, H, W) and the labels file (N,): are two files swapped or mislabelled?")
    if images.dtype != np.uint8:
        raise DataError(f"{name}: {root}'s {prefix} images are {images.dtype}; MNIST-style images are uint8 (0-255)")
    classes = max(CLASSES, int(labels.max()) + 1 if labels.size else 0)  # 10 in every split, whatever one holds
    if classes > CLASSES:  # EMNIST's letters in IDX files, or a stray value: said, not silently a wider model
        print(f"note: {name}: {root}'s {prefix} labels go up to {classes - 1}: {classes} classes, not "
              f"{name}'s {CLASSES}", file=sys.stderr)
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, 28, 28) uint8, a private copy
    y = torch.from_numpy(labels.astype(np.int64))
    info = {"root": str(root), "split": split}
    if names and classes == len(names):  # the classes' names, unless the files hold another set of labels
        info["classes"] = list(names)
    return Dataset(name=name, x=x, y=y, kind="image", num_classes=classes, info=info)


@DATASETS.register("fashion-mnist")
def fashion_mnist(cfg, split: str = "train", seed: int = 0) -> Dataset:
    root = Path(cfg.root or FASHION_MNIST_DEFAULT)
    return load_idx_dataset("fashion-mnist", root, split,
                            "install it with `apt-get install dataset-fashion-mnist` or set data.root "
                            "to a folder with the four IDX files", names=FASHION_MNIST_CLASSES)


@DATASETS.register("mnist")
def mnist(cfg, split: str = "train", seed: int = 0) -> Dataset:
    if not cfg.root:
        raise DataError("mnist: set data.root to a folder with train-images-idx3-ubyte(.gz) and the other "
                        "three IDX files (gankit never downloads), or use data.name=mnist-5k")
    return load_idx_dataset("mnist", Path(cfg.root), split, "set data.root to a folder with the four IDX files")
