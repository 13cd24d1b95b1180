"""The GAN objective (Goodfellow et al. 2014): a noise-driven G against a D, k D-steps per G-step.

Phases: ``D`` (``train.d_steps`` repeats), ``reg:<name>`` for each lazy regulariser, then ``G``.
The adversarial loss and the regularisers are pure functions picked from the registries, so a
new loss or regulariser is a registration, not an edit here. Variants (ACGAN, unrolled) subclass
this and change what D's output means (:meth:`GANObjective.discriminate`) or what a phase computes.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses import LOSSES, REGULARIZERS
from ..nets import NETWORKS, build_net, check_net_kwargs
from ..nets.base import net_kwargs
from ..tasks import GenerationTask
from ..losses.augment import DiffAugment
from .base import Objective, OptimGroup, Phase, register_objective


@register_objective("gan")
class GANObjective(Objective):
    """Losses for the phases ``D``, ``G`` and ``reg:<name>`` (lazy regularisers).

    Real batches arrive in model range; fake batches come from ``G(z, y)`` with z ~ N(0, I)
    drawn from torch's global RNG, or from the Trainer's sharded noise stream under torchrun.
    """

    ema = ("G",)
    optimizers = {"G": OptimGroup(("G",), "g_optim"), "D": OptimGroup(("D",), "d_optim")}
    capturable = True
    relativistic_losses = True

    def __init__(self, nets: Dict[str, nn.Module], cfg, data,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 augment: Optional[Callable[[Tensor], Tensor]] = None):
        super().__init__(nets, cfg, data, autocast)
        loss_cfg = cfg.loss
        self.loss = LOSSES.get(loss_cfg.name)
        self.eager_regs = [(r.name, REGULARIZERS.get(r.name), r.weight) for r in loss_cfg.regularizers if r.every == 1]
        self.lazy_regs = {f"reg:{r.name}": (REGULARIZERS.get(r.name), r.weight, r.every)
                          for r in loss_cfg.regularizers if r.every > 1}
        self.clip = loss_cfg.clip_d_weights
        self.z_dim, self.num_classes = cfg.model.z_dim, data.num_classes
        self.task = GenerationTask(self.z_dim, self.num_classes)
        # DiffAugment from ``loss.augment`` unless a callable is given; applied to real and fake alike.
        self.augment = augment if augment is not None else DiffAugment(loss_cfg.augment)
        # PacGAN: D scores groups of ``pack`` samples, so every batch must be a multiple of it.
        self.pack = int(getattr(self.D, "pack", 1))
        self.reuse_fake = False       # set by phases() when d_steps == 1
        self._cached: Optional[tuple] = None
        # Lazy regulariser -> the D-steps between its runs, as its phase is scheduled (set by phases()).
        self.reg_interval: Dict[str, int] = {}
        # Set by the Trainer: ``(n, device) -> z`` for this rank's slice of the global batch's noise
        # (gankit/train/distributed.py ShardedNoise); None = torch's global RNG.
        self.noise_source: Optional[Callable[[int, torch.device], Tensor]] = None

    @property
    def G(self) -> nn.Module:
        return self.nets["G"]

    @property
    def D(self) -> nn.Module:
        return self.nets["D"]

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        shape, k = tuple(data.sample_shape), data.num_classes
        return {"G": build_net(cfg.model, "G", "G", z_dim=cfg.model.z_dim, sample_shape=shape, num_classes=k),
                "D": build_net(cfg.model, "D", "D", sample_shape=shape, num_classes=k)}

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        for name in ("G", "D"):
            check_net_kwargs(cfg.model, name, name)
        # The settings of this family's variants, checked whichever of them is chosen.
        if cfg.loss.unroll_steps < 0:
            raise ConfigError("loss.unroll_steps: invalid value; allowed: an integer >= 0")
        if cfg.loss.aux_weight < 0:
            raise ConfigError("loss.aux_weight: invalid value; allowed: a number >= 0")
        note_penalty_on_batchnorm(cfg)

    # -- phases -------------------------------------------------------------------------
    def phases(self, d_steps: int) -> List[Phase]:
        # With one D step per G step, G's forward pass serves both steps: the D step
        # sees it detached, the G step backpropagates through it (saves one G forward).
        self.reuse_fake = d_steps == 1
        phases = [Phase("D", "D", ("D",), repeats=d_steps, graph=("G",) if self.reuse_fake else ())]
        for name, (_, _, every) in self.lazy_regs.items():
            # ``every`` counts D steps (StyleGAN2's lazy R1 interval); the loop counts G steps.
            every_g = max(1, round(every / d_steps))
            self.reg_interval[name] = every_g * d_steps
            phases.append(Phase(name, "D", ("D",), every=every_g, lazy=True))
        # a relativistic loss compares the fakes with D on a real batch: the G step draws one then
        phases.append(Phase("G", "G", ("G",), needs_data=self.loss.relativistic))
        return phases

    # -- sampling -----------------------------------------------------------------------
    def noise(self, n: int, device) -> Tensor:
        if self.noise_source is not None:
            return self.noise_source(n, device)
        return torch.randn(n, self.z_dim, device=device)

    def generate(self, n: int, device, y: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        if self.num_classes and y is None:
            y = torch.randint(self.num_classes, (n,), device=device)
        with self.autocast():
            x = self.task.run(self.G, {"z": self.noise(n, device), "y": y})
        return x.float(), y

    def critic(self, y: Optional[Tensor]) -> Callable[[Tensor], Tensor]:
        """D with labels bound and augmentation applied, returning fp32 scores (B,)."""
        return lambda x: self.D(self.augment(x), y).float()

    def discriminate(self, x: Tensor, y: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor], Dict[str, Tensor]]:
        """D's scores (B / pack,) for ``x`` (augmented), an auxiliary loss to add to the phase's
        loss (None here; ACGAN's class cross-entropy) and statistics to log about it."""
        return self.D(self.augment(x), y).float(), None, {}

    # -- the step the loop calls ---------------------------------------------------------
    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        """Backpropagate ``phase``'s loss; return detached statistics for logging."""
        real = batch["x"] if batch is not None else None
        y = batch.get("y") if batch is not None else None
        n = real.shape[0] if real is not None else batch_size
        if n % self.pack:
            raise ConfigError(f"train.batch_size={n} is not a multiple of model.d.pack={self.pack} "
                              "(PacGAN's D scores groups of pack samples)")
        if phase == "D":
            return self._d_step(real, y)
        if phase == "G":
            return self._g_step(batch_size, real.device if real is not None else self.device(), batch)
        return self._lazy_reg_step(phase, real, y)

    def after_step(self, phase: str) -> None:
        # WGAN's clipping follows every step of D's optimiser: the D phase's and a lazy regulariser's
        # (``reg:<name>``, which steps D too), so G never sees a critic outside [-c, c].
        if self.clip is not None and (phase == "D" or phase in self.lazy_regs):
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-self.clip, self.clip)

    def _d_step(self, real: Tensor, y: Optional[Tensor]) -> Dict[str, Tensor]:
        n = real.shape[0]
        y_fake = y if self.num_classes else None  # fake labels follow the data's label distribution
        if self.reuse_fake:
            fake, _ = self.generate(n, real.device, y_fake)
            self._cached = (fake, y_fake)
            fake_d = fake.detach()
        else:
            with torch.no_grad():
                fake_d, _ = self.generate(n, real.device, y_fake)
        with self.autocast():
            out_real, aux_real, aux_stats_r = self.discriminate(real, y)
            out_fake, aux_fake, aux_stats_f = self.discriminate(fake_d, y_fake)
        loss = self.loss.d(out_real, out_fake)
        stats = {"d_loss": loss.detach()}
        for aux in (aux_real, aux_fake):
            if aux is not None:
                loss = loss + aux
        stats.update({f"{k}_real": v for k, v in aux_stats_r.items()})
        stats.update({f"{k}_fake": v for k, v in aux_stats_f.items()})
        for name, fn, weight in self.eager_regs:
            penalty = fn(self.critic(y), real, fake_d)  # fp32, outside autocast
            loss = loss + weight * penalty
            stats[name] = penalty.detach()
        self.backward(loss)
        stats.update(d_accuracy(self.loss, out_real.detach(), out_fake.detach()))
        return stats

    def _g_step(self, n: int, device, batch: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
        if self.reuse_fake and self._cached is not None:
            fake, y = self._cached
            self._cached = None
        else:
            fake, y = self.generate(n, device)
        with self.autocast():
            out_fake, aux, aux_stats = self.discriminate(fake, y)
            out_real = None
            if self.loss.relativistic:  # D is frozen here: its scores of the reals are constants for G
                with torch.no_grad():
                    out_real, _, _ = self.discriminate(batch["x"], batch.get("y"))
        loss = self.loss.g_loss(out_fake, out_real)
        stats = {"g_loss": loss.detach(), **{f"g_{k}": v for k, v in aux_stats.items()}}
        if aux is not None:
            loss = loss + aux
        self.backward(loss)
        return stats

    def _lazy_reg_step(self, phase: str, real: Tensor, y: Optional[Tensor]) -> Dict[str, Tensor]:
        fn, weight, _ = self.lazy_regs[phase]
        with torch.no_grad():
            fake, _ = self.generate(real.shape[0], real.device, y if self.num_classes else None)
        penalty = fn(self.critic(y), real, fake)
        # StyleGAN2's lazy regularisation: applied once every N D-steps with N× the weight. The phase
        # runs every round(N / d_steps) G-steps, i.e. every that many × d_steps D-steps.
        self.backward(weight * self.reg_interval[phase] * penalty)
        return {phase.split(":", 1)[1]: penalty.detach()}


def note_penalty_on_batchnorm(cfg) -> None:
    """One ``note:`` line (stderr: a config printed to stdout stays clean) when a penalty on each
    sample's input gradient (gradient-penalty, R1, R2: the regularisers marked ``double_backward``)
    meets a critic with BatchNorm, which mixes the samples of a batch: Gulrajani et al. 2017 (Sec. 4)
    call that penalty invalid there. Trained anyway; a family tells through its D's
    ``has_batchnorm(**model.d)``."""
    penalties = [r.name for r in cfg.loss.regularizers
                 if r.name in REGULARIZERS and getattr(REGULARIZERS.get(r.name), "double_backward", False)]
    if not penalties:
        return
    arch, kwargs, prefix = net_kwargs(cfg.model, "D", "D")
    has_batchnorm = getattr(NETWORKS.get(arch).role("D"), "has_batchnorm", None) if arch in NETWORKS else None
    if has_batchnorm is not None and has_batchnorm(**kwargs):
        print(f"note: loss.regularizers: {', '.join(penalties)} on each sample's input gradient, but the {arch} "
              f"D has BatchNorm ({prefix}.batchnorm), which mixes the samples of a batch: the penalty is not per "
              f"sample (Gulrajani et al. 2017, Sec. 4); set {prefix}.batchnorm=false as the WGAN-GP recipes do",
              file=sys.stderr)


def d_accuracy(loss, out_real: Tensor, out_fake: Tensor, suffix: str = "") -> Dict[str, Tensor]:
    """D(x) on real and fake and how often D is right about each (with pack > 1 or patch outputs,
    each score is one decision)."""
    return {f"d_real{suffix}": loss.d_real_fake(out_real).mean(),
            f"d_fake{suffix}": loss.d_real_fake(out_fake).mean(),
            f"acc_real{suffix}": loss.says_real(out_real).float().mean(),
            f"acc_fake{suffix}": (~loss.says_real(out_fake)).float().mean()}
