"""Semi-supervised GAN (Salimans et al. 2016, Sec. 5) against its classifier trained on the labels alone.

    python benchmarks/semi_supervised.py [--steps 6000] [--seeds 0 1 2] [--labels-per-class 10]

Per seed s: (1) the recipe ssgan-fashion-mnist for --steps steps (D: supervised cross-entropy on the
labelled batch + the unsupervised GAN loss; G: feature matching); (2) the baseline: the same recipe
with loss.options.unsup_weight=0 — the same D architecture, optimiser, labelled batches and number of
D steps, trained by supervised cross-entropy on the labelled images alone (no G step). Both use
seed=s and label_seed=s (the labelled subset changes with the seed, and is the same for the two).
Both are scored on the whole Fashion-MNIST test split (10,000 images): accuracy of the argmax of D's
K logits, eval mode. One torch thread each (train.threads=1), runs one after the other.

Prints a table (mean ± std over seeds, then each seed) and writes the raw numbers to
benchmarks/results/semi_supervised/ (seed<s>-<steps>steps.json per seed, summary-<steps>steps.json). Run folders go to a
temporary directory (--keep DIR to keep them).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "semi_supervised"


def run_one(steps: int, seed: int, labels_per_class: int, unsup_weight, out: Path, extra=()) -> dict:
    from gankit.config import load_config
    from gankit.train.run import train

    overrides = [f"seed={seed}", f"loss.options.label_seed={seed}", f"loss.options.labels_per_class={labels_per_class}",
                 f"train.steps={steps}", "train.threads=1", "train.minutes=null", "health.enabled=false",
                 "train.checkpoint_minutes=null", f"train.checkpoint_every={steps}", "train.log_every=500",
                 f"train.sample_every={steps}", *extra]
    if unsup_weight is not None:
        overrides.append(f"loss.options.unsup_weight={unsup_weight}")
    cfg = load_config("ssgan-fashion-mnist", overrides)
    tic = time.monotonic()
    run = train(cfg, out=out, quiet=True)
    seconds = time.monotonic() - tic
    obj = run.trainer.objective
    acc = obj.evaluate_model(cfg.data, "test")["accuracy"]
    return {"accuracy": acc, "train_seconds": round(seconds, 1), "steps": run.trainer.state.step,
            "overrides": overrides, "labelled_index": obj.lab_index.tolist()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6000, help="G steps (= D steps) per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--labels-per-class", type=int, default=10)
    ap.add_argument("--keep", default=None, help="keep the run folders here")
    ap.add_argument("--set", nargs="*", default=[], help="further config overrides for both runs")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ssgan-bench-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"runs in {base}; {args.steps} steps; labels per class {args.labels_per_class}; "
          f"load {os.getloadavg()[0]:.1f} (CPU shared with other jobs)", flush=True)
    # file names: seed0-6000steps.json, summary-6000steps.json (-l5: 5 labels per class)
    tag = f"-{args.steps}steps" + ("" if args.labels_per_class == 10 else f"-l{args.labels_per_class}")
    rows = []
    for s in args.seeds:
        r = {"seed": s}
        r["ssgan"] = run_one(args.steps, s, args.labels_per_class, None, base / f"ssgan-s{s}", args.set)
        print(f"seed {s}: ssgan {100 * r['ssgan']['accuracy']:.2f}% ({r['ssgan']['train_seconds']:.0f} s)", flush=True)
        r["baseline"] = run_one(args.steps, s, args.labels_per_class, 0, base / f"baseline-s{s}", args.set)
        print(f"seed {s}: baseline {100 * r['baseline']['accuracy']:.2f}% ({r['baseline']['train_seconds']:.0f} s)",
              flush=True)
        assert r["ssgan"]["labelled_index"] == r["baseline"]["labelled_index"]
        (RESULTS / f"seed{s}{tag}.json").write_text(json.dumps(r, indent=1) + "\n")
        rows.append(r)

    def col(name):
        return [100 * r[name]["accuracy"] for r in rows]

    def ms(v):
        return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"

    gain = [a - b for a, b in zip(col("ssgan"), col("baseline"))]
    n_lab = 10 * args.labels_per_class
    print(f"\nFashion-MNIST test accuracy (%), {n_lab} labels, {args.steps} steps, 10,000 test images")
    print(f"| {'model':<40} | {'mean ± std':>14} | " + " | ".join(f"seed {r['seed']:>2}" for r in rows) + " |")
    print(f"|{'-' * 42}|{'-' * 16}|" + "|".join("-" * 9 for _ in rows) + "|")
    for label, v in (("ssgan (feature matching)", col("ssgan")),
                     (f"baseline: same D on the {n_lab} labels alone", col("baseline")),
                     ("gain (points)", gain)):
        print(f"| {label:<40} | {ms(v):>14} | " + " | ".join(f"{x:>7.2f}" for x in v) + " |")
    summary = {"steps": args.steps, "labels": n_lab, "seeds": args.seeds, "ssgan": col("ssgan"),
               "baseline": col("baseline"), "gain": gain, "extra": args.set,
               "command": "python benchmarks/semi_supervised.py " + " ".join(sys.argv[1:])}
    (RESULTS / f"summary{tag}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nraw results: {RESULTS}")


if __name__ == "__main__":
    main()
