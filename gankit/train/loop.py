"""The training loop: phases over named networks, callbacks after. It names no loss and no network.

The objective (:mod:`gankit.objectives`) declares the networks, optimisers, EMAs, phases and
task; the loop builds and steps them. One iteration = for each phase due at this generator
step: ``repeats`` times [draw a batch (a dict of fields) if needed → zero grads →
objective.accumulate_gradients → average gradients over ranks → optimiser step].
Statistics stay on the device and are read once per ``log_every`` steps.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from ..checkpoint import rng_state, set_rng_state
from ..config import Config, OptimConfig
from ..data import EpochSampler, load_dataset
from ..errors import CheckpointError, ConfigError
from ..nets.batchnorm import convert_sync_batchnorm, has_batchnorm
from ..nets.equalized import runtime_scales
from ..objectives import OBJECTIVES, DataInfo, Phase
from ..objectives.base import check_declaration
from ..utils import device_name, seed_everything
from .distributed import ShardedNoise, rank_seed, reseed
from .distributed import setup as setup_distributed
from .ema import EMA
from .graphs import (DeviceDraws, StepGraphs, graphs_mode, plain_optimizer_state, set_learning_rate,
                     tensor_learning_rates, why_not)
from .precision import autocast_factory, precision_reason, resolve_precision
from .schedules import SCHEDULES


def make_optimizer(params, cfg, capturable: bool = False) -> torch.optim.Optimizer:
    """``capturable``: Adam whose step (state and learning rate on the device) a CUDA graph can replay."""
    if cfg.name == "adam":
        params = list(params)
        # One fused kernel per parameter on CPU and CUDA (DCGAN G+D step: 0.29 ms against 0.85 ms
        # for foreach on this CPU, whose foreach ops loop over tensors); foreach elsewhere.
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
        kw = {"fused": True} if fused else {"foreach": True}
        if capturable:
            kw["capturable"] = True
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **kw)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # Plain SGD unless train.*_optim.momentum is set (Goodfellow et al. 2014 used 0.5 rising to 0.7).
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def restore_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """``opt.load_state_dict(state)``, then each per-parameter tensor (Adam's moments) laid out in
    memory like its parameter. Checkpoints store tensors contiguous, and a fused optimiser pairs
    elements by memory position, so a channels_last parameter with NCHW moments would be updated
    with another element's moments. The settings stay this run's, whatever run wrote the
    checkpoint: how it steps (fused, capturable, a tensor learning rate on the device) and its
    hyperparameters (betas, weight decay, ...; a changed ``--set`` on ``--resume`` takes
    effect, and so does a lazy-regularisation correction); the learning rate is set again by the
    next step's schedule."""
    own = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, keep in zip(opt.param_groups, own):
        group.update(keep)
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def check_bf16(precision: str, device: torch.device) -> None:
    """Refuses bf16 on a CUDA GPU without native bf16 (before Ampere), where PyTorch would emulate
    it slowly or fail inside a kernel; ``auto`` never picks it there."""
    if precision != "bf16" or device.type != "cuda":
        return
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # PyTorch before 2.4 has no emulation to leave out
        native = torch.cuda.is_bf16_supported()
    if not native:
        raise ConfigError(f"train.precision=bf16: this GPU ({torch.cuda.get_device_name(device)}) has no native "
                          "bf16; set train.precision to auto or fp32 (or fp16)")


@dataclass
class State:
    """Everything that changes while training, beside network and optimiser tensors."""

    step: int = 0                  # generator updates done
    seconds: float = 0.0           # training wall time so far (excludes set-up)
    best_score: Optional[float] = None
    best_step: Optional[int] = None


def optim_config(cfg: Config, name: str, short: str) -> OptimConfig:
    """Settings of optimiser ``name``: ``train.optim.<name>``, else its short form ``train.<short>``."""
    return cfg.train.optim.get(name) or getattr(cfg.train, short)


def checkpoint_optimizer_kind(state: dict, name: str, short: str) -> Optional[str]:
    """The kind (adam, rmsprop, sgd) of optimiser ``name`` in the run whose checkpoint is ``state``, from
    the config it stores (None when it stores none)."""
    train = (state.get("config") or {}).get("train")
    if train is None:
        return None
    o = (train.get("optim") or {}).get(name) or train.get(short) or {}
    return o.get("name", OptimConfig.name)


def lazy_ratio(phases: List[Phase], optimizer: str) -> float:
    """c = the regular steps of ``optimizer`` / all its steps, per generator step: the other phases against
    those too that are lazy regularisers (``Phase.lazy``: every N steps). StyleGAN2 (App. B) runs an
    optimiser with such a phase at lr × c and betas ** c; R1 every 16 D steps gives c = 16/17."""
    regular = sum(p.repeats / p.every for p in phases if p.optimizer == optimizer and not p.lazy)
    lazy = sum(p.repeats / p.every for p in phases if p.optimizer == optimizer and p.lazy)
    return regular / (regular + lazy) if lazy and regular else 1.0


def lazy_corrected(o: OptimConfig, c: float) -> OptimConfig:
    """``o`` at lr × c, Adam's betas ** c (RMSprop and SGD: the learning rate only)."""
    if c == 1.0:
        return o
    betas = tuple(b ** c for b in o.betas) if o.name == "adam" else o.betas
    return dataclasses.replace(o, lr=o.lr * c, betas=betas)


class Trainer:
    """Builds every part from a :class:`Config` and runs the phases; see :func:`gankit.train`."""

    def __init__(self, cfg: Config, data=None):
        self.cfg = cfg
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        seed_everything(cfg.seed)  # the same on every rank: identical initial weights
        self.dist = setup_distributed(cfg)  # rank, world size, device; a single-process Dist outside torchrun
        self.device = self.dist.device
        self.precision = resolve_precision(t.precision, self.device)
        check_bf16(self.precision, self.device)
        if self.device.type == "cuda" and not torch.backends.cudnn.deterministic:
            # Shapes never change during training: let cuDNN time its algorithms once per shape
            # (unless the user asked for deterministic algorithms, which benchmarking would vary).
            torch.backends.cudnn.benchmark = True
        self.data = (data if data is not None else load_dataset(cfg.data, "train", seed=cfg.seed)).to(self.device)
        self.info = DataInfo.of(self.data, cfg.model.conditional)
        self.num_classes = self.info.num_classes
        objective_cls = OBJECTIVES.get(cfg.loss.objective)  # a new model is a new registered class
        nets = objective_cls.build_networks(cfg, self.info)
        if self.dist.enabled and t.sync_batchnorm:
            nets = {k: convert_sync_batchnorm(m) for k, m in nets.items()}
        elif self.dist.enabled and self.dist.is_main and any(has_batchnorm(m) for m in nets.values()):
            print(f"note: BatchNorm normalises with each process's shard ({t.batch_size // self.dist.world_size} "
                  "samples); set train.sync_batchnorm=true for the global batch's statistics", flush=True)
        # NHWC lets oneDNN/cuDNN pick their fastest conv kernels; a no-op for MLPs and vectors.
        self.channels_last = t.channels_last if t.channels_last is not None else self.info.kind != "vector"
        for m in nets.values():
            m.to(self.device)
            if self.channels_last:
                m.to(memory_format=torch.channels_last)
            self.dist.broadcast_module(m)
        self.nets: Dict[str, torch.nn.Module] = nets
        self.objective = objective_cls(nets, cfg, self.info, autocast=autocast_factory(self.precision, self.device))
        check_declaration(self.objective)
        unknown = sorted(set(cfg.model.nets) - set(nets))
        if unknown:  # settings that would configure nothing, yet sit in the run's config as if they had
            raise ConfigError(f"model.nets.{unknown[0]}: objective {cfg.loss.objective!r} has no network of that name; "
                              f"its networks: {', '.join(nets)}")
        self.task = self.objective.task
        self.objective.prepare()
        # Uncompiled copies: sampling never waits for a compile.
        self.emas: Dict[str, EMA] = {k: EMA(nets[k], t.ema) for k in self.objective.ema} if t.ema else {}
        if t.compile:
            for m in nets.values():  # in place: parameter names (and so checkpoints) stay those of the plain modules
                m.compile()
        self.optim_cfgs: Dict[str, OptimConfig] = {name: optim_config(cfg, name, group.short)
                                                   for name, group in self.objective.optimizers.items()}
        unknown = sorted(set(t.optim) - set(self.optim_cfgs))
        if unknown:
            raise ConfigError(f"train.optim.{unknown[0]}: objective {cfg.loss.objective!r} has no optimiser of that "
                              f"name; its optimisers: {', '.join(self.optim_cfgs)}")
        self.phases: List[Phase] = self.objective.phases(t.d_steps)
        if t.lazy_correction:
            self.optim_cfgs = {k: lazy_corrected(o, lazy_ratio(self.phases, k)) for k, o in self.optim_cfgs.items()}
        if t.batch_size % self.dist.world_size:
            raise ConfigError(f"train.batch_size={t.batch_size}: the global batch must split evenly over "
                              f"the {self.dist.world_size} processes")
        # One global permutation per index space of the data (unpaired data: one per domain, each
        # with its own seed); each rank draws its slice of every batch.
        sizes = getattr(self.data, "index_sizes", None) or {"x": len(self.data)}
        for k, n in sizes.items():
            if n == 0:
                checks = ["data.root", "data.limit", "data.exclude_classes"] + (
                    [f"data.subset_fraction={cfg.data.subset_fraction:g}"] if cfg.data.subset_fraction is not None else [])
                raise ConfigError(f"data: the training data ({cfg.data.name}) is empty; check "
                                  f"{', '.join(checks[:-1])} and {checks[-1]}")
            if t.batch_size > n:  # a user's folder of a few images against a recipe's batch of 128
                where = f"{cfg.data.name}" + (f", domain {k}" if len(sizes) > 1 else "")
                raise ConfigError(f"train.batch_size={t.batch_size}: the training data ({where}) has only {n} "
                                  f"samples; set train.batch_size to {n} or less, or give more data")
        self.samplers = {k: EpochSampler(n, t.batch_size, seed=cfg.seed + i * SAMPLER_SEED_STRIDE,
                                         rank=self.dist.rank, world_size=self.dist.world_size)
                         for i, (k, n) in enumerate(sizes.items())}
        self.sampler = next(iter(self.samplers.values()))  # the first space counts epochs
        # On a GPU the data sits there as one tensor and batches are drawn by index there: no copy
        # from the host per step (and a draw a CUDA graph can replay).
        self.draws: Optional[Dict[str, DeviceDraws]] = None
        if self.device.type == "cuda" and getattr(self.data, "device_indexable", False):
            self.draws = self.device_draws()
        # Noise of noise-driven objectives: one global stream, each rank draws its slice.
        self.noise = None
        if hasattr(self.objective, "noise_source"):
            self.noise = ShardedNoise(cfg.model.z_dim, cfg.seed + SEED_NOISE, self.dist.rank, self.dist.world_size,
                                      device=self.device)
            self.objective.noise_source = self.noise
        # Whole steps as CUDA graphs where they can be captured (gankit/train/graphs.py).
        self.cuda_graphs_off = why_not(self, t.cuda_graphs)  # None = steps are captured
        if self.cuda_graphs_off is not None and graphs_mode(t.cuda_graphs) == "on":
            print(f"note: train.cuda_graphs=on, but {self.cuda_graphs_off}; training eagerly", flush=True)
        capturable = self.cuda_graphs_off is None
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        for name, group in self.objective.optimizers.items():
            params = [p for k in group.nets for p in nets[k].parameters()]
            self.optimizers[name] = make_optimizer(params, self.optim_cfgs[name], capturable=capturable)
            if capturable:
                tensor_learning_rates(self.optimizers[name], self.device)
        self.objective.attach_optimizers(self.optimizers)
        # fp16 (CUDA without bf16): one loss scaler per phase, so each phase's scale adapts on its own.
        self.scalers = ({p.name: torch.amp.GradScaler(self.device.type) for p in self.phases}
                        if self.precision == "fp16" else {})
        self.graphs: Optional[StepGraphs] = None
        if capturable:
            self.graphs = StepGraphs(self.device, [self.noise.generator] if self.noise is not None else [])
        # Fixed inputs for the sample grids, so a user watches the same inputs evolve. Vector data is
        # shown as a scatter plot, which needs more points than an image grid.
        n_fixed = t.num_samples if self.info.kind != "vector" else max(t.num_samples, 1000)
        self.fixed_inputs = self.task.seeded(n_fixed, self.cfg.seed + SEED_GRID, self.data, self.device)
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
        # A signal (SIGINT, SIGTERM) asked this process to stop: its name, else None. Set by the run's
        # signal handler; see ``stopping``.
        self.stop_requested: Optional[str] = None
        self._stop_agreed = False
        # Under torchrun, rank 0 asks for a checkpoint by its clock (train.checkpoint_minutes) at the
        # steps where the ranks agree (train_step), so every rank knows a checkpoint is due after the
        # step and sends rank 0 its unsent statistics (gather_pending).
        self.checkpoint_requested = False
        self._checkpoint_agreed = False
        self._gathered: Optional[dict] = None   # every rank's pending statistics at a step: see gather_pending
        # Rollbacks so far: with the step, they decide the random streams of ranks > 0 (rank_seed).
        self.rollbacks = 0

    @property
    def checkpoint_agreed(self) -> bool:
        """Under torchrun: rank 0's clock asked for a checkpoint after the step just trained (agreed
        by every rank at its start)."""
        return self._checkpoint_agreed

    @property
    def stopping(self) -> bool:
        """Stop after the step just trained: a signal arrived (under torchrun: at any rank before
        this step began, agreed on by all at its start, so every rank stops after the same step)."""
        return self._stop_agreed if self.dist.enabled else self.stop_requested is not None

    def device_draws(self) -> Dict[str, DeviceDraws]:
        """Batch indices drawn on the device, one per index space, each holding the permutations of
        every epoch one step can touch (all phases are due at step 0: the most draws a step makes)."""
        per_step = sum(p.repeats for p in self.phases if p.needs_data)
        return {k: DeviceDraws(s, self.device, per_step) for k, s in self.samplers.items()}

    def standing_inputs(self) -> list:
        """The same inputs at every call, on which an averaged network's BatchNorm statistics are
        re-estimated (8 batches of 256; a private RNG, training's is untouched)."""
        return self.task.standing(self.cfg.seed + SEED_STANDING, self.data, self.device)

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
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                set_learning_rate(group, self.optim_cfgs[name].lr * mult)
        self.lr_mult = mult

    @property
    def epoch(self) -> float:
        return self.sampler.epoch + self.sampler.position / max(1, self.sampler.n)

    def next_batch(self) -> Dict[str, torch.Tensor]:
        """The next training batch: a dict of fields in model range, image fields channels_last."""
        if self.draws is not None:  # indices drawn on the GPU (the host samplers moved on in train_step)
            index = {k: d.next() for k, d in self.draws.items()}
        else:
            index = {k: s.next() for k, s in self.samplers.items()}
        batch = self.data.batch(index[next(iter(index))] if len(index) == 1 else index)
        if self.channels_last:
            batch = {k: (v.contiguous(memory_format=torch.channels_last) if v is not None and v.ndim == 4 else v)
                     for k, v in batch.items()}
        return batch

    # -- one generator step ---------------------------------------------------------------
    def train_step(self) -> None:
        step = self.state.step
        norms_due = self.grad_norms and self._log_due(step + 1)
        seconds = self.state.seconds
        self._checkpoint_agreed = False
        if self.dist.enabled and (self.cfg.train.minutes is not None or step % STOP_AGREE_EVERY == 0):
            # One all-reduce at the start of the step: rank 0's clock (wall time differs between
            # processes; it decides the budget and the schedule, so with train.minutes every step),
            # whether any rank was asked to stop, so every rank stops after this same step, and
            # whether rank 0's clock wants a checkpoint after it.
            seconds, self._stop_agreed, self._checkpoint_agreed = self.dist.agree(
                seconds, self.stop_requested is not None, self.checkpoint_requested)
            self._time_up = self.cfg.train.minutes is not None and seconds >= self.cfg.train.minutes * 60
        if self.dist.rank:
            # Each rank > 0 draws its own randomness (augmentation, GP mixing, dropout) from a stream
            # that is a pure function of (seed, rank, step, rollbacks): a resume continues it exactly
            # without any rank's RNG state in rank 0's checkpoint. Rank 0 keeps the single-process stream.
            reseed(rank_seed(self.cfg.seed, self.dist.rank, step, self.rollbacks), self.device)
        progress = self.progress(seconds)
        self._apply_lr(progress)
        self.objective.on_step(step, progress)
        due = [phase for phase in self.phases if step % phase.every == 0]
        # What changes between steps goes to the device before the step's work (a CUDA graph
        # replays that work as captured): data position, EMA decay.
        if self.draws is not None:
            n = sum(phase.repeats for phase in due if phase.needs_data)
            for d in self.draws.values():
                d.advance(n)
        decay = self.ema_decay(step)
        for ema in self.emas.values():
            ema.set_decay(decay)
            # The update below changes the weights; marked here, on the host, because a replayed
            # step runs EMA.apply's kernels but none of its Python.
            ema.stale = ema.has_batchnorm
        body = functools.partial(self._step_work, due, norms_due)
        if self.graphs is not None and self.graphs.active:
            self.graphs.step((tuple(p.name for p in due), norms_due), body, self._accumulate_list)
        else:
            self._accumulate_list(body())
        self.state.step += 1

    def _step_work(self, due: List[Phase], norms_due: bool) -> List[tuple]:
        """The device work of one step (what a CUDA graph captures): each due phase ``repeats``
        times [draw a batch if needed → zero grads → objective.accumulate_gradients → average
        gradients over ranks → optimiser step], then the EMA updates. Returns the statistics as
        (name, 0-dim tensor) pairs, a name once per phase run."""
        out: List[tuple] = []
        for phase in due:
            for name, net in self.nets.items():
                net.requires_grad_(name in phase.nets or name in phase.graph)
            trained = [self.nets[k] for k in phase.nets]
            optimizer = self.optimizers[phase.optimizer]
            for _ in range(phase.repeats):
                batch = self.next_batch() if phase.needs_data else None
                optimizer.zero_grad(set_to_none=True)
                scaler = self.scalers.get(phase.name)
                self.objective.loss_scale = scaler.scale if scaler is not None else None
                stats = self.objective.accumulate_gradients(phase.name, batch, self.sampler.local_batch_size)
                if scaler is not None:
                    scaler.unscale_(optimizer)  # true gradients for averaging, norms and the step
                self.dist.average_gradients(trained)  # the global batch's gradient on every rank
                if norms_due:
                    stats = {**stats, **self.grad_norm_stats(phase)}
                if scaler is not None:
                    scaler.step(optimizer)  # skipped when the gradients overflowed
                    scaler.update()
                else:
                    optimizer.step()
                self.objective.after_step(phase.name)
                out.extend(stats.items())
        for name, ema in self.emas.items():
            ema.apply(self.nets[name])
        return out

    def runtime_info(self) -> dict:
        """Where and how this process trains: device, precision and CUDA graphs, each with why."""
        dev = self.device
        return {"device": str(dev), "device_name": device_name(dev), "torch": torch.__version__,
                "precision": self.precision,
                "precision_reason": precision_reason(self.cfg.train.precision, self.precision, dev),
                "cuda_graphs": self.cuda_graphs,
                "cuda_graphs_off": self.graphs.off if self.graphs is not None else self.cuda_graphs_off,
                "world_size": self.dist.world_size}

    @property
    def cuda_graphs(self) -> bool:
        """Whether steps are being replayed as CUDA graphs (after their warm-up)."""
        return self.graphs is not None and self.graphs.active

    def stop_graphs(self, reason: str) -> None:
        """Train eagerly from now on, saying why once (a health remedy changed the step on the host)."""
        if self.graphs is not None:
            self.graphs.stop(reason)

    def ema_decay(self, step: int) -> float:
        """β of the EMA update after G-step ``step`` (0-based): 0 (copy the network) before ``ema_start``;
        with ``ema_rampup`` r, the half-life is min(ln ½ / ln train.ema, r · steps done) steps (Karras et al.
        2020, ADA's ema_rampup counted in steps); else train.ema."""
        t = self.cfg.train
        if t.ema is None:            # no EMA kept (a recipe's ema_rampup with train.ema=null): nothing to set
            return 0.0
        if step < t.ema_start:
            return 0.0
        if t.ema_rampup is None:
            return t.ema
        half_life = t.ema_rampup * (step + 1 - t.ema_start)
        return min(t.ema, 0.5 ** (1.0 / half_life))

    def _accumulate_list(self, stats: List[tuple]) -> None:
        for k, v in stats:
            if k in self._sums:
                self._sums[k] += v.float()
            else:
                self._sums[k] = v.float().clone()
            self._counts[k] += 1

    def _log_due(self, step: int) -> bool:
        return step % self.cfg.train.log_every == 0 or (self.total_steps is not None and step >= self.total_steps)

    def grad_norm_stats(self, phase: Phase) -> Dict[str, torch.Tensor]:
        """L2 norms of the gradients ``phase`` just accumulated, on the device (no host sync):
        ``grad/<phase>`` over all parameters and ``grad/<phase>/<layer>`` per module that owns
        parameters, input side first (layers prefixed by the network's name when a phase trains several).
        Gradients with respect to the weights the network computes with: a parameter used as c × the
        stored tensor (equalized learning rate) counts ∇p / c."""
        prefix = len(phase.nets) > 1
        scales: Dict[int, float] = {}
        for k in phase.nets:
            scales.update(runtime_scales(self.nets[k]))
        named = [(f"{k}.{n}" if prefix else n, p.grad, scales.get(id(p))) for k in phase.nets
                 for n, p in self.nets[k].named_parameters() if p.grad is not None]
        if not named:
            return {}
        norms = [n.float() if c is None else n.float() / c
                 for (_, _, c), n in zip(named, torch._foreach_norm([g for _, g, _ in named]))]
        layers: Dict[str, List[torch.Tensor]] = {}
        for (name, _, _), norm in zip(named, norms):
            layers.setdefault(name.rpartition(".")[0], []).append(norm)
        key = f"grad/{phase.name}"
        out = {key: torch.stack(norms).norm()}
        out.update({f"{key}/{layer}": torch.stack(ns).norm() for layer, ns in layers.items()})
        return out

    def _fold_graph_stats(self) -> None:
        if self.graphs is not None:
            self.graphs.fold(self._sums, self._counts)

    def pop_stats(self) -> Dict[str, float]:
        """Means since the last call, read from the device in one transfer."""
        self._fold_graph_stats()
        if not self._sums and not self.dist.enabled:  # under torchrun every rank takes part, even with nothing
            return {}
        out = self.dist.mean_stats(self._sums, self._counts)  # averaged over ranks; the one host sync
        self._sums.clear()
        self._counts.clear()
        self._gathered = None
        return out

    # -- sampling for grids and the API -------------------------------------------------------
    def sampling_net(self, name: Optional[str] = None) -> torch.nn.Module:
        """Network ``name`` (the task's by default) for sampling: its EMA when the run keeps one
        (BatchNorm statistics re-estimated for the averaged weights), else the network itself."""
        name = name or self.task.net
        ema = self.emas.get(name)
        if ema is None:
            return self.nets[name]
        ema.refresh_batchnorm(self.standing_inputs, self.task.run)
        return ema.module

    @property
    def sampling_generator(self) -> torch.nn.Module:
        return self.sampling_net()

    @torch.no_grad()
    def fixed_samples(self) -> Dict[str, torch.Tensor]:
        """Outputs for the fixed grid inputs, on the CPU, with the inputs a grid shows beside them:
        ``{"output": ...}`` plus ``"input"`` and ``"target"`` for translation."""
        inputs = {k: v for k, v in self.fixed_inputs.items() if k in ("z", "y", "x")}
        out = {"output": self.task.generate(self.sampling_net(), inputs)}
        if "x" in self.fixed_inputs:
            out["input"] = self.fixed_inputs["x"].float().cpu()
        if "target" in self.fixed_inputs:
            out["target"] = self.fixed_inputs["target"].float().cpu()
        return out

    # -- state for checkpoints ------------------------------------------------------------------
    def modules(self) -> Dict[str, torch.nn.Module]:
        mods = dict(self.nets)
        for name in self.emas:
            mods[f"{name}_ema"] = self.sampling_net(name)
        return mods

    def state_dict(self) -> dict:
        self._fold_graph_stats()
        state = {
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: plain_optimizer_state(opt.state_dict()) for k, opt in self.optimizers.items()},
            "samplers": {k: s.state_dict() for k, s in self.samplers.items()},
            "rng": rng_state(),
            "trainer": {"step": self.state.step, "seconds": self.state.seconds,
                        "best_score": self.state.best_score, "best_step": self.state.best_step,
                        "lr_scale": self.lr_scale, "rollbacks": self.rollbacks,
                        "world_size": self.dist.world_size},
            "objective": self.objective.state_dict(),
            "fixed_inputs": {k: v for k, v in self.fixed_inputs.items() if v is not None},
            # Statistics summed since the last record: a checkpoint between records (by time, on a
            # signal) resumes to the same next record. Rank 0's own as "sums"/"counts"; under torchrun
            # the other ranks' in "ranks" (rank order, rank 0 first), gathered by gather_pending.
            "pending_stats": self._pending_state(),
        }
        if self.noise is not None:
            state["noise"] = self.noise.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        saved = state["modules"]
        for k, m in self.modules().items():
            if k in saved:
                m.load_state_dict(saved[k])
            elif k.removesuffix("_ema") not in self.emas:
                raise CheckpointError(f"this checkpoint has no network {k!r} (it has {', '.join(saved)}); "
                                      "it was written by another objective")
        for k, opt in self.optimizers.items():
            was, now = checkpoint_optimizer_kind(state, k, self.objective.optimizers[k].short), self.optim_cfgs[k].name
            if was not in (None, now):  # a resume that set another kind (adam -> rmsprop): the moments mean nothing to it
                if self.dist.is_main:
                    print(f"note: optimiser {k} is now {now} (was {was}): it starts with fresh state at step "
                          f"{int(state['trainer']['step'])}", flush=True)
                continue
            restore_optimizer_state(opt, state["optimizers"][k])
        samplers = state.get("samplers") or {next(iter(self.samplers)): state["sampler"]}  # v1: one sampler
        for k, s in self.samplers.items():
            if len(samplers[k]["perm"]) != s.n:  # the data changed since (a resumed run says what changed first)
                raise CheckpointError(f"this checkpoint's data held {len(samplers[k]['perm'])} samples"
                                      f"{'' if len(self.samplers) == 1 else f' in {k}'}, the data now {s.n}: restore "
                                      "the data it was trained on, or start a new run")
            s.load_state_dict(samplers[k])
        for d in (self.draws or {}).values():
            d.sync()
        if self.graphs is not None:
            self.graphs.reset()  # new optimiser state tensors: capture again
        if "noise" in state and self.noise is not None:  # absent from checkpoints written before distributed training
            self.noise.load_state_dict(state["noise"])
        set_rng_state(state["rng"])  # rank 0's; ranks > 0 are reseeded at every step (train_step)
        tr = state["trainer"]
        self.state.step = int(tr["step"])
        self.state.seconds = float(tr["seconds"])
        self.state.best_score = tr["best_score"]
        self.state.best_step = tr["best_step"]
        self.lr_scale = float(tr.get("lr_scale", 1.0))  # absent before learning-rate schedules
        self.rollbacks = int(tr.get("rollbacks", 0))
        self.lr_mult = float("nan")  # the next step sets the learning rates (resume may change train.*_optim.lr)
        self.objective.load_state_dict(state.get("objective", {}))
        self._load_pending(state.get("pending_stats", {"sums": {}, "counts": {}}))  # absent before checkpoints by time
        if "fixed_inputs" in state:
            self.fixed_inputs = {k: v.to(self.device) for k, v in state["fixed_inputs"].items()}
            if "z" in self.fixed_inputs:
                self.fixed_inputs.setdefault("y", None)  # None is not stored: an unconditional G
        elif "fixed_z" in state:  # v1
            self.fixed_inputs["z"] = state["fixed_z"].to(self.device)
        self._emas_changed(saved)

    def _emas_changed(self, saved: dict) -> None:
        """A resume whose train.ema differs from the checkpoint's run: an EMA the checkpoint lacks
        starts from its network as resumed (as an EMA starts from its network at step 0), and one
        this run no longer keeps is left behind; each said in one line."""
        for name, ema in self.emas.items():
            if f"{name}_ema" not in saved:
                ema.module.load_state_dict(self.nets[name].state_dict())
                ema.stale = ema.has_batchnorm
                if self.dist.is_main:
                    print(f"note: train.ema={self.cfg.train.ema:g}: the checkpoint kept no EMA of {name}; "
                          f"it starts from {name} as resumed (step {self.state.step})", flush=True)
        dropped = [k for k in saved if k.endswith("_ema") and k.removesuffix("_ema") in self.nets
                   and k.removesuffix("_ema") not in self.emas]
        if dropped and self.dist.is_main:
            print(f"note: train.ema=null: the checkpoint's {', '.join(dropped)} is not kept; samples come from "
                  f"{', '.join(k.removesuffix('_ema') for k in dropped)} itself from now on", flush=True)

    def gather_pending(self) -> None:
        """Under torchrun, before a checkpoint (every rank calls it after the same step): rank 0
        collects every rank's statistics summed since the last record, which its next
        :meth:`state_dict` stores. A collective; a no-op in one process."""
        if not self.dist.enabled:
            return
        self._fold_graph_stats()
        self._gathered = {"step": self.state.step, "ranks": self.dist.gather_stats(self._sums, self._counts)}

    def _pending_state(self) -> dict:
        own = {"sums": dict(self._sums), "counts": dict(self._counts)}
        if not self.dist.enabled:
            return own
        if self._gathered is not None and self._gathered["step"] == self.state.step:
            return {**own, "ranks": self._gathered["ranks"]}
        # Not gathered at this step (a rollback snapshot, `best` at a record): the other ranks' sums
        # are not known; a record step has none, and a rollback clears them.
        return {**own, "ranks": [own] + [{"sums": {}, "counts": {}}] * (self.dist.world_size - 1)}

    def _load_pending(self, pending: dict) -> None:
        """This rank's share of the statistics a checkpoint summed since its last record. The same
        world size: each rank its own sums (the next record is the uninterrupted run's). Another:
        rank 0 takes them all, rescaled so that the steps before the checkpoint weigh as much in the
        next record as the steps after it (each of the W processes now adds one count per step)."""
        ranks = pending.get("ranks") or [pending]  # a single-process checkpoint, or one written before "ranks"
        W = self.dist.world_size
        if len(ranks) == W:
            mine = ranks[self.dist.rank]
            sums, counts = dict(mine["sums"]), {k: int(v) for k, v in mine["counts"].items()}
        elif self.dist.rank:
            sums, counts = {}, {}
        else:
            n = len(ranks)
            sums, counts = {}, {}
            for r in ranks:
                for k, v in r["sums"].items():
                    sums[k] = sums[k] + v.float() if k in sums else v.float().clone()
                    counts[k] = counts.get(k, 0) + int(r["counts"][k])
            sums = {k: v * W / n for k, v in sums.items()}
            counts = {k: c * W / n for k, c in counts.items()}  # n · steps → W · steps (exact)
        self._sums = {k: v.to(self.device) for k, v in sums.items()}
        self._counts = defaultdict(int, counts)
        self._gathered = None

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
        noise = self.noise.state_dict() if self.noise is not None else None
        keep = (self.state.seconds, self.state.best_score, self.state.best_step, rng_state(), self.rollbacks)
        self.load_state_dict(state)
        self.state.seconds, self.state.best_score, self.state.best_step, rng, rollbacks = keep
        set_rng_state(rng)
        self.rollbacks = rollbacks + 1  # ranks > 0 draw new numbers for the steps trained again (rank_seed)
        if noise is not None:
            self.noise.load_state_dict(noise)
        self.lr_scale = lr_scale
        self._apply_lr(self.progress())
        self._sums.clear()
        self._counts.clear()


# Named seed streams, offsets from the run's seed (one place, so no two uses collide).
SEED_GRID = 1                 # the fixed inputs of the sample grids
SEED_NOISE = 2                # the training noise (ShardedNoise)
SEED_STANDING = 3             # inputs on which EMA BatchNorm statistics are re-estimated
SAMPLER_SEED_STRIDE = 1000    # the data sampler of index space i uses seed + i × this

# Under torchrun without train.minutes, ranks agree on stop requests (signals) every this many
# steps: one all-reduce costs ~0.3 ms on gloo with 2 processes on 2 cores, 8 % of a tiny gan-ring8
# step if done every step; a signal then stops the job within 10 steps.
STOP_AGREE_EVERY = 10
