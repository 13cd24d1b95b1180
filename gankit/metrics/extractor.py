"""The feature stage's common parts: what a feature extractor is (:class:`FeatureExtractor`), what
it returns (:class:`Features`), and the image preparation every extractor shares. The extractors
(:mod:`gankit.metrics.domain_net`, :mod:`gankit.metrics.inception`) build on this file; the registry
that names them (:mod:`gankit.metrics.features`) imports them, so imports flow one way.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..data.base import border_pad, to_model_range, to_uint8


@dataclass
class Features:
    """Output of the feature stage for N samples."""

    features: torch.Tensor            # (N, F) float32, CPU
    logits: Optional[torch.Tensor]    # (N, K) float32 class logits, or None when the net has no class head


class FeatureExtractor:
    """Base class: batched, ``torch.inference_mode`` feature extraction.

    Subclasses set ``name``, ``sha256`` (of the weights; "" when there are none),
    ``preprocessing`` (one line a reader can reproduce) and ``num_classes`` (0 = no class
    head), and implement :meth:`prepare` (model-range samples -> network input) and
    :meth:`forward` (network input -> (features, logits or None)).
    """

    name: str = ""
    sha256: str = ""
    preprocessing: str = ""
    num_classes: int = 0
    batch_size: int = 500
    device: torch.device = torch.device("cpu")
    threads: Optional[int] = None     # torch intra-op threads while extracting; None = leave as is

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, batch_size: Optional[int] = None) -> Features:
        """Features of ``x`` (model range: images float [-1, 1] (N, C, H, W), vectors (N, D))."""
        bs = batch_size or self.batch_size
        feats, logits = [], []
        with torch.inference_mode(), num_threads(self.threads):
            for chunk in x.split(bs):
                f, lg = self.forward(self.prepare(chunk.float()).to(self.device))
                feats.append(f.float().cpu())
                if lg is not None:
                    logits.append(lg.float().cpu())
        if not feats:
            raise ValueError("no samples to extract features from")
        return Features(torch.cat(feats), torch.cat(logits) if logits else None)

    def describe_input(self, shape) -> Optional[str]:
        """What :meth:`prepare` does to samples of ``shape`` (C, H, W) beyond :attr:`preprocessing`, for
        the card (None: nothing shape-dependent)."""
        return None

    def describe(self) -> dict:
        """The extractor's part of an evaluation card."""
        return {"features": self.name, "features_sha256": self.sha256, "preprocessing": self.preprocessing}


@contextlib.contextmanager
def num_threads(n: Optional[int]):
    """Run the block with ``n`` torch threads (None: unchanged). Small networks run faster on one
    thread than on two contended ones (measured: 10x on this project's shared 2-core machines)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> the nearest of the 256 levels an 8-bit image can hold, still in [-1, 1].

    Generated samples are scored as they would be once saved as PNG, which is what real
    data already is (clean-fid, Parmar et al. 2022, recommend the same).
    """
    return to_model_range(to_uint8(x))


def fit_images(x: torch.Tensor, channels: int, size) -> torch.Tensor:
    """(N, C, H, W) -> (N, channels, h, w), ``size`` a side (square) or a pair (h, w): the inverse of
    how gankit's loader makes ``data.resolution``/``data.channels`` images from native (channels, h, w)
    ones (:func:`gankit.data.base.fit_resolution`), by the same rule (:func:`~gankit.data.base.border_pad`).

    The border the loader pads with (28 -> 30 or 32) is cropped off; every other size (28 -> 34, 36,
    56, 14, non-square) was resized (antialiased bilinear), and that linear map is undone by least
    squares (its pseudo-inverse): an image the loader enlarged comes back up to uint8 rounding. RGB ->
    grey uses ITU-R 601 luma weights (exact on the loader's grey -> RGB copies); grey -> RGB repeats
    the channel. :func:`describe_fit` says in words what this does to a shape.
    """
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    c, h, w = x.shape[1:]
    if c != channels:
        if c == 1:
            x = x.expand(-1, channels, -1, -1)
        elif channels == 1 and c == 3:
            x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        else:
            raise ValueError(f"cannot turn {c}-channel images into {channels} channels")
    if h == th and w == tw:
        return x
    b = border_pad((th, tw), (h, w))
    if b is not None:
        return x[:, :, b:b + th, b:b + tw]
    # the loader's resize is linear and separable, Y = A_h X A_w^T: undo it by least squares,
    # X = pinv(A_h) Y pinv(A_w)^T, exact up to its uint8 rounding where it enlarged (A has full column
    # rank); where it shrank, what it dropped is gone and pinv is the smoothest image that shrinks to Y
    ph, pw = (_unresize(n, t).to(x) for n, t in ((h, th), (w, tw)))
    return (ph @ x @ pw.T).clamp(-1, 1)


@functools.lru_cache(maxsize=32)
def _unresize(n: int, native: int) -> torch.Tensor:
    """pinv of the (n, native) matrix of the loader's 1-D resize (bilinear, antialiased), float64."""
    if n == native:
        return torch.eye(n, dtype=torch.float64)
    eye = torch.eye(native, dtype=torch.float64).view(native, 1, 1, native)          # unit 1-row images
    a = F.interpolate(eye, size=(1, n), mode="bilinear", antialias=True, align_corners=False)
    return torch.linalg.pinv(a.view(native, n).T)                                     # (native, n)


def describe_fit(shape, channels: int, size) -> Optional[str]:
    """What :func:`fit_images` does to samples of ``shape`` (C, H, W), in words for an evaluation card;
    None when they already have ``channels`` x ``size``."""
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    c, h, w = (int(v) for v in shape)
    steps = []
    if c != channels:
        steps.append("grey -> RGB (copied)" if c == 1 else "RGB -> grey (ITU-R 601 luma)")
    if (h, w) != (th, tw):
        b = border_pad((th, tw), (h, w))
        steps.append(f"crop the {b} px border gankit pads with" if b is not None else
                     f"least-squares inverse of the loader's bilinear resize to data.resolution="
                     f"{h if h == w else [h, w]}")
    if not steps:
        return None
    return f"{c}x{h}x{w} -> {channels}x{th}x{tw}: " + ", ".join(steps)
