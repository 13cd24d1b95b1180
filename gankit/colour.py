"""Image values: the model range and 8 bit, and differentiable colour conversions of image
tensors (B, 3, H, W), float.

- :func:`to_model_range` / :func:`to_uint8`: uint8 [0, 255] <-> float [-1, 1], the range every
  network of gankit works in;
- :func:`rgb_to_lab` / :func:`lab_to_rgb`: sRGB in [0, 1] <-> CIE L*a*b*, the formulas of
  scikit-image's ``rgb2lab`` / ``lab2rgb`` (illuminant D65, 2° observer, sRGB companding).
- :func:`to_lab_model` / :func:`from_lab_model`: the same in the scales a network works in
  (model-range RGB [-1, 1]; L*a*b* scaled to about [-1, 1]), for colourisation.
- :func:`rgb_to_grey`: ITU-R BT.601 luma, model range in and out.

A leaf module: it imports only torch and math, so data, nets, objectives and metrics may all
use it. Every power is taken of a clamped base, so gradients are finite everywhere,
black pixels included (torch.where differentiates both branches, and the unused branch's
x^(1/3) at x = 0 would otherwise give inf * 0 = NaN).
"""
from __future__ import annotations

import torch


def to_model_range(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x_uint8.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped, rounded)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

# Linear sRGB -> CIE XYZ (D65), the matrix scikit-image uses (``xyz_from_rgb``); XYZ -> linear sRGB
# is its inverse, computed here in float64 as scikit-image does (``rgb_from_xyz``).
_XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423],
                              [0.212671, 0.715160, 0.072169],
                              [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = (0.95047, 1.0, 1.08883)   # XYZ of the reference white, D65, 2° observer (Y = 1)

# CIE L*a*b* constants in the rounded form scikit-image (and easyrgb.com) use: the cube root
# holds above 0.008856 (≈ (6/29)^3), the linear segment 7.787 t + 16/116 below it.
_EPS = 0.008856
_KAPPA = 7.787
_T_EPS = 0.2068966                     # ≈ 6/29: where lab -> xyz switches from linear to cube

# Model-scale L*a*b*: L in [0, 100] -> L/50 - 1 in [-1, 1]; a, b -> a/110, b/110. Over the sRGB
# gamut a* spans about [-86, 98] and b* about [-108, 95], so 110 maps them into about
# [-0.98, 0.89]: inside (-1, 1), with headroom, so a tanh output can reach every sRGB colour
# without saturating.
LAB_AB_SCALE = 110.0

# ITU-R BT.601 luma weights (sum 1, so they map model range to model range).
BT601 = (0.299, 0.587, 0.114)


def _check_rgb(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected images (B, 3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected floating-point images, got {x.dtype}")


def _mix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply the 3x3 matrix ``m`` to the channels of ``x`` (B, 3, H, W)."""
    return torch.einsum("ij,bjhw->bihw", m.to(device=x.device, dtype=x.dtype), x)


def _white(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_WHITE_D65, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)


def rgb_to_lab(rgb01: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], (B, 3, H, W) -> CIE L*a*b* (B, 3, H, W): L in [0, 100], a, b about [-128, 127].

    scikit-image's ``rgb2lab`` (D65, 2° observer): undo the sRGB companding, linear RGB -> XYZ,
    scale by the white point, f(t) = t^(1/3) above 0.008856 else 7.787 t + 16/116, then
    L = 116 f(Y) - 16, a = 500 (f(X) - f(Y)), b = 200 (f(Y) - f(Z)). Same dtype and device as the input.
    """
    _check_rgb(rgb01, "rgb_to_lab")
    c = rgb01
    lin = torch.where(c > 0.04045, ((c.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)
    t = _mix(_XYZ_FROM_RGB, lin) / _white(c)
    f = torch.where(t > _EPS, t.clamp_min(_EPS) ** (1.0 / 3.0), _KAPPA * t + 16.0 / 116.0)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], 1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* (B, 3, H, W) -> sRGB in [0, 1] (B, 3, H, W), clamped: scikit-image's ``lab2rgb``.

    Colours outside the sRGB gamut are clipped per channel, as ``lab2rgb`` does; like it, a
    negative f(Z) (b* too large for the L*) is set to 0 first. The gradient is 0 where clipped.
    """
    _check_rgb(lab, "lab_to_rgb")
    big_l, a, b = lab.unbind(1)
    fy = (big_l + 16.0) / 116.0
    f = torch.stack([a / 500.0 + fy, fy, (fy - b / 200.0).clamp_min(0.0)], 1)
    t = torch.where(f > _T_EPS, f ** 3, (f - 16.0 / 116.0) / _KAPPA)
    lin = _mix(_RGB_FROM_XYZ, t * _white(lab))
    c = torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055, lin * 12.92)
    return c.clamp(0.0, 1.0)


def to_lab_model(x: torch.Tensor) -> torch.Tensor:
    """Model-range RGB [-1, 1] (B, 3, H, W) -> model-scale L*a*b* (B, 3, H, W).

    Channels: L/50 - 1 (in [-1, 1]), a/110, b/110 (in about [-0.98, 0.89] over the sRGB gamut,
    see ``LAB_AB_SCALE``). A colouriser takes channel 0 as input and predicts channels 1:3.
    """
    lab = rgb_to_lab((x + 1.0) / 2.0)
    return torch.cat([lab[:, :1] / 50.0 - 1.0, lab[:, 1:] / LAB_AB_SCALE], 1)


def from_lab_model(l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:  # noqa: E741 (L of L*a*b*)
    """Model-scale L (B, 1, H, W) and a, b (B, 2, H, W) -> model-range RGB [-1, 1] (B, 3, H, W).

    The inverse of :func:`to_lab_model` (up to the sRGB gamut: out-of-gamut colours are clipped).
    """
    if l.ndim != 4 or l.shape[1] != 1 or ab.ndim != 4 or ab.shape[1] != 2 or l.shape[2:] != ab.shape[2:] \
            or l.shape[0] != ab.shape[0]:
        raise ValueError(f"from_lab_model: expected L (B, 1, H, W) and ab (B, 2, H, W), got "
                         f"{tuple(l.shape)} and {tuple(ab.shape)}")
    lab = torch.cat([(l + 1.0) * 50.0, ab * LAB_AB_SCALE], 1)
    return lab_to_rgb(lab) * 2.0 - 1.0


def rgb_to_grey(x: torch.Tensor) -> torch.Tensor:
    """Model-range RGB (B, 3, H, W) -> model-range grey (B, 1, H, W): ITU-R BT.601 luma
    0.299 R + 0.587 G + 0.114 B (the weights sum to 1, so [-1, 1] maps to [-1, 1]; applied to the
    companded values, as JPEG and Pillow's ``convert("L")`` do). A 1-channel input is returned as is."""
    if x.ndim == 4 and x.shape[1] == 1:
        return x
    _check_rgb(x, "rgb_to_grey")
    w = torch.tensor(BT601, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)

