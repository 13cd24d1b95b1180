"""Training-health monitor (mode collapse, vanishing gradients, instability, divergence)."""
from __future__ import annotations


def health_callbacks(cfg) -> list:
    """The health callbacks a run with ``cfg`` gets."""
    return []
