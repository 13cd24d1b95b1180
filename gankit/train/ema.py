"""Exponential moving average of G's weights (Karras et al. 2018; Yazıcı et al. 2019)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Holds a copy of ``model`` whose parameters track θ_ema ← β·θ_ema + (1 − β)·θ.

    Buffers (BatchNorm statistics, spectral-norm vectors) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> None:
        beta = self.decay if decay is None else decay
        ema_p = list(self.module.parameters())
        src_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, src_p, 1.0 - beta)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)
