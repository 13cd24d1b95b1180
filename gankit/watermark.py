"""An invisible, key-dependent watermark for the images gankit writes (``gankit sample --watermark KEY``)
and its detector (``gankit detect FILE --key KEY``).

Method (spread spectrum in the low-frequency band, after Cox et al. 1997): the key seeds complex
amplitudes ``a_kl`` (|a| ∝ |f|, random phase) for every spatial frequency (k, l) with
``F_LO <= |(k, l)| <= band_top(side)`` cycles per image; the pattern
``w(u, v) = Re sum a_kl exp(2πi(k u + l v))`` is a smooth random field in image coordinates
u, v in [0, 1), so it can be drawn at any resolution. It is added to the luminance with the strength
that gives a chosen PSNR (default :data:`PSNR_DB`). Coarse frequencies are what JPEG and a downscale
by 0.5 keep, and a pattern drawn relative to the image's extent lines up again after a resize.

Detection: the suspect's luminance, its local mean removed and divided by its local contrast (flat
regions, where the pattern is all there is, weigh most), Hann-windowed, is projected on the same
complex exponentials; the alignment is the normalised correlation of those coefficients, whitened
by |f| (images' spectra fall as about 1/|f|), with the key's. A cropped copy is searched for: the
suspect may show a fraction ``s`` in :data:`CROP_SCALES` of the original at any offset (a phase
shift per frequency, so every offset on a 1 % grid is one matrix product); the alignment is the
best over those hypotheses, for the band of the suspect's size and of twice it (a downscaled copy).
The score subtracts the alignment of the left-right mirror image (which keeps what the image's
layout contributes and loses the pattern's). The threshold per size class is the quantile of the
score on real unmarked images for the false-positive rate :data:`FALSE_POSITIVE_RATE`. A file of
several images (a grid, an NPZ) is judged by how many of them pass, against the binomial chance of
that many false positives (``python benchmarks/watermark.py``; docs/provenance.md has the measured
rates).
"""
from __future__ import annotations

import functools
import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .errors import GankitError, option

METHOD = "gankit-ss1"    # recorded in the provenance of watermarked files
# Detector's local normalisation (_flatten): blur scales as fractions of the shorter side, and the
# contrast floor in 8-bit levels.
BLUR, VAR_BLUR, NOISE_FLOOR = 1 / 12, 1 / 20, 4.0
F_LO, F_MAX = 2, 64      # band of the pattern, cycles per image; its top depends on the size (band_top)
PSNR_DB = 38.0           # strength: PSNR of the watermarked image against the original (8-bit scale)
CROP_SCALES = (1.0, 0.95, 0.9, 0.85)  # fractions of the original's side a suspect may show
OFFSET_STEP = 0.01       # offset grid of the crop search, as a fraction of the original's side
FALSE_POSITIVE_RATE = 0.01
# The score's distribution on real unmarked images depends on their size (the band holds more
# frequencies in a larger image): per size class (images whose shorter side is below the bound, px),
# the threshold for one image is the 1 - FALSE_POSITIVE_RATE quantile of the score of real unmarked
# images under 10 keys, measured by ``python benchmarks/watermark.py --calibrate`` on images and keys
# the benchmark's rates are not measured on (Fashion-MNIST training images, photograph crops from
# other seeds).
THRESHOLDS = ((24, 0.200), (46, 0.167), (96, 0.076), (None, 0.038))


def _seed(key: str) -> int:
    if not isinstance(key, str) or not key:
        raise GankitError("--key: give a non-empty watermark key")
    return int.from_bytes(hashlib.sha256(("gankit-watermark:" + key).encode("utf-8")).digest()[:8], "little")


def band_top(side: int) -> int:
    """Highest frequency (cycles per image) of the pattern for an image whose shorter side is
    ``side`` px: a fifth of it (so a copy downscaled by 0.5 keeps the band below its Nyquist
    frequency, side / 4), between :data:`F_LO` + 4 and :data:`F_MAX`."""
    return int(min(F_MAX, max(F_LO + 4, side // 5)))


@functools.lru_cache(maxsize=1)
def _frequencies() -> tuple[np.ndarray, np.ndarray]:
    """Integer (k, l) with F_LO <= |(k, l)| <= F_MAX, one of each ±pair (l > 0, or l == 0 and k > 0),
    in a fixed order: the key's amplitudes of a frequency do not depend on the band used."""
    ks, ls = [], []
    for k in range(-F_MAX, F_MAX + 1):
        for l in range(0, F_MAX + 1):
            if l == 0 and k <= 0:
                continue
            if F_LO <= math.hypot(k, l) <= F_MAX:
                ks.append(k)
                ls.append(l)
    return np.array(ks), np.array(ls)


def amplitudes(key: str, top: int = F_MAX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, l, a): the frequencies up to ``top`` cycles per image and the key's complex amplitudes
    there (|a| ∝ |f|: more energy where images have less, random phase)."""
    k, l = _frequencies()
    rng = np.random.default_rng(_seed(key))
    a = (rng.standard_normal(len(k)) + 1j * rng.standard_normal(len(k))) * np.hypot(k, l)
    keep = np.hypot(k, l) <= top
    return k[keep], l[keep], a[keep]


def _exp(freqs: np.ndarray, coords: np.ndarray) -> np.ndarray:
    return np.exp(2j * np.pi * np.outer(coords, freqs))  # (n coords, n freqs)


def pattern(key: str, h: int, w: int) -> np.ndarray:
    """The key's pattern drawn at h × w pixels (whole image, band up to :func:`band_top`),
    zero mean, unit RMS, float64."""
    k, l, a = amplitudes(key, band_top(min(h, w)))
    u, v = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    p = np.real(np.einsum("ik,k,jk->ij", _exp(k, u), a, _exp(l, v)))
    p -= p.mean()
    return p / (p.std() + 1e-12)


def _add(x: np.ndarray, p: np.ndarray, peak: float, psnr_db: float) -> np.ndarray:
    """x + s·p clipped to [0, peak] (p broadcast over channels), with s chosen so that the PSNR of the
    result against x is ``psnr_db``: what clipping removes (black backgrounds) is given back as
    strength elsewhere. x: (H, W, C) float64 in [0, peak]; p: (H, W), unit RMS."""
    target = (peak * 10 ** (-psnr_db / 20)) ** 2   # mean squared change allowed
    s = np.sqrt(target)
    for _ in range(4):  # the change's MSE grows monotonically with s: a few fixed-point steps reach it
        out = np.clip(x + s * p[..., None], 0, peak)
        mse = float(np.mean((out - x) ** 2))
        if mse <= 0:
            break
        s *= np.sqrt(target / mse)
    return np.clip(x + s * p[..., None], 0, peak)


def embed_uint8(img: np.ndarray, key: str, psnr_db: float = PSNR_DB) -> np.ndarray:
    """Watermark one 8-bit image: (H, W) or (H, W, C) uint8 -> the same shape, uint8 (the same
    offset in every channel: it changes luminance)."""
    x = np.asarray(img, dtype=np.float64)
    x3 = x[..., None] if x.ndim == 2 else x
    out = _add(x3, pattern(key, x.shape[0], x.shape[1]), 255.0, psnr_db)
    return np.round(out.reshape(x.shape)).astype(np.uint8)


def embed(x, key: str, psnr_db: float = PSNR_DB):
    """Watermark a batch of images in the model's range: (N, C, H, W) floats in [-1, 1] (torch or
    numpy) -> the same type and shape, each image carrying the key's pattern at ``psnr_db``
    (measured on the 8-bit scale the files use)."""
    is_torch = not isinstance(x, np.ndarray)
    arr = x.detach().cpu().numpy() if is_torch else np.asarray(x)
    if arr.ndim != 4:
        raise GankitError(f"{option('--watermark')} marks images; this model makes vectors (shape "
                          f"{tuple(arr.shape[1:])}), not images")
    _seed(key)
    p = pattern(key, arr.shape[2], arr.shape[3])
    x255 = (np.clip(arr.astype(np.float64), -1, 1) + 1) * 127.5        # (N, C, H, W) on the 8-bit scale
    out = np.stack([_add(im.transpose(1, 2, 0), p, 255.0, psnr_db).transpose(2, 0, 1) for im in x255])
    out = (out / 127.5 - 1).astype(arr.dtype)
    if is_torch:
        import torch
        return torch.from_numpy(out).to(x.dtype)
    return out


def luminance(img: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) -> (H, W) float64 luminance (ITU-R BT.601 weights for RGB)."""
    x = np.asarray(img, dtype=np.float64)
    if x.ndim == 2:
        return x
    if x.shape[2] >= 3:
        return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    return x[..., 0]


def _one_blas_thread():
    """The matrices here are small: BLAS threads only contend (17× slower measured on a loaded
    2-core machine), so score with one when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        from contextlib import nullcontext
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def score(img: np.ndarray, key: str) -> float:
    """Detection score of one image ((H, W[, C]), any range): :func:`alignment` of the image minus
    that of its mirror image (left-right). Images of one dataset share a layout (a centred, mostly
    symmetric object), and a key's pattern can match it: alone, the false-positive rate of single
    Fashion-MNIST images ranged from 0.3 % to 7.7 % over 8 keys at one threshold; with the mirror's
    score subtracted, 0 % to 2.3 % (the mirror keeps the layout and loses the pattern's alignment)."""
    img = np.asarray(img)
    with _one_blas_thread():
        return alignment(img, key) - alignment(np.ascontiguousarray(img[:, ::-1]), key)


def alignment(img: np.ndarray, key: str) -> float:
    """The best normalised correlation of one image with the key's pattern over the crop hypotheses
    (:data:`CROP_SCALES` × offsets): about 0.15 on unmarked 28×28 images, up to 1 marked."""
    y = luminance(img)
    h, w = y.shape
    if min(h, w) < 8:
        raise GankitError(f"an image of {w}×{h} px is too small to hold the watermark (8 px at least)")
    win = np.outer(np.hanning(h + 2)[1:-1], np.hanning(w + 2)[1:-1])
    yw = _flatten(y) * win
    best = -np.inf
    # The original was this size, or twice it (downscaled by 0.5): the band of either.
    for top in sorted({band_top(min(h, w)), band_top(2 * min(h, w))}):
        best = max(best, _best_alignment(yw, key, top))
    return best


def _flatten(y: np.ndarray) -> np.ndarray:
    """The image with its local mean removed, divided by its local contrast (plus a floor of
    NOISE_FLOOR levels): flat regions, where the pattern is all there is, weigh most."""
    from scipy.ndimage import gaussian_filter

    side = min(y.shape)
    hp = y - gaussian_filter(y, BLUR * side, mode="reflect")
    var = gaussian_filter(hp ** 2, VAR_BLUR * side, mode="reflect")
    return hp / np.sqrt(var + NOISE_FLOOR ** 2)


def _best_alignment(yw: np.ndarray, key: str, top: int) -> float:
    """Best normalised correlation of the prepared image ``yw`` (H, W) with the key's pattern up to
    ``top`` cycles per image, over the crop scales and offsets."""
    h, w = yw.shape
    k, l, a = amplitudes(key, top)
    wt = np.hypot(k, l)                 # whitening: the images' amplitude spectrum falls as ~1/|f|
    ref = np.conj(a) / wt               # conj: correlation; / wt undoes the whitening of the data's side
    ref_norm = np.linalg.norm(ref)
    ks, ls = np.arange(-top, top + 1), np.arange(0, top + 1)
    best = -np.inf
    for s in CROP_SCALES:
        u, v = s * (np.arange(h) + 0.5) / h, s * (np.arange(w) + 0.5) / w
        # Host coefficients at every (k, l) of the square [-top, top] × [0, top], then the band's.
        full = np.conj(_exp(ks, u)).T @ yw @ np.conj(_exp(ls, v))       # (2·top+1, top+1)
        cw = full[k + top, l] * wt
        norm = np.linalg.norm(cw) * ref_norm + 1e-12
        offs = np.arange(0.0, 1.0 - s + 1e-9, OFFSET_STEP) if s < 1 else np.zeros(1)
        # An offset (oy, ox) of the window multiplies coefficient (k, l) by exp(-2πi(k oy + l ox)).
        prod = np.zeros((len(ks), len(ls)), complex)
        prod[k + top, l] = ref * cw
        grid = np.real(np.conj(_exp(ks, offs)) @ prod @ np.conj(_exp(ls, offs)).T)  # (offsets y, offsets x)
        best = max(best, float(grid.max() / norm))
    return best


def threshold(side: int) -> float:
    """Score threshold for one image whose shorter side is ``side`` px (:data:`THRESHOLDS`)."""
    return next(t for bound, t in THRESHOLDS if bound is None or side < bound)


def binomial_tail(hits: int, n: int, p: float = FALSE_POSITIVE_RATE) -> float:
    """P(at least ``hits`` of ``n`` unmarked images score above their threshold), each with probability p."""
    return float(sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(hits, n + 1)))


# Images of one file are not independent draws (a dataset's items share their layout, and one key's
# pattern can match it a little better than another's: the false-positive rate per image measured
# 0.0 % to 1.4 % across 10 keys on Fashion-MNIST), so several images are judged as if each unmarked
# one passed with this multiple of FALSE_POSITIVE_RATE (benchmarks/watermark.py: with 1.5, at most
# 0.4 % of files of 64 unmarked or other-key images are reported marked; with 1, up to 1.7 %).
FILE_SAFETY = 1.5


def file_detected(hits: int, n: int) -> bool:
    """A file of ``n`` images is judged marked when ``hits`` of them above the threshold would happen
    by chance in unmarked images at most FALSE_POSITIVE_RATE of the time, each unmarked image passing
    with FILE_SAFETY × FALSE_POSITIVE_RATE (one image: one hit suffices)."""
    if n == 1:
        return hits == 1
    return hits > 0 and binomial_tail(hits, n, FILE_SAFETY * FALSE_POSITIVE_RATE) <= FALSE_POSITIVE_RATE


@dataclass
class Detection:
    """Outcome of :func:`detect_file`: the score of each of the file's images, each image's
    threshold; ``detected`` by :func:`file_detected` (a false-positive rate of FALSE_POSITIVE_RATE
    per file when each unmarked image has that rate)."""
    path: str
    scores: List[float]
    thresholds: List[float]

    @property
    def hits(self) -> int:
        return int(sum(s > t for s, t in zip(self.scores, self.thresholds)))

    @property
    def detected(self) -> bool:
        return file_detected(self.hits, len(self.scores))

    def __str__(self) -> str:
        n = len(self.scores)
        verdict = "watermark DETECTED" if self.detected else "no watermark for this key"
        if n == 1:
            why = f"score {self.scores[0]:.3f}, threshold {self.thresholds[0]:.3f}"
        else:
            why = (f"{self.hits} of {n} images above their threshold; chance for unmarked images "
                   f"{binomial_tail(self.hits, n, FILE_SAFETY * FALSE_POSITIVE_RATE):.2g}")
        return f"{self.path}: {verdict} ({why}; false-positive rate {FALSE_POSITIVE_RATE:.0%})"


def detect_images(images: Sequence[np.ndarray], key: str, path: str = "<images>") -> Detection:
    return Detection(path, [score(im, key) for im in images], [threshold(min(np.shape(im)[:2])) for im in images])


def _grid_tiles(img: np.ndarray, record: dict) -> Optional[List[np.ndarray]]:
    """The tiles of a grid gankit wrote, from its provenance (``grid``: rows, columns, tile size,
    padding, scale); None when the record does not describe a grid."""
    g = record.get("grid")
    if not isinstance(g, dict):
        return None
    n, nrow, (th, tw), pad, sc = g["images"], g["per_row"], g["tile"], g["padding"], g["scale"]
    rows = math.ceil(n / nrow)
    if img.shape[:2] != ((rows * (th + pad) + pad) * sc, (nrow * (tw + pad) + pad) * sc):
        return None  # resized since gankit wrote it: judge it whole
    tiles = []
    for i in range(n):
        r, q = divmod(i, nrow)
        top, left = (pad + r * (th + pad)) * sc, (pad + q * (tw + pad)) * sc
        tile = img[top:top + th * sc, left:left + tw * sc]
        tiles.append(tile[::sc, ::sc] if sc > 1 else tile)
    return tiles


def detect_file(path: str | Path, key: str) -> Detection:
    """Detect the key's watermark in an image file (any format Pillow reads) or a gankit NPZ
    (array ``x``, (N, C, H, W) in [-1, 1]). A PNG grid gankit wrote is split into its images
    (the layout is in its provenance); any other image is judged whole."""
    path = Path(path)
    _seed(key)
    if not path.is_file():
        raise GankitError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        try:
            with np.load(path, allow_pickle=False) as z:
                x = z["x"] if "x" in z.files else None
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise GankitError(f"{path}: not a readable .npz ({e})") from None
        if x is None or x.ndim != 4:
            raise GankitError(f"{path}: no image array x (N, C, H, W) in this .npz")
        images = [np.transpose((np.clip(im, -1, 1) + 1) * 127.5, (1, 2, 0)) for im in x]
        return detect_images(images, key, str(path))
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
            text = getattr(im, "text", {}) or {}
    except (UnidentifiedImageError, OSError) as e:
        raise GankitError(f"{path}: not an image Pillow can read ({e})") from None
    tiles = None
    if "gankit" in text:
        import json
        try:
            tiles = _grid_tiles(arr, json.loads(text["gankit"]))
        except (ValueError, KeyError, TypeError):
            tiles = None
    return detect_images(tiles if tiles else [arr], key, str(path))
