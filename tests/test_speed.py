"""Speed features: precision choice, channels_last, the bench command, bf16 training learns."""

import numpy as np
import pytest
import torch

import gankit
from gankit.bench import bench, format_table, matmul_peak_gflops
from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.train.loop import Trainer
from gankit.train.precision import cpu_has_bf16, resolve_precision

TINY_DCGAN = ["train.steps=2", "train.batch_size=8", "data.limit=64", "model.g.width=4", "model.d.width=4"]


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in ("fp32", "bf16")
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", cpu)


def test_channels_last_for_conv_nets_only():
    tr = Trainer(load_config("dcgan-fashion-mnist", TINY_DCGAN))
    conv = next(m for m in tr.nets["D"].modules() if isinstance(m, torch.nn.Conv2d))
    assert tr.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    tr.train_step()
    ring = Trainer(load_config("gan-ring8", ["train.steps=2", "data.size=500", "train.batch_size=32"]))
    assert not ring.channels_last


def test_channels_last_does_not_change_the_math():
    a = Trainer(load_config("dcgan-fashion-mnist", TINY_DCGAN + ["train.channels_last=false"]))
    b = Trainer(load_config("dcgan-fashion-mnist", TINY_DCGAN + ["train.channels_last=true"]))
    for tr in (a, b):
        tr.train_step()
        tr.train_step()
    sa, sb = a.pop_stats(), b.pop_stats()
    for key in ("d_loss", "g_loss"):
        assert sa[key] == pytest.approx(sb[key], rel=1e-4, abs=1e-5)  # same math, other kernel order


def test_bench_reports_consistent_figures():
    row = bench("dcgan-fashion-mnist", TINY_DCGAN, windows=1, steps_per_window=1, warmup=1)
    assert row["ours_img_s"] > 0 and row["plain_img_s"] > 0
    assert row["speedup"] == pytest.approx(row["ours_img_s"] / row["plain_img_s"], rel=1e-9)
    # FLOPs of one plain step / image for width-4 DCGAN at 28x28: order 1e5-1e7.
    assert 1e-2 < row["mflop_per_img"] < 10
    assert row["ours_gflops"] == pytest.approx(row["mflop_per_img"] * 1e-3 * row["ours_img_s"], rel=1e-6)
    assert row["device"] == f"CPU ({torch.get_num_threads()} threads)" and row["cuda_graphs"] is False
    assert "x |" in format_table([row]) and "| CPU (" in format_table([row])
    # What gankit's step does beyond the plain one is named under the table, not hidden in its speed-up
    from gankit.bench import extra_work
    from gankit.config import load_config
    assert extra_work(load_config("gan-ring8")) == ["r1"]
    assert extra_work(load_config("fast-fashion-mnist")) == ["EMA"] and row["plain_omits"] == extra_work(
        load_config("dcgan-fashion-mnist", TINY_DCGAN))
    assert "omits what gankit's step also does" in format_table([dict(row, plain_omits=["r1"])])


def test_matmul_peak_on_the_cpu_is_a_positive_finite_rate():
    peak = matmul_peak_gflops(torch.float32, device=torch.device("cpu"), seconds=0.1)
    assert 0 < peak < float("inf")


@pytest.mark.gpu
def test_bench_runs_on_cuda_and_measures_the_tensor_core_peak():
    row = bench("dcgan-fashion-mnist", ["data.limit=512", "train.batch_size=64", "model.g.width=8",
                                        "model.d.width=8", "train.device=cuda"], windows=2, steps_per_window=2)
    assert row["device"] == torch.cuda.get_device_name() and row["ours_img_s"] > 0
    # Dense bf16 tensor-core peaks: A100 312 TFLOP/s, H100/H200 about 990 (this 8192² product measures
    # about 7e5 GFLOP/s on an H100-class GPU). Below 1e5, the product ran on the CPU, in fp32, or was
    # timed without waiting for the GPU (CUDA launches return at once).
    assert row["peak_bf16_gflops"] > 1e5


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 (machine feature, not missing work)")
def test_bf16_training_stays_finite_and_learns_the_ring(tmp_path):
    run = gankit.train("gan-ring8", ["train.precision=bf16", "train.log_every=200"], out=tmp_path / "r", quiet=True)
    assert run.trainer.precision == "bf16"
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in run.records)
    x, _ = gankit.load(run.dir).sample(2500)
    from gankit.data.toy import ring_means
    dist = torch.cdist(x.double(), ring_means())
    hq = dist.min(1).values < 0.03
    assert len(torch.unique(dist.argmin(1)[hq])) >= 6


def test_fp16_path_scales_losses_and_trains(monkeypatch):
    """fp16 runs only on CUDA for users; here the CPU's fp16 autocast exercises the same code:
    one GradScaler per phase, unscaled before the step, and finite losses."""
    import importlib
    loop = importlib.import_module("gankit.train.loop")  # gankit.train is also the train() function
    monkeypatch.setattr(loop, "resolve_precision", lambda name, device: "fp16")
    tr = Trainer(load_config("gan-ring8", ["train.steps=3", "data.size=500", "train.batch_size=32"]))
    assert set(tr.scalers) == {p.name for p in tr.phases}
    before = [p.detach().clone() for p in tr.nets["G"].parameters()]
    for _ in range(3):
        tr.train_step()
    stats = tr.pop_stats()
    assert np.isfinite(stats["d_loss"]) and np.isfinite(stats["g_loss"])
    assert tr.scalers["D"].get_scale() > 1  # losses were scaled
    assert not all(torch.equal(a, b) for a, b in zip(before, tr.nets["G"].parameters()))


def test_compile_gives_the_same_steps_and_plain_checkpoint_names(tmp_path):
    """train.compile wraps G's and D's forward with torch.compile (inductor: C++ on CPU); the math
    and the parameter names in checkpoints stay those of the eager modules."""
    tiny = TINY_DCGAN + ["train.precision=fp32", "train.channels_last=false"]
    eager = Trainer(load_config("dcgan-fashion-mnist", tiny))
    compiled = Trainer(load_config("dcgan-fashion-mnist", tiny + ["train.compile=true"]))
    for tr in (eager, compiled):
        tr.train_step()
        tr.train_step()
    se, sc = eager.pop_stats(), compiled.pop_stats()
    for key in ("d_loss", "g_loss"):
        assert sc[key] == pytest.approx(se[key], rel=1e-4, abs=1e-5)  # fused kernels reorder float sums
    assert set(compiled.state_dict()["modules"]["G"]) == set(eager.state_dict()["modules"]["G"])


def test_compile_is_refused_where_it_cannot_run():
    with pytest.raises(ConfigError, match="train.compile.*r1"):
        load_config("r1-ema-ring8", ["train.compile=true"])
    with pytest.raises(ConfigError, match="train.compile.*unrolled"):
        load_config("unrolled-ring8", ["train.compile=true"])


TINY_TRANSLATION = {
    "pix2pix-edges2fashion": ["data.limit=64", "model.g.width=4", "model.d.width=4", "train.batch_size=8"],
    "cyclegan-digits2mnist": ["data.limit=32", "model.g.width=4", "model.g.n_blocks=1", "model.d.width=4",
                              "train.batch_size=4"],
}


@pytest.mark.parametrize("recipe", sorted(TINY_TRANSLATION))
def test_bench_times_translation_objectives_against_their_plain_step(recipe):
    import copy

    from gankit.bench import plain_step
    from gankit.config import load_config
    from gankit.train.loop import Trainer

    tr = Trainer(load_config(recipe, TINY_TRANSLATION[recipe] + ["health.enabled=false"]))
    step = plain_step(tr)  # it trains its own copies: the trainer's networks stay as they are
    before = {k: copy.deepcopy(m.state_dict()) for k, m in tr.nets.items()}
    step()
    for k, m in tr.nets.items():
        assert all(torch.equal(v, m.state_dict()[n]) for n, v in before[k].items())
    row = bench(recipe, TINY_TRANSLATION[recipe], windows=1, steps_per_window=1, warmup=1)
    assert row["ours_img_s"] > 0 and row["plain_img_s"] > 0 and row["mflop_per_img"] > 0
