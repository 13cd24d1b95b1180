"""Every Fashion-MNIST recipe for the same wall-time budget: domain-feature FID, KID, precision/recall.

Each recipe trains for ``--minutes`` (its own step/epoch bounds are lifted) with one
CPU thread, then ``--n`` samples from its sampling generator (the EMA of G when kept)
are scored by :func:`gankit.metrics.evaluate_samples` against the test split with the
default image features (``domain``). Samples of recipes that pad 28 -> 32 are cropped
back to 28x28 first (the padding is exactly invertible), so every recipe is compared
on the same reference. Prints one row per recipe with steps, wall and CPU seconds.

    python benchmarks/fashion.py --minutes 10            # the benchmark (about 2 h for 11 recipes)
    python benchmarks/fashion.py --minutes 1 --n 2000    # a short look
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path


def image_recipes() -> list[str]:
    from gankit.config import load_config
    from gankit.recipes import recipe_names

    return [n for n in recipe_names() if load_config(n).data.name == "fashion-mnist"]


def run_one(recipe: str, minutes: float, n: int, metrics: str, out: Path, threads: int) -> dict:
    import torch

    import gankit
    from gankit.metrics.evaluate import Samples, evaluate_samples

    torch.set_num_threads(threads)
    overrides = [f"train.minutes={minutes}", "train.steps=null", "train.epochs=null", f"train.threads={threads}",
                 "train.device=cpu", "train.checkpoint_every=1000000"]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run = gankit.train(recipe, overrides, out=out / recipe, quiet=True)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    gan = gankit.load(run.dir)
    x, y = gan.sample(n, seed=0)
    native = 28  # Fashion-MNIST's side; 32 is padded by 2 on each side at load time
    if x.shape[-1] == native + 4:
        x = x[..., 2:-2, 2:-2]
    cfg = gan.cfg.data
    samples = Samples(x, y, type(cfg)(name=cfg.name, root=cfg.root), {"kind": "run", "label": recipe})
    res = evaluate_samples(samples, metrics=metrics, split="test")
    values = res.scalars()
    return {"recipe": recipe, "steps": run.trainer.state.step, "train_s": run.trainer.state.seconds,
            "wall_s": wall, "cpu_s": cpu, **values}


def fmt(v, spec):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="*", help="recipe names (default: every fashion-mnist recipe)")
    p.add_argument("--minutes", type=float, default=10.0, help="training wall time per recipe (default 10)")
    p.add_argument("--n", type=int, default=10_000, help="generated samples scored (default 10,000)")
    p.add_argument("--metrics", default="fid,kid,pr", help="gankit.metrics names (default fid,kid,pr)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--out", type=Path, help="folder for the run folders (default: a temporary one)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    recipes = args.recipes or image_recipes()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for r in recipes:
            row = run_one(r, args.minutes, args.n, args.metrics, out, args.threads)
            rows.append(row)
            print(f"  {r}: {json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})}",
                  file=sys.stderr, flush=True)
    print(f"\nFashion-MNIST, {args.minutes:g} min of training per recipe, {args.n} samples vs the test split, "
          f"domain features\n")
    head = f"{'recipe':<26} {'steps':>6} {'CPU s':>7} {'wall s':>7} {'FID':>8} {'KID':>9} {'prec':>6} {'recall':>6}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['recipe']:<26} {r['steps']:>6} {r['cpu_s']:>7.0f} {r['wall_s']:>7.0f} {fmt(r.get('fid'), '8.2f')} "
              f"{fmt(r.get('kid'), '9.3f')} {fmt(r.get('precision'), '6.3f')} "
              f"{fmt(r.get('recall'), '6.3f')}")
    if args.json:
        from gankit.utils import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
