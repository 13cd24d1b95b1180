"""Datasets: one interface (:class:`Dataset`), many sources, nothing downloaded."""
from __future__ import annotations

import dataclasses
import os

from . import audio, idx, images, photos, restoration, toy, translation  # noqa: F401  (register the datasets)
from .images import SIZED_ON_LOAD
from .base import DATASET_OPTIONS, DATASETS, Dataset, EpochSampler, Field, fit_resolution, to_model_range, to_uint8
from .subsets import index_hash, kept_classes, stratified_subset
from ..config import check_name, register_check
from ..errors import ConfigError


@register_check
def _check_data(cfg) -> None:
    check_name("data.name", cfg.data.name, DATASETS)
    if cfg.data.limit is not None and cfg.data.subset_fraction is not None:  # the limit would unbalance the subset
        raise ConfigError("data.limit: data.subset_fraction already chooses the training images (a class-balanced "
                          "subset); give one of them")
    if cfg.data.options:
        check_options = DATASET_OPTIONS.get(cfg.data.name)
        if check_options is None:
            raise ConfigError(f"data.options: dataset {cfg.data.name!r} takes no options; remove them")
        check_options(cfg.data.name, cfg.data.options)


def reference_config(cfg):
    """The data a run's samples are scored against (and a scorer trains on): ``cfg``'s dataset, root and
    size, without the run's own limit, subset or held-out classes; for a dataset with no native image
    size (:data:`SIZED_ON_LOAD`: a folder) also its resolution and channels, the size the model makes, and
    its ``data.options`` (how the files are read: a folder's ``cache``, so ``cache=false`` holds for
    evaluation too)."""
    from ..config import DataConfig

    if cfg.name in SIZED_ON_LOAD:
        return DataConfig(name=cfg.name, root=cfg.root, resolution=cfg.resolution, channels=cfg.channels,
                          options=dict(cfg.options or {}))
    return DataConfig(name=cfg.name, root=cfg.root, size=cfg.size)


def load_dataset(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """Build the dataset named by ``cfg`` (a :class:`~gankit.config.DataConfig`)."""
    if cfg.root and str(cfg.root).startswith("~"):  # `--set data.root=~/x`: the shell leaves that ~ alone
        cfg = dataclasses.replace(cfg, root=os.path.expanduser(cfg.root))
    ds = DATASETS.get(cfg.name)(cfg, split=split, seed=seed)
    if ds.kind == "translation":  # resolution, channels, limit and direction are the dataset's own
        if cfg.exclude_classes:
            raise ConfigError(f"data.exclude_classes: translation data {cfg.name!r} has no classes to leave out")
        if cfg.subset_fraction is not None:
            raise ConfigError(f"data.subset_fraction: translation data {cfg.name!r} has no classes to stratify; "
                              "remove the setting")
        return ds
    if ds.kind == "image":
        ds.x = fit_resolution(ds.x, cfg.resolution, cfg.channels)
    if cfg.subset_fraction is not None and split == "train":  # a labelled subset of the whole train split
        if ds.y is None:
            raise ConfigError(f"data.subset_fraction: dataset {cfg.name!r} has no labels to stratify by; "
                              "remove the setting")
        keep = stratified_subset(ds.y, cfg.subset_fraction, cfg.subset_seed)
        ds.x, ds.y = ds.x[keep], ds.y[keep]
        ds.info = {**ds.info, "subset": {"fraction": cfg.subset_fraction, "seed": cfg.subset_seed,
                                         "n": len(keep), "sha256_16": index_hash(keep)}}
    if cfg.exclude_classes and split == "train":  # held-out classes (anomaly detection): train split only
        if ds.y is None:
            raise ConfigError(f"data.exclude_classes: dataset {cfg.name!r} has no labels; remove the setting")
        keep = kept_classes(ds.y, cfg.exclude_classes, list(ds.info.get("classes") or []), ds.num_classes, cfg.name)
        ds.x, ds.y = ds.x[keep], ds.y[keep]
    if cfg.limit is not None:
        ds.x = ds.x[: cfg.limit]
        ds.y = ds.y[: cfg.limit] if ds.y is not None else None
    return ds


__all__ = ["DATASETS", "Dataset", "EpochSampler", "Field", "load_dataset", "to_model_range", "to_uint8", "fit_resolution", "stratified_subset"]
