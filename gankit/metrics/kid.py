"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial
kernel k(x, y) = (x·y / d + 1)³, averaged over random subsets (mean and std reported)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .base import register_metric
from .features import feature_matrix

NUM_SUBSETS = 100
SUBSET_SIZE = 1000


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² between samples x (m, d) and y (n, d) under the cubic kernel, float64."""
    x, y = x.double(), y.double()
    d = x.shape[1]
    m, n = len(x), len(y)
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid(real_features, fake_features, num_subsets: int = NUM_SUBSETS, subset_size: int = SUBSET_SIZE,
        seed: int = 0) -> tuple[float, Optional[float]]:
    """KID mean and std over ``num_subsets`` pairs of subsets of ``min(subset_size, N, M)`` samples,
    drawn as torch-fidelity draws them, so the same features and seed give its mean and std:
    ``rng = np.random.RandomState(seed)``; per subset ``rng.choice(M, m, replace=False)`` of the
    fake set (torch-fidelity's input1) then of the real set; std is ``np.std`` (ddof 0) of the
    subset values. (torch-fidelity refuses a subset larger than a set; gankit shrinks it to fit and
    the card records the size.) When both sets fit in one subset every draw is the same two sets,
    so KID is their MMD² and the std is None: there is no spread to report (a std of 0 would read
    as a number known exactly)."""
    real = torch.from_numpy(feature_matrix(real_features, "real"))
    fake = torch.from_numpy(feature_matrix(fake_features, "fake"))
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real features are {real.shape[1]}-d, fake ones {fake.shape[1]}-d")
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least 2 samples on each side")
    if m == len(real) and m == len(fake):
        return mmd2_unbiased(real, fake), None
    rng = np.random.RandomState(seed)
    vals = []
    for _ in range(num_subsets):
        f = fake[torch.from_numpy(rng.choice(len(fake), m, replace=False))]
        r = real[torch.from_numpy(rng.choice(len(real), m, replace=False))]
        vals.append(mmd2_unbiased(r, f))
    v = np.asarray(vals)
    return float(v.mean()), float(v.std()) if len(v) > 1 else None


@register_metric("kid", ("kid",), lower_is_better=("kid",),
                 params={"kernel": "(x.y/d+1)^3", "subsets": NUM_SUBSETS, "subset_size": SUBSET_SIZE,
                         "draw": "RandomState(seed).choice fake, real; std ddof=0"})
def _kid_metric(ctx):
    mean, std = kid(ctx.real_features.features, ctx.fake_features.features, seed=ctx.seed)
    return {"kid": mean, "kid_std": std}
