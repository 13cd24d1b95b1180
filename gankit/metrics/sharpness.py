"""Sharpness of samples against the real images': the variance of the Laplacian (Pech-Pacheco et al. 2000).

Each image is taken to [0, 1] and to grey (the mean of its channels); its sharpness is the variance
over pixels of its discrete Laplacian (``scipy.ndimage.laplace``, the 5-point stencil, borders
reflected), a measure of how much of its power sits at high spatial frequencies. A set's sharpness is
the mean over its images. The metric reports

* ``sharpness``: mean sharpness of the samples / that of the real images (1: as sharp as the data;
  a blurry model, such as a VAE with a factorised decoder, well below 1; noise above 1);
* ``lapvar``: the samples' mean sharpness itself (units of [0, 1] intensity² per pixel²).

Neither is "lower is better": the ratio should be near 1.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import laplace

from .base import register_metric


def laplacian_variance(images) -> np.ndarray:
    """Per image, the variance of the Laplacian of its grey level: (N,) float64 for images
    (N, C, H, W) or (N, H, W) in model range [-1, 1]."""
    x = images.detach().cpu().double().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float64)
    if x.ndim == 4:
        x = x.mean(1)                   # grey: the mean of the channels
    if x.ndim != 3:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W), got shape {x.shape}")
    x = (np.clip(x, -1.0, 1.0) + 1.0) / 2.0   # [-1, 1] -> [0, 1]
    return np.array([laplace(im, mode="reflect").var() for im in x])


def sharpness_ratio(fake, real) -> float:
    """Mean variance of the Laplacian of ``fake`` over that of ``real`` (both in [-1, 1])."""
    r = laplacian_variance(real).mean()
    if r <= 0:
        raise ValueError("the real images have no high-frequency content (variance of the Laplacian 0)")
    return float(laplacian_variance(fake).mean() / r)


def at_size(images: torch.Tensor, size: tuple) -> torch.Tensor:
    """``images`` (N, C, H, W) resized to ``size`` (H, W) as the training data is (bilinear, antialiased),
    so real images stored at another resolution (digits: 8×8) are compared at the model's."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return torch.nn.functional.interpolate(images.float(), size=size, mode="bilinear", antialias=True,
                                           align_corners=False)


@register_metric("sharpness", ("sharpness", "lapvar"), kinds=("image",), uses_features=False,
                 params={"measure": "variance of the Laplacian (scipy.ndimage.laplace, reflect) of the grey "
                                    "image in [0, 1], mean over images; sharpness = fake / real; real "
                                    "images resized to the samples' size (bilinear, antialiased)"})
def _sharpness_metric(ctx):
    fake = laplacian_variance(ctx.fake)
    real = laplacian_variance(at_size(ctx.real, tuple(ctx.fake.shape[-2:])))
    return {"sharpness": float(fake.mean() / real.mean()), "lapvar": float(fake.mean())}
