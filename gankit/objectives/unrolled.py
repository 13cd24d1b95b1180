"""Unrolled GAN (Metz et al. 2017): G's loss is taken against D after k of D's own updates.

f_K(θ_G, θ_D) = f(θ_G, θ_D^K) with θ_D^{k+1} = θ_D^k + η·update(∂f/∂θ_D^k) (Eq. 5-6); G's
gradient goes through the k updates (the second-order term of Eq. 7 included), so G
is pushed away from samples that D would learn to reject next — the mechanism that
spreads G over modes. D's real step is untouched: the unrolled parameters are thrown
away after G's step. k = 0 is the plain objective.

As in the reference notebook (Poole & Metz), every unrolled step uses the same real
and fake batch, and applies D's own optimiser (Adam, RMSprop or SGD, with its current
moment estimates) written as a differentiable function, followed by WGAN's weight clipping
when ``loss.clip_d_weights`` is set, so the unrolled steps are the ones D would take — but
for the regularisers: a look-ahead step differentiates the adversarial loss only, not an
eager ``loss.regularizers`` penalty (that would be a third derivative through D), and no
lazy regulariser phase is unrolled. D is called functionally (``torch.func.functional_call``) on
detached copies of its parameters; its buffers are copied so BatchNorm statistics and
spectral-norm vectors do not move during unrolling.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor
from torch.func import functional_call

from ..errors import ConfigError
from ..nets.batchnorm import mean_across_ranks
from .base import Phase, register_objective
from .gan import GANObjective


@register_objective("unrolled")
class UnrolledObjective(GANObjective):
    capturable = False  # the unrolled steps read D's optimiser settings (Python numbers) at every step
    relativistic_losses = False  # its G step looks ahead through D's unrolled updates with g(fake)

    @classmethod
    def extra_work(cls, cfg, options) -> List[str]:
        k = cfg.loss.unroll_steps
        return [f"{k} unrolled D updates differentiated through in G's step"] if k else []

    def __init__(self, nets, cfg, data, **kwargs):
        super().__init__(nets, cfg, data, **kwargs)
        self.k = cfg.loss.unroll_steps
        # D's optimiser, whose update the unrolled steps apply; set by the Trainer (attach_optimizers).
        self.d_opt: Optional[torch.optim.Optimizer] = None

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        if cfg.train.compile:
            raise ConfigError("train.compile: invalid value; allowed: false for this recipe: torch.compile does "
                              "not support the double backward of the unrolled objective")

    def attach_optimizers(self, optimizers: Dict[str, torch.optim.Optimizer]) -> None:
        self.d_opt = optimizers["D"]

    def phases(self, d_steps: int) -> List[Phase]:
        phases = super().phases(d_steps)
        for p in phases:
            if p.name == "G":
                p.needs_data = self.k > 0  # the unrolled D updates train on a real batch
        return phases

    def _g_step(self, n: int, device, batch=None) -> Dict[str, Tensor]:
        real = batch["x"] if batch is not None else None
        y_real = batch.get("y") if batch is not None else None
        if self.reuse_fake and self._cached is not None:
            fake, y = self._cached
            self._cached = None
        else:
            fake, y = self.generate(n, device, y_real if self.num_classes else None)
        params = {k: p.detach().requires_grad_(True) for k, p in self.D.named_parameters()}
        buffers = {k: b.clone() for k, b in self.D.named_buffers()}

        def d(x: Tensor, labels: Optional[Tensor], ps: Dict[str, Tensor]) -> Tensor:
            return functional_call(self.D, (ps, buffers), (self.augment(x), labels)).float()

        update = _OptimizerUpdate(self.d_opt, self.D)
        for _ in range(self.k):
            with self.autocast():
                d_loss = self.loss.d(d(real, y_real, params), d(fake, y, params))
            names = list(params)
            grads = torch.autograd.grad(d_loss, [params[k] for k in names], create_graph=True)
            grads = mean_across_ranks(grads)  # torchrun: D's global-batch gradient, differentiably (identity otherwise)
            params = update(params, dict(zip(names, grads)))
            if self.clip is not None:  # WGAN's clipping, as after D's real steps (zero gradient where it clips)
                params = {k: v.clamp(-self.clip, self.clip) for k, v in params.items()}
        with self.autocast():
            loss = self.loss.g(d(fake, y, params))
        self.backward(loss)
        return {"g_loss": loss.detach()}


class _OptimizerUpdate:
    """One step of D's optimiser as a differentiable map params -> params (no in-place updates).

    Starts from the optimiser's current state (moments, step count) and carries its own copy
    forward across the unrolled steps. The Adam/RMSprop square root is taken of v + ε²
    rather than v so its derivative stays finite where a gradient is exactly zero.
    """

    def __init__(self, opt: Optional[torch.optim.Optimizer], module: torch.nn.Module):
        if opt is None:
            raise RuntimeError("UnrolledObjective.attach_optimizers must run before the first G step")
        self.kind = type(opt).__name__.lower()
        if self.kind not in ("adam", "rmsprop", "sgd"):
            raise NotImplementedError(f"unrolling {type(opt).__name__} is not implemented (adam, rmsprop, sgd)")
        self.group = opt.param_groups[0]
        self.state = {}
        for name, p in module.named_parameters():
            st = opt.state.get(p, {})
            self.state[name] = {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in st.items()}

    def __call__(self, params: Dict[str, Tensor], grads: Dict[str, Tensor]) -> Dict[str, Tensor]:
        g_cfg, out = self.group, {}
        lr, wd = g_cfg["lr"], g_cfg.get("weight_decay", 0.0)
        for name, p in params.items():
            g = grads[name] + wd * p if wd else grads[name]
            st = self.state[name]
            if self.kind == "adam":
                b1, b2 = g_cfg["betas"]
                eps = g_cfg["eps"]
                t = float(st.get("step", 0)) + 1
                m = b1 * st.get("exp_avg", torch.zeros_like(p)) + (1 - b1) * g
                v = b2 * st.get("exp_avg_sq", torch.zeros_like(p)) + (1 - b2) * g * g
                st.update(step=t, exp_avg=m, exp_avg_sq=v)
                step = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t) + eps * eps).sqrt() + eps)
            elif self.kind == "rmsprop":
                alpha, eps = g_cfg["alpha"], g_cfg["eps"]
                v = alpha * st.get("square_avg", torch.zeros_like(p)) + (1 - alpha) * g * g
                st["square_avg"] = v
                step = g / ((v + eps * eps).sqrt() + eps)
                mom = g_cfg.get("momentum", 0.0)
                if mom:  # torch's RMSprop: buf = momentum · buf + g / (√v + ε), from a zero buffer
                    step = mom * st.get("momentum_buffer", torch.zeros_like(p)) + step
                    st["momentum_buffer"] = step
            else:
                mom = g_cfg.get("momentum", 0.0)
                if mom:
                    buf = st.get("momentum_buffer")
                    step = g if buf is None else mom * buf + g
                    st["momentum_buffer"] = step
                else:
                    step = g
            out[name] = p - lr * step
        return out
