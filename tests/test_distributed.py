"""Data-parallel training (gankit/train/distributed.py) with real processes on the CPU (gloo).

The claim under test: N processes with a global batch B train exactly the run one process
with batch B trains (to float rounding), write one run folder, and leave checkpoints that
resume on any number of processes. Processes run with one thread each.
"""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from gankit.config import load_config
from gankit.data import EpochSampler
from gankit.checkpoint import load_checkpoint
from gankit.train.distributed import Dist, ShardedNoise
from gankit.train.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]
# A tiny gan-ring8: R1 in D (double backward), BatchNorm in G synced over ranks, an EMA of G.
TINY = ["model.g.width=32", "model.d.width=32", "model.g.batchnorm=true", "train.sync_batchnorm=true",
        "train.ema=0.9", "train.batch_size=64", "train.log_every=5", "train.checkpoint_every=10",
        "train.sample_every=1000", "train.threads=1", "health.samples=64", "train.dist_timeout_s=60"]
TOL = 1e-4  # max |difference| of any logged number or weight between 2 processes and 1 (float rounding)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    e.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **{k: str(v) for k, v in extra.items()})
    return e


def sets(overrides) -> list:
    return [a for o in overrides for a in ("--set", o)]


def gankit_train(args, cwd, nproc=1, wait=True, **kw):
    """``gankit train ARGS --quiet`` in ``nproc`` processes (torchrun when > 1); waits unless told not to."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", str(free_port())]
    p = subprocess.Popen(launcher + ["-m", "gankit", "train", *args, "--quiet"], cwd=cwd, env=env(**kw),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return finish(p) if wait else p


def finish(p: subprocess.Popen, ok: bool = True) -> tuple:
    out, err = p.communicate(timeout=120)
    if ok:
        assert p.returncode == 0, err[-3000:]
    return out, err, p.returncode


def records(run_dir: Path) -> dict:
    return {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def max_diff(a: dict, b: dict, keys) -> float:
    return max(abs(a[k] - b[k]) for k in keys)


def test_two_processes_train_the_single_process_run_and_resume_in_one(tmp_path):
    # 2 processes × 32 samples for 20 steps, then that checkpoint resumed in 1 process to step 30,
    # against 1 process × 64 samples for 30 steps straight.
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    one = gankit_train(["gan-ring8", "--out", str(single), *sets(TINY + ["train.steps=30"])], tmp_path, wait=False)
    out, _, _ = gankit_train(["gan-ring8", "--out", str(ddp), *sets(TINY + ["train.steps=20"])], tmp_path, nproc=2)
    finish(one)
    assert out.count("trained gan-ring8") == 1  # rank 0 speaks for the job
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]  # one folder per run, nothing else
    assert not list(ddp.glob("**/*rank*"))

    ref, got = records(single), records(ddp)
    assert sorted(got) == [5, 10, 15, 20]
    keys = ["d_loss", "g_loss", "r1", "acc_real", "acc_fake", "d_real", "d_fake", "grad/D", "grad/G"]
    for step in got:
        assert max_diff(got[step], ref[step], keys) < TOL, (step, got[step], ref[step])
    # The losses moved: equality is not two runs that did nothing.
    assert max_diff(ref[20], ref[5], keys) > 100 * TOL

    # Resume the 2-process checkpoint in one process: it continues the same run.
    gankit_train(["--resume", str(ddp), *sets(["train.steps=30"])], tmp_path)
    got = records(ddp)
    assert sorted(got) == [5, 10, 15, 20, 25, 30]
    for step in (25, 30):
        assert max_diff(got[step], ref[step], keys) < TOL, (step, got[step], ref[step])
    a, b = load_checkpoint(ddp / "checkpoints/latest.safetensors"), load_checkpoint(single / "checkpoints/latest.safetensors")
    assert a["trainer"]["step"] == b["trainer"]["step"] == 30
    # The biases of G's layers that feed a BatchNorm have a gradient of exactly 0, so Adam turns
    # its rounding noise into steps of up to lr = 1e-3 (differently in the two runs); BatchNorm
    # cancels them and its running mean carries them. Every other tensor agrees to 1e-6.
    lr_steps = {f"net.{i}.bias" for i in (0, 3, 6)} | {f"net.{i}.running_mean" for i in (1, 4, 7)}
    for net in ("G", "D", "G_ema"):
        for k, v in b["modules"][net].items():
            atol = 30 * 1e-3 if net != "D" and k in lr_steps else 1e-6
            assert torch.allclose(a["modules"][net][k].float(), v.float(), atol=atol), (net, k)


WORKER = textwrap.dedent("""
    import copy, os, sys, json, torch
    from gankit.config import load_config
    from gankit.train.loop import Trainer
    from gankit.checkpoint import save_checkpoint
    from gankit.train.distributed import exit_worker

    cfg = load_config("gan-ring8", json.loads(sys.argv[1]))
    mode, out = sys.argv[2], sys.argv[3]
    t = Trainer(cfg)
    for step in range(int(sys.argv[4])):
        if mode == "die" and t.dist.rank == 1 and step == 2:
            os._exit(3)  # a rank that dies without a word
        t.train_step()
        if step == 0:
            snapshot = copy.deepcopy(t.state_dict())
    stats = t.pop_stats()
    # Rank 0 alone rolls back (as when its health monitor asks), then every rank takes its state.
    if t.dist.is_main:
        t.rollback(snapshot, lr_scale=0.5)
    t.sync_from_main()
    t.train_step()
    after = t.pop_stats()
    if t.dist.is_main:
        save_checkpoint(out, {"G": t.nets["G"].state_dict(), "D": t.nets["D"].state_dict(), "stats": stats,
                              "after": after})
    t.dist.close()
    exit_worker(0)  # as `gankit train` does: skip C++ teardown (see exit_worker)
""")


def run_workers(tmp_path, overrides, mode, steps, world, timeout=90):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / f"{mode}-{world}.safetensors"
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(script), json.dumps(overrides), mode, str(out), str(steps)],
                              env=env(RANK=r, WORLD_SIZE=world, LOCAL_RANK=r, MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    results = [p.communicate(timeout=timeout) + (p.returncode,) for p in procs]
    return out, results


def test_unrolled_gan_and_a_rollback_match_one_process_exactly(tmp_path):
    # The unrolled inner loop all-reduces D's look-ahead gradients differentiably, and R1 takes a
    # double backward through D: 2 processes must still give 1 process's weights; so must a
    # rollback that rank 0 alone performs and then sends to the others.
    overrides = ["loss.objective=unrolled", "loss.unroll_steps=2", "model.g.width=16", "model.d.width=16",
                 "train.batch_size=32", "train.threads=1", "train.steps=3", "health.enabled=false",
                 "train.dist_timeout_s=60"]
    out, res = run_workers(tmp_path, overrides, "ok", 3, world=2)
    assert all(rc == 0 for _, _, rc in res), [e[-2000:] for _, e, _ in res]
    a = load_checkpoint(out)
    t = Trainer(load_config("gan-ring8", overrides))  # one process, here, the same moves
    for step in range(3):
        t.train_step()
        if step == 0:
            snapshot = copy.deepcopy(t.state_dict())
    stats = t.pop_stats()
    t.rollback(snapshot, lr_scale=0.5)
    t.train_step()
    assert t.state.step == 2
    for net, m in t.nets.items():
        for k, v in m.state_dict().items():
            assert torch.allclose(a[net][k], v, atol=1e-6), (net, k, (a[net][k] - v).abs().max())
    assert abs(a["stats"]["g_loss"] - stats["g_loss"]) < 1e-6 and stats["g_loss"] != 0
    assert abs(a["after"]["d_loss"] - t.pop_stats()["d_loss"]) < 1e-6


def test_a_dead_rank_or_a_missing_one_is_an_error_not_a_hang(tmp_path):
    overrides = ["model.g.width=16", "model.d.width=16", "train.batch_size=32", "train.threads=1",
                 "train.steps=50", "health.enabled=false", "train.dist_timeout_s=5"]
    tic = time.monotonic()
    # Rendezvous: rank 0 of 2 waits for a rank 1 that never comes, then says so (run alongside).
    alone = gankit_train(["gan-ring8", "--out", str(tmp_path / "r"), *sets(overrides + ["train.dist_timeout_s=2"])],
                         tmp_path, wait=False, RANK=0, WORLD_SIZE=2, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1",
                         MASTER_PORT=free_port())
    # Rank 1 dies at its third step: rank 0's next all-reduce fails.
    _, res = run_workers(tmp_path, overrides, "die", 50, world=2, timeout=60)
    (_, err0, rc0), (_, _, rc1) = res
    assert rc1 == 3 and rc0 != 0
    assert "another process died or stalled" in err0 and "train.dist_timeout_s=5" in err0, err0[-2000:]
    _, err, rc = finish(alone, ok=False)
    assert rc == 2 and "could not join the other processes" in err, err[-2000:]
    assert not (tmp_path / "r").exists()
    assert time.monotonic() - tic < 50


def test_sampler_and_noise_slices_make_up_the_global_batch():
    # Rank r's slice of every global batch and of every noise draw; together the single-process ones.
    one = EpochSampler(100, 16, seed=3)
    ranks = [EpochSampler(100, 16, seed=3, rank=r, world_size=4) for r in range(4)]
    for _ in range(13):  # crosses epoch boundaries (6 batches per epoch)
        assert torch.equal(torch.cat([s.next() for s in ranks]), one.next())
    assert all(s.state_dict()["position"] == one.state_dict()["position"] for s in ranks)
    # A checkpoint of the 4-rank sampler resumes in one process at the same place.
    resumed = EpochSampler(100, 16, seed=0)
    resumed.load_state_dict(ranks[2].state_dict())
    assert torch.equal(resumed.next(), one.next())
    with pytest.raises(ValueError, match="split evenly"):
        EpochSampler(100, 10, seed=0, rank=0, world_size=4)

    z1 = ShardedNoise(8, seed=5)
    zs = [ShardedNoise(8, seed=5, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        assert torch.equal(torch.cat([z(6, "cpu") for z in zs]), z1(12, "cpu"))


def test_single_process_dist_is_a_no_op():
    d = Dist()
    m = torch.nn.Linear(3, 2)
    m(torch.randn(4, 3)).sum().backward()
    g = m.weight.grad.clone()
    d.average_gradients(m)
    assert torch.equal(m.weight.grad, g)
    assert d.mean_stats({"a": torch.tensor(3.0)}, {"a": 2}) == {"a": 1.5}
    assert d.broadcast_json({"x": 1}) == {"x": 1}


# Translation objectives with their randomness off (dropout, the image pool draw from each rank's
# own RNG): two processes must train the one-process run, BatchNorm synced over ranks (pix2pix) and
# each domain's sampler sliced per rank (cyclegan's unpaired data).
TRANSLATION = {
    "pix2pix-edges2fashion": ["data.limit=64", "model.g.width=8", "model.g.dropout=0", "model.d.width=8",
                              "train.sync_batchnorm=true", "train.batch_size=16"],
    "cyclegan-digits2mnist": ["data.limit=48", "model.g.width=8", "model.g.n_blocks=1", "model.d.width=8",
                              "loss.options.pool_size=0", "train.batch_size=8"],
}


@pytest.mark.parametrize("recipe", sorted(TRANSLATION))
def test_translation_objectives_train_the_same_run_on_two_processes(recipe, tmp_path):
    overrides = TRANSLATION[recipe] + ["train.steps=3", "train.minutes=null", "train.threads=1",
                                       "train.precision=fp32", "health.enabled=false", "train.dist_timeout_s=60"]
    for nproc in (1, 2):
        gankit_train([recipe, "--out", str(tmp_path / f"p{nproc}"), *sets(overrides)], tmp_path, nproc=nproc)
    one, two = (load_checkpoint(tmp_path / f"p{n}" / "checkpoints" / "latest.safetensors") for n in (1, 2))
    assert one["modules"].keys() == two["modules"].keys()
    for net, state in one["modules"].items():
        for k, v in state.items():
            assert torch.allclose(two["modules"][net][k], v, atol=TOL), (recipe, net, k)
    r1, r2 = records(tmp_path / "p1"), records(tmp_path / "p2")
    keys = [k for k in r1[3] if k.startswith(("d_loss", "g_loss", "l1", "cycle"))]
    assert keys and max_diff(r1[3], r2[3], keys) < TOL


def killed_and_resumed(tmp_path, recipe, overrides, name, fault_step, resume_nproc):
    """``recipe`` on 2 processes SIGKILLed after step ``fault_step`` (GANKIT_FAULT), then resumed on
    ``resume_nproc`` from its checkpoint; returns the run folder and the resume's stderr."""
    run_dir = tmp_path / name
    killed = gankit_train([recipe, "--out", str(run_dir), *sets(overrides)], tmp_path, nproc=2, wait=False,
                          GANKIT_FAULT=f"step:{fault_step}")
    _, _, rc = finish(killed, ok=False)
    assert rc != 0 and (run_dir / "checkpoints/latest.safetensors").exists()
    _, err, _ = gankit_train(["--resume", str(run_dir)], tmp_path, nproc=resume_nproc)
    return run_dir, err


# A record every 10 steps, a checkpoint every 19: killed after step 22, a run resumes from step 19,
# between the records of steps 10 and 20, with 9 steps of unsent statistics on each rank.
BETWEEN = ["model.g.width=16", "model.d.width=16", "train.batch_size=16", "train.steps=30", "train.log_every=10",
           "train.checkpoint_every=19", "train.sample_every=1000", "train.threads=1", "health.enabled=false",
           "train.dist_timeout_s=60"]


def test_a_resume_on_the_same_processes_continues_every_ranks_random_stream(tmp_path):
    # WGAN-GP draws the penalty's mixing weights on every rank: a 2-process run killed between
    # records and resumed on 2 processes gives the uninterrupted run's records and weights, bit for bit.
    overrides = BETWEEN + ["train.d_steps=2"]
    gankit_train(["wgan-gp-ring8", "--out", str(tmp_path / "straight"), *sets(overrides)], tmp_path, nproc=2)
    resumed, _ = killed_and_resumed(tmp_path, "wgan-gp-ring8", overrides, "resumed", 22, 2)
    timing = {"seconds", "steps_per_s"}
    a, b = records(tmp_path / "straight"), records(resumed)
    assert sorted(b) == sorted(a) == [10, 20, 30]
    for step in a:
        assert {k: v for k, v in b[step].items() if k not in timing} == \
            {k: v for k, v in a[step].items() if k not in timing}, step
    sa, sb = (load_checkpoint(d / "checkpoints/latest.safetensors") for d in (tmp_path / "straight", resumed))
    for net, tensors in sa["modules"].items():
        for k, v in tensors.items():
            assert torch.equal(sb["modules"][net][k], v), (net, k)
    history = json.loads((resumed / "runtime.json").read_text())["history"]
    assert [(h["from_step"], h["world_size"]) for h in history] == [(0, 2), (19, 2)]


def test_a_resume_on_fewer_processes_takes_every_ranks_unsent_statistics(tmp_path):
    # gan-ring8 draws nothing per rank: resumed on 1 process from step 19, its record of step 20
    # (steps 11-19 on 2 processes, 20 on 1) is the 2-process run's, to float rounding.
    gankit_train(["gan-ring8", "--out", str(tmp_path / "straight"), *sets(BETWEEN)], tmp_path, nproc=2)
    resumed, err = killed_and_resumed(tmp_path, "gan-ring8", BETWEEN, "resumed", 22, 1)
    assert "written by 2 processes and resumes on 1" in err and "random streams" in err
    a, b = records(tmp_path / "straight"), records(resumed)
    keys = ["d_loss", "g_loss", "r1", "acc_real", "acc_fake", "d_real", "d_fake"]
    for step in (20, 30):
        assert max_diff(b[step], a[step], keys) < TOL, (step, b[step], a[step])
    history = json.loads((resumed / "runtime.json").read_text())["history"]
    assert [(h["from_step"], h["world_size"]) for h in history] == [(0, 2), (19, 1)]


def test_one_process_is_the_main_process_whatever_rank_says(tmp_path, monkeypatch):
    # A stray RANK with WORLD_SIZE=1 (or none) is one process: it holds the run folder's lock as
    # setup() treats it as rank 0 of 1, so a second holder is refused.
    from gankit.errors import GankitError
    from gankit.train.distributed import env_world
    from gankit.train.run import run_lock

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with run_lock(tmp_path / "run"):
        with pytest.raises(GankitError, match="another process"):
            with run_lock(tmp_path / "run", create=False):
                pass
    assert env_world() == (0, 1, 0)
    monkeypatch.delenv("WORLD_SIZE")
    assert env_world() == (0, 1, 0)
