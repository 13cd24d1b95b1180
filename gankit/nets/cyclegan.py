"""CycleGAN's generator (Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks", App. 7.2), the ResNet transformation network of Johnson et al. 2016.

G: c7s1-64 (reflection pad 3, Conv 7x7, norm, ReLU) -> n_down × d (Conv 3x3 stride 2, norm, ReLU;
width doubles) -> n_blocks residual blocks R (reflection pad 1, Conv 3x3, norm, ReLU, [dropout],
reflection pad 1, Conv 3x3, norm; + input) -> n_down × u (ConvTranspose 3x3 stride 2, padding 1,
output_padding 1, norm, ReLU; width halves) -> reflection pad 3, Conv 7x7 to ``out_channels``, tanh.
The paper uses 9 blocks at 256×256 and 6 at 128×128, with instance norm (Ulyanov et al. 2016).
D: pix2pix's 70×70 PatchGAN (:class:`gankit.nets.pix2pix.PatchDiscriminator`; the reference trains
it with ``norm="instance"``).

Follows the authors' code (junyanz/pytorch-CycleGAN-and-pix2pix ``ResnetGenerator``, ``init_type=normal``,
InstanceNorm2d without affine parameters). Differs from it only in that a conv has a bias exactly when
no norm follows it (the code keeps biases before InstanceNorm, which cancels them), and ``dropout`` is
a probability instead of the code's on/off ``use_dropout`` (0.5).
"""
from __future__ import annotations

from torch import Tensor, nn

from .base import register_family
from .pix2pix import PatchDiscriminator, _check_int, check_norm, init_normal, norm_layer
from .sizes import check_multiple

__all__ = ["ResnetBlock", "ResnetGenerator", "PatchDiscriminator"]


class ResnetBlock(nn.Module):
    def __init__(self, channels: int, norm: str, dropout: float):
        super().__init__()
        bias = norm == "none"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), *norm_layer(norm, channels),
                  nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), *norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)  # (B, C, H, W)


class ResnetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, width: int = 64, n_blocks: int = 9,
                 n_down: int = 2, norm: str = "instance", dropout: float = 0.0):
        """Inputs need H and W divisible by 2**n_down and at least max(4, 2**(n_down+1)) (reflection
        padding needs a side of 2 at the bottleneck)."""
        super().__init__()
        self.n_down = _check_int("n_down", n_down, 0)
        _check_int("n_blocks", n_blocks, 0)
        check_norm(norm)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        bias = norm == "none"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7, bias=bias), *norm_layer(norm, width),
                  nn.ReLU(True)]
        c = width
        for _ in range(n_down):
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), *norm_layer(norm, 2 * c), nn.ReLU(True)]
            c *= 2
        layers += [ResnetBlock(c, norm, dropout) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias),
                       *norm_layer(norm, c // 2), nn.ReLU(True)]
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_normal(self)

    @classmethod
    def check_size(cls, h: int, w: int, n_down: int = 2, **_) -> None:
        """An :class:`~gankit.nets.sizes.ImageSizeError` unless h and w are multiples of 2**n_down and at
        least max(4, 2**(n_down+1)); H ≠ W is fine (the net is convolutional throughout)."""
        least = max(4, 2 ** (n_down + 1))
        check_multiple(f"ResnetGenerator(n_down={n_down})", h, w, 2 ** n_down, least,
                       f"needs H and W divisible by 2**{n_down} and at least {least}")

    def forward(self, x: Tensor) -> Tensor:
        self.check_size(*x.shape[2:], n_down=self.n_down)
        return self.net(x)  # (B, out_channels, H, W) in [-1, 1]


register_family("cyclegan", ResnetGenerator, PatchDiscriminator,
                "Zhu et al. 2017, Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks")
