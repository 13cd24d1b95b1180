"""Semi-supervised GAN (Salimans et al. 2016, Sec. 5) against its classifier trained on the labels alone.

    python benchmarks/semi_supervised.py [--recipe ssgan-fashion-mnist] [--steps 6000] [--seeds 0 1 2]
        [--labels-per-class 10] [--eval-every N] [--tag NAME] [--reuse] [--set KEY=VALUE ...]

Per seed s: (1) the recipe (--recipe: ssgan-fashion-mnist, the mlp D; ssgan-conv-fashion-mnist, the
conv D) for --steps steps (D: supervised cross-entropy on the labelled batch + the unsupervised GAN
loss; G: feature matching); (2) the baseline: the same recipe and overrides with
loss.options.unsup_weight=0 — the same D architecture, optimiser, labelled batches and number of D
steps, trained by supervised cross-entropy on the labelled images alone (no G step). Both use seed=s
and label_seed=s (the labelled subset changes with the seed, and is the same for the two). Both are
scored on the whole Fashion-MNIST test split (10,000 images): accuracy of the argmax of D's K
logits, eval mode. One torch thread each (train.threads=1), runs one after the other.

--eval-every N also scores both every N steps (the accuracy curve, in the raw results; its seconds are
not counted in train_seconds). With train.ema (--set train.ema=0.999) the runs also keep an average
of D's weights, scored too ("accuracy_ema", and the curve's third column): what gankit eval scores.
--reuse keeps a seed whose raw file exists with the same settings (an interrupted benchmark goes on).

Prints a table (mean ± std over seeds, then each seed) and writes the raw numbers to
benchmarks/results/semi_supervised/ (seed<s>-<steps>steps.json per seed, summary-<steps>steps.json;
another recipe than ssgan-fashion-mnist, or --tag, prefixes them: conv-seed0-1500steps.json). Run
folders go to a temporary directory (--keep DIR to keep them).
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


from gankit.train.callback import Callback  # noqa: E402  (after the path insert)


class AccuracyCurve(Callback):
    """The test accuracy every ``every`` steps (at a log step: train.log_every = every), and its seconds."""

    def __init__(self, every: int):
        self.every, self.points, self.seconds = every, [], 0.0

    def on_log(self, run, record):
        step = run.trainer.state.step
        if self.every and step % self.every == 0:
            tic = time.monotonic()
            tr = run.trainer
            point = [step, tr.objective.evaluate_model(tr.cfg.data, "test")["accuracy"]]
            if "D" in tr.emas:  # train.ema: the averaged D too
                point.append(tr.objective.evaluate_model(tr.cfg.data, "test", D=tr.sampling_net("D"))["accuracy"])
            self.seconds += time.monotonic() - tic
            self.points.append(point)
            print(f"  step {step}: " + " / ".join(f"{100 * a:.2f}%" for a in point[1:]), flush=True)


def run_one(recipe: str, steps: int, seed: int, labels_per_class: int, unsup_weight, out: Path, extra=(),
            eval_every: int = 0) -> dict:
    from gankit.config import load_config
    from gankit.train.run import train

    overrides = [f"seed={seed}", f"loss.options.label_seed={seed}", f"loss.options.labels_per_class={labels_per_class}",
                 f"train.steps={steps}", "train.threads=1", "train.minutes=null", "health.enabled=false",
                 "train.checkpoint_minutes=null", f"train.checkpoint_every={steps}",
                 f"train.log_every={eval_every or 500}",
                 f"train.sample_every={steps}", *extra]
    if unsup_weight is not None:
        overrides.append(f"loss.options.unsup_weight={unsup_weight}")
    cfg = load_config(recipe, overrides)
    curve = AccuracyCurve(eval_every)
    tic = time.monotonic()
    run = train(cfg, out=out, quiet=True, callbacks=[curve] if eval_every else [])
    seconds = time.monotonic() - tic - curve.seconds
    obj = run.trainer.objective
    acc = obj.evaluate_model(cfg.data, "test")["accuracy"]
    out = {"accuracy": acc, "train_seconds": round(seconds, 1), "steps": run.trainer.state.step,
           "recipe": recipe, "overrides": overrides, "labelled_index": obj.lab_index.tolist()}
    if "D" in run.trainer.emas:  # train.ema: also the averaged D, as gankit.load / gankit eval rebuild it
        from gankit.api import load

        out["accuracy_ema"] = load(run.dir).objective.evaluate_model(cfg.data, "test")["accuracy"]
    if eval_every:
        out["curve"] = curve.points
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="ssgan-fashion-mnist",
                    help="an ssgan recipe (ssgan-conv-fashion-mnist: the conv D)")
    ap.add_argument("--steps", type=int, default=6000, help="G steps (= D steps) per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--labels-per-class", type=int, default=10)
    ap.add_argument("--keep", default=None, help="keep the run folders here")
    ap.add_argument("--set", nargs="*", default=[], help="further config overrides for both runs")
    ap.add_argument("--eval-every", type=int, default=0, help="also score both runs every N steps (0: at the end only)")
    ap.add_argument("--tag", default=None, help="prefix of the raw result files (default: the recipe's short name, "
                                                "none for ssgan-fashion-mnist)")
    ap.add_argument("--reuse", action="store_true", help="keep seeds whose raw results exist with the same settings")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ssgan-bench-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"runs in {base}; {args.recipe}; {args.steps} steps; labels per class {args.labels_per_class}; "
          f"load {os.getloadavg()[0]:.1f} (CPU shared with other jobs)", flush=True)
    # file names: seed0-6000steps.json, summary-6000steps.json (-l5: 5 labels per class)
    tag = f"-{args.steps}steps" + ("" if args.labels_per_class == 10 else f"-l{args.labels_per_class}")
    # other recipes: conv-seed0-2400steps.json (ssgan-conv-fashion-mnist)
    prefix = "" if args.recipe == "ssgan-fashion-mnist" else \
        args.recipe.removeprefix("ssgan-").removesuffix("-fashion-mnist") + "-"
    if args.tag:
        prefix = f"{args.tag}-"
    rows = []
    for s in args.seeds:
        raw = RESULTS / f"{prefix}seed{s}{tag}.json"
        if args.reuse and raw.exists():
            r = json.loads(raw.read_text())
            if r.get("extra", []) == args.set and r["ssgan"].get("recipe", "ssgan-fashion-mnist") == args.recipe:
                print(f"seed {s}: reused {raw.name}: ssgan {100 * r['ssgan']['accuracy']:.2f}%, "
                      f"baseline {100 * r['baseline']['accuracy']:.2f}%", flush=True)
                rows.append(r)
                continue
        r = {"seed": s, "extra": args.set}
        r["ssgan"] = run_one(args.recipe, args.steps, s, args.labels_per_class, None, base / f"ssgan-s{s}", args.set,
                             args.eval_every)
        print(f"seed {s}: ssgan {100 * r['ssgan']['accuracy']:.2f}% ({r['ssgan']['train_seconds']:.0f} s)", flush=True)
        r["baseline"] = run_one(args.recipe, args.steps, s, args.labels_per_class, 0, base / f"baseline-s{s}",
                                args.set, args.eval_every)
        print(f"seed {s}: baseline {100 * r['baseline']['accuracy']:.2f}% ({r['baseline']['train_seconds']:.0f} s)",
              flush=True)
        assert r["ssgan"]["labelled_index"] == r["baseline"]["labelled_index"]
        raw.write_text(json.dumps(r, indent=1) + "\n")
        rows.append(r)

    def col(name, key="accuracy"):
        return [100 * r[name][key] for r in rows]

    def ms(v):
        return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"

    n_lab = 10 * args.labels_per_class
    print(f"\nFashion-MNIST test accuracy (%), {args.recipe}, {n_lab} labels, {args.steps} steps, 10,000 test images")
    print(f"| {'model':<52} | {'mean ± std':>14} | " + " | ".join(f"seed {r['seed']:>2}" for r in rows) + " |")
    print(f"|{'-' * 54}|{'-' * 16}|" + "|".join("-" * 9 for _ in rows) + "|")
    summary = {"recipe": args.recipe, "steps": args.steps, "labels": n_lab, "seeds": args.seeds, "extra": args.set,
               "command": "python benchmarks/semi_supervised.py " + " ".join(sys.argv[1:])}
    keys = ["accuracy"] + (["accuracy_ema"] if all("accuracy_ema" in r["ssgan"] for r in rows) else [])
    for key in keys:
        what = "" if key == "accuracy" else ", averaged D"
        gain = [a - b for a, b in zip(col("ssgan", key), col("baseline", key))]
        for label, v in ((f"ssgan (feature matching){what}", col("ssgan", key)),
                         (f"baseline: same D on the {n_lab} labels alone{what}", col("baseline", key)),
                         (f"gain (points){what}", gain)):
            print(f"| {label:<52} | {ms(v):>14} | " + " | ".join(f"{x:>7.2f}" for x in v) + " |")
        suffix = "" if key == "accuracy" else "_ema"
        summary.update({f"ssgan{suffix}": col("ssgan", key), f"baseline{suffix}": col("baseline", key),
                        f"gain{suffix}": gain})
    (RESULTS / f"{prefix}summary{tag}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nraw results: {RESULTS}")


if __name__ == "__main__":
    main()
