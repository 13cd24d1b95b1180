"""k-NN manifold metrics on features, batched so 10k x 10k never sits in memory at once.

- Improved precision and recall (Kynkäänniemi et al. 2019), k = 3: precision is the share of
  generated samples inside some real sample's k-NN ball; recall the share of real samples
  inside some generated sample's k-NN ball.
- Density and coverage (Naeem et al. 2020), k = 5: density counts how many real k-NN balls
  contain each generated sample (divided by k; 1 on average when the distributions match);
  coverage is the share of real balls that contain at least one generated sample.

Comparisons use strict ``<`` on Euclidean distances (as the ``prdc`` reference code); the
k-NN radius of a point excludes the point itself. Distances are computed in float32
blocks of ``block`` rows: memory O(block · N).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import register_metric

K_PR = 3
K_DC = 5


def _sqdist(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (len(a), len(b)), clipped at 0 against round-off."""
    return ((a * a).sum(1, keepdim=True) - 2 * a @ b.T + b_sq[None, :]).clamp_min_(0)


def prdc(real_features, fake_features, k_pr: int = K_PR, k_dc: int = K_DC, block: int = 1024) -> dict:
    """Precision, recall (k = ``k_pr``), density and coverage (k = ``k_dc``) of fake vs real features."""
    real = torch.as_tensor(np.asarray(real_features), dtype=torch.float32)
    fake = torch.as_tensor(np.asarray(fake_features), dtype=torch.float32)
    ks = sorted({k_pr, k_dc})
    # k-NN radii for both k's from one pass each: the topk of the larger k holds the smaller.
    r_real = {k: v for k, v in zip(ks, knn_radii(real, ks, block))}
    r_fake_pr = knn_radii(fake, [k_pr], block)[0]
    real_sq = (real * real).sum(1)
    in_real_ball = 0                                  # fakes inside some real k_pr-ball
    density_sum = 0.0
    recall_hit = torch.zeros(len(real), dtype=torch.bool)   # reals inside some fake k_pr-ball
    nearest_fake = torch.full((len(real),), float("inf"))   # squared distance to the nearest fake
    for i in range(0, len(fake), block):
        d = _sqdist(fake[i:i + block], real, real_sq)        # (b, N_real)
        in_real_ball += (d < r_real[k_pr][None, :]).any(1).sum().item()
        density_sum += (d < r_real[k_dc][None, :]).sum().item()
        recall_hit |= (d < r_fake_pr[i:i + block, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    return {
        "precision": in_real_ball / len(fake),
        "recall": recall_hit.sum().item() / len(real),
        "density": density_sum / (k_dc * len(fake)),
        "coverage": (nearest_fake < r_real[k_dc]).sum().item() / len(real),
    }


def knn_radii(x: torch.Tensor, ks, block: int = 1024) -> list:
    """For each k in ``ks``: squared distance from each row of ``x`` to its k-th nearest other row, (N,)."""
    kmax = max(ks)
    if len(x) <= kmax:
        raise ValueError(f"need more than k={kmax} samples for k-NN radii, got {len(x)}")
    x_sq = (x * x).sum(1)
    vals = []
    for i in range(0, len(x), block):
        # the point itself is at distance ~0, so the k-th neighbour is the (k+1)-th smallest
        vals.append(_sqdist(x[i:i + block], x, x_sq).topk(kmax + 1, dim=1, largest=False).values)
    v = torch.cat(vals)
    return [v[:, k] for k in ks]


def _prdc_once(ctx) -> dict:
    if "prdc" not in ctx.memo:  # pr and dc share one pass over the distances
        ctx.memo["prdc"] = prdc(ctx.real_features.features, ctx.fake_features.features)
    return ctx.memo["prdc"]


@register_metric("pr", ("precision", "recall"), params={"k": K_PR})
def _pr_metric(ctx):
    out = _prdc_once(ctx)
    return {"precision": out["precision"], "recall": out["recall"]}


@register_metric("dc", ("density", "coverage"), params={"k": K_DC})
def _dc_metric(ctx):
    out = _prdc_once(ctx)
    return {"density": out["density"], "coverage": out["coverage"]}
