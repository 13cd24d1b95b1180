"""Feature extractors: the first stage of every metric (samples -> features [, class logits]).

Registry ``FEATURES`` maps a name to a factory ``(data_cfg, **options) -> FeatureExtractor``:

- ``domain``: a small CNN classifier trained on the real train split of the dataset being
  evaluated (:mod:`gankit.metrics.domain_net`), cached; features from its penultimate
  layer, Inception Score from its softmax.
- ``inception``: the standard FID InceptionV3 (``pt_inception-2015-12-05``) from a weights
  file the user supplies (:mod:`gankit.metrics.inception`). Never downloaded.
- ``raw``: the samples themselves, flattened (1D/2D data; tests).

Every extractor names itself and the SHA-256 of its weights so an evaluation card can say
exactly which network produced a number.
"""
from __future__ import annotations

import numpy as np
import torch

from ..registry import Registry
from .extractor import Features, FeatureExtractor, fit_images, num_threads, quantize  # noqa: F401  (re-exported)

#: name -> factory(data_cfg: DataConfig, **options) -> FeatureExtractor
FEATURES = Registry("feature extractor")


def feature_matrix(features, which: str, what: str = "features") -> np.ndarray:
    """(N, F) features (array or tensor) -> float64 array: the one check between the feature and the
    statistics stage. ``which`` names the set ("real", "fake") and ``what`` the rows ("features",
    "logits", "samples") in the one-line ``ValueError`` for a set that is not 2-D or holds NaN or inf (every metric would otherwise return nan, raise a
    LinAlgError, or count a NaN distance as "outside every ball")."""
    f = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"{which} {what} must be (N, F), got shape {f.shape}")
    bad = int((~np.isfinite(f)).any(1).sum())
    if bad:
        raise ValueError(f"{which} {what}: {bad} of {len(f)} rows contain NaN or inf")
    return f


class RawFeatures(FeatureExtractor):
    """The samples themselves, flattened: for 1D/2D data, where the space is already meaningful."""

    name = "raw"
    preprocessing = "none (flattened samples)"

    def forward(self, x):
        return x.reshape(len(x), -1), None


@FEATURES.register("raw")
def raw_features(data_cfg=None, **options) -> FeatureExtractor:
    """the samples themselves, flattened (1D/2D data)"""
    return RawFeatures()


@FEATURES.register("domain")
def domain_features(data_cfg, **options) -> FeatureExtractor:
    """small CNN classifier of the dataset, trained once and cached (128-d features, IS from its softmax)"""
    from .domain_net import DomainFeatures

    return DomainFeatures.for_dataset(data_cfg, train_if_missing=options.get("train_if_missing", True))


@FEATURES.register("inception")
def inception_features(data_cfg=None, **options) -> FeatureExtractor:
    """FID InceptionV3 (2048-d pool3) from --inception-weights PATH or $GANKIT_INCEPTION_WEIGHTS"""
    from .inception import InceptionFeatures

    return InceptionFeatures.from_file(options.get("inception_weights"))


def default_features(data_cfg, kind: str) -> str:
    """The extractor a dataset is evaluated with when none is named."""
    return "raw" if kind == "vector" else "domain"


def get_extractor(name: str, data_cfg=None, **options) -> FeatureExtractor:
    from ..errors import GankitError, option

    if name not in FEATURES:
        raise GankitError(f"{option('--features', name)}: unknown feature extractor; choose one of: "
                          f"{', '.join(FEATURES.names())}")
    return FEATURES.get(name)(data_cfg, **options)
