"""Scoring samples on one protocol: :func:`evaluate_samples`.

Stages: samples -> (checked) -> features (real ones cached per dataset, split and
extractor) -> statistics -> metric values, each value with its evaluation card. Samples come from
a loaded model, an ``.npz`` or an array; :mod:`gankit.evaluation` resolves run folders to models
(``gankit.evaluate``, ``gankit eval``).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from ..errors import GankitError, option
from .base import METRICS, EvalContext, random_subset
from .cache import cache_dir, load_tensors, save_tensors, sha256_file, sha256_tensor
from .card import card_id, format_table
from .features import FEATURES, FeatureExtractor, Features, default_features, get_extractor, num_threads

DEFAULT_N = 10_000
IMAGE_METRICS = ("fid", "kid", "is", "pr", "dc")
VECTOR_METRICS = ("modes", "fid", "kid", "pr", "dc")


class EvalError(GankitError):
    """Samples or options that cannot be evaluated; the message says what to change."""


@dataclass
class Samples:
    """Generated samples to score, in model range, and where they came from."""

    x: Optional[torch.Tensor]        # (N, C, H, W) float in [-1, 1] or (N, D); None: a model that makes none
    y: Optional[torch.Tensor]        # (N,) int64 class labels, or None
    data_cfg: object                 # DataConfig of the data they imitate
    source: dict                     # what was evaluated (run folder + step, npz file + hash, array)
    out_path: Optional[Path] = None  # where eval.json goes (None: not written)
    model: Optional[object] = None   # the GAN they came from (run or model folder), for its own numbers
    subset: Optional[dict] = None    # {"n", "of", "seed"}: a seeded random n of a larger file or array; None: all


@dataclass
class EvalResult:
    """The values of one evaluation, each with its card; ``result["fid"]`` gives a value."""

    source: dict
    results: List[dict]
    seconds: Dict[str, float] = field(default_factory=dict)
    path: Optional[Path] = None

    def __getitem__(self, name: str) -> float:
        for r in self.results:
            if r["name"] == name:
                return r["value"]
        raise KeyError(f"no metric {name!r} in this evaluation; have: {', '.join(self.names())}")

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def __iter__(self):
        """The metric names, as a dict iterates its keys (``dict(result.scalars())`` for the values)."""
        return iter(self.names())

    def names(self) -> List[str]:
        return [r["name"] for r in self.results]

    def scalars(self) -> Dict[str, float]:
        out = {}
        for r in self.results:
            out[r["name"]] = r["value"]
            if r.get("std") is not None:
                out[r["name"] + "_std"] = r["std"]
        return out

    def to_dict(self) -> dict:
        return {"source": self.source, "results": self.results, "seconds": self.seconds}

    def table(self, label: Optional[str] = None) -> str:
        return format_table([(label or self.source.get("label", "value"), self.results)])


# -- samples ------------------------------------------------------------------------------------

def _data_cfg(data, data_root=None, size=None):
    from ..config import DataConfig

    if data is None:
        return None
    if isinstance(data, DataConfig):
        return data
    from ..data import DATASETS
    if data not in DATASETS:
        raise EvalError(f"{option('--data', data)}: unknown dataset; choose one of: {', '.join(DATASETS.names())}")
    kw = {"name": data, "root": data_root}
    if size is not None:
        kw["size"] = size
    return DataConfig(**kw)


def sized_like(cfg, x: torch.Tensor):
    """``cfg`` of a dataset with no native image size (:data:`~gankit.data.images.SIZED_ON_LOAD`: a
    folder) whose resolution and channels are unset: read at the samples' own (C, H, W), the size a
    folder model trained on, whatever it was; any other ``cfg`` as it is."""
    import dataclasses

    from ..data.images import SIZED_ON_LOAD

    if cfg is None or cfg.name not in SIZED_ON_LOAD or x.ndim != 4 or x.shape[1] not in (1, 3):
        return cfg
    h, w = int(x.shape[2]), int(x.shape[3])
    return dataclasses.replace(cfg, resolution=cfg.resolution if cfg.resolution is not None else (h if h == w else (h, w)),
                               channels=cfg.channels if cfg.channels is not None else int(x.shape[1]))


def samples_from_array(x, data, data_root: Optional[str] = None, n: int = DEFAULT_N, labels=None,
                       seed: int = 0) -> Samples:
    """An array (or tensor) of samples in model range imitating dataset ``data``; of more than ``n``,
    a random ``n`` (seed ``seed``)."""
    cfg = _data_cfg(data, data_root)
    if cfg is None:
        raise EvalError("evaluating an array needs data=NAME (the dataset it imitates)")
    x = torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x).float()
    y = torch.as_tensor(labels).long() if labels is not None else None
    x, y, subset = take(x, y, n, seed)
    return Samples(x, y, sized_like(cfg, x), {"kind": "array", "label": "samples"}, subset=subset)


def take(x, y, n: int, seed: int):
    """``n`` of the samples ``x`` (and labels ``y``): all of them, or a seeded random ``n``
    (:func:`~gankit.metrics.base.random_subset`), never the first ``n`` of a file that may be sorted
    by class. Returns (x, y, subset) with ``subset`` = {"n", "of", "seed"} for the card, or None."""
    idx = random_subset(len(x), n, seed)
    if idx is None:
        return x, y, None
    idx = idx.sort().values                       # keep the file's order among the chosen
    return x[idx], (y[idx] if y is not None else None), {"n": int(n), "of": len(x), "seed": int(seed)}


def samples_from_model(model, path=None, n: int = DEFAULT_N, seed: int = 0, data=None,
                       data_root: Optional[str] = None, checkpoint: str = "latest", labels=None,
                       metrics=None) -> Samples:
    """``n`` samples (seed ``seed``) of a loaded model (a :class:`~gankit.GAN`), which came from the
    run or model folder or checkpoint ``path`` (``eval.json`` goes into that folder). ``data``
    (a dataset name) scores them against another dataset than the model's. ``metrics`` (names, or
    "fid,kid") are checked against the kind of data the model makes (its checkpoint says) before the
    ``n`` are made: 10,000 of a StyleGAN take minutes on a CPU."""
    from ..data import reference_config

    ref = _data_cfg(data, data_root) if data is not None else reference_config(model.cfg.data)
    run_dir = Path(path) if path is not None and Path(path).is_dir() else None
    src = {"kind": "run", "path": str(path) if path else None, "name": model.cfg.name, "checkpoint": checkpoint,
           "step": model.step, "label": Path(path).name if path else model.cfg.name}
    out = run_dir / "eval.json" if run_dir else None
    if getattr(model.objective, "kind", "generation") == "reconstruction":
        # A model that scores real images (an anomaly detector) makes no new samples: only its own numbers.
        return Samples(None, None, ref, src, out, model=model)
    if metrics:
        model.require_generation()
        check_kinds(check_names(metrics), model.info.kind)   # image or vector
    x, y = model.sample(n, seed=seed, labels=labels)
    return Samples(x, y, sized_like(ref, x), src, out, model=model)


def samples_from_npz(path: Path, n: int, data, data_root, seed: int = 0) -> Samples:
    """The samples ``x`` (and labels ``y``) of an ``.npz`` file, imitating dataset ``data``; of more
    than ``n``, a random ``n`` (seed ``seed``; on the card), not the first ``n``."""
    if not path.is_file():
        raise EvalError(f"{path}: no such file")
    cfg = _data_cfg(data, data_root)
    if cfg is None:
        raise EvalError(f"{path}: an .npz of samples needs {option('--data', 'NAME')} (the dataset the samples "
                        "imitate)")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f.files:
                raise EvalError(f"{path}: no array 'x' (found: {', '.join(f.files) or 'none'}); save samples as "
                                "np.savez(path, x=samples, y=labels)")
            x, y = f["x"], (f["y"] if "y" in f.files else None)
    except (OSError, ValueError) as e:
        raise EvalError(f"{path}: not a readable .npz ({e})") from None
    if not np.issubdtype(x.dtype, np.number):
        raise EvalError(f"{path}: x has dtype {x.dtype}; expected floats in [-1, 1]")
    if y is not None and (y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer)):
        raise EvalError(f"{path}: y must be integer class labels of shape ({len(x)},), got {y.dtype} {y.shape}")
    xt, yt, subset = take(torch.from_numpy(np.ascontiguousarray(x)).float(),
                          torch.from_numpy(y.astype(np.int64)) if y is not None else None, n, seed)
    src = {"kind": "npz", "path": str(path), "sha256": sha256_file(path), "label": path.name}
    return Samples(xt, yt, sized_like(cfg, xt), src, path.with_name(path.stem + ".eval.json"), subset=subset)


def check_samples(x: torch.Tensor, kind: str, ref_shape: tuple, exact_shape: bool) -> List[str]:
    """Raise :class:`EvalError` for unusable samples; return warnings for doubtful ones."""
    warnings = []
    want = "(N, C, H, W) images" if kind == "image" else f"(N, {ref_shape[0]}) vectors"
    if x.ndim != len(ref_shape) + 1:
        raise EvalError(f"samples have shape {tuple(x.shape)}; the reference data holds {want}")
    if exact_shape and tuple(x.shape[1:]) != tuple(ref_shape):
        raise EvalError(f"samples have shape {tuple(x.shape[1:])} per sample, the reference data "
                        f"{tuple(ref_shape)}; these features compare them only at the same shape")
    if kind == "image" and x.shape[1] not in (1, 3):
        raise EvalError(f"samples have {x.shape[1]} channels; images need 1 or 3 (shape (N, C, H, W))")
    if len(x) < 2:
        raise EvalError(f"{len(x)} sample(s): need at least 2 (use -n)")
    bad = (~torch.isfinite(x)).reshape(len(x), -1).any(1)
    if bad.any():
        raise EvalError(f"{int(bad.sum())} of {len(x)} samples contain NaN or inf; the generator diverged "
                        "or the file is corrupt")
    if kind == "image":
        lo, hi = float(x.min()), float(x.max())
        if hi > 1.5 or lo < -1.5:
            hint = " (looks like [0, 255]: use x / 127.5 - 1)" if lo >= 0 and hi > 2 else ""
            raise EvalError(f"sample values span [{lo:.3g}, {hi:.3g}]; expected [-1, 1]{hint}")
        if lo >= 0.0 and hi <= 1.0:
            warnings.append(f"all sample values lie in [{lo:.3g}, {hi:.3g}]: gankit expects [-1, 1]; "
                            "if the samples are in [0, 1], pass x * 2 - 1")
        out = float(((x < -1) | (x > 1)).float().mean())
        if out > 0:
            warnings.append(f"{100 * out:.2f}% of sample values were outside [-1, 1] and were clamped")
    return warnings


# -- reference data and its cached features -----------------------------------------------------

def load_reference(data_cfg, split: str):
    from ..data import load_dataset, reference_config

    try:
        ds = load_dataset(reference_config(data_cfg), split, seed=0)
    except (ValueError, KeyError) as e:
        raise EvalError(f"reference data {data_cfg.name} split {split!r}: {e}") from None
    return ds


def reference_features(extractor: FeatureExtractor, ds, split: str, data_sha: str,
                       log: Optional[Callable[[str], None]] = None) -> Features:
    """Features of the whole reference split, cached under ``<cache>/stats``."""
    if extractor.name == "raw":
        return extractor(ds.all_model_range())
    import hashlib
    pre = hashlib.sha256(extractor.preprocessing.encode()).hexdigest()[:8]
    path = (cache_dir() / "stats" /
            f"{ds.name}-{split}-{extractor.name}-{extractor.sha256[:12]}-{pre}-{data_sha[:12]}.safetensors")
    if path.exists():
        try:
            t, _ = load_tensors(path)
            return Features(t["features"], t.get("logits"))
        except (OSError, ValueError, KeyError) as e:  # damaged: recompute and overwrite (atomically)
            print(f"warning: {path}: unreadable cached features ({e}); computing them again", file=sys.stderr)
    if log:
        log(f"computing {extractor.name} features of {ds.name}/{split} ({len(ds)} images; cached at {path})")
    feats = extractor(ds.all_model_range())
    tensors = {"features": feats.features}
    if feats.logits is not None:
        tensors["logits"] = feats.logits
    mu = feats.features.double().mean(0)
    tensors["mu"] = mu
    tensors["sigma"] = torch.from_numpy(np.cov(feats.features.double().numpy(), rowvar=False))
    save_tensors(path, tensors, {"dataset": ds.name, "split": split, "features": extractor.name,
                                 "features_sha256": extractor.sha256, "preprocessing": extractor.preprocessing,
                                 "data_sha256": data_sha, "n": len(ds)})
    return feats


# -- the evaluation -----------------------------------------------------------------------------

def check_names(metrics=None, features: Optional[str] = None) -> List[str]:
    """The metric names in ``metrics`` ("fid,kid" or a list; None: the defaults), each checked against
    the registry, and ``features`` too: one line naming an unknown one, before anything is computed."""
    if features is not None and features not in FEATURES:
        raise EvalError(f"{option('--features', features)}: unknown feature extractor; choose from: "
                        f"{', '.join(FEATURES.names())}")
    if metrics is None:
        return []
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    for m in names:
        if m not in METRICS:
            raise EvalError(f"{option('--metrics', m)}: unknown metric; choose from: {', '.join(METRICS.names())}")
    return names


def resolve_metrics(metrics, kind: str, has_modes: bool) -> List[str]:
    if metrics is None:
        names = list(IMAGE_METRICS if kind == "image" else VECTOR_METRICS)
        return [m for m in names if m != "modes" or has_modes]
    names = check_names(metrics)
    check_kinds(names, kind)
    return names


def check_kinds(names: List[str], kind: str) -> None:
    """One line for the first metric in ``names`` that is not defined for ``kind`` ("image" or "vector") data."""
    for m in names:
        if kind not in METRICS.get(m).kinds:
            raise EvalError(f"{option('--metrics', m)}: only for {' or '.join(METRICS.get(m).kinds)} data, "
                            f"and this data is {kind}")


# PyTorch's default thread count: on the idle 2-core machine 2 threads scored 10k vs 10k in
# 10.5 s against 12.5-15 s for 1; on a shared, loaded machine pass threads=1 (5-10x faster there).
DEFAULT_THREADS = None


def evaluate_samples(samples: Samples, metrics=None, features: Optional[str] = None, split: str = "test",
                     seed: int = 0, n_real: Optional[int] = None, inception_weights: Optional[str] = None,
                     extractor: Optional[FeatureExtractor] = None, reference=None,
                     log: Optional[Callable[[str], None]] = None, threads: Optional[int] = DEFAULT_THREADS
                     ) -> EvalResult:
    """Score ``samples`` against ``split`` of their dataset. ``extractor``/``reference`` may be
    passed in to reuse them across calls (the training callback does). ``threads``: torch
    threads while evaluating (None = leave as is)."""
    with num_threads(threads):
        return _evaluate_samples(samples, metrics, features, split, seed, n_real, inception_weights, extractor,
                                 reference, log)


def _evaluate_samples(samples, metrics, features, split, seed, n_real, inception_weights, extractor, reference,
                      log) -> EvalResult:
    from ..version import __version__

    tic = time.monotonic()
    ds = reference if reference is not None else load_reference(samples.data_cfg, split)
    kind = ds.kind
    names = resolve_metrics(metrics, kind, ds.modes is not None)
    if "cas" in names and samples.y is None:  # fail before any expensive stage
        raise EvalError("metric cas: needs class labels with the generated samples (a conditional model, "
                        "or y in the .npz)")
    need_features = any(METRICS.get(m).uses_features for m in names)
    if extractor is None and need_features:
        fname = features or default_features(samples.data_cfg, kind)
        extractor = get_extractor(fname, samples.data_cfg, inception_weights=inception_weights)
    if metrics is None and "is" in names and extractor is not None and not extractor.num_classes:
        # IS scores class logits; the domain network of unlabelled images (a folder) is trained to tell
        # rotations and has none. Asked for by name, IS still says so in one line.
        names.remove("is")
        if log:
            log(f"IS left out of the default metrics: the {extractor.name} features have no class head")
    x = samples.x
    warnings = check_samples(x, kind, ds.sample_shape, exact_shape=extractor is None or extractor.name == "raw")
    if kind == "image":
        x = x.clamp(-1, 1)
    if samples.y is not None and ds.num_classes and (samples.y.min() < 0 or samples.y.max() >= ds.num_classes):
        raise EvalError(f"labels y span {int(samples.y.min())}..{int(samples.y.max())}; "
                        f"{ds.name} has classes 0..{ds.num_classes - 1}")
    data_sha = sha256_tensor(ds.x)
    n_ref = min(n_real or len(x), len(ds))
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n_ref]
    batch = ds.batch(idx)
    real, real_y = batch["x"], batch["y"]
    seconds: Dict[str, float] = {"load": time.monotonic() - tic}

    def real_feats():
        t0 = time.monotonic()
        full = reference_features(extractor, ds, split, data_sha, log)
        seconds["real_features"] = time.monotonic() - t0
        return Features(full.features[idx], full.logits[idx] if full.logits is not None else None)

    ctx = EvalContext(fake=x, fake_labels=samples.y, real=real, real_labels=real_y, dataset=ds,
                      data_cfg=samples.data_cfg, extractor=extractor, seed=seed, real_features_fn=real_feats,
                      log=log)
    if need_features:
        t0 = time.monotonic()
        ctx.fake_features  # noqa: B018  (compute once, timed)
        seconds["fake_features"] = time.monotonic() - t0
    results = []
    for m in names:
        metric = METRICS.get(m)
        t0 = time.monotonic()
        try:
            values = metric.compute(ctx)
        except ValueError as e:
            raise EvalError(f"metric {m}: {e}") from None
        seconds[m] = time.monotonic() - t0
        own = list(values.pop("warnings", ()))  # a metric's doubts about its own judge (a classifier at chance)
        card = _card(metric, ctx, extractor, ds, split, data_sha, n_ref, len(x), seed, __version__, warnings + own,
                     samples.subset)
        for out in metric.outputs:
            v = values[out]
            std = values.get(out + "_std")
            c = dict(card, metric=out)
            results.append({"name": out, "value": _num(v), "std": _num(std), "card": c, "card_id": card_id(c)})
    seconds["total"] = time.monotonic() - tic
    return EvalResult(samples.source, results, {k: round(v, 3) for k, v in seconds.items()})


def _num(v):
    if v is None:
        return None
    v = float(v) if not isinstance(v, int) else v
    return None if isinstance(v, float) and math.isnan(v) else v


def on_training_images(ds) -> str:
    """The warning of every card scored against ``ds`` when it is its dataset's training images."""
    return f"the reference is the training images: this {ds.name} has no held-out split (test/ or val/)"


def _card(metric, ctx, extractor, ds, split, data_sha, n_real, n_fake, seed, version, warnings,
          subset=None) -> dict:
    params = dict(metric.params)
    w = list(warnings)
    # The samples as scored: their shape, what the extractor did to it (a 34 px run's samples resized to
    # the 28 px network), and which of a larger file were taken, so different inputs never share a card.
    shape = [int(d) for d in ctx.fake.shape[1:]]
    fit = extractor.describe_input(shape) if metric.uses_features and extractor is not None else None
    inp = {"shape": shape, "fit": fit, "subset": subset}
    if metric.name == "kid":
        params["subset_size"] = min(params["subset_size"], n_real, n_fake)
    if metric.name == "modes":
        if n_fake > params["samples"]:
            params["subset"] = f"random {params['samples']} (seed {seed})"
        n_fake = min(n_fake, params["samples"])
        params.update(num_modes=len(ds.modes), mode_std=ds.mode_std)
        if n_fake < params["samples"]:
            w.append(f"{n_fake} samples scored; the VEEGAN/PacGAN protocol uses {params['samples']}")
    if metric.uses_real and ds.info.get("test_is_train"):
        w.append(on_training_images(ds))
    if metric.uses_features and extractor is not None:
        w += getattr(extractor, "warnings", [])  # a feature network that scored near chance when trained
        dim = ctx.fake_features.features.shape[1]
        if metric.name == "fid" and min(n_real, n_fake) <= dim:
            w.append(f"{min(n_real, n_fake)} samples for {dim}-d features: the covariance is singular and FID "
                     "is unreliable; use more samples (-n)")
        elif metric.name == "fid" and min(n_real, n_fake) < 2000:
            w.append(f"FID from {min(n_real, n_fake)} samples is biased upwards; compare only at equal n")
    if metric.name == "cas":
        params["classifier"] = "DomainNet" if ds.kind == "image" else "MLP"
    card = {
        "metric": metric.name,
        "params": params,
        "features": extractor.name if metric.uses_features and extractor is not None else None,
        "features_sha256": extractor.sha256 if metric.uses_features and extractor is not None else None,
        "preprocessing": extractor.preprocessing if metric.uses_features and extractor is not None else None,
        "input": inp,
        "reference": {"dataset": ds.name, "split": split, "sha256": data_sha},
        "n_real": n_real if metric.uses_real else 0,
        "n_fake": n_fake,
        "seed": seed,
        "gankit": version,
        "warnings": w,
    }
    if metric.name == "cas":
        card["n_real"] = len(ds)
    return card


def held_out_classes(data_cfg, ds) -> list:
    """The anomaly classes (``data.exclude_classes`` and a folder's test/ classes that train/ lacks) as
    the card records them, sorted: ``"index (name)"`` when the data names
    its classes (a folder's sub-folders), else the indices; given by name or by index, the same."""
    from ..data.subsets import anomaly_classes

    names = list(ds.info.get("classes") or [])
    return [f"{i} ({names[i]})" if i < len(names) else i for i in anomaly_classes(data_cfg.exclude_classes, ds)]


def model_results(model, split: str = "test", seed: int = 0) -> List[dict]:
    """The numbers a model computes about itself on real data (``Objective.evaluate_model``: a
    semi-supervised classifier's accuracy, an anomaly detector's AUROC), as results with cards like
    the sample metrics'; ``[]`` for a model judged by its samples alone.

    The card's ``params`` name the objective and say what the number is: the objective's
    ``model_metric_descriptions[name]`` (formatted with ``n``, ``split``, ``dataset`` and ``K``, the
    model's classes), else a generic sentence. ``n_real`` is the size of the whole ``split``."""
    from ..version import __version__

    objective = model.objective
    values = objective.evaluate_model(model.cfg.data, split=split, seed=seed)
    if not values:
        return []
    ds = load_reference(model.cfg.data, split)
    data_sha = sha256_tensor(ds.x)
    name = getattr(objective, "registered_name", type(objective).__name__)
    descriptions = getattr(objective, "model_metric_descriptions", {})
    k = getattr(getattr(objective, "options", None), "num_classes", ds.num_classes)
    params = {"objective": name}
    held = held_out_classes(model.cfg.data, ds)
    if held:  # which classes were the positives: runs holding out different classes never share a card id
        params["held_out_classes"] = held
    warnings = [on_training_images(ds)] if ds.info.get("test_is_train") else []
    results = []
    for metric, v in values.items():
        what = descriptions.get(metric, "{metric} computed by the model itself on the {n} images of the {split} split")
        what = what.format(metric=metric, n=len(ds), split=split, dataset=ds.name, K=k)
        card = {"metric": metric, "params": {**params, "what": what}, "features": None,
                "features_sha256": None, "preprocessing": None, "input": None,
                "reference": {"dataset": ds.name, "split": split, "sha256": data_sha},
                "n_real": len(ds), "n_fake": 0, "seed": seed, "gankit": __version__, "warnings": list(warnings)}
        results.append({"name": metric, "value": _num(v), "std": None, "card": card, "card_id": card_id(card)})
    return results
