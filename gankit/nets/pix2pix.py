"""pix2pix networks (Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial
Networks", App. 6.1.1-6.1.2): a U-Net generator and the PatchGAN discriminator.

G (U-Net): ``depth`` encoder layers Ck = Conv 4x4 stride 2 - norm - LeakyReLU 0.2 (no norm on the
first layer nor on the innermost one, whose output may be 1×1), widths width·2^i capped at
width·max_width_mult (C64-C128-C256-C512-C512-C512-C512-C512 at depth 8); a mirrored decoder of
ConvTranspose 4x4 stride 2 - norm - ReLU whose input concatenates the encoder features of the same
size (skip connections); a last ConvTranspose to ``out_channels`` and tanh. Dropout (p = ``dropout``)
after the norm of the three innermost decoder layers is the paper's only noise source, active in
train mode and off in eval mode.
D (PatchGAN): n_layers × [Conv 4x4 stride 2, norm (not on the first), LeakyReLU 0.2], one Conv 4x4
stride 1 with width·min(2^n_layers, 8) channels, norm, LeakyReLU, and a Conv 4x4 stride 1 to one
logit per patch; padding 1 everywhere. n_layers = 3 is the paper's 70×70 PatchGAN, n_layers = 1
its 16×16 one. For the conditional D pass the input image as ``cond``.

Follows the authors' PyTorch code (junyanz/pytorch-CycleGAN-and-pix2pix: ``UnetGenerator``,
``NLayerDiscriminator``, ``init_type=normal``) in the encoder's pre-activation order (a skip carries
the conv+norm output, and the decoder's ReLU applies to it after concatenation), the skip order
(encoder features first) and ``norm="instance"`` = InstanceNorm2d without affine parameters. Differs
from it in: dropout sits on the three innermost decoder layers as in the paper's table
(CD512-CD512-CD512 right after the bottleneck), where the code skips the innermost and takes the
next three; a conv has a bias exactly when no norm follows it (the code keeps biases before
InstanceNorm, which cancels them, and drops the first conv's under BatchNorm); the depth is an
argument instead of ``num_downs`` fixed per resolution, so any H, W divisible by 2**depth work.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import register_family
from .sizes import check_multiple

NORMS = ("batch", "instance", "none")


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


def norm_layer(norm: str, channels: int) -> list[nn.Module]:
    """``[]`` for "none", so that ``[conv, *norm_layer(...), act]`` builds either way."""
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    if norm == "instance":
        return [nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)]
    return []


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """Conv/linear weights N(0, std), norm scales N(1, std), biases 0 (the reference's ``init_type=normal``)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def _check_int(name: str, value, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class UNetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, width: int = 64, depth: int | None = None,
                 max_width_mult: int = 8, dropout: float = 0.5, norm: str = "batch"):
        """``depth`` is the number of stride-2 layers; None means 8, the paper's 256×256 network (1×1
        bottleneck). Inputs need H and W divisible by 2**depth. ``dropout`` = 0 removes the dropout layers."""
        super().__init__()
        self.depth = _check_int("depth", 8 if depth is None else depth, 1)
        _check_int("max_width_mult", max_width_mult, 1)
        check_norm(norm)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        d = self.depth
        c = [width * min(2 ** i, max_width_mult) for i in range(d)]  # encoder layer i outputs c[i] channels

        self.down = nn.ModuleList()  # down[i]: (B, ·, H/2^i, W/2^i) -> (B, c[i], H/2^(i+1), W/2^(i+1))
        for i in range(d):
            has_norm = 0 < i < d - 1 and norm != "none"
            layers = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(in_channels if i == 0 else c[i - 1], c[i], 4, 2, 1, bias=not has_norm))
            if has_norm:
                layers += norm_layer(norm, c[i])
            self.down.append(nn.Sequential(*layers))

        self.up = nn.ModuleList()  # up[i]: (B, ·, H/2^(i+1), W/2^(i+1)) -> (B, c[i-1], H/2^i, W/2^i)
        for i in range(d):
            c_in = c[i] if i == d - 1 else 2 * c[i]  # the innermost gets no skip
            layers = [nn.ReLU(True)]
            if i == 0:
                layers += [nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()]
            else:
                layers += [nn.ConvTranspose2d(c_in, c[i - 1], 4, 2, 1, bias=norm == "none"),
                           *norm_layer(norm, c[i - 1])]
                if dropout > 0 and i >= d - 3:
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        init_normal(self)

    @classmethod
    def check_size(cls, h: int, w: int, depth: int | None = None, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless h and w are multiples of 2**depth."""
        d = 8 if depth is None else depth
        check_multiple(f"UNetGenerator(depth={d})", h, w, 2 ** d, 2 ** d, f"needs H and W divisible by 2**{d}")

    def forward(self, x: Tensor) -> Tensor:
        self.check_size(*x.shape[2:], depth=self.depth)
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)  # (B, c[i], H/2^(i+1), W/2^(i+1))
        x = self.up[-1](skips[-1])
        for i in range(self.depth - 2, -1, -1):
            x = self.up[i](torch.cat([skips[i], x], 1))  # (B, 2·c[i], ...) -> (B, c[i-1], 2×, 2×)
        return x  # (B, out_channels, H, W) in [-1, 1]


_MAX_MULT = 8


def _check_n_layers(n_layers) -> int:
    if not isinstance(n_layers, int) or isinstance(n_layers, bool) or n_layers < 1:
        raise ValueError(f"PatchGAN needs n_layers >= 1 (a 1×1 PixelGAN is a different design), got {n_layers!r}")
    return n_layers


def _strides(n_layers: int) -> list[int]:
    """Strides of the PatchGAN's 4x4 convs, in order: n_layers × 2, then 1, 1."""
    return [2] * _check_n_layers(n_layers) + [1, 1]


def receptive_field(n_layers: int) -> int:
    """Side in pixels of the input patch one PatchGAN logit sees: 70 for n_layers = 3, 16 for 1."""
    rf = 1
    for s in reversed(_strides(n_layers)):
        rf = (rf - 1) * s + 4
    return rf


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int, width: int = 64, n_layers: int = 3, norm: str = "batch",
                 spectral_norm: bool = False):
        """``in_channels`` counts x's and cond's channels together. ``spectral_norm`` applies spectral
        normalisation (Miyato et al. 2018) to every conv, independently of ``norm`` (use norm="none" for SN alone)."""
        super().__init__()
        strides = _strides(n_layers)
        check_norm(norm)
        self.in_channels, self.n_layers = in_channels, n_layers
        layers, c_in = [], in_channels
        for i, s in enumerate(strides):
            if i == len(strides) - 1:
                layers.append(nn.Conv2d(c_in, 1, 4, s, 1))
                break
            c = width * min(2 ** i, _MAX_MULT)
            has_norm = i > 0 and norm != "none"
            layers.append(nn.Conv2d(c_in, c, 4, s, 1, bias=not has_norm))
            if has_norm:
                layers += norm_layer(norm, c)
            layers.append(nn.LeakyReLU(0.2, True))
            c_in = c
        self.net = nn.Sequential(*layers)
        init_normal(self)
        if spectral_norm:
            for m in self.net:
                if isinstance(m, nn.Conv2d):
                    nn.utils.parametrizations.spectral_norm(m)

    @classmethod
    def check_size(cls, h: int, w: int, n_layers: int = 3, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless h, w >= 3·2**n_layers (any other size works:
        the convs are all the net has, so H ≠ W gives an h×w map of patch logits)."""
        least = 3 * 2 ** _check_n_layers(n_layers)
        check_multiple(f"PatchDiscriminator(n_layers={n_layers})", h, w, 1, least, f"needs H and W >= {least}")

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None:
            x = torch.cat([cond, x], 1)  # pix2pix's D sees (input, output)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"PatchDiscriminator(in_channels={self.in_channels}) got {x.shape[1]} channels"
                             + (" (cond and x together)" if cond is not None else ""))
        self.check_size(*x.shape[2:], n_layers=self.n_layers)
        return self.net(x)  # (B, 1, h, w) logits, one per receptive_field(n_layers)² patch


register_family("pix2pix", UNetGenerator, PatchDiscriminator,
                "Isola et al. 2017, Image-to-Image Translation with Conditional Adversarial Networks")
