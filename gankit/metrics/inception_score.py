"""Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)), mean and std over splits,
from the class softmax of the feature network (the domain classifier or Inception's 1008 classes).

As torch-fidelity computes it: the samples are shuffled with ``np.random.RandomState(2020)``
before they are cut into splits (rows ``i*N//splits`` to ``(i+1)*N//splits``), so a file sorted by
class scores as a shuffled one does (unshuffled, each split would hold one or two classes and IS
would fall towards 1); the std is ``np.std`` (ddof 0) over the splits.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import register_metric
from .features import feature_matrix

SPLITS = 10
SHUFFLE_SEED = 2020   # torch-fidelity's default rng_seed


def inception_score(logits, splits: int = SPLITS, seed: int = SHUFFLE_SEED) -> tuple[float, float]:
    """IS mean and std over ``splits`` equal parts of the (N, K) class ``logits``, shuffled first with
    ``np.random.RandomState(seed)`` (float64). Needs at least ``splits`` samples."""
    lg = feature_matrix(logits, "fake", "logits")
    n = len(lg)
    if n < splits:
        raise ValueError(f"IS over {splits} splits needs at least {splits} samples, got {n}")
    logp = torch.log_softmax(torch.from_numpy(lg[np.random.RandomState(seed).permutation(n)]), dim=1)
    scores = []
    for i in range(splits):
        part = logp[i * n // splits:(i + 1) * n // splits]
        log_py = torch.logsumexp(part, 0) - np.log(len(part))   # log of the marginal p(y) over the split
        kl = (part.exp() * (part - log_py)).sum(1).mean()
        scores.append(float(torch.exp(kl)))
    s = np.asarray(scores)
    return float(s.mean()), float(s.std())


@register_metric("is", ("is",), uses_real=False, kinds=("image",),
                 params={"splits": SPLITS, "shuffle": f"RandomState({SHUFFLE_SEED}).permutation"})
def _is_metric(ctx):
    logits = ctx.fake_features.logits
    if logits is None:
        raise ValueError(f"the {ctx.extractor.name} features have no class head; IS needs class logits: the domain "
                         "network of a labelled dataset, or --features inception")
    mean, std = inception_score(logits)
    return {"is": mean, "is_std": std}
