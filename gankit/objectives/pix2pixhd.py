"""Pix2PixHD (Wang et al. 2018): label map -> image with a coarse-to-fine G and multi-scale critics.

G (``model.arch: pix2pixhd``): the global generator on the label map at half resolution and a local
enhancer at full resolution (Sec. 3.2); D: ``num_d`` PatchGAN critics at scales 1, 1/2, 1/4 (Sec. 3.2),
each seeing the one-hot label map beside the image. G minimises (Eq. 4 and Sec. 3.3)

    Σ_k L_GAN(G, D_k) + λ_FM Σ_k L_FM(G, D_k) + λ_P L_perceptual

with the least-squares GAN loss of the paper's code (``loss.name: least-squares``; gankit's least-squares
G loss is ½·MSE (Mao et al.), half the code's ``MSELoss``, which ``gan_weight: 2`` restores, as the
recipe sets), the
discriminator feature-matching loss (:func:`gankit.nets.pix2pixhd.feature_matching_loss`, which
averages over layers and scales: ``fm_weight`` 40 here is the reference code's λ = 10 with its
4/(n_layers + 1) per-layer weights at n_layers = 3) and the paper's λ_P = 10 perceptual loss, on the
data's own feature network instead of VGG (:mod:`gankit.losses.perceptual`). G's adversarial term and
D's loss are summed over the scales, as Eq. 4 and the code's ``GANLoss`` do (averaging them made G's
term 1/K of the reference's beside feature matching and the perceptual loss).

``adversarial: false`` drops the critics and feature matching: G learns from the perceptual and
``l1_weight`` terms alone — the reconstruction-only model the GAN is compared with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..nets import build_net
from ..nets.pix2pixhd import feature_matching_loss
from .base import register_objective
from .gan import d_accuracy
from .paired import PairedObjective, feature_loss


@dataclass(frozen=True)
class Pix2PixHDOptions:
    adversarial: bool = True             # false: reconstruction only (perceptual + L1), no critics
    gan_weight: float = 1.0              # weight of G's adversarial term (2 = the reference code's LSGAN)
    fm_weight: float = 40.0              # λ_FM (see the module docstring for the scale)
    perceptual_weight: float = 10.0      # λ_P, on the feature network below
    features: str = "domain"             # "domain" or a gankit domain-network safetensors file
    l1_weight: float = 0.0               # an L1 term (the paper has none; the ablation may use it)
    init_from: Optional[str] = None      # a run (or checkpoint) whose G starts this G: two-stage training


@register_objective("pix2pixhd")
class Pix2PixHDObjective(PairedObjective):
    Options = Pix2PixHDOptions

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        o = cls.Options(**cfg.loss.options)
        if not o.adversarial and not (o.perceptual_weight > 0 or o.l1_weight > 0):
            raise ConfigError("loss.options: without adversarial, give perceptual_weight or l1_weight > 0")

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        c_in, c_out = data.sample_shape[0], data.target_shape[0]   # c_in = label classes (one-hot)
        nets = {"G": build_net(cfg.model, "G", "G", in_channels=c_in, out_channels=c_out)}
        if cls.Options(**cfg.loss.options).adversarial:
            nets["D"] = build_net(cfg.model, "D", "D", in_channels=c_in + c_out)
        return nets

    def prepare(self) -> None:
        super().prepare()
        if self.options.perceptual_weight > 0:
            self.features = feature_loss(self.options.features, self.cfg.data, "l1").to(self.device())

    def d_loss(self, batch, fake):
        D, labels = self.nets["D"], batch["A"]
        with self.autocast():
            real_out, fake_out = D(batch["B"], cond=labels), D(fake, cond=labels)
        losses = [self.loss.d(r.float(), f.float()) for r, f in zip(real_out, fake_out)]
        loss = torch.stack(losses).sum()                             # Σ_k over the scales
        return loss, {"d_loss": loss.detach(),
                      **d_accuracy(self.loss, real_out[0].detach().float(), fake_out[0].detach().float())}

    def g_loss(self, batch, fake):
        o, y = self.options, batch["B"].float()
        loss, stats = fake.new_zeros(()).float(), {}
        if o.perceptual_weight > 0:
            percep = self.features(fake.float(), y)
            loss = loss + o.perceptual_weight * percep
            stats["perceptual"] = percep.detach()
        if o.l1_weight > 0:
            l1 = F.l1_loss(fake.float(), y)
            loss = loss + o.l1_weight * l1
            stats["l1"] = l1.detach()
        if self.adversarial:
            D, labels = self.nets["D"], batch["A"]
            with self.autocast():
                fake_feats = D(fake, cond=labels, features=True)
                with torch.no_grad():
                    real_feats = D(batch["B"], cond=labels, features=True)
            adv = torch.stack([self.loss.g(f[-1].float()) for f in fake_feats]).sum()  # Σ_k over the scales
            fm = feature_matching_loss([[t.float() for t in f] for f in real_feats],
                                       [[t.float() for t in f] for f in fake_feats])
            loss = loss + o.gan_weight * adv + o.fm_weight * fm
            stats.update(g_loss=adv.detach(), feature_matching=fm.detach())
        return loss, stats
