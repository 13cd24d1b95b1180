"""Hole masks for inpainting and uncropping, drawn per batch: (N, 1, H, W) float32, 1 on the hole.

Pure functions of a shape and a ``torch.Generator`` (None: torch's global RNG, which training
checkpoints, so a resumed run draws the masks an uninterrupted one would). Registry
:data:`MASKS` maps the names recipes and ``gankit translate --mask`` use to them:

``centre``  a centred square of half the side (a quarter of the area), the classic benchmark hole
            (Pathak et al. 2016, Context Encoders);
``rect``    one to three axis-aligned rectangles, sides 1/8 to 1/2 of the image's (Iizuka et al. 2017);
``stroke``  free-form brush strokes (Yu et al. 2019, DeepFill v2, Alg. 1): 1-4 strokes of 4-12 vertices,
            each segment 1/8-1/4 of the side long at an angle turning by up to ±2π/5 from the last,
            a brush 1/16-1/8 of the side wide, round joints;
``border``  uncropping: bands along a random non-empty set of the four sides, each 1/8-1/4 of the side
            deep (Palette, Saharia et al. 2022, extends an image the same way).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence

import torch

Generator = Optional[torch.Generator]


def _uniform(n: int, lo: float, hi: float, g: Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def centre_masks(n: int, h: int, w: int, g: Generator = None) -> torch.Tensor:
    m = torch.zeros(n, 1, h, w)
    m[:, :, h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = 1
    return m


def rect_masks(n: int, h: int, w: int, g: Generator = None) -> torch.Tensor:
    m = torch.zeros(n, 1, h, w)
    counts = torch.randint(1, 4, (n,), generator=g)
    rows, cols = torch.arange(h).view(h, 1), torch.arange(w).view(1, w)
    for i in range(n):
        for _ in range(int(counts[i])):
            rh = int(_uniform(1, h / 8, h / 2, g)) or 1
            rw = int(_uniform(1, w / 8, w / 2, g)) or 1
            top = int(torch.randint(0, h - rh + 1, (1,), generator=g))
            left = int(torch.randint(0, w - rw + 1, (1,), generator=g))
            m[i, 0] += ((rows >= top) & (rows < top + rh) & (cols >= left) & (cols < left + rw)).float()
    return m.clamp_(max=1)


def stroke_masks(n: int, h: int, w: int, g: Generator = None) -> torch.Tensor:
    side = min(h, w)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                            indexing="ij")
    pix = torch.stack([xs, ys], -1).view(-1, 1, 2)                   # (HW, 1, 2) pixel centres
    out = torch.zeros(n, 1, h, w)
    for i in range(n):
        starts, ends, radii = [], [], []
        for _ in range(int(torch.randint(1, 5, (1,), generator=g))):
            p = torch.rand(2, generator=g) * torch.tensor([w, h], dtype=torch.float32)
            angle = float(torch.rand(1, generator=g)) * 2 * math.pi
            radius = float(_uniform(1, side / 32, side / 16, g))       # half the brush width
            for _ in range(int(torch.randint(4, 13, (1,), generator=g))):
                angle += float(_uniform(1, -2 * math.pi / 5, 2 * math.pi / 5, g))
                length = float(_uniform(1, side / 8, side / 4, g))
                q = p + length * torch.tensor([math.cos(angle), math.sin(angle)])
                q = torch.minimum(torch.maximum(q, torch.zeros(2)), torch.tensor([w, h], dtype=torch.float32))
                starts.append(p), ends.append(q), radii.append(radius)
                p = q
        a, b = torch.stack(starts).unsqueeze(0), torch.stack(ends).unsqueeze(0)      # (1, S, 2)
        ab = b - a
        t = (((pix - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-6)).clamp(0, 1)  # (HW, S)
        dist = (pix - (a + t.unsqueeze(-1) * ab)).norm(dim=-1)                       # to each segment
        out[i, 0] = (dist <= torch.tensor(radii)).any(-1).view(h, w).float()
    return out


def border_masks(n: int, h: int, w: int, g: Generator = None) -> torch.Tensor:
    m = torch.zeros(n, 1, h, w)
    for i in range(n):
        sides = torch.rand(4, generator=g) < 0.5
        if not sides.any():
            sides[int(torch.randint(0, 4, (1,), generator=g))] = True
        top, bottom, left, right = (int(_uniform(1, s / 8, s / 4, g)) or 1 for s in (h, h, w, w))
        if sides[0]:
            m[i, :, :top] = 1
        if sides[1]:
            m[i, :, h - bottom:] = 1
        if sides[2]:
            m[i, :, :, :left] = 1
        if sides[3]:
            m[i, :, :, w - right:] = 1
    return m


#: name -> (n, h, w, generator) -> (n, 1, h, w) float32 {0, 1}
MASKS: Dict[str, Callable[..., torch.Tensor]] = {
    "centre": centre_masks, "rect": rect_masks, "stroke": stroke_masks, "border": border_masks}


def draw_masks(kinds: Sequence[str], n: int, h: int, w: int, g: Generator = None) -> torch.Tensor:
    """``n`` masks, each of a kind drawn uniformly from ``kinds`` (names in :data:`MASKS`)."""
    if len(kinds) == 1:
        return MASKS[kinds[0]](n, h, w, g)
    which = torch.randint(0, len(kinds), (n,), generator=g)
    out = torch.zeros(n, 1, h, w)
    for k, name in enumerate(kinds):
        sel = (which == k).nonzero().flatten()
        if len(sel):
            out[sel] = MASKS[name](len(sel), h, w, g)
    return out
