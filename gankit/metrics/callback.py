"""Evaluation during training: metrics every N steps, best checkpoint chosen by them."""
from __future__ import annotations


def eval_callbacks(cfg) -> list:
    """The evaluation callbacks a run with ``cfg`` gets."""
    return []
