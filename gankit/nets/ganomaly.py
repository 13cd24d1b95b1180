"""GANomaly's networks (Akcay et al. 2018), built from the DCGAN family's blocks.

G is an encoder-decoder-encoder: G_E maps an image x to a latent code z, G_D decodes it to x̂, and a
second encoder E maps x̂ to ẑ (Sec. 3.1). G_E and E are the DCGAN discriminator's body (n ×
[Conv 4x4 stride 2, (BN), LeakyReLU 0.2], e extra 3x3 layers at h0×w0) followed by one linear map of
its flattened features to z (the paper's last 4x4 conv to nz channels is that linear map); G_D is
the DCGAN generator itself. D is the DCGAN discriminator, whose body's features also serve the
feature-matching loss (:func:`gankit.objectives.anomaly.ganomaly_generator_loss`).

With ``reencode=False`` G is the plain convolutional autoencoder G_E -> G_D of the same shapes, the
baseline objective ``autoencoder`` trains. Both objectives pass ``reencode`` themselves; it is not a
config key.
"""
from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from .base import register_family
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .layers import dcgan_init, flatten_features
from .sizes import check_grid


class ConvToLatent(nn.Module):
    """x (B, C, H, W) in [-1, 1] -> z (B, z_dim): the DCGAN discriminator's body, then a linear map."""

    def __init__(self, z_dim: int, sample_shape: tuple, width: int = 64, batchnorm: bool = True,
                 extra_layers: int = 0):
        super().__init__()
        self.body = DCGANDiscriminator(sample_shape, 0, width, batchnorm, extra_layers=extra_layers).body
        c, h, w = sample_shape
        n = len([m for m in self.body if isinstance(m, nn.Conv2d) and m.stride == (2, 2)])
        c_out = width * 2 ** (n - 1)
        self.head = nn.Linear(c_out * (h >> n) * (w >> n), z_dim)
        dcgan_init(self.head)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(flatten_features(self.body(x)))


class Reconstruction(NamedTuple):
    z: Tensor                 # G_E(x), (B, z_dim)
    x_hat: Tensor             # G_D(z), (B, C, H, W) in [-1, 1]
    z_hat: Tensor | None      # E(x̂), (B, z_dim); None for the plain autoencoder


class GANomalyGenerator(nn.Module):
    def __init__(self, z_dim: int, sample_shape: tuple, num_classes: int = 0, width: int = 64,
                 batchnorm: bool = True, extra_layers: int = 0, reencode: bool = True):
        """``width``: channels of the encoders' first conv (doubled per stride-2 stage) and of the
        decoder's last (halved per stage), as in DCGAN; ``batchnorm``: in the encoders;
        ``extra_layers``: [Conv 3x3, BN, activation] at h0×w0 in each of the three networks."""
        super().__init__()
        if num_classes:
            raise ValueError("GANomaly's generator is unconditional (model.conditional: false)")
        shape = tuple(sample_shape)
        self.encoder = ConvToLatent(z_dim, shape, width, batchnorm, extra_layers)          # G_E
        self.decoder = DCGANGenerator(z_dim, shape, 0, width, extra_layers=extra_layers)    # G_D
        self.reencoder = ConvToLatent(z_dim, shape, width, batchnorm, extra_layers) if reencode else None  # E

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        check_grid("the ganomaly generator", h, w)

    def reconstruct(self, x: Tensor) -> Reconstruction:
        """(z, x̂, ẑ) for images ``x`` (B, C, H, W) in [-1, 1]."""
        z = self.encoder(x)
        x_hat = self.decoder(z)
        return Reconstruction(z, x_hat, self.reencoder(x_hat) if self.reencoder is not None else None)

    def forward(self, x: Tensor) -> Tensor:
        """x̂ = G_D(G_E(x)) (B, C, H, W): what ``gankit translate`` and sample grids show."""
        return self.decoder(self.encoder(x))


register_family("ganomaly", GANomalyGenerator, DCGANDiscriminator, "Akcay et al. 2018")
