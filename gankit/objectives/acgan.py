"""ACGAN (Odena et al. 2017): D also names the class of what it sees, real or fake.

With L_S the log-likelihood of the right source and L_C that of the right class, D
maximises L_S + L_C and G maximises L_C − L_S (Sec. 3): both sides add the class
cross-entropy to their adversarial loss, D on real and fake batches, G on its own.
G is conditional (``model.conditional: true``); D takes no label as input but needs
an auxiliary classifier: ``D.aux_classes == K`` and ``D.scores_and_classes(x) -> ((B,), (B, K))``
(the ``resnet`` family with ``model.d.conditioning: aux``).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import register_objective
from .gan import GANObjective


@register_objective("acgan")
class ACGANObjective(GANObjective):
    @classmethod
    def extra_work(cls, cfg, options) -> list:
        return [f"auxiliary class loss (weight {cfg.loss.aux_weight:g})"]

    def __init__(self, nets, cfg, data, **kwargs):
        super().__init__(nets, cfg, data, **kwargs)
        if not self.num_classes:
            raise ConfigError("loss.objective=acgan needs model.conditional: true and a labelled dataset")
        if getattr(self.D, "aux_classes", 0) != self.num_classes:
            raise ConfigError(f"loss.objective=acgan needs a discriminator with an auxiliary classifier; "
                              f"{type(self.D).__name__} has none: use model.arch resnet with model.d.conditioning: aux")
        self.aux_weight = cfg.loss.aux_weight

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        if not cfg.model.conditional:
            raise ConfigError("loss.objective: invalid value; allowed: acgan needs model.conditional: true "
                              "(a labelled dataset)")

    def discriminate(self, x: Tensor, y: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor], Dict[str, Tensor]]:
        scores, class_logits = self.D.scores_and_classes(self.augment(x))  # (B,), (B, K)
        class_logits = class_logits.float()
        ce = F.cross_entropy(class_logits, y)
        acc = (class_logits.argmax(1) == y).float().mean()
        return scores.float(), self.aux_weight * ce, {"cls_loss": ce.detach(), "cls_acc": acc.detach()}
