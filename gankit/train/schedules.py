"""Learning-rate schedules: pure functions of training progress, picked by ``train.lr_schedule``.

A schedule maps ``progress`` in [0, 1] (the fraction of the run's budget spent: steps
over ``train.steps``/``train.epochs``, or wall time over ``train.minutes``, whichever is
further along) to a multiplier of the configured learning rates. ``decay_start`` is the
progress at which decay begins; before it every schedule returns 1. ``final`` is the
multiplier reached at progress 1.

Decaying the step size at the end of training lets both players settle near the
equilibrium they oscillate around, the same reason an EMA of G helps (Yazıcı et al.
2019, "The unusual effectiveness of averaging in GAN training"); BigGAN-style
constant rates stay the default.
"""
from __future__ import annotations

import math

from ..registry import Registry

#: ``train.lr_schedule`` -> ``fn(progress, decay_start, final) -> multiplier``
SCHEDULES = Registry("lr schedule")


def _decay_fraction(progress: float, decay_start: float) -> float:
    """How far into the decay window [decay_start, 1] ``progress`` is, clipped to [0, 1]."""
    if progress <= decay_start:
        return 0.0
    if decay_start >= 1.0:
        return 0.0
    return min(1.0, (progress - decay_start) / (1.0 - decay_start))


@SCHEDULES.register("constant")
def constant(progress: float, decay_start: float = 0.0, final: float = 1.0) -> float:
    return 1.0


@SCHEDULES.register("linear")
def linear(progress: float, decay_start: float = 0.0, final: float = 0.0) -> float:
    """1 until ``decay_start``, then a straight line to ``final`` at the end of the budget."""
    f = _decay_fraction(progress, decay_start)
    return 1.0 + (final - 1.0) * f


@SCHEDULES.register("cosine")
def cosine(progress: float, decay_start: float = 0.0, final: float = 0.0) -> float:
    """1 until ``decay_start``, then half a cosine down to ``final`` (Loshchilov & Hutter 2017, no restarts)."""
    f = _decay_fraction(progress, decay_start)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * f))
