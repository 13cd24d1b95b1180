"""Training-step speed table for README: gankit's step vs a plain fp32 eager PyTorch step.

    python benchmarks/speed.py            # the four recipes of the speed issue
    python benchmarks/speed.py --windows 11 --steps 8

Each row times both steps in one process, in alternating windows, and reports medians
(see gankit/bench.py). Run it on an otherwise idle machine.
"""
import argparse

from gankit.bench import bench, format_table

ROWS = [
    ("gan-mnist", []),
    ("dcgan-fashion-mnist", []),
    ("dcgan-fashion-mnist", ["data.resolution=64"]),
    ("sngan-fashion-mnist", []),
]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for recipe, overrides in ROWS:
        row = bench(recipe, overrides, windows=args.windows, steps_per_window=args.steps)
        if overrides:
            row["recipe"] = f"{recipe} ({', '.join(overrides)})"
        rows.append(row)
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_table(rows))
