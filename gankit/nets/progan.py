"""ProGAN (Karras et al. 2018, "Progressive Growing of GANs for Improved Quality, Stability, and
Variation"): a G and a D that grow from 4×4 to the full resolution while training.

Both networks hold the layers of every resolution from the start (so an optimiser built once sees
every parameter) and two persistent buffers, saved in checkpoints and copied to an EMA copy:

* ``stage`` (int64 scalar): the highest active resolution, 0 = h0×w0 (4×4), k = h0·2ᵏ × w0·2ᵏ;
* ``alpha`` (float scalar in [0, 1]): the fade-in of resolution ``stage`` (Sec. 2, Fig. 2):
  1 = fully in, 0 = the network behaves as at ``stage − 1``.

:meth:`set_growth` sets them (the ``progan`` objective does, before every step); a network built
on its own starts fully grown (last stage, alpha 1). Both networks always work at the full size:

* G(z, y) -> (B, C, H, W): the active resolution's image, upsampled (nearest) to H×W; during a
  fade-in lerp(upsample2(toRGB_{s−1}(h_{s−1})), toRGB_s(h_s), alpha) (Fig. 2b). The output is
  linear, as in the paper; in eval mode (sampling) it is clipped to the data range [-1, 1], as
  the paper's code clips when it turns samples into images;
* D(x, y) -> (B,): x (B, C, H, W) average-pooled to the active resolution; during a fade-in
  lerp(fromRGB_{s−1}(avgpool2(x_s)), block_s(fromRGB_s(x_s)), alpha) (Fig. 2b, mirrored).

G: PixelNorm(z) -> dense to c0×h0×w0 (the paper's 4×4 conv of a 1×1 latent) -> conv 3×3, then per
resolution [upsample 2×, conv 3×3, conv 3×3], leaky ReLU 0.2 and pixel norm after every conv
(Sec. 4.2); toRGB a 1×1 conv per resolution. D: fromRGB a 1×1 conv per resolution, then per
resolution [conv 3×3, conv 3×3, avgpool 2×], and at h0×w0 minibatch std (Sec. 3), conv 3×3,
dense (the paper's 4×4 conv) and the score. Every layer has the equalized learning rate (Sec. 4.1,
:mod:`gankit.nets.equalized`). Table 2 has the 1024² networks.

Channels at a resolution of shorter side r: min(``max_width``, ``width`` // r), at least 1. The paper's
networks are ``width`` 16384, ``max_width`` 512 (512 up to 64×64, then 256, 128, 64, 32 at 1024).
Sizes: the shorter side 4·2ⁿ (8, 16, 32, 64, ...), the longer a multiple of 2ⁿ (32×64 grows from 4×8).
Conditional: G concatenates a class embedding to z before the pixel norm, as the paper's code
concatenates labels to the latent; D scores with a projection head (Miyato & Koyama 2018).
"""
from __future__ import annotations

import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import register_family
from .equalized import EqualizedConv2d, EqualizedLinear, PixelNorm
from .layers import LabelToNoise, MinibatchStdDev, ProjectionHead, flatten_features
from .sizes import ImageSizeError, check_grid, format_resolution

SLOPE = 0.2  # leaky ReLU's negative slope, everywhere in both networks


def check_progan_size(who: str, h: int, w: int, up: bool) -> Tuple[int, int, int]:
    """(h0, w0, n) with (h, w) = (h0, w0)·2ⁿ and the shorter of h0, w0 equal to 4, or an
    :class:`ImageSizeError` naming ``who`` with the nearest size that works."""
    h0, w0, n = check_grid(who, h, w, up)  # 4·2ⁿ or 7·2ⁿ with the longer side a multiple of 2ⁿ
    if min(h0, w0) != 4:  # 7·2ⁿ (28, 56, ...): ProGAN starts at 4×4
        f = 2 ** max(1, round(math.log2(min(h, w) / 4)))
        suggest = (4 * f, max(4 * f, round(w / f) * f)) if h <= w else (max(4 * f, round(h / f) * f), 4 * f)
        raise ImageSizeError(who, "needs the shorter side 4·2ⁿ (8, 16, 32, 64, ...) and the longer side a "
                                  "multiple of 2ⁿ", (h, w), suggest, note="it grows from 4x4")
    return h0, w0, n


def stage_channels(width: int, max_width: int, n: int) -> List[int]:
    """Channels of stages 0..n (shorter side 4·2ᵏ): min(max_width, width // (4·2ᵏ)), at least 1."""
    for name, v in (("width", width), ("max_width", max_width)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return [max(1, min(max_width, width // (4 * 2 ** k))) for k in range(n + 1)]


class _Growth(nn.Module):
    """The growth state both networks share: buffers ``stage`` and ``alpha`` and how they are set."""

    top: int  # the last stage (the full resolution)

    def _init_growth(self, top: int) -> None:
        self.top = top
        self.register_buffer("stage", torch.tensor(top, dtype=torch.int64))
        self.register_buffer("alpha", torch.tensor(1.0))

    def set_growth(self, stage: int, alpha: float = 1.0) -> None:
        """Make resolution ``stage`` (0 = h0×w0) the highest active one, faded in by ``alpha`` ∈ [0, 1]."""
        if not 0 <= int(stage) <= self.top:
            raise ValueError(f"stage must be in 0..{self.top}, got {stage}")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.stage.fill_(int(stage))
        self.alpha.fill_(float(alpha))

    def growth(self) -> Tuple[int, float]:
        """(stage, alpha) as Python numbers (a host read of the buffers: the layers run depend on it)."""
        return int(self.stage), float(self.alpha)


class ProGANGenerator(_Growth):
    linear_output = True  # no tanh: GenerationTask clamps the samples it makes to [-1, 1]

    def __init__(self, z_dim: int, sample_shape: tuple, num_classes: int = 0, width: int = 16384,
                 max_width: int = 512, embed_dim: int = 32):
        """``width``/``max_width``: channels min(max_width, width // r) at resolution r (module docstring);
        ``embed_dim``: size of the class embedding concatenated to z (conditional only)."""
        super().__init__()
        if len(sample_shape) != 3:
            raise ValueError(f"the progan generator needs images (C, H, W), got sample shape {tuple(sample_shape)}")
        channels, h, w = sample_shape
        self.h0, self.w0, n = check_progan_size("the progan generator", h, w, up=True)
        ch = stage_channels(width, max_width, n)
        self.cond = LabelToNoise(num_classes, embed_dim)
        self.norm = PixelNorm()
        self.act = nn.LeakyReLU(SLOPE)
        # The paper's code gives this layer gain √2/4 (its 4×4 "conv" of a 1×1 latent); the pixel norm
        # that follows undoes the scale of the activations, not of the bias or of the updates.
        self.dense = EqualizedLinear(z_dim + self.cond.extra, ch[0] * self.h0 * self.w0, gain=math.sqrt(2) / 4)
        self.conv0 = EqualizedConv2d(ch[0], ch[0], 3)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(ch[k - 1], ch[k], 3), EqualizedConv2d(ch[k], ch[k], 3)])
            for k in range(1, n + 1))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(c, channels, 1, gain=1.0) for c in ch)
        self._init_growth(n)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless images of h×w can be made."""
        check_progan_size("the progan generator", h, w, up=True)

    def _conv(self, conv: nn.Module, h: Tensor) -> Tensor:
        return self.norm(self.act(conv(h)))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (B, z_dim), y (B,) int64 or None (unconditional) -> (B, C, H, W) at the full size."""
        stage, alpha = self.growth()
        h = self.norm(self.cond(z, y))
        h = self.norm(self.act(self.dense(h))).view(z.shape[0], -1, self.h0, self.w0)
        h = self._conv(self.conv0, h)                                   # (B, c0, h0, w0)
        prev = None
        for k in range(1, stage + 1):
            if k == stage and alpha < 1:
                prev = h                                                # stage − 1's features, for the fade
            conv_a, conv_b = self.blocks[k - 1]
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = self._conv(conv_b, self._conv(conv_a, h))               # (B, c_k, h0·2ᵏ, w0·2ᵏ)
        x = self.to_rgb[stage](h)
        if prev is not None:
            low = F.interpolate(self.to_rgb[stage - 1](prev), scale_factor=2, mode="nearest")
            x = torch.lerp(low, x, alpha)  # exactly ``low`` at alpha 0 and ``x`` at alpha 1
        if stage < self.top:
            x = F.interpolate(x, scale_factor=2 ** (self.top - stage), mode="nearest")
        return x  # linear (the paper's); samples are clamped to [-1, 1] where they are made (gankit.tasks)


class ProGANDiscriminator(_Growth):
    def __init__(self, sample_shape: tuple, num_classes: int = 0, width: int = 16384, max_width: int = 512,
                 group: int = 4):
        """``width``/``max_width`` as for G; ``group``: samples per minibatch-std group (Sec. 3, 4)."""
        super().__init__()
        if len(sample_shape) != 3:
            raise ValueError(f"the progan discriminator needs images (C, H, W), got sample shape "
                             f"{tuple(sample_shape)}")
        channels, h, w = sample_shape
        self.h0, self.w0, n = check_progan_size("the progan discriminator", h, w, up=False)
        ch = stage_channels(width, max_width, n)
        self.act = nn.LeakyReLU(SLOPE)
        self.from_rgb = nn.ModuleList(EqualizedConv2d(channels, c, 1) for c in ch)
        # Block k works at stage k and hands stage k − 1 its channels: conv c_k -> c_k, conv c_k -> c_{k−1}.
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(ch[k], ch[k], 3), EqualizedConv2d(ch[k], ch[k - 1], 3)])
            for k in range(1, n + 1))
        self.mbstd = MinibatchStdDev(group)
        self.conv0 = EqualizedConv2d(ch[0] + 1, ch[0], 3)
        self.dense = EqualizedLinear(ch[0] * self.h0 * self.w0, ch[0])
        # The score: a linear map with gain 1 (the paper's last layer), plus ⟨embed(y), h⟩ when conditional.
        # The embedding starts at N(0, 1/F), so the projection term starts at the linear term's scale.
        self.head = ProjectionHead(ch[0], num_classes)
        self.head.linear = EqualizedLinear(ch[0], 1, gain=1.0)
        if self.head.embed is not None:
            nn.init.normal_(self.head.embed.weight, 0.0, 1.0 / math.sqrt(ch[0]))
        self._init_growth(n)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless images of h×w can be scored."""
        check_progan_size("the progan discriminator", h, w, up=False)

    def _block(self, k: int, h: Tensor) -> Tensor:
        conv_a, conv_b = self.blocks[k - 1]
        h = self.act(conv_b(self.act(conv_a(h))))
        return F.avg_pool2d(h, 2)                                       # stage k -> stage k − 1

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) at the full size, y (B,) int64 or None -> scores (B,)."""
        stage, alpha = self.growth()
        full = (self.h0 * 2 ** self.top, self.w0 * 2 ** self.top)
        if tuple(x.shape[2:]) != full:
            raise ValueError(f"the progan discriminator takes {format_resolution(full)} px images, "
                             f"got {x.shape[2]}x{x.shape[3]}")
        if stage < self.top:
            x = F.avg_pool2d(x, 2 ** (self.top - stage))               # (B, C, h0·2ˢ, w0·2ˢ)
        h = self.act(self.from_rgb[stage](x))
        if stage > 0:
            h = self._block(stage, h)
            if alpha < 1:
                low = self.act(self.from_rgb[stage - 1](F.avg_pool2d(x, 2)))
                h = torch.lerp(low, h, alpha)
            for k in range(stage - 1, 0, -1):
                h = self._block(k, h)
        h = self.act(self.conv0(self.mbstd(h)))                        # (B, c0, h0, w0)
        h = self.act(self.dense(flatten_features(h)))                  # (B, c0)
        return self.head(h, y)


register_family("progan", ProGANGenerator, ProGANDiscriminator, "Karras et al. 2018")
