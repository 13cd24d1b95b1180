"""What the benchmark scripts share: a mean ± sample standard deviation cell, a run folder per arm and seed."""
from __future__ import annotations

import math
import statistics
from pathlib import Path


def mean_std(values, fmt: str = ".2f", std_fmt: str | None = None, empty: str = "-") -> str:
    """``"m ± s"`` over the finite ``values`` (one value: itself; none: ``empty``)."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return empty
    if len(vals) == 1:
        return format(vals[0], fmt)
    return f"{format(statistics.mean(vals), fmt)} ± {format(statistics.stdev(vals), std_fmt or fmt)}"


def run_dir(runs: Path, arm: str, seed: int) -> Path:
    """Where an arm's run of ``seed`` trains (seed 0: ``runs/<arm>``, as before seeds were named)."""
    return runs / (arm if seed == 0 else f"{arm}-seed{seed}")
