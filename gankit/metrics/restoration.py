"""Restoration metrics: super-resolution, inpainting, colourisation, each image against its own target.

Pure functions, not yet registered. Images are in model range [-1, 1], (N, C, H, W); every
function returns per-image values (N,) float64, to be summarised with :func:`mean_std`.

- :func:`psnr_y`, :func:`ssim_y`: PSNR and SSIM on the luma Y of MATLAB's ``rgb2ycbcr``
  (data range 255) after cropping ``crop`` border pixels, the protocol most super-resolution
  papers report (e.g. EDSR, Lim et al. 2017; RCAN, Zhang et al. 2018), with the image's
  float values (not rounded to 8 bit first).
- :func:`hole_psnr`, :func:`hole_ssim`: PSNR and SSIM restricted to the pixels an inpainting
  mask marks as missing.
- :func:`colourfulness`: Hasler & Süsstrunk (2003)'s colourfulness M, for colourisation.
- :func:`perceptual_distance`: an LPIPS-style distance (Zhang et al. 2018, eq. 1, uniform
  weights) on a gankit :class:`~gankit.metrics.domain_net.DomainNet`'s activations.

PSNR and SSIM reuse :mod:`gankit.metrics.paired` (same float64 computation, same window).
"""
from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses.perceptual import conv_activations
from .extractor import fit_images
from .paired import CHUNK, DATA_RANGE, _check_pair, gaussian_window, psnr, ssim

# MATLAB rgb2ycbcr's luma row for R, G, B in [0, 1]: Y in [16, 235] (ITU-R BT.601, studio swing).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0
Y_RANGE = 255.0   # the data range SR papers use for Y, although Y itself only spans [16, 235]


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """Luma of model-range images (N, C, H, W) -> (N, 1, H, W) float64, in [0, 255] units.

    3 channels: MATLAB's ``rgb2ycbcr`` Y = 16 + 65.481 R + 128.553 G + 24.966 B with R, G, B
    in [0, 1] (so Y is in [16, 235]); equal to scikit-image's ``rgb2ycbcr(...)[..., 0]``.
    1 channel: the grey value itself, mapped to [0, 255].
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"rgb_to_y: expected images (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
    u = (x.double() + 1.0) / 2.0                                             # [0, 1]
    if x.shape[1] == 1:
        return u * 255.0
    w = torch.tensor(_Y_WEIGHTS, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return (u * w).sum(1, keepdim=True) + _Y_OFFSET


def _crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if crop < 0 or 2 * crop >= min(h, w):
        raise ValueError(f"border crop {crop} must be >= 0 and leave pixels of a {h}x{w} image")
    return x[..., crop:h - crop, crop:w - crop] if crop else x


def psnr_y(x: torch.Tensor, y: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """PSNR of each pair on luma Y (:func:`rgb_to_y`), data range 255, in dB: (N,) float64.

    ``crop``: pixels removed at each border first (the SR convention is crop = the scale
    factor, as the border of an upscaled image is undetermined). Identical images give +inf.
    """
    _check_pair(x, y)
    return psnr(_crop(rgb_to_y(x), crop), _crop(rgb_to_y(y), crop), data_range=Y_RANGE)


def ssim_y(x: torch.Tensor, y: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """SSIM of each pair on luma Y (:func:`rgb_to_y`), data range 255: (N,) float64.

    :func:`gankit.metrics.paired.ssim`'s protocol (11x11 Gaussian window, σ 1.5, mean over
    the valid region) on Y after cropping ``crop`` pixels at each border. The cropped image
    must still be at least 11x11.
    """
    _check_pair(x, y)
    return ssim(_crop(rgb_to_y(x), crop), _crop(rgb_to_y(y), crop), data_range=Y_RANGE)


def _check_mask(x: torch.Tensor, mask: torch.Tensor) -> None:
    n, _, h, w = x.shape
    if mask.shape != (n, 1, h, w):
        raise ValueError(f"expected a hole mask (N, 1, H, W) = {(n, 1, h, w)}, got {tuple(mask.shape)}")


def hole_psnr(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """PSNR over the hole of each pair, (N,) float64 in dB.

    ``mask``: (N, 1, H, W), 1 = missing (hole) pixel, 0 = known. The MSE is taken over hole
    pixels and all channels only, then 10 log10(data_range² / MSE). An image whose hole is
    empty gives NaN (:func:`mean_std` skips it); a hole filled exactly gives +inf.
    """
    _check_pair(x, y)
    _check_mask(x, mask)
    out = []
    for i in range(0, len(x), CHUNK):
        m = mask[i:i + CHUNK].double()
        d2 = (x[i:i + CHUNK].double() - y[i:i + CHUNK].double()).square() * m     # (n, C, H, W)
        count = m.flatten(1).sum(1) * x.shape[1]                                 # hole pixels x channels
        mse = d2.flatten(1).sum(1) / count                                       # NaN where count is 0
        val = 10 * torch.log10(data_range ** 2 / mse.clamp_min(torch.finfo(torch.float64).tiny))
        out.append(torch.where(mse == 0, torch.full_like(mse, math.inf), torch.where(count > 0, val, mse)))
    return torch.cat(out)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE, window: int = 11,
             sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Full-size SSIM map of each pair and channel, (N, C, H, W) float64 (Wang et al. 2004, eq. 13).

    The statistics of :func:`gankit.metrics.paired.ssim` (Gaussian window, population
    variances), but at every pixel: the image is mirrored at its border (``reflect``
    padding, edge pixel not repeated) so the window is defined everywhere. Over the valid
    region it equals the map :func:`~gankit.metrics.paired.ssim` averages. H and W must exceed
    ``window // 2``.
    """
    _check_pair(x, y)
    h, w = x.shape[-2:]
    r = window // 2
    if window % 2 != 1 or min(h, w) <= r:
        raise ValueError(f"SSIM map: window {window} must be odd and images ({h}x{w} px) larger than {r} px")
    g = gaussian_window(window, sigma).to(x.device)
    gv, gh = g.view(1, 1, window, 1), g.view(1, 1, 1, window)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    out = []
    for i in range(0, len(x), CHUNK):
        a = x[i:i + CHUNK].double().reshape(-1, 1, h, w)                     # (n*C, 1, H, W)
        b = y[i:i + CHUNK].double().reshape(-1, 1, h, w)
        m = len(a)
        stats = F.pad(torch.cat([a, b, a * a, b * b, a * b]), (r, r, r, r), mode="reflect")
        stats = F.conv2d(F.conv2d(stats, gv), gh)                            # (5 n*C, 1, H, W)
        ux, uy, uxx, uyy, uxy = stats.split(m)
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        out.append(s.view(-1, x.shape[1], h, w))
    return torch.cat(out)


def hole_ssim(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """SSIM over the hole of each pair, (N,) float64.

    The full-size SSIM map (:func:`ssim_map`: per channel, data range 2 for model range),
    averaged over channels and over the pixels ``mask`` (N, 1, H, W) marks as holes (1). The
    11x11 window centred on a hole pixel near the hole's edge also sees known pixels around
    the hole, which are equal in both images when ``x`` is the composited output (known
    pixels pasted back), so a small hole scores somewhat higher than its content alone would.
    An image whose hole is empty gives NaN.
    """
    _check_pair(x, y)
    _check_mask(x, mask)
    s = ssim_map(x, y, data_range).mean(1, keepdim=True)                    # (N, 1, H, W)
    m = mask.to(s)
    return (s * m).flatten(1).sum(1) / m.flatten(1).sum(1)                  # 0/0 = NaN for an empty hole


def colourfulness(x: torch.Tensor) -> torch.Tensor:
    """Colourfulness M of each image, (N,) float64 (Hasler & Süsstrunk 2003, eq. 3 / their M^(3)).

    On 0-255 values: rg = R - G, yb = (R + G)/2 - B; M = sqrt(σ_rg² + σ_yb²) + 0.3 sqrt(μ_rg² + μ_yb²),
    with population standard deviations and means over the image's pixels. Grey images (1
    channel, or R = G = B) give 0. The paper finds M of about 15 "slightly", 33 "moderately",
    45 "averagely", 59 "quite", 82 "highly" colourful.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"colourfulness: expected images (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        return torch.zeros(len(x), dtype=torch.float64, device=x.device)
    v = (x.double() + 1.0) * 127.5                                           # [0, 255]
    r, g, b = v.flatten(2).unbind(1)                                         # (N, H*W) each
    rg, yb = r - g, (r + g) / 2 - b
    sd = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt()
    mu = (rg.mean(1).square() + yb.mean(1).square()).sqrt()
    return sd + 0.3 * mu


def perceptual_distance(x: torch.Tensor, y: torch.Tensor, net: nn.Module) -> torch.Tensor:
    """LPIPS-style distance of each pair on a DomainNet's conv activations, (N,) float64.

    Zhang et al. 2018, eq. 1, with every weight w_l = 1 and a mean over layers: for each ReLU
    output of ``net.body`` (3 layers), unit-normalise each position's feature vector over
    channels, take the squared Euclidean difference between the two images, average over
    positions, then average over layers. This is *not* LPIPS (no learned linear layers, no
    ImageNet network): it measures distance in the feature space of a gankit
    :class:`~gankit.metrics.domain_net.DomainNet` (trained on the dataset, or even randomly
    initialised), so values are comparable only under the same net. Each layer's term is in
    [0, 4]; identical images give 0.

    ``x``, ``y``: (N, C, H, W) model range; brought to the net's channels and size with
    :func:`~gankit.metrics.extractor.fit_images` when they differ. The net runs in eval mode
    (restored afterwards); gradients flow to ``x`` and ``y``, so it can serve as a loss.
    """
    _check_pair(x, y)
    arch = net.arch
    size = arch["size"] if isinstance(arch["size"], int) else tuple(arch["size"])
    param = next(net.parameters())
    was_training = net.training
    net.eval()
    out = []
    try:
        for i in range(0, len(x), CHUNK):
            a = fit_images(x[i:i + CHUNK].to(param), arch["in_channels"], size)
            b = fit_images(y[i:i + CHUNK].to(param), arch["in_channels"], size)
            n = len(a)
            layers = []
            for f in conv_activations(net, torch.cat([a, b])):
                f = F.relu(f).double()            # the ReLU outputs
                f = f / (f.square().sum(1, keepdim=True).sqrt() + 1e-10)     # unit vector per position
                fa, fb = f.split(n)
                layers.append((fa - fb).square().sum(1).flatten(1).mean(1))  # (n,)
            out.append(torch.stack(layers, 1).mean(1))
    finally:
        net.train(was_training)
    return torch.cat(out).to(x.device)


def mean_std(values: torch.Tensor) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of per-image values,
    ignoring NaN (e.g. images with an empty hole). +inf (an exact PSNR) is kept, making the mean
    +inf and the std NaN: drop it first to follow :func:`gankit.metrics.paired.paired_scores`.
    All NaN (or empty): (nan, nan)."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    v = v[~torch.isnan(v)]
    if len(v) == 0:
        return math.nan, math.nan
    return v.mean().item(), (v.std().item() if len(v) > 1 else 0.0)


def baseline_pictures(inputs: torch.Tensor, task: str, spec: dict):
    """What a restoration model is compared with, made from its inputs without learning, model range:
    bicubic upscaling (super-resolution), the image with its hole left grey (inpainting, uncropping),
    the grey image itself (colorization: a* = b* = 0); None for label maps (no picture to compare)."""
    if task == "super-resolution":
        from ..data.restoration import upscale_bicubic
        return upscale_bicubic(inputs, int(spec["scale"]))
    if task in ("inpainting", "uncropping"):
        return inputs[:, :-1]
    if task == "colorization":
        from ..colour import from_lab_model
        return from_lab_model(inputs, torch.zeros_like(inputs).expand(-1, 2, -1, -1))
    return None


def pooled_hole_psnr(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, data_range: float = DATA_RANGE) -> float:
    """PSNR of the squared error pooled over every hole pixel of every image, in dB: a fill that is
    exact in one image (a hole on a flat background) makes that image's own PSNR infinite, which a
    mean over images cannot absorb; the pooled error can."""
    m = mask.double().expand_as(x)
    mse = ((x.double() - y.double()) ** 2 * m).sum() / m.sum().clamp(min=1)
    return float(10 * torch.log10(data_range ** 2 / mse)) if mse > 0 else math.inf


def score_restoration(outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor, spec: dict,
                      net: nn.Module | None = None, mask: torch.Tensor | None = None) -> dict:
    """The task's own numbers for ``outputs`` against ``targets`` (and the same for the no-learning
    baseline of :func:`baseline_pictures`, keys ``*_baseline``): PSNR / SSIM on Y with a border of
    ``scale`` pixels cropped (super-resolution), PSNR of the error pooled over the holes
    (:func:`pooled_hole_psnr`) and the mean SSIM over them (inpainting, uncropping),
    colourfulness of outputs and targets (colorization), and the perceptual distance on ``net``'s
    activations when a feature network is given. Means over images."""
    task = spec["task"]
    baseline = baseline_pictures(inputs, task, spec)
    out: dict = {}
    for key, x in (("", outputs), ("_baseline", baseline)):
        if x is None:
            continue
        x = x.float().clamp(-1, 1)
        if task == "super-resolution":
            crop = int(spec["scale"])
            out["psnr_y" + key] = mean_std(psnr_y(x, targets, crop))[0]
            out["ssim_y" + key] = mean_std(ssim_y(x, targets, crop))[0]
        elif task in ("inpainting", "uncropping") and mask is not None:
            out["hole_psnr" + key] = pooled_hole_psnr(x, targets, mask)
            out["hole_ssim" + key] = mean_std(hole_ssim(x, targets, mask))[0]
        elif task == "colorization":
            out["colourfulness" + key] = mean_std(colourfulness(x))[0]
        if net is not None:
            out["perceptual" + key] = mean_std(perceptual_distance(x, targets, net))[0]
    if task == "colorization":
        out["colourfulness_real"] = mean_std(colourfulness(targets))[0]
    return out
