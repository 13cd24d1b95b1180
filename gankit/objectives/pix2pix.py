"""Pix2Pix (Isola et al. 2017): a conditional GAN from an input image to its paired target.

G (a U-Net, dropout as its noise) maps input x to G(x); D (a PatchGAN) judges (x, y) pairs
patch by patch. G minimises L_cGAN + λ·L1 (Eq. 4, λ = 100); D the adversarial loss, halved
(Sec. 3.3: "we divide the objective by 2 while optimizing D, which slows down the rate at
which D learns relative to G"). Any registered loss replaces the vanilla one (``loss.name``:
``non-saturating`` is the paper's log D form; ``least-squares``, ``hinge``).

``loss.options.adversarial: false`` trains the same U-Net with L1 alone (no D): the baseline
the paper compares against in Table 1 and Fig. 4.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch.nn.functional as F
from torch import nn

from ..nets import build_net
from .base import register_objective
from .gan import d_accuracy
from .paired import PairedObjective, check_translation_config  # noqa: F401  (check_translation_config: cyclegan)


@dataclass(frozen=True)
class Pix2PixOptions:
    l1_weight: float = 100.0             # λ of ‖y − G(x)‖₁ (Eq. 4)
    adversarial: bool = True             # false: L1 alone, no discriminator (the paper's baseline)
    d_scale: float = 0.5                 # D's loss × this (Sec. 3.3: divided by 2)
    init_from: Optional[str] = None      # a run (or checkpoint) whose G starts this G: two-stage training


@register_objective("pix2pix")
class Pix2PixObjective(PairedObjective):
    Options = Pix2PixOptions

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        from ..tasks import COMPOSE

        c_in, c_out = data.sample_shape[0], data.target_shape[0]
        # a colouriser predicts a*, b* and the task joins them to the input's L*: G's own channels
        g_out = COMPOSE[getattr(data, "compose", "none")].out_channels(c_out)
        nets = {"G": build_net(cfg.model, "G", "G", in_channels=c_in, out_channels=g_out)}
        if cls.Options(**cfg.loss.options).adversarial:
            nets["D"] = build_net(cfg.model, "D", "D", in_channels=c_in + c_out)  # sees (input, output) pairs
        return nets

    def d_loss(self, batch, fake):
        x, y = batch["A"], batch["B"]
        D = self.nets["D"]
        with self.autocast():
            out_real = D(y, cond=x).float()
            out_fake = D(fake, cond=x).float()
        loss = self.loss.d(out_real, out_fake)
        return self.options.d_scale * loss, {"d_loss": loss.detach(),
                                             **d_accuracy(self.loss, out_real.detach(), out_fake.detach())}

    def g_loss(self, batch, fake):
        x, y = batch["A"], batch["B"]
        l1 = F.l1_loss(fake.float(), y.float())
        loss = self.options.l1_weight * l1
        stats = {"l1": l1.detach()}
        if self.adversarial:
            with self.autocast():
                out = self.nets["D"](fake, cond=x).float()
            g_adv = self.loss.g(out)
            loss = loss + g_adv
            stats["g_loss"] = g_adv.detach()
        return loss, stats
