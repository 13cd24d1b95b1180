"""The callbacks every run gets, from the modules that own them."""
from __future__ import annotations


def default_callbacks(cfg) -> list:
    from .evaluation import eval_callbacks
    from .health import health_callbacks
    from .snapshots import snapshot_callbacks

    return [*eval_callbacks(cfg), *health_callbacks(cfg), *snapshot_callbacks(cfg)]
