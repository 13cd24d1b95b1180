"""Scoring runs: :func:`evaluate` (``gankit.evaluate``, ``gankit eval``) and
:func:`evaluate_translation`.

A run folder, model folder or checkpoint is loaded as a :class:`~gankit.GAN` here (:mod:`gankit.api`)
and handed to :mod:`gankit.metrics`, which scores loaded models, ``.npz`` files and arrays and knows
nothing of run folders: imports run evaluation -> api -> objectives -> metrics, one way.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .api import GAN, load
from .errors import option
from .metrics.evaluate import (DEFAULT_N, DEFAULT_THREADS, EvalError, EvalResult, Samples, check_names, evaluate_samples,
                               model_results, samples_from_array, samples_from_model, samples_from_npz)
from .metrics.features import num_threads
from .metrics.translation import FEATURE_METRICS, score_translator


def load_samples(source, n: int = DEFAULT_N, seed: int = 0, data=None, data_root: Optional[str] = None,
                 checkpoint: str = "latest", labels=None, metrics=None) -> Samples:
    """Resolve ``source`` (run folder, model folder, checkpoint file, ``.npz``, :class:`~gankit.GAN`,
    array) to samples; a model's are made only once ``metrics`` are known to fit its kind of data."""
    if isinstance(source, (str, Path)) and Path(source).suffix == ".npz":
        return samples_from_npz(Path(source), n, data, data_root, seed=seed)  # which n of a larger file
    if isinstance(source, (torch.Tensor, np.ndarray)):
        return samples_from_array(source, data, data_root, n=n, labels=labels)
    if isinstance(source, GAN):
        return samples_from_model(source, source.run_dir, n=n, seed=seed, data=data, data_root=data_root,
                                  checkpoint=checkpoint, labels=labels, metrics=metrics)
    path = Path(source)
    if not path.exists():
        raise EvalError(f"{path}: no such run folder or .npz file")
    exported = path.is_dir() and (path / "config.json").exists()  # a `gankit export --format folder` model
    if path.is_dir() and not exported and not (path / "checkpoints" / f"{checkpoint}.safetensors").exists():
        if (path / "config.yaml").exists():  # a run folder, killed before its first checkpoint or still starting
            from .runlock import before_first_checkpoint
            raise EvalError(f"{path}: no checkpoints/{checkpoint}.safetensors yet; {before_first_checkpoint(path)}")
        raise EvalError(f"{path}: no checkpoints/{checkpoint}.safetensors; give a folder `gankit train` wrote, "
                        "a model folder `gankit export` wrote, or an .npz of samples with --data")
    return samples_from_model(load(path, which=checkpoint), path, n=n, seed=seed, data=data, data_root=data_root,
                              checkpoint=checkpoint, labels=labels, metrics=metrics)


def evaluate_translation(source, split: str = "test", n: Optional[int] = None, seed: int = 0,
                         checkpoint: str = "latest", write: bool = True, metrics=FEATURE_METRICS,
                         features: Optional[str] = None, inception_weights: Optional[str] = None) -> dict:
    """Score a translation run (folder, checkpoint or loaded :class:`~gankit.GAN`) on ``split``:
    ``{direction: {metric: value}}`` plus ``protocol``; writes ``eval.json`` in the run folder
    (:func:`gankit.metrics.translation.score_translator`; ``features="inception"`` with
    ``inception_weights`` for FID on the standard InceptionV3)."""
    model = source if isinstance(source, GAN) else load(source, which=checkpoint)
    return score_translator(model, split=split, n=n, seed=seed, checkpoint=checkpoint, write=write, metrics=metrics,
                            features=features, inception_weights=inception_weights)


def evaluate(source, metrics=None, n: int = DEFAULT_N, features: Optional[str] = None, split: str = "test",
             data: Optional[str] = None, data_root: Optional[str] = None, seed: int = 0,
             inception_weights: Optional[str] = None, checkpoint: str = "latest", write: bool = True,
             labels=None, quiet: bool = False, threads: Optional[int] = DEFAULT_THREADS) -> EvalResult:
    """Evaluate generated samples against real data; the function behind ``gankit eval``.

    ``source``: a run folder, a checkpoint file, an ``.npz`` with ``x`` (N, C, H, W) in [-1, 1]
    or (N, D) and optional ``y`` labels, a :class:`~gankit.GAN`, or an array (then ``data`` names
    the dataset). ``metrics``: names or "fid,kid" (default: fid, kid, is, pr, dc for images;
    modes, fid, kid, pr, dc for vectors). ``n``: generated samples (and at most as many real
    ones from ``split``). ``features``: extractor name (default: ``domain`` for images, ``raw``
    for vectors). Writes ``eval.json`` in the run folder (``<name>.eval.json`` beside an .npz)
    when ``write``. ``threads``: torch threads while evaluating (None = as set). A run or model
    folder whose objective computes numbers about itself (:func:`model_results`: a semi-supervised
    classifier's accuracy on ``split``) gets them as further results, each with its card.
    """
    if n < 2:
        raise EvalError(f"{option('-n', n)}: need at least 2 samples")
    check_names(metrics, features)  # before the samples are made (10,000 of a StyleGAN take minutes on a CPU)
    log = None if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    samples = load_samples(source, n=n, seed=seed, data=data, data_root=data_root, checkpoint=checkpoint,
                           labels=labels, metrics=metrics)
    if samples.x is None:  # a reconstruction model: no samples to score
        if metrics:
            raise EvalError(f"{option('--metrics', metrics if isinstance(metrics, str) else ','.join(metrics))}: "
                            f"{samples.source.get('label')} ({samples.model.cfg.loss.objective}) makes no samples; "
                            f"gankit eval reports the model's own numbers without {option('--metrics')}")
        result = EvalResult(samples.source, [])
    else:
        result = evaluate_samples(samples, metrics=metrics, features=features, split=split, seed=seed,
                                  inception_weights=inception_weights, log=log, threads=threads)
    if samples.model is not None:  # the model's own numbers (Objective.evaluate_model), if it has any
        tic = time.monotonic()
        with num_threads(threads):
            own = model_results(samples.model, split=split, seed=seed)
        if own:
            result.results.extend(own)
            result.seconds["model"] = round(time.monotonic() - tic, 3)
    if not result.results:  # a model that makes no samples and reports nothing about itself
        m = samples.model
        why = ("no class was held out (data.exclude_classes is empty), so there is no AUROC; train with "
               "data.exclude_classes=[k] to measure one" if m is not None and hasattr(m.objective, "score_images")
               else "it makes no samples and reports no numbers of its own")
        raise EvalError(f"{samples.source.get('label', source)}: nothing to evaluate: {why}")
    if write and samples.out_path is not None:
        from .utils import atomic_write_text
        atomic_write_text(samples.out_path, json.dumps(result.to_dict(), indent=1) + "\n")
        result.path = samples.out_path
    return result
