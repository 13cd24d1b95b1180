"""Mode coverage on 1D/2D mixtures (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018).

Each generated sample is assigned to its nearest mode centre; it is *high quality* when it
lies within ``sigmas`` (3) standard deviations of that centre (Euclidean distance < 3σ).
A mode is *covered* when at least ``min_count`` (20, PacGAN's threshold for 2,500 samples)
high-quality samples fall in it. The reverse KL divergence is KL(p̂ || uniform) of the
histogram of high-quality samples over the modes (0 when they spread evenly; log M when
they all sit in one mode). The published protocol scores 2,500 samples: of more, a seeded random
2,500 (the evaluation seed; on the card).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from .base import random_subset, register_metric
from .features import feature_matrix

NUM_SAMPLES = 2500
SIGMAS = 3.0
MIN_COUNT = 20


def mode_stats(x, modes, std: float, sigmas: float = SIGMAS, min_count: int = MIN_COUNT) -> dict:
    """Score samples ``x`` (N, D) against mode centres ``modes`` (M, D) of per-axis std ``std``.

    Returns ``{"modes": int covered, "hq": percent of high-quality samples (0-100),
    "rkl": reverse KL (nats; None if no sample is high quality), "counts": high-quality
    samples per mode (M,), "num_modes": M, "n": N}``.
    """
    x = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    m = np.asarray(modes.detach().cpu().numpy() if isinstance(modes, torch.Tensor) else modes, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim == 2:
        feature_matrix(x, "fake", "samples")   # one line for NaN/inf rows (a NaN is "near" no mode)
    if m.ndim != 2 or x.ndim != 2 or x.shape[1] != m.shape[1]:
        raise ValueError(f"samples {x.shape} and mode centres {m.shape} must be (N, D) and (M, D)")
    if len(x) == 0:
        raise ValueError("no samples to score")
    d2 = ((x[:, None, :] - m[None, :, :]) ** 2).sum(-1)   # (N, M)
    nearest = d2.argmin(1)
    hq = np.sqrt(d2[np.arange(len(x)), nearest]) < sigmas * std
    counts = np.bincount(nearest[hq], minlength=len(m))
    total = counts.sum()
    rkl: Optional[float] = None
    if total > 0:
        p = counts[counts > 0] / total
        rkl = float((p * np.log(p * len(m))).sum())
    return {"modes": int((counts >= min_count).sum()), "hq": float(100.0 * hq.mean()), "rkl": rkl,
            "counts": counts.tolist(), "num_modes": len(m), "n": len(x)}


@register_metric("modes", ("modes", "hq", "rkl"), kinds=("vector",), uses_features=False, uses_real=False,
                 params={"samples": NUM_SAMPLES, "sigmas": SIGMAS, "min_count": MIN_COUNT},
                 lower_is_better=("rkl",))
def _modes_metric(ctx):
    ds = ctx.dataset
    if ds.modes is None or ds.mode_std is None:
        raise ValueError(f"dataset {ds.name!r} has no known mode centres; the modes metric is for mixtures "
                         "like ring8 and grid25")
    idx = random_subset(len(ctx.fake), NUM_SAMPLES, ctx.seed)   # not the first 2,500: a file may be sorted by mode
    out = mode_stats(ctx.fake if idx is None else ctx.fake[idx], ds.modes, ds.mode_std)
    rkl = out["rkl"] if out["rkl"] is not None else math.nan
    return {"modes": out["modes"], "hq": out["hq"], "rkl": rkl}
