"""The StyleGAN objective (Karras et al. 2019, 2020): the GAN game with the style generators' own
training: style mixing regularisation, lazy path-length regularisation of G, lazy R1 on D (a
``loss.regularizers`` entry with ``every: 16``, weighted by the interval in
:class:`~gankit.objectives.gan.GANObjective`), the tracked mean ``w_avg`` that truncation pulls
towards, and optionally adaptive discriminator augmentation (ADA, Karras et al. 2020b).

Phases: ``D`` (× ``train.d_steps``), ``reg:r1`` every 16 D steps, ``G``, ``reg:pl`` every
``pl_every`` G steps. The generator must follow the style interface (``mapping``, ``synthesis``,
``num_ws``, ``w_avg``; :mod:`gankit.nets.stylegan`); the same objective trains StyleGAN (AdaIN) and
StyleGAN2 (modulated convolutions): ``model.arch`` picks which.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses.ada import AdaptiveAugment
from .base import Phase, register_objective
from .gan import GANObjective

# w_avg ← lerp(w_avg, mean w, 1 − β) once per training step, from the D phase's generated batch, as
# StyleGAN3's code does; stylegan2-ada-pytorch (the same β, its w_avg_beta) moves it on every training-
# mode mapping call (the G, D and path-length phases), so there w_avg averages over about a third as
# many steps. It matters only for truncation early in training.
W_AVG_BETA = 0.995


@dataclass(frozen=True)
class StyleOptions:
    style_mixing: float = 0.9       # probability a generated batch mixes two latents at a random cut (paper: 0.9)
    pl_weight: float = 2.0          # path-length regularisation weight (StyleGAN2: 2); 0 = off
    pl_every: int = 4               # G steps between path-length steps (lazy regularisation; StyleGAN2: 4)
    pl_decay: float = 0.01          # the running mean a of the path lengths: a ← a + (mean − a)·decay
    pl_batch_shrink: int = 2        # the path-length batch is the G batch divided by this (StyleGAN2: 2)
    ada: bool = False               # adaptive discriminator augmentation (Karras et al. 2020b)
    ada_target: float = 0.6         # r_t = E[sign D(x_real)] the adaptation aims at
    ada_interval: int = 4           # D steps between adjustments of p
    ada_speed_images: int = 500_000  # images over which p can move by 1 (paper: 500k)


@register_objective("stylegan")
class StyleGANObjective(GANObjective):
    """GAN losses with style mixing, path-length regularisation and (optionally) ADA."""

    Options = StyleOptions
    capturable = False      # the mixing cut and ADA's probability are host decisions per step

    @classmethod
    def extra_work(cls, cfg, options) -> List[str]:
        work = []
        if options.style_mixing > 0:
            work.append(f"style mixing (p {options.style_mixing:g})")
        if options.pl_weight > 0:
            work.append(f"path-length regularisation every {options.pl_every}")
        if options.ada:
            work.append("ADA augmentation")
        return work

    def __init__(self, nets: Dict[str, nn.Module], cfg, data,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self.ada = None
        self._tracking = False   # inside the D step: generated batches move G.w_avg
        super().__init__(nets, cfg, data, autocast)
        o = self.options
        if o.ada:
            if cfg.loss.augment:
                raise ConfigError("loss.options.ada: ADA replaces DiffAugment; set loss.augment to \"\"")
            self.ada = AdaptiveAugment(o.ada_target, o.ada_interval, o.ada_speed_images)
            self.augment = self.ada
        # The running mean of the path lengths, a in Eq. 4 (StyleGAN2); kept in every checkpoint.
        self.pl_mean = torch.zeros((), device=self.device())

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        from .base import parse_options

        o = parse_options(cls, cfg.loss.options)
        if not 0 <= o.style_mixing <= 1:
            raise ConfigError(f"loss.options.style_mixing: invalid value {o.style_mixing}; allowed: a probability in [0, 1]")
        for key in ("pl_every", "pl_batch_shrink", "ada_interval", "ada_speed_images"):
            if getattr(o, key) < 1:
                raise ConfigError(f"loss.options.{key}: invalid value {getattr(o, key)}; allowed: an integer >= 1")
        from ..nets import NETWORKS
        from ..nets.base import net_kwargs

        arch = net_kwargs(cfg.model, "G", "G")[0]
        if arch in NETWORKS and not all(hasattr(NETWORKS.get(arch).generator, a) for a in ("truncate", "affines")):
            raise ConfigError(f"model.arch: {arch!r} has no style generator; loss.objective stylegan trains "
                              "model.arch stylegan or stylegan2")

    def phases(self, d_steps: int) -> List[Phase]:
        phases = super().phases(d_steps)
        if self.options.pl_weight > 0:
            phases.append(Phase("reg:pl", "G", ("G",), every=self.options.pl_every, needs_data=False, lazy=True))
        return phases

    # -- latents ------------------------------------------------------------------------
    def latents(self, n: int, device, y: Optional[Tensor], update_avg: bool = False) -> Tensor:
        """(n, num_ws, w_dim) styles for a generated batch: w = mapping(z, y) for every layer, and with
        probability ``style_mixing`` a second latent's w from a random cut on (Karras et al. 2019,
        Sec. 3.1). ``update_avg``: track the batch's mean w in ``G.w_avg``."""
        G = self.G
        w = G.mapping(self.noise(n, device), y)                    # (n, w_dim)
        if update_avg:
            with torch.no_grad():
                G.w_avg.lerp_(w.detach().float().mean(0).to(G.w_avg.dtype), 1 - W_AVG_BETA)
        ws = w.unsqueeze(1).repeat(1, G.num_ws, 1)                  # (n, num_ws, w_dim)
        if self.options.style_mixing > 0 and G.num_ws > 1 and float(torch.rand(())) < self.options.style_mixing:
            cut = int(torch.randint(1, G.num_ws, ()))
            w2 = G.mapping(self.noise(n, device), y)
            ws = torch.cat([ws[:, :cut], w2.unsqueeze(1).expand(-1, G.num_ws - cut, -1)], 1)
        return ws

    def generate(self, n: int, device, y: Optional[Tensor] = None, update_avg: Optional[bool] = None,
                 return_ws: bool = False):
        if self.num_classes and y is None:
            y = torch.randint(self.num_classes, (n,), device=device)
        if update_avg is None:  # by default the D step's generated batch tracks w_avg (see W_AVG_BETA)
            update_avg = self._tracking
        with self.autocast():
            ws = self.latents(n, device, y, update_avg)
            x = self.G.synthesis(ws)
        if return_ws:
            return x.float(), y, ws
        return x.float(), y

    # -- phases -------------------------------------------------------------------------
    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        if phase == "reg:pl":
            return self._path_length_step(batch_size)
        if phase != "D":
            return super().accumulate_gradients(phase, batch, batch_size)
        # The D step is the GAN objective's; its generated batch also moves w_avg (see generate).
        self._tracking = True
        try:
            stats = super().accumulate_gradients(phase, batch, batch_size)
        finally:
            self._tracking = False
        if self.ada is not None:
            # ADA's overfitting heuristic r_t = E[sign D(x_real)] is 2·acc_real − 1 (acc_real: the share of
            # reals D scores above its threshold, 0 for these losses), summed on the device and read
            # once per adjustment (every ada_interval D steps).
            acc = stats["acc_real"]
            self.ada.observe(acc.detach().double() * 2 - 1, batch["x"].shape[0])
            # On the statistics' device (a fill, no copy from the host): a record stacks them all.
            stats["ada_p"] = torch.full((), self.ada.p, device=acc.device)
            stats["ada_rt"] = torch.full((), self.ada.rt, device=acc.device)
        return stats

    def _path_length_step(self, batch_size: int) -> Dict[str, Tensor]:
        """Lazy path-length regularisation (Karras et al. 2020, Eq. 4): E[(‖J_wᵀ y‖₂ − a)²] with
        y ~ N(0, I)/√(H·W), a the running mean of the lengths; weighted by ``pl_weight`` × the interval."""
        o = self.options
        n = max(1, batch_size // o.pl_batch_shrink)
        y = torch.randint(self.num_classes, (n,), device=self.device()) if self.num_classes else None
        fake, _, ws = self.generate(n, self.device(), y, return_ws=True)
        penalty, _, mean = path_length_penalty(fake, ws, self.pl_mean, o.pl_decay)
        self.pl_mean.copy_(mean.detach())
        self.backward(penalty * o.pl_weight * o.pl_every)
        return {"pl_penalty": penalty.detach(), "pl_mean": self.pl_mean.detach().clone()}

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"pl_mean": self.pl_mean.detach().clone()}
        if self.ada is not None:
            state["ada"] = self.ada.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if "pl_mean" in state:
            self.pl_mean.copy_(state["pl_mean"])
        if self.ada is not None and "ada" in state:
            self.ada.load_state_dict(state["ada"])


def path_length_penalty(fake: Tensor, ws: Tensor, pl_mean: Tensor, decay: float = 0.01
                        ) -> tuple[Tensor, Tensor, Tensor]:
    """(penalty, lengths, mean): lengths = ‖J_wᵀ y‖₂ per sample with y ~ N(0, I)/√(H·W) and J the
    Jacobian of the image ``fake`` (B, C, H, W) with respect to its styles ``ws`` (B, num_ws, w_dim),
    read as √(mean over styles of Σ_features (∂⟨fake, y⟩/∂ws)²) as in StyleGAN2's code; the running
    mean moves first, mean = pl_mean + (mean(lengths) − pl_mean)·decay, and penalty =
    mean((lengths − mean)²) against it, in that order as stylegan2-ada-pytorch's loss does (the first
    penalty, with pl_mean still 0, is then against a mean of decay·lengths, not 0). All differentiable
    (create_graph) so the penalty trains G; the caller stores ``mean`` detached."""
    h, w = fake.shape[2], fake.shape[3]
    noise = torch.randn_like(fake) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad((fake * noise).sum(), ws, create_graph=True)
    lengths = grad.float().pow(2).sum(2).mean(1).sqrt()                       # (B,)
    mean = pl_mean + (lengths.mean() - pl_mean) * decay
    return (lengths - mean).pow(2).mean(), lengths, mean
