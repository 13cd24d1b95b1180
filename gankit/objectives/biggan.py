"""BigGAN's objective (Brock et al. 2019): the GAN objective plus orthogonal regularisation of G.

Eq. 3 of the paper, the variant that leaves the filters' norms free:

    R_β(W) = β · ‖WᵀW ⊙ (1 − I)‖²_F

summed over G's weights. Here each weight is taken as the matrix W (out, in·k·k) whose rows are
the output units' filters, and the penalty is on the off-diagonal of the Gram matrix W Wᵀ (out,
out): the squared cosine-like overlaps between different filters, Σ_{i≠j} (w_i · w_j)², with
nothing asking a filter to have unit norm. (The paper writes WᵀW for W with filters as columns;
the reference code penalises the rows of the (out, −1) reshape, as here.) The shared class
embedding is left out (the paper's code excludes it), and so is every 1-D parameter (biases,
BatchNorm gains, attention's γ).

With spectral norm, a layer's ``weight`` is computed as W̄ = W / σ(W) from the parameter
``parametrizations.weight.original``; the penalty is applied to that stored W, the parameter the
optimiser updates, as the paper's code does (its spectral norm also divides a raw weight on the
fly). Penalising W̄ instead would differ only by the per-layer factor 1/σ⁴.

β means what it means in the paper's experiments, which ran its code: that code's ``ortho()`` adds
2β (W Wᵀ ⊙ (1 − I)) W straight to each weight's gradient, the gradient of (β/2)‖W Wᵀ ⊙ (1 − I)‖²_F,
so G's loss here gets ``β/2 · penalty`` (:func:`ortho_loss`); β times Eq. 3 as printed would pull
twice as hard at the same β.

Options: ``loss.options.ortho_weight`` = β (paper: 1e-4; 0 turns it off). The term is added to
G's loss in the ``G`` phase; ``ortho`` logs the penalty (Eq. 3 without β). The adversarial loss, D steps,
regularisers and EMA are :class:`~gankit.objectives.gan.GANObjective`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import parse_options, register_objective
from .gan import GANObjective


def orthogonal_penalty(weights: Iterable[Tensor]) -> Tensor:
    """Σ over ``weights`` of ‖W Wᵀ ⊙ (1 − I)‖²_F, each weight viewed as W (out, −1) (a conv's
    (out, in, k, k) as (out, in·k·k)); BigGAN, Eq. 3 without β. A scalar fp32 tensor, 0 for
    matrices whose rows are mutually orthogonal (whatever their norms). Needs at least one weight."""
    total: Optional[Tensor] = None
    for w in weights:
        m = w.float().reshape(w.shape[0], -1)                 # (out, in·k·k)
        gram = m @ m.t()                                      # (out, out)
        off = gram - torch.diag_embed(torch.diagonal(gram))   # zero the diagonal: ⊙ (1 − I)
        term = off.pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("orthogonal_penalty needs at least one weight")
    return total


def ortho_loss(weights: Iterable[Tensor], beta: float) -> Tensor:
    """(β/2) · :func:`orthogonal_penalty`: the loss whose gradient, 2β (W Wᵀ ⊙ (1 − I)) W per weight,
    is what BigGAN's code adds to the gradients for strength β (see the module docstring)."""
    return 0.5 * beta * orthogonal_penalty(weights)


def ortho_weights(net: nn.Module) -> List[Tensor]:
    """The parameters of ``net`` that BigGAN's orthogonal regularisation applies to: every parameter
    with 2 or more dimensions (conv and linear weights; under spectral norm their stored
    ``parametrizations.weight.original``), except those of embedding layers (the shared class
    embedding)."""
    embedded = {id(p) for m in net.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return [p for p in net.parameters() if p.ndim >= 2 and id(p) not in embedded]


@dataclass(frozen=True)
class BigGANOptions:
    ortho_weight: float = 1e-4         # β of Eq. 3 (Brock et al. 2019, §3.1); 0 = off


@register_objective("biggan")
class BigGANObjective(GANObjective):
    """The GAN objective with BigGAN's orthogonal regularisation of G (see the module docstring)."""

    Options = BigGANOptions

    @classmethod
    def extra_work(cls, cfg, options) -> List[str]:
        return [f"orthogonal regularisation of G (β {options.ortho_weight:g})"] if options.ortho_weight > 0 else []

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        if not parse_options(cls, cfg.loss.options).ortho_weight >= 0:
            raise ConfigError(f"loss.options.ortho_weight={cfg.loss.options.get('ortho_weight')}: "
                              "invalid value; allowed: a number >= 0 (BigGAN: 1e-4)")

    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        stats = super().accumulate_gradients(phase, batch, batch_size)
        beta = self.options.ortho_weight
        if phase == "G" and beta > 0:
            # fp32, outside autocast: a tiny penalty (β = 1e-4) on the stored weights; its own backward
            # adds to the gradients the adversarial loss left in G's parameters.
            loss = ortho_loss(ortho_weights(self.G), beta)
            self.backward(loss)
            stats["ortho"] = loss.detach() / (0.5 * beta)
        return stats
