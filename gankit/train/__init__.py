"""The training engine: the loop (phases over named networks), the run folder, callbacks.

Submodules import on first use, so reading a checkpoint or a config never imports the loop.
"""
from importlib import import_module

_EXPORTS = {"Trainer": ".loop", "Run": ".run", "train": ".run", "Callback": ".callback",
            "Phase": "..objectives", "GANObjective": "..objectives", "OBJECTIVES": "..objectives"}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
