"""GANomaly against a plain convolutional autoencoder: one Fashion-MNIST class held out of training,
scored as the anomaly on the full test split (AUROC), at equal wall time.

For each held-out class k and seed, the two shipped recipes are trained with
``data.exclude_classes=[k]`` for the same ``--minutes`` of training wall time on ``--threads``
threads, then loaded from their run folders (as ``gankit score`` does) and scored on all 10,000 test
images, the 1,000 of class k being the positives:

    ganomaly     ganomaly-fashion-mnist     (score: latent error |G_E(x) − E(x̂)|², Akcay et al. 2018)
    autoencoder  autoencoder-fashion-mnist  (the same encoder/decoder, MSE; score: reconstruction MSE)

and, with ``--entries``, two variants of the baseline (``autoencoder-l1``: L1 loss and score;
``autoencoder-adam1e-3``: Adam at 1e-3, β = (0.9, 0.999)) that check it is not weak by its settings.

Each run's numbers go to OUT/results.jsonl as they arrive (a killed benchmark resumes where it
stopped: finished runs are skipped); OUT/table.md holds the table. Runs are ordered seed by seed, so
a cut-short benchmark still has every class for the first seeds.

    python benchmarks/anomaly.py --minutes 0.5 --seeds 0 1 2 --threads 1
    python benchmarks/anomaly.py --minutes 0.5 --seeds 0 --threads 1 --entries autoencoder-l1 autoencoder-adam1e-3
    python benchmarks/anomaly.py --report-only
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# entry -> (recipe, overrides). The two variants check that the baseline is not weak by its settings:
# GANomaly's own L1 contextual loss as the only loss, and Adam at 1e-3 (the VAE recipe's settings).
ENTRIES = {"ganomaly": ("ganomaly-fashion-mnist", []),
           "autoencoder": ("autoencoder-fashion-mnist", []),
           "autoencoder-l1": ("autoencoder-fashion-mnist", ["loss.options.reconstruction=l1"]),
           "autoencoder-adam1e-3": ("autoencoder-fashion-mnist", ["train.g_optim.lr=1.0e-3",
                                                                  "train.g_optim.betas=[0.9, 0.999]"])}
DEFAULT = ["ganomaly", "autoencoder"]
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def run_one(entry: str, k: int, seed: int, args) -> dict:
    import torch

    from gankit.api import load
    from gankit.config import load_config
    from gankit.train.run import train

    recipe, extra = ENTRIES[entry]
    overrides = extra + [f"data.exclude_classes=[{k}]", f"seed={seed}", f"train.minutes={args.minutes}",
                         "train.steps=null", "train.epochs=null", f"train.threads={args.threads}",
                         "health.enabled=false", "train.checkpoint_minutes=null", "train.log_every=100000"]
    cfg = load_config(recipe, overrides)
    tmp = Path(tempfile.mkdtemp(prefix=f"anomaly-{entry}-{k}-{seed}-"))
    try:
        t0 = time.perf_counter()
        result = train(cfg, out=tmp / "run", quiet=True)
        train_s = time.perf_counter() - t0
        torch.set_num_threads(args.threads)
        model = load(tmp / "run")
        t1 = time.perf_counter()
        ev = model.objective.evaluate_model(model.cfg.data, "test")
        return {"entry": entry, "recipe": recipe, "held_out": k, "seed": seed, "minutes": args.minutes,
                "threads": args.threads, "steps": int(model.step), "train_s": round(train_s, 2),
                "score_s": round(time.perf_counter() - t1, 2), "auroc": ev["auroc"],
                "precision": result.trainer.precision if hasattr(result.trainer, "precision") else None}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mean_std(vals) -> tuple:
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def table(rows: list) -> str:
    entries = [e for e in ENTRIES if any(r["entry"] == e for r in rows)]
    by = {}
    for r in rows:
        by.setdefault((r["entry"], r["held_out"]), []).append(r)
    classes = sorted({r["held_out"] for r in rows})
    minutes = sorted({r["minutes"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"Fashion-MNIST, one class held out of training; AUROC on the full test split (10,000 images, the "
             f"held-out class positive); {'/'.join(f'{m:g}' for m in minutes)} min of training per run on "
             f"{rows[0]['threads']} thread(s); mean ± std over seeds {', '.join(map(str, seeds))}", "",
             "| held-out class | " + " | ".join(f"{e} AUROC" for e in entries) + " | " +
             " | ".join(f"{e} steps" for e in entries) + " |",
             "|---|" + "---|" * (2 * len(entries))]
    means = {e: [] for e in entries}
    for k in classes:
        cells, steps = [], []
        for e in entries:
            rs = by.get((e, k), [])
            if rs:
                m, s = mean_std([r["auroc"] for r in rs])
                means[e].append(m)
                cells.append(f"{m:.3f} ± {s:.3f} (n={len(rs)})")
                steps.append(f"{statistics.mean(r['steps'] for r in rs):.0f}")
            else:
                cells.append("—")
                steps.append("—")
        lines.append(f"| {k} {CLASSES[k]} | " + " | ".join(cells) + " | " + " | ".join(steps) + " |")
    full = all(len(means[e]) == len(classes) for e in entries)
    cells = [f"**{statistics.mean(v):.3f}**" if v else "—" for v in means.values()]
    lines.append(f"| mean over {len(classes)} classes{'' if full else ' (incomplete)'} | " + " | ".join(cells) +
                 " | " + " | ".join("" for _ in entries) + " |")
    # per-seed means over classes: how much the headline number moves with the seed
    per_seed = []
    for e in entries:
        vals = []
        for s in seeds:
            rs = [r["auroc"] for r in rows if r["entry"] == e and r["seed"] == s]
            if len(rs) == len(classes):
                vals.append(statistics.mean(rs))
        if vals:
            m, sd = mean_std(vals)
            per_seed.append(f"{e} {m:.3f} ± {sd:.3f} over {len(vals)} complete seed(s)")
    if per_seed:
        lines += ["", "Mean over the classes, per seed, then mean ± std over seeds: " + "; ".join(per_seed) + "."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=0.5, help="training wall time per run (train.minutes)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--classes", type=int, nargs="+", default=list(range(10)), help="held-out classes")
    p.add_argument("--entries", nargs="+", default=DEFAULT, choices=list(ENTRIES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "anomaly")
    p.add_argument("--report-only", action="store_true", help="print the table of OUT/results.jsonl")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    if not args.report_only:
        done = {(r["entry"], r["held_out"], r["seed"], r["minutes"], r["threads"]) for r in rows}
        for seed in args.seeds:
            for k in args.classes:
                for entry in args.entries:
                    if (entry, k, seed, args.minutes, args.threads) in done:
                        continue
                    row = run_one(entry, k, seed, args)
                    print(json.dumps(row), flush=True)
                    with path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    rows.append(row)
    if not rows:
        print(f"no results in {path}")
        return 1
    text = table(rows)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
