"""The feature stage's common parts: what a feature extractor is (:class:`FeatureExtractor`), what
it returns (:class:`Features`), and the image preparation every extractor shares. The extractors
(:mod:`gankit.metrics.domain_net`, :mod:`gankit.metrics.inception`) build on this file; the registry
that names them (:mod:`gankit.metrics.features`) imports them, so imports flow one way.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..data.base import to_model_range, to_uint8


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
    """(N, C, H, W) -> (N, channels, h, w), ``size`` a side (square) or a pair (h, w).

    A border of at most 4 px on each side (28 padded to 32) is cropped off, the inverse of
    how gankit pads MNIST-family data; other sizes are resized with antialiased bilinear
    filtering. RGB -> grey uses ITU-R 601 luma weights; grey -> RGB repeats the channel.
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
    if h == w and th == tw and 0 < h - th <= 8 and (h - th) % 2 == 0:
        b = (h - th) // 2
        return x[:, :, b:b + th, b:b + th]
    return F.interpolate(x, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
