"""Each regulariser against its definition, on critics whose input gradient is known in closed form."""
import copy

import pytest
import torch

from gankit.config import load_config
from gankit.losses import REGULARIZERS
from gankit.train.ema import EMA
from gankit.train.loop import Trainer
from gankit.objectives import DataInfo, GANObjective

torch.set_num_threads(1)


def linear_critic(w: torch.Tensor, b: float = 0.3):
    """D(x) = ⟨w, x⟩ + b, so ∇ₓD = w at every x."""
    return lambda x: x.flatten(1) @ w.flatten() + b


def square_critic(x):
    """D(x) = ½‖x‖², so ∇ₓD = x."""
    return 0.5 * x.flatten(1).pow(2).sum(1)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 1, 3, 3, generator=g), torch.randn(16, 1, 3, 3, generator=g)


def test_gradient_penalty_linear_critic(batch):
    real, fake = batch
    w = torch.zeros(9)
    w[0], w[1] = 3.0, 4.0  # ‖∇D‖ = 5 everywhere -> (5 − 1)² = 16 whatever the interpolates are
    gp = REGULARIZERS.get("gradient-penalty")(linear_critic(w), real, fake)
    assert gp.item() == pytest.approx(16.0, rel=1e-6)
    unit = w / 5  # a 1-Lipschitz linear critic is not penalised
    assert REGULARIZERS.get("gradient-penalty")(linear_critic(unit), real, fake).item() == pytest.approx(0, abs=1e-10)


def test_gradient_penalty_is_taken_at_interpolates(batch):
    real, fake = batch
    torch.manual_seed(5)
    gp = REGULARIZERS.get("gradient-penalty")(square_critic, real, fake)
    torch.manual_seed(5)  # the same ε the penalty drew
    eps = torch.rand(16, 1, 1, 1)
    mixed = (eps * real + (1 - eps) * fake).flatten(1)
    expected = (mixed.norm(dim=1) - 1).pow(2).mean()  # ∇(½‖x‖²) = x
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)
    # and not at the real points: ε ~ U[0, 1] makes those differ almost surely
    at_real = (real.flatten(1).norm(dim=1) - 1).pow(2).mean()
    assert abs(gp.item() - at_real.item()) > 1e-3


def test_gradient_penalty_backpropagates_to_critic_weights(batch):
    real, fake = batch
    w = torch.tensor([3.0, 4.0] + [0.0] * 7, requires_grad=True)
    gp = REGULARIZERS.get("gradient-penalty")(linear_critic(w), real, fake)
    (grad,) = torch.autograd.grad(gp, w)
    # d/dw (‖w‖ − 1)² = 2(‖w‖ − 1) w / ‖w‖ = 2·4·w/5
    assert torch.allclose(grad, 1.6 * w.detach(), atol=1e-5)


def test_r1_and_r2(batch):
    real, fake = batch
    w = torch.arange(9.0)
    assert REGULARIZERS.get("r1")(linear_critic(w), real, fake).item() == pytest.approx(0.5 * w.pow(2).sum().item())
    r1 = REGULARIZERS.get("r1")(square_critic, real, fake)
    assert r1.item() == pytest.approx(0.5 * real.flatten(1).pow(2).sum(1).mean().item(), rel=1e-6)
    r2 = REGULARIZERS.get("r2")(square_critic, real, fake)
    assert r2.item() == pytest.approx(0.5 * fake.flatten(1).pow(2).sum(1).mean().item(), rel=1e-6)


def test_drift(batch):
    real, fake = batch
    assert REGULARIZERS.get("drift")(square_critic, real, fake).item() == pytest.approx(
        square_critic(real).pow(2).mean().item(), rel=1e-6)


TOY = {"data": {"name": "ring8", "size": 256}, "model": {"arch": "mlp", "z_dim": 4, "g": {"width": 8},
                                                          "d": {"width": 8}},
       "train": {"steps": 40, "batch_size": 32}}


def _tiny(*extra):
    """A tiny MLP GAN on the ring (independent of the shipped recipes, which get tuned)."""
    return load_config(TOY, list(extra))


@pytest.mark.parametrize("d_steps,every_g,interval", [(1, 16, 16), (3, 5, 15), (4, 4, 16)])
def test_lazy_r1_is_its_own_phase_every_n_d_steps_with_n_times_the_weight(d_steps, every_g, interval):
    """``every: 16`` counts D-steps (StyleGAN2's lazy R1). With k D-steps per G-step the phase runs
    every round(16 / k) G-steps, and its weight is the interval it stands for in D-steps,
    round(16 / k) · k; with k = 1 both are 16."""
    cfg = _tiny("loss.regularizers=[{name: r1, weight: 10, every: 16}]", f"train.d_steps={d_steps}")
    tr = Trainer(cfg)
    names = [(p.name, p.every, p.repeats) for p in tr.phases]
    assert names == [("D", 1, d_steps), ("reg:r1", every_g, 1), ("G", 1, 1)]
    ran = []
    orig = tr.objective.accumulate_gradients
    tr.objective.accumulate_gradients = lambda ph, *a: (ran.append((tr.state.step, ph)), orig(ph, *a))[1]
    steps = 2 * every_g + 1
    for _ in range(steps):
        tr.train_step()
    assert [s for s, ph in ran if ph == "reg:r1"] == [0, every_g, 2 * every_g]
    assert sum(ph == "D" for _, ph in ran) == steps * d_steps
    # The phase's gradient is interval · weight · ∇penalty, on real data only.
    batch = tr.data.batch(torch.arange(32))
    D = tr.nets["D"].requires_grad_(True)
    D.zero_grad(set_to_none=True)
    stats = tr.objective.accumulate_gradients("reg:r1", batch, 32)
    params = list(D.parameters())
    got = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]
    real = batch["x"]
    penalty = REGULARIZERS.get("r1")(tr.objective.critic(None), real, real)
    want = torch.autograd.grad(penalty * 10 * interval, params, allow_unused=True, materialize_grads=True)
    assert stats["r1"].item() == pytest.approx(penalty.item(), rel=1e-5)
    assert sum(g.abs().sum() for g in want) > 0
    for g_got, g_want in zip(got, want):
        assert torch.allclose(g_got, g_want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("d_steps,optim,c", [(1, "adam", 16 / 17), (4, "adam", 16 / 17), (3, "adam", 15 / 16),
                                             (1, "rmsprop", 16 / 17)])
def test_lazy_regulariser_corrects_its_optimiser_as_stylegan2(d_steps, optim, c):
    """StyleGAN2 App. B: an optimiser that takes one lazy step per N regular ones runs at lr × N/(N+1)
    and betas ** (N/(N+1)); N counts D steps (the phase's interval), G's optimiser is untouched, and
    ``train.lazy_correction=false`` gives the settings as written."""
    betas = ", betas: [0.0, 0.99]" if optim == "adam" else ""  # RMSprop has no betas (refused)
    d = f"train.d_optim={{name: {optim}, lr: 0.002{betas}}}"
    cfg = _tiny("loss.regularizers=[{name: r1, weight: 10, every: 16}]", f"train.d_steps={d_steps}", d,
                "train.g_optim={lr: 0.001, betas: [0.5, 0.9]}")
    groups = {k: o.param_groups[0] for k, o in Trainer(cfg).optimizers.items()}
    assert groups["D"]["lr"] == pytest.approx(0.002 * c, rel=1e-12)
    assert (groups["G"]["lr"], tuple(groups["G"]["betas"])) == (0.001, (0.5, 0.9))
    if optim == "adam":
        assert tuple(groups["D"]["betas"]) == pytest.approx((0.0, 0.99 ** c), rel=1e-12)
        assert groups["D"]["betas"][1] > 0.99  # a longer memory per step: fewer regular steps per unit
    plain = Trainer(_tiny("loss.regularizers=[{name: r1, weight: 10, every: 16}]", f"train.d_steps={d_steps}", d,
                          "train.lazy_correction=false"))
    assert plain.optimizers["D"].param_groups[0]["lr"] == 0.002
    # no lazy phase: nothing changes
    assert Trainer(_tiny(d)).optimizers["D"].param_groups[0]["lr"] == 0.002


def test_eager_regulariser_is_added_to_the_d_loss():
    cfg = _tiny("loss.regularizers=[{name: r1, weight: 2.5}]")
    tr = Trainer(cfg)
    assert [p.name for p in tr.phases] == ["D", "G"]
    real = tr.data.batch(torch.arange(32))["x"]
    G, D = tr.nets["G"], tr.nets["D"].requires_grad_(True)
    D0 = copy.deepcopy(D)
    with_reg = GANObjective({"G": G, "D": D}, cfg, tr.info)
    plain = GANObjective({"G": G, "D": D0}, load_config(TOY), DataInfo("vector", (2,), 0))
    for obj in (with_reg, plain):
        obj.phases(2)
        torch.manual_seed(3)  # the same fake batch for both
        obj.accumulate_gradients("D", {"x": real, "y": None}, 32)
    penalty = REGULARIZERS.get("r1")(lambda x: D0(x).float(), real, real)
    extra = torch.autograd.grad(2.5 * penalty, list(D0.parameters()), allow_unused=True, materialize_grads=True)
    assert sum(e.abs().sum() for e in extra) > 0
    for p, p0, e in zip(D.parameters(), D0.parameters(), extra):
        assert torch.allclose(p.grad, p0.grad + e, rtol=1e-4, atol=1e-7)


def test_ema_tracks_the_average_and_is_what_samples():
    G = torch.nn.Linear(2, 2)
    ema = EMA(G, 0.9)
    start = ema.module.weight.clone()
    with torch.no_grad():
        G.weight.add_(1.0)
    ema.update(G)
    assert torch.allclose(ema.module.weight, 0.9 * start + 0.1 * G.weight)
    tr = Trainer(_tiny("train.ema=0.99", "train.steps=3"))
    for _ in range(3):
        tr.train_step()
    ema = tr.emas["G"]
    assert tr.sampling_generator is ema.module and tr.sampling_net("G") is ema.module
    assert not torch.allclose(next(ema.module.parameters()), next(tr.nets["G"].parameters()))
    with torch.no_grad():
        want = ema.module(tr.fixed_inputs["z"])
    assert torch.allclose(tr.fixed_samples()["output"], want.cpu())  # fixed samples come back on the CPU


def test_ema_batchnorm_statistics_are_re_estimated_for_the_averaged_weights(tmp_path):
    """G's running statistics describe G, not the EMA's weights: the sampling copy re-estimates them
    (SWA's update_bn) on fixed noise, so its first BatchNorm mean is the mean of its own activations."""
    import gankit

    tiny = ["train.steps=8", "train.batch_size=8", "data.limit=64", "model.g.width=4", "model.d.width=4",
            "train.ema=0.5", "train.log_every=4", "train.checkpoint_every=100", "train.sample_every=100"]
    run = gankit.train("dcgan-fashion-mnist", tiny, out=tmp_path / "r", quiet=True)
    tr = run.trainer
    G = tr.sampling_generator
    bn = G.net[1]
    batches = tr.standing_inputs()
    with torch.no_grad():
        first = torch.cat([G.net[0](b["z"].view(*b["z"].shape, 1, 1)) for b in batches])  # (N, C, 7, 7) before BN
    assert torch.allclose(bn.running_mean, first.mean((0, 2, 3)), atol=1e-5)
    raw_bn = tr.nets["G"].net[1]
    assert not torch.allclose(bn.running_mean, raw_bn.running_mean, atol=1e-3)  # not G's statistics
    # An update makes them stale again; the next use re-estimates them.
    tr.train_step()
    ema = tr.emas["G"]
    assert ema.stale and torch.equal(ema.module.net[1].running_mean, raw_bn.running_mean)
    tr.sampling_generator
    assert not ema.stale
    # What the checkpoint holds samples the same as the trainer's copy.
    run.save()
    gan = gankit.load(run.dir, device=str(tr.device))
    # Same weights, other memory layout (the trainer's copy is channels_last): on the CPU the sums agree
    # to float32 rounding; on CUDA convolutions run in TF32 (10-bit mantissa), so allow its rounding.
    atol = 1e-6 if tr.device.type == "cpu" else 1e-3
    with torch.no_grad():
        z = tr.fixed_inputs["z"]
        assert torch.allclose(gan.G(z), tr.sampling_generator(z), atol=atol)


def test_ema_decay_start_and_rampup():
    tr = Trainer(_tiny("train.ema=0.999", "train.steps=3", "train.ema_start=10"))
    assert tr.ema_decay(9) == 0.0 and tr.ema_decay(10) == 0.999
    tr = Trainer(_tiny("train.ema=0.999", "train.steps=3", "train.ema_rampup=0.1"))
    # step 99 (100 steps done): half-life 10 steps, so β¹⁰ = ½; late on the configured 0.999 caps it.
    assert tr.ema_decay(99) ** 10 == pytest.approx(0.5)
    assert tr.ema_decay(100_000) == 0.999


def test_weight_clipping_follows_every_step_of_ds_optimiser_the_lazy_regularisers_too():
    """WGAN clips D after each of its optimiser's steps; a lazy regulariser's phase steps D too, so G
    must never see a weight outside [-c, c] (unclipped, it saw 0.0131 after each gradient-penalty
    phase). Clamping makes the bound exact: no tolerance."""
    cfg = _tiny("loss.name=wasserstein", "loss.clip_d_weights=0.01", "train.d_steps=1",
                "loss.regularizers=[{name: gradient-penalty, weight: 10, every: 2}]",
                "train.d_optim={name: rmsprop, lr: 1.0e-3}", "train.g_optim={name: rmsprop, lr: 1.0e-3}")
    tr = Trainer(cfg)
    assert [p.name for p in tr.phases] == ["D", "reg:gradient-penalty", "G"]
    D, seen = tr.nets["D"], []
    orig = tr.objective.accumulate_gradients

    def acc(phase, *a):
        if phase == "G":
            seen.append((tr.state.step, max(p.abs().max().item() for p in D.parameters())))
        return orig(phase, *a)

    tr.objective.accumulate_gradients = acc
    for _ in range(3):
        tr.train_step()
    assert len(seen) == 3 and all(m <= 0.01 for _, m in seen), seen
    assert max(m for _, m in seen) == pytest.approx(0.01, rel=1e-6)  # the clip bites (else the test proves nothing)


@pytest.mark.parametrize("reg", ["gradient-penalty", "r1", "r2"])
def test_a_gradient_penalty_on_a_batchnorm_critic_is_noted_once_not_refused(reg, capsys):
    """Gulrajani et al. 2017 (Sec. 4): BatchNorm mixes a batch's samples, so a penalty on each sample's
    input gradient is not per sample. One note at config check (stderr), the config still loads;
    none without BatchNorm (batchnorm: false, or spectral norm in its place) or for a penalty on D's
    output (drift)."""
    penalty = f"loss.regularizers=[{{name: {reg}, weight: 10}}]"
    cfg = load_config("dcgan-digits", ["loss.name=wasserstein", penalty])
    assert cfg.loss.regularizers[0].name == reg
    out, err = capsys.readouterr()
    assert err.count("note: ") == 1 and out == ""
    assert err.startswith(f"note: loss.regularizers: {reg} on each sample's input gradient, but the dcgan D has "
                          "BatchNorm (model.d.batchnorm)") and "Gulrajani et al. 2017, Sec. 4" in err
    for quiet in (["model.d.batchnorm=false"], ["model.d.spectral=true"]):
        load_config("dcgan-digits", ["loss.name=wasserstein", penalty, *quiet])
        assert capsys.readouterr().err == ""
    load_config("dcgan-digits", ["loss.regularizers=[{name: drift, weight: 0.001}]"])
    assert capsys.readouterr().err == ""
