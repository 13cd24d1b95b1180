"""Does lower precision cost quality? A recipe trained for the same number of steps in fp32 and
with ``train.precision`` auto (bf16 on this CPU), over several seeds.

Each (precision, seed) run trains ``--steps`` generator steps, then ``--n`` samples of its
sampling generator are scored with domain-feature FID, KID and precision/recall against the
test split (the protocol of benchmarks/quality_vs_time.py). Prints mean ± std per precision
and the difference of the means against the seed-to-seed spread.

    python benchmarks/precision_quality.py                               # fast-fashion-mnist, 3000 steps, 3 seeds
    python benchmarks/precision_quality.py --seeds 0 1 --n 5000         # docs/speed.md's table
    python benchmarks/precision_quality.py --recipe dcgan-fashion-mnist --steps 2000 --json /tmp/pq.json

Every run's numbers go to ``--json`` (default benchmarks/results/precision_quality.json, the raw
file of docs/speed.md; ``--json ''`` writes none).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_vs_time import score  # noqa: E402  (same sampling and scoring)


def run_one(recipe: str, precision: str, seed: int, steps: int, n: int) -> dict:
    from gankit.config import load_config
    from gankit.train.loop import Trainer

    cfg = load_config(recipe, [f"seed={seed}", f"train.steps={steps}", "train.minutes=null", "train.epochs=null",
                               f"train.precision={precision}", "train.device=cpu"])
    trainer = Trainer(cfg)
    tic = time.monotonic()
    while not trainer.done():
        trainer.train_step()
    seconds = time.monotonic() - tic
    values = score(cfg, trainer.sampling_generator, n, "fid,kid,pr")
    return {"recipe": recipe, "train_precision": trainer.precision, "asked": precision, "seed": seed, "steps": steps,
            "n": n, "split": "test", "features": "domain",
            "train_s": seconds, **values}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="fast-fashion-mnist")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--json", default="benchmarks/results/precision_quality.json",
                   help="write every run's numbers here (default %(default)s; '' for none)")
    args = p.parse_args(argv)
    rows = []
    for seed in args.seeds:
        for precision in ("fp32", "auto"):  # alternating, so a slow patch of the machine hits both
            row = run_one(args.recipe, precision, seed, args.steps, args.n)
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
                  file=sys.stderr, flush=True)
    print(f"\n{args.recipe}, {args.steps} G-steps per run, {len(args.seeds)} seeds, {args.n} samples vs the test "
          "split, domain features\n")
    print("| precision | FID | KID | precision (PR) | recall | train s |")
    print("|---|---|---|---|---|---|")
    means = {}
    for asked in ("fp32", "auto"):
        rs = [r for r in rows if r["asked"] == asked]

        def ms(k, spec=".2f"):
            vals = [r[k] for r in rs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):{spec}} ± {sd:{spec}}"
        means[asked] = [r["fid"] for r in rs]
        print(f"| {asked} ({rs[0]['train_precision']}) | {ms('fid')} | {ms('kid', '.3f')} | {ms('precision', '.3f')} | "
              f"{ms('recall', '.3f')} | {ms('train_s', '.0f')} |")
    if len(args.seeds) > 1:
        diff = statistics.mean(means["auto"]) - statistics.mean(means["fp32"])
        spread = max(statistics.stdev(means["fp32"]), statistics.stdev(means["auto"]))
        print(f"\nFID difference of the means (auto - fp32): {diff:+.2f}; seed-to-seed std: {spread:.2f} -> "
              f"{'within' if abs(diff) <= spread else 'outside'} the run-to-run spread")
    if args.json:
        from gankit.utils import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
