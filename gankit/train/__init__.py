"""The training engine: the loop (phases over named networks), the run folder, callbacks.

Submodules import on first use, so reading a checkpoint or a config never imports the loop.

This package is also ``gankit.train``, the public function (:func:`gankit.train.run.train`):
importing any submodule binds the attribute ``gankit.train`` to this package, so the package
itself is callable and forwards to that function.
"""
import pkgutil
from importlib import import_module

from ..config import check, check_name, register_check
from ..facade import make_callable

_EXPORTS = {"Trainer": ".loop", "Run": ".run", "train": ".run", "Callback": ".callback",
            "Phase": "..objectives", "GANObjective": "..objectives", "OBJECTIVES": "..objectives"}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    if name in {m.name for m in pkgutil.iter_modules(__path__)}:  # gankit.train.run, as the docs name it
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@register_check
def _check_train(cfg) -> None:
    """Settings whose values name something this package owns: schedules, augmentations, what
    torch.compile supports (config.OWNERS imports this package)."""
    from ..losses import REGULARIZERS
    from ..losses.augment import parse_policy
    from .schedules import SCHEDULES

    parse_policy(cfg.loss.augment)  # DiffAugment's names (loss.augment)
    t = cfg.train
    check_name("train.lr_schedule", t.lr_schedule, SCHEDULES)
    double_backward = [r.name for r in cfg.loss.regularizers  # an unknown name is the losses' check to refuse
                       if r.name in REGULARIZERS and getattr(REGULARIZERS.get(r.name), "double_backward", False)]
    check("train.compile", not t.compile or not double_backward,
          f"false for this recipe: torch.compile does not support the double backward of {', '.join(double_backward)}")


make_callable(__name__, ".run", "train")

__all__ = list(_EXPORTS)
