"""Synthetic 1D/2D mixtures from the mode-collapse literature (VEEGAN, PacGAN, unrolled GAN)."""
from __future__ import annotations

import math

import torch

from .base import DATASETS, Dataset


def _mixture(name: str, means: torch.Tensor, std: float, n: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(means), (n,), generator=g)
    x = means[labels] + std * torch.randn(n, means.shape[1], generator=g)
    return Dataset(name=name, x=x.float(), y=labels, kind="vector", num_classes=len(means),
                   modes=means.float(), mode_std=std)


def ring_means(k: int = 8, radius: float = 1.0) -> torch.Tensor:
    angles = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], 1)


def grid_means(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    ticks = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing  # {-4,-2,0,2,4}
    gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


@DATASETS.register("ring8")
def ring8(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """8 Gaussians on the unit circle at angles 2πk/8, σ = 0.01 (PacGAN's ring)."""
    return _mixture("ring8", ring_means(8, 1.0), 0.01, cfg.size, seed + (split == "test") * 7919)


@DATASETS.register("grid25")
def grid25(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """25 Gaussians with means {-4,-2,0,2,4}², σ = 0.05 (PacGAN's grid)."""
    return _mixture("grid25", grid_means(5, 2.0), 0.05, cfg.size, seed + (split == "test") * 7919)


@DATASETS.register("gaussian1d")
def gaussian1d(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """One 1D Gaussian N(4, 0.5²), the running example of Goodfellow et al. (2014), Fig. 1."""
    return _mixture("gaussian1d", torch.tensor([[4.0]], dtype=torch.float64), 0.5, cfg.size,
                    seed + (split == "test") * 7919)
