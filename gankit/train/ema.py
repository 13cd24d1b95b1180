"""Exponential moving average of a network's weights (Karras et al. 2018; Yazıcı et al. 2019)."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from ..nets.batchnorm import has_batchnorm, local_batchnorm


class EMA(nn.Module):
    """Holds a copy of ``model`` whose parameters track θ_ema ← β·θ_ema + (1 − β)·θ.

    Buffers (BatchNorm statistics, spectral-norm vectors) are copied, not averaged. A
    BatchNorm running mean/variance copied from G describes G's activations, not the
    averaged weights'; :meth:`refresh_batchnorm` re-estimates them for the averaged
    weights (BigGAN's "standing statistics", SWA's ``update_bn``) before the copy is
    used for sampling, so EMA and BatchNorm work together.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        # SyncBatchNorm (torchrun) becomes plain: only rank 0 samples, so its statistics need no collective.
        self.module = local_batchnorm(copy.deepcopy(model)).eval().requires_grad_(False)
        self.has_batchnorm = has_batchnorm(self.module)
        # BatchNorm statistics not yet estimated for the current weights. Set by :meth:`apply` and, for
        # every training step, by the Trainer on the host: a CUDA graph replays apply's kernels, not its Python.
        self.stale = self.has_batchnorm
        # β of the next update. On a GPU it is a device tensor the host writes before the step, so
        # a CUDA graph that captured :meth:`apply` uses each step's β (ramp-up, start).
        device = next(self.module.parameters()).device
        self.beta: float | torch.Tensor = decay
        self._weight = torch.tensor(1.0 - decay, device=device) if device.type == "cuda" else None
        self._beta_set: float | None = None

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> None:
        """θ_ema ← β·θ_ema + (1 − β)·θ with β = ``decay`` (default: the configured decay)."""
        self.set_decay(self.decay if decay is None else decay)
        self.apply(model)

    def set_decay(self, beta: float) -> None:
        """β of the next :meth:`apply` (a device write on a GPU, only when it changes)."""
        if self._weight is None:
            self.beta = beta
        elif beta != self._beta_set:
            self._weight.fill_(1.0 - beta)
            self._beta_set = beta

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """One update with the β of :meth:`set_decay`; device work only."""
        ema_p = list(self.module.parameters())
        src_p = [p.detach() for p in model.parameters()]
        if self._weight is None:
            torch._foreach_lerp_(ema_p, src_p, 1.0 - self.beta)
        else:  # θ_ema += (θ − θ_ema)·(1 − β), the weight read from the device
            delta = torch._foreach_sub(src_p, ema_p)
            torch._foreach_mul_(delta, self._weight)
            torch._foreach_add_(ema_p, delta)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.stale = self.has_batchnorm

    @torch.no_grad()
    def refresh_batchnorm(self, inputs: Callable[[], list], run: Callable[[nn.Module, dict], torch.Tensor]) -> None:
        """Re-estimate BatchNorm statistics as the exact mean over ``inputs()`` (a list of input dicts
        of the task, e.g. [{"z": ..., "y": ...}, ...]) fed through ``run(module, inputs)`` (the task's
        :meth:`~gankit.tasks.Task.run`); a no-op without BatchNorm or when fresh."""
        if not self.stale:
            return
        # Dropout (a U-Net's noise) runs in train mode here: fork the RNG so re-estimating statistics, which
        # happens whenever the copy is used (grids, checkpoints), never shifts training's random stream.
        device = next(self.module.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            update_bn(((batch,) for batch in inputs()), _Run(self.module, run))
        self.module.eval()
        self.stale = False


class _Run(nn.Module):
    """``update_bn`` calls ``model(batch)``; the task knows how a batch of inputs becomes outputs."""

    def __init__(self, module: nn.Module, run: Callable[[nn.Module, dict], torch.Tensor]):
        super().__init__()
        self.module, self.run = module, run

    def forward(self, inputs: dict) -> torch.Tensor:
        return self.run(self.module, inputs)
