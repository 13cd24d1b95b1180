"""Sample quality against training wall time: a paper-settings DCGAN vs ``fast-fashion-mnist``.

Every entry trains for the same ``--minutes`` of training-step wall time on this machine
(``train.minutes``; set-up, sample grids and evaluation are not counted), one run per
seed, entries alternating within a seed (in the opposite order each seed) so a slow patch
of a shared machine hits all of them, after ``--warmup`` seconds of discarded training.
At each ``--marks`` minute the sampling generator is copied (at the last mark also G
itself when the recipe keeps an EMA, which gives the "no-ema" row of the same run for
free); after training every copy draws ``--n`` samples that are scored with
domain-feature FID, KID and precision/recall against the Fashion-MNIST test split.

Entries:
    baseline     dcgan-fashion-mnist with the DCGAN paper's settings (Adam 2e-4, β1 0.5,
                 batch 128, fp32, no EMA)
    fast         the fast-fashion-mnist recipe
    gpu          the fast-fashion-mnist-gpu recipe (with --device cuda)
    no-ema       fast's own run, scored with G instead of its EMA
    no-<name>    fast with one ingredient taken out, with-<name> one added (see ABLATIONS)
    --variant    any other overrides of fast, named on the command line

Results go to ``--out``/results.jsonl as they arrive (a later call with ``--report-only``
rebuilds the table and plot from it), the plot to ``--plot``.

    python benchmarks/quality_vs_time.py                           # 12 min x 3 seeds x 2 entries: ~80 min
    python benchmarks/quality_vs_time.py --entries no-extra-layers no-bf16 --seeds 0
    python benchmarks/quality_vs_time.py --minutes 2 --marks 1 2 --n 2000 --seeds 0   # a quick look
    python benchmarks/quality_vs_time.py --device cuda --entries gpu --minutes 2 --marks 1 2 --seeds 0 --warmup 0
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import mean_std  # noqa: E402  (benchmarks/stats.py)

BASELINE = ("dcgan-fashion-mnist", ["train.precision=fp32"])
FAST = ("fast-fashion-mnist", [])
GPU = ("fast-fashion-mnist-gpu", [])  # for a GPU: --device cuda
#: entry -> overrides of fast-fashion-mnist that take one ingredient out
ABLATIONS = {
    "no-bf16": ["train.precision=fp32"],
    "no-schedule": ["train.lr_schedule=constant"],
    "paper-batch": ["train.batch_size=128", "train.g_optim.lr=2e-4", "train.d_optim.lr=2e-4"],  # the paper's
    "with-diffaug": ["loss.augment=color,translation,cutout"],
    "no-extra-layers": ["model.g.extra_layers=0", "model.d.extra_layers=0"],  # the DCGAN paper's networks
}


#: objectives whose generator samples as a plain GAN's does: G(z, y), nothing kept beside it
SAMPLED_AS_GAN = ("acgan", "unrolled", "ssgan")

VARIANTS: dict = {}  # --variant NAME=key=value,key=value: fast with these overrides


def split_overrides(text: str) -> list:
    """"a=1,b=[0.0, 0.99],c={x: 1, y: 2}" -> ["a=1", "b=[0.0, 0.99]", "c={x: 1, y: 2}"]: commas inside brackets stay."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def entry_recipe(entry: str):
    if entry in VARIANTS:
        return FAST[0], FAST[1] + VARIANTS[entry]
    if entry == "baseline":
        return BASELINE
    if entry in ("fast", "no-ema"):
        return FAST
    if entry == "gpu":
        return GPU
    if entry in ABLATIONS:
        return FAST[0], FAST[1] + ABLATIONS[entry]
    raise SystemExit(f"--entries: unknown entry {entry!r}; choose baseline, fast, no-ema, gpu, {', '.join(ABLATIONS)}")


def train_with_snapshots(recipe: str, overrides: list, seed: int, minutes: float, marks: list, threads: int,
                         device: str = "cpu"):
    """Train ``minutes`` of step time; return [(mark, seconds, step, G_sampling, G_raw or None)] and totals."""
    from gankit.config import load_config
    from gankit.train.loop import Trainer

    cfg = load_config(recipe, overrides + [f"seed={seed}", f"train.minutes={minutes}", "train.steps=null",
                                           "train.epochs=null", f"train.device={device}"]
                      + ([f"train.threads={threads}"] if threads else []))
    trainer = Trainer(cfg)
    snaps, pending = [], sorted(marks)
    cpu0 = time.process_time()
    while not trainer.done():
        tic = time.monotonic()
        trainer.train_step()
        trainer.state.seconds += time.monotonic() - tic
        while pending and (trainer.state.seconds >= pending[0] * 60 or trainer.done()):
            raw = copy.deepcopy(trainer.nets["G"]).cpu().eval() if "G" in trainer.emas else None
            snaps.append((pending.pop(0), trainer.state.seconds, trainer.state.step,
                          copy.deepcopy(trainer.sampling_generator).cpu().eval(), raw))
    totals = {"steps": trainer.state.step, "total_train_s": trainer.state.seconds, "cpu_s": time.process_time() - cpu0,
              "images_per_s": trainer.state.step * cfg.train.batch_size * cfg.train.d_steps / trainer.state.seconds,
              "train_precision": trainer.precision, "num_classes": trainer.num_classes, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return cfg, snaps, totals


def score(cfg, G, n: int, metrics: str, num_classes: int = 0) -> dict:
    """Domain-feature metrics of ``n`` samples of ``G`` (a conditional G draws the classes in turn)."""
    from torch import nn

    from gankit.api import GAN
    from gankit.config import DataConfig
    from gankit.metrics.evaluate import Samples, evaluate_samples

    C, H = 1, cfg.data.resolution or 28
    if cfg.loss.objective in SAMPLED_AS_GAN:  # sampling needs the generation task, not the objective's own D
        cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, objective="gan", options={}))
    elif cfg.loss.objective != "gan":
        raise SystemExit(f"{cfg.name}: objective {cfg.loss.objective} keeps state its samples depend on (or makes no "
                         "samples); its own benchmark scores it (style_generators.py, gan_vs_vae.py, anomaly.py)")
    gan = GAN(cfg, {"G": G, "D": nn.Identity()}, {"kind": "image", "num_classes": num_classes,
                                                  "sample_shape": [C, H, H]}, step=0)
    x, _ = gan.sample(n, seed=12345)  # the same z for every entry and mark
    if x.shape[-1] == 32:  # recipes that pad 28 -> 32: crop back to the reference's 28x28 (exact inverse)
        x = x[..., 2:-2, 2:-2]
    samples = Samples(x.clamp(-1, 1), None, DataConfig(name=cfg.data.name, root=cfg.data.root), {"kind": "array"})
    return evaluate_samples(samples, metrics=metrics, split="test").scalars()


def save_grid(cfg, G, num_classes: int, path: Path) -> None:
    """64 samples of ``G`` from fixed noise (seed 7; a conditional G's classes in turn) as a PNG grid."""
    import torch

    from gankit.viz.grids import save_image_grid

    with torch.no_grad():
        z = torch.randn(64, cfg.model.z_dim, generator=torch.Generator().manual_seed(7))
        y = torch.arange(64) % num_classes if num_classes else None
        x = G(z, y).float()
    if x.dim() == 2:  # an MLP generator's flat output
        x = x.view(-1, 1, cfg.data.resolution or 28, cfg.data.resolution or 28)
    save_image_grid(x, path)


def run_entry(entry: str, seed: int, args, results_path: Path) -> list:
    from gankit.utils import atomic_write_text

    recipe, overrides = entry_recipe(entry)
    cfg, snaps, totals = train_with_snapshots(recipe, overrides, seed, args.minutes, args.marks, args.threads,
                                              args.device)
    rows = []
    for mark, seconds, step, G, raw in snaps:
        names = [("fast" if entry == "fast" else entry, G)]
        if entry == "fast" and raw is not None and mark == max(args.marks):  # the no-ema row: at the end only
            names.append(("no-ema", raw))
        for name, net in names:
            row = {"entry": name, "seed": seed, "mark_min": mark, "train_s": round(seconds, 2), "step": step,
                   **totals, **score(cfg, net, args.n, args.metrics, totals["num_classes"])}
            rows.append(row)
            print(f"  {json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})}",
                  file=sys.stderr, flush=True)
        if mark == max(args.marks) and args.grids:
            save_grid(cfg, G, totals["num_classes"], Path(args.grids) / f"{entry}-seed{seed}-{mark:g}min.png")
    old = results_path.read_text() if results_path.exists() else ""
    atomic_write_text(results_path, old + "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def warm_up(entry: str, args) -> None:
    """Train ``entry`` for ``args.warmup`` seconds and throw it away. The first run in a fresh
    process trained ~20 % slower than later ones (baseline seed 0: 1,296 and 1,286 images/s against
    1,620-1,750), which made whichever entry ran first look worse."""
    recipe, overrides = entry_recipe(entry)
    train_with_snapshots(recipe, overrides, seed=0, minutes=args.warmup / 60, marks=[], threads=args.threads,
                         device=args.device)
    print(f"warm-up: {args.warmup:g} s of {entry}, discarded", file=sys.stderr, flush=True)


def entries_in_order(rows: list) -> list:
    """baseline, fast, then the other entries as they first appear."""
    seen = list(dict.fromkeys(r["entry"] for r in rows))
    return [e for e in ("baseline", "fast") if e in seen] + [e for e in seen if e not in ("baseline", "fast")]


def summarise(rows: list, minutes: float) -> list:
    """One line per entry at the last mark: mean ± std over seeds of each value."""
    out = []
    for e in entries_in_order(rows):
        last = [r for r in rows if r["entry"] == e and r["mark_min"] == minutes]
        if not last:
            continue
        line = {"entry": e, "seeds": len(last)}
        for k in ("fid", "kid", "precision", "recall", "steps", "images_per_s", "peak_rss_mb"):
            vals = [r[k] for r in last if r.get(k) is not None]
            if vals:
                line[k] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0)
        out.append(line)
    return out


def print_table(summary: list, minutes: float, n: int) -> None:
    print(f"\nFashion-MNIST at {minutes:g} minutes of training (mean ± std over seeds); {n} samples vs the test "
          f"split, domain features\n")
    print("| entry | seeds | FID | KID | precision | recall | G steps | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    base = next((s for s in summary if s["entry"] == "baseline"), None)
    for s in summary:
        def pm(k, scale=1.0, spec=".2f"):
            if k not in s:
                return "-"
            m, d = s[k]
            return f"{m * scale:{spec}} ± {d * scale:{spec}}"
        fid = pm("fid")
        if base and "fid" in s and s is not base:
            fid += f" ({s['fid'][0] / base['fid'][0]:.2f}× the baseline's)"
        print(f"| {s['entry']} | {s['seeds']} | {fid} | {pm('kid', spec='.3f')} | {pm('precision', spec='.3f')} | "
              f"{pm('recall', spec='.3f')} | {s['steps'][0]:.0f} | {s['images_per_s'][0]:.0f} |")


def print_curve_table(rows: list) -> None:
    """FID (mean ± std over seeds) of every entry at every mark: the plot's numbers."""
    marks = sorted({r["mark_min"] for r in rows})
    print("\n| entry | " + " | ".join(f"{m:g} min" for m in marks) + " |")
    print("|---|" + "---|" * len(marks))
    for e in entries_in_order(rows):
        cells = [mean_std([r["fid"] for r in rows if r["entry"] == e and r["mark_min"] == m]) for m in marks]
        print(f"| {e} | " + " | ".join(cells) + " |")


def plot(rows: list, path: Path, minutes: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gankit.utils import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    others = iter(["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                   "tab:cyan", "tab:gray"])
    for e in entries_in_order(rows):
        marks = sorted({r["mark_min"] for r in rows if r["entry"] == e})
        mean, lo, hi, xs = [], [], [], []
        for m in marks:
            vals = [r["fid"] for r in rows if r["entry"] == e and r["mark_min"] == m]
            mu = statistics.mean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            xs.append(statistics.mean(r["train_s"] / 60 for r in rows if r["entry"] == e and r["mark_min"] == m))
            mean.append(mu), lo.append(mu - sd), hi.append(mu + sd)
        style = {"baseline": dict(color="black", lw=2), "fast": dict(color="tab:red", lw=2.5)}.get(e)
        style = style or dict(color=next(others, None), lw=1.2, ls="--")
        seeds = len({r["seed"] for r in rows if r["entry"] == e})
        ax.plot(xs, mean, marker="o", label=f"{e} ({seeds} seed{'s' * (seeds > 1)})", **style)
        if seeds > 1:
            ax.fill_between(xs, lo, hi, alpha=0.15, color=style.get("color"))
        if e == "baseline":  # the issue's goal: a third of the baseline's FID at equal time
            ax.plot(xs, [m / 3 for m in mean], color="gray", lw=1, ls=":", label="goal: baseline / 3")
    ax.set_yscale("log")
    from matplotlib.ticker import ScalarFormatter

    for axis in (ax.yaxis,):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("training wall time (minutes, 2-core CPU)")
    ax.set_ylabel("FID, domain features (log scale, lower is better)")
    ax.set_title("Fashion-MNIST 28x28: quality per minute (mean ± std over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", nargs="*", default=["baseline", "fast"],
                   help=f"baseline, fast (also scores no-ema) and ablations {', '.join(ABLATIONS)}")
    p.add_argument("--minutes", type=float, default=12.0, help="training wall time per run (default 12)")
    p.add_argument("--marks", type=float, nargs="*", default=None, help="minutes at which to score (default 1 2 4 8 12)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=10_000, help="generated samples scored per point (default 10,000)")
    p.add_argument("--metrics", default="fid,kid,pr")
    p.add_argument("--device", default="cpu", help="train.device of every run (default cpu; cuda for a GPU)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's, all cores)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/quality_vs_time"), help="folder for results.jsonl and grids")
    p.add_argument("--plot", type=Path, default=None, help="PNG of FID against minutes (default OUT/quality_vs_time.png)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE]",
                   help="an extra entry: fast-fashion-mnist with these overrides (repeatable)")
    p.add_argument("--warmup", type=float, default=30.0,
                   help="seconds of untimed training before the first run (the first run in a process trained "
                        "about 20 %% slower without it); 0 = none")
    p.add_argument("--report-only", action="store_true", help="rebuild table and plot from OUT/results.jsonl")
    args = p.parse_args(argv)
    args.marks = sorted(args.marks or [m for m in (1, 2, 4, 8, 12) if m < args.minutes] + [args.minutes])
    if args.marks[-1] != args.minutes:
        args.marks.append(args.minutes)
    args.out.mkdir(parents=True, exist_ok=True)
    args.grids = args.out / "grids"
    args.grids.mkdir(exist_ok=True)
    results = args.out / "results.jsonl"
    for v in args.variant:
        name, _, overrides = v.partition("=")
        VARIANTS[name] = split_overrides(overrides)
        args.entries.append(name)
    if not args.report_only:
        for e in args.entries:
            entry_recipe(e)
        runs = [e for e in args.entries if e != "no-ema"]  # no-ema is scored from fast's run
        if args.warmup > 0:
            warm_up(runs[0], args)
        for i, seed in enumerate(args.seeds):
            # Alternate the order so no entry always runs first in a slow or fast patch of the machine.
            for e in (runs if i % 2 == 0 else runs[::-1]):
                run_entry(e, seed, args, results)
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []
    rows = [r for r in rows if math.isclose(max(x["mark_min"] for x in rows if x["entry"] == r["entry"]), args.minutes)]
    summary = summarise(rows, args.minutes)
    print_table(summary, args.minutes, args.n)
    print_curve_table(rows)
    plot(rows, args.plot or args.out / "quality_vs_time.png", args.minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
