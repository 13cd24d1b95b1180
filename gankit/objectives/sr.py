"""Single-image super-resolution: SRResNet, SRGAN and ESRGAN as settings of one objective.

G maps a low-resolution image (data ``super-resolution``: A = B downscaled ×scale) to B:

* **SRResNet** (Ledig et al. 2017, Sec. 2.2): pixel MSE alone, no D — the PSNR baseline
  (``adversarial: false, pixel: mse``).
* **SRGAN** (Ledig et al. 2017, Eq. 3): a content loss on the activations of a feature network
  (``perceptual_weight``; the paper's VGG54, here the data's domain network, see
  :mod:`gankit.losses.perceptual`) plus 10⁻³ × the adversarial loss −log D(G(x)) (Eq. 6), D the
  paper's VGG-style discriminator (``model.arch: srresnet``).
* **ESRGAN** (Wang et al. 2018, Sec. 3): an RRDB generator without BatchNorm (``model.arch: rrdb``),
  the relativistic average discriminator (``relativistic: true``, Eq. 1-2; the generator's loss has
  both terms, real and fake), L = L_percep + λ L_G^Ra + η L_1 with λ = 5·10⁻³, η = 10⁻² (Sec. 3.3),
  started from the PSNR-oriented model (``init_from``: that run's folder). The two stages are two
  runs: ``esrgan-psnr-photos`` then ``esrgan-photos``; ``gankit translate --alpha`` interpolates
  their weights (Sec. 3.4).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..losses.perceptual import CRITERIA
from ..nets import build_net
from .base import register_objective
from .gan import d_accuracy
from .paired import PairedObjective, feature_loss


@dataclass(frozen=True)
class SROptions:
    adversarial: bool = False            # false: no D (SRResNet, ESRGAN's PSNR-oriented stage)
    pixel: str = "mse"                   # pixel loss: mse (SRResNet) or l1 (ESRGAN)
    pixel_weight: float = 1.0            # SRGAN: 0 (content loss only); ESRGAN: η = 1e-2
    perceptual: str = "mse"              # feature distance: mse (SRGAN Eq. 5) or l1 (ESRGAN)
    perceptual_weight: float = 0.0       # SRGAN and ESRGAN: 1
    # the feature network: "domain" (the clean images' domain network, trained once and cached) or the
    # path of a gankit domain-network safetensors file (see docs/restoration.md)
    features: str = "domain"
    adversarial_weight: float = 1e-3     # SRGAN 1e-3; ESRGAN λ = 5e-3
    relativistic: bool = False           # ESRGAN's relativistic average D and G losses
    init_from: Optional[str] = None      # a run folder (or checkpoint) whose G (its EMA if kept) starts this G


@register_objective("sr")
class SRObjective(PairedObjective):
    Options = SROptions

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        o = cls.Options(**cfg.loss.options)
        for key, value in (("pixel", o.pixel), ("perceptual", o.perceptual)):
            if value not in CRITERIA:
                raise ConfigError(f"loss.options.{key}: {value!r}; choose one of {', '.join(CRITERIA)}")
        if not (o.pixel_weight > 0 or o.perceptual_weight > 0):
            raise ConfigError("loss.options: give pixel_weight or perceptual_weight > 0 (a G needs a content loss)")
        if o.relativistic and not o.adversarial:
            raise ConfigError("loss.options.relativistic: needs adversarial: true")
        if cfg.data.name != "super-resolution":
            raise ConfigError(f"data.name: objective sr trains on super-resolution data, got {cfg.data.name!r}")

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        c_in, h_in = data.sample_shape[0], data.sample_shape[1]
        c_out, h_out = data.target_shape[0], data.target_shape[1]
        nets = {"G": build_net(cfg.model, "G", "G", in_channels=c_in, out_channels=c_out, scale=h_out // h_in)}
        if cls.Options(**cfg.loss.options).adversarial:
            nets["D"] = build_net(cfg.model, "D", "D", in_channels=c_out)
        return nets

    def prepare(self) -> None:
        super().prepare()
        o = self.options
        if o.perceptual_weight > 0:
            self.features = feature_loss(o.features, self.cfg.data, o.perceptual).to(self.device())

    def _relativistic(self, real, fake, target_real: float):
        """Eq. 1-2: D_Ra(a, b) = σ(C(a) − E[C(b)]); the BCE of both orderings, averaged."""
        ones, zeros = torch.ones_like(real), torch.zeros_like(real)
        a = F.binary_cross_entropy_with_logits(real - fake.mean(), ones if target_real else zeros)
        b = F.binary_cross_entropy_with_logits(fake - real.mean(), zeros if target_real else ones)
        return (a + b) / 2

    def d_loss(self, batch, fake):
        D = self.nets["D"]
        with self.autocast():
            out_real, out_fake = D(batch["B"]).float(), D(fake).float()
        if self.options.relativistic:
            loss = self._relativistic(out_real, out_fake, 1)
        else:
            loss = self.loss.d(out_real, out_fake)
        return loss, {"d_loss": loss.detach(), **d_accuracy(self.loss, out_real.detach(), out_fake.detach())}

    def g_loss(self, batch, fake):
        o, y = self.options, batch["B"].float()
        fake = fake.float()
        pixel = CRITERIA[o.pixel](fake, y)
        stats = {o.pixel: pixel.detach()}
        loss = o.pixel_weight * pixel
        if o.perceptual_weight > 0:
            percep = self.features(fake, y)
            loss = loss + o.perceptual_weight * percep
            stats["perceptual"] = percep.detach()
        if self.adversarial:
            D = self.nets["D"]
            with self.autocast():
                out_fake = D(fake).float()
                if o.relativistic:
                    out_real = D(batch["B"]).float().detach()
            adv = self._relativistic(out_real, out_fake, 0) if o.relativistic else self.loss.g(out_fake)
            loss = loss + o.adversarial_weight * adv
            stats["g_loss"] = adv.detach()
        return loss, stats
