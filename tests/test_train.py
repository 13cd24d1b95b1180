"""The training engine and run folders: phases, exact resume, checkpoints, CLI end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gankit
from gankit.config import load_config
from gankit.errors import CheckpointError, GankitError
from gankit.train.loop import Trainer

TINY_RING = ["train.steps=20", "train.batch_size=32", "data.size=2000", "model.g.width=16", "model.d.width=16",
             "train.log_every=1", "train.checkpoint_every=10", "train.sample_every=10"]
TINY_DCGAN = ["train.steps=6", "train.batch_size=8", "data.limit=64", "model.g.width=4", "model.d.width=4",
              "train.log_every=1", "train.checkpoint_every=3", "train.sample_every=3"]


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_d_step_gives_g_no_gradients_and_g_step_leaves_d_unchanged():
    for d_steps in (1, 3):
        tr = Trainer(load_config("gan-ring8", TINY_RING + [f"train.d_steps={d_steps}"]))
        G, D = tr.nets["G"], tr.nets["D"]
        d_before = [p.detach().clone() for p in D.parameters()]
        g_before = [p.detach().clone() for p in G.parameters()]
        d_phase, g_phase = tr.phases[0], tr.phases[-1]
        assert (d_phase.name, d_phase.repeats, g_phase.name) == ("D", d_steps, "G")
        assert (d_phase.optimizer, d_phase.nets, g_phase.optimizer, g_phase.nets) == ("D", ("D",), "G", ("G",))
        d_opt, g_opt = tr.optimizers[d_phase.optimizer], tr.optimizers[g_phase.optimizer]
        # D phase alone: G's weights unchanged and G holds no parameter gradients.
        batch = tr.data.batch(tr.sampler.next())
        d_opt.zero_grad()
        tr.objective.accumulate_gradients("D", batch, 32)
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in G.parameters())
        assert all(p.grad is not None for p in D.parameters())
        d_opt.step()
        assert all(torch.equal(a, b) for a, b in zip(g_before, G.parameters()))
        # G phase: D frozen (no gradients), D's weights unchanged by the G update.
        d_mid = [p.detach().clone() for p in D.parameters()]
        D.requires_grad_(False)
        G.requires_grad_(True)
        d_opt.zero_grad(set_to_none=True)
        g_opt.zero_grad()
        tr.objective.accumulate_gradients("G", None, 32)
        g_opt.step()
        assert all(p.grad is None for p in D.parameters())
        assert all(torch.equal(a, b) for a, b in zip(d_mid, D.parameters()))
        assert not all(torch.equal(a, b) for a, b in zip(d_before, d_mid))
        assert not all(torch.equal(a, b) for a, b in zip(g_before, G.parameters()))


def test_k_discriminator_steps_per_generator_step():
    tr = Trainer(load_config("gan-ring8", TINY_RING + ["train.d_steps=3"]))
    tr.train_step()
    tr.train_step()
    assert tr.sampler.position == 6 * 32  # 3 real batches per generator step
    assert tr.state.step == 2


def test_stats_recorded_per_step(tmp_path):
    run = gankit.train("gan-ring8", TINY_RING, out=tmp_path / "run", quiet=True)
    recs = records(run.dir)
    assert [r["step"] for r in recs] == list(range(1, 21))
    for key in ("d_loss", "g_loss", "d_real", "d_fake", "acc_real", "acc_fake"):
        assert all(np.isfinite(r[key]) for r in recs), key
    assert all(0 <= r["acc_real"] <= 1 and 0 <= r["d_fake"] <= 1 for r in recs)


@pytest.mark.parametrize("recipe,tiny", [("gan-ring8", TINY_RING), ("dcgan-fashion-mnist", TINY_DCGAN)])
def test_resume_is_exact(tmp_path, recipe, tiny):
    straight = gankit.train(recipe, tiny, out=tmp_path / "a", quiet=True)
    half = [o for o in tiny if not o.startswith("train.steps")] + ["train.steps=" + str(int(
        [o for o in tiny if o.startswith("train.steps")][0].split("=")[1]) // 2)]
    gankit.train(recipe, half, out=tmp_path / "b", quiet=True)
    full_steps = [o for o in tiny if o.startswith("train.steps")][0]
    resumed = gankit.train(resume=tmp_path / "b", overrides=[full_steps], quiet=True)
    a, b = records(straight.dir), records(resumed.dir)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("d_loss", "g_loss", "d_real", "d_fake"):
            assert ra[key] == pytest.approx(rb[key], abs=1e-6), (ra["step"], key)
    ga, gb = gankit.load(straight.dir), gankit.load(resumed.dir)
    assert torch.allclose(ga.sample(8)[0], gb.sample(8)[0], atol=1e-6)


def test_resume_takes_the_optimiser_settings_of_its_own_config(tmp_path):
    """A checkpoint gives back Adam's moments and step count; betas and weight decay are the resumed
    run's (``--resume --set train.d_optim.betas=...``), not those the checkpoint was written with."""
    half = [o for o in TINY_RING if not o.startswith("train.steps")] + ["train.steps=10"]
    first = gankit.train("gan-ring8", half + ["train.d_optim.betas=[0.5, 0.999]"], out=tmp_path / "run", quiet=True)
    moments = {k: v.clone() for k, v in next(iter(first.trainer.optimizers["D"].state.values())).items()}
    resumed = gankit.train(resume=tmp_path / "run", overrides=["train.steps=10", "train.d_optim.betas=[0.0, 0.9]",
                                                              "train.d_optim.weight_decay=0.01"], quiet=True)
    opt = resumed.trainer.optimizers["D"]
    assert tuple(opt.param_groups[0]["betas"]) == (0.0, 0.9) and opt.param_groups[0]["weight_decay"] == 0.01
    state = next(iter(opt.state.values()))
    assert float(state["step"]) == float(moments["step"]) == 10
    assert torch.equal(state["exp_avg"], moments["exp_avg"])


def test_run_folder_contents(tmp_path):
    run = gankit.train("dcgan-fashion-mnist", TINY_DCGAN, out=tmp_path / "run", quiet=True)
    d = run.dir
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "checkpoints/latest.safetensors",
                 "checkpoints/best.safetensors", "samples/step_000000.png", "samples/step_000006.png"):
        assert (d / name).exists(), name
    events = list((d / "tb").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(d / "tb"))
    acc.Reload()
    assert "d_loss" in acc.Tags()["scalars"] and len(acc.Scalars("d_loss")) == 6
    assert load_config(str(d / "config.yaml")) == run.cfg
    assert not list(d.rglob("*.tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize("recipe, sets, where, n", [
    ("gan-ring8", ["data.size=50", "train.batch_size=64"], "ring8", 50),
    ("cyclegan-digits2mnist", ["data.limit=40", "train.batch_size=64"], "digits2mnist, domain", 40),
])
def test_a_batch_larger_than_the_data_is_one_line_naming_the_key(tmp_path, recipe, sets, where, n):
    """A user's folder of 60 images under a recipe's batch of 128: refused before anything is written."""
    with pytest.raises(GankitError, match=rf"train.batch_size=64: the training data \({where}.*\) has only {n} "
                                          rf"samples; set train.batch_size to {n} or less"):
        gankit.train(recipe, sets + ["train.steps=2"], out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_refuses_to_overwrite_a_finished_run(tmp_path):
    gankit.train("gan-ring8", TINY_RING, out=tmp_path / "run", quiet=True)
    with pytest.raises(GankitError, match="--resume"):
        gankit.train("gan-ring8", TINY_RING, out=tmp_path / "run", quiet=True)


@pytest.mark.parametrize("resume", [None, True])
def test_a_folder_of_ones_own_files_is_not_taken_for_a_run(tmp_path, resume):
    """A run's restart clears what runs write (samples/, checkpoints/): a folder holding the user's own
    files is refused before anything is written into it, and the files are untouched."""
    out = tmp_path / "proj"
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "keep.txt").write_text("mine")
    with pytest.raises(GankitError, match=r"proj: not empty \(samples\) and not a gankit run; choose a new"):
        gankit.train("gan-ring8", TINY_RING, out=out, quiet=True, resume=resume)
    assert sorted(p.name for p in out.rglob("*")) == ["keep.txt", "samples"]


def test_an_interrupt_stops_a_sweep_that_goes_on_past_errors(tmp_path):
    """Ctrl-C in a notebook cell looping over runs: the run writes its checkpoint and the loop stops,
    although it catches gankit's errors to go on past a bad setting."""
    import os
    import signal

    from gankit.errors import Interrupted
    from gankit.train.callback import Callback

    class CtrlC(Callback):
        def on_log(self, run, record):
            os.kill(os.getpid(), signal.SIGINT)

    done = []
    with pytest.raises(KeyboardInterrupt) as e:
        for lr in ("1e-3", "2e-3"):
            try:
                gankit.train("gan-ring8", TINY_RING + [f"train.g_optim.lr={lr}", "train.log_every=5"],
                             out=tmp_path / lr, quiet=True, callbacks=[CtrlC()])
            except GankitError:
                continue
            done.append(lr)
    assert isinstance(e.value, Interrupted) and e.value.exit_code == 130 and done == []
    assert (tmp_path / "1e-3" / "checkpoints" / "latest.safetensors").exists() and not (tmp_path / "2e-3").exists()


def test_a_quiet_run_in_python_prints_nothing_and_keeps_its_whole_history(tmp_path, capfd):
    """quiet=True: no bar, no record lines, no notes. A callback's numpy or tensor numbers are stored as
    numbers; anything else is one line naming the key. A resumed run's records are the whole history."""
    from gankit.train.callback import Callback

    class Numbers(Callback):
        def on_log(self, run, record):
            record["np"], record["t"] = np.float32(0.5), torch.tensor(2)

    run = gankit.train("gan-ring8", TINY_RING + ["train.log_every=5"], out=tmp_path / "r", quiet=True,
                       callbacks=[Numbers()])
    assert capfd.readouterr().err == ""
    assert [(r["np"], r["t"]) for r in records(run.dir)] == [(0.5, 2)] * 4
    longer = gankit.train(resume=run.dir, overrides=["train.steps=30"], quiet=True)
    assert [r["step"] for r in longer.records] == [5, 10, 15, 20, 25, 30]
    again = gankit.train(resume=run.dir, quiet=True)  # finished: nothing trained, the history is there
    assert again.was_finished and [r["step"] for r in again.records] == [5, 10, 15, 20, 25, 30]

    class Bad(Callback):
        def on_log(self, run, record):
            record["arr"] = np.zeros(3)

    with pytest.raises(GankitError, match="metrics record key 'arr': ndarray is not a number"):
        gankit.train("gan-ring8", TINY_RING, out=tmp_path / "bad", quiet=True, callbacks=[Bad()])


def test_a_resume_may_change_an_optimisers_kind_and_takes_the_run_object(tmp_path, capsys):
    """--set train.d_optim.name=rmsprop on an Adam run: D's optimiser starts afresh (Adam's moments mean
    nothing to RMSprop; they were a KeyError at its first step), said in one line; G's keeps its state."""
    run = gankit.train("gan-ring8", TINY_RING, out=tmp_path / "r", quiet=True)
    on = gankit.train(resume=run, overrides=["train.steps=30", "train.d_optim.name=rmsprop"], quiet=True)
    assert on.trainer.state.step == 30 and isinstance(on.trainer.optimizers["D"], torch.optim.RMSprop)
    assert "note: optimiser D is now rmsprop (was adam): it starts with fresh state at step 20" in capsys.readouterr().out
    assert on.trainer.optimizers["G"].state  # Adam, restored and stepped


def test_a_second_process_training_into_the_same_folder_is_refused(tmp_path):
    """Two jobs with one --out (a job started twice, a scheduler resuming a job still alive) would write
    into the same files: while one holds the folder, the other is refused in one line, starting or
    resuming; the lock goes with its holder."""
    import os

    from gankit.train.run import run_lock

    d = tmp_path / "run"
    with run_lock(d):  # as another process would hold it (flock conflicts between two opens of the file)
        for call in (lambda: gankit.train("gan-ring8", TINY_RING, out=d, quiet=True),
                     lambda: gankit.train("gan-ring8", TINY_RING, out=d, quiet=True, resume=True)):
            with pytest.raises(GankitError, match=rf"another process \(pid {os.getpid()}\) is training into this folder"):
                call()
        assert not (d / "config.yaml").exists()
    run = gankit.train("gan-ring8", TINY_RING, out=d, quiet=True)  # released: the folder is free again
    with run_lock(d):
        with pytest.raises(GankitError, match="another process"):
            gankit.train(resume=d, overrides=["train.steps=20"], quiet=True)
    assert run.trainer.state.step == 20


def test_a_checkpoint_with_flipped_bits_is_found(tmp_path):
    """Damage that keeps the file's length (a bad sector, a flipped bit) is caught by the SHA-256 the
    header holds, in the tensor bytes and in the JSON state, and the run resumes from `previous`."""
    run = gankit.train("gan-ring8", TINY_RING + ["train.checkpoint_every=5"], out=tmp_path / "run", quiet=True)
    ckpt = run.dir / "checkpoints" / "latest.safetensors"
    good = ckpt.read_bytes()
    n = int.from_bytes(good[:8], "little")
    state_digit = next(i for i in range(good.index(b"step", 8), 8 + n) if chr(good[i]).isdigit())
    for offset in (len(good) - 100, state_digit):  # a tensor byte; a digit of the step in the JSON state
        bad = bytearray(good)
        bad[offset] = bad[offset] ^ 0x01  # "2" <-> "3": the header still parses
        ckpt.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError, match="damaged checkpoint"):
            gankit.load(ckpt)
    from gankit.checkpoint import load_latest
    assert load_latest(run.dir)[1].name == "previous.safetensors"
    ckpt.write_bytes(good)
    assert gankit.load(ckpt).sample(2)[0].shape == (2, 2)


def test_corrupt_or_truncated_checkpoint_is_a_clear_error(tmp_path):
    run = gankit.train("gan-ring8", TINY_RING, out=tmp_path / "run", quiet=True)
    ckpt = run.dir / "checkpoints" / "latest.safetensors"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        gankit.load(ckpt)
    # A run folder falls back to the previous checkpoint (tests/test_reliability.py); with that one
    # damaged too, loading it is one clear error.
    (run.dir / "checkpoints" / "previous.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        gankit.load(run.dir)
    ckpt.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        gankit.load(run.dir)
    proc = subprocess.run([sys.executable, "-m", "gankit", "sample", str(run.dir), "-o", str(tmp_path / "x.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    # the other checkpoint still works
    assert gankit.load(run.dir, which="best").sample(4)[0].shape == (4, 2)


def test_minutes_bounds_training(tmp_path):
    run = gankit.train("gan-ring8", ["train.steps=null", "train.minutes=0.02", "data.size=2000",
                                     "train.batch_size=32", "train.log_every=10"], out=tmp_path / "r", quiet=True)
    assert 1.0 <= run.trainer.state.seconds < 3.0


def test_the_progress_bar_into_a_log_redraws_rarely(tmp_path, capfd):
    """stderr that is a file or pipe (a batch job's log): the bar is drawn at the start and the end, not
    every 0.1 s as on a terminal, where it would add thousands of redraws to a long run's log."""
    run = gankit.train("gan-ring8", ["train.steps=300", "data.size=2000", "train.batch_size=32",
                                     "train.log_every=100", "health.enabled=false"], out=tmp_path / "r")
    err = capfd.readouterr().err
    bar = [part for part in err.replace("\n", "\r").split("\r") if part.startswith("gan-ring8:") and "step" in part]
    assert run.trainer.state.step == 300 and bar[-1].startswith("gan-ring8: 100%")
    assert len(bar) <= 3, bar      # the first draw, the last (and the close); on a terminal ~10 per second


def test_sample_outputs(tmp_path):
    run = gankit.train("dcgan-fashion-mnist", TINY_DCGAN, out=tmp_path / "run", quiet=True)
    gankit.sample(run.dir, n=10, out=tmp_path / "s.npz", seed=1)
    x = np.load(tmp_path / "s.npz")["x"]
    assert x.shape == (10, 1, 28, 28) and x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    gankit.sample(run.dir, n=10, out=tmp_path / "s.png")
    gankit.sample(run.dir, out=tmp_path / "walk.png", interpolate=True)
    from PIL import Image
    assert Image.open(tmp_path / "walk.png").size[0] > Image.open(tmp_path / "s.png").size[0] * 0.5
    again = np.load(gankit.sample(run.dir, n=10, out=tmp_path / "t.npz", seed=1))["x"]
    assert np.array_equal(x, again)  # same seed, same samples


def test_conditional_sample_npz_has_labels(tmp_path):
    run = gankit.train("dcgan-fashion-mnist", TINY_DCGAN + ["model.conditional=true"], out=tmp_path / "c", quiet=True)
    gankit.sample(run.dir, n=6, out=tmp_path / "c.npz", label=3)
    arr = np.load(tmp_path / "c.npz")
    assert arr["y"].tolist() == [3] * 6 and arr["x"].shape == (6, 1, 28, 28)


def test_a_folder_of_class_folders_samples_its_classes_by_name(tmp_path, capsys):
    from PIL import Image

    from gankit.cli.main import main
    for k, cls in enumerate(("cats", "dogs")):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(np.full((12, 12, 3), 100 * k + i, np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    run = gankit.train("cgan-fashion-mnist", ["data.name=folder", f"data.root={tmp_path / 'imgs'}", "data.resolution=8",
                                              "data.channels=3", "train.steps=2", "train.batch_size=4",
                                              "model.g.width=4", "model.d.width=4"], out=tmp_path / "run", quiet=True)
    model = gankit.load(run.dir)
    assert model.class_names == ["cats", "dogs"]
    assert model.sample(3, labels="dogs")[1].tolist() == [1, 1, 1] == model.sample(3, labels=1)[1].tolist()
    assert main(["sample", str(run.dir), "-n", "4", "--class", "dogs", "-o", str(tmp_path / "d.npz")]) == 0
    assert np.load(tmp_path / "d.npz")["y"].tolist() == [1] * 4
    assert main(["sample", str(run.dir), "-n", "4", "--class", "0", "-o", str(tmp_path / "c.npz")]) == 0
    assert np.load(tmp_path / "c.npz")["y"].tolist() == [0] * 4
    capsys.readouterr()
    assert main(["sample", str(run.dir), "--class", "cows", "-o", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.strip() == "gankit: error: --class cows: no class of that name; its classes: cats, dogs"
    assert main(["sample", str(run.dir), "--class", "2", "-o", str(tmp_path / "x.png")]) == 2
    assert "--class 2: this model has classes 0..1 (cats, dogs)" in capsys.readouterr().err


def test_resuming_after_the_data_changed_says_what_changed_in_one_line(tmp_path, capsys):
    """The audit's three changes to a folder between a checkpoint and `--resume`: a class renamed (its
    indices silently shifted), a class added (a size-mismatch traceback), images deleted (an IndexError from
    the sampler's saved permutation). Each is one line naming the change, exit 2, nothing trained; the
    folder as it was resumes."""
    from PIL import Image

    from gankit.cli.main import main
    imgs = tmp_path / "imgs"

    def images(cls, n, start=0):
        (imgs / cls).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + n):
            Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(imgs / cls / f"{i}.png")

    images("cats", 6)
    images("dogs", 6)
    run = gankit.train("cgan-fashion-mnist", ["data.name=folder", f"data.root={imgs}", "data.resolution=8",
                                              "train.steps=2", "train.batch_size=4", "health.samples=0",
                                              "model.g.width=4", "model.d.width=4"], out=tmp_path / "run", quiet=True)
    resume = ["train", "--resume", str(run.dir), "--set", "train.steps=4"]
    capsys.readouterr()
    (imgs / "dogs").rename(imgs / "aardvarks")
    assert main(resume) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the folder's own lines about reading it
    assert err == (f"gankit: error: {run.dir}: the training data ({imgs}) changed since latest.safetensors was "
                   "written: classes then cats, dogs, now aardvarks, cats (dogs gone, aardvarks new); restore the data "
                   "as it was, or start a new run (another --out); --set cannot change a run's data")
    (imgs / "aardvarks").rename(imgs / "dogs")
    images("owls", 6)
    assert main(resume) == 2
    assert "classes then cats, dogs, now cats, dogs, owls (owls new); 12 images then, 18 now; restore" in capsys.readouterr().err
    for f in (imgs / "owls").iterdir():
        f.unlink()
    (imgs / "owls").rmdir()
    for f in sorted((imgs / "cats").iterdir())[:3]:
        f.unlink()
    assert main(resume) == 2
    assert "written: 12 images then, 9 now; restore" in capsys.readouterr().err
    assert gankit.load(run.dir).step == 2   # nothing trained
    images("cats", 3)
    assert gankit.train(resume=run.dir, overrides=["train.steps=4"], quiet=True).trainer.state.step == 4


def test_a_checkpoint_without_its_data_size_is_checked_against_its_samplers():
    """Checkpoints written before the data description held the sizes: each sampler's saved permutation
    says how many samples there were."""
    from gankit.train.run import _saved_sizes, data_change

    now = {"kind": "image", "num_classes": 0, "sample_shape": [3, 8, 8], "sizes": {"x": 50}}
    old = {"data": {"kind": "image", "num_classes": 0, "sample_shape": [3, 8, 8]},
           "samplers": {"x": {"perm": torch.randperm(100)}}}
    assert data_change(old["data"], now, _saved_sizes(old)) == "100 images then, 50 now"
    assert data_change(old["data"], {**now, "sizes": {"x": 100}}, _saved_sizes(old)) is None
    v1 = {"data": {"num_classes": 10, "sample_shape": [1, 28, 28]}, "sampler": {"perm": torch.randperm(100)}}
    assert data_change(v1["data"], {**now, "num_classes": 10, "sample_shape": [1, 32, 32], "sizes": {"x": 100}},
                       _saved_sizes(v1)) == "samples of shape 1x28x28 then, 1x32x32 now"
    from gankit.data import EpochSampler
    with pytest.raises(ValueError, match="the sampler state is of 100 samples, not 50"):  # was an IndexError later
        EpochSampler(50, 10, seed=0).load_state_dict(EpochSampler(100, 10, seed=0).state_dict())


def test_an_empty_subset_names_subset_fraction():
    from gankit.errors import ConfigError
    with pytest.raises(ConfigError, match=r"is empty; check data.root, data.limit, data.exclude_classes and "
                                          r"data.subset_fraction=1e-06$"):
        Trainer(load_config("dcgan-fashion-mnist", TINY_DCGAN + ["data.limit=null", "data.subset_fraction=1e-6"]))


def test_ring8_through_the_cli_covers_the_modes(tmp_path):
    """The issue's acceptance check: gan-ring8 via the CLI, then >= 6 of 8 modes hold
    high-quality samples (within 3σ = 0.03 of a mean), judged on 2,500 samples."""
    run_dir = tmp_path / "ring"
    done = subprocess.run([sys.executable, "-m", "gankit", "train", "gan-ring8", "--out", str(run_dir), "--quiet"],
                          check=True, capture_output=True, text=True, timeout=300)
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert logged == [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    subprocess.run([sys.executable, "-m", "gankit", "sample", str(run_dir), "-n", "2500", "-o",
                    str(tmp_path / "s.npz")], check=True, capture_output=True, timeout=120)
    x = np.load(tmp_path / "s.npz")["x"]
    from gankit.data.toy import ring_means
    dist = np.linalg.norm(x[:, None, :] - ring_means().numpy()[None], axis=2)
    hq = dist.min(1) < 3 * 0.01
    covered = np.unique(dist.argmin(1)[hq])
    assert len(covered) >= 6, f"covered modes {covered.tolist()}"


def test_optimizer_state_takes_its_parameters_layout_on_load():
    # Checkpoints hold contiguous tensors; fused Adam pairs elements by memory position, so a
    # channels_last parameter must get channels_last moments back, or the next step goes wrong.
    import importlib

    loop = importlib.import_module("gankit.train.loop")
    torch.manual_seed(0)
    p = torch.randn(4, 3, 2, 2).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    q = p.detach().clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    cfg = load_config("fast-fashion-mnist").train.g_optim
    a, b = loop.make_optimizer([p], cfg), loop.make_optimizer([q], cfg)
    for opt, x in ((a, p), (b, q)):
        x.grad = torch.arange(x.numel(), dtype=torch.float32).view(4, 3, 2, 2).contiguous(memory_format=torch.channels_last)
        opt.step()
    saved = a.state_dict()  # holds a's own tensors: copy them, as a checkpoint would
    saved["state"] = {k: {n: v.clone(memory_format=torch.contiguous_format) for n, v in s.items()}
                      for k, s in saved["state"].items()}
    loop.restore_optimizer_state(b, saved)
    assert b.state[q]["exp_avg"].stride() == q.stride()
    for opt, x in ((a, p), (b, q)):
        x.grad = torch.ones_like(x)
        opt.step()
    assert torch.equal(p, q)


def test_small_api_conveniences_behave_as_a_python_user_expects(tmp_path):
    """One override as a plain string; `"fid" in result`; a run folder without a checkpoint yet is
    named as such by eval (not "give a folder gankit train wrote")."""
    from gankit.config import save_config
    from gankit.metrics.evaluate import EvalError, EvalResult

    run = gankit.train("gan-ring8", "train.steps=3", out=tmp_path / "run", quiet=True)
    assert run.trainer.state.step == 3
    result = EvalResult({}, [{"name": "fid", "value": 1.5}, {"name": "kid", "value": 0.1}])
    assert "fid" in result and "is" not in result and list(result) == ["fid", "kid"]
    (tmp_path / "fresh").mkdir()
    save_config(run.cfg, tmp_path / "fresh" / "config.yaml")
    with pytest.raises(EvalError, match=r"no checkpoints/latest.safetensors yet; resume the run \(gankit train --resume"):
        gankit.evaluate(tmp_path / "fresh")


def test_what_a_first_day_user_runs_into(tmp_path, monkeypatch, capsys):
    """A relative data.root is recorded absolute (resumed or scored from elsewhere, the run reads its own
    data); a second run of a recipe says at once where it goes; sampling a run that is still before its
    first checkpoint says who is training; `gankit` alone shows the commands; a typo gets a suggestion."""
    from PIL import Image

    from gankit.cli.main import main
    from gankit.errors import ConfigError
    from gankit.train.run import run_lock

    for i in range(8):
        (tmp_path / "imgs").mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    tiny = ["data.name=folder", "data.root=imgs", "data.resolution=8", "data.channels=1", "model.g.width=4",
            "model.d.width=4", "train.batch_size=4", "train.steps=2", "train.log_every=1", "health.enabled=false"]
    first = gankit.train("dcgan-digits", tiny, quiet=True)
    assert first.cfg.data.root == str(tmp_path / "imgs") and first.dir == Path("runs/dcgan-digits")
    assert f"root: {tmp_path / 'imgs'}" in (first.dir / "config.yaml").read_text()
    longer = gankit.train("dcgan-digits", tiny[:-2] + ["train.steps=3", "health.enabled=false"], out=first.dir,
                          resume=True, quiet=True)  # the same command with its relative root: the same run
    assert longer.trainer.state.step == 3
    capsys.readouterr()
    second = gankit.train("dcgan-digits", tiny, quiet=True)
    assert second.dir == Path("runs/dcgan-digits-2")
    assert ("note: runs/dcgan-digits already holds a run; this one goes to runs/dcgan-digits-2"
            in capsys.readouterr().err)
    fresh = tmp_path / "fresh"
    with run_lock(fresh):  # as a training process holds it before its first checkpoint
        with pytest.raises(CheckpointError, match=rf"process {os.getpid()} is training into"):
            gankit.load(fresh)
    capsys.readouterr()
    assert main([]) == 2
    shown = capsys.readouterr().err
    assert all(f"    {name}" in shown for name in ("train", "sample", "eval", "translate"))
    with pytest.raises(ConfigError, match="did you mean fast-fashion-mnist"):
        gankit.train("fast-fashion-mnst", quiet=True)


def test_resuming_with_an_ema_turned_on_or_off_starts_or_drops_it(tmp_path, capsys):
    """`--resume --set train.ema=0.999` on a run that kept no EMA starts the EMA from G as resumed;
    `train.ema=null` on a run that kept one leaves it behind; each said in one line."""
    plain, kept = tmp_path / "plain", tmp_path / "kept"
    gankit.train("gan-ring8", TINY_RING + ["train.steps=10"], out=plain, quiet=True)
    gankit.train("gan-ring8", TINY_RING + ["train.steps=10", "train.ema=0.9"], out=kept, quiet=True)
    capsys.readouterr()
    run = gankit.train(resume=plain, overrides=["train.steps=20", "train.ema=0.999"], quiet=True)
    assert "it starts from G as resumed (step 10)" in capsys.readouterr().out
    assert run.trainer.state.step == 20 and set(run.trainer.emas) == {"G"}
    assert "G_ema" in load_checkpoint_file(plain)["modules"]
    run = gankit.train(resume=kept, overrides=["train.steps=20", "train.ema=null"], quiet=True)
    assert "G_ema is not kept" in capsys.readouterr().out
    assert run.trainer.state.step == 20 and not run.trainer.emas
    assert "G_ema" not in load_checkpoint_file(kept)["modules"]


def load_checkpoint_file(run_dir):
    from gankit.checkpoint import LATEST, load_checkpoint

    return load_checkpoint(Path(run_dir) / LATEST)


def test_training_leaves_the_processs_thread_count_as_it_found_it(tmp_path):
    """train.threads holds for the run only: after it ends, also by an error, torch has its
    thread count from before (a notebook's later runs are unchanged)."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        gankit.train("gan-ring8", TINY_RING + ["train.threads=1", "train.steps=2"], out=tmp_path / "a", quiet=True)
        assert torch.get_num_threads() == 3

        from gankit.train.callback import Callback

        class Boom(Callback):
            def on_log(self, run, record):
                assert torch.get_num_threads() == 1  # the run's own count while it trains
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            gankit.train("gan-ring8", TINY_RING + ["train.threads=1"], out=tmp_path / "b", quiet=True,
                         callbacks=[Boom()])
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_an_edited_recipe_file_resumes_with_its_train_changes_as_set_would(tmp_path, capsys):
    """The same command + --resume after editing train.* in one's YAML: the edits apply, as
    --resume RUN --set train.* does (and are said), rather than being dropped."""
    half = [o for o in TINY_RING if not o.startswith("train.steps")] + ["train.steps=10"]
    cfg = load_config("gan-ring8", half)
    mine = tmp_path / "mine.yaml"
    mine.write_text(cfg.to_yaml())
    gankit.train(str(mine), out=tmp_path / "edited", resume=True, quiet=True)
    gankit.train(str(mine), out=tmp_path / "by-set", resume=True, quiet=True)
    mine.write_text(cfg.replace(**{"train.steps": 20, "train.g_optim.lr": 5e-4}).to_yaml())
    capsys.readouterr()
    edited = gankit.train(str(mine), out=tmp_path / "edited", resume=True, quiet=True)
    said = capsys.readouterr().err
    assert "train.steps 10 -> 20" in said and "train.g_optim.lr 0.001 -> 0.0005" in said
    by_set = gankit.train(resume=tmp_path / "by-set", overrides=["train.steps=20", "train.g_optim.lr=5e-4"], quiet=True)
    assert edited.trainer.state.step == 20
    saved = load_config(str(tmp_path / "edited" / "config.yaml"))
    assert (saved.train.steps, saved.train.g_optim.lr) == (20, 5e-4)
    a, b = records(edited.dir), records(by_set.dir)
    assert [r["step"] for r in a] == list(range(1, 21))
    assert [(r["d_loss"], r["g_loss"]) for r in a] == [(r["d_loss"], r["g_loss"]) for r in b]  # same process, same numbers


def test_a_set_on_a_finished_run_says_it_was_not_applied(tmp_path, capsys):
    gankit.train("gan-ring8", TINY_RING, out=tmp_path / "run", quiet=True)
    capsys.readouterr()
    run = gankit.train(resume=tmp_path / "run", overrides=["train.batch_size=64"], quiet=True)
    said = capsys.readouterr().err.strip()
    assert run.was_finished and len(said.splitlines()) == 1
    assert said.endswith("(--set train.batch_size=64 not applied: nothing is trained)")
    assert load_config(str(tmp_path / "run" / "config.yaml")).train.batch_size == 32


def test_a_run_says_its_budget_and_grids_first_and_the_next_commands_last(tmp_path, capsys):
    half = [o for o in TINY_RING if not o.startswith("train.steps")] + ["train.steps=10", "train.minutes=30"]
    run_dir = tmp_path / "run"
    gankit.train("gan-ring8", half, out=run_dir)
    err = capsys.readouterr().err
    assert (f"gan-ring8: training: 30 minutes of training steps or 10 steps, whichever ends first; sample grids go "
            f"to {run_dir / 'samples'}") in err
    assert err.rstrip().splitlines()[-1] == (f"gan-ring8: done; next: gankit eval {run_dir} (FID and more), "
                                             f"gankit report {run_dir} (an HTML page of the run)")
    gankit.train(resume=run_dir, overrides=["train.steps=20", "train.minutes=null"])
    err = capsys.readouterr().err
    assert f"gan-ring8: continuing from step 10: 10 steps (to step 20); sample grids go to {run_dir / 'samples'}" in err
