"""Layers of the Karras et al. generators (ProGAN, StyleGAN, StyleGAN2): equalized learning rate and
pixel normalisation.

Equalized learning rate (Karras et al. 2018, Sec. 4.1): weights are stored as N(0, 1) / ``lr_mul``
and multiplied at run time by ``gain / sqrt(fan_in) · lr_mul`` (He's constant), so every layer's
update is the same size relative to its weights whatever its fan-in; Adam's per-parameter
normalisation would otherwise give layers with small weights a larger effective learning rate.
``lr_mul`` lowers the learning rate of one layer (StyleGAN's mapping network: 0.01).

Every such layer says which of its stored parameters it multiplies by what (``param_scales()``), so
that norms of weights and gradients can be read in the network's own terms, not the storage's
(:func:`runtime_scales`: the training-health monitor compares G's gradient with its weights).
"""
from __future__ import annotations

import math
from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class EqualizedLinear(nn.Module):
    """y = x · (W · scale)ᵀ + b · lr_mul with W ~ N(0, 1/lr_mul²), scale = gain · lr_mul / √in."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, gain: float = 1.0,
                 lr_mul: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.scale = gain * lr_mul / math.sqrt(in_features)   # the runtime scale (He's constant × lr_mul)
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, b)

    def param_scales(self) -> Dict[str, float]:
        return {"weight": self.scale, "bias": self.lr_mul}

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, scale={self.scale:.4g}, lr_mul={self.lr_mul}"


class EqualizedConv2d(nn.Module):
    """A conv whose N(0, 1) weights are scaled at run time by gain / √(C_in·k·k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int | None = None,
                 bias: bool = True, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2 if padding is None else padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)

    def param_scales(self) -> Dict[str, float]:
        return {"weight": self.scale}

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, padding={self.padding}, scale={self.scale:.4g}"


class PixelNorm(nn.Module):
    """Each pixel's feature vector scaled to unit RMS over channels (Karras et al. 2018, Sec. 4.2):
    x / sqrt(mean_c x² + ε). Over dim 1: (B, C, ...) feature maps or (B, C) latents."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


def runtime_scales(module: nn.Module) -> Dict[int, float]:
    """``id(parameter) -> c`` for every parameter of ``module`` that the network uses as c × the stored
    tensor (equalized learning rate), c ≠ 1; from each layer's ``param_scales()``. The effective
    weight is c·p and the gradient with respect to it ∇p / c."""
    out: Dict[int, float] = {}
    for m in module.modules():
        scales = m.param_scales() if callable(getattr(m, "param_scales", None)) else {}
        for name, c in scales.items():
            p = getattr(m, name, None)
            if isinstance(p, nn.Parameter) and c != 1:
                out[id(p)] = float(c)
    return out
