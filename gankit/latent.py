"""Latent codes: seeded noise, the truncation trick and spherical walks (the API, sampling and `gankit serve`).

Truncation with one number ψ (0 < ψ ≤ 1, 1 = none) for every noise generator: :func:`psi_to_tau`,
:func:`check_psi` and :func:`resample_outside` are the rules :meth:`gankit.tasks.GenerationTask.truncated`
applies (:mod:`gankit.steer.truncation` has the truncation curve)."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .errors import GankitError, option


def slerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Spherical interpolation between codes ``a`` and ``b`` (..., D) at ``t`` in [0, 1] (a number,
    or a tensor that broadcasts against (..., 1) for several points at once): the walk
    stays on the shell of radius ≈ √D where Gaussian z concentrates (White 2016, "Sampling
    generative networks"); a straight line would pass through the improbable centre. Falls back to
    a straight line when a and b are (anti)parallel."""
    an, bn = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12), b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega)
    if bool((so.abs() < 1e-6).any()):
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


PSI_RANGE = "0 < ψ ≤ 1 (1 = no truncation; a style generator also takes 0, its average image)"


def psi_to_tau(psi: float) -> float:
    """BigGAN's resampling threshold τ for truncation ψ: the τ with P(|z| ≤ τ) = ψ for z ~ N(0, 1),
    i.e. τ = Φ⁻¹((1 + ψ)/2) (Φ the standard normal CDF). ψ = 1 -> ∞ (nothing is resampled);
    ψ = 0.95 -> 1.960; ψ = 0.5 -> 0.674. Raises ValueError unless 0 < ψ ≤ 1.

    Computed as the equal τ = √2·erf⁻¹(ψ): (1 + ψ)/2 rounds to 0.5 for ψ below ~1.1e-16, and
    Φ⁻¹(0.5) = 0 would be no threshold at all, while erf⁻¹ keeps full precision near 0 (τ ≈ ψ·√(π/2)),
    so every ψ > 0 a float can hold gives τ > 0 (all of z pulled to within τ of 0)."""
    from scipy.special import erfinv

    if not 0 < psi <= 1:
        raise ValueError(f"truncation ψ must satisfy 0 < ψ ≤ 1, got {psi}")
    return math.inf if psi == 1 else math.sqrt(2) * float(erfinv(psi))


def check_psi(psi: float, style: bool, flag: str = "--truncation", param: Optional[str] = None) -> float:
    """``psi`` as a float when it is a truncation this generator takes (0 < ψ ≤ 1; also 0 for a
    ``style`` generator), else one GankitError line naming the option (``flag`` on the command line,
    ``param`` from Python; default the truncation option) and the range."""
    try:
        value = float(psi)
    except (TypeError, ValueError):
        raise GankitError(f"{option(flag, psi, param=param)}: not a number; give ψ with {PSI_RANGE}") from None
    if not (0 <= value <= 1 if style else 0 < value <= 1):
        raise GankitError(f"{option(flag, psi, param=param)}: give ψ with "
                          f"{PSI_RANGE if style else '0 < ψ ≤ 1 (1 = no truncation; 0 only for a style generator)'}")
    return value


def resample_outside(z: Tensor, tau: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """``z`` (any shape, float) with every component where |z_i| > τ replaced by a fresh draw of
    N(0, 1) conditioned on |z| ≤ τ; components already inside are kept (so lowering τ changes a
    sample gradually). Draws come from ``generator`` (torch's global RNG when None), on its device:
    the same generator state gives the same result.

    The conditioned draw is made by inverting the CDF, Φ⁻¹(Φ(−τ) + u (Φ(τ) − Φ(−τ))) with u ~ U(0, 1):
    the same distribution as redrawing from N(0, 1) until the value falls inside, but one uniform per
    component instead of about 1/ψ rounds. Computed in float64; the clamp only absorbs the rounding
    of the cast back to ``z``'s dtype. τ = ∞ returns ``z`` itself and draws nothing."""
    if math.isinf(tau):
        return z
    if not tau > 0:
        raise ValueError(f"truncation threshold τ must be > 0, got {tau}")
    outside = z.abs() > tau
    k = int(outside.sum())
    if k == 0:
        return z
    u = torch.rand(k, generator=generator, dtype=torch.float64,
                   device=generator.device if generator is not None else z.device)
    lo = torch.special.ndtr(torch.tensor(-tau, dtype=torch.float64))
    fresh = torch.special.ndtri(lo + u * (1 - 2 * lo))  # Φ(τ) − Φ(−τ) = 1 − 2Φ(−τ)
    z = z.clone()
    z[outside] = fresh.to(z.device, z.dtype).clamp(-tau, tau)
    return z
