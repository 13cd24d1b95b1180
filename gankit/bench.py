"""Training-step speed: gankit's step against a plain fp32 eager PyTorch step of the same networks.

Both are timed in the same process, in alternating windows after warm-up, so the ratio
survives a noisy machine; images/s are medians over windows, and the spread of the per-window
ratio (min–max) is reported beside the median. A window's length is a multiple of every phase's
interval (R1 every 16 steps: 16, 32, ...), so each window holds the lazy regularisers in
proportion. The plain step uses the recipe's optimisers (kind and settings, PyTorch's default
implementation) and trains the networks at the stage gankit's step trains them (a growing
ProGAN: the same resolution and fade, copied before each plain step). FLOPs per image are the model
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
import json
import math
import os
import resource
import statistics
import time
from typing import IO, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from .config import load_config
from .train.graphs import WARMUP_STEPS
from .train.loop import Trainer
from .utils import device_name, usable_cores


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


def _plain_maker(objective: str, cls) -> Optional[Callable]:
    """The plain step for objective ``objective`` (class ``cls``), or None: its own entry of
    :data:`PLAIN_STEPS`, else the GAN step for every other noise-driven objective (acgan, biggan,
    progan, ssgan, stylegan, unrolled, ...: a G and a D)."""
    make = PLAIN_STEPS.get(objective)
    if make is None and cls.kind == "generation":
        make = PLAIN_STEPS["gan"]
    return make


def measured_objectives() -> List[str]:
    """Every registered objective ``gankit bench`` has a plain step for."""
    from .objectives import OBJECTIVES

    return sorted(n for n, cls in OBJECTIVES.items() if _plain_maker(n, cls) is not None)


def plain_step(trainer: Trainer) -> Callable[[], None]:
    """The straightforward PyTorch step of the trainer's model (see :data:`PLAIN_STEPS`). The step
    carries what it trains: ``step.nets`` (its copies) and ``step.optimizers``."""
    objective = trainer.cfg.loss.objective
    make = _plain_maker(objective, type(trainer.objective))
    if make is plain_gan_step and not {"G", "D"} <= set(trainer.nets):
        make = None  # a noise-driven objective without a G/D pair has no GAN step to compare with
    if make is None:
        from .errors import GankitError
        raise GankitError(f"gankit bench has no plain PyTorch step for objective {objective!r} (networks "
                          f"{', '.join(trainer.nets)}); it measures: {', '.join(measured_objectives())}")
    return make(trainer)


def _plain_copies(trainer: Trainer) -> Dict[str, torch.nn.Module]:
    """Fresh fp32, contiguous copies of the trainer's networks."""
    return {k: copy.deepcopy(m).float().to(memory_format=torch.contiguous_format) for k, m in trainer.nets.items()}


def _same_stage(trainer: Trainer, copies: Dict[str, torch.nn.Module]) -> Callable[[], None]:
    """A call that puts growing copies (``growth``/``set_growth``: ProGAN) at the stage and fade the
    trainer's networks are at now. The objective sets them in its ``on_step``, at the start of each
    of gankit's steps: without this the copies stay at the stage they were built at (ProGAN's top,
    32×32, against gankit's 4×4 at the start of training)."""
    growing = [(trainer.nets[k], m) for k, m in copies.items() if hasattr(m, "set_growth")]

    def sync() -> None:
        for ours, plain in growing:
            plain.set_growth(*ours.growth())

    return sync


def _optimizer(trainer: Trainer, name: str, *nets: torch.nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimiser ``name`` (its kind, lr, betas or momentum, weight decay: the trainer's
    resolved settings) over ``nets``, in PyTorch's default implementation (no fused kernel)."""
    o = trainer.optim_cfgs[name]
    params = [p for n in nets for p in n.parameters()]
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    if o.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


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
    (non-saturating), fresh copies of G and D at gankit's stage, the recipe's optimisers, no EMA, no
    tricks; ``train.d_steps`` D updates (each on a new batch and new noise) per G update, like the recipe."""
    nets = _plain_copies(trainer)
    G, D = nets["G"], nets["D"]
    g_opt, d_opt = _optimizer(trainer, "G", G), _optimizer(trainer, "D", D)
    data, indices, z_dim = trainer.data, _indices(trainer.sampler, trainer.device), trainer.cfg.model.z_dim
    n_cls, d_steps = trainer.num_classes, trainer.cfg.train.d_steps
    same_stage = _same_stage(trainer, nets)

    def step():
        same_stage()
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

    step.nets, step.optimizers = nets, {"G": g_opt, "D": d_opt}
    return step


def plain_pix2pix_step(trainer: Trainer) -> Callable[[], None]:
    """Pix2Pix as its reference trains it: G(x); D on (x, y) and (x, G(x)) with BCE, halved; then G
    with BCE + 100·L1; fp32, eager, fresh copies, the recipe's optimisers, no EMA. Without D (L1 alone)
    only the G update. G's output goes through the task's composition, as in gankit's step (a
    colouriser's G predicts a*, b*, joined to the input's L*: :data:`gankit.tasks.COMPOSE`)."""
    nets = _plain_copies(trainer)
    G, D = nets["G"], nets.get("D")
    g_opt, d_opt = _optimizer(trainer, "G", G), (_optimizer(trainer, "D", D) if D is not None else None)
    data, indices = trainer.data, _indices(trainer.sampler, trainer.device)
    lam, task = trainer.objective.options.l1_weight, trainer.objective.task

    def step():
        batch = data.batch(indices())
        x, y = batch["A"], batch["B"]
        fake = task.run(G, {"x": x})
        loss = lam * F.l1_loss(fake, y)
        if D is not None:
            d_opt.zero_grad()
            (0.5 * (_bce(D(y, cond=x), True) + _bce(D(fake.detach(), cond=x), False))).backward()
            d_opt.step()
            loss = loss + _bce(D(fake, cond=x), True)
        g_opt.zero_grad()
        loss.backward()
        g_opt.step()

    step.nets, step.optimizers = nets, {"G": g_opt, "D": d_opt}
    return step


def plain_cyclegan_step(trainer: Trainer) -> Callable[[], None]:
    """CycleGAN as its reference trains it: both generators on LSGAN + 10·cycle + 5·identity, then both
    discriminators on real vs the step's fakes (no pool); fp32, eager, fresh copies, the recipe's
    optimisers, no EMA."""
    n = _plain_copies(trainer)
    g_opt, d_opt = _optimizer(trainer, "G", n["G_AB"], n["G_BA"]), _optimizer(trainer, "D", n["D_A"], n["D_B"])
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

    step.nets, step.optimizers = n, {"G": g_opt, "D": d_opt}
    return step


def plain_vae_step(trainer: Trainer) -> Callable[[], None]:
    """The VAE as Kingma & Welling train it: encode, reparameterise, decode, the negative ELBO (the
    recipe's decoder and β), one optimiser step of E and G together; fp32, eager, fresh copies, no EMA."""
    from .objectives.vae import negative_elbo

    nets = _plain_copies(trainer)
    E, G = nets["E"], nets["G"]
    opt = _optimizer(trainer, "G", E, G)
    data, indices, o = trainer.data, _indices(trainer.sampler, trainer.device), trainer.objective.options

    def step():
        x = data.batch(indices())["x"]
        mu, logvar = E(x)
        z = mu + (logvar / 2).exp() * torch.randn_like(mu)
        opt.zero_grad()
        negative_elbo(x, G(z, None), mu, logvar, o.beta, o.decoder, o.sigma)["loss"].backward()
        opt.step()

    step.nets, step.optimizers = nets, {"G": opt}
    return step


#: objective (or "gan" for every other noise-driven one) -> the plain PyTorch step gankit's is timed against
PLAIN_STEPS = {"gan": plain_gan_step, "pix2pix": plain_pix2pix_step, "cyclegan": plain_cyclegan_step,
               "vae": plain_vae_step}


def flops_per_image(step: Callable[[], None], batch_size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / batch_size  # per image of the G step's batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def window_steps(phases, steps: int) -> int:
    """Steps per timed window: ``steps`` rounded up to a multiple of every phase's interval (their least
    common multiple), so each window holds every lazy phase in proportion (R1 every 16 steps: 16 steps
    hold exactly one R1 step wherever the window starts). A median over windows of 5 steps left them out."""
    every = math.lcm(*(p.every for p in phases))
    return every * math.ceil(steps / every)


def _load() -> Optional[float]:
    """The 1-minute load average, None where the system has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _growth(trainer: Trainer) -> Optional[str]:
    """The resolution (and fade) a growing G trains at now, e.g. "4×4" or "8×8 fading in (α 0.40)"; None
    for a network that does not grow."""
    G = trainer.nets.get("G")
    if G is None or not hasattr(G, "growth") or not hasattr(G, "h0"):
        return None
    stage, alpha = G.growth()
    text = f"{G.h0 * 2 ** stage}×{G.w0 * 2 ** stage}"
    return text + (f" fading in (α {alpha:.2f})" if alpha < 1 else "")


def bench(recipe: str, overrides: Optional[List[str]] = None, windows: int = 7, steps_per_window: int = 5,
          warmup: int = 3) -> Dict[str, float | str]:
    """Measure one recipe; returns a dict of figures (see module docstring). ``warmup``: untimed steps
    of each side first; on CUDA at least 3 more than the Trainer's eager steps before graph capture.
    ``steps_per_window`` is rounded up to a multiple of the phases' intervals (:func:`window_steps`).

    A recipe's ``train.threads`` holds for its own row only (its matmul peaks are measured at that
    count too): torch's thread count is restored when the row is done, also on an error."""
    threads_before = torch.get_num_threads()
    try:
        return _bench(recipe, overrides, windows, steps_per_window, warmup)
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)


def _bench(recipe, overrides, windows, steps_per_window, warmup):
    cfg = load_config(recipe, list(overrides or []) + ["train.steps=1000000", "train.log_every=1000000"])
    trainer = Trainer(cfg)
    device = trainer.device
    baseline = plain_step(trainer)
    batch = cfg.train.batch_size
    ours_fn = trainer.train_step
    steps = window_steps(trainer.phases, steps_per_window)
    if device.type == "cuda":
        # Past the capture of every set of phases: each runs eagerly WARMUP_STEPS times first, and a
        # phase every N steps (a lazy regulariser) comes round once per N steps.
        every = max(p.every for p in trainer.phases)
        warmup = max(warmup, (WARMUP_STEPS + 1) * every + 3)
    for _ in range(warmup):
        ours_fn()
        baseline()
    _sync(trainer.device)
    load_before, stage_before = _load(), _growth(trainer)
    times = {"ours": [], "plain": []}
    for _ in range(windows):
        for name, fn in (("ours", ours_fn), ("plain", baseline)):
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(trainer.device)
            times[name].append((time.perf_counter() - t0) / steps)
    load_after, stage_after = _load(), _growth(trainer)
    trainer.pop_stats()
    flops = flops_per_image(baseline, batch)
    ours_s, plain_s = statistics.median(times["ours"]), statistics.median(times["plain"])
    ratios = [p / o for o, p in zip(times["ours"], times["plain"])]  # each window against the plain one after it
    threads = torch.get_num_threads()  # the row's: the peaks below are measured at this count
    peak32 = matmul_peak_gflops(torch.float32, device)
    peak16 = matmul_peak_gflops(torch.bfloat16, device)
    ours_gflops = flops * batch / ours_s / 1e9
    plain_gflops = flops * batch / plain_s / 1e9
    peak_ours = peak32 if trainer.precision == "fp32" else peak16  # fp16: the same tensor-core rate as bf16
    loads = [x for x in (load_before, load_after) if x is not None]
    timed_at = stage_before if stage_before == stage_after else f"{stage_before} to {stage_after}"
    return {
        "recipe": cfg.name, "precision": trainer.precision, "batch": batch, "device": device_name(device),
        "cuda_graphs": bool(getattr(trainer, "cuda_graphs", False)),
        "ours_img_s": batch / ours_s, "plain_img_s": batch / plain_s, "speedup": plain_s / ours_s,
        "speedup_min": min(ratios), "speedup_max": max(ratios), "windows": windows, "steps_per_window": steps,
        "timed_at": timed_at,
        "mflop_per_img": flops / 1e6, "ours_gflops": ours_gflops, "plain_gflops": plain_gflops,
        "peak_fp32_gflops": peak32, "peak_bf16_gflops": peak16,
        "ours_peak_frac": ours_gflops / peak_ours, "plain_peak_frac": plain_gflops / peak32,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": threads, "cores": usable_cores(), "load_avg": max(loads) if loads else None,
        "plain_omits": extra_work(cfg),
    }


def extra_work(cfg) -> List[str]:
    """What gankit's step of ``cfg`` does that the plain step does not (the speed-up pays for them),
    from the config: regularisers (gradient penalty, drift, R1: with their interval), weight clipping,
    a relativistic loss's real batch in G's step, DiffAugment, EMA and the objective's own work
    (``Objective.extra_work``). The optimisers are not listed: the plain step uses the recipe's."""
    from .losses import LOSSES
    from .objectives import OBJECTIVES, parse_options

    work = [r.name + (f" every {r.every}" if r.every > 1 else "") for r in cfg.loss.regularizers]
    if cfg.loss.clip_d_weights is not None:
        work.append(f"weight clipping at {cfg.loss.clip_d_weights:g}")
    if cfg.loss.name in LOSSES and getattr(LOSSES.get(cfg.loss.name), "relativistic", False):
        work.append(f"{cfg.loss.name}: D on a real batch in G's step")
    if cfg.loss.augment:
        work.append(f"augment {cfg.loss.augment}")
    objective = OBJECTIVES.get(cfg.loss.objective)
    work += objective.extra_work(cfg, parse_options(objective, cfg.loss.options))
    if cfg.train.ema:
        work.append("EMA")
    return work


def write_rows(rows: List[Dict[str, float | str]], out: IO[str]) -> None:
    """Append ``rows``' raw figures to ``out`` as JSON lines, one a row, flushed (a row survives a later crash)."""
    for row in rows:
        out.write(json.dumps(row) + "\n")
    out.flush()


def _percent(frac: float) -> str:
    """Small GPU fractions (a 28×28 DCGAN uses well under 1 % of an H200) keep a digit; 100 % and more
    means the matmul peak was measured low (other processes shared the device then): shown capped."""
    if frac >= 1:
        return ">100%: peak measured low"
    return f"{100 * frac:.0f}%" if frac >= 0.1 else f"{100 * frac:.1f}%"


def loaded(row: Dict[str, float | str]) -> bool:
    """Whether other processes competed for the CPU while ``row`` was timed: the 1-minute load average
    exceeded the cores this process may use (bench itself adds its own thread count to it)."""
    load = row.get("load_avg")
    return load is not None and load > row.get("cores", usable_cores())


def format_table(rows: List[Dict[str, float | str]]) -> str:
    head = ("| recipe | device | precision | CUDA graphs | batch | gankit img/s | plain fp32 img/s | "
            "speed-up (min–max of windows) | MFLOP/img | gankit GFLOP/s (% of peak) | plain GFLOP/s (% of fp32 peak) | "
            "peak fp32 / bf16 GFLOP/s | process peak RSS MB |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        graphs = ("on" if r["cuda_graphs"] else "off") if not r["device"].startswith("CPU") else "-"
        name = r["recipe"] + (f" (timed at {r['timed_at']})" if r.get("timed_at") else "")
        spread = f" ({r['speedup_min']:.2f}–{r['speedup_max']:.2f})" if "speedup_min" in r else ""
        lines.append(
            f"| {name} | {r['device']} | {r['precision']} | {graphs} | {r['batch']} | "
            f"{r['ours_img_s']:.0f} | {r['plain_img_s']:.0f} | "
            f"{r['speedup']:.2f}x{spread} | {r['mflop_per_img']:.1f} | {r['ours_gflops']:.1f} ({_percent(r['ours_peak_frac'])}) | "
            f"{r['plain_gflops']:.1f} ({_percent(r['plain_peak_frac'])}) | "
            f"{r['peak_fp32_gflops']:.0f} / {r['peak_bf16_gflops']:.0f} | {r['peak_rss_mb']:.0f} |")
    omits = [f"{r['recipe']}: {', '.join(r['plain_omits'])}" for r in rows if r.get("plain_omits")]
    if omits:
        lines.append("\nThe plain step omits what gankit's step also does (the speed-up pays for it; FLOPs are the "
                     "plain step's): " + "; ".join(omits) + ". Peak RSS is the process's highest so far.")
    busy = [r for r in rows if loaded(r)]
    if busy:
        lines.append(f"\nwarning: the machine was loaded while timing {', '.join(r['recipe'] for r in busy)} (load "
                     f"average up to {max(r['load_avg'] for r in busy):.1f} on {busy[0].get('cores')} cores): other "
                     "processes shared the CPU, so these ratios are unreliable (see their min–max); rerun on an idle "
                     "machine.")
    return "\n".join(lines)
