"""Kill a training run with SIGKILL at random moments, restart it with the same command, count what
was lost and look for damaged files.

Each round starts ``gankit train RECIPE --out RUN --resume --quiet`` (the command that starts the run
and, run again, continues it), kills it with SIGKILL (``kill -9``: no handler runs) at a moment drawn
uniformly from [--from, --to] seconds after the process started, so some kills land during start-up,
some before the first checkpoint, some during a checkpoint write, and then checks every file in the
run folder:

* checkpoints load (``gankit.checkpoint.load_checkpoint``), config.yaml validates, JSON files parse,
  every line of metrics.jsonl / events.jsonl but a last one cut short parses, PNGs decode;
* work lost = the last step logged before the kill minus the step of the checkpoint the next round
  resumes from (steps are logged every ``train.log_every``, so this is a lower bound off by less
  than one logging interval), in steps and in training seconds;
* resumed = the next start of the same command continued (a checkpoint or, before the first one,
  config.yaml) instead of refusing.

After the last round the run is resumed once more and left to finish (``train.minutes`` set a few
seconds past where it is), which must exit 0 with one record per logged step.

The cost of writing a checkpoint is measured in the same process: the median of ``--saves`` writes
of the recipe's latest checkpoint, and its share of training time at the default interval
(``train.checkpoint_minutes``).

    python benchmarks/kill_resume.py                          # 20 rounds of fast-fashion-mnist
    python benchmarks/kill_resume.py --rounds 5 --recipe gan-ring8
Raw results: --out/rounds.jsonl, summary.json and table.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gankit.checkpoint import LATEST, load_checkpoint, load_latest  # noqa: E402
from gankit.config import load_config  # noqa: E402
from gankit.errors import GankitError  # noqa: E402
from gankit.utils import TMP_GLOB  # noqa: E402


def damaged_files(run_dir: Path) -> tuple[list, int, int]:
    """(damaged files with why, metrics/events files whose last line was cut short, temporaries left)."""
    from PIL import Image

    bad, cut = [], 0
    for ckpt in sorted((run_dir / "checkpoints").glob("*.safetensors")):
        try:
            load_checkpoint(ckpt)
        except GankitError as e:
            bad.append(f"{ckpt.name}: {e}")
    if (run_dir / "config.yaml").exists():
        try:
            load_config(run_dir / "config.yaml")
        except GankitError as e:
            bad.append(f"config.yaml: {e}")
    for name in ("health.json", "eval_cards.json", "eval.json"):
        path = run_dir / name
        if path.exists():
            try:
                json.loads(path.read_text())
            except ValueError as e:
                bad.append(f"{name}: {e}")
    for name in ("metrics.jsonl", "events.jsonl"):
        path = run_dir / name
        if not path.exists():
            continue
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            try:
                json.loads(line)
            except ValueError:
                if i == len(lines) - 1:
                    cut += 1  # an append cut short; read_jsonl skips it and resume rewrites the file
                else:
                    bad.append(f"{name}:{i + 1}")
    for png in sorted(run_dir.rglob("*.png")):
        try:
            with Image.open(png) as im:
                im.load()
        except Exception as e:  # PIL raises several types for a damaged file
            bad.append(f"{png.relative_to(run_dir)}: {type(e).__name__}")
    return bad, cut, len(list(run_dir.rglob(TMP_GLOB)))


def last_record(stderr: str) -> dict | None:
    """The last metrics record the process printed (``--quiet`` prints one JSON line per record)."""
    last = None
    for line in stderr.splitlines():
        if line.startswith("{"):
            try:
                last = json.loads(line)
            except ValueError:
                pass
    return last


def checkpoint_step(run_dir: Path) -> tuple[int, float]:
    try:
        found = load_latest(run_dir)
    except GankitError:
        return -1, 0.0
    if found is None:
        return 0, 0.0
    tr = found[0]["trainer"]
    return int(tr["step"]), float(tr["seconds"])


def save_cost(recipe: str, overrides: list, saves: int) -> dict:
    """Median wall time of writing the recipe's latest checkpoint (its networks, optimisers, EMA)."""
    from gankit.train.run import Run

    cfg = load_config(recipe, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, Path(tmp) / "run", quiet=True)
        run.trainer.train_step()  # optimiser state exists, as in any real checkpoint
        times = []
        for _ in range(saves):
            tic = time.perf_counter()
            path = run.save(LATEST)
            times.append(time.perf_counter() - tic)
        size = path.stat().st_size
    ms = statistics.median(times) * 1e3
    minutes = cfg.train.checkpoint_minutes
    return {"recipe": recipe, "save_ms_median": round(ms, 1), "save_ms_min": round(min(times) * 1e3, 1),
            "save_ms_max": round(max(times) * 1e3, 1), "bytes": size, "checkpoint_minutes": minutes,
            "share_of_training": round(ms / 1e3 / (minutes * 60), 6) if minutes else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="fast-fashion-mnist")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--from", dest="t0", type=float, default=1.0, help="earliest kill, seconds after the start")
    ap.add_argument("--to", dest="t1", type=float, default=10.0, help="latest kill, seconds after the start")
    ap.add_argument("--checkpoint-minutes", type=float, default=0.05,
                    help="train.checkpoint_minutes for the killed run (short, so rounds span several)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--saves", type=int, default=10, help="checkpoint writes timed for the cost")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "kill_resume"))
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="kill_resume."))
    run_dir = work / "run"
    sets = [f"train.log_every={args.log_every}", f"train.checkpoint_minutes={args.checkpoint_minutes}",
            "train.threads=2", *args.overrides]
    cmd = [sys.executable, "-m", "gankit", "train", args.recipe, *[a for s in sets for a in ("--set", s)],
           "--out", str(run_dir), "--resume", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(args.seed)
    rounds = []
    (out / "rounds.jsonl").write_text("")
    for i in range(args.rounds):
        kill_at = rng.uniform(args.t0, args.t1)
        before = checkpoint_step(run_dir)[0] if run_dir.exists() else 0
        with open(work / "stderr.txt", "w") as err:
            p = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
            try:
                rc = p.wait(timeout=kill_at)  # exited by itself before the kill: an error, or finished
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                rc = p.wait()
        stderr = (work / "stderr.txt").read_text()
        refused = rc not in (-signal.SIGKILL, 0)
        last = last_record(stderr)
        step_ckpt, sec_ckpt = checkpoint_step(run_dir)
        bad, cut, tmps = damaged_files(run_dir)
        reached = last["step"] if last else before
        row = {"round": i, "kill_at_s": round(kill_at, 3), "returncode": rc,
               "resumed_from": before, "restarted_from_config": "no checkpoint yet" in stderr,
               "last_logged_step": reached, "checkpoint_step": step_ckpt,
               "steps_lost": max(0, reached - step_ckpt) if step_ckpt >= 0 else None,
               "seconds_lost": round(max(0.0, last["seconds"] - sec_ckpt), 3) if last and step_ckpt >= 0 else 0.0,
               "damaged": bad, "cut_lines": cut, "temporaries": tmps, "refused": refused,
               "error": stderr.strip().splitlines()[-1] if refused and stderr.strip() else None}
        rounds.append(row)
        with open(out / "rounds.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"round {i:2d}: killed at {kill_at:5.2f} s, from step {before} to >= {reached}, checkpoint "
              f"{step_ckpt}, lost {row['steps_lost']} steps / {row['seconds_lost']} s, damaged {len(bad)}, "
              f"temporaries {tmps}" + (f", REFUSED: {row['error']}" if refused else ""), flush=True)

    # The end: resume once more and let the run finish a few seconds later.
    step_now, sec_now = checkpoint_step(run_dir)
    finish = subprocess.run(cmd + ["--set", f"train.minutes={(sec_now + 5) / 60:.4f}"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=600)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    final_ok = finish.returncode == 0 and steps == sorted(set(steps))
    bad_end = damaged_files(run_dir)[0]

    cost = save_cost(args.recipe, sets[:1] + list(args.overrides), args.saves)
    lost = [r["steps_lost"] for r in rounds if r["steps_lost"] is not None]
    lost_s = [r["seconds_lost"] for r in rounds]
    interval_s = args.checkpoint_minutes * 60
    summary = {
        "recipe": args.recipe, "rounds": args.rounds, "kill_window_s": [args.t0, args.t1], "seed": args.seed,
        "checkpoint_minutes": args.checkpoint_minutes, "log_every": args.log_every,
        "resumed": sum(1 for r in rounds[1:] if not r["refused"]) + int(final_ok),
        "restarts_from_config": sum(r["restarted_from_config"] for r in rounds),
        "steps_lost_median": statistics.median(lost) if lost else None, "steps_lost_max": max(lost) if lost else None,
        "seconds_lost_median": round(statistics.median(lost_s), 3), "seconds_lost_max": round(max(lost_s), 3),
        "within_one_interval": sum(s <= interval_s for s in lost_s),
        "damaged_files": sum(len(r["damaged"]) for r in rounds) + len(bad_end),
        "cut_lines": sum(r["cut_lines"] for r in rounds),
        "temporaries_left_by_kills": sum(r["temporaries"] for r in rounds),
        "final_resume_exit": finish.returncode, "final_records_unique": final_ok, "final_step": steps[-1] if steps else 0,
        "checkpoint_cost": cost, "python": sys.version.split()[0],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    table = [
        f"# kill -9 and resume: {args.recipe}, {args.rounds} rounds",
        "",
        f"`python benchmarks/kill_resume.py --recipe {args.recipe} --rounds {args.rounds}` (kills uniform in "
        f"[{args.t0:g}, {args.t1:g}] s after each start, checkpoints every {args.checkpoint_minutes:g} min, "
        f"a record every {args.log_every} steps).",
        "",
        "| measure | result |",
        "|---|---|",
        f"| rounds resumed by the same command | {summary['resumed']}/{args.rounds} |",
        f"| of them restarted from config.yaml (killed before the first checkpoint) | {summary['restarts_from_config']} |",
        f"| work lost per kill, steps (median / max) | {summary['steps_lost_median']} / {summary['steps_lost_max']} |",
        f"| work lost per kill, training seconds (median / max) | {summary['seconds_lost_median']} / "
        f"{summary['seconds_lost_max']} (interval {interval_s:g} s) |",
        f"| kills that lost at most one checkpoint interval | {summary['within_one_interval']}/{args.rounds} |",
        f"| damaged files found | {summary['damaged_files']} |",
        f"| metrics/events lines cut short by a kill (skipped on read, rewritten on resume) | {summary['cut_lines']} |",
        f"| temporary files left by kills (removed on resume) | {summary['temporaries_left_by_kills']} |",
        f"| final resume finished, one record per step | {'yes' if final_ok else 'NO'} (step {summary['final_step']}) |",
        f"| writing one checkpoint (median of {args.saves}, {cost['bytes'] / 1e6:.1f} MB) | {cost['save_ms_median']} ms |",
        f"| its share of training at the default interval ({cost['checkpoint_minutes']} min) | "
        f"{100 * (cost['share_of_training'] or 0):.3f} % |",
        "",
    ]
    (out / "table.md").write_text("\n".join(table))
    print("\n".join(table))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
