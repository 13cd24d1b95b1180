"""CycleGAN (Zhu et al. 2017): two translators between unpaired domains, kept honest by cycles.

G_AB: A → B and G_BA: B → A; D_A judges images of A, D_B images of B. The generators
minimise (Eq. 3, with the reference code's identity term)

    L_GAN(G_AB, D_B) + L_GAN(G_BA, D_A)
    + λ (‖G_BA(G_AB(a)) − a‖₁ + ‖G_AB(G_BA(b)) − b‖₁)            cycle consistency, λ = 10
    + λ · λ_id (‖G_AB(b) − b‖₁ + ‖G_BA(a) − a‖₁)                 identity (Sec. 5.2), λ_id = 0.5

then each discriminator takes one step on real images against generated ones drawn from a
history pool of the last 50 (Shrivastava et al. 2017; Sec. 4), so D does not chase G's latest
move. The pool is part of the objective's state: it is saved in checkpoints and a resumed run
draws exactly what an uninterrupted one would. Phases follow the reference: G step, then D step,
each with the other networks frozen.

The paper's least-squares loss is ``loss.name: least-squares``; gankit's ½E[(D(G(x)) − 1)²] is
half the reference's MSE for G, which ``gan_weight: 2`` restores (the shipped recipes set it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses import LOSSES
from ..nets import build_net, check_net_kwargs
from ..tasks import TranslationTask
from .base import Objective, OptimGroup, Phase, parse_options, register_objective
from .gan import d_accuracy
from .pix2pix import check_translation_config


@dataclass(frozen=True)
class CycleGANOptions:
    cycle_weight: float = 10.0           # λ of the cycle-consistency L1 terms
    identity_weight: float = 0.5         # identity L1 weight as a fraction of λ (0 = off; needs equal channels)
    pool_size: int = 50                  # generated images each D's history pool keeps (0 = no pool)
    gan_weight: float = 1.0              # weight of G's adversarial terms


class ImagePool:
    """A history of generated images (Shrivastava et al. 2017), as in CycleGAN's reference code:
    until full, every image goes in and is returned; then each image is, with probability ½,
    swapped for a random stored one (which is returned) or returned as it is. Randomness comes
    from torch's global RNG, so it is seeded and resumes with the run."""

    def __init__(self, size: int):
        self.size = size
        self.images: Optional[Tensor] = None     # (n ≤ size, C, H, W), detached

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        images = images.detach()
        out = []
        for img in images:
            n = 0 if self.images is None else len(self.images)
            if n < self.size:
                self.images = img[None].clone() if self.images is None else torch.cat([self.images, img[None]])
                out.append(img)
            elif torch.rand(()) < 0.5:
                i = int(torch.randint(n, ()))
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        return torch.stack(out)

    def state_dict(self) -> dict:
        return {"images": self.images} if self.images is not None else {}

    def load_state_dict(self, state: dict, device) -> None:
        self.images = state["images"].to(device) if "images" in state else None


@register_objective("cyclegan")
class CycleGANObjective(Objective):
    Options = CycleGANOptions
    kind = "translation"
    ema = ("G_AB", "G_BA")
    optimizers = {"G": OptimGroup(("G_AB", "G_BA"), "g_optim"), "D": OptimGroup(("D_A", "D_B"), "d_optim")}

    @classmethod
    def extra_work(cls, cfg, options) -> List[str]:
        return [f"history pools of {options.pool_size} fakes"] if options.pool_size else []

    def __init__(self, nets: Dict[str, nn.Module], cfg, data, **kwargs):
        super().__init__(nets, cfg, data, **kwargs)
        self.loss = LOSSES.get(cfg.loss.name)
        self.task = TranslationTask("A", "B", "G_AB")
        self.reverse = TranslationTask("B", "A", "G_BA")
        self.identity = self.options.identity_weight > 0 and data.sample_shape[0] == data.target_shape[0]
        self.pools = {"A": ImagePool(self.options.pool_size), "B": ImagePool(self.options.pool_size)}
        self._cached: Optional[Dict[str, Tensor]] = None

    def tasks(self) -> Dict[str, TranslationTask]:
        return {"AtoB": self.task, "BtoA": self.reverse}

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        c_a, c_b = data.sample_shape[0], data.target_shape[0]
        return {"G_AB": build_net(cfg.model, "G_AB", "G", in_channels=c_a, out_channels=c_b),
                "G_BA": build_net(cfg.model, "G_BA", "G", in_channels=c_b, out_channels=c_a),
                "D_A": build_net(cfg.model, "D_A", "D", in_channels=c_a),
                "D_B": build_net(cfg.model, "D_B", "D", in_channels=c_b)}

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        opts = parse_options(cls, cfg.loss.options)
        check_translation_config(cfg, "cyclegan")
        for name, role in (("G_AB", "G"), ("G_BA", "G"), ("D_A", "D"), ("D_B", "D")):
            check_net_kwargs(cfg.model, name, role)
        if cfg.train.d_steps != 1:
            raise ConfigError("train.d_steps: cyclegan alternates one G step and one D step; set it to 1")
        if opts.pool_size < 0:
            raise ConfigError("loss.options.pool_size: invalid value; allowed: an integer >= 0")

    def phases(self, d_steps: int) -> List[Phase]:
        return [Phase("G", "G", ("G_AB", "G_BA")), Phase("D", "D", ("D_A", "D_B"), needs_data=False)]

    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        return self._g_step(batch) if phase == "G" else self._d_step()

    def _g_step(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        n, o = self.nets, self.options
        a, b = batch["A"], batch["B"]
        with self.autocast():
            fake_b = n["G_AB"](a)
            fake_a = n["G_BA"](b)
            rec_a = n["G_BA"](fake_b)
            rec_b = n["G_AB"](fake_a)
            out_b = n["D_B"](fake_b).float()
            out_a = n["D_A"](fake_a).float()
        gan_ab, gan_ba = self.loss.g(out_b), self.loss.g(out_a)
        cycle_a = F.l1_loss(rec_a.float(), a.float())
        cycle_b = F.l1_loss(rec_b.float(), b.float())
        loss = o.gan_weight * (gan_ab + gan_ba) + o.cycle_weight * (cycle_a + cycle_b)
        stats = {"g_loss": (gan_ab + gan_ba).detach() / 2, "g_loss/G_AB": gan_ab.detach(),
                 "g_loss/G_BA": gan_ba.detach(), "cycle_A": cycle_a.detach(), "cycle_B": cycle_b.detach()}
        if self.identity:
            with self.autocast():
                idt_b, idt_a = n["G_AB"](b), n["G_BA"](a)
            idt = F.l1_loss(idt_b.float(), b.float()) + F.l1_loss(idt_a.float(), a.float())
            loss = loss + o.cycle_weight * o.identity_weight * idt
            stats["identity"] = idt.detach() / 2
        self.backward(loss)
        self._cached = {"A": a, "B": b, "fake_A": fake_a.detach(), "fake_B": fake_b.detach()}
        return stats

    def _d_step(self) -> Dict[str, Tensor]:
        c = self._cached
        self._cached = None
        stats, total = {}, 0.0
        sums: Dict[str, Tensor] = {}
        for domain in ("A", "B"):
            D = self.nets[f"D_{domain}"]
            fake = self.pools[domain].query(c[f"fake_{domain}"])
            with self.autocast():
                out_real, out_fake = D(c[domain]).float(), D(fake).float()
            loss = self.loss.d(out_real, out_fake)
            total = total + loss
            stats[f"d_loss/D_{domain}"] = loss.detach()
            acc = d_accuracy(self.loss, out_real.detach(), out_fake.detach())
            for k, v in acc.items():
                stats[f"{k}/D_{domain}"] = v
                sums[k] = sums.get(k, 0.0) + v / 2
        self.backward(total)
        stats["d_loss"] = total.detach() / 2
        stats.update(sums)  # acc_real, acc_fake, ...: the mean of the two discriminators (health reads these)
        return stats

    def state_dict(self) -> dict:
        return {"pools": {k: p.state_dict() for k, p in self.pools.items()}}

    def load_state_dict(self, state: dict) -> None:
        for k, p in self.pools.items():
            p.load_state_dict(state.get("pools", {}).get(k, {}), self.device())
