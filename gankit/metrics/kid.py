"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial
kernel k(x, y) = (x·y / d + 1)³, averaged over random subsets (mean and std reported)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .base import register_metric

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
    each drawn without replacement (as in the authors' and torch-fidelity's code). When both sets fit
    in one subset every draw is the same two sets, so KID is their MMD² and the std is None: there is
    no spread to report (a std of 0 would read as a number known exactly)."""
    real = torch.as_tensor(np.asarray(real_features)).double()
    fake = torch.as_tensor(np.asarray(fake_features)).double()
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least 2 samples on each side")
    if m == len(real) and m == len(fake):
        return mmd2_unbiased(real, fake), None
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(num_subsets):
        r = real[torch.randperm(len(real), generator=g)[:m]]
        f = fake[torch.randperm(len(fake), generator=g)[:m]]
        vals.append(mmd2_unbiased(r, f))
    v = np.asarray(vals)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None


@register_metric("kid", ("kid",), lower_is_better=("kid",),
                 params={"kernel": "(x.y/d+1)^3", "subsets": NUM_SUBSETS, "subset_size": SUBSET_SIZE})
def _kid_metric(ctx):
    mean, std = kid(ctx.real_features.features, ctx.fake_features.features, seed=ctx.seed)
    return {"kid": mean, "kid_std": std}
