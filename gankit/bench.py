"""Training-step speed: gankit's step against a plain fp32 eager PyTorch step of the same networks.

Both are timed in the same process, in alternating windows after warm-up, so the ratio
survives a noisy machine; images/s are medians over windows. FLOPs per image are the model
FLOPs of one plain step (G forward, D forward on real and fake, both backward passes), counted
with ``torch.utils.flop_counter``. Images/s count generator steps × batch (a recipe with
``train.d_steps`` = k does k D updates per step, and so does the plain step). "% of peak"
divides achieved GFLOP/s by the measured dense matmul throughput of the trainer's device in the
same dtype (1024² on a CPU, where large convolutions can exceed it; 8192² on a GPU, where
smaller products are launch-bound). On CUDA the trainer warms up past its CUDA-graph capture
before timing, and the row says whether the graphs were used.
"""
from __future__ import annotations

import copy
import resource
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from .config import load_config
from .train.graphs import WARMUP_STEPS
from .train.loop import Trainer
from .utils import device_name


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device | str = "cpu", n: Optional[int] = None,
                       seconds: float = 0.5) -> float:
    """Best-of-5-windows dense (n×n)·(n×n) throughput in GFLOP/s on ``device``; ``n`` None: 1024 on
    a CPU, 8192 on a GPU (1024² there measures kernel launches, not the tensor cores)."""
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_matmul_peak_gflops(dtype, device, n or 8192)
    n = n or 1024
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 5:
            a @ b
            reps += 1
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def _cuda_matmul_peak_gflops(dtype: torch.dtype, device: torch.device, n: int, windows: int = 5,
                             reps: int = 10) -> float:
    """Best of ``windows`` windows of ``reps`` back-to-back products, timed with CUDA events. The
    operands are random: GPUs draw less power on zeros and clock higher, which would overstate it."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(windows):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        end.record()
        end.synchronize()
        best = max(best, 2 * n ** 3 * reps / (start.elapsed_time(end) / 1e3) / 1e9)  # elapsed_time: ms
    return best


def plain_step(trainer: Trainer) -> Callable[[], None]:
    """The straightforward PyTorch step of the trainer's model (see :data:`PLAIN_STEPS`)."""
    objective = trainer.cfg.loss.objective
    make = PLAIN_STEPS.get(objective)
    if make is None and trainer.objective.kind == "generation":  # every noise-driven G/D pair
        make = PLAIN_STEPS["gan"]
    if make is None:
        from .errors import GankitError
        raise GankitError(f"gankit bench has no plain PyTorch step for objective {objective!r}; "
                          f"it measures: {', '.join(PLAIN_STEPS)}")
    return make(trainer)


def _plain_copies(trainer: Trainer) -> Dict[str, torch.nn.Module]:
    """Fresh fp32, contiguous copies of the trainer's networks."""
    return {k: copy.deepcopy(m).float().to(memory_format=torch.contiguous_format) for k, m in trainer.nets.items()}


def _adam(*nets) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for n in nets for p in n.parameters()], lr=2e-4, betas=(0.5, 0.999))


def _bce(out: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out, torch.full_like(out, float(real)))


def _indices(sampler, device: torch.device) -> Callable[[], torch.Tensor]:
    """A copy of ``sampler``'s batches as index tensors on ``device``, as a plain PyTorch loop over
    data held there draws them: each epoch's permutation copied to the device once, batches sliced
    from it (no copy from the host per batch, as gankit's :class:`~gankit.train.graphs.DeviceDraws`)."""
    s = copy.deepcopy(sampler)
    held = {"epoch": None, "perm": None}

    def next_batch() -> torch.Tensor:
        s.next()  # the host sampler moves on (and turns its epoch); its rows, from the device copy
        if held["epoch"] != s.epoch:
            perm = s.perm.pin_memory() if device.type == "cuda" else s.perm
            held["epoch"], held["perm"] = s.epoch, perm.to(device, non_blocking=True)
        start = s.position - s.batch_size + s.rank * s.local_batch_size
        return held["perm"][start:start + s.local_batch_size]

    return next_batch


def plain_gan_step(trainer: Trainer) -> Callable[[], None]:
    """The straightforward PyTorch step for the trainer's networks: fp32, eager, BCE-with-logits
    (non-saturating), fresh copies of G and D, no EMA, no tricks; ``train.d_steps`` D updates
    (each on a new batch and new noise) per G update, like the recipe."""
    nets = _plain_copies(trainer)
    G, D = nets["G"], nets["D"]
    g_opt, d_opt = _adam(G), _adam(D)
    data, indices, z_dim = trainer.data, _indices(trainer.sampler, trainer.device), trainer.cfg.model.z_dim
    n_cls, d_steps = trainer.num_classes, trainer.cfg.train.d_steps

    def step():
        for _ in range(d_steps):
            batch = data.batch(indices())
            real, y = batch["x"], batch["y"] if n_cls else None
            z = torch.randn(real.shape[0], z_dim, device=real.device)
            fake = G(z, y)
            d_opt.zero_grad()
            d_loss = _bce(D(real, y), True) + _bce(D(fake.detach(), y), False)
            d_loss.backward()
            d_opt.step()
        g_opt.zero_grad()
        _bce(D(fake, y), True).backward()
        g_opt.step()

    return step


def plain_pix2pix_step(trainer: Trainer) -> Callable[[], None]:
    """Pix2Pix as its reference trains it: G(x); D on (x, y) and (x, G(x)) with BCE, halved; then G
    with BCE + 100·L1; fp32, eager, fresh copies, no EMA. Without D (L1 alone) only the G update."""
    nets = _plain_copies(trainer)
    G, D = nets["G"], nets.get("D")
    g_opt, d_opt = _adam(G), (_adam(D) if D is not None else None)
    data, indices = trainer.data, _indices(trainer.sampler, trainer.device)
    lam = trainer.objective.options.l1_weight

    def step():
        batch = data.batch(indices())
        x, y = batch["A"], batch["B"]
        fake = G(x)
        loss = lam * F.l1_loss(fake, y)
        if D is not None:
            d_opt.zero_grad()
            (0.5 * (_bce(D(y, cond=x), True) + _bce(D(fake.detach(), cond=x), False))).backward()
            d_opt.step()
            loss = loss + _bce(D(fake, cond=x), True)
        g_opt.zero_grad()
        loss.backward()
        g_opt.step()

    return step


def plain_cyclegan_step(trainer: Trainer) -> Callable[[], None]:
    """CycleGAN as its reference trains it: both generators on LSGAN + 10·cycle + 5·identity, then both
    discriminators on real vs the step's fakes (no pool); fp32, eager, fresh copies, no EMA."""
    n = _plain_copies(trainer)
    g_opt, d_opt = _adam(n["G_AB"], n["G_BA"]), _adam(n["D_A"], n["D_B"])
    data, samplers = trainer.data, {k: _indices(s, trainer.device) for k, s in trainer.samplers.items()}
    mse = lambda out, t: F.mse_loss(out, torch.full_like(out, t))  # noqa: E731

    def step():
        batch = data.batch({k: s() for k, s in samplers.items()})
        a, b = batch["A"], batch["B"]
        fake_b, fake_a = n["G_AB"](a), n["G_BA"](b)
        loss = (mse(n["D_B"](fake_b), 1) + mse(n["D_A"](fake_a), 1)
                + 10 * (F.l1_loss(n["G_BA"](fake_b), a) + F.l1_loss(n["G_AB"](fake_a), b))
                + 5 * (F.l1_loss(n["G_AB"](b), b) + F.l1_loss(n["G_BA"](a), a)))
        g_opt.zero_grad()
        loss.backward()
        g_opt.step()
        d_opt.zero_grad()
        d_loss = 0.5 * (mse(n["D_A"](a), 1) + mse(n["D_A"](fake_a.detach()), 0)
                        + mse(n["D_B"](b), 1) + mse(n["D_B"](fake_b.detach()), 0))
        d_loss.backward()
        d_opt.step()

    return step


#: objective (or "gan" for every noise-driven one) -> the plain PyTorch step gankit's is timed against
PLAIN_STEPS = {"gan": plain_gan_step, "pix2pix": plain_pix2pix_step, "cyclegan": plain_cyclegan_step}


def flops_per_image(step: Callable[[], None], batch_size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / batch_size  # per image of the G step's batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(recipe: str, overrides: Optional[List[str]] = None, windows: int = 7, steps_per_window: int = 5,
          warmup: int = 3) -> Dict[str, float | str]:
    """Measure one recipe; returns a dict of figures (see module docstring). ``warmup``: untimed steps
    of each side first; on CUDA at least 3 more than the Trainer's eager steps before graph capture."""
    cfg = load_config(recipe, list(overrides or []) + ["train.steps=1000000", "train.log_every=1000000"])
    trainer = Trainer(cfg)
    device = trainer.device
    baseline = plain_step(trainer)
    batch = cfg.train.batch_size
    ours_fn = trainer.train_step
    if device.type == "cuda":
        # Past the capture of every set of phases: each runs eagerly WARMUP_STEPS times first, and a
        # phase every N steps (a lazy regulariser) comes round once per N steps.
        every = max(p.every for p in trainer.phases)
        warmup = max(warmup, (WARMUP_STEPS + 1) * every + 3)
    for _ in range(warmup):
        ours_fn()
        baseline()
    _sync(trainer.device)
    times = {"ours": [], "plain": []}
    for _ in range(windows):
        for name, fn in (("ours", ours_fn), ("plain", baseline)):
            t0 = time.perf_counter()
            for _ in range(steps_per_window):
                fn()
            _sync(trainer.device)
            times[name].append((time.perf_counter() - t0) / steps_per_window)
    trainer.pop_stats()
    flops = flops_per_image(baseline, batch)
    ours_s, plain_s = statistics.median(times["ours"]), statistics.median(times["plain"])
    peak32 = matmul_peak_gflops(torch.float32, device)
    peak16 = matmul_peak_gflops(torch.bfloat16, device)
    ours_gflops = flops * batch / ours_s / 1e9
    plain_gflops = flops * batch / plain_s / 1e9
    peak_ours = peak32 if trainer.precision == "fp32" else peak16  # fp16: the same tensor-core rate as bf16
    return {
        "recipe": cfg.name, "precision": trainer.precision, "batch": batch, "device": device_name(device),
        "cuda_graphs": bool(getattr(trainer, "cuda_graphs", False)),
        "ours_img_s": batch / ours_s, "plain_img_s": batch / plain_s, "speedup": plain_s / ours_s,
        "mflop_per_img": flops / 1e6, "ours_gflops": ours_gflops, "plain_gflops": plain_gflops,
        "peak_fp32_gflops": peak32, "peak_bf16_gflops": peak16,
        "ours_peak_frac": ours_gflops / peak_ours, "plain_peak_frac": plain_gflops / peak32,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "plain_omits": extra_work(cfg),
    }


def extra_work(cfg) -> List[str]:
    """What gankit's step of ``cfg`` does that the plain step does not (its speed-up pays for them)."""
    work = [r.name + (f" every {r.every}" if r.every > 1 else "") for r in cfg.loss.regularizers]
    if cfg.loss.augment:
        work.append(f"augment {cfg.loss.augment}")
    if cfg.train.ema:
        work.append("EMA")
    return work


def _percent(frac: float) -> str:
    """Small GPU fractions (a 28×28 DCGAN uses well under 1 % of an H200) keep a digit."""
    return f"{100 * frac:.0f}%" if frac >= 0.1 else f"{100 * frac:.1f}%"


def format_table(rows: List[Dict[str, float | str]]) -> str:
    head = ("| recipe | device | precision | CUDA graphs | batch | gankit img/s | plain fp32 img/s | speed-up | "
            "MFLOP/img | gankit GFLOP/s (% of peak) | plain GFLOP/s (% of fp32 peak) | peak fp32 / bf16 GFLOP/s | "
            "process peak RSS MB |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        graphs = ("on" if r["cuda_graphs"] else "off") if not r["device"].startswith("CPU") else "-"
        lines.append(
            f"| {r['recipe']} | {r['device']} | {r['precision']} | {graphs} | {r['batch']} | "
            f"{r['ours_img_s']:.0f} | {r['plain_img_s']:.0f} | "
            f"{r['speedup']:.2f}x | {r['mflop_per_img']:.1f} | {r['ours_gflops']:.1f} ({_percent(r['ours_peak_frac'])}) | "
            f"{r['plain_gflops']:.1f} ({_percent(r['plain_peak_frac'])}) | "
            f"{r['peak_fp32_gflops']:.0f} / {r['peak_bf16_gflops']:.0f} | {r['peak_rss_mb']:.0f} |")
    omits = [f"{r['recipe']}: {', '.join(r['plain_omits'])}" for r in rows if r.get("plain_omits")]
    if omits:
        lines.append("\nThe plain step omits what gankit's step also does (the speed-up pays for it; FLOPs are the "
                     "plain step's): " + "; ".join(omits) + ". Peak RSS is the process's highest so far.")
    return "\n".join(lines)
