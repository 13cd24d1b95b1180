"""The training engine: the loop (phases over named networks), the run folder, callbacks.

Submodules import on first use, so reading a checkpoint or a config never imports the loop.

This package is also ``gankit.train``, the public function (:func:`gankit.train.run.train`):
importing any submodule binds the attribute ``gankit.train`` to this package, so the package
itself is callable and forwards to that function.
"""
import sys
import types
from importlib import import_module

_EXPORTS = {"Trainer": ".loop", "Run": ".run", "train": ".run", "Callback": ".callback",
            "Phase": "..objectives", "GANObjective": "..objectives", "OBJECTIVES": "..objectives"}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """``gankit.train(recipe, overrides, out=..., ...)``: see :func:`gankit.train.run.train`."""
        return import_module(".run", __name__).train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = list(_EXPORTS)
