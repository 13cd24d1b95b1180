"""Evaluation: features -> statistics -> values, each value with an evaluation card.

Registries: ``METRICS`` (fid, kid, is, pr, dc, modes, cas, class_acc, sharpness) and ``FEATURES`` (domain,
inception, raw). Entry points: :func:`evaluate_samples` (samples of a loaded model, an ``.npz`` or an array;
:func:`gankit.evaluate` scores run folders with it), :func:`mode_stats`
(1D/2D mixtures), and the pure functions :func:`fid`, :func:`kid`, :func:`prdc`,
:func:`inception_score`.
"""
from . import cas, fid as _fid, inception_score as _is, kid as _kid, modes, prdc as _prdc  # noqa: F401  (register)
from . import sharpness as _sharpness  # noqa: F401  (register: variance of the Laplacian)
from . import class_acc as _class_acc  # noqa: F401  (register: the domain classifier's intended-class accuracy)
from . import audio as _audio  # noqa: F401  (register: voices, the effective number of speakers)
from .base import METRICS, EvalContext, Metric
from .card import card_id, differences, format_table
from .evaluate import EvalError, EvalResult, Samples, evaluate_samples, samples_from_array, samples_from_model, samples_from_npz
from .features import FEATURES, FeatureExtractor, Features, get_extractor
from .fid import feature_stats, fid, fid_from_stats
from .inception_score import inception_score
from .kid import kid, mmd2_unbiased
from .modes import mode_stats
from .prdc import prdc
from ..config import check, check_name, register_check


@register_check
def _check_eval(cfg) -> None:
    e = cfg.eval
    for i, m in enumerate(e.metrics):
        check_name(f"eval.metrics.{i}", m, METRICS)
    if e.features is not None:
        check_name("eval.features", e.features, FEATURES)
    check("eval.score", e.every is None or e.score is None or (e.score in ("fid", "kid", "rkl") and
                                            (e.score == "rkl" and "modes" in e.metrics or e.score in e.metrics)),
          "fid, kid or rkl (a value of one of eval.metrics; rkl comes from modes) or null")

__all__ = ["METRICS", "FEATURES", "EvalContext", "Metric", "EvalError", "EvalResult", "FeatureExtractor", "Features",
           "card_id", "differences", "format_table", "Samples", "evaluate_samples", "samples_from_array", "samples_from_model",
           "samples_from_npz", "get_extractor",
           "feature_stats", "fid", "fid_from_stats", "inception_score", "kid", "mmd2_unbiased", "mode_stats", "prdc"]
