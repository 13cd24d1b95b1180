"""Training-step speed tables for README: gankit's step vs a plain fp32 eager PyTorch step.

    python benchmarks/speed.py                      # the CPU table, then the GPU table where CUDA is
    python benchmarks/speed.py --windows 11 --steps 8
    python benchmarks/speed.py --gpu-only --out benchmarks/results/speed_gpu.jsonl

Each row times both steps in one process, in alternating windows, and reports medians
(see gankit/bench.py). CPU rows run with train.device=cpu, GPU rows with train.device=cuda;
the GPU table crosses three workloads with precision and CUDA-graph settings. --out (default
benchmarks/results/speed.jsonl) gets every row's raw figures as JSON lines, one per row as it finishes. Run it on an otherwise idle
machine.
"""
import argparse
import contextlib
import sys

import torch

from gankit.bench import bench, format_table, write_rows

CPU_ROWS = [
    ("gan-mnist", []),
    ("dcgan-fashion-mnist", []),
    ("dcgan-fashion-mnist", ["data.resolution=64"]),
    ("sngan-fashion-mnist", []),
]

GPU_WORKLOADS = [
    ("dcgan-fashion-mnist", ["train.batch_size=128"]),
    ("dcgan-fashion-mnist", ["train.batch_size=1024"]),
    ("fast-fashion-mnist", []),
    ("fast-fashion-mnist-gpu", []),
]
GPU_VARIANTS = [  # each workload runs with each of these; the defaults on CUDA are fp32 and CUDA graphs
    [],
    ["train.precision=bf16"],
    ["train.cuda_graphs=off"],
    ["train.cuda_graphs=off", "train.precision=bf16"],  # gankit's defaults before CUDA graphs
]
GPU_ROWS = ([(recipe, load + variant) for recipe, load in GPU_WORKLOADS for variant in GPU_VARIANTS]
            # the batch of the GPU recipe: what a larger batch costs per step
            + [("fast-fashion-mnist-gpu", [f"train.batch_size={b}"]) for b in (32, 128, 256)])


def run_table(name, rows, device, args, out):
    """Bench every (recipe, overrides) row on ``device``; print each row as it finishes, then the table."""
    done = []
    for recipe, overrides in rows:
        row = bench(recipe, overrides + [f"train.device={device}"], windows=args.windows,
                    steps_per_window=args.steps)
        row.update(table=name, overrides=overrides)  # raw: the recipe name stays as loaded
        if out is not None:
            write_rows([row], out)
        shown = dict(row, recipe=f"{recipe} ({', '.join(overrides)})" if overrides else recipe)
        done.append(shown)
        print(format_table([shown]).splitlines()[2], flush=True)  # the row (notes follow it)
    print(f"\n{name} table:\n{format_table(done)}\n", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--cpu-only", action="store_true", help="skip the GPU table")
    only.add_argument("--gpu-only", action="store_true", help="skip the CPU table (needs a CUDA device)")
    ap.add_argument("--out", metavar="FILE", default="benchmarks/results/speed.jsonl",
                    help="write every row's raw figures here as JSON lines (default %(default)s; '' for none)")
    args = ap.parse_args(argv)
    if args.gpu_only and not torch.cuda.is_available():
        sys.exit("--gpu-only: no CUDA device here")
    with open(args.out, "w") if args.out else contextlib.nullcontext() as out:
        if not args.gpu_only:
            run_table("CPU", CPU_ROWS, "cpu", args, out)
        if not args.cpu_only and torch.cuda.is_available():
            run_table("GPU", GPU_ROWS, "cuda", args, out)


if __name__ == "__main__":
    main()
