"""Whole training steps as CUDA graphs (``train.cuda_graphs``), and batches drawn on the GPU.

A small GAN's step on a modern GPU is a few hundred kernels of a few microseconds each; launching
them from Python costs more than running them. :class:`StepGraphs` records one step's kernels
(every phase's batch draw, forward, backward, optimiser step, the EMA update and the statistics)
once as a CUDA graph and replays it: one launch per step. A step's phases differ between steps
(a lazy regulariser every N steps, gradient norms on log steps), so there is one graph per set of
phases, each captured after that set has run eagerly :data:`WARMUP_STEPS` times (cuDNN and cuBLAS
pick their kernels, optimisers create their state; nothing is allocated for the first time inside
a capture).

What a graph replays is fixed at capture, so everything that changes between steps lives in
device tensors the host updates before a replay: the learning rates (capturable Adam with tensor
``lr``), the EMA decay, the data position (:class:`DeviceDraws`) and the random streams (CUDA
generators registered with the graph, so a replay draws the numbers the eager step would).

Where capture cannot work the run trains eagerly and says why in one line: what the config or the
machine rules out (:func:`why_not`), and a step that waits for the GPU, found in its last warm-up
run by PyTorch's sync debug mode.
"""
from __future__ import annotations

import collections
import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

#: eager runs of a set of phases before it is captured (cuDNN/cuBLAS choices, optimiser state)
WARMUP_STEPS = 3

Stats = List[Tuple[str, Tensor]]


def why_not(trainer, mode: str) -> Optional[str]:
    """None when ``trainer``'s steps can be captured as CUDA graphs, else the reason in a few words.
    ``mode``: train.cuda_graphs (auto | on | off, or YAML's true/false for on/off)."""
    t = trainer.cfg.train
    mode = graphs_mode(mode)
    if mode == "off":
        return "train.cuda_graphs=off"
    if trainer.device.type != "cuda":
        return f"the device is {trainer.device.type}, not a CUDA GPU"
    if not getattr(trainer.objective, "capturable", False):
        return f"objective {trainer.cfg.loss.objective!r} changes its work between steps on the host"
    if trainer.dist.enabled:
        return "torchrun averages gradients between the phases outside the graph"
    if t.compile:
        return "train.compile=true (torch.compile has its own CUDA graphs: mode=reduce-overhead)"
    if trainer.precision == "fp16":
        return "fp16's loss scaler decides on the host whether to step"
    names = {c.name for c in trainer.optim_cfgs.values()}
    if names - {"adam"}:
        return f"optimiser {sorted(names - {'adam'})[0]!r} has no capturable form here; use adam"
    if getattr(trainer.data, "device_indexable", False) is False:
        return f"dataset {trainer.cfg.data.name!r} cannot be indexed on the GPU"
    if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
        return f"PyTorch {torch.__version__} has no CUDAGraph.register_generator_state (a private generator in a graph)"
    return None


def graphs_mode(value) -> str:
    """train.cuda_graphs as auto | on | off (YAML reads a bare on/off as a boolean)."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


class DeviceDraws:
    """Batch indices drawn on the GPU, exactly the ones :class:`~gankit.data.EpochSampler` would.

    Draw j (counted from the start of training) is global batch ``j mod B`` of epoch ``j // B``
    (B batches per epoch); this rank's rows of it are ``perm_epoch[pos + rank·n : pos + (rank+1)·n]``.
    The permutations stay the host sampler's (seeded, in checkpoints); every one a step can touch
    sits on the GPU in slot ``epoch mod slots``, and a device counter picks the rows, so the draw is
    the same kernel at every step and can be replayed in a graph. The host sampler is advanced in
    step (:meth:`advance`) and uploads a new epoch's permutation before the step that first uses it;
    stream order keeps the slot it overwrites unused by then, as long as one step's draws fit in
    the slots: ``draws_per_step`` (the most batches one step draws) sets how many epochs that is,
    2 for a step shorter than an epoch, more where a step's k D steps run through a small dataset
    several times (100 images at batch 64 hold 1 batch: 5 D steps touch up to 5 epochs).
    """

    def __init__(self, sampler, device: torch.device, draws_per_step: int = 1):
        self.sampler, self.device = sampler, device
        self.draws_per_step = max(1, int(draws_per_step))
        B = sampler.batches_per_epoch
        # draws j .. j+d-1 touch epochs j//B .. (j+d-1)//B: at most (d + B - 2)//B + 1 of them
        self.slots = max(2, (self.draws_per_step + B - 2) // B + 1)
        self.perms = torch.empty(self.slots, sampler.n, dtype=torch.long, device=device)
        self.counter = torch.zeros((), dtype=torch.long, device=device)
        self.rows = torch.arange(sampler.local_batch_size, device=device) + sampler.rank * sampler.local_batch_size
        self.sync()

    def sync(self) -> None:
        """Take the host sampler's position (at start, after a resume or a rollback)."""
        s = self.sampler
        self.counter.fill_(s.epoch * s.batches_per_epoch + s.position // s.batch_size)
        self._upload(s.epoch, s.perm)

    def _upload(self, epoch: int, perm: Tensor) -> None:
        src = perm.pin_memory() if self.device.type == "cuda" else perm
        self.perms[epoch % self.slots].copy_(src, non_blocking=True)

    def advance(self, draws: int) -> None:
        """Host side of the next ``draws`` draws (one step's, at most ``draws_per_step``): move the
        sampler on, upload new permutations."""
        if draws > self.draws_per_step:
            raise ValueError(f"DeviceDraws: a step of {draws} draws, more than the {self.draws_per_step} "
                             "its slots were sized for (draws_per_step)")
        for _ in range(draws):
            epoch = self.sampler.epoch
            self.sampler.next()
            if self.sampler.epoch != epoch:
                self._upload(self.sampler.epoch, self.sampler.perm)

    def next(self) -> Tensor:
        """This rank's indices of the next batch, on the device (device work only)."""
        s = self.sampler
        epoch = torch.div(self.counter, s.batches_per_epoch, rounding_mode="floor")
        start = (epoch % self.slots) * s.n + (self.counter - epoch * s.batches_per_epoch) * s.batch_size
        self.counter.add_(1)
        return self.perms.view(-1).index_select(0, start + self.rows)


@dataclass
class _Graph:
    graph: "torch.cuda.CUDAGraph"
    keys: List[str]                 # statistic of each entry of ``values``, in order (repeats repeat)
    values: Tensor                  # (len(keys),) fp32: the statistics of the replayed step
    total: Tensor                   # (len(keys),) fp32: their sum since the last fold
    replays: int = 0                # since the last fold
    per_replay: Dict[str, int] = field(default_factory=dict)


class StepGraphs:
    """One CUDA graph per set of phases; see the module docstring.

    ``generators``: the private CUDA generators the step draws from (the default one is registered
    by PyTorch itself). The last warm-up run of each set of phases runs under PyTorch's sync debug
    mode: a step that waits for the GPU (``.item()``, a branch on a tensor's value) is never
    captured; the run goes on eagerly and says why."""

    def __init__(self, device: torch.device, generators: Sequence[torch.Generator] = (),
                 warmup: int = WARMUP_STEPS):
        self.device, self.generators, self.warmup = device, list(generators), warmup
        self.graphs: Dict[tuple, _Graph] = {}
        self.stopped: List[_Graph] = []         # graphs dropped by stop() whose replays the next fold still counts
        self.seen: Dict[tuple, int] = collections.Counter()
        self.off: Optional[str] = None          # why graphs stopped for this run, once they did
        self.on_stop: List[Callable[[str], None]] = []  # told the reason when graphs stop (runtime.json)
        self.side = torch.cuda.Stream(device)   # eager warm-up runs beside the capture stream, as PyTorch asks

    @property
    def active(self) -> bool:
        return self.off is None

    def stop(self, reason: str) -> None:
        """Train eagerly from now on (a health remedy changed the step on the host, or a step waits
        for the GPU). The graphs' statistics replayed since the last fold are kept for the next
        :meth:`fold`; each of ``on_stop`` is called with ``reason`` once."""
        if self.off is None:
            self.off = reason
            print(f"note: CUDA graphs off from here: {reason}", flush=True)
            for listener in self.on_stop:
                listener(reason)
        for g in self.graphs.values():
            if g.replays:
                g.graph = None  # the graph's memory goes; its totals stay until folded
                self.stopped.append(g)
        self.graphs.clear()

    def reset(self) -> None:
        """Forget every graph and the statistics of their replays (a rollback or resume replaced
        optimiser state tensors and the sums); they are captured again after the warm-up."""
        self.graphs.clear()
        self.stopped.clear()
        self.seen.clear()

    def step(self, key: tuple, body: Callable[[], Stats], accumulate: Callable[[Stats], None]) -> None:
        """Run one step whose set of phases is ``key``: replay its graph, capture it, or run ``body``
        eagerly (then ``accumulate`` its statistics)."""
        g = self.graphs.get(key)
        if g is None and self.off is None:
            self.seen[key] += 1
            if self.seen[key] > self.warmup:
                g = self._capture(key, body)
        if g is not None:
            g.graph.replay()
            g.total.add_(g.values)
            g.replays += 1
            return
        last_warmup = self.off is None and self.seen[key] == self.warmup
        with self._beside(), (_host_reads() if last_warmup else contextlib.nullcontext()) as reads:
            accumulate(body())
        if reads:
            # A step that waits for a value from the GPU cannot be captured (and a failed capture
            # leaves PyTorch's random generators unusable), so it is caught here, before capture.
            self.stop(f"the step waits for the GPU ({reads[0]}); training eagerly")

    @contextlib.contextmanager
    def _beside(self):
        cur = torch.cuda.current_stream(self.device)
        self.side.wait_stream(cur)
        with torch.cuda.stream(self.side):
            yield
        cur.wait_stream(self.side)

    def _capture(self, key: tuple, body: Callable[[], Stats]) -> _Graph:
        graph = torch.cuda.CUDAGraph()
        for gen in self.generators:
            graph.register_generator_state(gen)
        torch.cuda.synchronize(self.device)  # once per capture: nothing of the eager steps in flight
        try:
            with torch.cuda.graph(graph):
                stats = body()
                values = (torch.stack([v.detach().float().reshape(()) for _, v in stats]) if stats
                          else torch.zeros(0, device=self.device))
        except Exception as e:
            # PyTorch cannot recover from a failed capture (its generators stay in capture mode), so
            # the run stops here; the last checkpoint is kept.
            from ..errors import GankitError

            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise GankitError(f"train.cuda_graphs: capturing the training step as a CUDA graph failed ({first[:200]}); "
                              "resume with --set train.cuda_graphs=off") from e
        keys = [k for k, _ in stats]
        g = _Graph(graph, keys, values, torch.zeros_like(values), per_replay=dict(collections.Counter(keys)))
        self.graphs[key] = g
        return g

    def fold(self, sums: Dict[str, Tensor], counts: Dict[str, int]) -> None:
        """Add the statistics of the replays since the last fold into ``sums`` and ``counts`` (the
        eager steps' accumulators), on the device."""
        for g in [*self.stopped, *self.graphs.values()]:
            if not g.replays:
                continue
            for i, k in enumerate(g.keys):
                sums[k] = sums[k] + g.total[i] if k in sums else g.total[i].clone()
            for k, n in g.per_replay.items():
                counts[k] += n * g.replays
            g.total.zero_()
            g.replays = 0
        self.stopped.clear()


@contextlib.contextmanager
def _host_reads():
    """Collects PyTorch's warnings about synchronising calls (``torch.cuda.set_sync_debug_mode``)
    made inside the block: a list of their first lines, empty when the block never waited."""
    found: List[str] = []
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode(before)
    for w in caught:
        text = str(w.message)
        if "called a synchronizing" in text:
            found.append(text.strip().splitlines()[0][:160])
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def tensor_learning_rates(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Learning rates as 0-dim device tensors, so a captured optimiser step reads the current one."""
    for group in opt.param_groups:
        if not isinstance(group["lr"], Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)


def set_learning_rate(group: dict, lr: float) -> None:
    if isinstance(group["lr"], Tensor):
        group["lr"].fill_(lr)  # a device write, no sync; a captured step reads it
    else:
        group["lr"] = lr


def plain_optimizer_state(state: dict) -> dict:
    """An optimiser ``state_dict`` with tensor learning rates as floats (checkpoints are the same
    whatever device or mode wrote them)."""
    groups = [{**g, "lr": float(g["lr"])} if isinstance(g.get("lr"), Tensor) else g for g in state["param_groups"]]
    return {**state, "param_groups": groups}
