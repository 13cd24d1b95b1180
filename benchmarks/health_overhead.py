"""What the health monitor costs: wall time of the same run with health on and off.

    python benchmarks/health_overhead.py [--steps-scale 1.0]

Each recipe runs with its own log_every (the monitor works once per record), one thread,
alternating off/on ``--repeats`` times; the table shows the fastest of each. Costs come from
the gradient norms on log steps, sampling G on fixed noise (health.samples), the distances
and the in-memory copy of the last healthy state.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from gankit.train.run import train

CASES = [  # recipe, overrides
    ("gan-ring8", ["train.steps=1000"]),
    ("dcgan-digits", ["train.steps=600"]),
]


def timed(recipe, overrides, health: bool):
    """(wall seconds of the run, seconds spent in the monitor's callbacks)."""
    with tempfile.TemporaryDirectory() as d:
        tic = time.perf_counter()
        r = train(recipe, overrides + ["train.threads=1", f"health.enabled={str(health).lower()}",
                                       "health.on_converged=warn"], out=Path(d) / "run", quiet=True)
        wall = time.perf_counter() - tic
        own = json.loads((r.dir / "health.json").read_text())["monitor_seconds"] if health else 0.0
        return wall, own, r.trainer.state.seconds


def grad_norm_cost(recipe, overrides, n=50):
    """Seconds per train_step with and without gradient norms measured (the log-step extra)."""
    from gankit.config import load_config
    from gankit.train.loop import Trainer

    t = Trainer(load_config(recipe, overrides + ["train.threads=1", "train.log_every=1"]))
    out = []
    for flag in (False, True, False, True):
        t.grad_norms = flag
        tic = time.perf_counter()
        for _ in range(n):
            t.train_step()
        t.pop_stats()
        out.append((time.perf_counter() - tic) / n)
    return min(out[0], out[2]), min(out[1], out[3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/results/health_overhead.json",
                    help="write every recipe's figures here (default %(default)s; '' for none)")
    args = ap.parse_args()
    rows = []
    torch.set_num_threads(1)
    from gankit.config import load_config

    print(f"{'recipe':<13} {'steps':>5} {'log':>4} {'off s':>7} {'on s':>7} {'monitor s':>9} {'monitor %':>9} "
          f"{'step ms':>7} {'+norms ms':>9} {'norms %':>7}")
    for recipe, overrides in CASES:
        off, on = [], []
        for _ in range(args.repeats):
            off.append(timed(recipe, overrides, False))
            on.append(timed(recipe, overrides, True))
        cfg = load_config(recipe, overrides)
        a, (b, own, train_s) = min(w for w, _, _ in off), min(on)
        plain, normed = grad_norm_cost(recipe, overrides)
        # Gradient norms cost (normed - plain) on one step in log_every.
        norms_share = 100 * (normed - plain) / plain / cfg.train.log_every
        rows.append({"recipe": recipe, "overrides": overrides, "steps": cfg.train.steps, "log_every": cfg.train.log_every,
                     "off_s": [w for w, _, _ in off], "on_s": [w for w, _, _ in on], "monitor_s": own, "train_s": train_s,
                     "monitor_pct": 100 * own / train_s, "step_ms": 1000 * plain, "norms_ms": 1000 * (normed - plain),
                     "norms_pct": norms_share})
        print(f"{recipe:<13} {cfg.train.steps:>5} {cfg.train.log_every:>4} {a:>7.2f} {b:>7.2f} {own:>9.2f} "
              f"{100 * own / train_s:>8.1f}% {1000 * plain:>7.2f} {1000 * (normed - plain):>9.3f} {norms_share:>6.2f}%")
    print("monitor %: time in the monitor's callbacks over training-step time of the same run; "
          "norms %: extra step time of measuring gradient norms, spread over log_every steps")
    if args.json:
        from gankit.utils import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps({"repeats": args.repeats, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
