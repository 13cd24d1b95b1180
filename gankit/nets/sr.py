"""Single-image super-resolution networks: SRResNet / SRGAN (Ledig et al. 2017) and RRDBNet / ESRGAN
(Wang et al. 2018), with ESRGAN's network interpolation.

Both generators map a low-resolution image (B, in_channels, h, w) to a high-resolution one
(B, out_channels, h·scale, w·scale), scale ∈ {1, 2, 4, 8}; any h, w ≥ 1 work (every conv is padded to
keep its size and every upsampling step doubles it exactly). Images are in the model range [-1, 1];
the generators end in a plain linear conv, *not* tanh: a pixel-loss (PSNR) model regresses toward
conditional means, and a tanh would have to saturate to reach ±1 exactly (vanishing gradients at the
brightest and darkest pixels). Outputs may therefore leave [-1, 1] slightly; clamp them when an image
is written.

The discriminator (both families) judges a high-resolution image alone: ``D(x, cond=None) -> (B,)``
raw logits. Which adversarial loss it is trained with (SRGAN's non-saturating one, ESRGAN's
relativistic average one, Wang et al. Sec. 3.2) is the objective's choice, not the network's.

SRResNet (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network", Fig. 4, top): conv 9x9 + PReLU; ``n_blocks`` residual blocks
[conv 3x3 - BN - PReLU - conv 3x3 - BN] + identity; conv 3x3 - BN plus a long skip from the first
conv's output; log2(scale) × [conv 3x3 to 4·width, PixelShuffle(2) (sub-pixel conv, Shi et al. 2016),
PReLU]; conv 9x9 to ``out_channels``. The paper leaves open PReLU's parameter count and the
initialisation; here PReLU has one slope per channel (starting at 0.25, PyTorch's default) and convs
are He-normal for that slope (fan-in), biases 0. A conv has a bias exactly when no BN follows it.

SRGANDiscriminator (Ledig et al. 2017, Fig. 4, bottom): conv 3x3 (width) + LeakyReLU 0.2, then
``n_blocks`` blocks of [conv 3x3 stride 1 widening to width·2^i - BN - LReLU] and
[conv 3x3 stride 2 - BN - LReLU] (block 0 has no stride-1 conv: the first conv plays its part), so
n_blocks = 4 gives the paper's 8 convs k3n64s1, k3n64s2, k3n128s1, k3n128s2, ..., k3n512s2 at width 64;
then a dense layer to 16·width units (the paper's 1024) + LReLU 0.2 and one to 1 logit. The paper
flattens the 512×6×6 feature map, which ties the dense layer to 96×96 crops; here an
AdaptiveAvgPool2d(1) comes first, so the dense layer sees width·2^(n_blocks-1) features and any input
size works (the logit of a 96×96 crop no longer has per-position weights, a deliberate difference).

RRDBNet (Wang et al. 2018, "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks",
Sec. 3.1, Fig. 3-4): conv 3x3; ``n_blocks`` Residual-in-Residual Dense Blocks; trunk conv 3x3 plus a
long skip from the first conv; log2(scale) × [nearest ×2, conv 3x3, LeakyReLU 0.2]; conv 3x3 +
LeakyReLU 0.2 + conv 3x3 to ``out_channels``. No BN anywhere (Sec. 3.1: BN brings artefacts). A dense
block has 5 convs 3x3: conv k (k = 1..4) sees the block input concatenated with the outputs of convs
1..k-1 and outputs ``growth`` channels + LeakyReLU 0.2; conv 5 maps back to ``width`` channels, no
activation; the block returns x + res_scale·conv5. An RRDB chains 3 dense blocks and returns
x + res_scale·(their output) (residual scaling β = 0.2, Sec. 3.1). Initialisation as the paper's
"smaller initialisation": dense-block convs He-normal (fan-in, ReLU gain) × 0.1, biases 0; the other
convs keep PyTorch's default, as the authors' code does. ESRGAN pairs RRDBNet with a VGG-style D like
SRGAN's (the authors' code uses a deeper 128×128-only variant); this module registers
:class:`SRGANDiscriminator` for it.

ESRGAN's network interpolation (Sec. 3.4) is :func:`interpolate_state`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import register_family

SCALES = (1, 2, 4, 8)


def _check_int(who: str, name: str, value, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{who}: {name} must be an integer >= {low}, got {value!r}")
    return value


def check_scale(who: str, scale) -> int:
    """``scale`` unchanged if it is 1, 2, 4 or 8, else a one-line ValueError naming ``who``."""
    if not isinstance(scale, int) or isinstance(scale, bool) or scale not in SCALES:
        raise ValueError(f"{who}: scale must be one of 1, 2, 4, 8 (a power of two, one ×2 stage each), got {scale!r}")
    return scale


def _check_channels(who: str, x: Tensor, channels: int) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{who} expects (B, {channels}, H, W) images, got shape {tuple(x.shape)}")


def _conv(c_in: int, c_out: int, k: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=bias)  # padding k//2: same size at stride 1


def _init_he(module: nn.Module, slope: float) -> None:
    """Conv/linear weights He-normal (fan-in) for a leaky ReLU of negative slope ``slope``; biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=slope, mode="fan_in", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------- SRResNet

_PRELU_INIT = 0.25  # PyTorch's (and He et al. 2015's) initial PReLU slope


class _ResidualBlock(nn.Module):
    """x + BN(conv(PReLU(BN(conv(x))))), (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv(width, width, 3, bias=False), nn.BatchNorm2d(width), nn.PReLU(width, _PRELU_INIT),
            _conv(width, width, 3, bias=False), nn.BatchNorm2d(width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _check_generator(net: nn.Module, who: str, in_channels, out_channels, scale, width, n_blocks, residual) -> None:
    """The settings both generators share, checked (one ValueError line each); sets ``net.scale``,
    ``net.in_channels`` and ``net.residual``."""
    net.residual = _check_residual(who, residual, in_channels, out_channels)
    net.scale = check_scale(who, scale)
    net.in_channels = _check_int(who, "in_channels", in_channels, 1)
    _check_int(who, "out_channels", out_channels, 1)
    _check_int(who, "width", width, 1)
    _check_int(who, "n_blocks", n_blocks, 1)


def _check_residual(who: str, residual, in_channels: int, out_channels: int) -> bool:
    if not isinstance(residual, bool):
        raise ValueError(f"{who}: residual must be true or false, got {residual!r}")
    if residual and in_channels != out_channels:
        raise ValueError(f"{who}: residual needs as many input as output channels, got {in_channels} and {out_channels}")
    return residual


def zero_last(conv: nn.Conv2d) -> None:
    """Zero the output conv of a residual generator: it starts as exactly the bicubic upscaling."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def bicubic_residual(out: Tensor, x: Tensor, scale: int, residual: bool) -> Tensor:
    """``out`` plus the bicubic upscaling of the input ``x`` when ``residual``: the network then learns
    only what bicubic interpolation misses (VDSR's global residual, Kim et al. 2016). Neither SRGAN nor
    ESRGAN has it; it lets a small network trained for minutes start at the bicubic baseline instead
    of learning the identity of colours first (docs/restoration.md)."""
    if not residual:
        return out
    return out + F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


class SRResNet(nn.Module):
    """SRGAN's generator; see the module docstring. ``self.scale`` is the upsampling factor."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, width: int = 64, n_blocks: int = 16,
                 residual: bool = False):
        """``width``: channels of the trunk (paper 64); ``n_blocks``: residual blocks (paper B = 16);
        ``residual``: add the bicubic upscaling of the input to the output (:func:`bicubic_residual`)."""
        super().__init__()
        _check_generator(self, "SRResNet", in_channels, out_channels, scale, width, n_blocks, residual)
        self.head = nn.Sequential(_conv(in_channels, width, 9), nn.PReLU(width, _PRELU_INIT))
        self.body = nn.Sequential(*[_ResidualBlock(width) for _ in range(n_blocks)],
                                  _conv(width, width, 3, bias=False), nn.BatchNorm2d(width))
        up = []
        for _ in range(int(math.log2(self.scale))):
            # (B, w, h, w') -> (B, 4w, h, w') -> PixelShuffle -> (B, w, 2h, 2w')
            up += [_conv(width, 4 * width, 3), nn.PixelShuffle(2), nn.PReLU(width, _PRELU_INIT)]
        self.upsample = nn.Sequential(*up)
        self.tail = _conv(width, out_channels, 9)
        _init_he(self, _PRELU_INIT)
        if self.residual:
            zero_last(self.tail)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, h, w) in [-1, 1] -> (B, out_channels, h·scale, w·scale), linear (unclamped)."""
        _check_channels("SRResNet", x, self.in_channels)
        feat = self.head(x)
        feat = feat + self.body(feat)  # the long skip from the first conv
        return bicubic_residual(self.tail(self.upsample(feat)), x, self.scale, self.residual)


# ---------------------------------------------------------------------------------------- discriminator

class SRGANDiscriminator(nn.Module):
    """SRGAN's VGG-style discriminator (see the module docstring), also ESRGAN's here."""

    def __init__(self, in_channels: int, width: int = 64, n_blocks: int = 4):
        """``width``: channels of the first conv (paper 64), doubled in every block after the first;
        ``n_blocks``: stride-2 convs (paper 4, i.e. 8 convs; the input shrinks by 2**n_blocks)."""
        super().__init__()
        who = "SRGANDiscriminator"
        self.in_channels = _check_int(who, "in_channels", in_channels, 1)
        _check_int(who, "width", width, 1)
        _check_int(who, "n_blocks", n_blocks, 1)
        layers = [_conv(in_channels, width, 3), nn.LeakyReLU(0.2, True)]
        c = width
        for i in range(n_blocks):
            if i > 0:  # stride 1, widening to width·2^i
                layers += [_conv(c, width * 2 ** i, 3, bias=False), nn.BatchNorm2d(width * 2 ** i),
                           nn.LeakyReLU(0.2, True)]
                c = width * 2 ** i
            layers += [_conv(c, c, 3, stride=2, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(c, 16 * width), nn.LeakyReLU(0.2, True), nn.Linear(16 * width, 1))
        _init_he(self, 0.2)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """(B, in_channels, H, W), any H, W >= 1 -> (B,) raw logits. ``cond`` must be None: an SR
        discriminator judges the high-resolution image alone (the LR input is not shown to it)."""
        if cond is not None:
            raise ValueError("SRGANDiscriminator judges HR images alone: cond must be None "
                             "(use a translation family such as pix2pix for a conditional D)")
        _check_channels("SRGANDiscriminator", x, self.in_channels)
        h = self.pool(self.features(x)).flatten(1)  # (B, width·2^(n_blocks-1))
        return self.classifier(h).squeeze(1)


# ------------------------------------------------------------------------------------------------ RRDB

class _DenseBlock(nn.Module):
    """ESRGAN's residual dense block: 5 densely connected convs, x + res_scale·conv5(...)."""

    def __init__(self, width: int, growth: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        # conv k (0-based) sees the input and the k earlier outputs: width + k·growth channels
        self.convs = nn.ModuleList(_conv(width + k * growth, growth if k < 4 else width, 3) for k in range(5))

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in self.convs[:4]:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))  # (B, growth, H, W) each
        return x + self.res_scale * self.convs[4](torch.cat(feats, 1))


class _RRDB(nn.Module):
    """Residual-in-Residual Dense Block: x + res_scale·DB3(DB2(DB1(x))), (B, C, H, W) -> same."""

    def __init__(self, width: int, growth: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.blocks = nn.Sequential(*[_DenseBlock(width, growth, res_scale) for _ in range(3)])

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res_scale * self.blocks(x)


class RRDBNet(nn.Module):
    """ESRGAN's generator; see the module docstring. ``self.scale`` is the upsampling factor."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, width: int = 64, n_blocks: int = 23,
                 growth: int = 32, res_scale: float = 0.2, residual: bool = False):
        """``width``: trunk channels (paper 64); ``n_blocks``: RRDBs (paper 23); ``growth``: channels each
        dense conv adds (paper 32); ``res_scale``: residual scaling β of dense blocks and RRDBs (paper 0.2);
        ``residual``: add the bicubic upscaling of the input to the output (:func:`bicubic_residual`)."""
        super().__init__()
        who = "RRDBNet"
        _check_generator(self, who, in_channels, out_channels, scale, width, n_blocks, residual)
        _check_int(who, "growth", growth, 1)
        if isinstance(res_scale, bool) or not isinstance(res_scale, (int, float)) or not 0 < res_scale <= 1:
            raise ValueError(f"{who}: res_scale must be a number in (0, 1], got {res_scale!r}")
        self.head = _conv(in_channels, width, 3)
        self.body = nn.Sequential(*[_RRDB(width, growth, float(res_scale)) for _ in range(n_blocks)])
        self.trunk = _conv(width, width, 3)
        self.up_convs = nn.ModuleList(_conv(width, width, 3) for _ in range(int(math.log2(self.scale))))
        self.hr_conv = _conv(width, width, 3)
        self.tail = _conv(width, out_channels, 3)
        if self.residual:
            zero_last(self.tail)
        for m in self.body.modules():  # the paper's smaller initialisation (Sec. 3.1), dense blocks only
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                m.weight.data.mul_(0.1)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, h, w) in [-1, 1] -> (B, out_channels, h·scale, w·scale), linear (unclamped)."""
        _check_channels("RRDBNet", x, self.in_channels)
        feat = self.head(x)
        feat = feat + self.trunk(self.body(feat))  # the long skip from the first conv
        for conv in self.up_convs:
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return bicubic_residual(self.tail(F.leaky_relu(self.hr_conv(feat), 0.2)), x, self.scale, self.residual)


# ------------------------------------------------------------------------------ network interpolation

def interpolate_state(psnr_state: dict, gan_state: dict, alpha: float) -> dict:
    """ESRGAN's network interpolation (Wang et al. 2018, Sec. 3.4):
    θ_interp = (1 - α)·θ_PSNR + α·θ_GAN, parameter by parameter.

    ``psnr_state`` / ``gan_state``: state dicts of the same architecture (the PSNR-oriented model and
    the GAN model fine-tuned from it). ``alpha`` ∈ [0, 1]: 0 gives the PSNR model exactly, 1 the GAN
    model exactly. Floating-point tensors (weights, BN running statistics) are interpolated; integer
    and bool buffers (BN ``num_batches_tracked``) are copied from ``gan_state``. Returns a new dict of
    new tensors (the inputs are not modified). A key in one state only, or a key whose shape or dtype
    differs, is a ValueError naming the key.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"interpolate_state: alpha must be a number in [0, 1], got {alpha!r}")
    only_psnr = [k for k in psnr_state if k not in gan_state]
    only_gan = [k for k in gan_state if k not in psnr_state]
    if only_psnr or only_gan:
        key, side = (only_psnr[0], "psnr_state") if only_psnr else (only_gan[0], "gan_state")
        raise ValueError(f"interpolate_state: key {key!r} is only in {side} ({len(only_psnr) + len(only_gan)} "
                         "unmatched keys); both states must come from one architecture")
    out = {}
    for key, p in psnr_state.items():
        g = gan_state[key]
        if not isinstance(p, Tensor) or not isinstance(g, Tensor):
            raise ValueError(f"interpolate_state: {key!r} is not a tensor in both states")
        if p.shape != g.shape or p.dtype != g.dtype:
            raise ValueError(f"interpolate_state: {key!r} is {p.dtype} {tuple(p.shape)} in psnr_state but "
                             f"{g.dtype} {tuple(g.shape)} in gan_state")
        if p.is_floating_point() or p.is_complex():
            # torch.lerp computes p + α(g - p) for α < 0.5 and g - (1-α)(g - p) otherwise: exact at both ends.
            out[key] = torch.lerp(p.detach(), g.detach().to(p.device), float(alpha))
        else:
            out[key] = g.detach().clone()
    return out


register_family("srresnet", SRResNet, SRGANDiscriminator, "Ledig et al. 2017, Photo-Realistic Single Image "
                "Super-Resolution Using a Generative Adversarial Network")
register_family("rrdb", RRDBNet, SRGANDiscriminator,
                "Wang et al. 2018, ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks")
