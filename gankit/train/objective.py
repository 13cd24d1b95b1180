"""The GAN objective: what each training phase computes and backpropagates.

The loop only knows phases (name, trained module, optimiser, interval, repeats); it
calls :meth:`GANObjective.accumulate_gradients` for each and steps the optimiser. The
objective knows the adversarial loss and the regularisers, picked from the registries,
so a new loss or regulariser never touches the loop.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses import LOSSES, REGULARIZERS
from ..registry import Registry
from .augment import DiffAugment

#: ``loss.objective`` -> an objective class built as ``cls(G, D, loss_cfg, z_dim, num_classes, autocast=...)``
OBJECTIVES = Registry("objective")


@dataclass
class Phase:
    """One kind of optimiser step. It runs ``repeats`` times every ``every`` generator steps."""

    name: str
    module: nn.Module                 # the network this phase updates
    optimizer: torch.optim.Optimizer
    every: int = 1
    repeats: int = 1
    needs_data: bool = True           # draws a real batch per repeat
    frozen: tuple = field(default_factory=tuple)  # networks held fixed: no parameter gradients


@OBJECTIVES.register("gan")
class GANObjective:
    """Losses for the phases ``D``, ``G`` and ``reg:<name>`` (lazy regularisers).

    Real batches arrive in model range; fake batches come from ``G(z, y)`` with
    z ~ N(0, I) drawn from torch's global RNG (so runs are reproducible and resumable).
    Subclasses (other objectives) change what D's output means via :meth:`discriminate`
    or what a phase computes, never the loop.
    """

    def __init__(self, G: nn.Module, D: nn.Module, loss_cfg, z_dim: int, num_classes: int,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 augment: Optional[Callable[[Tensor], Tensor]] = None):
        self.G, self.D = G, D
        self.loss = LOSSES.get(loss_cfg.name)
        self.eager_regs = [(r.name, REGULARIZERS.get(r.name), r.weight) for r in loss_cfg.regularizers if r.every == 1]
        self.lazy_regs = {f"reg:{r.name}": (REGULARIZERS.get(r.name), r.weight, r.every)
                          for r in loss_cfg.regularizers if r.every > 1}
        self.clip = loss_cfg.clip_d_weights
        self.z_dim, self.num_classes = z_dim, num_classes
        self.autocast = autocast
        # DiffAugment from ``loss.augment`` unless a callable is given; applied to real and fake alike.
        self.augment = augment if augment is not None else DiffAugment(getattr(loss_cfg, "augment", ""))
        # PacGAN: D scores groups of ``pack`` samples, so every batch must be a multiple of it.
        self.pack = int(getattr(D, "pack", 1))
        self.reuse_fake = False       # set by build_phases when d_steps == 1
        self._cached: Optional[tuple] = None
        # Set by the Trainer: ``(n, device) -> z`` for this rank's slice of the global batch's noise
        # (gankit/train/distributed.py ShardedNoise); None = torch's global RNG.
        self.noise_source: Optional[Callable[[int, torch.device], Tensor]] = None

    # Set by the Trainer for fp16: scales a loss before backward (torch.amp.GradScaler.scale).
    loss_scale: Optional[Callable[[Tensor], Tensor]] = None

    def backward(self, loss: Tensor) -> None:
        """Backpropagate ``loss``, scaled when training in fp16 so small gradients do not underflow."""
        (self.loss_scale(loss) if self.loss_scale is not None else loss).backward()

    # -- phases -------------------------------------------------------------------------
    def build_phases(self, g_opt, d_opt, d_steps: int) -> List[Phase]:
        # With one D step per G step, G's forward pass serves both steps: the D step
        # sees it detached, the G step backpropagates through it (saves one G forward).
        self.reuse_fake = d_steps == 1
        phases = [Phase("D", self.D, d_opt, repeats=d_steps, frozen=() if self.reuse_fake else (self.G,))]
        for name, (_, _, every) in self.lazy_regs.items():
            phases.append(Phase(name, self.D, d_opt, every=every, frozen=(self.G,)))
        phases.append(Phase("G", self.G, g_opt, needs_data=False, frozen=(self.D,)))
        return phases

    # -- sampling -----------------------------------------------------------------------
    def noise(self, n: int, device) -> Tensor:
        if self.noise_source is not None:
            return self.noise_source(n, device)
        return torch.randn(n, self.z_dim, device=device)

    def random_labels(self, n: int, device) -> Optional[Tensor]:
        return torch.randint(self.num_classes, (n,), device=device) if self.num_classes else None

    def generate(self, n: int, device, y: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        y = y if y is not None or not self.num_classes else self.random_labels(n, device)
        with self.autocast():
            x = self.G(self.noise(n, device), y)
        return x.float(), y

    def critic(self, y: Optional[Tensor]) -> Callable[[Tensor], Tensor]:
        """D with labels bound and augmentation applied, returning fp32 scores (B,)."""
        return lambda x: self.D(self.augment(x), y).float()

    def discriminate(self, x: Tensor, y: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor], Dict[str, Tensor]]:
        """D's scores (B / pack,) for ``x`` (augmented), an auxiliary loss to add to the phase's
        loss (None here; ACGAN's class cross-entropy) and statistics to log about it."""
        return self.D(self.augment(x), y).float(), None, {}

    # -- the step the loop calls ---------------------------------------------------------
    def accumulate_gradients(self, phase: str, real: Optional[Tensor], y: Optional[Tensor],
                             batch_size: int) -> Dict[str, Tensor]:
        """Backpropagate ``phase``'s loss; return detached statistics for logging."""
        n = real.shape[0] if real is not None else batch_size
        if n % self.pack:
            raise ConfigError(f"train.batch_size={n} is not a multiple of model.d.pack={self.pack} "
                              "(PacGAN's D scores groups of pack samples)")
        if phase == "D":
            return self._d_step(real, y)
        if phase == "G":
            return self._g_step(batch_size, real.device if real is not None else self._device())
        return self._lazy_reg_step(phase, real, y)

    def after_step(self, phase: str) -> None:
        if phase == "D" and self.clip is not None:
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-self.clip, self.clip)

    def _device(self):
        return next(self.G.parameters()).device

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
        # With pack > 1 each score (and each accuracy count) is one decision about a group of samples.
        says_real_r = self.loss.says_real(out_real.detach())
        says_real_f = self.loss.says_real(out_fake.detach())
        stats.update(
            d_real=self.loss.d_real_fake(out_real.detach()).mean(),
            d_fake=self.loss.d_real_fake(out_fake.detach()).mean(),
            acc_real=says_real_r.float().mean(),
            acc_fake=(~says_real_f).float().mean(),
        )
        return stats

    def _g_step(self, n: int, device) -> Dict[str, Tensor]:
        if self.reuse_fake and self._cached is not None:
            fake, y = self._cached
            self._cached = None
        else:
            fake, y = self.generate(n, device)
        with self.autocast():
            out_fake, aux, aux_stats = self.discriminate(fake, y)
        loss = self.loss.g(out_fake)
        stats = {"g_loss": loss.detach(), **{f"g_{k}": v for k, v in aux_stats.items()}}
        if aux is not None:
            loss = loss + aux
        self.backward(loss)
        return stats

    def _lazy_reg_step(self, phase: str, real: Tensor, y: Optional[Tensor]) -> Dict[str, Tensor]:
        fn, weight, every = self.lazy_regs[phase]
        with torch.no_grad():
            fake, _ = self.generate(real.shape[0], real.device, y if self.num_classes else None)
        penalty = fn(self.critic(y), real, fake)
        # Applied every N steps with N× the weight, as in StyleGAN2's lazy regularisation.
        self.backward(weight * every * penalty)
        return {phase.split(":", 1)[1]: penalty.detach()}
