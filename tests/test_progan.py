"""ProGAN (Karras et al. 2018): the fade-in of both networks, equalized learning rate, pixel norm, the
growth schedule and the reals' level of detail, exact resume mid-fade, and the shared network checks."""
import math

import pytest
import torch

from gankit.tasks import GenerationTask
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.nets import NETWORKS
from gankit.nets.equalized import EqualizedConv2d, EqualizedLinear, PixelNorm
from gankit.objectives.progan import growth_at, images_to_full
from gankit.train.loop import Trainer
from gankit.train.run import train

TINY = {"width": 64, "max_width": 8}  # channels 8, 8, 4 at 4, 8, 16 px
Z = 8
# The tiny run of the objective tests (and of tests/test_engine.py's CASES): 16 px digits, batches of 4,
# so images = 4 × step; stable 2, fade 12: 4×4 at step 0, 8×8 fading in at steps 1-3 (alpha 1/6, 1/2, 5/6),
# 16×16 fading in from step 4 (alpha 0, 1/3, 2/3), fully in from step 7.
RUN = ["data.name=digits", "data.resolution=16", "model.z_dim=8", "model.g.width=64", "model.g.max_width=8",
       "model.d.width=64", "model.d.max_width=8", "train.batch_size=4", "loss.options.stable_images=2",
       "loss.options.fade_images=12", "train.minutes=null", "train.ema=0.9",
       "health.enabled=false", "train.log_every=1", "train.precision=fp32"]


def build(shape=(1, 16, 16), nc=0, seed=0, g=TINY, d=TINY):
    torch.manual_seed(seed)
    return NETWORKS.get("progan").build(Z, shape, nc, dict(g), dict(d))


def grown(net, stage, alpha):
    net.set_growth(stage, alpha)
    return net


# -- fade-in --------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", [1, 2])
def test_generator_fade_in_blends_the_two_resolutions(stage):
    G, _ = build()
    z = torch.randn(4, Z)
    with torch.no_grad():
        low = grown(G, stage - 1, 1.0)(z)
        at0, at1, half = (grown(G, stage, a)(z) for a in (0.0, 1.0, 0.5))
    f = 2 ** (G.top - stage + 1)  # the lower stage's image is made of f×f blocks of one value
    assert torch.equal(low, F.interpolate(low[:, :, ::f, ::f], scale_factor=f, mode="nearest"))
    assert torch.equal(at0, low)                                   # alpha 0: the stage below, upsampled
    assert not torch.allclose(at1, low, atol=1e-3)
    torch.testing.assert_close(half, (at0 + at1) / 2, atol=1e-6, rtol=0)  # a linear blend of the two images
    # alpha 1 is the upper path alone: the lower stage's toRGB has no say
    with torch.no_grad():
        G.to_rgb[stage - 1].weight.mul_(3.0)
        assert torch.equal(grown(G, stage, 1.0)(z), at1)
        assert not torch.allclose(grown(G, stage, 0.5)(z), half, atol=1e-4)
    if stage == G.top:  # fully grown is what a network built on its own computes
        G2, _ = build()
        with torch.no_grad():
            assert torch.equal(G2(z), at1)


@pytest.mark.parametrize("stage", [1, 2])
def test_discriminator_fade_in_blends_the_two_paths(stage):
    _, D = build()
    x = torch.randn(8, 1, 16, 16)
    with torch.no_grad():
        low = grown(D, stage - 1, 1.0)(x)
        at0, at1, half = (grown(D, stage, a)(x) for a in (0.0, 1.0, 0.5))
        # alpha 0: the lower resolution's path on the same input (pooling 2f at once vs f then 2 differ by rounding)
        torch.testing.assert_close(at0, low, atol=1e-5, rtol=0)
        assert not torch.allclose(at1, low, atol=1e-3)
        # alpha 1: the upper path alone (the lower fromRGB has no say); alpha 0: the new block has none
        D.from_rgb[stage - 1].weight.mul_(3.0)
        assert torch.equal(grown(D, stage, 1.0)(x), at1)
        assert not torch.allclose(grown(D, stage, 0.5)(x), half, atol=1e-4)
        D.from_rgb[stage - 1].weight.div_(3.0)
        D.blocks[stage - 1][0].weight.mul_(3.0)
        D.from_rgb[stage].weight.mul_(3.0)
        torch.testing.assert_close(grown(D, stage, 0.0)(x), at0, atol=1e-6, rtol=0)
        assert not torch.allclose(grown(D, stage, 1.0)(x), at1, atol=1e-4)


def test_discriminator_sees_only_the_active_resolution():
    _, D = build()
    x = torch.randn(8, 1, 16, 16)
    coarse = F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="nearest")  # same 4×4 means, no detail
    with torch.no_grad():
        torch.testing.assert_close(grown(D, 0, 1.0)(x), D(coarse), atol=1e-5, rtol=0)
        assert not torch.allclose(grown(D, 2, 1.0)(x), D(coarse), atol=1e-4)


# -- layers ---------------------------------------------------------------------------------------

def test_every_layer_has_the_equalized_learning_rate():
    G, D = build(g={"width": 1024, "max_width": 64}, d={"width": 1024, "max_width": 64})
    for net in (G, D):
        assert not [m for m in net.modules() if type(m) in (torch.nn.Conv2d, torch.nn.Linear)]
        convs = [m for m in net.modules() if isinstance(m, EqualizedConv2d)]
        assert len(convs) >= 7
        for m in convs:
            o, i, k, _ = m.weight.shape
            gain = 1.0 if (net is G and m in list(G.to_rgb)) else math.sqrt(2)
            assert m.scale == pytest.approx(gain / math.sqrt(i * k * k), rel=1e-12)
        linears = [m for m in net.modules() if isinstance(m, EqualizedLinear)]
        assert linears
    # weights stored N(0, 1): the largest conv has 64·64·9 = 36,864 of them (std's error ~0.004)
    big = G.blocks[0][1].weight
    assert big.numel() == 36864 and abs(big.std().item() - 1) < 0.02 and abs(big.mean().item()) < 0.02
    # the output is a plain conv with the weight times the runtime scale
    x = torch.randn(2, 64, 8, 8)
    conv = G.blocks[0][1]
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * conv.scale, conv.bias, padding=1))
    assert conv(x).pow(2).mean().item() == pytest.approx(2.0, rel=0.15)  # He's gain: E[y²] = 2·E[x²]
    lin = G.dense
    zin = torch.randn(3, Z)
    torch.testing.assert_close(lin(zin), zin @ (lin.weight * math.sqrt(2) / 4 / math.sqrt(Z)).T + lin.bias)


def test_pixel_norm_gives_unit_rms_per_pixel_in_the_generator():
    x = torch.randn(4, 16, 5, 5) * torch.rand(4, 1, 5, 5) * 10
    y = PixelNorm()(x)
    torch.testing.assert_close(y.pow(2).mean(1), torch.ones(4, 5, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y * x.pow(2).mean(1, keepdim=True).sqrt(), x, atol=1e-4, rtol=1e-4)
    G, _ = build()
    seen = []
    G.norm.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    with torch.no_grad():
        G(torch.randn(3, Z) * 5)
    # z, the dense layer and each of the 1 + 2·2 convs; every feature vector has unit RMS
    assert len(seen) == 7
    for o in seen:
        torch.testing.assert_close(o.pow(2).mean(1), torch.ones_like(o[:, 0]), atol=1e-4, rtol=0)


# -- shared network checks ------------------------------------------------------------------------

@pytest.mark.parametrize("shape,nc", [((1, 16, 16), 0), ((3, 32, 32), 3), ((1, 16, 32), 0)])
def test_shapes_backward_and_range(shape, nc):
    G, D = build(shape, nc)
    z = torch.randn(4, Z)
    y = torch.tensor([0, 1, 2, 0]) if nc else None
    for stage, alpha in ((0, 1.0), (1, 0.3), (G.top, 1.0)):
        grown(G, stage, alpha), grown(D, stage, alpha)
        x = G(z, y)
        assert x.shape == (4, *shape)
        out = D(x, y)
        assert out.shape == (4,)
        G.zero_grad(), D.zero_grad()
        out.sum().backward()
        grads = [p.grad for p in G.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        G.dense.bias.fill_(40.0)
    x = GenerationTask(Z, nc).generate(G, {"z": z, "y": y})
    assert G.linear_output and x.min() >= -1 and x.max() <= 1  # samples are clipped to the data range


@pytest.mark.parametrize("nc", [0, 3])
def test_save_load_same_output_and_growth(nc, tmp_path):
    G, D = build(nc=nc, seed=0)
    grown(G, 1, 0.25), grown(D, 1, 0.25)
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, tmp_path / "g.safetensors")
    save_file({k: v.contiguous() for k, v in D.state_dict().items()}, tmp_path / "d.safetensors")
    G2, D2 = build(nc=nc, seed=1)
    G2.load_state_dict(load_file(tmp_path / "g.safetensors"))
    D2.load_state_dict(load_file(tmp_path / "d.safetensors"))
    assert G2.growth() == D2.growth() == (1, 0.25)
    z = torch.randn(4, Z)
    y = torch.tensor([0, 1, 2, 0]) if nc else None
    with torch.no_grad():
        x = G(z, y)
        assert torch.equal(x, G2(z, y))
        assert torch.equal(D(x, y), D2(x, y))


@pytest.mark.parametrize("nc", [0, 3])
def test_deterministic_under_seed(nc):
    y = torch.tensor([0, 1, 2]) if nc else None
    outs = []
    for seed in (123, 123, 124):
        G, _ = build(nc=nc, seed=seed)
        torch.manual_seed(7)
        outs.append(G(torch.randn(3, Z), y))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_conditional_outputs_differ_per_class():
    G, D = build(nc=3)
    z = torch.randn(1, Z).repeat(3, 1)
    with torch.no_grad():
        x = G(z, torch.tensor([0, 1, 2]))
        assert min((x[i] - x[j]).abs().max().item() for i, j in ((0, 1), (0, 2), (1, 2))) > 1e-4
        same = x[:1].repeat(4, 1, 1, 1)
        s = D(same, torch.tensor([0, 1, 2, 0]))
        assert (s[0] - s[1]).abs() > 1e-6 and (s[1] - s[2]).abs() > 1e-6 and torch.allclose(s[0], s[3], atol=1e-6)
    with pytest.raises(ValueError, match="conditional"):
        G(z)


def test_sizes_and_settings_are_checked():
    with pytest.raises(ConfigError, match="resolution.*use e.g. 32"):
        NETWORKS.get("progan").build(Z, (1, 28, 28), 0, {}, {})
    with pytest.raises(ConfigError, match="data.resolution=28: the progan generator"):
        load_config("progan-fashion-mnist", ["data.resolution=28"])
    with pytest.raises(ConfigError, match="max_width must be an integer >= 1"):
        build(g={"width": 64, "max_width": 0})
    G, _ = build(g={"width": 8, "max_width": 512})  # 8 // 4, 8 // 8, 8 // 16 -> at least one channel
    assert [rgb.weight.shape[1] for rgb in G.to_rgb] == [2, 1, 1]
    with pytest.raises(ConfigError, match="model.arch='dcgan'.*progan"):
        load_config("progan-fashion-mnist", ["model.arch=dcgan", "model.g={}", "model.d={}"])
    with pytest.raises(ConfigError, match="loss.options.start_resolution=6"):
        load_config("progan-fashion-mnist", ["loss.options.start_resolution=6"])
    with pytest.raises(ConfigError, match="loss.options.start_resolution=64: larger than data.resolution"):
        load_config("progan-fashion-mnist", ["loss.options.start_resolution=64"])
    with pytest.raises(ValueError, match="stage must be in 0..2"):
        build()[0].set_growth(3, 1.0)


# -- the schedule, the reals, the optimiser resets ----------------------------------------------

def test_growth_schedule_by_hand():
    # stable 8 images at 4×4, then per stage: fade 12, stable 8; stages 0..2
    assert growth_at(0, 12, 8, 0, 2) == (0, 1.0)
    assert growth_at(7, 12, 8, 0, 2) == (0, 1.0)
    assert growth_at(8, 12, 8, 0, 2) == (1, 0.0)          # the first fade starts
    assert growth_at(14, 12, 8, 0, 2) == (1, 0.5)         # mid fade
    assert growth_at(20, 12, 8, 0, 2) == (1, 1.0)         # after the fade: stable at 8×8
    assert growth_at(27, 12, 8, 0, 2) == (1, 1.0)
    assert growth_at(28 + 3, 12, 8, 0, 2) == (2, 0.25)
    assert growth_at(40, 12, 8, 0, 2) == (2, 1.0) == growth_at(10 ** 9, 12, 8, 0, 2)  # final
    assert growth_at(0, 12, 8, 1, 2) == (1, 1.0)          # starting at 8×8
    assert growth_at(8, 0, 8, 0, 2) == (1, 1.0)           # no fade: the new stage at once
    assert images_to_full(12, 8, 4, 16) == 40 and images_to_full(600_000, 600_000, 4, 32) == 3_600_000


def test_on_step_sets_growth_reals_and_resets_adam():
    eight = RUN + ["train.steps=20", "loss.options.stable_images=8"]
    tr = Trainer(load_config("progan-fashion-mnist", eight))
    ob, G, D = tr.objective, tr.nets["G"], tr.nets["D"]
    # images = 4 × step: (step, stage, alpha) by hand from stable 8, fade 12
    for step, stage, alpha in [(0, 0, 1.0), (1, 0, 1.0), (2, 1, 0.0), (3, 1, 1 / 3), (5, 1, 1.0),
                               (7, 2, 0.0), (8, 2, 1 / 3), (10, 2, 1.0), (500, 2, 1.0)]:
        ob.on_step(step, 0.0)
        for net in (G, D):
            assert net.growth()[0] == stage and net.growth()[1] == pytest.approx(alpha, abs=1e-7), (step, net)
        assert ob.state_dict()["images"] == 4 * step
    # the reals D sees at stage 1 (8×8) with alpha 1/3: lerp(4×4 means, 8×8 means, 1/3), upsampled to 16×16
    ob.on_step(3, 0.0)
    x = torch.randn(4, 1, 16, 16)
    up = lambda t, f: F.interpolate(t, scale_factor=f, mode="nearest")  # noqa: E731
    want = up(F.avg_pool2d(x, 4), 4) * (2 / 3) + up(F.avg_pool2d(x, 2), 2) * (1 / 3)
    torch.testing.assert_close(ob.level_of_detail(x), want, atol=1e-6, rtol=0)
    ob.on_step(10, 0.0)
    assert ob.level_of_detail(x) is x
    # The EMA copy follows through its buffers; Adam's moments are cleared when a fade starts and ends.
    fresh = Trainer(load_config("progan-fashion-mnist", eight))
    for _ in range(2):
        fresh.train_step()  # steps 0, 1 at 4×4
    assert fresh.optimizers["G"].state and tuple(fresh.emas["G"].module.growth()) == (0, 1.0)
    kept = next(iter(fresh.optimizers["D"].state.values()))["exp_avg"].clone()
    fresh.objective.on_step(2, 0.0)  # the 8×8 fade starts
    assert not fresh.optimizers["G"].state and not fresh.optimizers["D"].state
    fresh.state.step = 2
    fresh.train_step()
    assert fresh.emas["G"].module.growth() == (1, 0.0)
    assert not torch.equal(next(iter(fresh.optimizers["D"].state.values()))["exp_avg"], kept)


def test_resume_mid_fade_is_exact(tmp_path):
    # 5 steps straight against 2 + 3 resumed: the checkpoint falls inside the 8×8 fade (alpha 1/6) and the
    # resumed part crosses the start of the 16×16 fade (step 4, where Adam's moments are reset)
    cfg = lambda steps: load_config("progan-fashion-mnist", RUN + [f"train.steps={steps}"])  # noqa: E731
    straight = train(cfg(5), out=tmp_path / "a", quiet=True)
    train(cfg(2), out=tmp_path / "b", quiet=True)
    from gankit.checkpoint import load_checkpoint
    from gankit.train.run import LATEST
    saved = load_checkpoint(tmp_path / "b" / LATEST)
    assert saved["objective"] == {"images": 4, "stage": 1, "alpha": pytest.approx(1 / 6, abs=1e-7)}
    assert int(saved["modules"]["G_ema"]["stage"]) == 1 and 0 < float(saved["modules"]["D"]["alpha"]) < 1
    resumed = train(resume=tmp_path / "b", overrides=["train.steps=5"], quiet=True)
    a, b = straight.trainer, resumed.trainer
    assert a.objective.state_dict() == b.objective.state_dict() == {"images": 16, "stage": 2, "alpha": 0.0}
    for k in a.nets:
        for (name, p), q in zip(a.nets[k].state_dict().items(), b.nets[k].state_dict().values()):
            assert torch.equal(p, q), (k, name)
    for (name, p), q in zip(a.emas["G"].module.state_dict().items(), b.emas["G"].module.state_dict().values()):
        assert torch.equal(p, q), ("G_ema", name)
    assert torch.equal(a.nets["G"].alpha, b.nets["G"].alpha) and torch.equal(a.nets["D"].stage, b.nets["D"].stage)
    # a trained model rebuilt from its folder keeps the growth it was saved with (the 16×16 fade's start)
    from gankit.api import load
    model = load(tmp_path / "b")
    assert model.G.growth() == (2, 0.0)
    inputs = {k: v for k, v in a.fixed_inputs.items() if k in ("z", "y")}
    # (atol: the trainer's copy is channels_last, the loaded one is not; the convolutions round differently)
    torch.testing.assert_close(model.task.generate(model.G, inputs), a.task.generate(a.sampling_net(), inputs),
                               atol=1e-6, rtol=0)
