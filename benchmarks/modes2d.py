"""Mode coverage of every 2D recipe on the ring and the grid, VEEGAN/PacGAN protocol.

For each shipped recipe whose data is ``ring8`` or ``grid25`` and each seed: train on one
CPU thread, draw 2,500 samples from the sampling generator (the EMA of G when the recipe
keeps one), and score them with :func:`gankit.metrics.modes.mode_stats` (high quality =
within 3σ of the nearest mode; a mode is covered with ≥ 20 high-quality samples; reverse
KL of the high-quality histogram against uniform). Prints mean ± std over seeds and the
CPU seconds per run beside the published rows, and the score of 2,500 points drawn from the
data distribution itself: the ceiling for a generator that matches the data (in 2D,
P(distance < 3σ) = 1 − e^(−9/2) ≈ 98.9 %, so no faithful sampler scores 100 % HQ).

    python benchmarks/modes2d.py                     # all 2D recipes, 5 seeds, 2 processes
    python benchmarks/modes2d.py --recipes pacgan-grid25 pacgan-ring8 --seeds 5
    python benchmarks/modes2d.py --steps 300 --seeds 1   # a quick look (not the benchmark)
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# Published rows: (method, data, modes, HQ %, reverse KL) — PacGAN (Lin et al. 2018), Table 2,
# with the GDPP (Elfeki et al. 2019) and VEEGAN (Srivastava et al. 2017) numbers as quoted there.
PUBLISHED = [
    ("GAN (PacGAN's arch.)", "grid25", 17.3, 94.8, 0.70),
    ("PacGAN4", "grid25", 24.8, 93.6, 0.04),
    ("GDPP", "grid25", 24.8, 68.5, None),
    ("VEEGAN", "grid25", 24.6, 40.0, None),
    ("PacGAN4", "ring8", 7.8, 95.9, 0.07),
]
# The goal for one gankit recipe (5-seed means, each run < 2 CPU minutes).
GOAL = {"grid25": {"modes": 25, "hq": 97.0, "rkl": 0.02}, "ring8": {"modes": 8, "hq": 99.0, "rkl": 0.02}}
CPU_LIMIT_S = 120.0
NUM_SAMPLES = 2500


def two_d_recipes() -> list[str]:
    from gankit.config import load_config
    from gankit.recipes import recipe_names

    return [n for n in recipe_names() if load_config(n).data.name in ("ring8", "grid25")]


def run_one(recipe: str, seed: int, overrides: list[str], rejection: bool = False) -> list[dict]:
    """Train ``recipe`` with ``seed`` in this process; return its mode statistics and CPU time.
    ``rejection``: also score what discriminator rejection sampling keeps of the same run
    (gankit.sampling; D is fitted to the final sampling generator for 1,000 steps, and that
    row's CPU time includes the fitting)."""
    import torch

    from gankit.config import load_config
    from gankit.metrics.modes import mode_stats
    from gankit.train.loop import Trainer

    torch.set_num_threads(1)
    cfg = load_config(recipe, [*overrides, f"seed={seed}", "train.threads=1", "train.device=cpu"])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    tr = Trainer(cfg)
    while not tr.done():
        tr.train_step()
    cpu = time.process_time() - cpu0
    G = tr.sampling_generator.eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(10_000 + seed)  # scoring noise, apart from training's
        x = G(torch.randn(NUM_SAMPLES, cfg.model.z_dim, generator=g).to(tr.device)).float().cpu()
    runs = [(recipe, x, cpu, None)]
    if rejection:
        from gankit.sampling import rejection_sampler

        cpu1 = time.process_time()
        drs = rejection_sampler(G, tr.nets["D"], tr.data, tr.task, seed=10_000 + seed)
        x_drs, _ = drs.sample(NUM_SAMPLES, seed=10_000 + seed)
        runs.append((recipe + " + DRS", x_drs, cpu + time.process_time() - cpu1, drs.acceptance))
    out = []
    for name, samples, cpu_s, acceptance in runs:
        st = mode_stats(samples, tr.data.modes, tr.data.mode_std)
        out.append({"recipe": name, "data": cfg.data.name, "seed": seed, "modes": st["modes"], "hq": st["hq"],
                    "rkl": st["rkl"] if st["rkl"] is not None else math.inf, "cpu_s": cpu_s,
                    "wall_s": time.perf_counter() - wall0, "steps": tr.state.step, "num_modes": st["num_modes"],
                    "acceptance": acceptance})
    return out


def score_data(data: str, seed: int) -> dict:
    """The protocol applied to 2,500 points of the true mixture (the test split of ``seed``)."""
    from gankit.config import DataConfig
    from gankit.data import load_dataset
    from gankit.metrics.modes import mode_stats

    ds = load_dataset(DataConfig(name=data, size=NUM_SAMPLES), split="test", seed=10_000 + seed)
    st = mode_stats(ds.x, ds.modes, ds.mode_std)
    return {"recipe": "(the data itself)", "data": data, "seed": seed, "modes": st["modes"], "hq": st["hq"],
            "rkl": st["rkl"], "cpu_s": 0.0, "wall_s": 0.0, "steps": 0, "num_modes": st["num_modes"],
            "reference": True}  # not a recipe: no goal, no CPU time


def _ms(values, fmt: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if any(math.isinf(v) for v in values):
        return "inf"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{format(statistics.mean(values), fmt)} ± {format(sd, fmt)}"


def summarise(results: list[dict]) -> list[dict]:
    rows = []
    for recipe, data in dict.fromkeys((r["recipe"], r["data"]) for r in results):
        rs = [r for r in results if r["recipe"] == recipe and r["data"] == data]
        mean = {k: statistics.mean(r[k] for r in rs) for k in ("modes", "hq", "rkl", "cpu_s")}
        goal = GOAL[data]
        met = (mean["modes"] >= goal["modes"] and mean["hq"] >= goal["hq"] and mean["rkl"] <= goal["rkl"]
               and max(r["cpu_s"] for r in rs) < CPU_LIMIT_S)
        reference = any(r.get("reference") for r in rs)
        rows.append({"recipe": recipe, "data": data, "seeds": len(rs), "mean": mean, "goal_met": met and not reference,
                     "reference": reference,
                     "modes": _ms([r["modes"] for r in rs], ".1f"), "hq": _ms([r["hq"] for r in rs], ".1f"),
                     "rkl": _ms([r["rkl"] for r in rs], ".3f"), "cpu": _ms([r["cpu_s"] for r in rs], ".0f")})
    return rows


def print_table(rows: list[dict], out=sys.stdout) -> None:
    head = f"{'recipe / method':<27} {'data':<7} {'n':>2}  {'modes':>13}  {'HQ %':>12}  {'rKL':>15}  {'CPU s/run':>10}  goal"
    print(head, file=out)
    print("-" * len(head), file=out)
    for data in ("grid25", "ring8"):
        for r in (r for r in rows if r["data"] == data):
            print(f"{r['recipe']:<27} {data:<7} {r['seeds']:>2}  {r['modes']:>13}  {r['hq']:>12}  {r['rkl']:>15}  "
                  f"{'' if r['reference'] else r['cpu']:>10}  {'MET' if r['goal_met'] else '-'}", file=out)
        for name, d, modes, hq, rkl in PUBLISHED:
            if d == data:
                print(f"{'[pub] ' + name:<27} {d:<7} {'':>2}  {modes:>13.1f}  {hq:>12.1f}  "
                      f"{(f'{rkl:.2f}' if rkl is not None else '-'):>15}  {'':>10}", file=out)
        print(file=out)
    g = GOAL
    print(f"goal: grid {g['grid25']['modes']}/25 modes, HQ >= {g['grid25']['hq']}%, rKL <= {g['grid25']['rkl']}; "
          f"ring {g['ring8']['modes']}/8, HQ >= {g['ring8']['hq']}%, rKL <= {g['ring8']['rkl']}; "
          f"5-seed means, each run < {CPU_LIMIT_S:.0f} CPU s", file=out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="*", help="recipe names (default: every recipe on ring8 or grid25)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per recipe (default 5)")
    p.add_argument("--steps", type=int, help="override train.steps (quick looks; not the benchmark)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (repeatable)")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel, one CPU thread each (default 2)")
    p.add_argument("--json", type=Path, help="also write every run's numbers here")
    p.add_argument("--rejection", action="store_true",
                   help="also score each run's samples after discriminator rejection sampling (a second row)")
    args = p.parse_args(argv)
    recipes = args.recipes or two_d_recipes()
    overrides = list(args.overrides) + ([f"train.steps={args.steps}"] if args.steps is not None else [])
    jobs = [(r, s) for r in recipes for s in range(args.seeds)]
    results = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, r, s, overrides, args.rejection) for r, s in jobs]
        for res in (res for f in futures for res in f.result()):
            results.append(res)
            print(f"  {res['recipe']:<20} seed {res['seed']}: {res['modes']}/{res['num_modes']} modes, "
                  f"HQ {res['hq']:.1f}%, rKL {res['rkl']:.3f}, {res['cpu_s']:.0f} CPU s ({res['steps']} steps)"
                  + (f", kept {res['acceptance']:.0%}" if res["acceptance"] is not None else ""),
                  file=sys.stderr, flush=True)
    data_sets = list(dict.fromkeys(r["data"] for r in results))
    rows = summarise(results + [score_data(d, s) for d in data_sets for s in range(args.seeds)])
    print()
    print_table(rows)
    if args.json:
        from gankit.utils import atomic_write_text

        atomic_write_text(args.json, json.dumps({"runs": results, "summary": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
