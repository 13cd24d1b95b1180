"""Adversarial losses as pure functions of D's raw outputs ("logits").

Each entry pairs a discriminator loss ``d(logits_real, logits_fake) -> scalar`` with a
generator loss ``g(logits_fake) -> scalar``. Logistic losses are written with softplus,
which is exact and stable for any logit: log σ(t) = -softplus(-t), log(1 - σ(t)) = -softplus(t).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..registry import Registry

LOSSES = Registry("loss")


@dataclass(frozen=True)
class AdversarialLoss:
    name: str
    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[..., Tensor]           # g(fake), or g(real, fake) when relativistic
    # D calls a sample real when its output exceeds this (0 for logits, 0.5 for LSGAN's targets).
    real_threshold: float = 0.0
    # True when the output is a logit of P(real); D(x) is then reported as sigmoid(output).
    logistic: bool = True
    reference: str = ""
    # True: ``g(real_logits, fake_logits)`` — G's loss compares with D on real data (RSGAN, RaGAN), so
    # G's step draws a real batch; False: ``g(fake_logits)``.
    relativistic: bool = False

    def g_loss(self, fake: Tensor, real: Optional[Tensor] = None) -> Tensor:
        """G's loss for D's outputs on ``fake`` (and on ``real`` for a relativistic loss)."""
        return self.g(real, fake) if self.relativistic else self.g(fake)

    def d_real_fake(self, out: Tensor) -> Tensor:
        """What to report as "D(x)": a probability for logistic losses, the raw score otherwise."""
        return torch.sigmoid(out) if self.logistic else out

    def says_real(self, out: Tensor) -> Tensor:
        return out > self.real_threshold


def register_loss(loss: AdversarialLoss) -> AdversarialLoss:
    return LOSSES.register(loss.name, loss)


def d_logistic(real: Tensor, fake: Tensor) -> Tensor:
    """−E[log D(x)] − E[log(1 − D(G(z)))]: the minimax value function, negated, for D (Goodfellow et al. 2014, Eq. 1)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_minimax(fake: Tensor) -> Tensor:
    """G minimises E[log(1 − D(G(z)))] (Eq. 1): saturates when D rejects G's samples."""
    return -F.softplus(fake).mean()


def g_non_saturating(fake: Tensor) -> Tensor:
    """G minimises −E[log D(G(z))]: the fix proposed in Goodfellow et al. 2014, Sec. 3."""
    return F.softplus(-fake).mean()


def d_least_squares(real: Tensor, fake: Tensor) -> Tensor:
    """½E[(D(x) − 1)²] + ½E[D(G(z))²] (Mao et al. 2017, Eq. 9 with a=0, b=c=1)."""
    return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())


def g_least_squares(fake: Tensor) -> Tensor:
    return 0.5 * (fake - 1).pow(2).mean()


def d_hinge(real: Tensor, fake: Tensor) -> Tensor:
    """E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))] (Lim & Ye 2017; Miyato et al. 2018)."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def g_hinge(fake: Tensor) -> Tensor:
    return -fake.mean()


def d_wasserstein(real: Tensor, fake: Tensor) -> Tensor:
    """E[D(G(z))] − E[D(x)]: the critic's side of the Kantorovich-Rubinstein dual (Arjovsky et al. 2017)."""
    return fake.mean() - real.mean()


def g_wasserstein(fake: Tensor) -> Tensor:
    return -fake.mean()


def d_relativistic(real: Tensor, fake: Tensor) -> Tensor:
    """−E[log σ(C(x_r) − C(x_f))] over pairs: D says how much more real a real sample is than a fake
    one (RSGAN, Jolicoeur-Martineau 2019, Eq. 7)."""
    return F.softplus(-(real - fake)).mean()


def g_relativistic(real: Tensor, fake: Tensor) -> Tensor:
    """−E[log σ(C(x_f) − C(x_r))]: G raises its fakes above the reals paired with them (Eq. 8)."""
    return F.softplus(-(fake - real)).mean()


def d_relativistic_average(real: Tensor, fake: Tensor) -> Tensor:
    """−E[log σ(C(x_r) − E C(x_f))] − E[log(1 − σ(C(x_f) − E C(x_r)))]: each sample against the other
    side's mean (RaGAN, Jolicoeur-Martineau 2019, Eq. 12; ESRGAN's D)."""
    return F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean()


def g_relativistic_average(real: Tensor, fake: Tensor) -> Tensor:
    """The same with the roles swapped: G's gradient also comes from the real samples' term (Eq. 13)."""
    return F.softplus(-(fake - real.mean())).mean() + F.softplus(real - fake.mean()).mean()


register_loss(AdversarialLoss("minimax", d_logistic, g_minimax, reference="Goodfellow et al. 2014, Eq. 1"))
register_loss(AdversarialLoss("non-saturating", d_logistic, g_non_saturating,
                              reference="Goodfellow et al. 2014, Sec. 3"))
register_loss(AdversarialLoss("least-squares", d_least_squares, g_least_squares, real_threshold=0.5,
                              logistic=False, reference="Mao et al. 2017"))
register_loss(AdversarialLoss("hinge", d_hinge, g_hinge, logistic=False, reference="Lim & Ye 2017"))
register_loss(AdversarialLoss("wasserstein", d_wasserstein, g_wasserstein, logistic=False,
                              reference="Arjovsky et al. 2017"))
register_loss(AdversarialLoss("relativistic", d_relativistic, g_relativistic, logistic=False, relativistic=True,
                              reference="Jolicoeur-Martineau 2019 (RSGAN)"))
register_loss(AdversarialLoss("relativistic-average", d_relativistic_average, g_relativistic_average, logistic=False,
                              relativistic=True, reference="Jolicoeur-Martineau 2019 (RaGAN)"))
