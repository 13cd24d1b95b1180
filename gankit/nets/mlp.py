"""Fully connected G and D: the vanilla GAN of Goodfellow et al. (2014).

Used for 1D/2D mixtures and flattened 28x28 images. G ends in tanh for images (data in
[-1, 1]) and is linear for vectors; D uses LeakyReLU(0.2) with optional dropout (the
paper's D used maxout + dropout; LeakyReLU is the common modern stand-in).
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from .base import register_family
from .layers import LabelToNoise, MinibatchDiscrimination, ProjectionHead


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int, sample_shape: tuple, num_classes: int = 0, width: int = 256,
                 depth: int = 3, batchnorm: bool = False, embed_dim: int = 16):
        super().__init__()
        if depth < 1:
            raise ValueError("g.depth must be >= 1")
        self.sample_shape = tuple(sample_shape)
        self.cond = LabelToNoise(num_classes, embed_dim)
        layers, d_in = [], z_dim + self.cond.extra
        for _ in range(depth):
            layers += [nn.Linear(d_in, width)] + ([nn.BatchNorm1d(width)] if batchnorm else []) + [nn.ReLU()]
            d_in = width
        layers.append(nn.Linear(d_in, math.prod(self.sample_shape)))
        if len(self.sample_shape) > 1:  # images live in [-1, 1]
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(self.cond(z, y)).view(z.shape[0], *self.sample_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, sample_shape: tuple, num_classes: int = 0, width: int = 256, depth: int = 3,
                 dropout: float = 0.0, minibatch_kernels: int = 0, pack: int = 1):
        """``pack`` > 1 makes a PacGAN discriminator (Lin et al. 2018): it scores groups of
        ``pack`` samples concatenated; the batch must be a multiple of ``pack``."""
        super().__init__()
        self.pack = pack
        d_in = math.prod(sample_shape) * pack
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(d_in, width), nn.LeakyReLU(0.2)] + ([nn.Dropout(dropout)] if dropout else [])
            d_in = width
        self.body = nn.Sequential(*layers)
        self.mbd = MinibatchDiscrimination(d_in, minibatch_kernels) if minibatch_kernels else None
        self.head = ProjectionHead(d_in + minibatch_kernels, num_classes if pack == 1 else 0)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.body(x.reshape(x.shape[0] // self.pack, -1))  # (B / pack, width)
        if self.mbd is not None:
            h = self.mbd(h)
        return self.head(h, y if self.pack == 1 else None)


register_family("mlp", MLPGenerator, MLPDiscriminator, "Goodfellow et al. 2014")
