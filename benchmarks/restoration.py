"""Restoration on this CPU: super-resolution x4, inpainting, colorization and Pix2PixHD, each GAN
against the model trained without its critic.

    python benchmarks/restoration.py train ARM [ARM ...] [--minutes 15 | --steps N] [--seed 0] [--runs DIR]
    python benchmarks/restoration.py report [--runs DIR] [--examples docs/restoration]

Arms (one torch thread each, `train.minutes` of wall time each; run two `train` processes side by
side on a 2-core machine):

    srresnet       SRResNet, pixel MSE (the PSNR model)        srgan     SRGAN, from srresnet's weights
    esrgan-psnr    RRDB, pixel L1 (ESRGAN's stage 1)            esrgan    ESRGAN, from esrgan-psnr's weights
    inpaint        gated G + global/local critics (emoji)       inpaint-l1      the same G, L1 on the hole only
    uncrop         the inpainting networks on border bands (photos)  uncrop-l1  the same G, L1 only
    colorize       pix2pix L* -> a*b*, cGAN + L1 (emoji)        colorize-l1     the same U-Net, L1 only
    pix2pixhd      label map -> emoji, critics + FM + perceptual pix2pixhd-recon perceptual + L1 only
    srresnet-paper SRResNet at the paper's width 64 and 16 blocks
    srresnet-flips SRResNet on crops turned by the 8 symmetries of the square (data.options.flips)
    srgan-flips    SRGAN from srresnet-flips, with flips
    pix2pixhd-l1-critics   pix2pixhd with pix2pixhd-recon's L1 term too (the critics are the only difference)
    colorize-pre-l1 -> colorize-2stage, pix2pixhd-pre-recon -> pix2pixhd-2stage: two stages (e.g. 10 + 5
                   minutes), the GAN started from the reconstruction-only model, against one 15-minute ablation

`curve ARM --marks 5 10 20` trains one arm to each mark (minutes of its own clock) by resuming the same
run, and scores it at every mark: is the budget the limit, or the data and the network?
`gap RUN_DIR` scores a super-resolution run on its whole *training* photos and on the held-out ones, each
against bicubic: how much of what it learned carries over to photos it never saw.

Every arm is scored on held-out images with `gankit eval`'s protocol (gankit/metrics/translation.py:
the test photos coffee and rocket cut into 500 fixed 64 px crops, or the 392 held-out emoji, the
inputs' crops and holes drawn with seed 0): FID/KID against the held-out clean images on the domain
network, PSNR/SSIM on Y with a 4 px border cropped (SR: on the whole held-out photos, `*_whole`, and
on the crops) or on the hole (inpainting), colourfulness
(colorization), the perceptual distance, and the same numbers for the no-learning baseline (bicubic,
the grey hole, the grey image). Raw numbers go to benchmarks/results/restoration/<arm>-seed<s>.json;
`report` prints the tables and writes a strip per task (input | baseline | model without critic |
GAN | ground truth) to --examples.
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

RESULTS = ROOT / "benchmarks" / "results" / "restoration"

# arm -> (recipe, overrides, the arm whose run folder it starts from)
ARMS = {
    # measured before the SR recipes turned flips on: the arms keep the setting they were measured with
    "srresnet": ("srresnet-photos", ["data.options.flips=false"], None),
    "srresnet-paper": ("srresnet-photos", ["data.options.flips=false", "model.g.width=64", "model.g.n_blocks=16"], None),
    "srresnet-flips": ("srresnet-photos", ["data.options.flips=true"], None),
    "srgan": ("srgan-photos", ["data.options.flips=false"], "srresnet"),
    "srgan-flips": ("srgan-photos", ["data.options.flips=true"], "srresnet-flips"),
    "esrgan-psnr": ("esrgan-psnr-photos", ["data.options.flips=false"], None),
    "esrgan": ("esrgan-photos", ["data.options.flips=false"], "esrgan-psnr"),
    "inpaint": ("inpaint-emoji", [], None),
    "inpaint-l1": ("inpaint-emoji", ["loss.options.adversarial=false"], None),
    "uncrop": ("uncrop-photos", [], None),
    "uncrop-l1": ("uncrop-photos", ["loss.options.adversarial=false"], None),
    "colorize": ("colorize-emoji", ["loss.options.init_from=null"], None),
    "colorize-l1": ("colorize-l1-emoji", [], None),
    "pix2pixhd": ("pix2pixhd-emoji", [], None),
    "pix2pixhd-recon": ("pix2pixhd-emoji", ["loss.options.adversarial=false", "loss.options.l1_weight=1.0"], None),
    "pix2pixhd-l1-critics": ("pix2pixhd-emoji", ["loss.options.l1_weight=1.0"], None),
    # two stages in the budget of one: the reconstruction-only model first, then the GAN from its G
    "colorize-pre-l1": ("colorize-l1-emoji", [], None),
    "colorize-2stage": ("colorize-emoji", [], "colorize-pre-l1"),
    "pix2pixhd-pre-recon": ("pix2pixhd-emoji", ["loss.options.adversarial=false", "loss.options.l1_weight=1.0"], None),
    "pix2pixhd-2stage": ("pix2pixhd-emoji", ["loss.options.l1_weight=1.0"], "pix2pixhd-pre-recon"),
}
# task -> (its arms in strip order: the model without a critic first), the baseline's name
TASKS = {
    "super-resolution x4": (["srresnet", "srresnet-paper", "srresnet-flips", "esrgan-psnr", "srgan", "srgan-flips",
                             "esrgan"], "bicubic"),
    "inpainting": (["inpaint-l1", "inpaint"], "grey hole"),
    "uncropping": (["uncrop-l1", "uncrop"], "grey border"),
    "colorization": (["colorize-l1", "colorize", "colorize-pre-l1", "colorize-2stage"], "grey"),
    "labels2image": (["pix2pixhd-recon", "pix2pixhd", "pix2pixhd-l1-critics", "pix2pixhd-pre-recon",
                      "pix2pixhd-2stage"], None),
}


def arm_overrides(arm: str, minutes: float, seed: int, runs: Path, steps: int | None = None) -> list:
    """The arm's overrides: ``minutes`` of wall time, or with ``steps`` that many steps instead (an arm
    measured again on a busy machine, at the step count its earlier wall-time run reached)."""
    recipe, extra, start = ARMS[arm]
    budget = [f"train.minutes={minutes}"] if steps is None else ["train.minutes=null", f"train.steps={steps}"]
    overrides = [f"seed={seed}", *budget, "train.threads=1", *extra]
    if start is not None:   # the first stage of the same seed
        overrides.append(f"loss.options.init_from={run_dir(runs, start, seed)}")
    return overrides


def score_run(arm: str, out: Path, seed: int, overrides: list) -> dict:
    from gankit.evaluation import evaluate_translation
    from gankit.utils import read_jsonl

    last = read_jsonl(out / "metrics.jsonl")[-1]   # the run's own clock: training time only
    res = evaluate_translation(out, write=True)
    scores = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in res["AtoB"].items()}
    row = {"arm": arm, "recipe": ARMS[arm][0], "seed": seed, "overrides": overrides,
           "train_seconds": round(last["seconds"], 1), "steps": last["step"], "load": os.getloadavg()[0],
           "scores": scores, "protocol": res["protocol"]}
    print(f"{arm}: {row['steps']} steps in {row['train_seconds']:.0f} s; " +
          ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, float)), flush=True)
    return row


def train_arm(arm: str, minutes: float, seed: int, runs: Path, steps: int | None = None) -> dict:
    from gankit.config import load_config
    from gankit.train.run import train

    overrides = arm_overrides(arm, minutes, seed, runs, steps)
    out = run_dir(runs, arm, seed)
    if not (out / "checkpoints").is_dir():
        train(load_config(ARMS[arm][0], overrides), out=out, quiet=True)
    row = score_run(arm, out, seed, overrides)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{arm}-seed{seed}.json").write_text(json.dumps(row, indent=1) + "\n")
    return row


def curve(arm: str, marks: list, seed: int, runs: Path) -> list:
    """Train ``arm`` to each mark (minutes) by resuming one run, scoring it at every mark."""
    from gankit.config import load_config
    from gankit.train.run import train

    out, rows = run_dir(runs, f"curve-{arm}", seed), []
    for i, minutes in enumerate(sorted(marks)):
        overrides = arm_overrides(arm, minutes, seed, runs)
        if i == 0 and not (out / "checkpoints").is_dir():
            train(load_config(ARMS[arm][0], overrides), out=out, quiet=True)
        else:
            train(None, overrides=[f"train.minutes={minutes}"], resume=out, quiet=True)
        rows.append({"minutes": minutes, **score_run(arm, out, seed, overrides)})
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"curve-{arm}-seed{seed}.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


# the arms each task's strip shows (default: all of the task's arms)
STRIPS = {
    "super-resolution x4": ["srresnet", "esrgan-psnr", "srgan", "esrgan"],
    "colorization": ["colorize-l1", "colorize", "colorize-2stage"],
    "labels2image": ["pix2pixhd-recon", "pix2pixhd", "pix2pixhd-l1-critics"],
}
COLUMNS = {
    "super-resolution x4": ["psnr_y_whole", "ssim_y_whole", "psnr_y", "perceptual", "fid", "kid"],
    "inpainting": ["hole_psnr", "hole_ssim", "perceptual", "fid", "kid"],
    "uncropping": ["hole_psnr", "hole_ssim", "perceptual", "fid", "kid"],
    "colorization": ["psnr", "colourfulness", "perceptual", "fid", "kid"],
    "labels2image": ["psnr", "ssim", "perceptual", "fid", "kid"],
}
BASELINE_KEYS = {"fid": "fid_input", "kid": "kid_input", "psnr": None, "ssim": None}


def report(seed: int, runs: Path, examples: Path) -> None:
    for task, (arms, baseline) in TASKS.items():
        rows = {a: json.loads((RESULTS / f"{a}-seed{seed}.json").read_text())
                for a in arms if (RESULTS / f"{a}-seed{seed}.json").exists()}
        if not rows:
            continue
        cols = COLUMNS[task]
        print(f"\n{task} (seed {seed})")
        print("| model | steps | " + " | ".join(cols) + " |")
        print("|---|---|" + "---|" * len(cols))
        first = next(iter(rows.values()))["scores"]
        if baseline is not None:
            cells = []
            for c in cols:
                key = BASELINE_KEYS.get(c, c + "_baseline")
                v = first.get(key) if key else None
                cells.append(f"{v:.4g}" if isinstance(v, float) else "")
            print(f"| {baseline} | – | " + " | ".join(cells) + " |")
        for arm, row in rows.items():
            s = row["scores"]
            print(f"| {arm} | {row['steps']} | " + " | ".join(
                f"{s[c]:.4g}" if isinstance(s.get(c), float) else "" for c in cols) + " |")
        strip(task, [a for a in STRIPS.get(task, arms) if (runs / a / "checkpoints").is_dir()], baseline, runs,
              examples)


def strip(task: str, arms: list, baseline, runs: Path, examples: Path, n: int = 6) -> None:
    """input | baseline | each arm | ground truth, one row per held-out image."""
    import torch

    from gankit.api import load
    from gankit.data import load_dataset
    from gankit.metrics.restoration import baseline_pictures
    from gankit.viz.grids import image_grid, input_picture, png_bytes

    if not arms:
        return
    models = [load(runs / a) for a in arms]
    data = load_dataset(models[0].cfg.data, "test")
    g = torch.Generator().manual_seed(1)
    index = torch.randperm(len(data), generator=g)[:n]
    batch = data.batch(index, generator=g)
    target = batch["B"]
    size = tuple(target.shape[2:])
    cols = [input_picture(batch["A"], target.shape[1], size)]
    spec = data.info["restoration"]
    base = baseline_pictures(batch["A"], spec["task"], spec)
    if base is not None:
        cols.append(base.clamp(-1, 1))
    cols += [m.translate(batch["A"]) for m in models] + [target]
    cols = [c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c for c in cols]
    tiles = torch.stack(cols, 1).flatten(0, 1)
    examples.mkdir(parents=True, exist_ok=True)
    name = task.split()[0]
    path = examples / f"{name}.png"
    path.write_bytes(png_bytes(image_grid(tiles, nrow=len(cols)), 2))
    legend = ["input"] + ([baseline] if base is not None else []) + arms + ["ground truth"]
    (examples / f"{name}.txt").write_text(" | ".join(legend) + "\n")
    print(f"strip: {path} ({' | '.join(legend)})")


def gap(run: Path) -> dict:
    """PSNR-Y / SSIM-Y on the whole training photos and on the whole held-out ones, model and bicubic."""
    from gankit.api import load
    from gankit.data import load_dataset
    from gankit.metrics.translation import whole_image_sr

    model = load(run)
    scale = model.data["restoration"]["scale"]
    out = {"run": str(run), "steps": model.step}
    for split in ("train", "test"):
        data = load_dataset(model.cfg.data, split)
        out[split] = {"photos": len(data.whole_images()), **whole_image_sr(model, data, scale)}
        r = out[split]
        print(f"{split}: PSNR-Y {r['psnr_y_whole']:.2f} dB against bicubic's {r['psnr_y_whole_baseline']:.2f} "
              f"({r['psnr_y_whole'] - r['psnr_y_whole_baseline']:+.2f} dB)", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"gap-{run.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("arms", nargs="+", choices=list(ARMS))
    t.add_argument("--minutes", type=float, default=15.0)
    t.add_argument("--steps", type=int, default=None, help="a step budget instead of --minutes")
    c = sub.add_parser("curve")
    c.add_argument("arm", choices=list(ARMS))
    c.add_argument("--marks", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    g = sub.add_parser("gap")
    g.add_argument("run", type=Path)
    r = sub.add_parser("report")
    r.add_argument("--examples", type=Path, default=ROOT / "docs" / "restoration")
    for q in (t, c, r):
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--runs", type=Path, default=Path("/tmp/restoration-runs"))
    args = p.parse_args(argv)
    if args.cmd == "train":
        for arm in args.arms:
            train_arm(arm, args.minutes, args.seed, args.runs, args.steps)
    elif args.cmd == "curve":
        curve(args.arm, args.marks, args.seed, args.runs)
    elif args.cmd == "gap":
        gap(args.run)
    else:
        report(args.seed, args.runs, args.examples)


if __name__ == "__main__":
    main()
