"""pix2pixHD networks (Wang et al. 2018, "High-Resolution Image Synthesis and Semantic Manipulation with
Conditional GANs", Sec. 3.2-3.3): a coarse-to-fine generator and multi-scale PatchGAN discriminators.

G (Sec. 3.2): the global generator G1 — c7s1-w (reflection pad 3, Conv 7x7, norm, ReLU), ``n_downsample`` ×
(Conv 3x3 stride 2, norm, ReLU; width doubles), ``n_blocks`` residual blocks, ``n_downsample`` × (ConvTranspose
3x3 stride 2, norm, ReLU; width halves), c7s1-out + tanh — runs on the input downsampled ``n_local`` times by
2 (AvgPool 3x3 stride 2, padding 1, not counting the padding). Each of the ``n_local`` local enhancers G2 then
works at twice the previous scale: c7s1-w' and one stride-2 conv to 2w' bring its input to the previous
stage's resolution and width, the previous stage's last feature map (before its output layer) is *added*
to it, then ``n_blocks_local`` residual blocks, one transposed conv back to w' channels and full scale.
Stage i (1-based) has w' = width // 2**i, so the previous stage's last features (width // 2**(i-1)
channels) have exactly the channels of the sum. Only the last stage has the c7s1-out + tanh output
layer; ``n_local = 0`` is G1 alone. The paper's 2048×1024 net is ``width=64, n_local=1`` at global width
64 (its code's ``ngf=32`` is the local width, width // 2).

D (Sec. 3.2, "multi-scale discriminators"): ``num_d`` identical-architecture PatchGANs, D_k seeing the
image (with its label map) downsampled k-1 times by the same average pooling: n_layers × [Conv 4x4
stride 2, norm (not on the first), LeakyReLU 0.2], Conv 4x4 stride 1 (width·min(2**n_layers, 8)), norm,
LeakyReLU, Conv 4x4 stride 1 to one logit per patch; padding 2 everywhere as in the authors' code, so a
stride-2 conv maps a side s to s // 2 + 1 and a stride-1 conv to s + 1 (:func:`patch_size`).

Follows the authors' PyTorch code (NVIDIA/pix2pixHD ``GlobalGenerator``, ``LocalEnhancer``,
``MultiscaleDiscriminator``, ``getIntermFeat``, N(0, 0.02) init) in the layer order above. Differs from it in:
a conv has a bias exactly when no norm follows it (InstanceNorm without affine parameters cancels a
bias), and the width is the *global* generator's (``width``) rather than the finest local enhancer's.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import register_family
from .cyclegan import ResnetBlock
from .pix2pix import _check_int, check_norm, init_normal, norm_layer
from .sizes import check_multiple

__all__ = ["Pix2PixHDGenerator", "MultiscaleDiscriminator", "feature_matching_loss", "downsample", "patch_size"]

_MAX_MULT = 8  # the discriminator's widths stop doubling at width·8 (512 at width 64)


def downsample(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)): the 3x3 stride-2 average pool (padding 1, the padding
    not counted) that feeds the coarser generator stages and discriminator scales."""
    return nn.functional.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


def _c7s1(c_in: int, c_out: int, norm: str) -> list[nn.Module]:
    """c7s1-k: reflection pad 3, Conv 7x7 stride 1, norm, ReLU."""
    return [nn.ReflectionPad2d(3), nn.Conv2d(c_in, c_out, 7, bias=norm == "none"), *norm_layer(norm, c_out),
            nn.ReLU(True)]


def _down(c_in: int, c_out: int, norm: str) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, 2, 1, bias=norm == "none"), *norm_layer(norm, c_out), nn.ReLU(True)]


def _up(c_in: int, c_out: int, norm: str) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1, bias=norm == "none"),
            *norm_layer(norm, c_out), nn.ReLU(True)]


def _output(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(c_in, c_out, 7), nn.Tanh())


class Pix2PixHDGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, width: int = 64, n_downsample: int = 4,
                 n_blocks: int = 9, n_local: int = 1, n_blocks_local: int = 3, norm: str = "instance"):
        """``width`` is the global generator's first width (its bottleneck has width·2**n_downsample
        channels); local enhancer i has width // 2**i, so ``width`` must be divisible by 2**n_local.
        ``in_channels`` is the label map's (one-hot classes, plus instance edges if used).
        Inputs need H and W divisible by 2**(n_downsample + n_local) (:meth:`check_size`)."""
        super().__init__()
        self.n_downsample = _check_int("n_downsample", n_downsample, 0)
        self.n_local = _check_int("n_local", n_local, 0)
        _check_int("n_blocks", n_blocks, 0)
        _check_int("n_blocks_local", n_blocks_local, 0)
        _check_int("width", width, 1)
        check_norm(norm)
        if width % 2 ** n_local:
            raise ValueError(f"width must be divisible by 2**n_local = {2 ** n_local} (local enhancer i has "
                             f"width // 2**i channels), got width={width}")
        self.in_channels = in_channels

        # G1 up to its last feature map: (B, in, H', W') -> (B, width, H', W'), H' = H / 2**n_local
        layers, c = _c7s1(in_channels, width, norm), width
        for _ in range(n_downsample):
            layers += _down(c, 2 * c, norm)
            c *= 2
        layers += [ResnetBlock(c, norm, 0.0) for _ in range(n_blocks)]
        for _ in range(n_downsample):
            layers += _up(c, c // 2, norm)
            c //= 2
        self.global_features = nn.Sequential(*layers)

        # local enhancer i (1-based, list index i-1) at scale H / 2**(n_local - i):
        # front: (B, in, h, w) -> (B, 2w', h/2, w/2), added to the previous stage's (B, 2w', h/2, w/2) features;
        # back: the sum -> (B, w', h, w).
        self.local_front, self.local_back = nn.ModuleList(), nn.ModuleList()
        for i in range(1, n_local + 1):
            wl = width // 2 ** i
            self.local_front.append(nn.Sequential(*_c7s1(in_channels, wl, norm), *_down(wl, 2 * wl, norm)))
            self.local_back.append(nn.Sequential(*[ResnetBlock(2 * wl, norm, 0.0) for _ in range(n_blocks_local)],
                                                 *_up(2 * wl, wl, norm)))
        self.output = _output(width // 2 ** n_local, out_channels)  # on the last stage's features only
        init_normal(self)

    @classmethod
    def check_size(cls, h: int, w: int, n_downsample: int = 4, n_local: int = 1, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless h and w are multiples of
        2**(n_downsample + n_local) and at least max(4·2**n_local, 2**(n_downsample+n_local+1)): the global
        generator's 7x7 reflection padding needs a side of 4 and its residual blocks' a side of 2."""
        k = n_downsample + n_local
        least = max(4 * 2 ** n_local, 2 ** (k + 1))
        check_multiple(f"Pix2PixHDGenerator(n_downsample={n_downsample}, n_local={n_local})", h, w, 2 ** k, least,
                       f"needs H and W divisible by 2**{k} and at least {least}")

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Pix2PixHDGenerator(in_channels={self.in_channels}) got {x.shape[1]} channels")
        self.check_size(*x.shape[2:], n_downsample=self.n_downsample, n_local=self.n_local)
        pyramid = [x]  # pyramid[j]: (B, in, H/2^j, W/2^j)
        for _ in range(self.n_local):
            pyramid.append(downsample(pyramid[-1]))
        feats = self.global_features(pyramid[-1])  # (B, width, H/2^n_local, W/2^n_local)
        for i, (front, back) in enumerate(zip(self.local_front, self.local_back), start=1):
            # stage i: (B, width/2^i, H/2^(n_local-i), ...), from its own input plus the coarser features
            feats = back(front(pyramid[self.n_local - i]) + feats)
        return self.output(feats)  # (B, out_channels, H, W) in [-1, 1]


def patch_size(side: int, n_layers: int) -> int:
    """The number of logits along a side of ``side`` pixels of one pix2pixHD PatchGAN: padding 2 makes a
    4x4 stride-2 conv map s to s // 2 + 1 and a stride-1 one s to s + 1 (e.g. 32 -> 17, 9, 5, 6, 7)."""
    for _ in range(n_layers):
        side = side // 2 + 1
    return side + 2


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, in_channels: int, width: int = 64, n_layers: int = 3, num_d: int = 2,
                 norm: str = "instance"):
        """``in_channels`` counts x's and cond's channels together (the paper's D sees the label map and
        the image). ``num_d`` PatchGANs, the k-th (0-based) at scale 1/2**k; the paper uses 3 at
        2048×1024 and 2 at 1024×512."""
        super().__init__()
        _check_int("n_layers", n_layers, 1)
        _check_int("num_d", num_d, 1)
        check_norm(norm)
        self.in_channels, self.n_layers, self.num_d = in_channels, n_layers, num_d
        # scales[k]: a list of layer groups, each ending in an activation the feature-matching loss uses
        self.scales = nn.ModuleList(self._patch_gan(in_channels, width, n_layers, norm) for _ in range(num_d))
        init_normal(self)

    @staticmethod
    def _patch_gan(c_in: int, width: int, n_layers: int, norm: str) -> nn.ModuleList:
        groups = nn.ModuleList()
        for i in range(n_layers + 1):  # n_layers stride-2 groups, then one stride-1 group
            c = width * min(2 ** i, _MAX_MULT)
            has_norm = i > 0 and norm != "none"
            groups.append(nn.Sequential(nn.Conv2d(c_in, c, 4, 2 if i < n_layers else 1, 2, bias=not has_norm),
                                        *(norm_layer(norm, c) if has_norm else []), nn.LeakyReLU(0.2, True)))
            c_in = c
        groups.append(nn.Sequential(nn.Conv2d(c_in, 1, 4, 1, 2)))  # the logits
        return groups

    def forward(self, x: Tensor, cond: Tensor | None = None, features: bool = False) -> list:
        """x: (B, C, H, W) images; cond: (B, C', H, W) label map, or None for an unconditional D.

        Returns one entry per scale, full scale first: the (B, 1, h_k, w_k) patch logits, with h_k =
        :func:`patch_size` of the side at scale k (H, ceil(H/2), ...); with ``features=True`` the entry is
        the list of the n_layers + 2 activations of that scale's PatchGAN, the logits last (Eq. 4's D_k^(i)).
        """
        if cond is not None:
            x = torch.cat([cond, x], 1)  # (label map, image), as pix2pix's and the authors' code
        if x.shape[1] != self.in_channels:
            raise ValueError(f"MultiscaleDiscriminator(in_channels={self.in_channels}) got {x.shape[1]} channels"
                             + (" (cond and x together)" if cond is not None else ""))
        out = []
        for k, groups in enumerate(self.scales):
            if k > 0:
                x = downsample(x)
            acts, h = [], x
            for g in groups:
                h = g(h)
                acts.append(h)
            out.append(acts if features else h)
        return out


def feature_matching_loss(real_feats: list, fake_feats: list) -> Tensor:
    """pix2pixHD's feature-matching loss (Wang et al. 2018, Eq. 4) from :class:`MultiscaleDiscriminator`'s
    ``features=True`` outputs for real and generated images (same structure: one list per scale, the
    logits last).

    Returns the scalar ``(1/K) Σ_k (1/T_k) Σ_{i<T_k} mean|D_k^(i)(real) - D_k^(i)(fake)|`` over the K
    scales and the T_k intermediate activations of each (the logits are left out); every element-wise mean
    absolute error has weight 1/(K·T_k). The real features are detached, so only the fake side (G) gets
    gradients. Eq. 4's 1/N_i is this per-element mean; the paper then *sums* over layers and scales
    (weight 1, λ = 10). The authors' code weights each layer 4/(n_layers + 1) = 4/T_k (1 at n_layers = 3)
    and each scale 1/K, i.e. 4× this value: use λ = 40 with this loss to match the code's λ = 10.
    """
    if len(real_feats) != len(fake_feats) or not real_feats:
        raise ValueError(f"feature_matching_loss needs the same, non-zero number of scales, got "
                         f"{len(real_feats)} real and {len(fake_feats)} fake")
    total = 0.0
    for k, (real, fake) in enumerate(zip(real_feats, fake_feats)):
        if len(real) != len(fake) or len(real) < 2:
            raise ValueError(f"feature_matching_loss: scale {k} has {len(real)} real and {len(fake)} fake "
                             f"activations; need the same number, at least 2 (features and logits)")
        layers = list(zip(real[:-1], fake[:-1]))
        total = total + sum(nn.functional.l1_loss(f, r.detach()) for r, f in layers) / len(layers)
    return total / len(real_feats)


register_family("pix2pixhd", Pix2PixHDGenerator, MultiscaleDiscriminator,
                "Wang et al. 2018, High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs")
