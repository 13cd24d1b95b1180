"""Progressive growing (Karras et al. 2018, Sec. 2): a GAN whose G and D (family ``progan``,
:mod:`gankit.nets.progan`) start at 4×4 and add one resolution at a time, each faded in.

The schedule counts real images shown to D, images = step × ``train.batch_size`` × ``train.d_steps``
(derived from the step, which a resumed run restores, so a resume lands on the same point):

* ``stable_images`` at the start resolution (alpha 1);
* then per further resolution: ``fade_images`` during which alpha rises linearly 0 -> 1 (the new
  layers blend in, Fig. 2), then ``stable_images`` with it fully in;
* the full resolution, once reached, stays until the budget ends.

The paper shows 600k images in each fade and each stable period (Sec. A.1). D sees real images at
the same level of detail as G's: average-pooled to the active resolution (and nearest-upsampled
back to the full size the networks take), during a fade-in blended with the half-resolution version
by the same alpha, as the paper's code does with its reals. The paper's code also resets Adam's
moments whenever layers start or finish fading in (``reset_optimizers``).

Losses come from the config as for ``gan``; the paper's are WGAN-GP with the drift term
(``loss.name: wasserstein``, regularisers ``gradient-penalty`` weight 10 and ``drift`` weight 1e-3),
Adam lr 1e-3, betas (0, 0.99), one D step per G step. The gradient penalty is taken on full-size
images: ‖∇ₓD‖ at the full size is ‖∇D‖ at the active resolution divided by the pooling factor,
as in the paper's code, which also scores full-size images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..nets.base import net_kwargs
from .base import parse_options, register_objective
from .gan import GANObjective


@dataclass(frozen=True)
class ProGANOptions:
    fade_images: int = 600_000           # real images D sees while a new resolution fades in (paper: 600k)
    stable_images: int = 600_000         # real images D sees at each resolution before the next fade (paper: 600k)
    start_resolution: int = 4            # shorter side of the first resolution trained: 4·2ᵏ, at most the data's
    reset_optimizers: bool = True        # clear Adam's moments when a fade-in starts and when it ends (paper's code)


def growth_at(images: int, fade_images: int, stable_images: int, start_stage: int, top_stage: int
              ) -> Tuple[int, float]:
    """(stage, alpha) after ``images`` real images: ``stable_images`` at ``start_stage``, then per stage
    ``fade_images`` with alpha = images into the fade / ``fade_images``, then ``stable_images`` at
    alpha 1; from ``top_stage`` on it stays there (alpha 1)."""
    if images < stable_images or start_stage >= top_stage:
        return start_stage, 1.0
    period = fade_images + stable_images
    k, into = divmod(images - stable_images, period)
    stage = start_stage + 1 + k
    if stage > top_stage:
        return top_stage, 1.0
    alpha = min(1.0, into / fade_images) if fade_images else 1.0
    return stage, alpha


def images_to_full(fade_images: int, stable_images: int, start_resolution: int, resolution: int) -> int:
    """Real images shown before the full ``resolution`` is faded in completely (its stable period
    starts): stable + n·fade + (n − 1)·stable for n = log2(resolution / start_resolution) fades; 0
    when training starts at the full resolution."""
    n = int(round(math.log2(resolution / start_resolution)))
    return n * (fade_images + stable_images) if n > 0 else 0


@register_objective("progan")
class ProGANObjective(GANObjective):
    """The GAN objective with progressive growing: :meth:`on_step` sets G's and D's growth (the EMA
    copy of G follows through its buffers) and the level of detail of the reals D sees."""

    Options = ProGANOptions
    capturable = False  # the layers each step runs, and the fade weight, are chosen on the host

    @classmethod
    def extra_work(cls, cfg, options) -> list:
        return ["reals blurred to the stage's level of detail"]

    def __init__(self, nets, cfg, data, **kwargs):
        super().__init__(nets, cfg, data, **kwargs)
        o = self.options
        for name in ("G", "D"):
            if not hasattr(self.nets[name], "set_growth"):
                raise ConfigError(f"loss.objective=progan grows its networks: model.arch must be progan "
                                  f"(network {name} is {type(self.nets[name]).__name__})")
        self.top = self.G.top
        if self.D.top != self.top:
            raise ConfigError(f"loss.objective=progan: G grows over {self.top + 1} resolutions, D over "
                              f"{self.D.top + 1}; both must take data.resolution")
        side0 = min(self.G.h0, self.G.w0)  # 4: the shorter side at stage 0
        sides = [side0 * 2 ** k for k in range(self.top + 1)]
        if o.start_resolution not in sides:
            raise ConfigError(f"loss.options.start_resolution={o.start_resolution}: the networks grow through "
                              f"{', '.join(map(str, sides))} (shorter side); use one of those")
        self.start_stage = sides.index(o.start_resolution)
        self.images_per_step = cfg.train.batch_size * cfg.train.d_steps
        self.images = 0
        # The networks' growth is left as built or loaded (a trained model rebuilt for sampling keeps
        # its checkpoint's); on_step sets it before every training step.
        self.stage, self.alpha = self.G.growth()
        self._key: Optional[tuple] = None  # (stage, fading) of the last step: a change resets Adam
        self._optimizers: Dict[str, torch.optim.Optimizer] = {}

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        o = parse_options(cls, cfg.loss.options)
        for key in ("fade_images", "stable_images"):
            v = getattr(o, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"loss.options.{key}={v!r}: invalid value; allowed: an integer >= 0")
        if o.fade_images + o.stable_images == 0:
            raise ConfigError("loss.options.fade_images and stable_images are both 0: set one > 0 "
                              "(the paper shows 600000 images in each)")
        r = o.start_resolution
        if not isinstance(r, int) or r < 4 or r & (r - 1):
            raise ConfigError(f"loss.options.start_resolution={r!r}: invalid value; allowed: 4·2ᵏ (4, 8, 16, ...)")
        for name in ("G", "D"):
            arch, _, _ = net_kwargs(cfg.model, name, name)
            if arch != "progan":
                raise ConfigError(f"model.arch={arch!r}: loss.objective=progan grows its networks; use model.arch=progan")
        res = cfg.data.resolution
        if res is not None:
            short = res if isinstance(res, int) else min(res)
            if r > short:
                raise ConfigError(f"loss.options.start_resolution={r}: larger than data.resolution "
                                  f"({short} on the shorter side); use at most {short}")

    def attach_optimizers(self, optimizers: Dict[str, torch.optim.Optimizer]) -> None:
        self._optimizers = dict(optimizers)

    # -- growth -----------------------------------------------------------------------------
    def _set(self, stage: int, alpha: float) -> None:
        # alpha as the networks' float32 buffers hold it, so the reals blend with G's weight exactly
        self.stage, self.alpha = stage, torch.tensor(alpha, dtype=torch.float32).item()
        self.G.set_growth(stage, alpha)
        self.D.set_growth(stage, alpha)

    def on_step(self, step: int, progress: float) -> None:
        o = self.options
        self.images = step * self.images_per_step
        stage, alpha = growth_at(self.images, o.fade_images, o.stable_images, self.start_stage, self.top)
        key = (stage, alpha < 1.0)
        if o.reset_optimizers and self._key is not None and key != self._key:
            for opt in self._optimizers.values():
                opt.state.clear()  # Adam re-creates zero moments (and its step count) at its next step
        self._key = key
        self._set(stage, alpha)

    def level_of_detail(self, x: Tensor) -> Tensor:
        """Real images (B, C, H, W) as D sees them now: average-pooled to the active resolution and
        upsampled back (nearest), during a fade-in lerp(the same at half that resolution, that, alpha)."""
        f = 2 ** (self.top - self.stage)
        if f == 1 and self.alpha >= 1.0:
            return x

        def at(factor: int) -> Tensor:
            return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")

        out = at(f) if f > 1 else x
        if self.alpha < 1.0:
            out = torch.lerp(at(2 * f), out, self.alpha)
        return out

    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        if batch is not None and batch.get("x") is not None:
            batch = {**batch, "x": self.level_of_detail(batch["x"])}
        stats = super().accumulate_gradients(phase, batch, batch_size)
        if phase == "G":  # logged with G's statistics: the resolution and fade weight this step trained
            device = stats["g_loss"].device
            stats["resolution"] = torch.tensor(float(min(self.G.h0, self.G.w0) * 2 ** self.stage), device=device)
            stats["alpha"] = torch.tensor(self.alpha, device=device)
        return stats

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"images": self.images, "stage": self.stage, "alpha": self.alpha}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.images = int(state["images"])
        self._set(int(state["stage"]), float(state["alpha"]))
        self._key = (self.stage, self.alpha < 1.0)

