"""The Fashion-MNIST GAN variants for the same training time: FID, KID, precision/recall as time goes on.

Every recipe trains for ``--minutes`` of training-step wall time (``train.minutes``; its own
step/epoch bounds are lifted, schedules stretch to fit; set-up, grids and scoring are not
counted) with ``--threads`` torch threads, after ``--warmup`` seconds of discarded training.
Recipes alternate within a seed (one process runs its second seed in the opposite order)
so a slow patch of the machine hits all of them. At each ``--marks`` minute the sampling generator (the EMA of G
where a recipe keeps one) is copied; after training each copy draws ``--n`` samples from the
same noise (a conditional G draws the classes in turn) that are scored like
``benchmarks/quality_vs_time.py`` scores the main job: domain-feature FID, KID and
precision/recall against the 10,000 test images, 32x32 samples cropped back to 28x28 (the
padding is exactly invertible). Each recipe's settings are the ones it ships with.

Each run appends its rows (one JSON object per mark) to ``OUT/rows.jsonl`` the moment it is
scored; that file is the raw result the docs' tables come from and is tracked in git (commit it
with the tables). A (recipe, seed, minutes) already there is not repeated, so the benchmark
resumes after an interruption, and two processes with different ``--seeds`` can share one ``OUT``
(one per core: ``--threads 1``). ``--report-only`` rebuilds the tables, the plot
(``OUT/fashion.png``) and a sheet of samples, one row of each recipe's seed-0 grid
(``OUT/samples.png``), from ``OUT/rows.jsonl`` (and the older ``OUT/runs/*.json`` layout, if
present) and ``OUT/grids``.

    python benchmarks/fashion.py --seeds 0 & python benchmarks/fashion.py --seeds 1   # ~75 min, 2 cores
    python benchmarks/fashion.py --report-only
    python benchmarks/fashion.py --recipes dcgan-fashion-mnist --minutes 0.5 --marks 0.5 --n 1000 --seeds 0 \\
        --warmup 0 --out /tmp/look                                                     # a quick look
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_vs_time import save_grid, score, train_with_snapshots  # noqa: E402  (benchmarks/quality_vs_time.py)
from stats import mean_std  # noqa: E402

#: the GAN variants of docs/variants.md, then the paper-settings DCGAN and the main job as references
RECIPES = ["gan-mnist", "lsgan-fashion-mnist", "wgan-fashion-mnist", "wgan-gp-fashion-mnist",
           "cgan-fashion-mnist", "acgan-fashion-mnist", "sngan-fashion-mnist", "sagan-fashion-mnist",
           "diffaug-fashion-mnist", "dcgan-fashion-mnist", "fast-fashion-mnist"]


def image_recipes() -> list[str]:
    """``--recipes all``: every shipped CPU recipe on Fashion-MNIST whose generator this protocol can
    sample (the style generators, BigGAN, the VAE and the anomaly detectors have benchmarks of their own)."""
    from gankit.config import load_config
    from gankit.recipes import recipe_names
    from quality_vs_time import SAMPLED_AS_GAN

    cfgs = {n: load_config(n) for n in recipe_names() if not n.endswith("-gpu")}
    return [n for n, c in cfgs.items() if c.data.name == "fashion-mnist" and c.loss.objective in ("gan", *SAMPLED_AS_GAN)]


def rows_path(out: Path) -> Path:
    """The raw rows of every run in ``out``, one JSON object a line (tracked: see .gitignore)."""
    return out / "rows.jsonl"


def done(out: Path, recipe: str, seed: int, minutes: float) -> bool:
    """Whether ``out`` already holds the rows of ``recipe`` at ``seed`` trained for ``minutes``."""
    if (out / "runs" / f"{recipe}-seed{seed}.json").exists():  # the older layout: one file per run
        return True
    return any(r["entry"] == recipe and r["seed"] == seed and math.isclose(r.get("minutes", -1), minutes)
               for r in load_rows(out))


def run_one(recipe: str, seed: int, args) -> list:
    """Train one recipe for ``args.minutes``, score every mark, save a grid; return the rows."""
    cfg, snaps, totals = train_with_snapshots(recipe, [], seed, args.minutes, args.marks, args.threads)
    rows = []
    for mark, seconds, step, G, _raw in snaps:
        rows.append({"entry": recipe, "seed": seed, "minutes": args.minutes, "n": args.n, "split": "test",
                     "features": "domain", "mark_min": mark, "train_s": round(seconds, 2), "step": step,
                     "d_steps_per_g": cfg.train.d_steps, **totals,
                     **score(cfg, G, args.n, args.metrics, totals["num_classes"])})
        print(f"  {json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()})}",
              file=sys.stderr, flush=True)
    save_grid(cfg, snaps[-1][3], totals["num_classes"], args.out / "grids" / f"{recipe}-seed{seed}.png")
    with open(rows_path(args.out), "a") as f:  # one write per run: two processes may share OUT
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def load_rows(out: Path) -> list:
    """Every raw row in ``out``: ``rows.jsonl``, then any run files of the older ``runs/`` layout."""
    path = rows_path(out)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return rows + [r for p in sorted((out / "runs").glob("*.json")) for r in json.loads(p.read_text())]


def print_tables(rows: list, minutes: float, n: int) -> None:
    last = [r for r in rows if math.isclose(r["mark_min"], minutes)]
    order = ranked(rows, minutes)
    print(f"\nFashion-MNIST at {minutes:g} minutes of training (mean ± std over seeds); {n} samples vs the test "
          f"split, domain features; best FID first\n")
    print("| recipe | seeds | FID | KID | precision | recall | G steps (× D steps) | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    for e in order:
        rs = [r for r in last if r["entry"] == e]
        col = lambda k, f=".2f": mean_std([r.get(k) for r in rs], f)  # noqa: E731
        print(f"| `{e}` | {len(rs)} | {col('fid')} | {col('kid', '.3f')} | {col('precision', '.3f')} | "
              f"{col('recall', '.3f')} | {statistics.mean(r['steps'] for r in rs):,.0f} (× {rs[0]['d_steps_per_g']}) "
              f"| {statistics.mean(r['images_per_s'] for r in rs):,.0f} |")
    marks = sorted({r["mark_min"] for r in rows})
    print("\nFID at each mark (mean ± std over seeds)\n")
    print("| recipe | " + " | ".join(f"{m:g} min" for m in marks) + " |")
    print("|---|" + "---|" * len(marks))
    for e in order:
        cells = [mean_std([r["fid"] for r in rows if r["entry"] == e and r["mark_min"] == m]) for m in marks]
        print(f"| `{e}` | " + " | ".join(cells) + " |")


def ranked(rows: list, minutes: float) -> list:
    """The recipes, best mean FID at ``minutes`` first."""
    last = [r for r in rows if math.isclose(r["mark_min"], minutes)]
    return sorted({r["entry"] for r in last}, key=lambda e: statistics.mean(r["fid"] for r in last if r["entry"] == e))


def sample_sheet(order: list, out: Path, seed: int = 0) -> None:
    """OUT/samples.png: the first row of each recipe's grid of seed ``seed`` (the same noise for every
    recipe; a conditional G's classes 0-7), one recipe a row, in ``order``."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from gankit.utils import atomic_write_bytes

    strips = []
    for e in order:
        path = out / "grids" / f"{e}-seed{seed}.png"
        if path.exists():
            grid = np.asarray(Image.open(path).convert("L"))
            tile = (grid.shape[1] - 2) // 8 - 2          # 8 tiles a row, 2 px apart (viz.grids.image_grid)
            strips.append((e, grid[:tile + 4]))
    if not strips:
        return
    fig, axes = plt.subplots(len(strips), 1, figsize=(6, 0.8 * len(strips)), squeeze=False)
    for ax, (e, strip) in zip(axes[:, 0], strips):
        ax.imshow(strip, cmap="gray", vmin=0, vmax=255, aspect="auto", interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(e.removesuffix("-fashion-mnist"), rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(h_pad=0.2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out / "samples.png", buf.getvalue())


def plot(rows: list, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    from gankit.utils import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(8, 5))
    entries = sorted({r["entry"] for r in rows})
    colours = plt.get_cmap("tab20")
    for i, e in enumerate(entries):
        marks = sorted({r["mark_min"] for r in rows if r["entry"] == e})
        xs = [statistics.mean(r["train_s"] / 60 for r in rows if r["entry"] == e and r["mark_min"] == m) for m in marks]
        ys = [statistics.mean(r["fid"] for r in rows if r["entry"] == e and r["mark_min"] == m) for m in marks]
        ref = e in ("dcgan-fashion-mnist", "fast-fashion-mnist")
        ax.plot(xs, ys, marker="o", lw=2.2 if ref else 1.2, ls="-" if ref else "--", color=colours(i % 20),
                label=e.removesuffix("-fashion-mnist"))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("training wall time (minutes, one CPU thread)")
    ax.set_ylabel("FID, domain features (log scale, lower is better)")
    ax.set_title("Fashion-MNIST: the GAN variants at equal time (mean over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="*", default=RECIPES, help="recipe names, or 'all' (default: the variants, "
                   "dcgan-fashion-mnist and fast-fashion-mnist)")
    p.add_argument("--minutes", type=float, default=5.0, help="training wall time per run (default 5)")
    p.add_argument("--marks", type=float, nargs="*", default=None, help="minutes at which to score (default 1 2 MIN)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    p.add_argument("--n", type=int, default=10_000, help="generated samples scored per mark (default 10,000)")
    p.add_argument("--metrics", default="fid,kid,pr", help="gankit.metrics names (default fid,kid,pr)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds of discarded training first (default 30)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/fashion"), help="results folder")
    p.add_argument("--report-only", action="store_true", help="rebuild the tables and plot from OUT/rows.jsonl")
    args = p.parse_args(argv)
    if args.recipes == ["all"]:
        args.recipes = image_recipes()
    args.marks = sorted(set(args.marks or [m for m in (1, 2) if m < args.minutes] + [args.minutes]))
    if not math.isclose(args.marks[-1], args.minutes):
        p.error(f"--marks: the last mark must be --minutes ({args.minutes:g}), got {args.marks[-1]:g}")
    (args.out / "grids").mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        from gankit.recipes import recipe_names

        unknown = [r for r in args.recipes if r not in recipe_names()]
        if unknown:
            p.error(f"--recipes: unknown recipe {unknown[0]!r}; `gankit recipes` lists them")
        todo = [(s, r) for i, s in enumerate(args.seeds) for r in (args.recipes if i % 2 == 0 else args.recipes[::-1])
                if not done(args.out, r, s, args.minutes)]
        if todo and args.warmup > 0:  # the first run in a fresh process trained ~20 % slower without it
            train_with_snapshots(todo[0][1], [], 0, args.warmup / 60, [], args.threads)
        for seed, recipe in todo:
            run_one(recipe, seed, args)
    rows = load_rows(args.out)
    rows = [r for r in rows if any(math.isclose(x["mark_min"], args.minutes) for x in rows if x["entry"] == r["entry"])]
    if not rows:
        print(f"no runs of {args.minutes:g} minutes in {rows_path(args.out)}", file=sys.stderr)
        return 1
    print_tables(rows, args.minutes, args.n)
    plot(rows, args.out / "fashion.png")
    sample_sheet(ranked(rows, args.minutes), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
