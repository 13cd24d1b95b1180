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
from typing import Dict, List, Optional

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses import LOSSES
from ..nets import build_net, check_net_kwargs
from ..tasks import TranslationTask
from .base import Objective, OptimGroup, Phase, register_objective
from .gan import d_accuracy


@dataclass(frozen=True)
class Pix2PixOptions:
    l1_weight: float = 100.0             # λ of ‖y − G(x)‖₁ (Eq. 4)
    adversarial: bool = True             # false: L1 alone, no discriminator (the paper's baseline)
    d_scale: float = 0.5                 # D's loss × this (Sec. 3.3: divided by 2)


def check_translation_config(cfg, name: str) -> None:
    """What a translation objective cannot use: parts of the noise-driven GAN."""
    if cfg.loss.regularizers:
        raise ConfigError(f"loss.regularizers: objective {name} takes none; remove them")
    if cfg.loss.clip_d_weights is not None:
        raise ConfigError(f"loss.clip_d_weights: objective {name} does not clip; set it to null")
    if cfg.eval.every is not None:
        raise ConfigError(f"eval.every: objective {name} is scored after training (gankit eval RUN: PSNR, SSIM, "
                          "FID, content kept); set eval.every to null")
    if cfg.model.conditional:
        raise ConfigError(f"model.conditional: objective {name} is conditioned on its input image, not a class; "
                          "set it to false")


@register_objective("pix2pix")
class Pix2PixObjective(Objective):
    Options = Pix2PixOptions
    kind = "translation"
    ema = ("G",)

    def __init__(self, nets: Dict[str, nn.Module], cfg, data, **kwargs):
        super().__init__(nets, cfg, data, **kwargs)
        self.loss = LOSSES.get(cfg.loss.name)
        self.task = TranslationTask("A", "B", "G")
        self.adversarial = self.options.adversarial
        self.optimizers = {"G": OptimGroup(("G",), "g_optim")}
        if self.adversarial:
            self.optimizers["D"] = OptimGroup(("D",), "d_optim")
        self._cached: Optional[tuple] = None

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        c_in, c_out = data.sample_shape[0], data.target_shape[0]
        nets = {"G": build_net(cfg.model, "G", "G", in_channels=c_in, out_channels=c_out)}
        if cls.Options(**cfg.loss.options).adversarial:
            nets["D"] = build_net(cfg.model, "D", "D", in_channels=c_in + c_out)  # sees (input, output) pairs
        return nets

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        check_translation_config(cfg, "pix2pix")
        for name in ("G", "D"):
            check_net_kwargs(cfg.model, name, name)

    def tasks(self) -> Dict[str, TranslationTask]:
        return {self.cfg.data.direction: self.task}

    def phases(self, d_steps: int) -> List[Phase]:
        if not self.adversarial:
            return [Phase("G", "G", ("G",))]
        # One D step per G step reuses the D step's G(x) and batch for the G step.
        self.reuse = d_steps == 1
        return [Phase("D", "D", ("D",), repeats=d_steps, graph=("G",) if self.reuse else ()),
                Phase("G", "G", ("G",), needs_data=not self.reuse)]

    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        if phase == "D":
            return self._d_step(batch)
        return self._g_step(batch)

    def _d_step(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        x, y = batch["A"], batch["B"]
        with self.autocast():
            fake = self.task.run(self.nets["G"], {"x": x})
        if self.reuse:
            self._cached = (x, y, fake)
        D = self.nets["D"]
        with self.autocast():
            out_real = D(y, cond=x).float()
            out_fake = D(fake.detach(), cond=x).float()
        loss = self.loss.d(out_real, out_fake)
        self.backward(self.options.d_scale * loss)
        return {"d_loss": loss.detach(), **d_accuracy(self.loss, out_real.detach(), out_fake.detach())}

    def _g_step(self, batch: Optional[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        if batch is None:
            x, y, fake = self._cached
            self._cached = None
        else:
            x, y = batch["A"], batch["B"]
            with self.autocast():
                fake = self.task.run(self.nets["G"], {"x": x})
        l1 = F.l1_loss(fake.float(), y.float())
        loss = self.options.l1_weight * l1
        stats = {"l1": l1.detach()}
        if self.adversarial:
            with self.autocast():
                out = self.nets["D"](fake, cond=x).float()
            g_adv = self.loss.g(out)
            loss = loss + g_adv
            stats["g_loss"] = g_adv.detach()
        self.backward(loss)
        return stats
