"""DCGAN (Radford et al. 2016) for any resolution 4·2ⁿ or 7·2ⁿ (8, 16, 28, 32, 64, 128, ...), square
or not: (H, W) with the shorter side 4·2ⁿ or 7·2ⁿ and the longer a multiple of 2ⁿ (32×64, 64×32, 28×56).

G: z -> (transposed conv) h0×w0 -> e × [Conv 3x3, BN, ReLU] -> n × [ConvT 4x4 stride 2, BN, ReLU] -> tanh.
D: n × [Conv 4x4 stride 2, (BN), LeakyReLU 0.2] -> e × [Conv 3x3, (BN), LeakyReLU 0.2] -> linear score
of the h0×w0 features.
(h0, w0) = (H, W) / 2ⁿ (:func:`gankit.nets.sizes.grid`): s0×s0 with s0 = 4 (32, 64, ...) or 7 (28, 56,
...) for square images, 4×8 for 32×64; channels halve (G) / double (D) per stage
from ``width``; all weights N(0, 0.02). The paper's networks have e = 0 ``extra_layers``: extra
stride-1 layers at the smallest resolution add capacity where it is cheapest (at 7×7 one costs
about as much as a stride-2 layer at 14×14), in the spirit of the "extra layers" option of the
WGAN authors' DCGAN code (``n_extra_layers``), which adds them at the largest feature maps instead
(after D's first layer, before G's last).
"""
from __future__ import annotations

from torch import Tensor, nn

from ..errors import CheckpointError
from .base import register_family
from .layers import (LabelToNoise, LatentConvTranspose2d, MinibatchStdDev, ProjectionHead, dcgan_init,
                     flatten_features)
from .sizes import check_grid, sample_grid


def _check_extra_layers(extra_layers: int) -> int:
    if not isinstance(extra_layers, int) or isinstance(extra_layers, bool) or extra_layers < 0:
        raise ValueError(f"extra_layers must be an integer >= 0, got {extra_layers!r}")
    return extra_layers


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int, sample_shape: tuple, num_classes: int = 0, width: int = 64,
                 embed_dim: int = 32, extra_layers: int = 0):
        """``extra_layers`` adds that many [Conv 3x3 stride 1, BN, ReLU] at h0×w0, after the first layer."""
        super().__init__()
        channels, h0, w0, n = sample_grid("the dcgan generator", sample_shape)
        self.cond = LabelToNoise(num_classes, embed_dim)
        c = width * 2 ** (n - 1)
        layers = [LatentConvTranspose2d(z_dim + self.cond.extra, c, (h0, w0), 1, 0, bias=False),
                  nn.BatchNorm2d(c), nn.ReLU(True)]
        for _ in range(_check_extra_layers(extra_layers)):
            layers += [nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(True)]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless images of h×w can be made."""
        check_grid("the dcgan generator", h, w)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.cond(z, y)
        return self.net(h.view(h.shape[0], h.shape[1], 1, 1))  # (B, C, H, W)


class DCGANDiscriminator(nn.Module):
    def __init__(self, sample_shape: tuple, num_classes: int = 0, width: int = 64, batchnorm: bool = True,
                 minibatch_std: bool = False, spectral: bool = False, pack: int = 1, extra_layers: int = 0):
        """``spectral`` applies spectral normalisation (Miyato et al. 2018) to every conv instead of BN,
        and every conv then has its bias, as in Miyato et al.'s SN-CNN (Table 3);
        ``minibatch_std`` appends the minibatch-std channel before the last conv (Karras et al. 2018);
        ``pack`` > 1 scores groups of ``pack`` samples stacked on the channel axis (PacGAN);
        ``extra_layers`` adds that many [Conv 3x3 stride 1, (BN), LeakyReLU 0.2] at h0×w0, before the head."""
        super().__init__()
        channels, h0, w0, n = sample_grid("the dcgan discriminator", sample_shape, up=False)
        self.pack = pack
        sn = nn.utils.parametrizations.spectral_norm if spectral else (lambda m: m)
        bn = self.has_batchnorm(batchnorm, spectral)
        layers, c_in, c = [], channels * pack, width
        # A conv keeps its bias unless BatchNorm follows it (its shift would cancel the bias); D's first
        # conv has no BatchNorm (the paper's D).
        for i in range(n):
            layers.append(sn(nn.Conv2d(c_in, c, 4, 2, 1, bias=not (bn and i > 0))))
            if bn and i > 0:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in, c = c, c * 2
        for _ in range(_check_extra_layers(extra_layers)):
            layers.append(sn(nn.Conv2d(c_in, c_in, 3, 1, 1, bias=not bn)))
            if bn:
                layers.append(nn.BatchNorm2d(c_in))
            layers.append(nn.LeakyReLU(0.2, True))
        if minibatch_std:
            layers.append(MinibatchStdDev())
            c_in += 1
        self.body = nn.Sequential(*layers)
        # The paper's last s0×s0 conv to one output is a linear map of the flattened h0×w0 features.
        self.head = ProjectionHead(c_in * h0 * w0, num_classes if pack == 1 else 0, spectral=spectral)
        dcgan_init(self)
        if spectral and batchnorm:
            self.register_load_state_dict_pre_hook(_refuse_spectral_without_biases)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless images of h×w can be scored."""
        check_grid("the dcgan discriminator", h, w, up=False)

    @staticmethod
    def has_batchnorm(batchnorm: bool = True, spectral: bool = False, **_) -> bool:
        """Whether a D built with these ``model.d`` settings normalises with BatchNorm (spectral norm
        replaces it), told without building it: the config check notes a per-sample gradient
        penalty on such a critic."""
        return bool(batchnorm) and not spectral

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.pack > 1:
            x = x.reshape(x.shape[0] // self.pack, -1, *x.shape[2:])
        h = flatten_features(self.body(x))  # (B, C·h0·w0)
        return self.head(h, y if self.pack == 1 else None)


def _refuse_spectral_without_biases(module, state_dict, prefix, *_) -> None:
    """Weights of a ``spectral: true`` D from before its stride-2 convs kept their biases (gankit
    dropped them there, as if BatchNorm followed): refused in one line, not torch's list of missing keys."""
    for name, m in module.body.named_children():
        if isinstance(m, nn.Conv2d) and f"{prefix}body.{name}.bias" not in state_dict and any(
                k.startswith(f"{prefix}body.{name}.") for k in state_dict):
            raise CheckpointError(f"model.d.spectral: true: this dcgan D's weights have no bias in conv body.{name} "
                                  "(written by a gankit that dropped them under spectral norm); this version keeps "
                                  "them (Miyato et al.'s SN-CNN): train it again, or load it with the gankit that "
                                  "wrote it")


register_family("dcgan", DCGANGenerator, DCGANDiscriminator, "Radford et al. 2016")
