"""The semi-supervised GAN's networks (Salimans et al. 2016, Sec. 5; their MNIST code,
``mnist_feature_matching.py``): a K-way classifier as D and the ``mlp`` generator as G.

D, ``kind: mlp`` (the default; the paper's MNIST D): Gaussian noise (σ ``input_noise``) on the input,
then per hidden layer [Linear, ReLU, Gaussian noise σ ``noise``] with ``widths`` units (the paper:
1000, 500, 250, 250, 250), then a Linear to K logits l_1..l_K. ``kind: conv``: the paper's CIFAR-10 D
scaled down (:func:`conv_body`: dropout, 3x3 convs with stride-2 downsampling, NiN layers, global
average pooling), then a Linear to K logits. There is no (K+1)-th output: the fake class is
implicit, D(x) = Z(x)/(Z(x)+1) with Z(x) = Σ_k exp l_k(x) (:mod:`gankit.objectives.ssgan`). The
noise and dropout act in training mode only.
``weight_norm`` reparameterises every Linear / conv as w = g·v/‖v‖ (Salimans & Kingma 2016), as the
paper; :meth:`SSGANDiscriminator.data_init` is that paper's data-dependent initialisation.

``features(x)`` is, for the mlp, the output of the last hidden layer (after its ReLU, before its
noise, so it is deterministic given the input noise); for the conv D, the pooled vector: the layer
feature matching compares, as in the paper's code (``layers[-3]``, the head being the last two layers).
Only objective ``ssgan`` uses this family (``model.arch: ssgan``); its D returns (B, K) logits,
not the (B,) score of a plain GAN's D.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import register_family
from .mlp import MLPGenerator


class GaussianNoise(nn.Module):
    """x + N(0, σ²) in training mode, x in eval mode."""

    def __init__(self, std: float):
        super().__init__()
        self.std = float(std)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.std > 0:
            return x + self.std * torch.randn_like(x)
        return x


def _wn(on: bool):
    return nn.utils.parametrizations.weight_norm if on else (lambda m: m)


def conv_body(in_channels: int, channels: tuple, depth: int, input_dropout: float, dropout: float,
              weight_norm: bool) -> nn.Sequential:
    """The paper's CIFAR-10 D body (``train_cifar_feature_matching.py``), scaled down for 28x28 on a CPU:
    (B, C, H, W) -> dropout ``input_dropout`` -> per stage but the last, with c = ``channels[i]``:
    [conv 3x3 c, lReLU] x (``depth`` − 1), [conv 3x3 c stride 2, lReLU], dropout ``dropout``
    (28 -> 14 -> 7) -> conv 3x3 ``channels[-1]`` without padding (7 -> 5), lReLU -> 2 x [NiN (1x1
    conv), lReLU] -> global average pool -> (B, channels[-1]), the features.
    lReLU slope 0.2; every conv weight-normalised (``weight_norm``), as the paper."""
    wn = _wn(weight_norm)
    act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
    layers: list = [nn.Dropout(input_dropout)]
    c_in = in_channels
    for c in channels[:-1]:
        for i in range(depth):
            layers += [wn(nn.Conv2d(c_in, c, 3, stride=2 if i == depth - 1 else 1, padding=1)), act()]
            c_in = c
        layers.append(nn.Dropout(dropout))
    c = channels[-1]
    layers += [wn(nn.Conv2d(c_in, c, 3)), act(), wn(nn.Conv2d(c, c, 1)), act(), wn(nn.Conv2d(c, c, 1)), act(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class SSGANDiscriminator(nn.Module):
    #: the settings of each ``kind`` and their defaults (None in the signature: this default)
    KINDS = {"mlp": {"widths": (1000, 500, 250, 250, 250), "input_noise": 0.3, "noise": 0.5},
             "conv": {"channels": (32, 64, 128), "depth": 2, "input_dropout": 0.2, "dropout": 0.5}}

    def __init__(self, sample_shape: tuple, num_classes: int = 0, kind: str = "mlp", widths: tuple | None = None,
                 input_noise: float | None = None, noise: float | None = None, channels: tuple | None = None,
                 depth: int | None = None, input_dropout: float | None = None, dropout: float | None = None,
                 weight_norm: bool = True):
        """``num_classes``: K, the classes of the classifier (the objective passes its
        ``loss.options.num_classes``). ``kind``: ``mlp`` (the paper's MNIST D; ``widths``,
        ``input_noise``, ``noise``) or ``conv`` (its CIFAR-10 D scaled down; ``channels``, ``depth``,
        ``input_dropout``, ``dropout``); a setting of the other kind is refused."""
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind: invalid value {kind!r}; allowed: {', '.join(self.KINDS)}")
        given = {"widths": widths, "input_noise": input_noise, "noise": noise, "channels": channels, "depth": depth,
                 "input_dropout": input_dropout, "dropout": dropout}
        for k, v in given.items():
            if v is not None and k not in self.KINDS[kind]:
                other = next(n for n, keys in self.KINDS.items() if k in keys)
                raise ValueError(f"{k} applies to kind {other}, not {kind}; remove it or set kind: {other}")
        o = {k: given[k] if given[k] is not None else v for k, v in self.KINDS[kind].items()}
        if num_classes < 2:
            raise ValueError(f"the ssgan discriminator is a K-way classifier: needs K >= 2 classes, got {num_classes}")
        self.aux_classes = num_classes
        self.kind = kind
        wn = _wn(weight_norm)
        if kind == "mlp":  # attribute names as before the conv kind, so older checkpoints load
            widths = tuple(int(w) for w in o["widths"])
            if not widths or min(widths) < 1:
                raise ValueError(f"widths must be a non-empty list of positive layer sizes, got {list(widths)!r}")
            self.input_noise = GaussianNoise(o["input_noise"])
            layers, d_in = [], math.prod(sample_shape)
            for w in widths:
                layers.append(nn.Sequential(wn(nn.Linear(d_in, w)), nn.ReLU()))
                d_in = w
            self.hidden = nn.ModuleList(layers)
            self.noise = nn.ModuleList(GaussianNoise(o["noise"]) for _ in widths)
        else:
            chans = tuple(int(c) for c in o["channels"])
            if len(chans) < 2 or min(chans) < 1:
                raise ValueError(f"channels must list >= 2 positive channel counts, got {list(chans)!r}")
            if not (isinstance(o["depth"], int) and o["depth"] >= 1):
                raise ValueError(f"depth: invalid value {o['depth']!r}; allowed: an integer >= 1")
            if len(sample_shape) != 3:
                raise ValueError(f"kind conv needs image samples (C, H, W), got shape {tuple(sample_shape)}")
            side = min(sample_shape[1:]) // 2 ** (len(chans) - 1)
            if side < 3:
                raise ValueError(f"kind conv with {len(chans)} channel stages halves the images "
                                 f"{len(chans) - 1} times to {side} pixels, below its last 3x3 conv; use fewer")
            self.body = conv_body(sample_shape[0], chans, o["depth"], o["input_dropout"], o["dropout"], weight_norm)
            d_in = chans[-1]
        self.head = wn(nn.Linear(d_in, num_classes))
        self.feature_dim = d_in

    @torch.no_grad()
    def data_init(self, x: Tensor, eps: float = 1e-6) -> None:
        """The data-dependent initialisation of weight norm (Salimans & Kingma 2016, Sec. 3; the
        paper's code runs it once, before training): one forward pass of ``x`` in which each
        weight-normalised layer, in forward order, rescales its gain g and bias b so that its output
        (the pre-activation) has mean 0 and std 1 per unit / channel over the batch (and positions):
        g <- g/σ, b <- (b − μ)/σ; the next layer sees the rescaled output. Noise and dropout as in
        training mode (as the paper's code). Needs ``weight_norm``."""
        layers = [m for m in self.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
                  and hasattr(getattr(m, "parametrizations", None), "weight")]
        if not layers:
            raise ValueError("data_init needs a weight-normalised D (model.d.weight_norm: true)")

        def rescale(m, inputs, out):
            dims = [0] + list(range(2, out.ndim))                  # all but the unit / channel dim
            mu, sd = out.mean(dims), (out.var(dims, unbiased=False) + eps).sqrt()
            g = m.parametrizations.weight.original0                # (C_out, 1, ...): the gain
            g.mul_((1 / sd).view_as(g))
            m.bias.sub_(mu).div_(sd)
            shape = [1, -1] + [1] * (out.ndim - 2)
            return (out - mu.view(shape)) / sd.view(shape)        # = the layer's new output

        handles = [m.register_forward_hook(rescale) for m in layers]
        try:
            self.logits_and_features(x)
        finally:
            for h in handles:
                h.remove()

    def logits_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, K) class logits and (B, feature_dim) features (the last hidden layer / the pooled vector)."""
        if self.kind == "conv":
            f = self.body(x)                                    # (B, channels[-1]): the pooled vector
            return self.head(f), f
        h = self.input_noise(x.reshape(x.shape[0], -1))
        for layer, noise in zip(self.hidden, self.noise):
            f = layer(h)
            h = noise(f)
        return self.head(h), f

    def features(self, x: Tensor) -> Tensor:
        return self.logits_and_features(x)[1]

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.logits_and_features(x)[0]  # (B, K)


register_family("ssgan", MLPGenerator, SSGANDiscriminator, "Salimans et al. 2016")
