"""Class-stratified, seeded subsets of a labelled dataset (``data.subset_fraction``, a folder's
``data.limit``) and the held-out classes of ``data.exclude_classes``."""
from __future__ import annotations

import hashlib
import math

import torch

from ..errors import ConfigError


def stratified_subset(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted int64 indices of ``fraction * len(y)`` samples (halves round up), each class in proportion.

    Class c gets ``floor(fraction * n_c)`` samples, and the samples still missing to reach the
    total go one each to the classes with the largest remainders (ties: lower class first), so a
    balanced dataset gives every class exactly the same count (Fashion-MNIST at 1 %: 60 of each
    of the 10 classes). Within a class the kept samples are the first ones of one permutation of
    the whole dataset drawn from ``seed``: the same seed gives the same indices, and a larger
    fraction with the same seed keeps a superset.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    y = y.long().cpu()
    n = len(y)
    counts = torch.bincount(y, minlength=int(y.max()) + 1 if n else 0).tolist()
    quota = [fraction * c for c in counts]
    take = [math.floor(q + 1e-9) for q in quota]  # 1e-9: 0.29 * 100 is 28.999999999999996 in floats
    rest = math.floor(fraction * n + 0.5 + 1e-9) - sum(take)
    by_remainder = sorted(range(len(counts)), key=lambda c: (-(quota[c] - take[c]), c))
    for c in by_remainder[:max(rest, 0)]:
        take[c] += 1
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    y_order = y[order]
    picked = [order[y_order == c][:k] for c, k in enumerate(take) if k]
    return torch.cat(picked).sort().values if picked else torch.zeros(0, dtype=torch.long)


def index_hash(index: torch.Tensor) -> str:
    """SHA-256 (first 16 hex digits) of the int64 indices, to record which subset a run used."""
    return hashlib.sha256(index.long().cpu().numpy().tobytes()).hexdigest()[:16]


def spread_limit(y: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``min(limit, len(y))`` samples spread over the classes of ``y`` in proportion
    (:func:`stratified_subset`, drawn from ``seed``), rather than the first ``limit`` in path order (a
    class-sorted folder would give the first classes only). Unlabelled data: pass zeros."""
    n = len(y)
    if limit >= n:
        return torch.arange(n)
    return stratified_subset(y, limit / n, seed)


def class_indices(classes, names: list, num_classes: int, dataset: str) -> list:
    """``data.exclude_classes`` as class indices: an int is an index, a str a class name (a folder's
    sub-folder name; its index is its place among the sorted names). One ConfigError line naming the
    key for a name or index the data does not have."""
    out = []
    for k in classes:
        if isinstance(k, str) and not k.isdigit():
            if k not in names:
                known = f"its classes: {', '.join(names)}" if names else "its classes have no names; give indices"
                raise ConfigError(f"data.exclude_classes: {dataset} has no class named {k!r}; {known}")
            out.append(names.index(k))
            continue
        if not 0 <= int(k) < num_classes:
            raise ConfigError(f"data.exclude_classes: class {k} is not one of {dataset}'s classes "
                              f"0..{num_classes - 1}")
        out.append(int(k))
    if len(set(out)) != len(out):
        raise ConfigError(f"data.exclude_classes: {list(classes)} names one class twice")
    return out


def kept_classes(y: torch.Tensor, exclude, names: list, num_classes: int, dataset: str) -> torch.Tensor:
    """The (N,) bool mask of the samples of ``y`` whose class ``data.exclude_classes`` (``exclude``)
    keeps; one ConfigError line when it keeps none."""
    held = class_indices(exclude, names, num_classes, dataset)
    keep = ~torch.isin(y, torch.tensor(held, dtype=y.dtype))
    if not keep.any():
        raise ConfigError(f"data.exclude_classes: leaves none of {dataset}'s training images (every class "
                          "present is held out); hold out fewer classes")
    return keep


def anomaly_classes(exclude, ds) -> list:
    """Sorted indices of the classes an anomaly detector scores as positive in the split ``ds``: those of
    ``data.exclude_classes`` (``exclude``) and a folder's held-out classes that its train/ lacks
    (``info["anomalous_classes"]``, the MVTec AD layout)."""
    names = list(ds.info.get("classes") or [])
    held = set(class_indices(exclude, names, ds.num_classes, ds.name)) if exclude else set()
    return sorted(held | {names.index(c) for c in ds.info.get("anomalous_classes") or []})
