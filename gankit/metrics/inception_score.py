"""Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)), mean and std over splits,
from the class softmax of the feature network (the domain classifier or Inception's 1008 classes)."""
from __future__ import annotations

import numpy as np
import torch

from .base import register_metric

SPLITS = 10


def inception_score(logits, splits: int = SPLITS) -> tuple[float, float]:
    """IS mean and std over ``splits`` consecutive, equal parts of the samples (float64)."""
    logp = torch.log_softmax(torch.as_tensor(np.asarray(logits)).double(), dim=1)
    n = len(logp)
    splits = max(1, min(splits, n))
    scores = []
    for part in logp.tensor_split(splits):
        p = part.exp()
        log_py = torch.logsumexp(part, 0) - np.log(len(part))   # log of the marginal p(y) over the split
        kl = (p * (part - log_py)).sum(1).mean()
        scores.append(float(torch.exp(kl)))
    s = np.asarray(scores)
    return float(s.mean()), float(s.std())


@register_metric("is", ("is",), uses_real=False, kinds=("image",), params={"splits": SPLITS})
def _is_metric(ctx):
    logits = ctx.fake_features.logits
    if logits is None:
        raise ValueError(f"the {ctx.extractor.name} features have no class head; IS needs class logits: the domain "
                         "network of a labelled dataset, or --features inception")
    mean, std = inception_score(logits)
    return {"is": mean, "is_std": std}
