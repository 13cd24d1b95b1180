"""Style-based generators: StyleGAN (Karras et al. 2019) and StyleGAN2 (Karras et al. 2020), with their
discriminators, for images of 4·2ⁿ pixels a side (8, 16, 32, 64, ...; H ≠ W when the shorter side is
4·2ⁿ and the longer a multiple of 2ⁿ, e.g. 32×64: the learned constant is then 4×8).

Both generators are a mapping network z -> w (pixel norm, ``mapping_layers`` equalized linear layers
with learning-rate multiplier 0.01, leaky ReLU 0.2) and a synthesis network that starts from a learned
constant and takes one style vector w per style index (``num_ws`` of them, ``ws`` of shape
(B, num_ws, w_dim)), plus per-layer noise. The interface shared by both (``mapping``, ``synthesis``,
``truncate``, ``w_avg``, ``affines``, ``num_ws``, ``ws_resolution``) is described in
:class:`StyleGeneratorBase`. Outputs are linear (no tanh), in about [-1, 1] once trained.

``stylegan`` (2019, Sec. 2 and Fig. 1b): per resolution two 3×3 convs, each followed by noise
(learned per-channel strength), bias, leaky ReLU and AdaIN (instance norm, then the scale and bias
an affine map of w gives, Eq. 1); upsampling is bilinear ×2 before the first conv of a resolution,
which equals the paper's nearest ×2 followed by its [1, 2, 1] blur (both are the filter [1, 3, 3, 1]/4 on
the zero-interleaved signal) apart from the border. One toRGB (1×1 conv) at the last resolution:
there is no progressive growing. The network is trained at full resolution from the start, as
StyleGAN2's configurations do. Style index i acts on layer i: two per resolution, index 2k and
2k + 1 at side 4·2ᵏ, so num_ws = 2·log2(res) − 2 (8 at 32×32).
Its discriminator is ProGAN's (Karras et al. 2018): fromRGB 1×1, per resolution [conv3, conv3, avg
pool ×½] with leaky ReLU 0.2, then at 4×4 minibatch std, conv3, linear, and a linear score
(projection head when conditional).

``stylegan2`` (2020, Sec. 2.2 and Fig. 2d, 7b): convs with weight modulation and demodulation
(:class:`ModulatedConv2d`, Eq. 1-3) instead of AdaIN, noise with a learned scalar strength, and the
"skip" generator: a toRGB (1×1 modulated conv, no demodulation) at every resolution, summed with the
bilinearly upsampled image of the resolution before. Style indices follow the paper: each conv takes
its own w and the toRGB of a block reuses the index of the next block's first conv, so index 0 is the
4×4 conv, indices 2k − 1 and 2k the two convs making side 4·2ᵏ (k ≥ 1; the toRGB at side 4·2ᵏ⁻¹ also
reads 2k − 1), and the last index feeds only the final toRGB: num_ws = 2·log2(res) − 2 (8 at 32×32).
The upsampling conv upsamples bilinearly, then applies a 3×3 modulated conv (the official code uses a
transposed conv followed by a [1, 3, 3, 1] blur, a custom op; upsample-then-conv is plain PyTorch,
has no checkerboard pattern and the same filter, at 4× the multiply-adds of that layer).
Its discriminator is residual (Fig. 7b): per resolution [conv3, avg pool ×½, conv3] + [avg pool ×½,
conv1] skip, summed × 1/√2, then at 4×4 minibatch std (groups of 4, 1 feature), conv3, linear, and
the score (projection head when conditional). Pooling before the second conv (the official code
blurs with a 4×4 filter and convolves with stride 2) keeps a 6×6 receptive field per output at a
quarter of the cost of conv-then-pool.

Conditioning (``num_classes`` > 0): the mapping network embeds y (``w_dim`` features), pixel-normalises
z and the embedding each and concatenates them (stylegan2-ada); D uses a projection head
(Miyato & Koyama 2018). All layers use the equalized learning rate (:mod:`gankit.nets.equalized`)
except the embeddings and the projection head.

Widths: channels at side r are ``min(max_width, width // r)`` (StyleGAN2's ``channel_base`` and
``channel_max``; the papers use 32768 and 512, i.e. 512 up to 64×64).
"""
from __future__ import annotations

import math
from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import register_family
from .equalized import EqualizedConv2d, EqualizedLinear, PixelNorm
from .layers import MinibatchStdDev, ProjectionHead
from .sizes import ImageSizeError

NOISE_MODES = ("random", "const", "none")
W_AVG_BETA = 0.995  # w_avg <- w_avg + (mean_b w − w_avg)·(1 − β) per training forward (stylegan2-ada)
CLASS_MEAN_SAMPLES = 4096  # z ~ N(0, I) mapped per class for a conditional G's class mean w (truncation)
CLASS_MEAN_SEED = 0        # ... drawn from a generator seeded this: the same z for every class, every time
SQRT2 = math.sqrt(2)


# -- sizes -------------------------------------------------------------------------------------------

def style_grid(who: str, h: int, w: int, up: bool = True) -> tuple[int, int, int]:
    """(h0, w0, n): an (h, w) image is an (h0, w0) map doubled n ≥ 1 times, the shorter of h0, w0
    being 4. Raises :class:`ImageSizeError` naming ``who`` (a generator when ``up``) otherwise."""
    short, long_ = min(h, w), max(h, w)
    n = round(math.log2(short / 4)) if short >= 4 else 0
    if short == 4 * 2 ** n and n >= 1 and long_ % 2 ** n == 0:
        return h // 2 ** n, w // 2 ** n, n
    n = max(1, round(math.log2(max(short, 8) / 4)))   # the nearest 4·2ⁿ side (8 at least)
    f = 2 ** n
    long_fix = max(4 * f, round(long_ / f) * f)
    suggest = (4 * f, long_fix) if h <= w else (long_fix, 4 * f)
    how = f"it upsamples {n} times from a 4x4 constant" if up else f"it halves {n} times to 4x4"
    raise ImageSizeError(who, "needs the shorter side 4·2ⁿ (8, 16, 32, 64, ...) and the longer side a "
                              "multiple of 2ⁿ", (h, w), suggest, note=how)


def _sample_grid(who: str, sample_shape, up: bool) -> tuple[int, int, int, int]:
    if len(sample_shape) != 3:
        raise ValueError(f"{who} needs images (C, H, W), got sample shape {tuple(sample_shape)}")
    c, h, w = sample_shape
    return (c, *style_grid(who, h, w, up))


def _channels(side: int, width: int, max_width: int) -> int:
    """Channels of the feature maps of side ``side``: min(max_width, width // side), at least 1."""
    return max(1, min(max_width, width // side))


def _check_positive(**values) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2)


def _up2(x: Tensor) -> Tensor:
    """Bilinear ×2 (the [1, 3, 3, 1]/4 filter of the papers' upsampling): (B, C, H, W) -> (B, C, 2H, 2W)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


# -- shared layers -----------------------------------------------------------------------------------

class MappingNetwork(nn.Module):
    """z (B, z_dim) [and y (B,)] -> w (B, w_dim): pixel norm, then ``layers`` × [equalized linear
    (learning rate × ``lr_mul``), leaky ReLU 0.2] (Karras et al. 2019, Sec. 2). When conditional, y's
    embedding (``w_dim`` features) is pixel-normalised and concatenated to the normalised z."""

    def __init__(self, z_dim: int, w_dim: int, num_classes: int = 0, layers: int = 8, lr_mul: float = 0.01):
        super().__init__()
        _check_positive(z_dim=z_dim, w_dim=w_dim, mapping_layers=layers)
        self.z_dim, self.w_dim, self.num_classes = z_dim, w_dim, num_classes
        self.norm = PixelNorm()
        self.embed = nn.Embedding(num_classes, w_dim) if num_classes else None
        dims = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * layers
        # gain √2 in the weight, then a plain leaky ReLU (He's constant; ProGAN's convention)
        self.layers = nn.ModuleList(EqualizedLinear(a, b, gain=SQRT2, lr_mul=lr_mul) for a, b in zip(dims, dims[1:]))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"mapping: z must be (B, {self.z_dim}), got {tuple(z.shape)}")
        x = self.norm(z)
        if self.embed is not None:
            if y is None:
                raise ValueError("this generator is conditional: pass class labels y")
            x = torch.cat([x, self.norm(self.embed(y))], 1)
        for layer in self.layers:
            x = _lrelu(layer(x))
        return x  # (B, w_dim)


class NoiseInput(nn.Module):
    """Adds strength · noise, noise (B, 1, h, w) shared by all channels (Karras et al. 2019, Sec. 3.2).

    ``strength`` is learned, zero at init: per channel (StyleGAN) or one scalar (StyleGAN2).
    The constant map used by ``noise_mode="const"`` is a persistent buffer (saved with the weights).
    """

    def __init__(self, channels: int, h: int, w: int, per_channel: bool):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(1, channels if per_channel else 1, 1, 1))
        self.register_buffer("noise_const", torch.randn(1, 1, h, w))

    def forward(self, x: Tensor, noise_mode: str) -> Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "const":
            noise = self.noise_const
        else:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return x + self.strength * noise.to(x.dtype)


class ModulatedConv2d(nn.Module):
    """Modulated (and demodulated) convolution of StyleGAN2 (Karras et al. 2020, Sec. 2.2, Eq. 1-3).

    Per sample b the weight is w'_{oik} = w_{oik} · s_{bi} (Eq. 1), w = stored N(0, 1) weight × 1/√(in·k²)
    (equalized learning rate), and with ``demodulate`` w''_{oik} = w'_{oik} / √(Σ_{ik} w'²_{oik} + 1e-8)
    (Eq. 3): each output channel's weight then has unit L2 norm. Computed by modulating the activations
    around one shared conv (``fused = False``, the default), or as B convolutions in one grouped conv over
    the batch (``fused = True``); both give the same result. ``up``: bilinear ×2 before the conv (see the module doc). No bias.
    forward(x (B, in, H, W), s (B, in)) -> (B, out, H·(2 if up else 1), W·(2 if up else 1)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, demodulate: bool = True,
                 up: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.demodulate, self.up, self.padding = demodulate, up, kernel_size // 2
        # True: the B modulated weights as one grouped conv; False (default): modulate the activations
        # instead, equal up to rounding. A whole StyleGAN2 training step (32 px, batch 32, one CPU thread)
        # took 467 ms against 730 in fp32 and 355 against 557 in bf16 (medians of 6 alternating pairs).
        self.fused = False

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        b, c_in = x.shape[:2]
        if s.shape != (b, c_in):
            raise ValueError(f"ModulatedConv2d: styles must be (B, C_in) = ({b}, {c_in}), got {tuple(s.shape)}")
        if self.up:
            x = _up2(x)
        if not self.fused:
            # The same result with one shared weight: scale the input channels by s, convolve, and scale
            # each output channel by its demodulation factor rsqrt(Σ_ik (w_oik·s_bi)² + 1e-8) = rsqrt(s² · Σ_k w²)
            # (StyleGAN2's non-fused path): a plain batched conv, which the CPU and GPU libraries run
            # faster than a grouped one.
            weight = (self.weight * self.scale).to(x.dtype)
            out = F.conv2d(x * s.reshape(b, c_in, 1, 1).to(x.dtype), weight, padding=self.padding)
            if self.demodulate:
                d = torch.rsqrt(s.float().pow(2) @ (self.weight.float() * self.scale).pow(2).sum(dim=(2, 3)).t() + 1e-8)
                out = out * d.reshape(b, -1, 1, 1).to(out.dtype)
            return out
        w = self.weight.unsqueeze(0) * self.scale * s.reshape(b, 1, c_in, 1, 1)  # (B, out, in, k, k)
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        out = F.conv2d(x.reshape(1, b * c_in, *x.shape[2:]), w.reshape(-1, *w.shape[2:]).to(x.dtype),
                       padding=self.padding, groups=b)
        return out.reshape(b, -1, *out.shape[2:])

    def param_scales(self) -> Dict[str, float]:
        return {"weight": self.scale}

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, demodulate={self.demodulate}, up={self.up}"


# -- the interface both generators share -------------------------------------------------------------

class StyleGeneratorBase(nn.Module):
    """What both style generators expose (see also the module doc):

    * ``mapping(z, y=None) -> w`` (B, w_dim); ``synthesis(ws, noise_mode="random") -> (B, C, H, W)`` with
      ws (B, num_ws, w_dim) and noise_mode ``random`` (fresh N(0, 1) each call), ``const`` (the fixed
      maps ``synthesis.noise_buffers()``) or ``none`` (no noise);
    * ``num_ws``; ``ws_resolution`` (len num_ws): the feature-map side (the shorter one when H ≠ W)
      each style index acts on;
    * ``w_avg`` (w_dim,): running mean of w, updated by ``forward`` in training mode;
    * ``truncate(ws, psi, cutoff, y=None)``; ``affines()``: the w -> style layer of each index, in ws order;
    * ``class_w_avg(y)`` (conditional G): each label's class mean w, the centre truncation uses for it.
    """

    mapping: MappingNetwork
    synthesis: nn.Module
    linear_output = True  # no tanh: images are not clamped to [-1, 1] (the papers' generators)

    def _init_common(self, z_dim: int, w_dim: int, num_classes: int, mapping_layers: int) -> None:
        self.z_dim, self.w_dim, self.num_classes = z_dim, w_dim, num_classes
        self.mapping = MappingNetwork(z_dim, w_dim, num_classes, mapping_layers)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    @property
    def ws_resolution(self) -> list[int]:
        return list(self.synthesis.ws_resolution)

    def affines(self) -> list[EqualizedLinear]:
        return self.synthesis.affines()

    @torch.no_grad()
    def class_w_avg(self, y: Tensor) -> Tensor:
        """(B, w_dim): for each label of ``y`` (B,), its class's mean w — mapping(z, c) averaged over
        :data:`CLASS_MEAN_SAMPLES` z drawn from a generator seeded :data:`CLASS_MEAN_SEED` (the same z
        for every class), so the same weights always give the same means. Each class is computed once
        and cached until the mapping's weights change (an optimiser step or a load moves them)."""
        key = tuple((p.data_ptr(), p._version) for p in self.mapping.parameters())
        cache = self.__dict__.setdefault("_class_means", {})
        if cache.get("key") != key:
            cache.clear()
            cache["key"] = key
        dev = self.w_avg.device
        for c in y.unique().tolist():
            if c not in cache:
                z = torch.randn(CLASS_MEAN_SAMPLES, self.z_dim,
                                generator=torch.Generator().manual_seed(CLASS_MEAN_SEED)).to(dev)
                w = self.mapping(z, torch.full((CLASS_MEAN_SAMPLES,), int(c), dtype=torch.long, device=dev))
                cache[c] = w.double().mean(0).float()
        return torch.stack([cache[c] for c in y.tolist()]) if len(y) else self.w_avg.new_zeros(0, self.w_dim)

    def truncate(self, ws: Tensor, psi: float, cutoff: int | None = None, y: Tensor | None = None) -> Tensor:
        """c + psi·(w − c) (the truncation trick, Karras et al. 2019, Sec. 3.1 / App. B), with the centre c
        ``w_avg`` — or, for a conditional G given its labels ``y`` (B,), each sample's class mean w
        (:meth:`class_w_avg`), so ψ = 0 gives the class's average image rather than one image for every
        class (stylegan2-ada truncates every class toward its single w_avg).

        ws: (B, num_ws, w_dim), truncated on style indices < ``cutoff`` (all when None), or w: (B, w_dim),
        truncated whole (``cutoff`` must then be None). psi = 1 returns ``ws`` itself.
        """
        if ws.ndim == 2 and cutoff is not None:
            raise ValueError("truncate: cutoff selects style indices; pass ws (B, num_ws, w_dim), not w (B, w_dim)")
        if psi == 1:
            return ws
        avg = self.w_avg.to(ws.dtype)
        if y is not None and self.num_classes:
            avg = self.class_w_avg(y.to(self.w_avg.device)).to(ws.device, ws.dtype)
            avg = avg.unsqueeze(1) if ws.ndim == 3 else avg
        out = avg + psi * (ws - avg)
        if cutoff is None or ws.ndim == 2:
            return out
        keep = (torch.arange(ws.shape[1], device=ws.device) < cutoff).view(1, -1, 1)
        return torch.where(keep, out, ws)

    def forward(self, z: Tensor, y: Tensor | None = None, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "random") -> Tensor:
        """z (B, z_dim), y (B,) int64 | None -> images (B, C, H, W): one w per sample, broadcast to every
        style index, truncated, synthesised. In training mode w_avg moves toward the batch mean of w."""
        w = self.mapping(z, y)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, W_AVG_BETA))
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1)
        return self.synthesis(self.truncate(ws, psi, cutoff, y), noise_mode=noise_mode)


class _SynthesisBase(nn.Module):
    num_ws: int
    ws_resolution: list

    def noise_buffers(self) -> list[Tensor]:
        """The (1, 1, h, w) constant noise maps, one per noise input, in layer order (persistent buffers)."""
        return [m.noise_const for m in self.modules() if isinstance(m, NoiseInput)]

    def _check(self, ws: Tensor, noise_mode: str) -> None:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis: ws must be (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")


# -- StyleGAN (2019) ---------------------------------------------------------------------------------

class AdaINLayer(nn.Module):
    """A StyleGAN layer's output stage: noise, bias, leaky ReLU 0.2, then AdaIN (Karras et al. 2019, Eq. 1):
    instance norm, then × scale + bias per channel, (scale, bias) = affine(w) with the scale's bias
    initialised to 1 (so every scale starts near 1).  x (B, C, h, w), w (B, w_dim) -> (B, C, h, w)."""

    def __init__(self, channels: int, w_dim: int, h: int, w: int):
        super().__init__()
        self.noise = NoiseInput(channels, h, w, per_channel=True)
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.affine = EqualizedLinear(w_dim, 2 * channels)
        with torch.no_grad():
            self.affine.bias[:channels] = 1.0  # lr_mul = 1: the stored bias is the bias
        self.channels = channels

    def forward(self, x: Tensor, w: Tensor, noise_mode: str) -> Tensor:
        x = _lrelu(self.noise(x, noise_mode) + self.bias)
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(x.pow(2).mean(dim=(2, 3), keepdim=True) + 1e-8)
        style = self.affine(w).to(x.dtype)                       # (B, 2C)
        scale, bias = style[:, :self.channels], style[:, self.channels:]
        return x * scale[:, :, None, None] + bias[:, :, None, None]


class StyleGANSynthesis(_SynthesisBase):
    """ws (B, num_ws, w_dim) -> (B, C, H, W): constant -> AdaIN layer (index 0) -> conv3, AdaIN (1) ->
    per resolution [bilinear ×2, conv3, AdaIN (2k), conv3, AdaIN (2k + 1)] -> toRGB 1×1."""

    def __init__(self, w_dim: int, channels: int, h0: int, w0: int, n: int, width: int, max_width: int):
        super().__init__()
        self.w_dim = w_dim
        c = [_channels(4 * 2 ** k, width, max_width) for k in range(n + 1)]
        # N(0, 1), not the paper's ones: a flat map (ones + zero-strength noise at init) makes the first
        # instance norm divide by √ε, so its gradient would be ~1e4 times the incoming one.
        self.const = nn.Parameter(torch.randn(1, c[0], h0, w0))
        self.convs, self.layers = nn.ModuleList(), nn.ModuleList()
        for k in range(n + 1):
            h, w = h0 * 2 ** k, w0 * 2 ** k
            c_in = c[max(k - 1, 0)]
            if k > 0:  # 4×4 (k = 0) has the constant in place of its first conv
                self.convs.append(EqualizedConv2d(c_in, c[k], 3, bias=False))
            self.layers.append(AdaINLayer(c[k], w_dim, h, w))
            self.convs.append(EqualizedConv2d(c[k], c[k], 3, bias=False))
            self.layers.append(AdaINLayer(c[k], w_dim, h, w))
        self.to_rgb = EqualizedConv2d(c[n], channels, 1, gain=1.0)
        self.num_ws = 2 * (n + 1)
        self.ws_resolution = [min(h0, w0) * 2 ** (i // 2) for i in range(self.num_ws)]

    def affines(self) -> list[EqualizedLinear]:
        return [layer.affine for layer in self.layers]

    def forward(self, ws: Tensor, noise_mode: str = "random") -> Tensor:
        self._check(ws, noise_mode)
        x = self.const.expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        x = self.layers[0](x, ws[:, 0], noise_mode)
        for i, (conv, layer) in enumerate(zip(self.convs, self.layers[1:]), start=1):
            if i % 2 == 0:  # the first conv of every resolution above 4×4
                x = _up2(x)
            x = layer(conv(x), ws[:, i], noise_mode)
        return self.to_rgb(x)


class StyleGANGenerator(StyleGeneratorBase):
    def __init__(self, z_dim: int, sample_shape: tuple, num_classes: int = 0, w_dim: int = 512,
                 mapping_layers: int = 8, width: int = 32768, max_width: int = 512):
        """``w_dim``: features of w (the paper: 512); ``mapping_layers``: depth of the mapping MLP (8);
        ``width`` / ``max_width``: channels at side r are min(max_width, width // r)."""
        super().__init__()
        channels, h0, w0, n = _sample_grid("the stylegan generator", sample_shape, up=True)
        _check_positive(width=width, max_width=max_width)
        self._init_common(z_dim, w_dim, num_classes, mapping_layers)
        self.synthesis = StyleGANSynthesis(w_dim, channels, h0, w0, n, width, max_width)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless images of h×w can be made."""
        style_grid("the stylegan generator", h, w)


class _StyleDiscriminator(nn.Module):
    """What both discriminators share: fromRGB 1×1, ``blocks`` halving the image to 4×4 (each family's
    own), then minibatch std, conv3, linear and the score (a projection head when conditional)."""

    who = "the style discriminator"

    def __init__(self, sample_shape: tuple, num_classes: int, width: int, max_width: int, mbstd_group: int):
        super().__init__()
        channels, h0, w0, n = _sample_grid(self.who, sample_shape, up=False)
        _check_positive(width=width, max_width=max_width, mbstd_group=mbstd_group)
        c = [_channels(4 * 2 ** k, width, max_width) for k in range(n + 1)]
        self.from_rgb = EqualizedConv2d(channels, c[n], 1)
        self.blocks = nn.Sequential(*[m for k in range(n, 0, -1) for m in self.block(c[k], c[k - 1])])
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.conv = EqualizedConv2d(c[0] + 1, c[0], 3)
        self.fc = EqualizedLinear(c[0] * h0 * w0, c[0], gain=SQRT2)
        self.head = ProjectionHead(c[0], num_classes)

    def block(self, c_in: int, c_out: int) -> list:
        """The layers that take a c_in-channel map of side s to a c_out-channel map of side s / 2."""
        raise NotImplementedError

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless images of h×w can be scored."""
        style_grid(cls.who, h, w, up=False)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.blocks(_lrelu(self.from_rgb(x)))                # (B, C4, h0, w0)
        h = _lrelu(self.conv(self.mbstd(h)))
        return self.head(_lrelu(self.fc(h.flatten(1))), y)       # (B,)


class StyleGANDiscriminator(_StyleDiscriminator):
    who = "the stylegan discriminator"

    def __init__(self, sample_shape: tuple, num_classes: int = 0, width: int = 32768, max_width: int = 512,
                 mbstd_group: int = 4):
        """ProGAN's discriminator (see the module doc). ``width`` / ``max_width`` as the generator's;
        ``mbstd_group``: samples per minibatch-std group (the batch size must be a multiple to use all)."""
        super().__init__(sample_shape, num_classes, width, max_width, mbstd_group)

    def block(self, c_in: int, c_out: int) -> list:
        return [EqualizedConv2d(c_in, c_in, 3), nn.LeakyReLU(0.2), EqualizedConv2d(c_in, c_out, 3),
                nn.LeakyReLU(0.2), nn.AvgPool2d(2)]


# -- StyleGAN2 (2020) --------------------------------------------------------------------------------

class StyleConv(nn.Module):
    """affine(w) -> s; modulated, demodulated conv3 (×2 bilinear first when ``up``); noise; bias;
    leaky ReLU 0.2 × √2 (the activation gain of StyleGAN2).  x (B, in, h, w), w (B, w_dim) -> (B, out, h', w')."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, h: int, w: int, up: bool = False):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, c_in, bias_init=1.0)  # styles start near 1
        self.conv = ModulatedConv2d(c_in, c_out, 3, demodulate=True, up=up)
        self.noise = NoiseInput(c_out, h, w, per_channel=False)
        self.bias = nn.Parameter(torch.zeros(1, c_out, 1, 1))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str) -> Tensor:
        x = self.conv(x, self.affine(w).to(x.dtype))
        return _lrelu(self.noise(x, noise_mode) + self.bias) * SQRT2


class ToRGB(nn.Module):
    """affine(w) -> s; modulated 1×1 conv without demodulation, + bias (StyleGAN2, Fig. 7a)."""

    def __init__(self, c_in: int, channels: int, w_dim: int):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, c_in, bias_init=1.0)
        self.conv = ModulatedConv2d(c_in, channels, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, self.affine(w).to(x.dtype)) + self.bias


class StyleGAN2Synthesis(_SynthesisBase):
    """ws (B, num_ws, w_dim) -> (B, C, H, W), the skip generator: constant -> conv (index 0) -> toRGB (1);
    per resolution k ≥ 1: [up-conv (2k − 1), conv (2k)] and image = up(image) + toRGB (2k + 1)."""

    def __init__(self, w_dim: int, channels: int, h0: int, w0: int, n: int, width: int, max_width: int):
        super().__init__()
        self.w_dim = w_dim
        c = [_channels(4 * 2 ** k, width, max_width) for k in range(n + 1)]
        self.const = nn.Parameter(torch.randn(1, c[0], h0, w0))
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        for k in range(n + 1):
            h, w = h0 * 2 ** k, w0 * 2 ** k
            if k > 0:
                self.convs.append(StyleConv(c[k - 1], c[k], w_dim, h, w, up=True))
            self.convs.append(StyleConv(c[k], c[k], w_dim, h, w))
            self.to_rgbs.append(ToRGB(c[k], channels, w_dim))
        self.num_ws = 2 * (n + 1)
        s0 = min(h0, w0)
        # index 0: 4×4; 2k − 1 and 2k: the convs making side 4·2ᵏ; the last: the final toRGB only
        self.ws_resolution = [s0 * 2 ** min((i + 1) // 2, n) for i in range(self.num_ws)]

    def affines(self) -> list[EqualizedLinear]:
        """One per style index: the affine of the conv taking it, and for the last index the final
        toRGB's. A lower toRGB shares its index with the next conv; its affine is not listed."""
        return [conv.affine for conv in self.convs] + [self.to_rgbs[-1].affine]

    def forward(self, ws: Tensor, noise_mode: str = "random") -> Tensor:
        self._check(ws, noise_mode)
        x = self.const.expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        x = self.convs[0](x, ws[:, 0], noise_mode)
        img = self.to_rgbs[0](x, ws[:, 1])
        for k in range(1, len(self.to_rgbs)):
            x = self.convs[2 * k - 1](x, ws[:, 2 * k - 1], noise_mode)
            x = self.convs[2 * k](x, ws[:, 2 * k], noise_mode)
            img = _up2(img) + self.to_rgbs[k](x, ws[:, 2 * k + 1])
        return img


class StyleGAN2Generator(StyleGeneratorBase):
    def __init__(self, z_dim: int, sample_shape: tuple, num_classes: int = 0, w_dim: int = 512,
                 mapping_layers: int = 8, width: int = 32768, max_width: int = 512):
        """``w_dim``: features of w (the paper: 512); ``mapping_layers``: depth of the mapping MLP (8;
        stylegan2-ada's CIFAR-10 configuration uses 2); ``width`` / ``max_width``: channels at side r are
        min(max_width, width // r) (the paper: 32768 and 512; stylegan2-ada's CIFAR-10: 16384 and 512)."""
        super().__init__()
        channels, h0, w0, n = _sample_grid("the stylegan2 generator", sample_shape, up=True)
        _check_positive(width=width, max_width=max_width)
        self._init_common(z_dim, w_dim, num_classes, mapping_layers)
        self.synthesis = StyleGAN2Synthesis(w_dim, channels, h0, w0, n, width, max_width)

    @classmethod
    def check_size(cls, h: int, w: int, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless images of h×w can be made."""
        style_grid("the stylegan2 generator", h, w)


class ResidualDownBlock(nn.Module):
    """StyleGAN2's residual D block (Fig. 7b): (conv3, lReLU, avg pool ×½, conv3, lReLU) + (avg pool ×½,
    conv1 without bias), summed × 1/√2 to keep the variance.  (B, in, h, w) -> (B, out, h/2, w/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = EqualizedConv2d(c_in, c_in, 3)
        self.conv2 = EqualizedConv2d(c_in, c_out, 3)
        self.skip = EqualizedConv2d(c_in, c_out, 1, bias=False, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        h = _lrelu(self.conv2(F.avg_pool2d(_lrelu(self.conv1(x)), 2)))
        return (h + self.skip(F.avg_pool2d(x, 2))) / SQRT2


class StyleGAN2Discriminator(_StyleDiscriminator):
    who = "the stylegan2 discriminator"

    def __init__(self, sample_shape: tuple, num_classes: int = 0, width: int = 32768, max_width: int = 512,
                 mbstd_group: int = 4):
        """The residual discriminator (see the module doc). ``width`` / ``max_width`` as the generator's;
        ``mbstd_group``: samples per minibatch-std group (the paper: 4)."""
        super().__init__(sample_shape, num_classes, width, max_width, mbstd_group)

    def block(self, c_in: int, c_out: int) -> list:
        return [ResidualDownBlock(c_in, c_out)]


register_family("stylegan", StyleGANGenerator, StyleGANDiscriminator, "Karras et al. 2019")
register_family("stylegan2", StyleGAN2Generator, StyleGAN2Discriminator, "Karras et al. 2020")
