"""The training loop: phases in order, callbacks after. It names no loss.

One iteration = for each phase due at this generator step: ``repeats`` times
[draw a real batch if needed → zero grads → objective.accumulate_gradients → optimiser step].
Statistics stay on the device and are read once per ``log_every`` steps.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from ..config import Config
from ..data import Dataset, EpochSampler, load_dataset
from ..nets import NETWORKS
from ..utils import seed_everything
from .distributed import ShardedNoise, convert_sync_batchnorm, has_batchnorm, rank_seed
from .distributed import setup as setup_distributed
from .ema import EMA, standing_noise
from .objective import OBJECTIVES, Phase
from .precision import autocast_factory, resolve_precision
from .schedules import SCHEDULES


def build_optimizer(params, cfg) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        params = list(params)
        # One fused kernel per parameter on CPU and CUDA (DCGAN G+D step: 0.29 ms against 0.85 ms
        # for foreach on this CPU, whose foreach ops loop over tensors); foreach elsewhere.
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
        kw = {"fused": True} if fused else {"foreach": True}
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **kw)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.betas[0], weight_decay=cfg.weight_decay)


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """``opt.load_state_dict(state)``, then each per-parameter tensor (Adam's moments) laid out in
    memory like its parameter. Checkpoints store tensors contiguous, and a fused optimiser pairs
    elements by memory position, so a channels_last parameter with NCHW moments would be updated
    with another element's moments."""
    opt.load_state_dict(state)
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


@dataclass
class State:
    """Everything that changes while training, beside network and optimiser tensors."""

    step: int = 0                  # generator updates done
    seconds: float = 0.0           # training wall time so far (excludes set-up)
    best_score: Optional[float] = None
    best_step: Optional[int] = None


class Trainer:
    """Builds every part from a :class:`Config` and runs the phases; see :func:`gankit.train`."""

    def __init__(self, cfg: Config, data: Optional[Dataset] = None):
        self.cfg = cfg
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        seed_everything(cfg.seed)  # the same on every rank: identical initial weights
        self.dist = setup_distributed(cfg)  # rank, world size, device; a single-process Dist outside torchrun
        self.device = self.dist.device
        self.precision = resolve_precision(t.precision, self.device)
        self.data = (data if data is not None else load_dataset(cfg.data, "train", seed=cfg.seed)).to(self.device)
        if cfg.model.conditional and self.data.y is None:
            from ..errors import ConfigError
            raise ConfigError(f"model.conditional: dataset {cfg.data.name!r} has no labels")
        self.num_classes = self.data.num_classes if cfg.model.conditional else 0
        family = NETWORKS.get(cfg.model.arch)
        G, D = family.build(cfg.model.z_dim, self.data.sample_shape, self.num_classes,
                            dict(cfg.model.g), dict(cfg.model.d))
        if self.dist.enabled and t.sync_batchnorm:
            G, D = convert_sync_batchnorm(G), convert_sync_batchnorm(D)
        elif self.dist.enabled and self.dist.is_main and (has_batchnorm(G) or has_batchnorm(D)):
            print(f"note: BatchNorm normalises with each process's shard ({t.batch_size // self.dist.world_size} "
                  "samples); set train.sync_batchnorm=true for the global batch's statistics", flush=True)
        self.G, self.D = G.to(self.device), D.to(self.device)
        # NHWC lets oneDNN/cuDNN pick their fastest conv kernels; a no-op for MLPs and vectors.
        self.channels_last = t.channels_last if t.channels_last is not None else self.data.kind == "image"
        if self.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.dist.broadcast_module(self.G)
        self.dist.broadcast_module(self.D)
        self.ema = EMA(self.G, t.ema) if t.ema else None  # an uncompiled copy: sampling never waits for a compile
        if t.compile:
            # In place: parameter names (and so checkpoints) stay those of the plain modules.
            self.G.compile()
            self.D.compile()
        self.g_opt = build_optimizer(self.G.parameters(), t.g_optim)
        self.d_opt = build_optimizer(self.D.parameters(), t.d_optim)
        objective_cls = OBJECTIVES.get(cfg.loss.objective)  # a new variant is a new registered class
        self.objective = objective_cls(self.G, self.D, cfg.loss, cfg.model.z_dim, self.num_classes,
                                       autocast=autocast_factory(self.precision, self.device))
        self.phases: List[Phase] = self.objective.build_phases(self.g_opt, self.d_opt, t.d_steps)
        # fp16 (CUDA without bf16): one loss scaler per phase, so D's and G's scales adapt apart.
        self.scalers = ({p.name: torch.amp.GradScaler(self.device.type) for p in self.phases}
                        if self.precision == "fp16" else {})
        if t.batch_size % self.dist.world_size:
            from ..errors import ConfigError
            raise ConfigError(f"train.batch_size={t.batch_size}: the global batch must split evenly over "
                              f"the {self.dist.world_size} processes")
        # One global permutation and one global noise stream; each rank draws its slice of both.
        self.sampler = EpochSampler(len(self.data), t.batch_size, seed=cfg.seed,
                                    rank=self.dist.rank, world_size=self.dist.world_size)
        self.noise = ShardedNoise(cfg.model.z_dim, cfg.seed + 2, self.dist.rank, self.dist.world_size)
        self.objective.noise_source = self.noise
        # Fixed noise (and labels) for the sample grids, so a user watches the same z's evolve.
        # Vector data is shown as a scatter plot, which needs more points than an image grid.
        n_fixed = t.num_samples if self.data.kind == "image" else max(t.num_samples, 1000)
        g = torch.Generator().manual_seed(cfg.seed + 1)
        self.fixed_z = torch.randn(n_fixed, cfg.model.z_dim, generator=g).to(self.device)
        self.fixed_y = (torch.arange(n_fixed) % self.num_classes).to(self.device) if self.num_classes else None
        # Noise on which the EMA generator's BatchNorm statistics are re-estimated (see EMA.refresh_batchnorm).
        self._standing_noise = standing_noise(cfg.model.z_dim, self.num_classes, self.device, cfg.seed + 3)
        self.state = State()
        self.total_steps = self._total_steps()
        self.schedule = SCHEDULES.get(t.lr_schedule)
        self.lr_scale = 1.0       # set by rollbacks (health policy); multiplies the schedule
        self.lr_mult = 1.0        # the multiplier of the configured learning rates now in the optimisers
        self.sample_every = t.sample_every or max(1, round(self.sampler.batches_per_epoch / t.d_steps))
        self._sums: Dict[str, torch.Tensor] = {}
        self._counts: Dict[str, int] = defaultdict(int)
        # Set by a health monitor: steps that end on a log boundary also measure gradient norms.
        self.grad_norms = False
        self._time_up = False  # torchrun with train.minutes: rank 0's verdict, see train_step
        if self.dist.rank:  # other randomness (augmentation, GP mixing, dropout) is each rank's own
            seed_everything(rank_seed(cfg.seed, self.dist.rank))

    # -- budget -------------------------------------------------------------------------
    def _total_steps(self) -> Optional[int]:
        t = self.cfg.train
        if t.steps is not None:
            return t.steps
        if t.epochs is not None:
            return max(1, math.ceil(t.epochs * self.sampler.batches_per_epoch / t.d_steps))
        return None  # bounded by minutes only

    def done(self) -> bool:
        t = self.cfg.train
        if self.total_steps is not None and self.state.step >= self.total_steps:
            return True
        if t.minutes is None:
            return False
        if self.dist.enabled:  # rank 0's clock, agreed on at the start of each step (done() never communicates)
            return self._time_up
        return self.state.seconds >= t.minutes * 60

    def progress(self, seconds: Optional[float] = None) -> float:
        """Fraction of the budget spent, in [0, 1]: the further along of steps and wall time."""
        t = self.cfg.train
        fraction = self.state.step / self.total_steps if self.total_steps else 0.0
        if t.minutes is not None:
            fraction = max(fraction, (self.state.seconds if seconds is None else seconds) / (t.minutes * 60))
        return min(1.0, fraction)

    def _apply_lr(self, progress: float) -> None:
        t = self.cfg.train
        mult = self.lr_scale * self.schedule(progress, t.lr_decay_start, t.lr_final)
        if mult == self.lr_mult:
            return
        for opt, o in ((self.g_opt, t.g_optim), (self.d_opt, t.d_optim)):
            for group in opt.param_groups:
                group["lr"] = o.lr * mult
        self.lr_mult = mult

    @property
    def epoch(self) -> float:
        return self.sampler.epoch + self.sampler.position / max(1, self.sampler.n)

    # -- one generator step ---------------------------------------------------------------
    def train_step(self) -> None:
        step = self.state.step
        norms_due = self.grad_norms and self._log_due(step + 1)
        seconds = self.state.seconds
        if self.dist.enabled and self.cfg.train.minutes is not None:  # wall time differs between processes
            seconds = float(self.dist.broadcast_json(seconds))  # rank 0's clock decides time and schedule
            self._time_up = seconds >= self.cfg.train.minutes * 60
        self._apply_lr(self.progress(seconds))
        for phase in self.phases:
            if step % phase.every:
                continue
            phase.module.requires_grad_(True)
            for m in phase.frozen:
                m.requires_grad_(False)
            for _ in range(phase.repeats):
                real = y = None
                if phase.needs_data:
                    real, y = self.data.batch(self.sampler.next())
                    if self.channels_last and real.ndim == 4:
                        real = real.contiguous(memory_format=torch.channels_last)
                phase.optimizer.zero_grad(set_to_none=True)
                scaler = self.scalers.get(phase.name)
                self.objective.loss_scale = scaler.scale if scaler is not None else None
                stats = self.objective.accumulate_gradients(phase.name, real, y, self.sampler.local_batch_size)
                if scaler is not None:
                    scaler.unscale_(phase.optimizer)  # true gradients for averaging, norms and the step
                self.dist.average_gradients(phase.module)  # the global batch's gradient on every rank
                if norms_due:
                    stats = {**stats, **self.grad_norm_stats(phase)}
                if scaler is not None:
                    scaler.step(phase.optimizer)  # skipped when the gradients overflowed
                    scaler.update()
                else:
                    phase.optimizer.step()
                self.objective.after_step(phase.name)
                self._accumulate(stats)
        if self.ema is not None:
            self.ema.update(self.G, self.ema_decay(step))
        self.state.step += 1

    def ema_decay(self, step: int) -> float:
        """β of the EMA update after G-step ``step`` (0-based): 0 (copy G) before ``ema_start``; with
        ``ema_rampup`` r, the half-life is min(ln ½ / ln train.ema, r · steps done) steps (Karras et al.
        2020, ADA's ema_rampup counted in steps); else train.ema."""
        t = self.cfg.train
        if step < t.ema_start:
            return 0.0
        if t.ema_rampup is None:
            return t.ema
        half_life = t.ema_rampup * (step + 1 - t.ema_start)
        return min(t.ema, 0.5 ** (1.0 / half_life))

    def _accumulate(self, stats: Dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            if k in self._sums:
                self._sums[k] += v.float()
            else:
                self._sums[k] = v.float().clone()
            self._counts[k] += 1

    def _log_due(self, step: int) -> bool:
        return step % self.cfg.train.log_every == 0 or (self.total_steps is not None and step >= self.total_steps)

    @staticmethod
    def grad_norm_stats(phase: Phase) -> Dict[str, torch.Tensor]:
        """L2 norms of the gradients ``phase`` just accumulated, on the device (no host sync):
        ``grad/<phase>`` over all parameters and ``grad/<phase>/<layer>`` per module that owns
        parameters, input side first."""
        named = [(n, p.grad) for n, p in phase.module.named_parameters() if p.grad is not None]
        if not named:
            return {}
        norms = [n.float() for n in torch._foreach_norm([g for _, g in named])]
        layers: Dict[str, List[torch.Tensor]] = {}
        for (name, _), norm in zip(named, norms):
            layers.setdefault(name.rpartition(".")[0], []).append(norm)
        key = f"grad/{phase.name}"
        out = {key: torch.stack(norms).norm()}
        out.update({f"{key}/{layer}": torch.stack(ns).norm() for layer, ns in layers.items()})
        return out

    def pop_stats(self) -> Dict[str, float]:
        """Means since the last call, read from the device in one transfer."""
        if not self._sums and not self.dist.enabled:  # under torchrun every rank takes part, even with nothing
            return {}
        out = self.dist.mean_stats(self._sums, self._counts)  # averaged over ranks; the one host sync
        self._sums.clear()
        self._counts.clear()
        return out

    # -- sampling for grids and the API -------------------------------------------------------
    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The EMA of G when the run keeps one (BatchNorm statistics re-estimated for its weights), else G."""
        if self.ema is None:
            return self.G
        self.ema.refresh_batchnorm(self._standing_noise)
        return self.ema.module

    @torch.no_grad()
    def fixed_samples(self) -> torch.Tensor:
        G = self.sampling_generator
        was_training = G.training
        G.eval()
        x = G(self.fixed_z, self.fixed_y).float()
        G.train(was_training)
        return x.cpu()

    # -- state for checkpoints ------------------------------------------------------------------
    def modules(self) -> Dict[str, torch.nn.Module]:
        mods = {"G": self.G, "D": self.D}
        if self.ema is not None:
            mods["G_ema"] = self.sampling_generator
        return mods

    def state_dict(self) -> dict:
        from .checkpoint import rng_state

        return {
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {"G": self.g_opt.state_dict(), "D": self.d_opt.state_dict()},
            "sampler": self.sampler.state_dict(),
            "noise": self.noise.state_dict(),
            "rng": rng_state(),
            "trainer": {"step": self.state.step, "seconds": self.state.seconds,
                        "best_score": self.state.best_score, "best_step": self.state.best_step,
                        "lr_scale": self.lr_scale},
            "fixed_z": self.fixed_z,
        }

    def load_state_dict(self, state: dict) -> None:
        from .checkpoint import set_rng_state

        for k, m in self.modules().items():
            m.load_state_dict(state["modules"][k])
        load_optimizer_state(self.g_opt, state["optimizers"]["G"])
        load_optimizer_state(self.d_opt, state["optimizers"]["D"])
        self.sampler.load_state_dict(state["sampler"])
        if "noise" in state:  # absent from checkpoints written before distributed training
            self.noise.load_state_dict(state["noise"])
        set_rng_state(state["rng"])  # rank 0's; other ranks continue from their own seed below
        tr = state["trainer"]
        self.state.step = int(tr["step"])
        self.state.seconds = float(tr["seconds"])
        self.state.best_score = tr["best_score"]
        self.state.best_step = tr["best_step"]
        self.lr_scale = float(tr.get("lr_scale", 1.0))  # absent before learning-rate schedules
        self.lr_mult = float("nan")  # the next step sets the learning rates (resume may change train.*_optim.lr)
        self.fixed_z = state["fixed_z"].to(self.device)
        if self.dist.rank:
            seed_everything(rank_seed(self.cfg.seed, self.dist.rank, self.state.step))

    def sync_from_main(self) -> None:
        """Under torchrun, after rank 0 changed its state alone (a rollback its callbacks asked for):
        every rank takes rank 0's networks, optimisers, data position and step."""
        state = self.dist.broadcast_state(self.state_dict() if self.dist.is_main else None)
        if not self.dist.is_main:
            self.load_state_dict(state)
            self._sums.clear()
            self._counts.clear()

    def rollback(self, state: dict, lr_scale: float = 1.0) -> None:
        """Return networks, optimisers, data position and step to ``state`` (a :meth:`state_dict`)
        with every learning rate at ``lr_scale`` × its configured (scheduled) value. Wall time, the best score
        and the RNG keep going forward: training continues from there rather than replaying."""
        from .checkpoint import rng_state, set_rng_state

        keep = (self.state.seconds, self.state.best_score, self.state.best_step, rng_state(), self.noise.state_dict())
        self.load_state_dict(state)
        self.state.seconds, self.state.best_score, self.state.best_step, rng, noise = keep
        set_rng_state(rng)
        self.noise.load_state_dict(noise)
        self.lr_scale = lr_scale
        self._apply_lr(self.progress())
        self._sums.clear()
        self._counts.clear()
