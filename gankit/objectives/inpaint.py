"""Inpainting and uncropping: fill a hole (or extend past the border) with a global + local critic.

G (``model.arch: inpaint``, gated convolutions as DeepFill v2) sees the image with its hole set to
grey and the mask (data ``inpainting`` / ``uncropping``); the task pastes G's output into the hole
only, so the known pixels come back exactly. Losses:

* reconstruction: L1 over the hole's pixels, normalised by the hole's area (``l1_weight``; the
  known pixels are the input's, so they carry no loss);
* adversarial (``adversarial: true``): two critics of the completed image and its mask —
  Iizuka et al. (2017)'s *global* critic, one logit per image (is the whole picture coherent?), and
  DeepFill v2's *local* SN-PatchGAN, judged only on the patches whose block touches the hole (the
  same patches of the real image, with the same mask, are its real examples). Any registered loss
  (``loss.name``; DeepFill v2 uses ``hinge``) scores both; G's adversarial term is weighted by
  ``adversarial_weight`` (Iizuka: 4·10⁻⁴ against an MSE loss; here against L1, see the recipe).

``adversarial: false`` is the L1-only model the GAN is compared with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from torch import Tensor, nn

from ..errors import ConfigError
from ..nets import build_net
from .base import register_objective
from .gan import d_accuracy
from .paired import PairedObjective


@dataclass(frozen=True)
class InpaintOptions:
    adversarial: bool = True             # false: L1 on the hole alone (the baseline)
    l1_weight: float = 1.0               # L1 over the hole's pixels
    adversarial_weight: float = 0.01     # G's adversarial term (global + local_weight × local)
    local_weight: float = 1.0            # the local (patch) critic against the global one, for D and G
    init_from: Optional[str] = None      # a run (or checkpoint) whose G starts this G: two-stage training


def hole_l1(fake: Tensor, real: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error over the hole's pixels and channels; 0 when no image has a hole."""
    area = mask.sum() * fake.shape[1]
    return ((fake - real).abs() * mask).sum() / area.clamp(min=1)


@register_objective("inpaint")
class InpaintObjective(PairedObjective):
    Options = InpaintOptions

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        if cfg.data.name not in ("inpainting", "uncropping"):
            raise ConfigError(f"data.name: objective inpaint trains on inpainting or uncropping data, "
                              f"got {cfg.data.name!r}")

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        c_in, c_out = data.sample_shape[0], data.target_shape[0]   # c_in = image + mask
        nets = {"G": build_net(cfg.model, "G", "G", in_channels=c_in, out_channels=c_out)}
        if cls.Options(**cfg.loss.options).adversarial:
            nets["D"] = build_net(cfg.model, "D", "D", in_channels=c_out + 1)  # the image and its mask
        return nets

    def _critics(self, image: Tensor, mask: Tensor):
        """(global logits (B,), local logits of the patches touching the hole (P,))."""
        with self.autocast():
            out = self.nets["D"](image, cond=mask)
        local = out["local"].float()
        touched = self.nets["D"].patch_weights(mask, local.shape[-2:]) > 0
        return out["global"].float(), local[touched]

    def d_loss(self, batch, fake):
        mask = batch["mask"]
        real_g, real_l = self._critics(batch["B"], mask)
        fake_g, fake_l = self._critics(fake, mask)
        loss_g = self.loss.d(real_g, fake_g)
        loss_l = self.loss.d(real_l, fake_l) if real_l.numel() else loss_g * 0
        loss = loss_g + self.options.local_weight * loss_l
        return loss, {"d_loss": loss.detach(), "d_local": loss_l.detach(),
                      **d_accuracy(self.loss, real_g.detach(), fake_g.detach())}

    def g_loss(self, batch, fake):
        o, mask = self.options, batch["mask"]
        l1 = hole_l1(fake.float(), batch["B"].float(), mask)
        loss, stats = o.l1_weight * l1, {"l1_hole": l1.detach()}
        if self.adversarial:
            fake_g, fake_l = self._critics(fake, mask)
            adv = self.loss.g(fake_g)
            if fake_l.numel():
                adv = adv + o.local_weight * self.loss.g(fake_l)
            loss = loss + o.adversarial_weight * adv
            stats["g_loss"] = adv.detach()
        return loss, stats
