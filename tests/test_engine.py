"""The engine of named networks: every registered objective through the same checks; old checkpoints;
imports that flow one way."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gankit.api import load
from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.objectives import OBJECTIVES
from gankit.train.loop import Trainer
from gankit.train.run import LATEST, Run, train

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "v1"
QUIET = ["health.enabled=false", "train.log_every=1", "train.precision=fp32"]

# One tiny configuration per registered objective (a new objective adds its line here; the coverage
# test below fails until it does).
CASES = {
    "gan": ("dcgan-digits", ["model.g.width=8", "model.d.width=8", "train.batch_size=16", "train.ema=0.9"]),
    "acgan": ("acgan-fashion-mnist", ["data.name=digits", "data.resolution=16", "model.g.width=8",
                                       "model.d.width=8", "train.batch_size=16"]),
    "unrolled": ("unrolled-ring8", ["loss.unroll_steps=2", "model.g.width=16", "model.d.width=16",
                                    "train.batch_size=16"]),
    "pix2pix": ("pix2pix-edges2fashion", ["data.limit=64", "model.g.width=8", "model.d.width=8",
                                          "train.batch_size=8", "train.ema=0.9", "train.minutes=null"]),
    "cyclegan": ("cyclegan-digits2mnist", ["data.limit=48", "model.g.width=8", "model.g.n_blocks=1",
                                           "model.d.width=8", "train.batch_size=4", "loss.options.pool_size=3",
                                           "train.minutes=null"]),
    "vae": ("vae-fashion-mnist", ["data.name=digits", "data.resolution=16", "model.g.width=8", "model.nets.E.width=8",
                                  "train.batch_size=16", "train.minutes=null"]),
    "ganomaly": ("ganomaly-fashion-mnist", ["data.name=digits", "data.resolution=16", "model.z_dim=8", "model.g.width=8",
                                            "model.d.width=8", "train.batch_size=16", "train.minutes=null", "train.ema=0.9"]),
    "autoencoder": ("autoencoder-fashion-mnist", ["data.name=digits", "data.resolution=16", "model.z_dim=8",
                                                  "model.g.width=8", "train.batch_size=16", "train.minutes=null"]),
    "ssgan": ("ssgan-fashion-mnist", ["data.name=digits", "data.resolution=8", "model.g.width=16", "model.d.widths=[16,8]",
                                      "loss.options.labels_per_class=2", "train.batch_size=16", "train.minutes=null"]),
    # ESRGAN's relativistic critic on 16 px photo crops (the perceptual loss: tests/test_restoration.py)
    "sr": ("esrgan-photos", ["data.resolution=16", "data.options.crops=32", "model.g.width=8", "model.g.n_blocks=1",
                             "model.g.growth=4", "model.d.width=8", "loss.options.init_from=null",
                             "loss.options.perceptual_weight=0", "train.batch_size=4", "train.ema=0.9",
                             "train.minutes=null"]),
    "inpaint": ("inpaint-emoji", ["data.resolution=16", "data.limit=32", "model.g.width=8", "model.d.width=8",
                                  "train.batch_size=4", "train.ema=0.9", "train.minutes=null"]),
    "pix2pixhd": ("pix2pixhd-emoji", ["data.resolution=16", "data.limit=32", "model.g.width=8", "model.g.n_downsample=1",
                                      "model.g.n_blocks=1", "model.g.n_blocks_local=1", "model.d.width=8",
                                      "loss.options.perceptual_weight=0", "loss.options.l1_weight=1.0",
                                      "train.batch_size=4", "train.minutes=null"]),
    "biggan": ("biggan-fashion-mnist", ["data.name=digits", "data.resolution=16", "model.z_dim=12", "model.g.width=8",
                                        "model.g.shared_dim=4", "model.d.width=8", "train.batch_size=8", "train.ema=0.9",
                                        "train.minutes=null"]),
    # ProGAN with step 2 in the middle of the 8x8 -> 16x16 fade-in (alpha 0.5)
    "progan": ("progan-fashion-mnist", ["data.name=digits", "data.resolution=16", "model.z_dim=8", "model.g.width=64",
                                        "model.g.max_width=8", "model.d.width=64", "model.d.max_width=8",
                                        "loss.options.stable_images=16", "loss.options.fade_images=32",
                                        "train.batch_size=16", "train.ema=0.9", "train.minutes=null"]),
    # StyleGAN2 with every phase inside 4 steps: lazy R1 every 2 D steps, path length every 2 G steps, ADA
    "stylegan": ("stylegan2-fashion-mnist", ["data.name=digits", "data.resolution=8", "model.z_dim=8", "model.g.w_dim=8",
                                             "model.g.mapping_layers=2", "model.g.width=64", "model.g.max_width=8",
                                             "model.d.width=64", "model.d.max_width=8", "train.batch_size=8",
                                             "loss.regularizers=[{name: r1, weight: 1.0, every: 2}]",
                                             "loss.options.pl_weight=2", "loss.options.pl_every=2",
                                             "loss.options.style_mixing=0.9", "loss.options.ada=true", "train.ema=0.9",
                                             "train.minutes=null"]),
}


def config(objective, steps=3, extra=()):
    recipe, overrides = CASES[objective]
    return load_config(recipe, overrides + QUIET + [f"train.steps={steps}", *extra])


def test_every_objective_is_covered():
    assert set(CASES) == set(OBJECTIVES.names())


@pytest.mark.parametrize("objective", sorted(CASES))
def test_phases_train_their_networks_and_freeze_the_others(objective):
    cfg = config(objective)
    assert cfg.loss.objective == objective
    tr = Trainer(cfg)
    seen = []
    orig = tr.objective.accumulate_gradients

    def spy(phase, batch, n):
        ph = next(p for p in tr.phases if p.name == phase)
        grads = {k: any(p.requires_grad for p in m.parameters()) for k, m in tr.nets.items()}
        seen.append((ph, grads))
        return orig(phase, batch, n)

    tr.objective.accumulate_gradients = spy
    for _ in range(2):
        before = {k: [p.detach().clone() for p in m.parameters()] for k, m in tr.nets.items()}
        tr.train_step()
        # Networks no phase trains are unchanged; those trained by a phase moved.
        trained = {k for ph, _ in seen for k in ph.nets}
        for k, m in tr.nets.items():
            same = all(torch.equal(a, b) for a, b in zip(before[k], m.parameters()))
            assert same == (k not in trained), (objective, k)
    for ph, grads in seen:
        for k, on in grads.items():
            assert on == (k in ph.nets or k in ph.graph), (objective, ph.name, k)
    stats = tr.pop_stats()
    assert stats and all(torch.isfinite(torch.tensor(v)) for v in stats.values()), stats


@pytest.mark.parametrize("objective", sorted(CASES))
def test_resume_is_exact_and_a_checkpoint_rebuilds_the_model(objective, tmp_path):
    straight = train(config(objective, steps=4), out=tmp_path / "a", quiet=True)
    train(config(objective, steps=2), out=tmp_path / "b", quiet=True)
    resumed = train(resume=tmp_path / "b", overrides=["train.steps=4"], quiet=True)
    for k, m in straight.trainer.nets.items():
        for (name, p), q in zip(m.state_dict().items(), resumed.trainer.nets[k].state_dict().values()):
            assert torch.equal(p, q), (objective, k, name)
    assert straight.trainer.objective.state_dict().keys() == resumed.trainer.objective.state_dict().keys()
    # save -> load -> the same outputs as the trainer's sampling network on the same inputs
    model = load(tmp_path / "a")
    tr = straight.trainer
    inputs = {k: v for k, v in tr.fixed_inputs.items() if k in ("z", "y", "x")}
    want = tr.task.generate(tr.sampling_net(), inputs)
    got = model.task.generate(model.G, inputs)
    assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()


def test_cyclegan_pool_is_kept_in_checkpoints(tmp_path):
    run = train(config("cyclegan", steps=2), out=tmp_path / "r", quiet=True)
    pools = run.trainer.objective.state_dict()["pools"]
    assert pools["A"]["images"].shape[0] == 3 and pools["B"]["images"].shape[0] == 3  # pool_size 3, batches of 4
    from gankit.checkpoint import load_checkpoint
    saved = load_checkpoint(tmp_path / "r" / LATEST)["objective"]["pools"]
    assert torch.equal(saved["A"]["images"], pools["A"]["images"].cpu())


def test_image_pool_follows_the_reference_rule():
    from gankit.objectives.cyclegan import ImagePool

    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)          # filling: every image passes through and is kept
    new = 10 + torch.arange(64.0).view(64, 1, 1, 1)
    out = pool.query(new)
    from_pool = sum(not torch.equal(o, n) for o, n in zip(out, new))  # values are unique: a swap shows
    assert 16 < from_pool < 48                             # about half come from the history (p = 1/2, 64 draws)
    assert len(pool.images) == 4 and (pool.images >= 10).any()  # new images replaced stored ones
    assert ImagePool(0).query(new) is new


def test_per_network_settings_and_unknown_names_are_checked():
    cfg = config("cyclegan", extra=["model.nets.G_BA.n_blocks=2"])
    nets = OBJECTIVES.get("cyclegan").build_networks(cfg, Trainer(cfg).info)
    blocks = lambda m: sum(type(x).__name__ == "ResnetBlock" for x in m.modules())  # noqa: E731
    assert (blocks(nets["G_AB"]), blocks(nets["G_BA"])) == (1, 2)
    with pytest.raises(ConfigError, match="model.nets.G_BA.colour"):
        config("cyclegan", extra=["model.nets.G_BA.colour=1"])
    with pytest.raises(ConfigError, match="loss.options.cycle_wieght"):
        config("cyclegan", extra=["loss.options.cycle_wieght=1"])
    with pytest.raises(ConfigError, match="loss.options"):
        config("gan", extra=["loss.options.l1_weight=1"])
    with pytest.raises(ConfigError, match="train.optim.E"):
        Trainer(config("gan", extra=["train.optim.E={lr: 0.1}"]))
    with pytest.raises(ConfigError, match="model.nets.G3: objective 'gan' has no network of that name; its networks: G, D"):
        Trainer(config("gan", extra=["model.nets.G3.width=8"]))
    cfg = config("pix2pix", extra=["train.optim.D={lr: 0.123}"])
    assert Trainer(cfg).optimizers["D"].param_groups[0]["lr"] == pytest.approx(0.123)


def test_l1_only_pix2pix_has_no_discriminator():
    tr = Trainer(config("pix2pix", extra=["loss.options.adversarial=false"]))
    assert set(tr.nets) == {"G"} and [p.name for p in tr.phases] == ["G"]
    tr.train_step()
    assert "l1" in tr.pop_stats()


@pytest.mark.parametrize("name", ["dcgan-digits-v1", "gan-ring8-v1"])
def test_checkpoints_of_the_pair_engine_load_sample_and_resume(name, tmp_path):
    expected = load_file(FIXTURES / "expected_samples.safetensors")[name.replace("-", "_")]
    model = load(FIXTURES / name)
    x, _ = model.sample(8, seed=0)
    assert torch.equal(x, expected)
    import shutil
    run_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, run_dir)
    run = train(resume=run_dir, overrides=["train.steps=4"], quiet=True)
    assert run.trainer.state.step == 4


def test_config_and_checkpoints_import_no_training_code():
    code = ("import sys, gankit.config, gankit.checkpoint; "
            "bad = [m for m in sys.modules if m.startswith(('gankit.train', 'gankit.metrics'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    code = "import sys, gankit; gankit.load; from gankit.api import load; print('gankit.train.loop' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_the_loop_names_no_network():
    text = (ROOT / "gankit" / "train" / "loop.py").read_text()
    assert not re.findall(r"\.G\b|\.D\b|g_opt|d_opt", text)


def test_translate_cli_and_translation_eval(tmp_path):
    from PIL import Image

    from gankit.cli.main import main

    train(config("pix2pix", steps=2), out=tmp_path / "run", quiet=True)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray((torch.rand(40, 40) * 255).byte().numpy()).save(src / f"e{i}.png")
    assert main(["translate", str(tmp_path / "run"), str(src), "-o", str(tmp_path / "out"), "--side-by-side"]) == 0
    outs = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in outs] == ["e0.png", "e1.png", "e2.png"]
    assert Image.open(outs[0]).size == (64, 32)            # input | output at the model's 32x32
    (src / "bad.png").write_text("not an image")
    assert main(["translate", str(tmp_path / "run"), str(src), "-o", str(tmp_path / "out2")]) == 2
    assert main(["translate", str(tmp_path / "run"), str(src / "e0.png"), "-o", str(tmp_path / "o3"),
                 "--direction", "BtoA"]) == 2
    from gankit.evaluation import evaluate_translation
    res = evaluate_translation(tmp_path / "run", n=16, metrics=())
    r = res["AtoB"]
    assert r["n"] == 16 and 0 < r["psnr"] < 60 and -1 <= r["ssim"] <= 1
    assert (tmp_path / "run" / "eval.json").exists()


def test_sample_refuses_a_translation_run_and_translate_a_generator(tmp_path):
    from gankit.errors import GankitError

    train(config("pix2pix", steps=1), out=tmp_path / "p", quiet=True)
    with pytest.raises(GankitError, match="translate"):
        load(tmp_path / "p").sample(4)
    train(config("gan", steps=1), out=tmp_path / "g", quiet=True)
    with pytest.raises(GankitError, match="sample"):
        load(tmp_path / "g").translate(torch.zeros(1, 1, 16, 16))


def test_translation_grid_shows_input_output_target(tmp_path):
    run = Run(config("pix2pix", steps=1), tmp_path / "r", quiet=True)
    out = run.trainer.fixed_samples()
    assert set(out) == {"output", "input", "target"}
    assert out["input"].shape == out["output"].shape == out["target"].shape


@pytest.mark.parametrize("name", ["dcgan-digits-v1", "gan-ring8-v1"])
def test_the_engine_retrains_the_pair_engines_runs(name, tmp_path):
    # The same config from scratch, on the CPU with the 2 threads the fixture was made with: the
    # retrained G's EMA samples and D's scores equal the pair engine's, so results measured before the
    # engine of named networks hold after it. (Weights are compared through what they compute: a conv
    # bias before BatchNorm has a gradient of rounding noise, which Adam scales to ±lr per step.)
    cfg = load_config(FIXTURES / name / "config.yaml", ["train.threads=2", "train.device=cpu"])
    train(cfg, out=tmp_path / "r", quiet=True)
    old, new = load(FIXTURES / name, device="cpu"), load(tmp_path / "r", device="cpu")
    x_old, y = old.sample(64, seed=3)
    x_new, _ = new.sample(64, seed=3)
    assert torch.allclose(x_new, x_old, atol=1e-5), (x_new - x_old).abs().max()
    with torch.no_grad():
        d_old, d_new = old.D(x_old, y), new.D(x_old, y)
    assert torch.allclose(d_new, d_old, atol=1e-5), (d_new - d_old).abs().max()
