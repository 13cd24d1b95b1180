"""Learning-rate schedules: their definitions, how the loop applies them, and exact resume."""
import json
import math

import pytest
import torch

import gankit
from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.train.callback import Callback
from gankit.train.schedules import SCHEDULES

TINY_RING = ["train.steps=20", "train.batch_size=32", "data.size=2000", "model.g.width=16", "model.d.width=16",
             "train.log_every=1", "train.checkpoint_every=1000", "train.sample_every=1000"]


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule_starts_at_one_ends_at_final_and_never_rises(name):
    fn = SCHEDULES.get(name)
    final = 1.0 if name == "constant" else 0.1
    grid = [i / 100 for i in range(101)]
    values = [fn(p, 0.4, 0.1) for p in grid]
    assert all(v == 1.0 for p, v in zip(grid, values) if p <= 0.4)  # nothing changes before decay_start
    assert values[-1] == pytest.approx(final, abs=1e-12)
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:]))


def test_schedule_values_by_hand():
    linear, cosine = SCHEDULES.get("linear"), SCHEDULES.get("cosine")
    assert linear(0.75, 0.5, 0.0) == pytest.approx(0.5)           # half-way through the decay window
    assert linear(0.75, 0.5, 0.2) == pytest.approx(0.6)
    assert cosine(0.75, 0.5, 0.0) == pytest.approx(0.5)           # a cosine is symmetric about its middle
    assert cosine(0.625, 0.5, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert linear(2.0, 0.5, 0.0) == 0.0                            # past the budget: stays at final


def test_loop_applies_the_schedule_to_both_optimisers(tmp_path):
    run = gankit.train("gan-ring8", TINY_RING + ["train.lr_schedule=linear", "train.lr_decay_start=0.5",
                                                 "train.lr_final=0.0"], out=tmp_path / "r", quiet=True)
    mult = {r["step"]: r["lr_mult"] for r in records(run.dir)}
    # Step s (1-based) runs with progress (s - 1) / 20: constant up to progress 0.5, then linear to 0.
    assert all(mult[s] == 1.0 for s in range(1, 12))
    assert mult[16] == pytest.approx(1 - (15 / 20 - 0.5) / 0.5, abs=1e-6)
    assert mult[20] == pytest.approx(0.1, abs=1e-6)
    cfg, t = run.cfg.train, run.trainer
    assert t.optimizers["G"].param_groups[0]["lr"] == pytest.approx(cfg.g_optim.lr * 0.1)
    assert t.optimizers["D"].param_groups[0]["lr"] == pytest.approx(cfg.d_optim.lr * 0.1)


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_log(self, run, record):
        if record["step"] == self.step:
            run.request_stop("test")


def test_resume_in_the_middle_of_a_decay_is_exact(tmp_path):
    sched = TINY_RING + ["train.lr_schedule=cosine", "train.lr_decay_start=0.2"]
    straight = gankit.train("gan-ring8", sched, out=tmp_path / "a", quiet=True)
    gankit.train("gan-ring8", sched, out=tmp_path / "b", quiet=True, callbacks=[StopAt(13)])
    # A run stopped early counts as finished: naming its budget continues it.
    resumed = gankit.train(resume=tmp_path / "b", overrides=["train.steps=20"], quiet=True)
    a, b = records(straight.dir), records(resumed.dir)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 21))
    for ra, rb in zip(a, b):
        assert ra["lr_mult"] == pytest.approx(rb["lr_mult"], abs=1e-9)
        for key in ("d_loss", "g_loss"):
            assert ra[key] == pytest.approx(rb[key], abs=1e-6), (ra["step"], key)


def test_rollback_scale_multiplies_the_schedule_and_survives_a_checkpoint(tmp_path):
    run = gankit.train("gan-ring8", TINY_RING + ["train.lr_schedule=linear", "train.lr_final=0.5"],
                       out=tmp_path / "r", quiet=True)
    t = run.trainer
    state = t.state_dict()
    t.rollback(state, lr_scale=0.25)  # progress 1 (20 of 20 steps): schedule 0.5, times 0.25
    assert t.optimizers["G"].param_groups[0]["lr"] == pytest.approx(run.cfg.train.g_optim.lr * 0.125)
    assert t.state_dict()["trainer"]["lr_scale"] == 0.25


@pytest.mark.parametrize("override,key", [("train.lr_schedule=step", "train.lr_schedule"),
                                          ("train.lr_decay_start=1.0", "train.lr_decay_start"),
                                          ("train.lr_final=-0.1", "train.lr_final")])
def test_bad_schedule_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config("gan-ring8", [override])


def test_minutes_budget_drives_the_schedule():
    from gankit.train.loop import Trainer

    cfg = load_config("gan-ring8", ["train.steps=null", "train.minutes=2", "data.size=500",
                                    "train.lr_schedule=linear"])
    t = Trainer(cfg)
    t.state.seconds = 90.0  # three quarters of two minutes
    assert t.progress() == pytest.approx(0.75)
    t._apply_lr(t.progress())
    assert t.optimizers["D"].param_groups[0]["lr"] == pytest.approx(cfg.train.d_optim.lr * 0.25)
    assert torch.isfinite(torch.tensor(t.lr_mult))
