"""Colour images that need no download: scikit-image's bundled photographs, the Noto colour emoji
font, and a user's folder of photographs, as uint8 RGB tensors.

Registered generation datasets (kind ``image``, no labels):

``photos``  ``data.options.crops`` random square crops (default 2,000 train / 500 test) of side
            ``data.resolution`` (default 64) from the photographs shipped inside scikit-image's
            wheel. Whole photographs are split, never crops: test = coffee and rocket.
``emoji``   every colour glyph of Debian's ``fonts-noto-color-emoji`` (about 3,900 at version
            2.042: faces, objects, flags, skin tones, ZWJ sequences) on white, at
            ``data.resolution`` (default 64); ``data.root`` may name another NotoColorEmoji.ttf.

Both are fixed data: the crops and the emoji split are drawn from constant seeds, never from the
run's seed, so every run trains and is scored on the same images.

The helpers :func:`load_photos`, :func:`load_emoji`, :func:`load_folder_photos` and
:func:`random_crops` are for tasks that build their own inputs from colour photographs
(colourisation, super-resolution, inpainting).
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from ..utils import atomic_write_bytes, cache_dir, sha256_file
from .base import DATASET_OPTIONS, DATASETS, Dataset, fit_resolution
from .images import as_mode, list_images

SPLITS = ("train", "test")

# ---------------------------------------------------------------------------------------------
# scikit-image's photographs
# ---------------------------------------------------------------------------------------------

#: The natural colour photographs inside scikit-image's wheel (skimage/data), by split. Whole images
#: are held out; the stereo pair motorcycle_left/right stays on one side, so no test photo has a
#: near-copy in training.
SKIMAGE_PHOTOS = {
    "train": ("astronaut.png", "chelsea.png", "hubble_deep_field.jpg", "ihc.png",
              "motorcycle_left.png", "motorcycle_right.png", "retina.jpg"),
    "test": ("coffee.png", "rocket.jpg"),
}
#: Seeds of the generators that draw the ``photos`` crops, one per split: constants, so the crops
#: are the same data in every run and process (not the run's seed).
PHOTO_CROP_SEEDS = {"train": 20_251, "test": 20_252}
PHOTO_CROPS_DEFAULT = {"train": 2000, "test": 500}


def _check_split(split: str, name: str) -> None:
    if split not in SPLITS:
        raise DataError(f"{name}: no split {split!r}; the splits are train and test")


def skimage_data_dir() -> Path:
    """The ``data`` folder inside the installed scikit-image package (its bundled images)."""
    try:
        import skimage
    except ImportError:
        raise DataError("photos: needs scikit-image (`pip install scikit-image`), which ships the "
                        "photographs") from None
    return Path(skimage.__file__).parent / "data"


def photo_files(split: str) -> List[Path]:
    """Paths of the scikit-image photographs of ``split`` (train: 7, test: coffee and rocket).

    Only files inside the installed wheel are used; nothing is downloaded. A missing one is a
    DataError naming it.
    """
    _check_split(split, "photos")
    root = skimage_data_dir()
    paths = [root / name for name in SKIMAGE_PHOTOS[split]]
    for p in paths:
        if not p.is_file():
            raise DataError(f"photos: {p} is missing from scikit-image's data folder; reinstall scikit-image "
                            "(`pip install --force-reinstall scikit-image`)")
    return paths


def _chw(im) -> torch.Tensor:
    """An RGB Pillow image as uint8 (3, H, W)."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy())


def load_photos(split: str) -> List[Tuple[str, torch.Tensor]]:
    """The scikit-image photographs of ``split`` at full size: (file name, uint8 (3, H, W)) pairs,
    in :data:`SKIMAGE_PHOTOS` order (e.g. ``("coffee.png", (3, 400, 600))``)."""
    from PIL import Image

    out = []
    for p in photo_files(split):
        try:
            with Image.open(p) as im:
                im.load()
                out.append((p.name, _chw(as_mode(im, "RGB"))))
        except OSError as e:
            raise DataError(f"photos: cannot read {p} ({e}); reinstall scikit-image "
                            "(`pip install --force-reinstall scikit-image`)") from None
    return out


# ---------------------------------------------------------------------------------------------
# Noto colour emoji
# ---------------------------------------------------------------------------------------------

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")  # Debian's fonts-noto-color-emoji
EMOJI_SPLIT_SEED = 1_000_003   # permutes the sorted glyph names once; the first 10 % are the test split
EMOJI_CACHE_VERSION = 1        # bump when the way glyphs are rendered changes (invalidates the cache)


def emoji_font(root: Optional[Union[str, Path]] = None) -> Path:
    """The colour emoji font: ``root`` (the .ttf itself, or a folder holding NotoColorEmoji.ttf,
    searched recursively), or Debian's default path when ``root`` is None."""
    path = EMOJI_FONT if root is None else Path(root).expanduser()
    if path.is_dir():
        found = sorted(path.rglob(EMOJI_FONT.name))
        path = found[0] if found else path / EMOJI_FONT.name
    if not path.is_file():
        raise DataError(f"emoji: no colour emoji font at {path}; install Debian's fonts-noto-color-emoji "
                        "(apt-get install fonts-noto-color-emoji) or set data.root to a NotoColorEmoji.ttf")
    return path


def _render_glyph(png: bytes, size: int):
    """One CBDT bitmap (PNG bytes, ~136x128 RGBA or palette) as uint8 (size, size, 3) on white, or
    None when it is fully transparent. Padded with white to a centred square before resizing, so a
    glyph keeps its aspect ratio; LANCZOS antialiases the downscale."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        im.load()
        rgba = im.convert("RGBA")
    if rgba.getextrema()[3][1] == 0:
        return None
    w, h = rgba.size
    side = max(w, h)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(rgba, ((side - w) // 2, (side - h) // 2))
    square = square.convert("RGB")
    if side != size:
        square = square.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(square, dtype=np.uint8)


def _unreadable_font(font: Path, e: Exception) -> DataError:
    return DataError(f"emoji: cannot read the font {font} ({type(e).__name__}: {e}); "
                     "reinstall fonts-noto-color-emoji or point data.root at a NotoColorEmoji.ttf")


def _decode_emoji(font: Path, size: int) -> Tuple[List[str], torch.Tensor]:
    """(glyph names, uint8 (N, 3, size, size)) of every non-empty bitmap of the font's largest
    CBDT strike, sorted by glyph name."""
    from fontTools.ttLib import TTFont

    try:
        f = open(font, "rb")  # ours to close: fontTools leaves its own open when it fails on a damaged file
    except OSError as e:
        raise _unreadable_font(font, e) from None
    with f:
        try:
            tt = TTFont(f, lazy=True)  # lazy: tables are read from f as they are used, below
        except Exception as e:  # fontTools raises TTLibError, struct.error, AssertionError on a damaged file
            raise _unreadable_font(font, e) from None
        names, images = _cbdt_images(tt, font, size)
    if not images:
        raise DataError(f"emoji: {font} holds no colour bitmaps; use Debian's fonts-noto-color-emoji")
    return names, torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())


def _cbdt_images(tt, font: Path, size: int) -> Tuple[List[str], List[np.ndarray]]:
    """The glyph names and (size, size, 3) images of ``tt``'s largest CBDT strike (see :func:`_decode_emoji`)."""
    try:
        has_cbdt = "CBDT" in tt
    except Exception as e:
        raise _unreadable_font(font, e) from None
    if not has_cbdt:
        raise DataError(f"emoji: {font} has no CBDT colour bitmaps (a COLR/SVG or outline font?); use Debian's "
                        "fonts-noto-color-emoji NotoColorEmoji.ttf")
    try:
        strikes = tt["CBDT"].strikeData
        ppems = [s.bitmapSizeTable.ppemY for s in tt["CBLC"].strikes]
        glyphs = strikes[int(np.argmax(ppems))]   # the largest strike: the sharpest bitmaps
        names, images = [], []
        for name in sorted(glyphs):
            png = getattr(glyphs[name], "imageData", None)
            if not png:
                continue
            img = _render_glyph(png, size)
            if img is not None:
                names.append(name)
                images.append(img)
    except Exception as e:
        raise DataError(f"emoji: cannot decode the colour bitmaps of {font} ({type(e).__name__}: {e}); "
                        "reinstall fonts-noto-color-emoji") from None
    return names, images


def _emoji_cache_path(font: Path, size: int) -> Path:
    key = hashlib.sha256(f"v{EMOJI_CACHE_VERSION}\0{sha256_file(font)}".encode()).hexdigest()[:16]
    return cache_dir() / "data" / f"emoji-{size}-{key}.safetensors"


def emoji_glyphs(size: int = 64, root: Optional[Union[str, Path]] = None) -> Tuple[List[str], torch.Tensor]:
    """Every glyph of the font: (sorted glyph names, uint8 (N, 3, size, size)).

    Decoded once per font (keyed by its SHA-256) and size, about 2 s for 3,926 glyphs at 64 px on one
    core, then read from ``<cache>/data/emoji-<size>-<key>.safetensors`` (written atomically; a damaged
    cache file is decoded again).
    """
    from safetensors import safe_open
    from safetensors.torch import save

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"emoji: size must be a positive int (the side of the square glyphs), got {size!r}")
    font = emoji_font(root)
    path = _emoji_cache_path(font, size)
    if path.exists():
        try:
            with safe_open(str(path), framework="pt") as f:
                names = json.loads(f.metadata()["names"])
                x = f.get_tensor("x")
            if x.dtype == torch.uint8 and tuple(x.shape) == (len(names), 3, size, size):
                return names, x
        except Exception:  # a damaged or foreign cache file: decode again and overwrite it
            pass
    names, x = _decode_emoji(font, size)
    atomic_write_bytes(path, save({"x": x}, metadata={"names": json.dumps(names), "font": str(font)}))
    return names, x


def emoji_split(names: List[str], split: str) -> torch.Tensor:
    """int64 indices into ``names`` (sorted glyph names) of ``split``: a permutation from the constant
    :data:`EMOJI_SPLIT_SEED`; its first 10 % (rounded down) are the test split. Indices are in
    permutation order, so the first N of a split are a fair sample of it (``data.limit``)."""
    _check_split(split, "emoji")
    perm = torch.randperm(len(names), generator=torch.Generator().manual_seed(EMOJI_SPLIT_SEED))
    n_test = len(names) // 10
    return perm[:n_test] if split == "test" else perm[n_test:]


def load_emoji(split: str, size: int = 64, root: Optional[Union[str, Path]] = None) -> torch.Tensor:
    """The colour emoji of ``split`` as uint8 (N, 3, size, size), composited on white and padded to
    squares. ``root``: the font file or a folder holding NotoColorEmoji.ttf; None = Debian's path.
    Test: a fixed 10 % of the glyphs (:func:`emoji_split`), train: the rest."""
    _check_split(split, "emoji")
    names, x = emoji_glyphs(size, root)
    return x[emoji_split(names, split)]


# ---------------------------------------------------------------------------------------------
# A folder of colour photographs
# ---------------------------------------------------------------------------------------------

FOLDER_TEST_FRACTION = 0.1
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _path_fraction(rel: str) -> float:
    """A fixed number in [0, 1) from a relative path (its SHA-256): the file's place in the split."""
    return int(hashlib.sha256(rel.encode("utf-8")).hexdigest()[:15], 16) / 16 ** 15


def folder_split(rels: List[str]) -> List[bool]:
    """Whether each relative path is held out for the test split.

    A file is a test file when the hash of its relative path (:func:`_path_fraction`) is below 0.1,
    so adding or removing other files never moves it. Two fallbacks keep both splits usable: with
    >= 2 files and none hashed into test, the file of smallest hash is test; if every file hashed into
    test, the one of largest hash is train (only these fallback files can move when files are added).
    """
    fr = [_path_fraction(r) for r in rels]
    test = [f < FOLDER_TEST_FRACTION for f in fr]
    if len(rels) >= 2 and not any(test):
        test[int(np.argmin(fr))] = True
    if rels and all(test):
        test[int(np.argmax(fr))] = False
    return test


def _read_colour_photo(path: Path, min_size: int) -> torch.Tensor:
    """uint8 (3, H, W) of one photograph, upright by its EXIF orientation (:func:`as_mode`); DataError
    for an unreadable, grey or too small file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            stored_mode, rgb = im.mode, as_mode(im, "RGB")
    except (OSError, Image.DecompressionBombError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read this image ({type(e).__name__}: {e}); remove or replace it") from None
    grey = f"{path}: a grey image in a colour photo folder; colour tasks need RGB photos — remove it or convert it"
    if stored_mode in _GREY_MODES:  # a grey palette image ("P") is caught below, by its identical channels
        raise DataError(grey)
    x = _chw(rgb)
    if bool((x[0] == x[1]).all() and (x[1] == x[2]).all()):
        raise DataError(grey)
    h, w = x.shape[1:]
    if min(h, w) < min_size:
        raise DataError(f"{path}: {w}x{h} pixels, smaller than the {min_size} px side these photos need; "
                        "remove it or use a larger image")
    return x


def load_folder_photos(root: Union[str, Path], split: str, min_size: int = 0) -> List[Tuple[str, torch.Tensor]]:
    """Every PNG/JPEG/BMP/WEBP photograph under ``root`` (recursive) of ``split``, at full size:
    (path relative to root, POSIX style, uint8 (3, H, W)) pairs, sorted by path.

    The split is a fixed ~10 % held out by a hash of each relative path (:func:`folder_split`).
    Only the split's files are decoded; each must be a readable colour image (a grey one is an error:
    colour tasks learn nothing from it) whose short side is at least ``min_size`` pixels.
    """
    _check_split(split, "folder photos")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; point data.root at a folder of PNG/JPEG photographs")
    files = list_images(root)
    if not files:
        raise DataError(f"{root}: no PNG/JPEG/BMP/WEBP images in it or its sub-folders")
    rels = [p.relative_to(root).as_posix() for p in files]
    chosen = [(r, p) for r, p, t in zip(rels, files, folder_split(rels)) if t == (split == "test")]
    if not chosen:  # only a folder with one image has no test file
        raise DataError(f"{root}: holds one image, which is the train split; add at least one more for a test split")
    return [(r, _read_colour_photo(p, min_size)) for r, p in chosen]


# ---------------------------------------------------------------------------------------------
# Random crops
# ---------------------------------------------------------------------------------------------

def _upscale_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (C, H, W) resized (bicubic, antialiased) so that its short side is ``size``."""
    h, w = x.shape[1:]
    s = size / min(h, w)
    out_hw = (max(size, round(h * s)), max(size, round(w * s)))
    y = F.interpolate(x[None].float(), size=out_hw, mode="bicubic", antialias=True, align_corners=False)
    return y[0].round().clamp(0, 255).to(torch.uint8)  # bicubic overshoots at edges: clamp to the uint8 range


def random_crops(images: List[torch.Tensor], n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random square crops of side ``size`` from ``images`` (uint8 (C, H, W) each, any sizes, the
    same C): uint8 (n, C, size, size).

    Each crop picks an image uniformly, then a uniform top-left corner among all positions where the
    crop fits. An image whose short side is below ``size`` is first upscaled (bicubic) so that it
    equals ``size``. The same generator state gives the same crops, and the first m of n crops are
    the m crops drawn alone; the generator is advanced.
    """
    if not images:
        raise ValueError("random_crops: no images to crop")
    if n < 0 or size < 1:
        raise ValueError(f"random_crops: need n >= 0 and size >= 1, got n={n}, size={size}")
    if len({x.shape[0] for x in images}) != 1:
        raise ValueError(f"random_crops: images have different channel counts {sorted({x.shape[0] for x in images})}")
    images = [_upscale_short_side(x, size) if min(x.shape[1:]) < size else x for x in images]
    # three float64 uniforms per crop, drawn in crop order (so the first m of n crops are the m crops
    # asked for alone): image, row, column; floor(u * count) is uniform over 0..count-1
    u = torch.rand((n, 3), generator=generator, dtype=torch.float64)
    out = torch.empty((n, images[0].shape[0], size, size), dtype=torch.uint8)
    for k in range(n):
        x = images[min(int(u[k, 0] * len(images)), len(images) - 1)]
        rows, cols = x.shape[1] - size + 1, x.shape[2] - size + 1
        top, left = min(int(u[k, 1] * rows), rows - 1), min(int(u[k, 2] * cols), cols - 1)
        out[k] = x[:, top:top + size, left:left + size]
    return out


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------

def check_options(name: str, options: dict) -> None:
    """Config-time check of ``data.options``: photos takes ``crops`` (a positive int), emoji nothing."""
    allowed = ("crops",) if name == "photos" else ()
    for k in options:
        if k not in allowed:
            raise ConfigError(f"data.options.{k}: unknown key for {name}; allowed: {', '.join(allowed) or 'none'}")
    crops = options.get("crops")
    if "crops" in options and (isinstance(crops, bool) or not isinstance(crops, int) or crops < 1):
        raise ConfigError(f"data.options.crops: invalid value {crops!r}; allowed: a positive int (crops per split)")


DATASET_OPTIONS["photos"] = DATASET_OPTIONS["emoji"] = check_options


def _side(cfg, name: str) -> int:
    """``data.resolution`` as one side (default 64); these sources make square images only."""
    res = 64 if cfg.resolution is None else cfg.resolution
    if isinstance(res, bool) or not isinstance(res, int) or res < 1:
        raise ConfigError(f"data.resolution: {name} makes square images; give one positive side (e.g. 64), "
                          f"got {res!r}")
    return res


def _finish(cfg, name: str, x: torch.Tensor, info: dict) -> Dataset:
    """Apply data.channels (3 or None: as is; 1: luma) and data.limit (first N)."""
    if cfg.channels not in (None, 1, 3):
        raise ConfigError(f"data.channels: {name} is colour; use 3 (or null), or 1 for grey, got {cfg.channels!r}")
    if cfg.limit is not None:
        x = x[: cfg.limit]
    if cfg.channels == 1:
        x = fit_resolution(x, None, 1)
    return Dataset(name=name, x=x.contiguous(), y=None, kind="image", info=info)


@DATASETS.register("photos")
def photos(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """Random crops of scikit-image's bundled photographs (train: 7 photographs, test: coffee and
    rocket). ``seed`` is unused: the crops come from :data:`PHOTO_CROP_SEEDS`, fixed per split."""
    check_options("photos", cfg.options)
    if cfg.root:
        raise ConfigError("photos: uses scikit-image's bundled photographs; use the folder dataset for your own "
                          "(remove data.root)")
    _check_split(split, "photos")
    side = _side(cfg, "photos")
    n = cfg.options.get("crops", PHOTO_CROPS_DEFAULT[split])
    named = load_photos(split)
    gen = torch.Generator().manual_seed(PHOTO_CROP_SEEDS[split])
    x = random_crops([im for _, im in named], n, side, gen)
    return _finish(cfg, "photos", x, {"source": "scikit-image photographs: " + ", ".join(nm for nm, _ in named),
                                      "split": split, "crops": n})


@DATASETS.register("emoji")
def emoji(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """The Noto colour emoji of ``split`` on white (test: a fixed 10 % of the glyphs)."""
    check_options("emoji", cfg.options)
    _check_split(split, "emoji")
    side = _side(cfg, "emoji")
    font = emoji_font(cfg.root)
    x = load_emoji(split, side, font)
    return _finish(cfg, "emoji", x, {"source": str(font), "split": split})
