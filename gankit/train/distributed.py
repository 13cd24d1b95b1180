"""Data-parallel training over several processes, GPUs and machines (``torchrun``).

Start ``torchrun --nproc-per-node N -m gankit train RECIPE ...``: every process builds the
same Trainer from the same seed and they agree, step by step, on one training run whose
batch is ``train.batch_size`` (the *global* batch). Backend: gloo on CPU, NCCL on CUDA,
one device per process (``cuda:LOCAL_RANK``).

How the pieces fit (and why it is not ``DistributedDataParallel``):

* **Gradients.** G and D are not wrapped in DDP. After each phase's backward, the loop
  averages the gradients of the phase's trained module across ranks with one
  ``all_reduce`` per dtype on a flattened buffer (:meth:`Dist.average_gradients`). Each
  rank's loss is a mean over its shard, so the average is the gradient of the global-batch
  loss, exactly. The trade-off: DDP overlaps the all-reduce of gradient buckets with the
  backward pass, which matters on fast GPUs with large models; we buy simplicity and
  exactness where DDP is awkward for GANs:

  - *D-only / G-only phases*: only the trained module's gradients are reduced; the frozen
    one's are neither computed nor communicated, and nothing "expects" a backward that
    never comes (DDP's unused-parameter errors, or ``find_unused_parameters`` overhead).
  - *R1, R2, gradient penalty*: double backward runs through the plain modules (DDP's
    reducer does not support it); the penalty's parameter gradients are averaged with
    the rest.
  - *Unrolled GAN*: the k look-ahead D updates use D's global-batch gradient, averaged with
    a differentiable all-reduce (:func:`gankit.nets.batchnorm.mean_across_ranks`), so G's gradient through the
    unrolled steps is the single-process one.

* **Data and noise.** The :class:`~gankit.data.EpochSampler` keeps one permutation shared by
  all ranks (seeded from the run seed); each global batch is cut in ``world_size`` slices
  and rank r takes slice r. Latent codes come the same way from :class:`ShardedNoise`: the
  global batch's z from one generator seeded from the run seed, rank r keeping its slice.
  So rank r's data and noise are its own, the sampler and noise states are the same on all
  ranks and saveable whatever the world size, and a run on N processes follows the
  single-process run with the same global batch (to float rounding). Other randomness
  (DiffAugment, the gradient penalty's mixing weights, dropout, ACGAN's fake labels) comes
  from torch's global RNG: rank 0's is the single-process stream (saved in checkpoints); ranks
  > 0 are reseeded at every step from (seed, rank, step, rollbacks) (:func:`rank_seed`), so a
  resume on the same number of processes continues every rank's stream exactly.

* **BatchNorm** normalises with the statistics of the rank's shard (batch B / N) unless
  ``train.sync_batchnorm`` is on: then :class:`SyncBatchNorm` uses the global batch's
  statistics via differentiable all-reduces (any backend, double backward included).
  Minibatch discrimination and PacGAN packing also work within a shard.

* **EMA** needs nothing: G is identical on every rank, so is its average.

* **Only rank 0 writes** the run folder (config, metrics, samples, checkpoints) and runs the
  callbacks (health monitor, evaluation: the other ranks wait for it in their next
  collective); what they decide (stop, roll back) is broadcast to the other ranks. Logged
  statistics are averaged over ranks. Checkpoints hold the plain modules' state dicts, the
  global sampler and noise states, and every rank's statistics summed since the last record
  (gathered at the checkpoint, which every rank knows is due: :meth:`Dist.agree`): they resume
  on any number of processes.

* **Failures** raise :class:`DistributedError` instead of hanging: the rendezvous and every
  collective time out after ``train.dist_timeout_s``; ``torchrun`` also stops the other
  workers as soon as one exits with an error.
"""
from __future__ import annotations

import atexit
import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import ConfigError, GankitError


class DistributedError(GankitError):
    """Processes of a torchrun job could not meet or lost one another (timeout, dead rank)."""


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) outside torchrun and
    wherever WORLD_SIZE is 1 or less, whatever RANK says (a stray RANK in a shell or a scheduler's
    environment): a job of one process is its own main process. The one definition every part of
    gankit uses (:func:`setup`, the run-folder lock, the default run folder, the CLI)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Whether this process speaks and writes for its job: rank 0 of a torchrun job, or a lone process."""
    return env_world()[0] == 0


def rank_seed(seed: int, rank: int, step: int = 0, rollbacks: int = 0) -> int:
    """The seed of rank ``rank``'s own randomness (DiffAugment, the gradient penalty's mixing
    weights, dropout, ACGAN's fake labels) at generator step ``step``, after ``rollbacks``
    rollbacks: ranks > 0 are reseeded with it at the start of every step, so their streams are a
    pure function of these four numbers and a same-world-size resume continues them exactly
    (nothing per rank needs to go into rank 0's checkpoint). A hash, so no two of them coincide."""
    digest = hashlib.blake2b(f"{seed}/{rank}/{step}/{rollbacks}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 2**63


def reseed(seed: int, device: torch.device) -> None:
    """Set torch's global generators that training draws from, the CPU's and the training GPU's,
    to ``seed``. Every step on ranks > 0, so cheaper than ``torch.manual_seed``, which visits every
    backend (17 µs against 0.5 ms on this CPU, where a tiny gan-ring8 step takes ~4 ms); nothing
    in training draws from Python's or NumPy's global RNG."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()
                                      ].manual_seed(seed)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. ``Dist()`` is the single-process case (no-op collectives)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: Optional[torch.device] = None   # where collectives run: the training device
    timeout_s: float = 1800.0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives (all no-ops in a single process) ------------------------------------------
    def _run(self, what: str, fn):
        try:
            return fn()
        except (RuntimeError, dist.DistError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DistributedError(
                f"rank {self.rank}/{self.world_size}: {what} failed ({first}); another process died or "
                f"stalled for more than train.dist_timeout_s={self.timeout_s:g} s. Its own error is in "
                "torchrun's log; resume from the last checkpoint with `gankit train --resume RUN_DIR`") from None

    def _flat(self, what: str, tensors: List[Tensor], collective) -> None:
        """Run ``collective`` in place on ``tensors`` as one flat buffer per dtype (any memory
        layout, e.g. channels_last), then write the results back."""
        by_dtype: Dict[torch.dtype, List[Tensor]] = {}
        for x in tensors:
            by_dtype.setdefault(x.dtype, []).append(x)
        for group in by_dtype.values():
            flat = torch.cat([x.reshape(-1) for x in group])
            self._run(what, lambda: collective(flat))
            torch._foreach_copy_(group, [f.view(x.shape) for f, x in zip(flat.split([x.numel() for x in group]), group)])

    def average_gradients(self, modules: nn.Module | Sequence[nn.Module]) -> None:
        """Replace each gradient of ``modules`` by its mean over ranks (one all-reduce per dtype).

        Parameters without a gradient are skipped; which ones have one is decided by the
        code path, the same on every rank."""
        if not self.enabled:
            return
        modules = [modules] if isinstance(modules, nn.Module) else list(modules)
        grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
        self._flat("all-reduce of gradients", grads, lambda flat: dist.all_reduce(flat.div_(self.world_size)))

    def broadcast_module(self, module: nn.Module) -> None:
        """Make every rank's parameters and buffers rank 0's (identical seeds make them so already;
        this guards against nondeterministic initialisation)."""
        if not self.enabled:
            return
        with torch.no_grad():
            tensors = [t.data for t in list(module.parameters()) + list(module.buffers())]
            self._flat("broadcast of initial weights", tensors, lambda flat: dist.broadcast(flat, 0))

    def mean_stats(self, sums: Dict[str, Tensor], counts: Dict[str, int]) -> Dict[str, float]:
        """Means of logged statistics over all ranks and accumulated steps: ``Σ sums / Σ counts``
        per key; a key some rank did not log is averaged over the ranks that did. One host sync."""
        if not self.enabled:
            keys = list(sums)
            values = torch.stack([sums[k].float() for k in keys]).cpu().tolist() if keys else []
            return {k: v / counts[k] for k, v in zip(keys, values)}
        keys = list(dict.fromkeys(k for keys in self.gather_json(list(sums)) for k in keys))  # rank 0's order first
        if not keys:
            return {}
        zero = torch.zeros((), device=self.device)
        vals = torch.stack([sums[k].float().to(self.device) if k in sums else zero for k in keys]
                           + [torch.tensor(float(counts.get(k, 0)), device=self.device) for k in keys])
        self._run("all-reduce of logged statistics", lambda: dist.all_reduce(vals))
        vals = vals.cpu().tolist()
        n = len(keys)
        return {k: vals[i] / vals[n + i] for i, k in enumerate(keys) if vals[n + i] > 0}

    def agree(self, seconds: float, stop: bool, checkpoint: bool = False) -> tuple[float, bool, bool]:
        """Rank 0's ``seconds``, whether any rank wants to ``stop`` and whether rank 0 wants a
        ``checkpoint`` (its clock: train.checkpoint_minutes), on every rank: one all-reduce of three
        numbers (the other ranks contribute 0 seconds and no checkpoint)."""
        if not self.enabled:
            return seconds, stop, checkpoint
        main = self.is_main
        vals = torch.tensor([seconds if main else 0.0, float(stop), float(checkpoint and main)],
                            dtype=torch.float64, device=self.device)
        self._run("all-reduce of the clock and stop requests", lambda: dist.all_reduce(vals))
        clock, stops, checkpoints = vals.cpu().tolist()
        return clock, stops > 0, checkpoints > 0

    def gather_stats(self, sums: Dict[str, Tensor], counts: Dict[str, int]) -> List[dict]:
        """Every rank's logged-statistic ``sums`` and ``counts``, in rank order, as
        ``[{"sums": {key: 0-dim CPU float32 tensor}, "counts": {key: int}}, ...]`` (bit for bit: a
        checkpoint between records keeps each rank's own). Keys a rank did not log are absent from
        its entry. One all-gather of the keys, one of the values."""
        if not self.enabled:
            return [{"sums": {k: v.float().cpu() for k, v in sums.items()}, "counts": dict(counts)}]
        keys = list(dict.fromkeys(k for keys in self.gather_json(list(sums)) for k in keys))
        if not keys:
            return [{"sums": {}, "counts": {}} for _ in range(self.world_size)]
        zero = torch.zeros((), device=self.device)
        mine = torch.stack([sums[k].float().to(self.device) if k in sums else zero for k in keys]
                           + [torch.tensor(float(counts.get(k, 0)), device=self.device) for k in keys])
        every = [torch.zeros_like(mine) for _ in range(self.world_size)]
        self._run("all-gather of logged statistics", lambda: dist.all_gather(every, mine))
        n = len(keys)
        out = []
        for vals in every:
            vals = vals.cpu()
            c = [int(x) for x in vals[n:].tolist()]
            out.append({"sums": {k: vals[i].clone() for i, k in enumerate(keys) if c[i]},
                        "counts": {k: c[i] for i, k in enumerate(keys) if c[i]}})
        return out

    def _bytes_tensor(self, data: bytes) -> Tensor:
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device) if data else \
            torch.zeros(0, dtype=torch.uint8, device=self.device)

    def broadcast_bytes(self, data: Optional[bytes]) -> bytes:
        """Rank 0's ``data`` on every rank (other ranks pass None)."""
        if not self.enabled:
            return data
        size = torch.tensor([len(data) if self.is_main else 0], dtype=torch.int64, device=self.device)
        self._run("broadcast from rank 0", lambda: dist.broadcast(size, 0))
        buf = self._bytes_tensor(data) if self.is_main else torch.empty(int(size), dtype=torch.uint8, device=self.device)
        self._run("broadcast from rank 0", lambda: dist.broadcast(buf, 0))
        return bytes(buf.cpu().numpy())

    def broadcast_json(self, obj: Any) -> Any:
        """Rank 0's JSON-able ``obj`` on every rank (no pickle)."""
        if not self.enabled:
            return obj
        data = json.dumps(obj).encode() if self.is_main else None
        return json.loads(self.broadcast_bytes(data).decode())

    def gather_json(self, obj: Any) -> List[Any]:
        """Every rank's JSON-able ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        data = json.dumps(obj).encode()
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        self._run("all-gather", lambda: dist.all_gather(sizes, size))
        longest = int(max(s.item() for s in sizes))
        buf = torch.zeros(longest, dtype=torch.uint8, device=self.device)
        buf[:len(data)] = self._bytes_tensor(data)
        bufs = [torch.zeros_like(buf) for _ in range(self.world_size)]
        self._run("all-gather", lambda: dist.all_gather(bufs, buf))
        return [json.loads(bytes(b[:int(s)].cpu().numpy()).decode()) for b, s in zip(bufs, sizes)]

    def broadcast_state(self, state: Optional[dict]) -> dict:
        """Rank 0's nested ``state`` (a Trainer state dict) on every rank, sent in the checkpoint
        format (safetensors tensors + a JSON skeleton), so nothing is unpickled."""
        from safetensors.torch import load as st_load, save as st_save

        from ..checkpoint import flatten, unflatten

        if not self.enabled:
            return state
        skeleton = tensors = None
        if self.is_main:
            tensors = {}
            skeleton = flatten(state, "s", tensors)
        skeleton = self.broadcast_json(skeleton)
        payload = self.broadcast_bytes(st_save(tensors) if self.is_main else None)
        return state if self.is_main else unflatten(skeleton, st_load(payload))

    def close(self) -> None:
        """End of training: wait for every rank (rank 0 may still be writing), then leave the
        process group together, so no rank tears down connections another is still using."""
        if self.enabled and dist.is_initialized():
            self._run("final barrier", lambda: dist.barrier())
            dist.destroy_process_group()


def setup(cfg) -> Dist:
    """Join the torchrun job described by the environment (or return the single-process
    :class:`Dist`). Picks the device (``cuda:LOCAL_RANK`` for CUDA) and the backend (NCCL for
    CUDA, gloo for CPU); fails with :class:`DistributedError` after ``train.dist_timeout_s``
    if the other processes do not show up."""
    from ..utils import resolve_device

    t = cfg.train
    rank, world, local_rank = env_world()  # (0, 1, 0) for one process, whatever RANK says
    device = resolve_device(t.device, "train.device")
    if world == 1:
        return Dist(device=device, timeout_s=t.dist_timeout_s)
    if cfg.health.enabled and cfg.health.on_vanishing != "warn":
        raise ConfigError(f"health.on_vanishing={cfg.health.on_vanishing}: this policy changes the objective on "
                          "rank 0 only; use warn when training on several processes")
    if device.type == "cuda":
        if device.index is not None:
            named = (f"GANKIT_DEVICE={os.environ.get('GANKIT_DEVICE')}" if t.device == "auto"
                     else f"train.device={t.device}")
            raise ConfigError(f"{named}: under torchrun each process uses cuda:LOCAL_RANK; "
                              "set train.device=cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=t.dist_timeout_s),
                                    **({"device_id": device} if backend == "nccl" else {}))
        except (RuntimeError, ValueError, dist.DistError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DistributedError(
                f"rank {rank}/{world}: could not join the other processes at {where} within "
                f"train.dist_timeout_s={t.dist_timeout_s:g} s ({first}); check that all processes were "
                "started with the same --rdzv-endpoint / MASTER_ADDR:MASTER_PORT and that the port is open") from None
        atexit.register(_destroy)
    return Dist(rank=rank, world_size=world, local_rank=local_rank, device=device, timeout_s=t.dist_timeout_s)


def exit_worker(code: int = 0) -> None:
    """End a torchrun worker once its work is done and its files are closed, skipping C++
    static destructors: in about 1 run in 10 a gloo worker aborted there ("terminate called
    without an active exception", SIGABRT) after training had finished, which made torchrun
    report the job as failed. Outside torchrun it returns and the process exits normally."""
    if env_world()[1] > 1:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ShardedNoise:
    """Latent codes for the global batch from one generator shared by all ranks; rank r keeps
    rows ``[r·n, (r+1)·n)``. Drawn on ``device`` (a GPU's own generator: no copy from the host per
    step, and a draw a CUDA graph can replay), so a CPU and a GPU run of one seed draw different z."""

    def __init__(self, z_dim: int, seed: int, rank: int = 0, world_size: int = 1, device="cpu"):
        self.z_dim, self.rank, self.world_size, self.seed = z_dim, rank, world_size, seed
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __call__(self, n: int, device) -> Tensor:
        z = torch.randn(n * self.world_size, self.z_dim, generator=self.generator, device=self.device)  # (n·W, z_dim)
        z = z[self.rank * n:(self.rank + 1) * n]  # (n, z_dim)
        return z if z.device == torch.device(device) else z.to(device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "device": self.device.type}

    def load_state_dict(self, state: dict) -> None:
        if state.get("device", "cpu") == self.device.type:
            self.generator.set_state(state["generator"])
            return
        # A checkpoint from the other kind of device: its generator state does not fit this one's.
        # Continue with a stream seeded from it (deterministic), and say so.
        seed = int.from_bytes(hashlib.sha256(state["generator"].numpy().tobytes()).digest()[:8], "little")
        self.generator.manual_seed(seed)
        print(f"note: this checkpoint was trained on {state.get('device', 'cpu')}; the noise stream continues "
              f"from a new seed on {self.device.type}", flush=True)
