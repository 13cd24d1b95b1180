"""The StyleGAN objective: path length against a hand computation, lazy phases and their intervals,
style mixing, w_avg, adaptive augmentation (ADA) and the state kept in checkpoints."""
import math

import pytest
import torch

from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.losses.ada import AdaptiveAugment
from gankit.objectives.stylegan import path_length_penalty
from gankit.train.loop import Trainer
from gankit.train.run import train

TINY = ["data.name=digits", "data.resolution=8", "model.z_dim=8", "model.g.w_dim=8", "model.g.mapping_layers=2",
        "model.g.width=64", "model.g.max_width=8", "model.d.width=64", "model.d.max_width=8",
        "train.batch_size=8", "train.precision=fp32", "health.enabled=false", "train.log_every=1",
        "train.minutes=null", "train.ema=null",
        # the paper's regularisers (the CPU recipe turns path length and mixing off)
        "loss.options.pl_weight=2.0", "loss.options.style_mixing=0.9"]


def cfg(*extra, steps=2):
    return load_config("stylegan2-fashion-mnist", TINY + [f"train.steps={steps}", *extra])


def test_path_length_matches_a_hand_computed_jacobian():
    # A linear "synthesis": image = (Σ_i ws_i) M, so ∂⟨image, y⟩/∂ws_i = M y for every style i and
    # the path length is √(mean_i ‖M y‖²) = ‖M y‖ with y ~ N(0, I)/√(H·W).
    torch.manual_seed(0)
    B, num_ws, w_dim, H, W = 3, 4, 5, 2, 3
    M = torch.randn(w_dim, H * W, requires_grad=True)   # stands for G's weights
    ws = torch.randn(B, num_ws, w_dim, requires_grad=True)
    fake = (ws.sum(1) @ M).view(B, 1, H, W)
    pl_mean = torch.tensor(0.7)
    torch.manual_seed(1)
    penalty, lengths, mean = path_length_penalty(fake, ws, pl_mean, decay=0.01)
    torch.manual_seed(1)
    y = torch.randn(B, 1, H, W) / math.sqrt(H * W)
    want = (M.detach() @ y.view(B, -1, 1)).squeeze(-1).norm(dim=1)       # (B,)
    assert torch.allclose(lengths, want, rtol=1e-5)
    # stylegan2-ada's order: the running mean moves first, the penalty is against the moved mean
    moved = 0.7 + (want.mean() - 0.7) * 0.01
    assert torch.allclose(mean, moved, rtol=1e-6)
    assert torch.allclose(penalty, (want - moved).pow(2).mean(), rtol=1e-5)
    (g,) = torch.autograd.grad(penalty, M)                         # differentiable: it trains G's weights
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_phases_and_lazy_intervals():
    tr = Trainer(cfg("train.d_steps=1"))
    phases = {p.name: p for p in tr.phases}
    assert list(phases) == ["D", "reg:r1", "G", "reg:pl"]
    assert phases["reg:r1"].every == 16 and phases["reg:r1"].nets == ("D",)
    assert phases["reg:pl"].every == 4 and phases["reg:pl"].nets == ("G",) and phases["reg:pl"].optimizer == "G"
    # R1 is weighted by its interval in D steps (lazy regularisation, StyleGAN2 App. B)
    assert tr.objective.reg_interval["reg:r1"] == 16
    # and each optimiser runs at lr × N/(N+1), betas ** (N/(N+1)): D with N = 16, G with N = 4
    for name, c in (("D", 16 / 17), ("G", 4 / 5)):
        group = tr.optimizers[name].param_groups[0]
        assert group["lr"] == pytest.approx(2e-3 * c) and tuple(group["betas"]) == pytest.approx((0.0, 0.99 ** c))
    off = Trainer(cfg("loss.options.pl_weight=0"))
    assert [p.name for p in off.phases] == ["D", "reg:r1", "G"]
    assert off.optimizers["G"].param_groups[0]["lr"] == 2e-3  # no lazy step of G


def test_style_mixing_uses_two_latents_past_a_cut_and_w_avg_tracks_the_mean():
    tr = Trainer(cfg("loss.options.style_mixing=1.0"))
    obj = tr.objective
    torch.manual_seed(0)
    ws = obj.latents(6, torch.device("cpu"), None)
    # rows before the cut equal one another, rows after it too, and the two differ
    same_as_first = [torch.equal(ws[:, i], ws[:, 0]) for i in range(ws.shape[1])]
    cut = same_as_first.index(False)
    assert 1 <= cut < ws.shape[1] and not any(same_as_first[cut:])
    assert all(torch.equal(ws[:, i], ws[:, cut]) for i in range(cut, ws.shape[1]))
    none = Trainer(cfg("loss.options.style_mixing=0.0")).objective.latents(6, torch.device("cpu"), None)
    assert all(torch.equal(none[:, i], none[:, 0]) for i in range(none.shape[1]))
    # the D step's generated batch moves w_avg by (1 − 0.995) of the way to its mean w
    G = obj.G
    obj.noise_source = None                       # z from torch's global RNG, to redraw it below
    before = G.w_avg.clone()
    torch.manual_seed(3)
    obj.latents(8, torch.device("cpu"), None, update_avg=True)
    torch.manual_seed(3)
    w = G.mapping(torch.randn(8, G.z_dim), None)
    assert torch.allclose(G.w_avg, before + (w.mean(0) - before) * 0.005, atol=1e-6)


def test_training_moves_pl_mean_and_resume_is_exact_with_its_state(tmp_path):
    extra = ["loss.options.pl_every=1", "loss.regularizers=[{name: r1, weight: 1.0, every: 2}]",
             "loss.options.ada=true", "loss.options.ada_target=-1", "loss.options.ada_interval=1", "loss.options.ada_speed_images=64"]
    straight = train(cfg(*extra, steps=4), out=tmp_path / "a", quiet=True)
    train(cfg(*extra, steps=2), out=tmp_path / "b", quiet=True)
    resumed = train(resume=tmp_path / "b", overrides=["train.steps=4"], quiet=True)
    s, r = straight.trainer.objective, resumed.trainer.objective
    assert float(s.pl_mean) > 0                  # four path-length steps moved the running mean off 0
    assert torch.equal(s.pl_mean, r.pl_mean)
    assert s.ada.state_dict() == r.ada.state_dict() and s.ada.p > 0
    for k, m in straight.trainer.nets.items():
        for (name, p), q in zip(m.state_dict().items(), resumed.trainer.nets[k].state_dict().values()):
            assert torch.equal(p, q), (k, name)


def test_ada_probability_follows_the_overfitting_heuristic():
    ada = AdaptiveAugment(target=0.6, interval=2, speed_images=100)
    ada.observe(1.0, 10)
    assert ada.p == 0.0                           # adjusted only every `interval` steps
    ada.observe(0.8, 10)
    assert ada.rt == pytest.approx(0.9) and ada.p == pytest.approx(0.2)    # r_t above target: p up by 20/100
    ada.observe(0.0, 10)
    ada.observe(0.2, 10)
    assert ada.rt == pytest.approx(0.1) and ada.p == pytest.approx(0.0)    # below: back down, clamped at 0
    for _ in range(40):
        ada.observe(1.0, 10)
    assert ada.p == 1.0                           # clamped at 1


def test_ada_sums_device_signs_and_reads_them_once_per_adjustment():
    """Signs given as tensors (the D step's, on its device) move p exactly as the same signs given as
    floats; between adjustments nothing is read (``meta`` tensors, which cannot be read, stand in
    for a GPU's)."""
    signs = [1.0, 0.75, -0.25, 0.5, 0.25, 1.0]
    host, device = (AdaptiveAugment(target=0.6, interval=2, speed_images=100) for _ in range(2))
    for v in signs:
        host.observe(v, 10)
        device.observe(torch.tensor(v, dtype=torch.float32), 10)
        assert (device.p, device.rt) == (host.p, host.rt) and type(device.rt) is float  # read on the host
    assert host.p == pytest.approx(0.2)
    lazy = AdaptiveAugment(interval=4)
    for _ in range(3):
        lazy.observe(torch.ones((), device="meta"), 8)  # a host read of a meta tensor would raise
    assert lazy._signs.device.type == "meta" and lazy.p == 0.0


def test_ada_statistics_sit_on_the_device_of_the_d_steps_statistics(monkeypatch):
    """On a GPU every statistic of a D step is on the GPU, and a record stacks them all: ada_p and
    ada_rt must be there too, and the D step must not read the GPU (``meta`` stands in for it)."""
    from gankit.objectives.gan import GANObjective

    d_step = GANObjective.accumulate_gradients
    monkeypatch.setattr(GANObjective, "accumulate_gradients",
                        lambda *a, **k: {key: v.to("meta") for key, v in d_step(*a, **k).items()})
    tr = Trainer(cfg("loss.options.ada=true", "loss.options.ada_interval=4"))
    batch = tr.next_batch()
    for _ in range(3):  # before the adjustment (every 4 D steps), which reads the signs once
        stats = tr.objective.accumulate_gradients("D", batch, 8)
    assert {k: v.device.type for k, v in stats.items()} == {k: "meta" for k in stats}
    assert {"ada_p", "ada_rt"} <= set(stats) and stats["ada_p"].shape == ()


def _rot90_reference(x, k):
    """The per-sample loop the blit's quarter turns replaced (a host read of k per batch)."""
    return torch.stack([torch.rot90(xi, int(ki), (1, 2)) for xi, ki in zip(x, k.tolist())])


def test_ada_quarter_turns_equal_rot90_and_no_augmentation_reads_the_device(monkeypatch):
    import gankit.losses.ada as ada_module

    torch.manual_seed(0)
    x = torch.rand(8, 3, 6, 6)
    k = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    # _blit's gates in order (flip, quarter turn, translation): only the quarter turns act, by k
    calls = iter([k])
    randint = torch.randint
    monkeypatch.setattr(torch, "randint", lambda *a, **kw: next(calls) if a[0] == 4 else randint(*a, **kw))
    gates = iter([False, True, False])
    monkeypatch.setattr(ada_module, "_gate", lambda x, p: torch.full((x.shape[0], 1, 1, 1), next(gates)))
    assert torch.equal(ada_module._blit(x, 0.5), _rot90_reference(x, k))
    monkeypatch.undo()
    meta = torch.empty(4, 3, 8, 8, device="meta")
    assert AdaptiveAugment(p=0.5)(meta).shape == meta.shape  # every decision on the device


def test_ada_is_the_identity_at_p_0_and_differentiable_at_p_1():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    assert torch.equal(AdaptiveAugment(p=0.0)(x), x)
    xr = x.clone().requires_grad_(True)
    y = AdaptiveAugment(p=1.0)(xr)
    assert y.shape == x.shape and not torch.allclose(y, x)
    (g,) = torch.autograd.grad(y.square().sum(), xr)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # grey images stay grey-shaped: one channel goes through without the saturation step
    assert AdaptiveAugment(p=1.0)(x[:, :1]).shape == (6, 1, 16, 16)


def test_stylegan_objective_needs_a_style_generator_and_sane_options():
    with pytest.raises(ConfigError, match="model.arch"):
        load_config("stylegan2-fashion-mnist", TINY + ["train.steps=2", "model.arch=dcgan", "model.g={}", "model.d={}"])
    with pytest.raises(ConfigError, match="loss.options.style_mixing"):
        cfg("loss.options.style_mixing=1.5")
    with pytest.raises(ConfigError, match="loss.options.pl_every"):
        cfg("loss.options.pl_every=0")
    with pytest.raises(ConfigError, match="loss.options.nope"):
        cfg("loss.options.nope=1")


@pytest.mark.gpu
def test_stylegan_with_ada_records_on_a_gpu():
    """The GPU recipe's StyleGAN2 + ADA (stylegan2-emoji-gpu sets ada: true): every statistic on the
    GPU, so the first record reads them in one transfer."""
    tr = Trainer(cfg("train.device=cuda", "loss.options.ada=true", "loss.options.ada_interval=2", steps=4))
    for _ in range(4):
        tr.train_step()
    stats = tr.pop_stats()
    assert {"ada_p", "ada_rt", "d_loss"} <= set(stats) and all(v == v for v in stats.values())
