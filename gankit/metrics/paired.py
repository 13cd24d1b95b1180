"""Paired metrics for image-to-image translation: each output against its own target.

Pure functions, not yet registered: images -> per-image values (N,) -> mean and spread.

- :func:`psnr`: peak signal-to-noise ratio per image, in dB.
- :func:`ssim`: structural similarity (Wang et al. 2004) per image, the protocol of
  scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``.
- :func:`content_kept`: how often the target domain's classifier gives a translated image
  the source image's label.
- :func:`paired_scores`: PSNR and SSIM of a batch of pairs, as mean and std over images.

Images are in model range [-1, 1], (N, C, H, W), so the data range is 2. Everything is
computed in float64.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DATA_RANGE = 2.0   # model range [-1, 1]
CHUNK = 64         # images per float64 pass: bounds memory on large evaluation sets


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"paired images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if len(x) == 0:
        raise ValueError("no images to compare")
    if not (x.is_floating_point() and y.is_floating_point()):
        raise ValueError(f"expected floating-point images in model range [-1, 1], got {x.dtype} and {y.dtype}")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """PSNR of each pair, (N,) float64 in dB: 10 log10(data_range² / MSE), MSE over C, H, W.

    ``x``, ``y``: (N, C, H, W) in model range [-1, 1], hence ``data_range`` 2. Identical
    images (MSE 0) give +inf. The protocol for a set of images is the per-image PSNR
    averaged over images (see :func:`paired_scores`), not the PSNR of the mean MSE: the two
    differ (by Jensen's inequality the former is the larger), so say which one a table uses.
    """
    _check_pair(x, y)
    out = []
    for i in range(0, len(x), CHUNK):
        d = x[i:i + CHUNK].double() - y[i:i + CHUNK].double()
        mse = d.square().flatten(1).mean(1)                                   # (n,)
        val = 10 * torch.log10(data_range ** 2 / mse.clamp_min(torch.finfo(torch.float64).tiny))
        out.append(torch.where(mse == 0, torch.full_like(mse, math.inf), val))
    return torch.cat(out)


def gaussian_window(window: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (window,), float64: scipy.ndimage's, so the 2-D window
    (their outer product) is the one scikit-image uses for ``gaussian_weights=True``."""
    r = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM of each pair, (N,) float64 (Wang et al. 2004, eq. 13, with their 11x11 Gaussian window, σ 1.5).

    ``x``, ``y``: (N, C, H, W) in model range [-1, 1]. Local means, population variances and
    covariance come from a Gaussian-weighted window; the SSIM map is averaged over the
    *valid* region only (positions where the whole window lies inside the image,
    (H - window + 1) x (W - window + 1)), then over channels. This is what scikit-image's
    ``structural_similarity(channel_axis=0, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=2)`` returns: it filters the whole image with
    'reflect' borders and then crops ``(win_size - 1) // 2`` pixels from each side, which
    leaves exactly the positions whose window never reached the reflected border. (For
    other ``sigma`` scikit-image uses ``window = 2 * int(3.5 * sigma + 0.5) + 1``.)

    Raises ValueError if H or W is smaller than ``window`` (no valid position) or ``window`` is even.
    """
    _check_pair(x, y)
    if window % 2 != 1:
        raise ValueError(f"SSIM window must be odd, got {window}")
    h, w = x.shape[-2:]
    if h < window or w < window:
        raise ValueError(f"images of {h}x{w} px are smaller than the {window}x{window} SSIM window")
    g = gaussian_window(window, sigma).to(x.device)
    gv, gh = g.view(1, 1, window, 1), g.view(1, 1, 1, window)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    n, c = x.shape[:2]
    out = []
    for i in range(0, n, CHUNK):
        a = x[i:i + CHUNK].double().reshape(-1, 1, h, w)                     # (n*C, 1, H, W)
        b = y[i:i + CHUNK].double().reshape(-1, 1, h, w)
        m = len(a)
        stats = torch.cat([a, b, a * a, b * b, a * b])                         # (5 n*C, 1, H, W)
        stats = F.conv2d(F.conv2d(stats, gv), gh)                            # separable, valid region only
        ux, uy, uxx, uyy, uxy = stats.split(m)
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        out.append(s.flatten(1).mean(1).view(-1, c).mean(1))                # map mean, then channel mean
    return torch.cat(out)


def content_kept(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of translated images that keep their content.

    ``logits``: (N, K), the target domain's classifier on the N translated images;
    ``labels``: (N,), the class of each source image. Returns the fraction where
    argmax(logits) equals the label.
    """
    if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels):
        raise ValueError(f"expected logits (N, K) and labels (N,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError("content_kept of no images")
    return (logits.argmax(1) == labels.to(logits.device)).double().mean().item()


def paired_scores(fake: torch.Tensor, target: torch.Tensor, data_range: float = DATA_RANGE) -> dict:
    """PSNR and SSIM of translated images ``fake`` against their targets, both (N, C, H, W).

    Returns ``{"psnr", "psnr_std", "psnr_inf", "ssim", "ssim_std"}``: mean and sample std
    (ddof 1; 0 for a single value) over images. PSNR statistics use the finite per-image
    values; ``psnr_inf`` counts pairs that were identical (PSNR +inf). If every pair is
    identical, ``psnr`` is +inf and ``psnr_std`` 0. Images smaller than SSIM's 11-pixel window get
    no ``ssim`` (there is no position to put the window).
    """
    p = psnr(fake, target, data_range)
    finite = p[torch.isfinite(p)]

    def mean_std(v):
        return v.mean().item(), (v.std().item() if len(v) > 1 else 0.0)

    p_mean, p_std = mean_std(finite) if len(finite) else (math.inf, 0.0)
    out = {"psnr": p_mean, "psnr_std": p_std, "psnr_inf": int(len(p) - len(finite))}
    if min(fake.shape[-2:]) >= 11:
        out["ssim"], out["ssim_std"] = mean_std(ssim(fake, target, data_range))
    return out
