"""The high-fidelity generators on this CPU: ProGAN, StyleGAN, StyleGAN2 and BigGAN (class-conditional) against
`fast-fashion-mnist`, all on Fashion-MNIST at 32 px for the same wall time; then StyleGAN2's
truncation curve and projection.

    python benchmarks/style_generators.py train ARM [ARM ...] [--minutes 15] [--seed 0] [--runs DIR]
    python benchmarks/style_generators.py report [--runs DIR] [--examples docs/style]
    python benchmarks/style_generators.py truncation [--runs DIR] [-n 10000]
    python benchmarks/style_generators.py projection [--runs DIR] [--images 100] [--steps 300]

Arms (one torch thread each, `train.minutes` of wall time each; run two `train` processes side by
side on a 2-core machine): progan, stylegan, stylegan2, biggan (recipes <arm>-fashion-mnist) and fast
(`fast-fashion-mnist` with data.resolution=32, its own schedule laid over the same minutes).

Every arm is scored with `gankit eval`'s protocol: 10,000 samples (seed 0) against the Fashion-MNIST
test split on the domain network's features (docs/evaluation.md): FID, KID, precision, recall; BigGAN
also CAS (a classifier trained on 10k generated, labelled images, tested on the real test split)
beside the same classifier trained on as many real images. Raw numbers go to
benchmarks/results/style/<arm>-seed<s>.json; `report` prints the table and writes a 64-sample grid per
arm to --examples.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from stats import run_dir  # noqa: E402  (benchmarks/stats.py)

RESULTS = ROOT / "benchmarks" / "results" / "style"

# arm -> (recipe, overrides)
ARMS = {
    "progan": ("progan-fashion-mnist", []),
    "stylegan2": ("stylegan2-fashion-mnist", []),
    "biggan": ("biggan-fashion-mnist", []),
    "fast": ("fast-fashion-mnist", ["data.resolution=32"]),
    # ablations of the CPU recipes (the same budget): StyleGAN2 with the paper's path length and mixing (the
    # recipe has both off, as StyleGAN2-ADA's CIFAR setting); BigGAN with the paper's 4 D steps or 1 (the recipe: 2)
    "stylegan2-pl-mix": ("stylegan2-fashion-mnist", ["loss.options.pl_weight=2", "loss.options.style_mixing=0.9"]),
    # StyleGAN2 as measured before its optimisers got the lazy-regularisation correction (train.lazy_correction)
    "stylegan2-no-lazy-correction": ("stylegan2-fashion-mnist", ["train.lazy_correction=false"]),
    "stylegan": ("stylegan-fashion-mnist", []),
    "biggan-d4": ("biggan-fashion-mnist", ["train.d_steps=4"]),
    "biggan-d1": ("biggan-fashion-mnist", ["train.d_steps=1"]),
    # StyleGAN2 on the 3,534 training emoji at 64 px (30 min): with ADA (the recipe) and without
    "stylegan2-emoji": ("stylegan2-emoji", []),
    "stylegan2-emoji-no-ada": ("stylegan2-emoji", ["loss.options.ada=false"]),
}
# Fashion-MNIST arms are scored against the 10k test images. The emoji arms as StyleGAN2-ADA's paper scores
# (against all training images: 3,534) and also against the 392 held-out emoji (`scores_test`).
SPLITS = {"stylegan2-emoji": ("train", "test"), "stylegan2-emoji-no-ada": ("train", "test")}
MAIN_ARMS = ("progan", "stylegan", "stylegan2", "biggan", "fast", "stylegan2-emoji", "stylegan2-emoji-no-ada")
N_SAMPLES = 10_000


def train_arm(arm: str, minutes: float, seed: int, runs: Path, n: int = N_SAMPLES) -> dict:
    from gankit.config import load_config
    from gankit.evaluation import load_samples
    from gankit.metrics.evaluate import evaluate_samples
    from gankit.train.run import train
    from gankit.utils import atomic_write_text, read_jsonl

    recipe, extra = ARMS[arm]
    overrides = [f"seed={seed}", f"train.minutes={minutes}", "train.threads=1", "train.steps=null",
                 "train.epochs=null", *extra]
    out = run_dir(runs, arm, seed)
    if not (out / "checkpoints").is_dir():
        train(load_config(recipe, overrides), out=out, quiet=True)
    records = read_jsonl(out / "metrics.jsonl")
    last = records[-1]   # the run's own clock: training time only
    samples = load_samples(out, n=n, seed=0)
    metrics = "fid,kid,pr" + (",cas" if samples.y is not None else "")
    split, *others = SPLITS.get(arm, ("test",))
    row = {"arm": arm, "recipe": recipe, "seed": seed, "overrides": overrides, "n": n, "split": split,
           "train_seconds": round(last["seconds"], 1), "steps": last["step"], "load": os.getloadavg()[0],
           "scores": evaluate_samples(samples, metrics=metrics, split=split).scalars()}
    for other in others:
        row[f"scores_{other}"] = evaluate_samples(samples, metrics=metrics, split=other).scalars()
    ada = [r["ada_p"] for r in records if "ada_p" in r]
    if ada:   # ADA's augmentation probability: at the end, and its largest
        row["ada_p"] = {"last": ada[-1], "max": max(ada)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / f"{arm}-seed{seed}.json", json.dumps(row, indent=1) + "\n")
    print(json.dumps(row))
    return row


def raw(arm: str, seed: int, runs: Path, n: int = N_SAMPLES) -> dict:
    """The same scores for the trained G itself instead of its EMA (``<arm>-raw-seed<s>.json``)."""
    from gankit.api import load
    from gankit.evaluation import load_samples
    from gankit.metrics.evaluate import evaluate_samples
    from gankit.utils import atomic_write_text

    model = load(run_dir(runs, arm, seed), ema=False)
    samples = load_samples(model, n=n, seed=0)
    metrics = "fid,kid,pr" + (",cas" if samples.y is not None else "")
    scores = evaluate_samples(samples, metrics=metrics, split="test").scalars()
    row = {"arm": f"{arm} (G, no EMA)", "recipe": ARMS[arm][0], "seed": seed, "n": n, "steps": model.step,
           "train_seconds": json.loads((RESULTS / f"{arm}-seed{seed}.json").read_text())["train_seconds"],
           "scores": scores}
    atomic_write_text(RESULTS / f"{arm}-raw-seed{seed}.json", json.dumps(row, indent=1) + "\n")
    print(json.dumps(row))
    return row


def report(seed: int, runs: Path, examples: Path) -> None:
    from gankit.api import load
    from gankit.viz.grids import save_image_grid

    cols = ["fid", "kid", "precision", "recall", "cas", "cas_real"]

    def cells(s):
        return " | ".join(f"{s[c]:.4g}" if isinstance(s.get(c), (int, float)) else "–" for c in cols)
    print("| model | recipe | minutes | G steps | against | " + " | ".join(cols) + " |")
    print("|---|---|---|---|---|" + "---|" * len(cols))
    for arm in [a for name in ARMS for a in (name, f"{name}-raw")]:
        path = RESULTS / f"{arm}-seed{seed}.json"
        if not path.exists():
            continue
        row = json.loads(path.read_text())
        print(f"| {row['arm']} | {row['recipe']} | {row['train_seconds'] / 60:.1f} | {row['steps']} | "
              f"{row.get('split', 'test')} | {cells(row['scores'])} |")
        for other in [k[len("scores_"):] for k in row if k.startswith("scores_")]:  # the same samples, another split
            print(f"| {row['arm']} | | | | {other} | {cells(row[f'scores_{other}'])} |")
        out = run_dir(runs, arm, seed)
        if arm in MAIN_ARMS and (out / "checkpoints").is_dir():
            x, _ = load(out).sample(64, seed=0)
            examples.mkdir(parents=True, exist_ok=True)
            name = arm if "emoji" in arm else f"{arm}-fashion-mnist"
            save_image_grid(x, examples / f"{name}.png", nrow=8)


def truncation(seed: int, runs: Path, n: int, examples: Path) -> None:
    from gankit.steer.truncation import truncation_curve

    psis = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    rows = truncation_curve(runs / "stylegan2", psis, n=n, seed=seed, out=examples / "stylegan2-truncation.png")
    RESULTS.mkdir(parents=True, exist_ok=True)
    from gankit.api import load
    from gankit.utils import atomic_write_text

    # named by arm and recording its run, so a later run never replaces the evidence of an earlier one
    # (truncation-seed0.json, the list alone, is the curve of the run before the lazy correction)
    record = {"arm": "stylegan2", "run": str(runs / "stylegan2"), "step": load(runs / "stylegan2").step,
              "n": n, "seed": seed, "rows": rows}
    atomic_write_text(RESULTS / f"truncation-stylegan2-seed{seed}.json", json.dumps(record, indent=1) + "\n")
    print("| ψ | FID | precision | recall |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['psi']} | {r['fid']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} |")


def projection(seed: int, runs: Path, images: int, steps: int) -> None:
    """Mean reconstruction PSNR of `images` held-out real test images and of as many images the model
    generated itself (known w, constant noise), in W and W+."""
    import torch

    from gankit.api import load
    from gankit.data import load_dataset
    from gankit.steer.projection import project_tensor
    from gankit.utils import atomic_write_text

    torch.set_num_threads(1)
    model = load(runs / "stylegan2")
    G = model.G
    data = load_dataset(model.cfg.data, "test")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:images]
    real = data.batch(idx)["x"]
    with torch.no_grad():
        z = torch.randn(images, G.z_dim, generator=torch.Generator().manual_seed(seed + 1))
        own = G(z, noise_mode="const")
    out = {"arm": "stylegan2", "run": str(runs / "stylegan2"), "step": model.step, "images": images, "steps": steps}
    for space in ("w", "w+"):
        for name, target in (("real", real), ("generated", own)):
            _, _, psnr = project_tensor(G, target, steps=steps, space=space, seed=seed)
            out[f"{name}_{space}"] = float(psnr.mean())
            out[f"{name}_{space}_min_max"] = [float(psnr.min()), float(psnr.max())]
            out[f"{name}_{space}_at_least_30db"] = float((psnr >= 30).float().mean())
            print(f"{name:10s} {space:3s} mean PSNR {float(psnr.mean()):.2f} dB "
                  f"(min {float(psnr.min()):.2f}, max {float(psnr.max()):.2f})", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    # projection-seed0.json (min-max copied from a log) is the run before the lazy correction: kept apart
    atomic_write_text(RESULTS / f"projection-stylegan2-seed{seed}.json", json.dumps(out, indent=1) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("arms", nargs="+", choices=list(ARMS))
    t.add_argument("--minutes", type=float, default=15.0)
    t.add_argument("-n", type=int, default=N_SAMPLES)
    r = sub.add_parser("report")
    rw = sub.add_parser("raw", help="score an arm's G without its EMA")
    rw.add_argument("arms", nargs="+", choices=list(ARMS))
    tr = sub.add_parser("truncation")
    tr.add_argument("-n", type=int, default=N_SAMPLES)
    pr = sub.add_parser("projection")
    pr.add_argument("--images", type=int, default=100)
    pr.add_argument("--steps", type=int, default=300)
    for q in (t, r, tr, pr, rw):
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--runs", type=Path, default=Path("/tmp/style-runs"))
    for q in (r, tr):
        q.add_argument("--examples", type=Path, default=ROOT / "docs" / "style")
    args = p.parse_args(argv)
    if args.cmd == "train":
        for arm in args.arms:
            train_arm(arm, args.minutes, args.seed, args.runs, args.n)
    elif args.cmd == "raw":
        for arm in args.arms:
            raw(arm, args.seed, args.runs)
    elif args.cmd == "report":
        report(args.seed, args.runs, args.examples)
    elif args.cmd == "truncation":
        truncation(args.seed, args.runs, args.n, args.examples)
    else:
        projection(args.seed, args.runs, args.images, args.steps)


if __name__ == "__main__":
    main()
