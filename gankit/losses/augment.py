"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every sample D sees.

D is trained on T(x) and T(G(z)) and G is trained through T(G(z)), with T drawn afresh
for every batch from the same distribution for real and fake, so D cannot tell them
apart by the augmentation and G's gradients flow through T (every op below is an
indexing, a mask or an affine map of x). A policy is a comma-separated list of names
from :data:`AUGMENTS`, applied in the order given, e.g. ``"color,translation,cutout"``.

The magnitudes are those of the reference code (DiffAugment_pytorch.py): brightness
± 0.5, saturation × U[0, 2], contrast × U[0.5, 1.5]; translation up to 1/8 of the side
with zero padding; a cutout square of half the side. Zero is mid-grey in model range.
"""
from __future__ import annotations

from typing import Callable, List

import torch
from torch import Tensor

from ..errors import ConfigError
from ..registry import Registry

#: name -> function (B, C, H, W) -> (B, C, H, W), random per sample, differentiable in x
AUGMENTS = Registry("augmentation")


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    """One U[low, high) draw per sample, shaped (B, 1, 1, 1) to broadcast over the image."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * (high - low) + low


@AUGMENTS.register("color")
def color(x: Tensor) -> Tensor:
    """Brightness, saturation and contrast jitter, in that order."""
    x = x + _uniform(x, -0.5, 0.5)
    mean_c = x.mean(dim=1, keepdim=True)                 # (B, 1, H, W): grey level per pixel
    x = (x - mean_c) * _uniform(x, 0.0, 2.0) + mean_c    # a no-op on one-channel images
    mean_all = x.mean(dim=(1, 2, 3), keepdim=True)       # (B, 1, 1, 1)
    return (x - mean_all) * _uniform(x, 0.5, 1.5) + mean_all


def _shift_index(size: int, shift: Tensor, device) -> Tensor:
    """Source row (or column) of each output row in the zero-padded image: (B, size)."""
    return torch.arange(size, device=device).view(1, -1) - shift.view(-1, 1)


@AUGMENTS.register("translation")
def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ``ratio`` of its side in x and y (integer pixels), filling with 0."""
    b, c, h, w = x.shape
    max_h, max_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_h, max_h + 1, (b,), device=x.device)
    dx = torch.randint(-max_w, max_w + 1, (b,), device=x.device)
    rows = _shift_index(h, dy, x.device)  # (B, H): output row i reads input row i - dy
    cols = _shift_index(w, dx, x.device)  # (B, W)
    inside = ((rows >= 0) & (rows < h)).view(b, 1, h, 1) & ((cols >= 0) & (cols < w)).view(b, 1, 1, w)
    rows = rows.clamp(0, h - 1).view(b, 1, h, 1).expand(b, c, h, w)
    cols = cols.clamp(0, w - 1).view(b, 1, 1, w).expand(b, c, h, w)
    out = x.gather(2, rows).gather(3, cols)
    return out * inside.to(x.dtype)


@AUGMENTS.register("cutout")
def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a square of ``ratio`` × the side at a uniform random centre (it may be cut by the border)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)  # centre row, as in the reference
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    hole = ((ys - cy + ch // 2) >= 0) & ((ys - cy + ch // 2) < ch) & ((xs - cx + cw // 2) >= 0) & \
        ((xs - cx + cw // 2) < cw)                                        # (B, H, W)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def parse_policy(policy: str) -> List[str]:
    """``"color, translation"`` -> ``["color", "translation"]``; checks every name."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for name in names:
        if name not in AUGMENTS:
            raise ConfigError(f"loss.augment: unknown augmentation {name!r}; "
                              f"choose a comma-separated list of: {', '.join(AUGMENTS.names())}")
    return names


class DiffAugment:
    """The composed policy; an empty policy returns x unchanged."""

    def __init__(self, policy: str):
        self.names = parse_policy(policy)
        self.ops: List[Callable[[Tensor], Tensor]] = [AUGMENTS.get(n) for n in self.names]

    def __call__(self, x: Tensor) -> Tensor:
        if not self.ops:
            return x
        if x.ndim != 4:
            raise ConfigError(f"loss.augment={','.join(self.names)!r}: DiffAugment needs images (B, C, H, W), "
                              f"got samples of shape {tuple(x.shape[1:])}; set loss.augment to \"\"")
        for op in self.ops:
            x = op(x)
        return x.contiguous()

    def __repr__(self) -> str:
        return f"DiffAugment({','.join(self.names)!r})"
