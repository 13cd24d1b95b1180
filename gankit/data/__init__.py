"""Datasets: one interface (:class:`Dataset`), many sources, nothing downloaded."""
from __future__ import annotations

import torch

from . import idx, images, toy, translation  # noqa: F401  (register the datasets)
from .base import DATASETS, Dataset, EpochSampler, Field, fit_resolution, to_model_range, to_uint8
from ..config import check_name, register_check
from ..errors import ConfigError


@register_check
def _check_data(cfg) -> None:
    check_name("data.name", cfg.data.name, DATASETS)


def load_dataset(cfg, split: str = "train", seed: int = 0) -> Dataset:
    """Build the dataset named by ``cfg`` (a :class:`~gankit.config.DataConfig`)."""
    ds = DATASETS.get(cfg.name)(cfg, split=split, seed=seed)
    if ds.kind == "translation":  # resolution, channels, limit and direction are the dataset's own
        if cfg.exclude_classes:
            raise ConfigError(f"data.exclude_classes: translation data {cfg.name!r} has no classes to leave out")
        return ds
    if ds.kind == "image":
        ds.x = fit_resolution(ds.x, cfg.resolution, cfg.channels)
    if cfg.exclude_classes and split == "train":  # held-out classes (anomaly detection): train split only
        if ds.y is None:
            raise ConfigError(f"data.exclude_classes: dataset {cfg.name!r} has no labels; remove the setting")
        bad = [k for k in cfg.exclude_classes if k >= ds.num_classes]
        if bad:
            raise ConfigError(f"data.exclude_classes: class {bad[0]} is not one of {cfg.name}'s classes "
                              f"0..{ds.num_classes - 1}")
        keep = ~torch.isin(ds.y, torch.tensor(cfg.exclude_classes, dtype=ds.y.dtype))
        ds.x, ds.y = ds.x[keep], ds.y[keep]
    if cfg.limit is not None:
        ds.x = ds.x[: cfg.limit]
        ds.y = ds.y[: cfg.limit] if ds.y is not None else None
    return ds


__all__ = ["DATASETS", "Dataset", "EpochSampler", "Field", "load_dataset", "to_model_range", "to_uint8", "fit_resolution"]
