"""Image-inpainting networks: a completion generator with gated convolutions and a global + local
discriminator pair (Iizuka et al. 2017, "Globally and Locally Consistent Image Completion", Sec. 3.1-3.2;
Yu et al. 2019, "Free-Form Image Inpainting with Gated Convolution" (DeepFill v2), Sec. 3.1-3.2).

Masks are (B, 1, H, W) with 1 = hole (pixels to fill) and 0 = known. The generator's input is the
masked image and the mask, concatenated along channels (``in_channels = out_channels + 1``; a guidance
channel such as DeepFill v2's sketch may be added). It returns a whole image; pasting its hole into the
known pixels, ``mask·G(x) + (1 - mask)·image``, is the objective's job.

G (Iizuka's completion network, Table 1, whose w is 64; the default here is 32): conv5x5 w,
conv3x3/2 2w, conv3x3 2w, conv3x3/2 4w, conv3x3 4w ×2, one dilated conv3x3 4w per dilation (2, 4, 8,
16), conv3x3 4w ×2, [nearest ×2 upsample, conv3x3] 2w, conv3x3 2w, [upsample, conv3x3] w, conv3x3
w/2, conv3x3 to ``out_channels`` and tanh; zero "same" padding throughout, so the size is kept at stride
1 and halved at stride 2. Each conv but the last is followed by ELU; with ``gated=True`` it is DeepFill
v2's gated conv (Eq. 1): one conv gives features and gates, the output is ELU(features)·σ(gates). The
last conv stays plain as in DeepFill v2's code (a gate there could only pull colours toward 0, grey).
Iizuka's network uses transposed convs and BatchNorm + ReLU; DeepFill v2 replaced them with nearest
upsampling + conv and ELU without normalisation, which this follows.

D: two branches that share no weights, both seeing the whole image (and the mask, when passed as
``cond``). ``global``: Iizuka's global discriminator — n_layers × [Conv 5x5 stride 2, LeakyReLU 0.2]
(widths w, 2w, 4w, 4w, ...), then a global average pool (instead of Iizuka's flatten, so any size works)
and a Linear layer to one logit per image. ``local``: DeepFill v2's SN-PatchGAN — the same conv stack,
then a Conv 5x5 stride 1 to one logit per patch; :meth:`InpaintDiscriminator.patch_weights` says how
much of each patch is hole. With ``spectral=True`` (DeepFill v2's SN-PatchGAN) every conv and the
Linear are spectrally normalised (Miyato et al. 2018). Iizuka's local D instead sees a fixed-size crop
around the hole; a patch map weighted by hole fraction judges the hole without cropping.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .base import register_family
from .pix2pix import _check_int
from .sizes import check_multiple

__all__ = ["GatedConv2d", "InpaintGenerator", "InpaintDiscriminator"]


class GatedConv2d(nn.Module):
    """A k×k conv with "same" zero padding and ELU; gated (DeepFill v2 Eq. 1) or plain.

    Gated: a conv to 2·c_out channels split into features F and gates G; returns ELU(F)·sigmoid(G), so
    the network learns per pixel and channel how much of a feature to pass (e.g. little from holes).
    Plain (``gated=False``): ELU(conv(x)), the conv having c_out channels.
    (B, c_in, H, W) -> (B, c_out, ceil(H/stride), ceil(W/stride)).

    Initialised so that the signal keeps its scale through a deep stack (:meth:`reset_parameters`).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 gated: bool = True):
        super().__init__()
        self.gated = gated
        self.conv = nn.Conv2d(c_in, 2 * c_out if gated else c_out, kernel, stride,
                              padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal weights (fan-in, ReLU gain √2, which ELU roughly shares) and zero biases; in a
        gated conv the feature weights are doubled because the gates start near σ(0) = 1/2. PyTorch's
        default init instead shrinks the signal about 3-5× per layer: through the generator's 17 convs
        the output becomes a constant set by the biases, independent of the input (measured: output
        changes ~1e-9 between random inputs at width 32)."""
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
        nn.init.zeros_(self.conv.bias)
        if self.gated:
            with torch.no_grad():
                self.conv.weight[: self.conv.out_channels // 2] *= 2.0

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if not self.gated:
            return nn.functional.elu(y)
        features, gates = y.chunk(2, dim=1)
        return nn.functional.elu(features) * torch.sigmoid(gates)


class InpaintGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, width: int = 32, dilations=(2, 4, 8, 16),
                 gated: bool = True):
        """``in_channels`` counts the masked image and the mask (out_channels + 1, more with guidance
        channels). ``width`` must be even (the last hidden conv has width // 2 channels); ``dilations``
        are the rates of the dilated convs at 1/4 resolution (Iizuka's 2, 4, 8, 16 widen the receptive
        field to see the image around a large hole). Inputs need H and W divisible by 4."""
        super().__init__()
        _check_int("width", width, 2)
        if width % 2:
            raise ValueError(f"width must be even (the last hidden conv has width // 2 channels), got {width}")
        dilations = tuple(dilations)
        for d in dilations:
            _check_int("each of dilations", d, 1)
        self.in_channels, self.dilations = in_channels, dilations
        w = width

        def conv(c_in, c_out, kernel=3, stride=1, dilation=1):
            return GatedConv2d(c_in, c_out, kernel, stride, dilation, gated)

        def up(c_in, c_out):
            return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv(c_in, c_out))

        self.net = nn.Sequential(
            conv(in_channels, w, 5),                                    # (B, w, H, W)
            conv(w, 2 * w, stride=2), conv(2 * w, 2 * w),               # (B, 2w, H/2, W/2)
            conv(2 * w, 4 * w, stride=2), conv(4 * w, 4 * w), conv(4 * w, 4 * w),  # (B, 4w, H/4, W/4)
            *[conv(4 * w, 4 * w, dilation=d) for d in dilations],
            conv(4 * w, 4 * w), conv(4 * w, 4 * w),
            up(4 * w, 2 * w), conv(2 * w, 2 * w),                       # (B, 2w, H/2, W/2)
            up(2 * w, w), conv(w, w // 2),                              # (B, w/2, H, W)
            nn.Conv2d(w // 2, out_channels, 3, padding=1), nn.Tanh(),   # plain output conv
        )
        out = self.net[-2]  # unit-gain init, so tanh starts in its linear range with the input's scale
        nn.init.kaiming_normal_(out.weight, nonlinearity="linear")
        nn.init.zeros_(out.bias)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless h and w are multiples of 4 (two stride-2
        convs and two ×2 upsamplings must give back the input size)."""
        check_multiple("InpaintGenerator", h, w, 4, 4, "needs H and W divisible by 4")

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, H, W), the masked image (holes set to any constant, e.g. 0) and the mask."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"InpaintGenerator(in_channels={self.in_channels}) got {x.shape[1]} channels "
                             f"(the masked image and the mask together)")
        self.check_size(*x.shape[2:])
        return self.net(x)  # (B, out_channels, H, W) in [-1, 1]


def _conv_stack(c_in: int, width: int, n_layers: int) -> tuple[list[nn.Module], int]:
    """n_layers × [Conv 5x5 stride 2 padding 2, LeakyReLU 0.2], widths width·min(2**i, 4); and the last width."""
    layers = []
    for i in range(n_layers):
        c = width * min(2 ** i, 4)
        layers += [nn.Conv2d(c_in, c, 5, 2, 2), nn.LeakyReLU(0.2, True)]
        c_in = c
    return layers, c_in


class InpaintDiscriminator(nn.Module):
    def __init__(self, in_channels: int, width: int = 32, n_layers: int = 4, spectral: bool = True):
        """``in_channels`` counts x's and cond's channels together (3 + 1 for RGB and the mask). Each of
        the two branches has n_layers stride-2 convs, so the patch logits of an (H, W) input are
        (ceil(H/2**n_layers), ceil(W/2**n_layers)); DeepFill v2 uses width 64 and 6 layers at 256×256."""
        super().__init__()
        _check_int("n_layers", n_layers, 1)
        _check_int("width", width, 1)
        self.in_channels = in_channels
        layers, c = _conv_stack(in_channels, width, n_layers)
        self.global_features = nn.Sequential(*layers)
        self.global_head = nn.Linear(c, 1)
        layers, c = _conv_stack(in_channels, width, n_layers)
        self.local = nn.Sequential(*layers, nn.Conv2d(c, 1, 5, 1, 2))
        if spectral:
            for m in list(self.modules()):
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    spectral_norm(m)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> dict:
        """x: (B, C, H, W) images; cond: (B, 1, H, W) mask (1 = hole), or None when D sees x alone.

        Returns ``{"global": (B,) one logit per image, "local": (B, 1, h, w) one logit per patch}``.
        """
        if cond is not None:
            x = torch.cat([x, cond], 1)  # (image, mask), the generator's input order
        if x.shape[1] != self.in_channels:
            raise ValueError(f"InpaintDiscriminator(in_channels={self.in_channels}) got {x.shape[1]} channels"
                             + (" (x and cond together)" if cond is not None else ""))
        g = self.global_features(x).mean(dim=(2, 3))  # (B, c): global average pool
        return {"global": self.global_head(g).squeeze(1), "local": self.local(x)}

    @staticmethod
    def patch_weights(mask: Tensor, size) -> Tensor:
        """(B, 1, H, W) mask (1 = hole) -> (B, 1, h, w): the hole fraction of the block of pixels each patch
        logit sits on (an adaptive average pool to ``size`` = (h, w), or an int for h = w; pass the local
        logits' ``shape[-2:]``). A logit's receptive field is larger than its block, so a weight of 0
        means no hole under the logit's own block, not that it sees no hole. Use it to judge only patches
        that touch the hole (weight > 0) or to weight them by how much hole they hold."""
        if not mask.is_floating_point():  # a bool or 0/1 integer mask
            mask = mask.to(torch.get_default_dtype())
        return nn.functional.adaptive_avg_pool2d(mask, size)


register_family("inpaint", InpaintGenerator, InpaintDiscriminator,
                "Iizuka et al. 2017, Globally and Locally Consistent Image Completion; "
                "Yu et al. 2019, Free-Form Image Inpainting with Gated Convolution")
