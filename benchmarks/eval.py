"""Evaluation benchmark: the real-vs-real floor, a trained run, and the time to score 10k vs 10k.

    python benchmarks/eval.py [RUN_DIR ...] [--n 10000] [--sanity] [--threads 1]

Writes its numbers to --json (default benchmarks/results/eval.json).

1. Floor: Fashion-MNIST train images (a seeded 10k subset) scored as if generated, against
   the test split: the best FID/KID/PR/DC any generator can expect on this protocol.
2. Each RUN_DIR: its latest checkpoint, n samples, the same protocol (the cards say so).
3. Seconds for n vs n including feature extraction of both sides (cold: real features not
   cached) and with the real features cached (warm), on this CPU.
4. --sanity: precision/recall/density/coverage of two 10k samples of one 1000-d Gaussian,
   k = 5, beside the values the prdc authors publish (0.4772, 0.4705, 1.0555, 0.9735).

Feature networks and reference features go to a temporary cache unless $GANKIT_CACHE is set,
so the cold timing is honest; the domain network is then trained first (printed).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="run folders to evaluate")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--metrics", default="fid,kid,pr,dc")
    ap.add_argument("--sanity", action="store_true", help="also the 10k x 1000-d Gaussian PRDC check (~1 min)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="benchmarks/results/eval.json",
                    help="write every column's numbers, the protocol and the timings here (default %(default)s; '' for none)")
    args = ap.parse_args()
    if "GANKIT_CACHE" not in os.environ:
        os.environ["GANKIT_CACHE"] = tempfile.mkdtemp(prefix="gankit-bench-cache-")
    torch.set_num_threads(args.threads)

    from gankit.config import DataConfig
    from gankit.data import load_dataset
    from gankit.evaluation import evaluate
    from gankit.metrics import format_table, prdc
    from gankit.metrics.cache import cache_dir
    from gankit.metrics.domain_net import domain_net_path, train_domain_net

    print(f"cache: {cache_dir()}  threads: {args.threads}  load: {os.getloadavg()[0]:.1f}")
    data = DataConfig(name="fashion-mnist")
    if not domain_net_path("fashion-mnist").exists():
        tic, cpu = time.monotonic(), time.process_time()
        train_domain_net(data, log=lambda s: print(s, flush=True))
        print(f"domain net: {time.monotonic() - tic:.0f} s wall, {time.process_time() - cpu:.0f} s CPU")

    train = load_dataset(data, "train")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(123))[:args.n]
    batch = train.batch(idx)
    x, y = batch["x"], batch["y"]

    for old in (cache_dir() / "stats").glob("fashion-mnist-test-*"):
        old.unlink()  # so the first timing includes the real side's feature extraction
    columns = []
    tic = time.monotonic()
    floor = evaluate(x, data="fashion-mnist", n=args.n, metrics=args.metrics, labels=y, quiet=True,
                     threads=args.threads)
    cold = time.monotonic() - tic
    columns.append(("train-vs-test floor", floor.results))
    tic = time.monotonic()
    warm_res = evaluate(x, data="fashion-mnist", n=args.n, metrics=args.metrics, quiet=True, threads=args.threads)
    warm = time.monotonic() - tic
    for run in args.runs:
        res = evaluate(run, n=args.n, metrics=args.metrics, quiet=True, threads=args.threads, write=False)
        columns.append((f"{Path(run).name}@{res.source['step']}", res.results))
    print(format_table(columns))
    print()
    print(f"{args.n} vs {args.n}, {args.metrics}, including feature extraction:")
    print(f"  cold (real features computed): {cold:6.1f} s   stages: {floor.seconds}")
    print(f"  warm (real features cached):   {warm:6.1f} s   stages: {warm_res.seconds}")
    if args.json:
        import json

        from gankit.utils import atomic_write_text

        record = {"n": args.n, "metrics": args.metrics, "threads": args.threads, "load": os.getloadavg()[0],
                  "floor_protocol": "fashion-mnist train (seeded 10k subset, torch seed 123) vs the test split, "
                                    "domain features",
                  "columns": {name: res for name, res in columns}, "cold_s": cold, "warm_s": warm}
        atomic_write_text(Path(args.json), json.dumps(record, indent=1, default=str))

    if args.sanity:
        rng = np.random.RandomState(0)
        real = rng.normal(0, 1, (10_000, 1000)).astype(np.float32)
        fake = rng.normal(0, 1, (10_000, 1000)).astype(np.float32)
        tic = time.monotonic()
        out = prdc(real, fake, k_pr=5, k_dc=5)
        print(f"\nPRDC sanity, 10k vs 10k samples of N(0, I_1000), k=5 ({time.monotonic() - tic:.0f} s):")
        for key, pub in zip(("precision", "recall", "density", "coverage"), (0.4772, 0.4705, 1.0555, 0.9735)):
            print(f"  {key:<10} {out[key]:.4f}   published {pub:.4f}")


if __name__ == "__main__":
    main()
