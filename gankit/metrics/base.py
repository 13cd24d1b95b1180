"""The metric registry and the context metrics read their inputs from.

A metric is a pure function of an :class:`EvalContext`: it asks for the stages it needs
(features of the generated samples, cached features of the real ones, class logits, the
dataset's mode centres) and returns ``{output name: value}``; ``<name>_std`` entries are
the spread over subsets or splits. What it computed with goes on its evaluation card.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import torch

from ..registry import Registry

#: name -> Metric
METRICS = Registry("metric")


@dataclass(frozen=True)
class Metric:
    name: str
    outputs: Tuple[str, ...]                 # the values it reports, in table order
    compute: Callable[["EvalContext"], Dict[str, float]]
    kinds: Tuple[str, ...] = ("image", "vector")   # data kinds it applies to
    uses_features: bool = True               # reads the feature extractor's output
    uses_real: bool = True                   # compares against real samples
    params: Dict[str, object] = field(default_factory=dict)  # protocol constants, shown on the card
    lower_is_better: Tuple[str, ...] = ()    # outputs where smaller is better (for "best checkpoint")


def register_metric(name: str, outputs: Tuple[str, ...], **kw) -> Callable:
    def decorator(fn):
        METRICS.register(name, Metric(name=name, outputs=outputs, compute=fn, **kw))
        return fn
    return decorator


def random_subset(n_total: int, n: int, seed: int) -> Optional[torch.Tensor]:
    """Indices of a seeded random ``n`` of ``n_total`` samples (``torch.randperm``, generator seeded
    with ``seed``), or None when ``n`` takes them all. Never the first ``n``: a file sorted by class
    or by mode would then score only some classes."""
    if n >= n_total:
        return None
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n]


@dataclass
class EvalContext:
    """Inputs of one evaluation, computed lazily and at most once.

    ``fake``: generated samples in model range, (N, C, H, W) or (N, D); ``fake_labels`` (N,)
    or None. ``real``: the reference samples the metrics compare against (a seeded subset
    of the reference split), with ``real_labels``. ``dataset``: the whole reference split
    (mode centres, labels). ``real_features_fn`` returns cached features of ``real``.
    """

    fake: torch.Tensor
    fake_labels: Optional[torch.Tensor]
    real: torch.Tensor
    real_labels: Optional[torch.Tensor]
    dataset: object                          # gankit.data.Dataset of the reference split
    data_cfg: object                         # gankit.config.DataConfig of the reference data
    extractor: object                        # FeatureExtractor or None
    seed: int = 0
    real_features_fn: Optional[Callable[[], object]] = None
    log: Optional[Callable[[str], None]] = None
    memo: dict = field(default_factory=dict)  # results metrics share (pr and dc: one distance pass)
    _fake_feats: object = None
    _real_feats: object = None

    @property
    def fake_features(self):
        """:class:`~gankit.metrics.features.Features` of ``fake``."""
        if self._fake_feats is None:
            self._fake_feats = self.extractor(self.fake)
        return self._fake_feats

    @property
    def real_features(self):
        if self._real_feats is None:
            self._real_feats = self.real_features_fn() if self.real_features_fn else self.extractor(self.real)
        return self._real_feats
