"""BigGAN's G and D (Brock et al. 2019, App. B; the 32×32 architecture of their CIFAR-10 runs).

G: z (B, z_dim) is split into n + 1 equal chunks, n = the number of up-blocks ("hierarchical
   latent space", §3 and Fig. 15): the first chunk goes through a linear layer to an h0×w0×width
   map; block i's two conditional BatchNorms read c_i = [shared class embedding, chunk i + 1].
   Up-block: CBN, ReLU, ×2 nearest, conv3, CBN, ReLU, conv3 (+ shortcut ×2 nearest, conv1).
   One self-attention block (SAGAN's, Zhang et al. 2019) after the block whose output has side
   ``attention``. Then BatchNorm (plain, affine), ReLU, conv3, tanh.
D: SNGAN's ResNet D (the blocks of :mod:`gankit.nets.resnet`): down-blocks until the side is
   2·s0, ``extra`` blocks at that side, self-attention at side ``attention``, ReLU, sum over
   positions, then the projection head (Miyato & Koyama 2018) when conditional.

For 32×32 images this is the paper's CIFAR architecture: every block has ``width`` = 4·ch
channels in G and D (ch = 64 there, so width 256), G upsamples 4 → 8 → 16 → 32, D downsamples
32 → 16 → 8 and keeps two blocks at 8×8. At other sizes the width stays constant (BigGAN's
128×128 and larger models change it per stage, which this family does not reproduce).

Conditional BatchNorm (Sec. 3, "shared embedding"): BatchNorm without affine parameters, then a
per-channel gain 1 + W_γ·c and bias W_β·c, where c = [embed(y), z chunk] (B, shared_dim + chunk);
one class embedding table of ``shared_dim`` is shared by every CBN in G (linearly projected per
layer) instead of a table per layer. Unconditional (``num_classes`` 0): c is the z chunk alone.

Spectral norm (Miyato et al. 2018) is on every conv and linear layer of G and D, as BigGAN has it,
including the CBN projections and D's projection embedding; G's shared class embedding is a lookup
table and stays plain, as in the paper's code. Weights are initialised orthogonally (Saxe et al.
2014; App. B: "we use Orthogonal Initialization"), biases to 0, before spectral norm is applied,
so the power-iteration vectors start from the initialised weights.

Attention side: ``attention: half`` (the default) puts the block at half the image's shorter side
(16×16 for 32×32). The paper's 128×128 model attends at 64×64, i.e. also at half the output side;
its CIFAR code runs without attention, which ``attention: null`` gives.
"""
from __future__ import annotations

from typing import List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import SelfAttention
from .base import register_family
from .layers import ProjectionHead
from .resnet import DownBlock
from .sizes import check_grid, sample_grid

Attention = Union[int, str, None]


def orthogonal_init(module: nn.Module) -> None:
    """Orthogonal weights (gain 1; a conv weight (out, in, k, k) as its (out, in·k·k) matrix) for
    every conv, linear and embedding layer of ``module``, zero biases. Call before spectral norm:
    on a parametrized layer ``.weight`` is computed, and writing into it changes nothing."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.init.orthogonal_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


def spectral_norm_all(module: nn.Module, skip: tuple = ()) -> None:
    """Spectral norm on every conv, linear and embedding layer of ``module`` except those in ``skip``."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)) and not any(m is s for s in skip):
            nn.utils.parametrizations.spectral_norm(m)


def _attention_side(attention: Attention, short_side: int, sides: List[int], who: str) -> Optional[int]:
    """The feature-map side with a self-attention block, or None. ``half``: half of ``short_side``
    when a block outputs that side (none at 8×8 images, whose G has a single 8×8 block)."""
    if attention is None:
        return None
    if attention == "half":
        return short_side // 2 if short_side // 2 in sides else None
    if isinstance(attention, bool) or not isinstance(attention, int) or attention not in sides:
        raise ValueError(f"{who}.attention must be half, null or one of the feature-map sides "
                         f"{sorted(set(sides))}, got {attention!r}")
    return attention


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine parameters, then out = (1 + W_γ c) · x̂ + W_β c per channel
    (BigGAN, Sec. 3 and App. B; de Vries et al. 2017). x: (B, C, H, W), c: (B, cond_dim)."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        # No bias in either projection: a constant offset would be an affine BatchNorm again.
        self.gain = nn.Linear(cond_dim, channels, bias=False)
        self.bias = nn.Linear(cond_dim, channels, bias=False)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        gain = 1 + self.gain(c)[:, :, None, None]   # (B, C, 1, 1)
        bias = self.bias(c)[:, :, None, None]
        return self.bn(x) * gain + bias


class GBlock(nn.Module):
    """BigGAN's up-block: CBN, ReLU, ×2, conv3, CBN, ReLU, conv3, + (×2, conv1) shortcut.
    (B, c_in, H, W), c (B, cond_dim) -> (B, c_out, 2H, 2W)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.bn1, self.bn2 = ConditionalBatchNorm2d(c_in, cond_dim), ConditionalBatchNorm2d(c_out, cond_dim)
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class BigGANGenerator(nn.Module):
    def __init__(self, z_dim: int, sample_shape: tuple, num_classes: int = 0, width: int = 256,
                 shared_dim: int = 128, attention: Attention = "half"):
        """``width``: channels of every block (BigGAN's CIFAR model: 4·ch = 256); ``shared_dim``: size
        of the class embedding shared by all conditional BatchNorms (paper: 128; unused when
        unconditional); ``attention``: side of the feature map followed by self-attention, ``half``
        (half the image's shorter side) or null (none). ``z_dim`` must be a multiple of the number
        of z chunks, blocks + 1 (4 at 32×32, 3 at 16×16 or 28×28)."""
        super().__init__()
        channels, h0, w0, n = sample_grid("the biggan generator", sample_shape)
        if z_dim % (n + 1):
            lo = z_dim // (n + 1) * (n + 1)
            raise ValueError(f"model.z_dim={z_dim} must split into {n + 1} equal chunks (the linear layer and "
                             f"{n} blocks of {sample_shape[1]}x{sample_shape[2]} images): use a multiple of "
                             f"{n + 1}, e.g. {lo or n + 1} or {lo + n + 1}")
        s0 = min(h0, w0)
        sides = [s0 * 2 ** (i + 1) for i in range(n)]
        self.attention = _attention_side(attention, min(sample_shape[1:]), sides, "g")
        self.z_dim, self.h0, self.w0, self.width = z_dim, h0, w0, width
        self.chunk = z_dim // (n + 1)
        self.chunks = [self.chunk] * (n + 1)  # z's split: the linear layer's, then one per block
        self.shared = nn.Embedding(num_classes, shared_dim) if num_classes else None
        cond_dim = self.chunk + (shared_dim if num_classes else 0)
        self.linear = nn.Linear(self.chunk, h0 * w0 * width)
        self.blocks = nn.ModuleList(GBlock(width, width, cond_dim) for _ in sides)
        # Index of the block after which attention runs (-1: none).
        self.attn_after = sides.index(self.attention) if self.attention is not None else -1
        self.attn = SelfAttention(width) if self.attention is not None else None
        self.out = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, channels, 3, 1, 1), nn.Tanh())
        orthogonal_init(self)
        spectral_norm_all(self, skip=(self.shared,) if self.shared is not None else ())

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless images of h×w can be made."""
        check_grid("the biggan generator", h, w)

    def conditions(self, z: Tensor, y: Optional[Tensor]) -> tuple[Tensor, List[Tensor]]:
        """z's first chunk (B, chunk) and each block's CBN input c_i (B, [shared_dim +] chunk)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (B, {self.z_dim}), got {tuple(z.shape)}")
        zs = z.split(self.chunk, 1)
        if self.shared is None:
            return zs[0], list(zs[1:])
        if y is None:
            raise ValueError("this generator is conditional: pass class labels y")
        e = self.shared(y).to(z.dtype)  # (B, shared_dim), one lookup for every block
        return zs[0], [torch.cat([e, zc], 1) for zc in zs[1:]]

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        first, conds = self.conditions(z, y)
        h = self.linear(first).view(z.shape[0], self.width, self.h0, self.w0)
        for i, (block, c) in enumerate(zip(self.blocks, conds)):
            h = block(h, c)
            if i == self.attn_after:
                h = self.attn(h)
        return self.out(h)  # (B, C, H, W) in [-1, 1]


class BigGANDiscriminator(nn.Module):
    def __init__(self, sample_shape: tuple, num_classes: int = 0, width: int = 256, extra: int = 2,
                 attention: Attention = "half"):
        """``width``: channels of every block (BigGAN's CIFAR model: 4·ch = 256); ``extra``: blocks after
        the last downsampling (CIFAR: 2); ``attention``: as the generator's (half the shorter image side
        by default; in D that is the first block's output)."""
        super().__init__()
        channels, _, _, n = sample_grid("the biggan discriminator", sample_shape, up=False)
        res = min(sample_shape[1:])
        downs = max(1, n - 1)  # 32x32: two down-blocks to 8x8, then ``extra`` blocks at 8x8
        sides = [res // 2 ** (i + 1) for i in range(downs)] + [res // 2 ** downs] * extra
        self.attention = _attention_side(attention, res, sides, "d")
        self.num_classes = num_classes
        blocks: List[nn.Module] = []
        c_in = channels
        for i, side in enumerate(sides):
            blocks.append(DownBlock(c_in, width, spectral=False, down=i < downs, first=i == 0))
            c_in = width
            if side == self.attention and not any(isinstance(b, SelfAttention) for b in blocks):
                blocks.append(SelfAttention(width))
        self.blocks = nn.Sequential(*blocks)
        self.head = ProjectionHead(width, num_classes)
        orthogonal_init(self)
        spectral_norm_all(self)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        check_grid("the biggan discriminator", h, w, up=False)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # (B, width)
        return self.head(h, y)                       # (B,)


register_family("biggan", BigGANGenerator, BigGANDiscriminator, "Brock et al. 2019")
