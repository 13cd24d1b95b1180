"""GAN against VAE on Fashion-MNIST at equal wall time: is the VAE blurrier and the GAN sharper?

Each entry is a shipped recipe trained for the same ``--minutes`` of training-step wall time on the
same number of threads (set-up and scoring not counted), seeds alternating the order of the entries:

    gan   fast-fashion-mnist (DCGAN with two extra layers, bf16 where the CPU has it, EMA)
    vae   vae-fashion-mnist  (conv encoder, the DCGAN generator as Bernoulli decoder, beta = 1, EMA)

Every run is scored on ``--n`` samples against the Fashion-MNIST test split: FID, KID and
precision/recall on the Fashion-MNIST domain features, and sharpness (variance of the Laplacian of
the samples over the real images': 1 = as sharp as the data, below 1 blurrier; needs no features).
Results go to OUT/results.jsonl as they arrive, OUT/table.md and OUT/grids/ (one 8x8 grid per run;
``--side-by-side FILE`` writes seed 0's GAN and VAE grids next to each other).

    python benchmarks/gan_vs_vae.py --minutes 5 --seeds 0 1 2 --threads 1
    python benchmarks/gan_vs_vae.py --report-only
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_vs_time import score, train_with_snapshots  # noqa: E402  (benchmarks/quality_vs_time.py)

ENTRIES = {"gan": ("fast-fashion-mnist", []), "vae": ("vae-fashion-mnist", [])}
METRICS = "fid,kid,pr,sharpness"
COLUMNS = [("fid", "FID ↓", ".2f"), ("kid", "KID ↓", ".3f"), ("precision", "precision", ".3f"),
           ("recall", "recall", ".3f"), ("sharpness", "sharpness (1 = data)", ".2f"), ("steps", "steps", ".0f")]


def run(entry: str, seed: int, args) -> dict:
    import torch

    from gankit.viz.grids import save_image_grid

    recipe, overrides = ENTRIES[entry]
    cfg, snaps, totals = train_with_snapshots(recipe, overrides, seed, args.minutes, [args.minutes], args.threads)
    _, seconds, step, G, _ = snaps[-1]
    row = {"entry": entry, "recipe": recipe, "seed": seed, "minutes": args.minutes, "threads": args.threads,
           "train_s": round(seconds, 2), **totals, **score(cfg, G, args.n, METRICS)}
    with torch.no_grad():
        z = torch.randn(64, cfg.model.z_dim, generator=torch.Generator().manual_seed(12345))
        save_image_grid(G(z).float(), args.out / "grids" / f"{entry}-seed{seed}.png")
    return row


def mean_std(vals) -> tuple:
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def table(rows: list) -> str:
    minutes = {r["minutes"] for r in rows}
    lines = [f"Fashion-MNIST, {'/'.join(f'{m:g}' for m in sorted(minutes))} minutes of training each, "
             f"mean ± std over seeds; {rows[0].get('n', '?')} samples vs the test split", "",
             "| entry | recipe | seeds | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for entry in ENTRIES:
        got = [r for r in rows if r["entry"] == entry]
        if not got:
            continue
        cells = []
        for key, _, spec in COLUMNS:
            m, s = mean_std([r[key] for r in got])
            cells.append(f"{m:{spec}} ± {s:{spec}}")
        lines.append(f"| {entry} | `{got[0]['recipe']}` | {len(got)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def side_by_side(out: Path, path: Path) -> None:
    from PIL import Image

    from gankit.utils import atomic_write_bytes
    import io

    a, b = Image.open(out / "grids" / "gan-seed0.png"), Image.open(out / "grids" / "vae-seed0.png")
    gap = 8
    both = Image.new(a.mode, (a.width + gap + b.width, max(a.height, b.height)), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width + gap, 0))
    buf = io.BytesIO()
    both.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="training wall time per run (default 5)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=10_000, help="samples scored per run (default 10,000)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every run (default 1)")
    p.add_argument("--entries", nargs="*", default=list(ENTRIES), choices=list(ENTRIES))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/gan_vs_vae"))
    p.add_argument("--side-by-side", type=Path, default=None, metavar="FILE",
                   help="PNG of seed 0's GAN and VAE grids side by side")
    p.add_argument("--report-only", action="store_true", help="rebuild the table from OUT/results.jsonl")
    args = p.parse_args(argv)
    from gankit.utils import atomic_write_text, read_jsonl

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    rows = read_jsonl(results) if results.exists() else []
    if not args.report_only:
        for i, seed in enumerate(args.seeds):
            order = args.entries if i % 2 == 0 else list(reversed(args.entries))  # neither always runs first
            for entry in order:
                row = run(entry, seed, args)
                row["n"] = args.n
                rows.append(row)
                atomic_write_text(results, "".join(json.dumps(r) + "\n" for r in rows))
                print(json.dumps(row), file=sys.stderr, flush=True)
    text = table(rows)
    atomic_write_text(args.out / "table.md", text + "\n")
    print(text)
    if args.side_by_side is not None:
        side_by_side(args.out, args.side_by_side)


if __name__ == "__main__":
    main()
