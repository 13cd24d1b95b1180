"""Fréchet Inception Distance (Heusel et al. 2017): features -> (mean, covariance) -> distance.

FID = ||mu_r - mu_g||² + Tr(S_r + S_g - 2 (S_r S_g)^{1/2}), all in float64.
Tr((S_r S_g)^{1/2}) is computed as the sum of square roots of the eigenvalues of
A S_g A with A = S_r^{1/2} (A S_g A is symmetric PSD and similar to S_r S_g), so there is no
complex-valued sqrtm and no imaginary part to discard; eigenvalues below zero from round-off
are clipped to zero.
"""
from __future__ import annotations

import numpy as np

from .base import register_metric
from .features import feature_matrix


def feature_stats(features, which: str = "the") -> tuple[np.ndarray, np.ndarray]:
    """(N, F) features -> mean (F,) and unbiased covariance (F, F), float64. ``which`` ("real",
    "fake") names the set in the error for non-finite or too few rows."""
    f = feature_matrix(features, which)
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors (N, F), got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """FID between two Gaussians given by their means and covariances."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics of different sizes: {mu1.shape} vs {mu2.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    a = _sqrt_psd(s1)
    m = a @ s2 @ a
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, 0.0))


def fid(real_features, fake_features) -> float:
    """FID between two sets of features (N, F) and (M, F)."""
    return fid_from_stats(*feature_stats(real_features, "real"), *feature_stats(fake_features, "fake"))


@register_metric("fid", ("fid",), lower_is_better=("fid",))
def _fid_metric(ctx):
    return {"fid": fid(ctx.real_features.features, ctx.fake_features.features)}
