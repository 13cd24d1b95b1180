"""Image-to-image translation on held-out data: Pix2Pix against L1 alone, CycleGAN and its ablations.

Every entry trains for the same ``--minutes`` of training-step wall time (``train.minutes``),
one run per seed, ``--parallel`` runs at a time with one thread each, then is scored on the
held-out test split by ``gankit.evaluation.evaluate_translation``:

    pix2pix        pix2pix-edges2fashion (U-Net + PatchGAN, L1 λ = 100)
    l1-only        the same U-Net trained on L1 alone (loss.options.adversarial: false)
    cyclegan       cyclegan-digits2mnist (cycle λ = 10, identity 0.5·λ, pool 50)
    no-cycle       CycleGAN without the cycle loss (cycle_weight 0, which also removes the identity
                   term, weighted λ·λ_id): the paper's "GAN alone"
    no-identity    CycleGAN without the identity loss

Scores per direction: PSNR and SSIM against paired targets; FID/KID of the outputs against the
target domain's held-out images on its domain features, and of the untranslated inputs
(``fid_input``); content kept (the target domain's classifier agrees with the source label).
Raw results go to ``--out``/results.jsonl as they arrive (``--report-only`` rebuilds the table),
each run's eval.json, config.yaml and metrics.jsonl to ``--out``/ENTRY-seedS/ and sample strips
(input | output | target) to ``--out``/strips/; all of it is tracked in git. The run folders
themselves (checkpoints) go to ``--runs`` (default runs/benchmarks/translation, ignored).

    python benchmarks/translation.py                                  # 15 min x 3 seeds x 5 entries
    python benchmarks/translation.py --minutes 10 --jobs pix2pix:0 l1-only:0 pix2pix:1 l1-only:1 pix2pix:2 \\
        l1-only:2 cyclegan:0 cyclegan:1 cyclegan:2 no-cycle:0 no-identity:0   # the 11 runs of the docs' table
    python benchmarks/translation.py --entries pix2pix l1-only --minutes 5 --seeds 0 1 2
    python benchmarks/translation.py --minutes 0.5 --seeds 0 --n 500   # a quick look
    python benchmarks/translation.py --jobs cyclegan:2 no-cycle:0      # chosen (entry, seed) pairs
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import mean_std  # noqa: E402  (benchmarks/stats.py)

ENTRIES = {
    "pix2pix": ("pix2pix-edges2fashion", []),
    "l1-only": ("pix2pix-edges2fashion", ["loss.options.adversarial=false"]),
    "cyclegan": ("cyclegan-digits2mnist", []),
    "no-cycle": ("cyclegan-digits2mnist", ["loss.options.cycle_weight=0"]),
    "no-identity": ("cyclegan-digits2mnist", ["loss.options.identity_weight=0"]),
}
SHOWN = ("fid", "psnr", "ssim", "content_kept", "fid_input")


#: what of a run folder is kept beside results.jsonl (the checkpoints are not)
KEPT = ("eval.json", "config.yaml", "metrics.jsonl")


def worker(entry: str, seed: int, minutes: float, n, out: Path, runs: Path = Path("runs/benchmarks/translation")) -> dict:
    """Train one entry for ``minutes`` on one thread, score it, write its strip; returns the record."""
    import torch

    torch.set_num_threads(1)
    from gankit.api import load
    from gankit.evaluation import evaluate_translation
    from gankit.train.run import train

    recipe, overrides = ENTRIES[entry]
    run_dir = runs / f"{entry}-seed{seed}"
    t0 = time.time()
    run = train(recipe, overrides + [f"seed={seed}", f"train.minutes={minutes}", "train.threads=1"],
                out=run_dir, quiet=True)
    model = load(run_dir)
    results = evaluate_translation(model, n=n, seed=0, write=True)
    write_strips(model, out / "strips", f"{entry}-seed{seed}")
    keep_raw(run_dir, out / f"{entry}-seed{seed}")
    return {"entry": entry, "recipe": recipe, "overrides": overrides, "seed": seed, "minutes": minutes,
            "steps": run.trainer.state.step, "train_seconds": round(run.trainer.state.seconds, 1),
            "wall_seconds": round(time.time() - t0, 1), "results": results}


def keep_raw(run_dir: Path, dest: Path) -> None:
    """Copy the run folder's raw files (``KEPT``) into the tracked results folder ``dest``."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, dest / name)


def write_strips(model, folder: Path, name: str, n: int = 8, per_row: int = 4) -> None:
    """The first ``n`` held-out images per direction as input | output [| target], ``per_row`` a row."""
    import torch

    from gankit.data import load_dataset
    from gankit.metrics.translation import oriented
    from gankit.viz.grids import save_translation_grid

    data = load_dataset(model.cfg.data, "test", seed=model.cfg.seed)
    for direction, task in model.objective.tasks().items():
        d = oriented(data, task)
        batch = d.batch(torch.arange(n))
        y = model.translate(batch["A"], direction)
        save_translation_grid(batch["A"], y, folder / f"{name}-{direction}.png",
                              targets=batch["B"] if d.paired else None, per_row=per_row, min_width=1200)


def summarise(records: list) -> str:
    by_entry: dict = {}
    for r in records:
        by_entry.setdefault(r["entry"], []).append(r)
    lines = ["| entry | direction | seeds | G steps | " + " | ".join(SHOWN) + " |",
             "|---" * (4 + len(SHOWN)) + "|"]
    for entry in ENTRIES:
        runs = by_entry.get(entry)
        if not runs:
            continue
        dirs = [k for k in runs[0]["results"] if k != "protocol"]
        for d in dirs:
            cells = [mean_std([r["results"][d].get(key) for r in runs], ".3g", ".2g", "") for key in SHOWN]
            steps = statistics.mean(r["steps"] for r in runs)
            lines.append(f"| {entry} | {d} | {len(runs)} | {steps:,.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", nargs="+", default=list(ENTRIES), choices=list(ENTRIES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", nargs="+", default=None, metavar="ENTRY:SEED",
                   help="run exactly these (entry, seed) pairs, in this order, instead of --entries x --seeds")
    p.add_argument("--minutes", type=float, default=15.0, help="training minutes per run (default 15)")
    p.add_argument("--n", type=int, default=None, help="held-out images scored (default: the whole test split)")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time, one thread each (default 2)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/translation"),
                   help="raw results, kept files of each run and strips (tracked; default %(default)s)")
    p.add_argument("--runs", type=Path, default=Path("runs/benchmarks/translation"),
                   help="the run folders with their checkpoints (ignored by git; default %(default)s)")
    p.add_argument("--report-only", action="store_true", help="rebuild the table from results.jsonl")
    p.add_argument("--strips-only", action="store_true", help="rebuild the sample strips from the saved runs")
    p.add_argument("--worker", nargs=2, metavar=("ENTRY", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    if args.worker:
        record = worker(args.worker[0], int(args.worker[1]), args.minutes, args.n, args.out, args.runs)
        with open(results_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        return
    if args.strips_only:
        from gankit.api import load
        for run_dir in sorted(args.runs.iterdir()):
            write_strips(load(run_dir), args.out / "strips", run_dir.name)
        return
    if not args.report_only:
        jobs = [(e, s) for s in args.seeds for e in args.entries]
        if args.jobs:
            jobs = [(j.split(":")[0], int(j.split(":")[1])) for j in args.jobs]
            unknown = [e for e, _ in jobs if e not in ENTRIES]
            if unknown:
                p.error(f"--jobs: unknown entry {unknown[0]!r}; entries: {', '.join(ENTRIES)}")
        running: list = []
        while jobs or running:
            while jobs and len(running) < args.parallel:
                e, s = jobs.pop(0)
                cmd = [sys.executable, __file__, "--worker", e, str(s), "--minutes", str(args.minutes),
                       "--out", str(args.out), "--runs", str(args.runs)] + (["--n", str(args.n)] if args.n else [])
                print(f"start {e} seed {s}", flush=True)
                running.append(((e, s), subprocess.Popen(cmd)))
            time.sleep(2)
            for job in list(running):
                if job[1].poll() is not None:
                    running.remove(job)
                    print(f"done {job[0][0]} seed {job[0][1]} (exit {job[1].returncode})", flush=True)
    records = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    table = summarise(records)
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
