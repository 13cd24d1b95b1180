"""Layers shared by the network families: conditioning, init, minibatch statistics."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class LabelToNoise(nn.Module):
    """Concatenates a learned class embedding to z (Mirza & Osindero 2014, the cGAN generator)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, dim) if num_classes else None
        self.extra = dim if num_classes else 0

    def forward(self, z: Tensor, y: Tensor | None) -> Tensor:
        if self.embed is None:
            return z
        if y is None:
            raise ValueError("this generator is conditional: pass class labels y")
        return torch.cat([z, self.embed(y)], 1)


class ProjectionHead(nn.Module):
    """D's last layer: ψ(h) + ⟨embed(y), h⟩ when conditional (projection discriminator,
    Miyato & Koyama 2018, Eq. 3), a plain linear score otherwise.  h: (B, F) -> (B,)."""

    def __init__(self, features: int, num_classes: int, spectral: bool = False):
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.embed = nn.Embedding(num_classes, features) if num_classes else None
        if spectral:
            self.linear = nn.utils.parametrizations.spectral_norm(self.linear)
            if self.embed is not None:
                self.embed = nn.utils.parametrizations.spectral_norm(self.embed)

    def forward(self, h: Tensor, y: Tensor | None) -> Tensor:
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("this discriminator is conditional: pass class labels y")
            out = out + (self.embed(y) * h).sum(1)
        return out


def dcgan_init(module: nn.Module) -> None:
    """Weights N(0, 0.02), BatchNorm scale N(1, 0.02), biases 0 (Radford et al. 2016, Sec. 4)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)


class MinibatchStdDev(nn.Module):
    """Appends the mean over features of the per-feature std across groups of ``group`` samples
    as one extra channel (Karras et al. 2018, Sec. 3).  (B, C, H, W) -> (B, C+1, H, W)."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        g = min(self.group, b)
        while b % g:
            g -= 1
        y = x.reshape(g, -1, *x.shape[1:]).float()           # (G, B/G, C, H, W)
        std = (y.var(0, unbiased=False) + 1e-8).sqrt()          # (B/G, C, H, W)
        s = std.mean(dim=(1, 2, 3), keepdim=True).to(x.dtype)  # (B/G, 1, 1, 1)
        s = s.repeat(g, 1, x.shape[2], x.shape[3])             # (B, 1, H, W)
        return torch.cat([x, s], 1)


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. 2016, Sec. 3.2: for each sample, Σ_j exp(−‖M_i,b − M_j,b‖₁) per kernel b.
    (B, F) -> (B, F + kernels)."""

    def __init__(self, in_features: int, kernels: int = 50, kernel_dim: int = 5):
        super().__init__()
        self.T = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * 0.1)
        self.kernels, self.kernel_dim = kernels, kernel_dim

    def forward(self, h: Tensor) -> Tensor:
        m = (h @ self.T).view(-1, self.kernels, self.kernel_dim)       # (B, K, Dk)
        l1 = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(3)             # (B, B, K)
        o = torch.exp(-l1).sum(1) - 1.0                                 # exclude self (exp(0) = 1)
        return torch.cat([h, o], 1)
