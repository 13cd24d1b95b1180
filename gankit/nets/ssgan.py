"""The semi-supervised GAN's networks (Salimans et al. 2016, Sec. 5; their MNIST code,
``mnist_feature_matching.py``): a K-way classifier as D and the ``mlp`` generator as G.

D: Gaussian noise (σ ``input_noise``) on the input, then per hidden layer [Linear, ReLU, Gaussian
noise σ ``noise``] with ``widths`` units (the paper: 1000, 500, 250, 250, 250), then a Linear to K
logits l_1..l_K. There is no (K+1)-th output: the fake class is implicit, D(x) = Z(x)/(Z(x)+1) with
Z(x) = Σ_k exp l_k(x) (:mod:`gankit.objectives.ssgan`). The noise is added in training mode only.
``weight_norm`` reparameterises every Linear as w = g·v/‖v‖ (Salimans & Kingma 2016), as the paper.

``features(x)`` is the output of the last hidden layer (after its ReLU, before its noise, so it
is deterministic given the input noise): the layer feature matching compares, as in the paper's
code (``layers[-3]``: the last hidden layer's output, the head being the last two layers).
Only objective ``ssgan`` uses this family (``model.arch: ssgan``); its D returns (B, K) logits,
not the (B,) score of a plain GAN's D.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import register_family
from .mlp import MLPGenerator


class GaussianNoise(nn.Module):
    """x + N(0, σ²) in training mode, x in eval mode."""

    def __init__(self, std: float):
        super().__init__()
        self.std = float(std)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.std > 0:
            return x + self.std * torch.randn_like(x)
        return x


class SSGANDiscriminator(nn.Module):
    def __init__(self, sample_shape: tuple, num_classes: int = 0, widths: tuple = (1000, 500, 250, 250, 250),
                 input_noise: float = 0.3, noise: float = 0.5, weight_norm: bool = True):
        """``num_classes``: K, the classes of the classifier (the objective passes its
        ``loss.options.num_classes``)."""
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive layer sizes, got {list(widths)!r}")
        if num_classes < 2:
            raise ValueError(f"the ssgan discriminator is a K-way classifier: needs K >= 2 classes, got {num_classes}")
        wn = nn.utils.parametrizations.weight_norm if weight_norm else (lambda m: m)
        self.aux_classes = num_classes
        self.input_noise = GaussianNoise(input_noise)
        layers, d_in = [], math.prod(sample_shape)
        for w in widths:
            layers.append(nn.Sequential(wn(nn.Linear(d_in, w)), nn.ReLU()))
            d_in = w
        self.hidden = nn.ModuleList(layers)
        self.noise = nn.ModuleList(GaussianNoise(noise) for _ in widths)
        self.head = wn(nn.Linear(d_in, num_classes))
        self.feature_dim = d_in

    def logits_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, K) class logits and (B, widths[-1]) features of the last hidden layer."""
        h = self.input_noise(x.reshape(x.shape[0], -1))
        for layer, noise in zip(self.hidden, self.noise):
            f = layer(h)
            h = noise(f)
        return self.head(h), f

    def features(self, x: Tensor) -> Tensor:
        return self.logits_and_features(x)[1]

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.logits_and_features(x)[0]  # (B, K)


register_family("ssgan", MLPGenerator, SSGANDiscriminator, "Salimans et al. 2016")
