"""What an objective declares, and the registry of objectives.

An objective owns its named networks and everything it keeps between steps. It declares:

* ``build_networks(cfg, data)`` (a classmethod): ``{name: module}``, e.g. ``{"G", "D"}`` or
  ``{"G_AB", "G_BA", "D_A", "D_B"}``; the engine moves, converts and broadcasts them and hands
  them back to the constructor;
* ``optimizers``: ``{optimiser name: OptimGroup}`` — which networks each optimiser steps and
  which short config key (``train.g_optim`` / ``train.d_optim``) it defaults to;
* ``ema``: the networks whose exponential moving average the run keeps (when ``train.ema`` is set);
* ``phases(d_steps)``: the :class:`Phase` list — each names the optimiser it steps and the
  networks it trains; every other network is frozen for that phase;
* ``task``: how outputs are made from inputs (:mod:`gankit.tasks`), and ``tasks()`` when there
  are several (CycleGAN's two directions);
* ``accumulate_gradients(phase, batch, batch_size)`` -> detached statistics to log;
* ``prepare()``: a hook when training starts (frozen feature networks, weights from another run);
* ``on_step(step, progress)``: a hook before each step, with the fraction of the budget spent;
* ``state_dict()`` / ``load_state_dict()`` for what it keeps between steps (an image pool, a
  running mean, a growth stage); saved in every checkpoint.

The training loop (:mod:`gankit.train.loop`) iterates phases, named networks and named
optimisers; it never names a network, a loss or a model.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry

#: ``loss.objective`` -> an :class:`Objective` subclass
OBJECTIVES = Registry("objective")


@dataclass
class Phase:
    """One kind of optimiser step. It runs ``repeats`` times every ``every`` generator steps."""

    name: str
    optimizer: str                    # the optimiser this phase steps (a key of Objective.optimizers)
    nets: Tuple[str, ...]             # the networks it trains; every other network is frozen
    every: int = 1
    repeats: int = 1
    needs_data: bool = True           # draws a real batch per repeat
    # A lazy regulariser (StyleGAN2, App. B): a phase with every > 1 that adds to its optimiser's steps, whose
    # lr and Adam betas the trainer then corrects (train.lazy_correction); a phase merely run less often
    # (a schedule of your own) leaves them as configured.
    lazy: bool = False
    # Networks that stay differentiable although this phase does not step them: their graph is
    # reused by a later phase (a GAN's D step keeps G's forward for the G step that follows).
    graph: Tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class OptimGroup:
    nets: Tuple[str, ...]             # networks whose parameters this optimiser steps
    short: str                        # train.<short> holds its settings unless train.optim.<name> does


@dataclass(frozen=True)
class NoOptions:
    """An objective without settings of its own."""


class Objective:
    """Base class: see the module docstring for what a subclass declares."""

    Options = NoOptions                # the dataclass of ``loss.options`` for this objective
    kind = "generation"                # what its task does: generation | translation
    ema: Tuple[str, ...] = ()
    optimizers: Dict[str, OptimGroup] = {}
    # True when every phase launches the same device work at every step, whatever the host did in
    # between (no Python number from on_step or a schedule inside a kernel, no host sync, no
    # branch on a tensor's value), so a CUDA graph of the step can be replayed (train.cuda_graphs).
    capturable: bool = False
    # True when its G step can take a relativistic loss (``AdversarialLoss.relativistic``: G's loss also
    # sees D on a real batch); others refuse one in check_config.
    relativistic_losses: bool = False

    def __init__(self, nets: Dict[str, nn.Module], cfg, data,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self.nets = nets
        self.cfg = cfg
        self.autocast = autocast
        self.options = parse_options(type(self), cfg.loss.options)

    # Set by the Trainer for fp16: scales a loss before backward (torch.amp.GradScaler.scale).
    loss_scale: Optional[Callable[[Tensor], Tensor]] = None

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        raise NotImplementedError

    @classmethod
    def extra_work(cls, cfg, options) -> List[str]:
        """What a step of this objective does beyond the plain step ``gankit bench`` times it against
        (its row's footnote), from ``cfg`` and its parsed ``options``: nothing here."""
        return []

    @classmethod
    def check_config(cls, cfg) -> None:
        """Fail with one line naming the key when ``cfg`` cannot work with this objective
        (network settings, options); called before training starts."""
        from ..losses import LOSSES

        parse_options(cls, cfg.loss.options)
        if cfg.loss.name in LOSSES and LOSSES.get(cfg.loss.name).relativistic and not cls.relativistic_losses:
            able = ", ".join(n for n, c in OBJECTIVES.items() if c.relativistic_losses)
            raise ConfigError(f"loss.name: {cfg.loss.name} compares G's fakes with D on real data, which objective "
                              f"{cls.registered_name} does not; use it with {able}")

    def backward(self, loss: Tensor) -> None:
        """Backpropagate ``loss``, scaled when training in fp16 so small gradients do not underflow."""
        (self.loss_scale(loss) if self.loss_scale is not None else loss).backward()

    def prepare(self) -> None:
        """Called once by the trainer, before it copies networks for EMA and builds optimisers (a
        resumed run then loads its checkpoint over whatever this set): load frozen helper networks,
        start from another run's weights (ESRGAN from its PSNR model). Never called when a trained
        model is loaded for use."""

    def attach_optimizers(self, optimizers: Dict[str, torch.optim.Optimizer]) -> None:
        """Called once the engine has built the optimisers (by name), for an objective that needs
        them inside a phase (the unrolled GAN applies D's update)."""

    def phases(self, d_steps: int) -> List[Phase]:
        raise NotImplementedError

    def tasks(self) -> Dict[str, object]:
        """Every way this model makes outputs, by name (the first is :attr:`task`)."""
        return {"default": self.task}

    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        raise NotImplementedError

    def after_step(self, phase: str) -> None:
        """Called after ``phase``'s optimiser step (weight clipping and the like)."""

    def on_step(self, step: int, progress: float) -> None:
        """Called before generator step ``step`` with the fraction of the budget spent (schedules,
        fade-ins)."""

    def evaluate_model(self, data_cfg, split: str = "test", seed: int = 0) -> Dict[str, float]:
        """Numbers this model computes about itself on real data of ``split`` (a semi-supervised
        classifier's accuracy, an anomaly detector's AUROC), reported by ``gankit eval`` beside the
        sample metrics; ``{}`` for models judged by their samples alone. ``data_cfg``: the run's
        :class:`~gankit.config.DataConfig`."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def device(self) -> torch.device:
        return next(next(iter(self.nets.values())).parameters()).device


def parse_options(cls, options: dict):
    """``loss.options`` as ``cls.Options``; an unknown key or a bad value gets one ConfigError line."""
    from ..config import from_dict

    opts = cls.Options
    if not is_dataclass(opts):
        raise TypeError(f"{cls.__name__}.Options must be a dataclass")
    if options and not fields(opts):
        raise ConfigError(f"loss.options: objective {getattr(cls, 'registered_name', cls.__name__)!r} takes no options, "
                          f"got {', '.join(options)}")
    return from_dict(opts, dict(options), prefix="loss.options.")


def check_declaration(objective) -> None:
    """One ConfigError line for an objective whose declaration does not hold together, before anything
    trains: optimisers that step networks it has not got, phases naming an optimiser it has not got or
    training a network their optimiser does not step (it would silently stay as initialised), EMAs of
    networks it has not got, short forms that are not ``g_optim``/``d_optim``, no task."""
    name = type(objective).__name__
    nets = set(objective.nets)
    for opt, group in objective.optimizers.items():
        missing = [n for n in group.nets if n not in nets]
        if missing:
            raise ConfigError(f"{name}: optimiser {opt!r} steps {missing[0]!r}, which is not one of its networks "
                              f"({', '.join(sorted(nets))})")
        if group.short not in ("g_optim", "d_optim"):
            raise ConfigError(f"{name}: optimiser {opt!r} takes its settings from train.{group.short}, which does not "
                              "exist; its short form is g_optim or d_optim (train.optim.<name> overrides it)")
    for phase in objective.phases(1):
        if phase.optimizer not in objective.optimizers:
            raise ConfigError(f"{name}: phase {phase.name!r} steps optimiser {phase.optimizer!r}, which it has not got "
                              f"({', '.join(objective.optimizers)})")
        unstepped = [n for n in phase.nets if n not in objective.optimizers[phase.optimizer].nets]
        if unstepped:
            raise ConfigError(f"{name}: phase {phase.name!r} trains {unstepped[0]!r}, but its optimiser "
                              f"{phase.optimizer!r} does not step it; add it to that OptimGroup's nets")
    missing = [n for n in objective.ema if n not in nets]
    if missing:
        raise ConfigError(f"{name}: ema names {missing[0]!r}, which is not one of its networks")
    if getattr(objective, "task", None) is None:
        raise ConfigError(f"{name}: no task; set self.task (gankit.tasks: generation or translation) in __init__")


#: Settings of the adversarial game: an objective without a discriminator has no use for any of them.
DISCRIMINATOR_KEYS = ("loss.name", "loss.regularizers", "loss.clip_d_weights", "loss.augment", "train.d_steps",
                      "train.d_optim")


def refuse_unused(cfg, name: str, keys, why: str) -> None:
    """One ConfigError line naming the first of ``keys`` (dotted config keys) that ``cfg`` sets away from
    its default, for objective ``name`` that has no use for it (``why``): accepted silently, it would be
    recorded in the run's config as if it had acted."""
    from ..config import Config

    default = Config()
    for key in keys:
        section, field_name = key.split(".")
        if getattr(getattr(cfg, section), field_name) != getattr(getattr(default, section), field_name):
            raise ConfigError(f"{key}: objective {name} {why}; remove it")


def register_objective(name: str):
    """Class decorator: register an :class:`Objective` under ``loss.objective: name``."""

    def decorator(cls):
        if not (isinstance(cls, type) and issubclass(cls, Objective)):
            raise TypeError(f"objective {name!r} must subclass Objective")
        cls.registered_name = name
        return OBJECTIVES.register(name, cls)

    return decorator


@dataclass(frozen=True)
class DataInfo:
    """What an objective needs to know of its data to build networks; saved in checkpoints, so a
    model is rebuilt without loading the data."""

    kind: str                          # image | vector | translation
    sample_shape: Tuple[int, ...]      # one sample (generation) or one input image (translation)
    num_classes: int = 0               # classes G and D are conditioned on (0 = unconditional)
    target_shape: Optional[Tuple[int, ...]] = None  # translation: one target image
    compose: str = "none"              # translation: how G's output joins its input (gankit.tasks.COMPOSE)

    @classmethod
    def of(cls, data, conditional: bool) -> "DataInfo":
        """From a dataset; ``conditional``: whether the model takes its class labels."""
        num_classes = data.num_classes if conditional else 0
        if conditional and data.y is None:
            raise ConfigError(f"model.conditional: dataset {data.name!r} has no labels")
        target = getattr(data, "target_shape", None)
        return cls(data.kind, tuple(data.sample_shape), num_classes, tuple(target) if target else None,
                   getattr(data, "compose", "none"))

    @classmethod
    def from_meta(cls, meta: dict) -> "DataInfo":
        """From the ``data`` entry of a checkpoint."""
        target = meta.get("target_shape")
        return cls(meta["kind"], tuple(meta["sample_shape"]), int(meta.get("num_classes", 0)),
                   tuple(target) if target else None, meta.get("compose", "none"))
