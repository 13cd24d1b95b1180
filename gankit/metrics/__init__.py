"""Evaluation: features -> statistics -> values, each value with an evaluation card.

Registries: ``METRICS`` (fid, kid, is, pr, dc, modes, cas) and ``FEATURES`` (domain,
inception, raw). Entry points: :func:`evaluate` (``gankit eval``), :func:`mode_stats`
(1D/2D mixtures), and the pure functions :func:`fid`, :func:`kid`, :func:`prdc`,
:func:`inception_score`.
"""
from . import cas, fid as _fid, inception_score as _is, kid as _kid, modes, prdc as _prdc  # noqa: F401  (register)
from .base import METRICS, EvalContext, Metric
from .card import card_id, differences, format_table
from .evaluate import EvalError, EvalResult, evaluate, evaluate_samples, load_samples
from .features import FEATURES, FeatureExtractor, Features, get_extractor
from .fid import feature_stats, fid, fid_from_stats
from .inception_score import inception_score
from .kid import kid, mmd2_unbiased
from .modes import mode_stats
from .prdc import prdc

__all__ = ["METRICS", "FEATURES", "EvalContext", "Metric", "EvalError", "EvalResult", "FeatureExtractor", "Features",
           "card_id", "differences", "format_table", "evaluate", "evaluate_samples", "load_samples", "get_extractor",
           "feature_stats", "fid", "fid_from_stats", "inception_score", "kid", "mmd2_unbiased", "mode_stats", "prdc"]
