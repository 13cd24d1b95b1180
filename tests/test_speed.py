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
    assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"]  # one window: all three the same ratio
    assert "x (" in format_table([row]) and "| CPU (" in format_table([row])
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


TINY_PROGAN = ["data.limit=64", "train.batch_size=8", "model.g={width: 16, max_width: 8}",
               "model.d={width: 16, max_width: 8}"]


def test_bench_times_progan_at_the_stage_gankit_trains():
    """The plain copies are made when the Trainer is built (ProGAN's top stage, 32×32); gankit's first step
    sets stage 0 (4×4). The plain step must train the same networks: same stage, same G forward FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    from gankit.bench import plain_step

    tr = Trainer(load_config("progan-fashion-mnist", TINY_PROGAN))
    step = plain_step(tr)
    tr.train_step()
    step()
    assert step.nets["G"].growth() == tr.nets["G"].growth() == (0, 1.0)
    assert step.nets["D"].growth() == tr.nets["D"].growth()
    z = torch.randn(4, tr.cfg.model.z_dim)
    flops = []
    for G in (tr.nets["G"], step.nets["G"]):
        with FlopCounterMode(display=False) as c:
            G(z)
        flops.append(c.get_total_flops())
    assert flops[0] == flops[1]  # the same work: 4×4 both (the 32×32 copy costs about 20× more)
    row = bench("progan-fashion-mnist", TINY_PROGAN, windows=1, steps_per_window=1, warmup=1)
    assert row["timed_at"] == "4×4" and "(timed at 4×4)" in format_table([row])
    assert {"gradient-penalty", "drift"} <= set(row["plain_omits"])


TINY_OTHER = {
    "vae-fashion-mnist": ["data.limit=32", "train.batch_size=8", "model.g.width=4", "model.nets.E.width=4"],
    "colorize-emoji": ["data.limit=8", "train.batch_size=4", "model.g.width=4", "model.g.depth=4",
                       "model.d.width=4", "loss.options.init_from=null"],
}


@pytest.mark.parametrize("recipe", sorted(TINY_OTHER))
def test_bench_times_the_vae_and_the_colouriser(recipe):
    """The VAE has no D (a plain VAE step); a colouriser's G outputs a*, b* (2 channels) joined to L* by its task."""
    row = bench(recipe, TINY_OTHER[recipe], windows=1, steps_per_window=1, warmup=1)
    assert row["ours_img_s"] > 0 and row["plain_img_s"] > 0 and row["mflop_per_img"] > 0


def test_bench_refuses_in_one_line_naming_what_it_measures():
    from types import SimpleNamespace

    from gankit.bench import measured_objectives, plain_step
    from gankit.errors import GankitError
    from gankit.objectives import OBJECTIVES

    measured = measured_objectives()
    assert {"acgan", "biggan", "progan", "ssgan", "stylegan", "unrolled", "vae", "pix2pix", "cyclegan"} <= set(measured)
    assert not {"sr", "autoencoder", "inpaint", "pix2pixhd", "ganomaly"} & set(measured)
    sr = SimpleNamespace(cfg=load_config("srresnet-photos"), objective=OBJECTIVES.get("sr").__new__(OBJECTIVES.get("sr")),
                         nets={"G": None})
    with pytest.raises(GankitError) as e:
        plain_step(sr)
    assert "\n" not in str(e.value) and str(e.value).endswith("it measures: " + ", ".join(measured))
    # a noise-driven objective without a D (not the VAE's own step) is refused, not a KeyError
    no_d = SimpleNamespace(cfg=load_config("gan-ring8"), objective=OBJECTIVES.get("gan").__new__(OBJECTIVES.get("gan")),
                           nets={"G": None})
    with pytest.raises(GankitError, match="networks G"):
        plain_step(no_d)


def test_bench_row_keeps_its_thread_count_and_whole_lazy_intervals(monkeypatch):
    """train.threads=1 holds for its own row (its matmul peaks included), not for the next; a window holds
    whole intervals of a lazy regulariser (R1 every 4 steps: 4 steps, although 1 was asked for)."""
    import gankit.bench as gb

    seen = []
    monkeypatch.setattr(gb, "matmul_peak_gflops", lambda dtype, device: seen.append(torch.get_num_threads()) or 1.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tiny = ["data.size=512", "train.batch_size=32", "model.g.width=8", "model.d.width=8",
                "loss.regularizers=[{name: r1, weight: 1, every: 4}]"]
        row = bench("gan-ring8", tiny + ["train.threads=1"], windows=1, steps_per_window=1, warmup=1)
        assert torch.get_num_threads() == 2  # restored after the row
        assert row["threads"] == 1 and seen == [1, 1]  # both peaks at the row's count
        assert row["steps_per_window"] == 4 and row["plain_omits"] == ["r1 every 4"]
    finally:
        torch.set_num_threads(before)


def test_window_steps_hold_every_lazy_phase_in_proportion():
    from gankit.bench import window_steps
    from gankit.objectives import Phase

    phases = [Phase("D", "D", ("D",)), Phase("reg:r1", "D", ("D",), every=16, lazy=True), Phase("G", "G", ("G",)),
              Phase("reg:pl", "G", ("G",), every=4, lazy=True)]
    assert window_steps(phases, 5) == 16 and window_steps(phases, 17) == 32 and window_steps(phases[:1], 5) == 5
    for start in range(40):  # the trainer runs a phase at steps where step % every == 0
        window = range(start, start + window_steps(phases, 5))
        assert sum(s % 16 == 0 for s in window) == 1 and sum(s % 4 == 0 for s in window) == 4


def test_extra_work_names_what_the_plain_step_leaves_out():
    from gankit.bench import extra_work

    assert extra_work(load_config("unrolled-ring8")) == ["5 unrolled D updates differentiated through in G's step"]
    assert extra_work(load_config("unrolled-ring8", ["loss.unroll_steps=0"])) == []
    assert extra_work(load_config("ssgan-fashion-mnist")) == ["a labelled batch in D's step",
                                                              "feature matching in G's step (G's forward run again)"]
    assert "auxiliary class loss (weight 1)" in extra_work(load_config("acgan-fashion-mnist"))
    assert "weight clipping at 0.01" in extra_work(load_config("wgan-fashion-mnist"))
    assert {"gradient-penalty", "drift"} <= set(extra_work(load_config("progan-fashion-mnist")))
    assert extra_work(load_config("stylegan2-fashion-mnist")) == ["r1 every 16", "EMA"]  # mixing, path length off
    style = extra_work(load_config("stylegan2-fashion-mnist", ["loss.options={pl_weight: 2.0, style_mixing: 0.9}"]))
    assert "path-length regularisation every 4" in style and "style mixing (p 0.9)" in style


def test_plain_step_uses_the_recipes_optimisers():
    from gankit.bench import plain_step

    tr = Trainer(load_config("wgan-fashion-mnist", TINY_DCGAN))  # RMSprop on both sides (Arjovsky et al.)
    step = plain_step(tr)
    assert {k: type(o).__name__ for k, o in step.optimizers.items()} == {"G": "RMSprop", "D": "RMSprop"}
    assert step.optimizers["D"].defaults["lr"] == tr.optim_cfgs["D"].lr


def test_bench_table_warns_under_load_and_caps_the_peak_fraction():
    from gankit.bench import format_table

    row = {"recipe": "r", "device": "CPU (2 threads)", "precision": "bf16", "cuda_graphs": False, "batch": 8,
           "ours_img_s": 2.0, "plain_img_s": 1.0, "speedup": 2.0, "speedup_min": 0.7, "speedup_max": 2.3,
           "mflop_per_img": 1.0, "ours_gflops": 1.0, "plain_gflops": 1.0, "peak_fp32_gflops": 1.0,
           "peak_bf16_gflops": 1.0, "ours_peak_frac": 1.02, "plain_peak_frac": 0.5, "peak_rss_mb": 1.0,
           "threads": 2, "cores": 2, "load_avg": 1.5, "plain_omits": []}
    assert "2.00x (0.70–2.30)" in format_table([row]) and "warning" not in format_table([row])
    assert "102%" not in format_table([row]) and ">100%: peak measured low" in format_table([row])
    busy = format_table([dict(row, load_avg=4.5)])
    assert busy.splitlines()[-1].startswith("warning: the machine was loaded while timing r (load average up to 4.5")


def test_bench_cli_writes_json_rows(tmp_path, capsys):
    import json

    from gankit.cli.main import main

    out = tmp_path / "rows.jsonl"
    main(["bench", "gan-ring8", "--set", "data.size=256", "--set", "train.batch_size=32", "--windows", "1",
          "--steps", "1", "--json", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["recipe"] == "gan-ring8" and rows[0]["speedup"] > 0
    assert "| gan-ring8 |" in capsys.readouterr().out
