"""Never lose a run: real training processes killed (SIGKILL), interrupted (SIGINT, SIGTERM, also
under torchrun), resumed with the command that started them, and compared with a run that was
never interrupted.

The claim: on the CPU with a fixed seed, a run killed at any moment and resumed finishes with the
same weights, the same metrics records (timing fields aside), the same health events and the same
sample grids as the uninterrupted run; after a kill before the first checkpoint it restarts from
its config.yaml. ``GANKIT_FAULT`` (gankit/faults.py) places a SIGKILL at an exact step or inside a
checkpoint write; one test kills from outside at a moment it does not choose.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gankit.checkpoint import LATEST, PREVIOUS, load_checkpoint, load_latest
from gankit.utils import TMP_GLOB

from test_distributed import free_port

ROOT = Path(__file__).resolve().parents[1]
STEPS = 400
# gan-ring8, tiny: a record every 5 steps (the first checkpoint comes with the first one, at step 5),
# a checkpoint every 50 steps, grids every 100, the health monitor on (its state must survive too).
TINY = ["data.size=2000", "model.g.width=32", "model.d.width=32", "train.batch_size=64", "train.threads=1",
        "train.log_every=5", "train.checkpoint_every=50", "train.sample_every=100", "health.samples=256",
        "eval.every=60", "eval.n=500"]   # FID every 60 steps picks checkpoints/best: the evaluator's state too
TIMING = {"seconds", "steps_per_s", "eval_seconds"}  # wall-time fields: the only ones that may differ


def command(out: Path, steps: int = STEPS, extra=()) -> list:
    """The one command that starts the run and, run again, continues it (``--resume`` with a recipe)."""
    sets = [a for o in TINY + [f"train.steps={steps}", *extra] for a in ("--set", o)]
    return [sys.executable, "-m", "gankit", "train", "gan-ring8", *sets, "--out", str(out), "--resume", "--quiet"]


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "GANKIT_FAULT")}
    e.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return e


def run(cmd, cwd, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=300)


def records(run_dir: Path) -> list:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    """``b`` (interrupted and resumed) finished exactly as ``a`` (never interrupted)."""
    ra, rb = records(a), records(b)
    assert [r["step"] for r in rb] == [r["step"] for r in ra]          # no step missing or duplicated
    assert rb == ra
    assert (b / "events.jsonl").exists() == (a / "events.jsonl").exists()
    if (a / "events.jsonl").exists():
        assert (b / "events.jsonl").read_text() == (a / "events.jsonl").read_text()
    assert sorted(p.name for p in (b / "samples").iterdir()) == sorted(p.name for p in (a / "samples").iterdir())
    sa, sb = load_checkpoint(a / LATEST), load_checkpoint(b / LATEST)
    assert sb["trainer"]["step"] == sa["trainer"]["step"] == STEPS
    assert sb["trainer"]["best_step"] == sa["trainer"]["best_step"] is not None
    for name, tensors in sa["modules"].items():
        for k, v in tensors.items():
            assert torch.equal(sb["modules"][name][k], v), f"{name}.{k} differs"
    ha, hb = (json.loads((d / "health.json").read_text()) for d in (a, b))
    for k in ("status", "events", "rollbacks", "lr_scale", "final_step"):
        assert hb[k] == ha[k], k
    assert not list(b.rglob(TMP_GLOB))                                   # no half-written file left


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The reference: the same command, never interrupted."""
    cwd = tmp_path_factory.mktemp("straight")
    p = run(command(cwd / "run"), cwd)
    assert p.returncode == 0, p.stderr[-2000:]
    return cwd / "run"


@pytest.mark.parametrize("fault, resumes_from", [
    ("step:3", None),              # before the first checkpoint: restarts from config.yaml
    ("latest-write:3", 50),        # inside the write at step 100: `latest` was moved to `previous` (step 50)
    ("step:137", 100),             # between checkpoints
])
def test_a_killed_run_resumes_and_finishes_as_if_never_killed(straight, tmp_path, fault, resumes_from):
    killed = run(command(tmp_path / "run"), tmp_path, GANKIT_FAULT=fault)
    assert killed.returncode == -signal.SIGKILL
    ckpts = tmp_path / "run" / "checkpoints"
    if fault.startswith("latest-write"):
        assert list(ckpts.glob(TMP_GLOB)) and not (ckpts / "latest.safetensors").exists()  # killed mid-write
    found = load_latest(tmp_path / "run")
    assert (found and found[0]["trainer"]["step"]) == resumes_from
    again = run(command(tmp_path / "run"), tmp_path)                     # the same command
    assert again.returncode == 0, again.stderr[-2000:]
    assert ("no checkpoint yet; starting again from its config.yaml" in again.stderr) == (resumes_from is None)
    assert_same_run(straight, tmp_path / "run")


def wait_for_record(run_dir: Path, step: int, p: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = run_dir / "metrics.jsonl"
        if path.exists():
            lines = path.read_text().splitlines()
            if lines and lines[-1].endswith("}") and json.loads(lines[-1])["step"] >= step:
                return
        assert p.poll() is None, "the run ended before it was interrupted"
        time.sleep(0.01)
    raise TimeoutError(f"no record of step {step} in {run_dir}")


def test_a_run_killed_from_outside_between_checkpoints(straight, tmp_path):
    p = subprocess.Popen(command(tmp_path / "run"), cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_for_record(tmp_path / "run", 60, p)
    p.kill()
    assert p.wait() == -signal.SIGKILL
    done = load_checkpoint(tmp_path / "run" / LATEST)["trainer"]["step"]
    assert 0 < done < STEPS
    again = run(command(tmp_path / "run"), tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_run(straight, tmp_path / "run")


@pytest.mark.parametrize("signals, code", [
    ([signal.SIGINT], 130),
    ([signal.SIGTERM], 143),
    ([signal.SIGINT, signal.SIGINT], 130),   # the second Ctrl-C quits at once; nothing is corrupted
])
def test_a_signal_writes_a_checkpoint_and_exits_with_its_code(straight, tmp_path, signals, code):
    p = subprocess.Popen(command(tmp_path / "run"), cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_for_record(tmp_path / "run", 30, p)
    for s in signals:
        p.send_signal(s)
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err[-2000:]
    state = load_checkpoint(tmp_path / "run" / LATEST)
    if len(signals) == 1:
        step = state["trainer"]["step"]
        assert f"at step {step}: checkpoint written" in err and "continue with: gankit train --resume" in err
        assert step < STEPS and records(tmp_path / "run")[-1]["step"] <= step
    again = run(command(tmp_path / "run"), tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_run(straight, tmp_path / "run")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_torchrun_stops_every_rank_at_one_step_and_resumes(tmp_path, sig):
    out = tmp_path / "run"
    cmd = command(out, steps=100000, extra=["train.dist_timeout_s=60"])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port())]
    p = subprocess.Popen(torchrun + cmd[1:], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_for_record(out, 20, p)
    p.send_signal(sig)          # SIGTERM: what a scheduler sends on pre-emption; torchrun passes it on
    _, err = p.communicate(timeout=120)
    assert p.returncode != 0
    step = load_checkpoint(out / LATEST)["trainer"]["step"]
    # Rank 0 wrote the checkpoint after the step all ranks agreed on, and says so once.
    assert err.count(f"gankit: {sig.name} at step {step}: checkpoint written") == 1, err[-3000:]
    assert "DistributedError" not in err and "/gankit/" not in err   # no traceback from gankit on any rank
    again = subprocess.run(torchrun[:-1] + [str(free_port())] + [*cmd[1:], "--set", f"train.steps={step + 10}"],
                           cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    steps = [r["step"] for r in records(out)]
    assert steps == sorted(set(steps)) and steps[-1] == step + 10


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(straight, tmp_path):
    killed = run(command(tmp_path / "run"), tmp_path, GANKIT_FAULT="step:180")
    assert killed.returncode == -signal.SIGKILL
    latest = tmp_path / "run" / LATEST
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])   # a disk that lost half the file
    again = run(command(tmp_path / "run"), tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "corrupt or truncated checkpoint" in again.stderr and "previous.safetensors (step 100) instead" in again.stderr
    assert (tmp_path / "run" / "checkpoints" / "latest.damaged").exists()   # kept for inspection, out of the way
    assert_same_run(straight, tmp_path / "run")


def test_loading_a_run_with_a_damaged_latest_checkpoint_uses_the_previous_one(straight, tmp_path, capsys):
    import gankit

    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    (run_dir / LATEST).write_bytes(b"not a checkpoint")
    gan = gankit.load(run_dir)
    assert gan.step == load_checkpoint(run_dir / PREVIOUS)["trainer"]["step"]
    assert "using" in capsys.readouterr().err


def test_an_unreadable_config_is_taken_from_the_checkpoint(straight, tmp_path):
    killed = run(command(tmp_path / "run"), tmp_path, GANKIT_FAULT="step:120")
    assert killed.returncode == -signal.SIGKILL
    (tmp_path / "run" / "config.yaml").write_text("train: {steps: [")
    again = run([*command(tmp_path / "run")[:4], "--resume", str(tmp_path / "run"), "--quiet"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "config.yaml is unreadable" in again.stderr and "using the config stored in" in again.stderr
    assert_same_run(straight, tmp_path / "run")


def test_no_readable_checkpoint_is_one_clear_line(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "v1" / "gan-ring8-v1", run_dir)
    for name in ("latest", "previous"):
        (run_dir / "checkpoints" / f"{name}.safetensors").write_bytes(b"\0" * 100)
    p = run([sys.executable, "-m", "gankit", "train", "--resume", str(run_dir)], tmp_path)
    assert p.returncode == 2
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("gankit: error:") and "no readable checkpoint" in line and "move" in line


def test_resuming_a_finished_run_says_so_and_changes_nothing(straight, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    # every file but the lock, which holds the pid of the process that has the folder (RUN_DIR/.lock)
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    p = run(command(run_dir), tmp_path)
    assert p.returncode == 0
    assert f"this run has finished at step {STEPS}; to train it longer" in p.stderr and f"--set train.steps={2 * STEPS}" in p.stderr
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"} == before
    longer = run([*command(run_dir)[:4], "--resume", str(run_dir), "--set", f"train.steps={STEPS + 10}", "--quiet"],
                 tmp_path)
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert records(run_dir)[-1]["step"] == STEPS + 10


def test_the_same_command_refuses_a_folder_holding_another_model(straight, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    p = run(command(run_dir, extra=["model.z_dim=3"]), tmp_path)
    assert p.returncode == 2
    assert "holds a run with model.z_dim=" in p.stderr.strip().splitlines()[-1]


def test_tensorboard_after_a_resume_has_each_step_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    killed = run(command(tmp_path / "run"), tmp_path, GANKIT_FAULT="step:137")
    assert killed.returncode == -signal.SIGKILL
    assert run(command(tmp_path / "run"), tmp_path).returncode == 0
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("d_loss")]
    assert steps == list(range(5, STEPS + 1, 5))   # the steps after the checkpoint were purged, then written once


def test_health_state_survives_a_resume(tmp_path):
    # An exploding learning rate: the monitor rolls back (learning rates ×0.1) early; the kill comes
    # after, so the resumed run must know the rollback, the learning-rate scale and its window.
    explode = ["train.g_optim.lr=0.5", "train.d_optim.lr=0.5", "health.lr_factor=0.1", "health.on_converged=warn"]
    a = run(command(tmp_path / "a", steps=200, extra=explode), tmp_path)
    assert a.returncode == 0, a.stderr[-2000:]
    health = json.loads((tmp_path / "a" / "health.json").read_text())
    assert health["rollbacks"] >= 1
    killed = run(command(tmp_path / "b", steps=200, extra=explode), tmp_path, GANKIT_FAULT="step:170")
    assert killed.returncode == -signal.SIGKILL
    state = load_checkpoint(tmp_path / "b" / LATEST)["callbacks"]["health"]
    assert state["rollbacks"] == health["rollbacks"] and state["monitor"]["history"]
    assert run(command(tmp_path / "b", steps=200, extra=explode), tmp_path).returncode == 0
    assert records(tmp_path / "b") == records(tmp_path / "a")
    hb = json.loads((tmp_path / "b" / "health.json").read_text())
    for k in ("status", "events", "rollbacks", "lr_scale"):
        assert hb[k] == health[k], k


def test_a_purging_tensorboard_writer_sorts_after_every_earlier_event_file(tmp_path):
    """TensorBoard sorts event files by name, "...tfevents.<second>.<host>.<pid>.<n>" with n unpadded:
    in one second a 10th writer's file sorts before a 9th's, and its purge of a rolled-back stretch
    missed that file (a flaky test_health failure in a long pytest process). A purging writer now
    starts in a later second than every file there."""
    import socket
    import time

    from torch.utils.tensorboard import SummaryWriter

    from gankit.train.run import after_event_files

    tb = tmp_path / "tb"
    tb.mkdir()
    now = int(time.time())
    (tb / f"events.out.tfevents.{now + 1:010d}.{socket.gethostname()}.1.9").write_bytes(b"")
    after_event_files(tb)
    assert int(time.time()) > now + 1
    writer = SummaryWriter(log_dir=str(tb), purge_step=5)
    writer.close()
    names = sorted(p.name for p in tb.iterdir())
    assert len(names) == 2 and names[0].endswith(".1.9")   # the purging writer's file reads last
