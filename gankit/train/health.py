"""Training-health callbacks added to every run (filled in by the health monitor)."""
from __future__ import annotations


def default_callbacks(cfg) -> list:
    return []
