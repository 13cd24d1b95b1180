"""Discriminator regularisers as pure functions ``(critic, real, fake) -> penalty``.

``critic`` maps a batch of samples to D's raw outputs (labels already bound), so the
same function serves conditional and unconditional models. Penalties are returned
unweighted; the objective multiplies by the configured weight.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..registry import Registry

REGULARIZERS = Registry("regularizer")
Critic = Callable[[Tensor], Tensor]


def double_backward(fn):
    """Marks a penalty on input gradients: its backward differentiates a gradient (create_graph)."""
    fn.double_backward = True
    return fn


def _input_gradients(critic: Critic, x: Tensor) -> Tensor:
    """∇_x Σ critic(x), one row per sample, with a graph so the penalty can be backpropagated."""
    x = x.detach().requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.reshape(grad.shape[0], -1)  # (B, prod(sample_shape))


@REGULARIZERS.register("r1")
@double_backward
def r1_penalty(critic: Critic, real: Tensor, fake: Tensor) -> Tensor:
    """½ E_x[‖∇_x D(x)‖²] on real data (Mescheder et al. 2018, Eq. 9; weight = γ)."""
    return 0.5 * _input_gradients(critic, real).pow(2).sum(1).mean()


@REGULARIZERS.register("r2")
@double_backward
def r2_penalty(critic: Critic, real: Tensor, fake: Tensor) -> Tensor:
    """½ E[‖∇ D(G(z))‖²] on generated data (Mescheder et al. 2018, Eq. 10)."""
    return 0.5 * _input_gradients(critic, fake).pow(2).sum(1).mean()


@REGULARIZERS.register("gradient-penalty")
@double_backward
def gradient_penalty(critic: Critic, real: Tensor, fake: Tensor) -> Tensor:
    """E[(‖∇ D(x̂)‖ − 1)²] at x̂ = εx + (1 − ε)G(z), ε ~ U[0, 1] per sample (Gulrajani et al. 2017, Alg. 1; λ = 10)."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)
    mixed = eps * real.detach() + (1 - eps) * fake.detach()
    return (_input_gradients(critic, mixed).norm(2, dim=1) - 1).pow(2).mean()


@REGULARIZERS.register("drift")
def drift_penalty(critic: Critic, real: Tensor, fake: Tensor) -> Tensor:
    """E[D(x)²]: keeps a Wasserstein critic's outputs near zero (Karras et al. 2018, ε_drift = 1e-3)."""
    return critic(real).pow(2).mean()
