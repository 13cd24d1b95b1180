"""The training engine: objective (what each phase computes), loop (phases), run (folder)."""
from .loop import Trainer
from .objective import GANObjective, Phase
from .run import Callback, Run, train
from . import acgan, unrolled  # noqa: F401,E402  (register the objectives)

__all__ = ["Trainer", "GANObjective", "Phase", "Run", "Callback", "train"]
