"""ResNet G and D of SNGAN (Miyato et al. 2018, App. B, Table 4) with SAGAN's options.

G: z -> linear to h0×w0×width -> n × up-block [BN, ReLU, ×2 nearest, conv3, BN, ReLU, conv3]
   (+ shortcut ×2 nearest, conv1) -> BN, ReLU, conv3, tanh.
D: down-blocks [ReLU, conv3, ReLU, conv3, avgpool2] (+ shortcut conv1, avgpool2; the first
   block without the leading ReLU) until the side is 2·s0, then ``extra`` blocks at that side
   -> ReLU -> sum over positions -> linear score. For 32×32 this is SNGAN's CIFAR model.
Resolutions are s0·2ⁿ with s0 ∈ {4, 7} (32, 64, 28, 56, ...), or (H, W) with the shorter side s0·2ⁿ
and the longer a multiple of 2ⁿ (32×64: G starts from a 4×8 map; :func:`gankit.nets.sizes.grid`).
``attention`` inserts a SAGAN self-attention block where the feature map has that side (its shorter
side when H ≠ W; Zhang et al. 2019 use it in G and D, with spectral norm in both). Spectral norm is
on by default in D (SNGAN), off in G (SAGAN turns it on). Weights: Glorot-uniform, gain √2 in the
residual branch (the SNGAN reference code).

Conditioning (``num_classes`` > 0): G concatenates a label embedding to z (cGAN, Mirza &
Osindero 2014; SNGAN's reference code uses conditional BN instead). D's ``conditioning`` is
``projection`` (Miyato & Koyama 2018), ``concat`` (an embedding broadcast as extra input
channels, the cGAN discriminator) or ``aux`` (no label input; an auxiliary classifier head
for ACGAN, Odena et al. 2017, read through :meth:`ResNetDiscriminator.scores_and_classes`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .attention import SelfAttention
from .base import register_family
from .layers import LabelToNoise, MinibatchStdDev, ProjectionHead
from .sizes import check_grid, sample_grid


SN_WARMUP_ITERATIONS = 15   # as torch's spectral_norm runs when it is applied


def _maybe_sn(spectral: bool):
    return nn.utils.parametrizations.spectral_norm if spectral else (lambda m: m)


def _init(module: nn.Module) -> None:
    """Xavier-uniform weights (gain √2 for k > 1 convs), zero biases. A spectrally normalised layer's
    ``.weight`` is computed from the stored ``original``: that is what gets initialised (writing into
    ``.weight`` would change nothing), then the power iteration runs on the new weight, so σ is
    estimated for the weight the layer starts with."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            gain = math.sqrt(2) if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1 else 1.0
            spectral = parametrize.is_parametrized(m, "weight")
            nn.init.xavier_uniform_(m.parametrizations.weight.original if spectral else m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if spectral and m.training:
                with torch.no_grad():
                    for _ in range(SN_WARMUP_ITERATIONS):
                        m.weight  # noqa: B018  (each read in training mode is one power iteration)


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, spectral: bool):
        super().__init__()
        sn = _maybe_sn(spectral)
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1, self.conv2 = sn(nn.Conv2d(c_in, c_out, 3, 1, 1)), sn(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.shortcut = sn(nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))  # (B, c_out, 2H, 2W)


class DownBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, spectral: bool, down: bool = True, first: bool = False):
        super().__init__()
        sn = _maybe_sn(spectral)
        self.down, self.first = down, first
        self.conv1, self.conv2 = sn(nn.Conv2d(c_in, c_out, 3, 1, 1)), sn(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.shortcut = sn(nn.Conv2d(c_in, c_out, 1)) if (c_in != c_out or down) else None

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)  # the first block sees the image, not a ReLU of it
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.first:  # SNGAN's "optimized" first block: pool, then 1x1 conv
            s = self.shortcut(F.avg_pool2d(s, 2))
        else:
            s = self.shortcut(s) if self.shortcut is not None else s
            s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


class ResNetGenerator(nn.Module):
    def __init__(self, z_dim: int, sample_shape: tuple, num_classes: int = 0, width: int = 256,
                 attention: int | None = None, spectral: bool = False, embed_dim: int = 32):
        """``width``: channels of every block (SNGAN: 256); ``attention``: feature-map side (the shorter
        one when H ≠ W) with a self-attention block after it (None = none); ``spectral``: spectral norm on
        every layer (SAGAN)."""
        super().__init__()
        channels, h0, w0, n = sample_grid("the resnet generator", sample_shape)
        s0 = min(h0, w0)
        sides = [s0 * 2 ** (i + 1) for i in range(n)]
        if attention is not None and attention not in sides:
            raise ValueError(f"g.attention must be one of the feature-map sides {sides}, got {attention}")
        sn = _maybe_sn(spectral)
        self.h0, self.w0, self.width = h0, w0, width
        self.cond = LabelToNoise(num_classes, embed_dim)
        self.linear = sn(nn.Linear(z_dim + self.cond.extra, h0 * w0 * width))
        blocks = []
        for side in sides:
            blocks.append(UpBlock(width, width, spectral))
            if side == attention:
                blocks.append(SelfAttention(width, spectral))
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), sn(nn.Conv2d(width, channels, 3, 1, 1)), nn.Tanh())
        _init(self)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless images of h×w can be made."""
        check_grid("the resnet generator", h, w)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.linear(self.cond(z, y)).view(z.shape[0], self.width, self.h0, self.w0)
        return self.out(self.blocks(h))  # (B, C, H, W)


class ResNetDiscriminator(nn.Module):
    CONDITIONING = ("projection", "concat", "aux")

    def __init__(self, sample_shape: tuple, num_classes: int = 0, width: int = 128, extra: int = 2,
                 attention: int | None = None, spectral: bool = True, conditioning: str = "projection",
                 embed_dim: int = 8, minibatch_std: bool = False, pack: int = 1):
        """``width``: channels of every block (SNGAN: 128); ``extra``: blocks after the last downsampling;
        ``attention``: feature-map side (the shorter one when H ≠ W) with a self-attention block after it;
        ``spectral``: spectral norm (SNGAN); ``conditioning``: projection | concat | aux (see the module
        doc); ``embed_dim``: label channels for concat; ``minibatch_std``: a minibatch-std channel before
        the last block (Karras et al. 2018); ``pack`` > 1: score groups of ``pack`` samples stacked on the
        channel axis (PacGAN)."""
        super().__init__()
        channels, _, _, n = sample_grid("the resnet discriminator", sample_shape, up=False)
        res = min(sample_shape[1:])  # the shorter side names the feature maps
        if conditioning not in self.CONDITIONING:
            raise ValueError(f"d.conditioning must be one of {', '.join(self.CONDITIONING)}, got {conditioning!r}")
        if pack > 1 and num_classes:
            raise ValueError("d.pack > 1 with a conditional model is not supported (a pack mixes labels)")
        downs = max(1, n - 1)  # SNGAN at 32x32: two down-blocks to 8x8, then two blocks at 8x8
        sides = [res // 2 ** (i + 1) for i in range(downs)] + [res // 2 ** downs] * extra
        if attention is not None and attention not in sides:
            raise ValueError(f"d.attention must be one of the feature-map sides {sorted(set(sides))}, got {attention}")
        self.pack, self.num_classes = pack, num_classes
        self.conditioning = conditioning if num_classes else None
        self.aux_classes = num_classes if self.conditioning == "aux" else 0  # ACGAN's classifier outputs
        sn = _maybe_sn(spectral)
        self.embed = nn.Embedding(num_classes, embed_dim) if self.conditioning == "concat" else None
        c_in = channels * pack + (embed_dim if self.embed is not None else 0)
        blocks = []
        for i, side in enumerate(sides):
            if minibatch_std and i == len(sides) - 1:
                blocks.append(MinibatchStdDev())
                c_in += 1
            blocks.append(DownBlock(c_in, width, spectral, down=i < downs, first=i == 0))
            c_in = width
            if side == attention and not any(isinstance(b, SelfAttention) for b in blocks):
                blocks.append(SelfAttention(width, spectral))
        self.blocks = nn.Sequential(*blocks)
        self.head = ProjectionHead(width, num_classes if self.conditioning == "projection" else 0, spectral=spectral)
        self.classifier = sn(nn.Linear(width, num_classes)) if self.conditioning == "aux" else None
        _init(self)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless images of h×w can be scored (the same
        sizes as the generator's: sum pooling would take any, but the sides name the attention map)."""
        check_grid("the resnet discriminator", h, w, up=False)

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """(B, C, H, W) -> (B / pack, width): sum-pooled ReLU features."""
        if self.pack > 1:
            x = x.reshape(x.shape[0] // self.pack, -1, *x.shape[2:])
        if self.embed is not None:
            if y is None:
                raise ValueError("this discriminator is conditional: pass class labels y")
            e = self.embed(y)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, e.to(x.dtype)], 1)
        return F.relu(self.blocks(x)).sum(dim=(2, 3))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.features(x, y)
        return self.head(h, y if self.conditioning == "projection" else None)  # (B / pack,)

    def scores_and_classes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """ACGAN's two heads: real/fake scores (B,) and class logits (B, num_classes)."""
        if self.classifier is None:
            raise ValueError("scores_and_classes needs d.conditioning: aux and a conditional model")
        h = self.features(x)
        return self.head(h, None), self.classifier(h)


register_family("resnet", ResNetGenerator, ResNetDiscriminator, "Miyato et al. 2018; Zhang et al. 2019")
