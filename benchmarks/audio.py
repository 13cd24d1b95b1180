"""Speech through spectrograms on this CPU: conditional spoken-digit generation and voice conversion.

    python benchmarks/audio.py [--models fast-specgan-digits specgan-digits cyclegan-voices] [--minutes 20]
                               [--seed 0] [--n 2000] [--examples docs/audio]

Per model (one after the other, one torch thread each, `train.minutes` of wall time), on the default
spoken-digit corpus (`gankit data make spoken-digits`, 8 voices x 10 digits x 30 takes; made in gankit's
cache on first use):

* generation recipes: `--n` samples (classes in turn) scored against the 480 held-out words with the
  digit classifier's features (FID, KID, precision/recall), the intended digit recognised by that
  classifier (`class_acc`, beside its accuracy on the real held-out words), and the effective number
  of speakers among samples and real words by the speaker classifier (`voices`);
* voice conversion: every held-out word of each speaker converted to the other, judged by the speaker
  and digit classifiers, and its MCD against the target speaker's same digit and take beside the MCD
  of the unconverted source (both through Griffin-Lim; gankit/metrics/audio.py).

Prints a table, writes the raw numbers to benchmarks/results/audio/<model>-seed<s>.json, and example
WAVs and spectrogram pictures to --examples (docs/audio by default). Run folders go to a temporary
directory (--keep DIR to keep them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "audio"
GENERATION_METRICS = "fid,kid,pr,class_acc,voices"


def run_model(recipe: str, minutes: float, seed: int, n: int, out: Path, examples: Path, extra=(),
              eval_only: bool = False) -> dict:
    import torch

    from gankit.api import load
    from gankit.config import load_config
    from gankit.evaluation import evaluate, evaluate_translation
    from gankit.train.run import train
    from gankit.utils import read_jsonl

    overrides = [f"seed={seed}", f"train.minutes={minutes}", "train.threads=1", *extra]
    cfg = load_config(recipe, overrides)
    if not eval_only:
        train(cfg, out=out, quiet=True)
    last = read_jsonl(out / "metrics.jsonl")[-1]   # the run's own clock: training time only
    row = {"recipe": recipe, "seed": seed, "overrides": overrides, "train_seconds": round(last["seconds"], 1),
           "steps": last["step"], "load": os.getloadavg()[0]}
    model = load(out)
    target = examples / recipe
    target.mkdir(parents=True, exist_ok=True)
    if model.task.name == "generation":
        res = evaluate(out, metrics=GENERATION_METRICS, n=n, seed=seed, quiet=True)
        row["scores"] = {k: float(v) for k, v in res.scalars().items()}
        from gankit.audio.render import write_samples
        labels = torch.arange(model.num_classes).repeat_interleave(2)
        x, y = model.sample(len(labels), seed=seed, labels=labels)
        write_samples(x, y, model.data["audio"], target, seed=seed)
    else:
        res = evaluate_translation(model, write=False)
        row["scores"] = {d: {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in r.items()}
                         for d, r in res.items() if d != "protocol"}
        row["protocol"] = res["protocol"]
        from gankit.audio.render import for_display, settings_of
        from gankit.audio.spectrogram import to_audio_batch
        from gankit.audio_io import write_wav
        from gankit.data import load_dataset
        from gankit.viz.grids import save_image_grid

        s = settings_of(model.data["audio"])
        data = load_dataset(model.cfg.data, "test", seed=model.cfg.seed)
        pair = model.data["audio"]["pair"]
        for direction, side in (("AtoB", data), ("BtoA", data.swapped())):
            x = side.batch(torch.arange(3))["A"]
            y = model.translate(x, direction)
            src, dst = (pair if direction == "AtoB" else pair[::-1])
            for i, (a, b) in enumerate(zip(to_audio_batch(x, s, seed=seed), to_audio_batch(y, s, seed=seed))):
                write_wav(target / f"{direction}_{i}_{src}.wav", a, s.sample_rate)
                write_wav(target / f"{direction}_{i}_{src}_as_{dst}.wav", b, s.sample_rate)
            save_image_grid(for_display(torch.cat([x, y])), target / f"{direction}.png", nrow=3)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["fast-specgan-digits", "specgan-digits", "cyclegan-voices"])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=2000, help="generated samples scored per generation model")
    ap.add_argument("--examples", default=str(ROOT / "docs" / "audio"))
    ap.add_argument("--keep", default=None, help="keep the run folders here")
    ap.add_argument("--set", nargs="*", default=[], help="further config overrides for every model")
    ap.add_argument("--eval-only", action="store_true", help="score the runs already in --keep DIR (no training)")
    ap.add_argument("--tag", default="", help="added to the result files' names (e.g. -id1 for an ablation)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.eval_only and not args.keep:
        ap.error("--eval-only scores the runs in --keep DIR: give it")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="audio-bench-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"runs in {base}; {args.minutes:g} minutes each; load {os.getloadavg()[0]:.1f} (the CPU may be shared)",
          flush=True)
    rows = []
    for recipe in args.models:
        row = run_model(recipe, args.minutes, args.seed, args.n, base / recipe, Path(args.examples), args.set,
                        eval_only=args.eval_only)
        row["command"] = "python benchmarks/audio.py " + " ".join(sys.argv[1:])
        (RESULTS / f"{recipe}{args.tag}-seed{args.seed}.json").write_text(json.dumps(row, indent=1) + "\n")
        rows.append(row)
        print(f"{recipe}: {row['steps']} steps in {row['train_seconds']:.0f} s: "
              f"{json.dumps(row['scores'])}", flush=True)
    gen = [r for r in rows if "fid" in r["scores"]]
    if gen:
        print("\n| model | steps | FID | KID | precision | recall | intended digit | (real) | speakers | (real) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in gen:
            s = r["scores"]
            print(f"| {r['recipe']} | {r['steps']} | {s['fid']:.2f} | {s['kid']:.4f} | {s['precision']:.3f} | "
                  f"{s['recall']:.3f} | {100 * s['class_acc']:.1f} % | {100 * s['class_acc_real']:.1f} % | "
                  f"{s['speakers']:.2f} | {s['speakers_real']:.2f} |")
    for r in rows:
        if "fid" in r["scores"]:
            continue
        print(f"\n{r['recipe']} ({r['steps']} steps)")
        print("| direction | target speaker | (source) | digit kept | (source) | MCD dB | (source) |")
        print("|---|---|---|---|---|---|---|")
        for d, s in r["scores"].items():
            print(f"| {d} | {100 * s['target_speaker']:.1f} % | {100 * s['target_speaker_input']:.1f} % | "
                  f"{100 * s['digit_kept']:.1f} % | {100 * s['digit_input']:.1f} % | {s['mcd']:.1f} | "
                  f"{s['mcd_input']:.1f} |")
    print(f"\nraw results: {RESULTS}")


if __name__ == "__main__":
    main()
