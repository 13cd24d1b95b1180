"""BigGAN (Brock et al. 2019): orthogonal regularisation, conditional BatchNorm, hierarchical z, spectral
norm and orthogonal init, EMA with standing statistics, truncation, and the shared network checks."""
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.latent import resample_outside
from gankit.nets import NETWORKS
from gankit.nets.biggan import BigGANGenerator, ConditionalBatchNorm2d
from gankit.objectives.biggan import ortho_loss, orthogonal_penalty, ortho_weights

torch.set_num_threads(1)

FAMILY = NETWORKS.get("biggan")
TINY = {"width": 8, "shared_dim": 4}
TINY_D = {"width": 8}
QUIET = ["health.enabled=false", "train.precision=fp32", "train.minutes=null", "train.log_every=1"]


def build(shape, nc, seed=0, z_dim=12, gk=None, dk=None):
    torch.manual_seed(seed)
    return FAMILY.build(z_dim, shape, nc, {**TINY, **(gk or {})}, {**TINY_D, **(dk or {})})


# -- orthogonal regularisation (Eq. 3) ---------------------------------------------------------------

def test_orthogonal_penalty_matches_a_hand_computation():
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # rows r1, r2, r3: 3 outputs of 2 inputs
    # ‖W Wᵀ ⊙ (1 − I)‖²_F = 2 · Σ_{i<j} (r_i · r_j)² = 2 · (11² + 17² + 39²) = 2 · 1931
    assert orthogonal_penalty([w]).item() == pytest.approx(3862.0, rel=1e-6)
    # a conv weight (out, in, k, k) is its (out, in·k·k) matrix; several weights add up
    assert orthogonal_penalty([w.view(3, 1, 1, 2)]).item() == pytest.approx(3862.0, rel=1e-6)
    assert orthogonal_penalty([w, w.view(3, 2, 1, 1)]).item() == pytest.approx(2 * 3862.0, rel=1e-6)


def test_ortho_loss_gradient_is_the_reference_codes_at_the_same_beta():
    # BigGAN-PyTorch's ortho(model, strength) adds strength · 2 (W Wᵀ ⊙ (1 − I)) W to each weight's gradient
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3, requires_grad=True)
    (g,) = torch.autograd.grad(ortho_loss([w], 1e-4), w)
    m = w.detach().reshape(6, -1)
    want = 1e-4 * 2 * ((m @ m.t()) * (1 - torch.eye(6))) @ m
    torch.testing.assert_close(g.reshape(6, -1), want, rtol=1e-5, atol=1e-9)


def test_orthogonal_penalty_is_zero_for_orthogonal_rows_of_any_norm():
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(0)))
    # fp32 round-off: off-diagonal dot products ~1e-7, so their 20 squares sum to ~1e-13
    assert orthogonal_penalty([q]).item() < 1e-10
    # only the off-diagonal counts: scaling rows (norms free) keeps it 0, mixing them does not
    assert orthogonal_penalty([torch.diag(torch.tensor([2.0, 3.0, 0.5])) @ q[:3]]).item() < 1e-10
    assert orthogonal_penalty([q + 0.1]).item() > 1e-3


def test_ortho_weights_take_the_stored_weights_and_leave_out_the_shared_embedding():
    G, _ = build((1, 16, 16), 3)
    ws = ortho_weights(G)
    ids = {id(p) for p in ws}
    assert id(G.shared.weight) not in ids
    sn_originals = [m.parametrizations.weight.original for m in G.modules()
                    if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert {id(p) for p in sn_originals} == ids and all(p.ndim >= 2 for p in ws)


def tiny_cfg(extra=()):
    return load_config("biggan-fashion-mnist", ["data.name=digits", "data.resolution=16", "model.z_dim=12",
                                                 "model.g.width=8", "model.g.shared_dim=4", "model.d.width=8",
                                                 "train.batch_size=8", "train.steps=3", *QUIET, *extra])


def test_the_g_phase_adds_half_beta_times_the_penalty_gradient():
    from gankit.objectives import OBJECTIVES, DataInfo

    info = DataInfo("image", (1, 16, 16), 10)
    grads, stats = {}, {}
    for beta in (0.0, 0.01):
        cfg = tiny_cfg([f"loss.options.ortho_weight={beta}"])
        cls = OBJECTIVES.get("biggan")
        torch.manual_seed(0)
        nets = cls.build_networks(cfg, info)  # the same weights for both values of β
        obj = cls(nets, cfg, info)
        torch.manual_seed(5)                  # the same z and labels
        stats[beta] = obj.accumulate_gradients("G", None, 8)
        ws = ortho_weights(nets["G"])
        grads[beta] = [p.grad.clone() for p in ws]
    expected = torch.autograd.grad(orthogonal_penalty(ws), ws)
    for g0, g1, e in zip(grads[0.0], grads[0.01], expected):
        assert torch.allclose(g1 - g0, 0.5 * 0.01 * e, atol=1e-6, rtol=1e-4)  # β/2: the reference code's strength
    assert "ortho" not in stats[0.0] and stats[0.01]["ortho"].item() > 0


def test_bad_options_and_settings_fail_with_one_line_naming_the_key():
    with pytest.raises(ConfigError, match="loss.options.ortho_weight"):
        tiny_cfg(["loss.options.ortho_weight=-1"])
    with pytest.raises(ConfigError, match="g.attention"):
        build((1, 16, 16), 0, gk={"attention": 12})


# -- conditional BatchNorm ---------------------------------------------------------------------------

def test_conditional_batchnorm_is_one_plus_gain_times_normalised_plus_bias():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(3, 5)
    nn.utils.parametrizations.spectral_norm(cbn.gain)
    nn.utils.parametrizations.spectral_norm(cbn.bias)
    cbn.train()
    cbn.gain.eval(), cbn.bias.eval()  # no power iteration: the weights read below are those used
    x, c = torch.randn(4, 3, 2, 2) * 3 + 1, torch.randn(4, 5)
    out = cbn(x, c)
    ch = 1
    xc = x[:, ch]
    x_hat = (xc - xc.mean()) / torch.sqrt(xc.var(unbiased=False) + 1e-5)  # batch statistics of channel 1
    gain = c @ cbn.gain.weight[ch]                                          # (B,)
    bias = c @ cbn.bias.weight[ch]
    want = (1 + gain)[:, None, None] * x_hat + bias[:, None, None]
    assert torch.allclose(out[:, ch], want, atol=1e-5)
    assert not torch.allclose(out[:, ch], x_hat, atol=1e-2)  # the gain and bias did something


def test_two_classes_differ_and_each_block_reads_the_shared_embedding_and_its_chunk():
    G, _ = build((1, 16, 16), 3)
    G.eval()
    z = torch.randn(2, 12)
    seen = []
    G.blocks[1].bn2.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    with torch.no_grad():
        a = G(z, torch.tensor([0, 0]))
        b = G(z, torch.tensor([1, 1]))
    assert (a - b).abs().max() > 1e-4
    # block 1 reads [embed(y), z's third chunk] (chunks of 12 / 3 = 4; the first feeds the linear layer)
    want = torch.cat([G.shared(torch.tensor([0, 0])), z[:, 8:12]], 1)
    assert torch.equal(seen[0], want)


def test_unconditional_cbn_reads_the_z_chunk_alone():
    G, _ = build((3, 16, 16), 0)
    assert G.shared is None and G.blocks[0].bn1.gain.in_features == 4
    assert torch.isfinite(G(torch.randn(4, 12))).all()


# -- hierarchical z -----------------------------------------------------------------------------------

def test_every_chunk_changes_the_output_and_the_chunks_sum_to_z_dim():
    G, _ = build((1, 32, 32), 3, z_dim=16)
    G.eval()
    assert G.chunks == [4, 4, 4, 4] and sum(G.chunks) == 16  # 3 blocks at 32×32: 4 chunks
    z, y = torch.randn(2, 16), torch.tensor([0, 2])
    with torch.no_grad():
        base = G(z, y)
        for k in range(4):
            z2 = z.clone()
            z2[:, 4 * k:4 * (k + 1)] += 1.0
            assert (G(z2, y) - base).abs().max() > 1e-4, k


def test_z_dim_that_does_not_split_fails_with_one_line():
    with pytest.raises(ValueError, match=r"model.z_dim=10 must split into 3 equal chunks.*e.g. 9 or 12"):
        BigGANGenerator(10, (1, 16, 16), 0, width=8)
    with pytest.raises(ConfigError, match="model.z_dim=10"):
        build((1, 16, 16), 0, z_dim=10)


# -- spectral norm and orthogonal init ---------------------------------------------------------------

def test_spectral_norm_on_every_conv_and_linear_and_orthogonal_init():
    G, D = build((3, 32, 32), 3)
    layers = [m for net in (G, D) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) >= 20  # G: linear, 3 blocks × (3 convs + 4 CBN linears), attention, out conv; D too
    for m in layers:
        assert parametrize.is_parametrized(m, "weight")
        assert type(m.parametrizations.weight[0]).__name__ == "_SpectralNorm"
    assert parametrize.is_parametrized(D.head.embed, "weight")       # D's projection embedding too
    assert not parametrize.is_parametrized(G.shared, "weight")      # G's shared table stays plain
    # orthogonal init of the stored weights: a conv's rows (out ≤ in·k·k) are orthonormal
    w = G.blocks[0].conv1.parametrizations.weight.original.reshape(8, -1)
    assert torch.allclose(w @ w.t(), torch.eye(8), atol=1e-5)
    assert orthogonal_penalty([w]).item() < 1e-9


# -- the shared network checks (tests/test_nets.py's, for this family) --------------------------------

SHAPES = [((1, 16, 16), 0), ((3, 16, 16), 3), ((1, 32, 32), 3), ((3, 28, 28), 0)]


@pytest.mark.parametrize("shape,nc", SHAPES)
def test_shapes_and_finite_gradients(shape, nc):
    z_dim = 12 if shape[1] != 32 else 16
    G, D = build(shape, nc, z_dim=z_dim)
    y = torch.tensor([0, 1, 2, 0]) if nc else None
    x = G(torch.randn(4, z_dim), y)
    assert x.shape == (4, *shape) and x.min() >= -1 and x.max() <= 1
    out = D(x, y)
    assert out.shape == (4,)
    out.sum().backward()
    for net in (G, D):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("shape,nc", SHAPES[:2])
def test_save_load_same_output_and_deterministic_under_seed(shape, nc, tmp_path):
    G, D = build(shape, nc, seed=0)
    G.eval(), D.eval()
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, tmp_path / "g.safetensors")
    save_file({k: v.contiguous() for k, v in D.state_dict().items()}, tmp_path / "d.safetensors")
    G2, D2 = build(shape, nc, seed=1)
    G2.eval(), D2.eval()
    z, y = torch.randn(4, 12), (torch.tensor([0, 1, 2, 0]) if nc else None)
    with torch.no_grad():
        assert not torch.equal(G(z, y), G2(z, y))  # another seed, other weights
        G2.load_state_dict(load_file(tmp_path / "g.safetensors"))
        D2.load_state_dict(load_file(tmp_path / "d.safetensors"))
        x = G(z, y)
        assert torch.equal(x, G2(z, y)) and torch.equal(D(x, y), D2(x, y))
        G3, _ = build(shape, nc, seed=0)
        assert torch.equal(G3.eval()(z, y), x)  # the same seed builds the same network


# -- EMA with standing statistics, through training and loading ----------------------------------------

def test_ema_with_standing_statistics_trains_saves_and_samples(tmp_path):
    from gankit.api import load
    from gankit.train.run import train

    train(tiny_cfg(["train.ema=0.9", "train.ema_start=0", "train.d_steps=2"]), out=tmp_path / "r", quiet=True)
    ema, raw = load(tmp_path / "r"), load(tmp_path / "r", ema=False)
    x, y = ema.sample(6, seed=0)
    assert x.shape == (6, 1, 16, 16) and torch.isfinite(x).all() and y.tolist() == [0, 1, 2, 3, 4, 5]
    # the averaged copy's BatchNorm statistics were re-estimated for its own weights, not copied from G
    bn_ema, bn_raw = ema.G.blocks[1].bn1.bn, raw.G.blocks[1].bn1.bn
    assert not torch.allclose(bn_ema.running_mean, bn_raw.running_mean, atol=1e-4)
    assert not torch.allclose(bn_ema.running_var, bn_raw.running_var, atol=1e-4)
    assert not torch.equal(ema.G.linear.parametrizations.weight.original,
                           raw.G.linear.parametrizations.weight.original)


# -- truncation (gankit.latent.resample_outside, BigGAN §3.1) -------------------------------------

def test_truncation_resamples_only_components_outside_the_threshold():
    g = torch.Generator().manual_seed(3)
    plain = torch.randn(8, 16, generator=g)
    assert torch.equal(resample_outside(plain, float("inf"), g), plain)
    t = resample_outside(plain, 0.5, g)
    assert t.abs().max() <= 0.5
    inside = plain.abs() <= 0.5
    assert inside.any() and torch.equal(t[inside], plain[inside])  # components already inside are kept


def test_recipes_load():
    cpu = load_config("biggan-fashion-mnist")
    gpu = load_config("biggan-fashion-mnist-gpu")
    assert cpu.model.arch == gpu.model.arch == "biggan" and cpu.loss.objective == "biggan"
    assert gpu.model.g["width"] == gpu.model.d["width"] == 256 and gpu.train.d_steps == 4
