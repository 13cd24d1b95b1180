"""Latent codes: seeded noise, the truncation trick and spherical walks (the API and `gankit serve`)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

# Resampling stops after this many rounds; what is still outside is clamped. With the smallest
# threshold the page accepts (0.25, P(|z| ≤ 0.25) ≈ 0.2) a component survives 200 rounds with
# probability 0.8^200 ≈ 4e-20, so the clamp never decides anything in practice.
MAX_ROUNDS = 200


def seeded_z(n: int, z_dim: int, seed: int, truncation: Optional[float] = None) -> Tensor:
    """(n, z_dim) float32 z ~ N(0, I) from a private generator seeded ``seed``: the same seed gives
    the same codes on every machine. ``truncation`` (a threshold τ > 0, None = off) applies the
    truncation trick of BigGAN (Brock et al. 2019, §3.1): every component with |z_i| > τ is
    redrawn from the same generator until it falls inside. Components already inside are kept,
    so lowering τ changes a picture gradually rather than replacing it; samples get more typical
    and less varied as τ falls."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, z_dim, generator=g)
    if truncation is None:
        return z
    if not truncation > 0:
        raise ValueError(f"truncation threshold must be > 0, got {truncation}")
    for _ in range(MAX_ROUNDS):
        outside = z.abs() > truncation
        k = int(outside.sum())
        if k == 0:
            break
        z[outside] = torch.randn(k, generator=g)
    return z.clamp_(-truncation, truncation)


def slerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Spherical interpolation between codes ``a`` and ``b`` (..., D) at ``t`` in [0, 1] (a number,
    or a tensor that broadcasts against (..., 1) for several points at once): the walk
    stays on the shell of radius ≈ √D where Gaussian z concentrates (White 2016, "Sampling
    generative networks"); a straight line would pass through the improbable centre. Falls back to
    a straight line when a and b are (anti)parallel."""
    an, bn = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12), b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega)
    if bool((so.abs() < 1e-6).any()):
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
