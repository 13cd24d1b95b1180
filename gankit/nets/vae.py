"""Encoders for the VAE objective (Kingma & Welling 2014): image -> (mu, logvar) of q(z|x).

The VAE's decoder is a family's generator (``model.g``, DCGAN by default), so a trained VAE samples,
exports and is evaluated exactly as a GAN's G is. The encoder is its own small registry, not a
:data:`~gankit.nets.NETWORKS` family (a family is a G and a D designed together): ``model.nets.E``
holds its settings and ``model.nets.E.arch`` picks one of :data:`ENCODERS` (``conv``).

``conv`` mirrors the DCGAN discriminator: n × [Conv 4x4 stride 2, (BN), LeakyReLU 0.2] down to
h0×w0 (the grid of :func:`gankit.nets.sizes.sample_grid`, so it takes every size the DCGAN
generator makes), e × [Conv 3x3, (BN), LeakyReLU 0.2] there, then one linear map of the flattened
features to 2·z_dim numbers: the posterior's mean and log-variance.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..registry import Registry
from .layers import dcgan_init, flatten_features
from .sizes import check_grid, sample_grid

#: ``model.nets.E.arch`` -> an encoder class ``(z_dim=, sample_shape=, **settings)``
ENCODERS = Registry("encoder")


class ConvEncoder(nn.Module):
    def __init__(self, z_dim: int, sample_shape: tuple, width: int = 64, batchnorm: bool = True,
                 extra_layers: int = 0):
        """``width``: channels of the first conv, doubled per stride-2 stage; ``extra_layers``:
        [Conv 3x3, (BN), LeakyReLU] at the smallest resolution."""
        super().__init__()
        if not isinstance(extra_layers, int) or isinstance(extra_layers, bool) or extra_layers < 0:
            raise ValueError(f"extra_layers must be an integer >= 0, got {extra_layers!r}")
        channels, h0, w0, n = sample_grid("the conv encoder", sample_shape, up=False)
        layers, c_in, c = [], channels, width
        for i in range(n):
            layers.append(nn.Conv2d(c_in, c, 4, 2, 1, bias=not batchnorm or i == 0))
            if batchnorm and i > 0:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in, c = c, c * 2
        for _ in range(extra_layers):
            layers.append(nn.Conv2d(c_in, c_in, 3, 1, 1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c_in))
            layers.append(nn.LeakyReLU(0.2, True))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * h0 * w0, 2 * z_dim)
        self.z_dim = z_dim
        dcgan_init(self)
        # Start near the prior: log-variance ≈ 0 and mean ≈ 0, so the first KL terms are small.
        nn.init.normal_(self.head.weight, 0.0, 0.02)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        check_grid("the conv encoder", h, w, up=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, C, H, W) in [-1, 1] -> ``(mu, logvar)``, each (B, z_dim), fp32."""
        h = self.head(flatten_features(self.body(x))).float()
        return h[:, :self.z_dim], h[:, self.z_dim:]


ENCODERS.register("conv", ConvEncoder)
