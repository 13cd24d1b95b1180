"""StyleGAN / StyleGAN2 (gankit/nets/stylegan.py): modulated conv and equalized layers against plain
convolutions, the style interface (truncation, w_avg, style indices, noise modes), and both families'
shapes, gradients, save -> load, seeds, conditioning and size rules. Tiny widths throughout."""
import math

import pytest
import torch
import torch.nn.functional as F

from gankit.errors import ConfigError
from gankit.nets import NETWORKS, ImageSizeError
from gankit.nets.equalized import EqualizedConv2d, EqualizedLinear
from gankit.nets.stylegan import ModulatedConv2d, NoiseInput, style_grid

Z = 8
G_KW = {"width": 64, "max_width": 16, "w_dim": 16, "mapping_layers": 2}  # channels 16, 8, 4 at 4, 8, 16 px
D_KW = {"width": 64, "max_width": 16}
FAMILIES = ["stylegan", "stylegan2"]


def build(fam, shape=(3, 16, 16), nc=0, seed=0, g_kw=None, d_kw=None):
    torch.manual_seed(seed)
    return NETWORKS.get(fam).build(Z, shape, nc, dict(G_KW, **(g_kw or {})), dict(D_KW, **(d_kw or {})))


def set_noise_strength(g, value=0.5):
    """Noise strengths start at zero (the papers); give them a value so that noise shows in the output."""
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, NoiseInput):
                m.strength.fill_(value)


# -- ModulatedConv2d ---------------------------------------------------------------------------------

def test_modulated_conv_with_unit_styles_is_a_plain_conv():
    torch.manual_seed(0)
    mc = ModulatedConv2d(5, 4, 3, demodulate=False)
    x = torch.randn(3, 5, 6, 7)
    ref = F.conv2d(x, mc.weight * (1 / math.sqrt(5 * 9)), padding=1)
    torch.testing.assert_close(mc(x, torch.ones(3, 5)), ref, atol=1e-5, rtol=0)


def test_modulated_conv_applies_each_samples_own_styles():
    """The grouped conv must give sample b the weight w·s_b (and the ×2 upsampling before it when up)."""
    torch.manual_seed(1)
    for up in (False, True):
        mc = ModulatedConv2d(5, 4, 3, demodulate=False, up=up)
        x, s = torch.randn(3, 5, 6, 6), torch.randn(3, 5)
        out = mc(x, s)
        assert out.shape == (3, 4, 12 if up else 6, 12 if up else 6)
        for b in range(3):
            xb = F.interpolate(x[b:b + 1], scale_factor=2, mode="bilinear", align_corners=False) if up else x[b:b + 1]
            ref = F.conv2d(xb, mc.weight * mc.scale * s[b].view(1, 5, 1, 1), padding=1)
            torch.testing.assert_close(out[b:b + 1], ref, atol=1e-5, rtol=0)


def test_demodulated_weights_have_unit_norm_per_sample_and_output_channel():
    """Read each sample's effective kernel from the layer's response to a unit impulse on each input
    channel (a 3×3 map with a 1 in the centre gives the flipped kernel w''[o, i]); Σ over i and the kernel
    of w''² must be 1 (Eq. 3: demodulation divides by exactly that norm, up to ε = 1e-8)."""
    torch.manual_seed(2)
    c_in, c_out, b = 6, 4, 3
    mc = ModulatedConv2d(c_in, c_out, 3, demodulate=True)
    s = torch.randn(b, c_in) * torch.tensor([0.1, 1.0, 5.0]).view(b, 1)  # very different scales per sample
    energy = torch.zeros(b, c_out)
    for i in range(c_in):
        x = torch.zeros(b, c_in, 3, 3)
        x[:, i, 1, 1] = 1.0
        energy += mc(x, s).pow(2).sum(dim=(2, 3))  # (B, out): Σ_k w''[b, o, i, k]²
    torch.testing.assert_close(energy, torch.ones(b, c_out), atol=1e-5, rtol=0)
    # and without demodulation the norm follows the styles (the check above can fail)
    mc.demodulate = False
    assert not torch.allclose(mc(torch.ones(b, c_in, 3, 3), s), mc(torch.ones(b, c_in, 3, 3), s / 2))


# -- equalized learning rate -------------------------------------------------------------------------

def test_equalized_linear_is_linear_with_the_runtime_scale():
    torch.manual_seed(3)
    for gain, lr_mul in ((1.0, 1.0), (math.sqrt(2), 0.01)):
        layer = EqualizedLinear(256, 256, gain=gain, lr_mul=lr_mul, bias_init=0.5)
        x = torch.randn(4, 256)
        ref = F.linear(x, layer.weight * (gain * lr_mul / math.sqrt(256)), layer.bias * lr_mul)
        torch.testing.assert_close(layer(x), ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(layer.bias * lr_mul, torch.full((256,), 0.5))  # bias_init is the effective bias
        # stored weights N(0, 1/lr_mul²): 65,536 draws, the std's sampling error is ~0.3 %
        assert abs(layer.weight.std().item() * lr_mul - 1) < 0.1
        assert abs(layer.weight.mean().item() * lr_mul) < 0.02


def test_equalized_conv_is_a_conv_with_the_runtime_scale():
    torch.manual_seed(4)
    conv = EqualizedConv2d(8, 5, 3, gain=math.sqrt(2))
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 8, 6, 6)
    ref = F.conv2d(x, conv.weight * (math.sqrt(2) / math.sqrt(8 * 9)), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=0)
    big = EqualizedConv2d(256, 256, 1)
    assert abs(big.weight.std().item() - 1) < 0.1


def _plain_copy(net: torch.nn.Module) -> torch.nn.Sequential:
    """The same function with nn.Linear / nn.Conv2d holding the effective weights."""
    layers = []
    for m in net:
        if isinstance(m, EqualizedLinear):
            plain = torch.nn.Linear(m.weight.shape[1], m.weight.shape[0])
            plain.weight.data.copy_(m.weight * m.scale)
            plain.bias.data.copy_(m.bias * m.lr_mul)
        elif isinstance(m, EqualizedConv2d):
            o, i, k, _ = m.weight.shape
            plain = torch.nn.Conv2d(i, o, k, padding=m.padding)
            plain.weight.data.copy_(m.weight * m.scale)
            plain.bias.data.copy_(m.bias)
        else:
            plain = m
        layers.append(plain)
    return torch.nn.Sequential(*layers)


def test_weight_and_gradient_norms_read_the_effective_weights():
    """The health monitor's ‖∇G‖ / ‖G‖ must not depend on how a layer stores its weights: an
    equalized-LR network and the plain network computing the same function give the same norms
    (read from the stored tensors they were ~10⁻⁴ of each other: a false vanishing-gradient alarm)."""
    from types import SimpleNamespace

    from gankit.nets.equalized import runtime_scales
    from gankit.train.health.signals import weight_norms
    from gankit.train.loop import Trainer

    torch.manual_seed(5)
    eq = torch.nn.Sequential(EqualizedConv2d(3, 8, 3), torch.nn.Flatten(), EqualizedLinear(8 * 16, 4, lr_mul=0.01))
    plain = _plain_copy(eq)
    assert set(runtime_scales(eq)) == {id(eq[0].weight), id(eq[2].weight), id(eq[2].bias)}  # conv bias: ×1
    assert runtime_scales(plain) == {}
    x = torch.randn(5, 3, 4, 4)
    torch.testing.assert_close(eq(x), plain(x), atol=1e-5, rtol=0)
    w_eq, w_plain = weight_norms(eq, plain)
    assert w_eq == pytest.approx(w_plain, rel=1e-5)
    phase = SimpleNamespace(name="G", nets=["G"])
    grads = []
    for net in (eq, plain):
        net.zero_grad()
        net(x).pow(2).sum().backward()
        stats = Trainer.grad_norm_stats(SimpleNamespace(nets={"G": net}), phase)
        grads.append({k: v.item() for k, v in stats.items()})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 3   # all, layer 0, layer 2
    for k in grads[0]:
        assert grads[0][k] == pytest.approx(grads[1][k], rel=1e-4), k
    # the stored weights alone would have given a ratio ~1,000x smaller
    stored = math.sqrt(sum(p.detach().pow(2).sum().item() for p in eq.parameters()))
    assert stored > 10 * w_eq


# -- the style interface -----------------------------------------------------------------------------

@pytest.mark.parametrize("fam", FAMILIES)
def test_num_ws_and_ws_resolution(fam):
    for side, num_ws in ((8, 4), (16, 6), (32, 8), (64, 10)):
        g, _ = build(fam, (1, side, side))
        assert g.num_ws == num_ws == 2 * int(math.log2(side)) - 2
        assert len(g.affines()) == num_ws and len(g.ws_resolution) == num_ws
    g, _ = build(fam, (1, 32, 32))
    expected = {"stylegan": [4, 4, 8, 8, 16, 16, 32, 32],   # two AdaIN layers per resolution
                "stylegan2": [4, 8, 8, 16, 16, 32, 32, 32]}  # conv at 4; two convs per side; the last toRGB
    assert g.ws_resolution == expected[fam]
    # one constant noise map per noise input, of the side its style index acts on
    sides = [buf.shape[-1] for buf in g.synthesis.noise_buffers()]
    assert all(buf.shape[:2] == (1, 1) for buf in g.synthesis.noise_buffers())
    assert sides == (expected[fam] if fam == "stylegan" else expected[fam][:-1])  # stylegan2's toRGBs have none


@pytest.mark.parametrize("fam", FAMILIES)
def test_affines_read_their_own_style_index(fam):
    """affines()[i] must see ws[:, i] (the order SeFa and editing rely on); stylegan2's toRGB of a block
    reads the index after its last conv."""
    g, _ = build(fam)
    seen = {}
    hooks = [a.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, inp[0].clone()))
             for i, a in enumerate(g.affines())]
    if fam == "stylegan2":
        hooks += [t.affine.register_forward_hook(lambda m, inp, out, k=k: seen.__setitem__(("rgb", k), inp[0].clone()))
                  for k, t in enumerate(g.synthesis.to_rgbs)]
    ws = torch.arange(g.num_ws, dtype=torch.float32).view(1, -1, 1).expand(2, -1, g.w_dim).contiguous()
    g.synthesis(ws, noise_mode="none")
    for h in hooks:
        h.remove()
    for i in range(g.num_ws):
        assert torch.equal(seen[i], torch.full((2, g.w_dim), float(i))), i
    if fam == "stylegan2":
        for k in range(len(g.synthesis.to_rgbs)):
            assert torch.equal(seen[("rgb", k)], torch.full((2, g.w_dim), float(2 * k + 1))), k


@pytest.mark.parametrize("fam", FAMILIES)
def test_truncate(fam):
    g, _ = build(fam)
    torch.manual_seed(5)
    with torch.no_grad():
        g.w_avg.normal_()
    ws = torch.randn(3, g.num_ws, g.w_dim)
    assert torch.equal(g.truncate(ws, 1.0), ws) and torch.equal(g.truncate(ws, 1.0, cutoff=2), ws)
    torch.testing.assert_close(g.truncate(ws, 0.0), g.w_avg.expand_as(ws), atol=0, rtol=0)
    half = g.truncate(ws, 0.5, cutoff=2)
    torch.testing.assert_close(half[:, :2], g.w_avg + 0.5 * (ws[:, :2] - g.w_avg))
    assert torch.equal(half[:, 2:], ws[:, 2:])  # indices >= cutoff untouched
    w = ws[:, 0]
    torch.testing.assert_close(g.truncate(w, 0.7), g.w_avg + 0.7 * (w - g.w_avg))
    with pytest.raises(ValueError, match="cutoff"):
        g.truncate(w, 0.7, cutoff=1)


@pytest.mark.parametrize("fam", FAMILIES)
def test_a_conditional_generator_truncates_toward_each_class_mean(fam):
    from gankit.nets.stylegan import CLASS_MEAN_SAMPLES, CLASS_MEAN_SEED

    g, _ = build(fam, shape=(1, 16, 16), nc=4)
    set_noise_strength(g)
    g.eval()
    z = torch.randn(CLASS_MEAN_SAMPLES, Z, generator=torch.Generator().manual_seed(CLASS_MEAN_SEED))
    with torch.no_grad():
        means = torch.stack([g.mapping(z, torch.full((len(z),), c)).double().mean(0).float() for c in range(4)])
        y = torch.tensor([3, 1, 3])
        torch.testing.assert_close(g.class_w_avg(y), means[y], atol=1e-6, rtol=0)
        # ψ = 0 with --class c gives class c's average image: the same for every z, different per class
        x = g(torch.randn(3, Z), y, psi=0.0, noise_mode="const")
        ref = g.synthesis(means[y].unsqueeze(1).expand(-1, g.num_ws, -1), noise_mode="const")
        torch.testing.assert_close(x, ref, atol=1e-5, rtol=0)
        assert torch.equal(x[0], x[2]) and (x[0] - x[1]).abs().max() > 1e-3
        # deterministic, and recomputed when the mapping's weights change
        before = g.class_w_avg(y).clone()
        assert torch.equal(g.class_w_avg(y), before)
        next(g.mapping.parameters()).add_(0.5)
        assert not torch.allclose(g.class_w_avg(y), before)


@pytest.mark.parametrize("fam", FAMILIES)
def test_forward_is_mapping_broadcast_truncated_synthesis(fam):
    g, _ = build(fam)
    set_noise_strength(g)
    g.eval()
    torch.manual_seed(6)
    with torch.no_grad():
        g.w_avg.normal_()
    z = torch.randn(2, Z)
    with torch.no_grad():
        ws = g.mapping(z).unsqueeze(1).repeat(1, g.num_ws, 1)
        torch.testing.assert_close(g(z, psi=1.0, noise_mode="const"), g.synthesis(ws, noise_mode="const"),
                                   atol=0, rtol=0)
        ref = g.synthesis(g.truncate(ws, 0.6, cutoff=3), noise_mode="const")
        torch.testing.assert_close(g(z, psi=0.6, cutoff=3, noise_mode="const"), ref, atol=1e-6, rtol=0)
        assert not torch.allclose(ref, g.synthesis(ws, noise_mode="const"), atol=1e-3)


@pytest.mark.parametrize("fam", FAMILIES)
def test_w_avg_tracks_the_batch_mean_in_training_only(fam):
    g, _ = build(fam)
    z = torch.randn(4, Z)
    before = g.w_avg.clone()
    assert torch.equal(before, torch.zeros(g.w_dim))
    g.eval()
    with torch.no_grad():
        g(z)
        assert torch.equal(g.w_avg, before)
        g.train()
        g(z)
        mean_w = g.mapping(z).mean(0)
    # w_avg <- w_avg + (mean − w_avg)·(1 − 0.995), from 0
    torch.testing.assert_close(g.w_avg, 0.005 * mean_w, atol=1e-7, rtol=1e-5)
    assert g.w_avg.abs().max() > 0


@pytest.mark.parametrize("fam", FAMILIES)
def test_style_mixing_wiring(fam):
    g, _ = build(fam)
    g.eval()
    torch.manual_seed(7)
    a, b = torch.randn(2, g.w_dim), torch.randn(2, g.w_dim)
    ws = a.unsqueeze(1).repeat(1, g.num_ws, 1)
    with torch.no_grad():
        base = g.synthesis(ws, noise_mode="const")
        assert torch.equal(base, g.synthesis(ws.clone(), noise_mode="const"))
        for k in range(g.num_ws):  # every style index reaches the image, the last (finest) one included
            mixed = ws.clone()
            mixed[:, k:] = b.unsqueeze(1)
            assert (g.synthesis(mixed, noise_mode="const") - base).abs().max() > 1e-4, k


@pytest.mark.parametrize("fam", FAMILIES)
def test_noise_modes_and_buffers(fam):
    g, _ = build(fam)
    set_noise_strength(g)
    g.eval()
    ws = torch.randn(2, g.num_ws, g.w_dim)
    with torch.no_grad():
        const = g.synthesis(ws, noise_mode="const")
        assert torch.equal(const, g.synthesis(ws, noise_mode="const"))
        r1, r2 = g.synthesis(ws, noise_mode="random"), g.synthesis(ws, noise_mode="random")
        assert (r1 - r2).abs().max() > 1e-3
        none = g.synthesis(ws, noise_mode="none")
        assert torch.equal(none, g.synthesis(ws, noise_mode="none"))
        assert (none - const).abs().max() > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        g.synthesis(ws, noise_mode="fixed")
    with pytest.raises(ValueError, match="ws must be"):
        g.synthesis(ws[:, 1:])
    # the constant maps are persistent buffers: another seed's G given this state gives the same images
    keys = [k for k in g.state_dict() if k.endswith("noise_const")]
    assert len(keys) == len(g.synthesis.noise_buffers()) > 0
    other, _ = build(fam, seed=1)
    assert not torch.equal(other.synthesis.noise_buffers()[0], g.synthesis.noise_buffers()[0])
    other.load_state_dict(g.state_dict())
    other.eval()
    with torch.no_grad():
        assert torch.equal(other.synthesis(ws, noise_mode="const"), const)


# -- both families: the network contract -------------------------------------------------------------

@pytest.mark.parametrize("fam", FAMILIES)
@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32), (3, 16, 32)])
def test_shapes(fam, shape):
    g, d = build(fam, shape)
    x = g(torch.randn(4, Z))
    assert x.shape == (4, *shape)
    assert torch.isfinite(x).all()
    assert d(x).shape == (4,)


@pytest.mark.parametrize("fam", FAMILIES)
@pytest.mark.parametrize("nc", [0, 3])
def test_backward_reaches_every_parameter(fam, nc):
    g, d = build(fam, (3, 16, 16), nc=nc)
    set_noise_strength(g, 0.1)
    z, y = torch.randn(4, Z), (torch.tensor([0, 1, 2, 0]) if nc else None)
    d(g(z, y), y).square().mean().backward()
    for name, net in (("G", g), ("D", d)):
        for pname, p in net.named_parameters():
            assert p.grad is not None, f"{name}.{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}.{pname}"
            assert p.grad.abs().sum() > 0, f"{name}.{pname} has a zero gradient"


@pytest.mark.parametrize("fam", FAMILIES)
def test_save_load_same_output(fam, tmp_path):
    g, d = build(fam, (1, 16, 16), nc=3)
    set_noise_strength(g)
    torch.save({"g": g.state_dict(), "d": d.state_dict()}, tmp_path / "nets.pt")
    g2, d2 = build(fam, (1, 16, 16), nc=3, seed=1)
    state = torch.load(tmp_path / "nets.pt")
    g2.load_state_dict(state["g"])
    d2.load_state_dict(state["d"])
    for net in (g, d, g2, d2):
        net.eval()
    z, y = torch.randn(4, Z), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        x = g(z, y, noise_mode="const")
        assert torch.equal(g2(z, y, noise_mode="const"), x)
        assert torch.equal(d2(x, y), d(x, y))


@pytest.mark.parametrize("fam", FAMILIES)
def test_deterministic_under_a_seed(fam):
    outs = []
    for _ in range(2):
        g, d = build(fam, seed=3)
        set_noise_strength(g)
        torch.manual_seed(11)
        x = g(torch.randn(4, Z))  # training mode, random noise: drawn from the seeded stream
        outs.append((x, d(x)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    g3, _ = build(fam, seed=4)
    assert not torch.equal(g3.synthesis.const, g.synthesis.const)


@pytest.mark.parametrize("fam", FAMILIES)
def test_conditional_networks_depend_on_the_class(fam):
    g, d = build(fam, (3, 16, 16), nc=3)
    g.eval()
    z = torch.randn(2, Z).repeat(3, 1)
    y = torch.arange(3).repeat_interleave(2)
    with torch.no_grad():
        x = g(z, y, noise_mode="const").view(3, 2, 3, 16, 16)
        assert (x[0] - x[1]).abs().max() > 1e-3 and (x[1] - x[2]).abs().max() > 1e-3
        img = torch.randn(2, 3, 16, 16).repeat(3, 1, 1, 1)
        s = d(img, y).view(3, 2)
        assert (s[0] - s[1]).abs().max() > 1e-4 and (s[1] - s[2]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="conditional"):
        g(z)
    with pytest.raises(ValueError, match="conditional"):
        d(img)


@pytest.mark.parametrize("fam", FAMILIES)
@pytest.mark.parametrize("size", [28, 24, 4])
def test_unsupported_sizes_are_named(fam, size):
    family = NETWORKS.get(fam)
    for cls in (family.generator, family.discriminator):
        with pytest.raises(ImageSizeError, match=f"{size}x{size}"):
            cls.check_size(size, size)
    with pytest.raises(ImageSizeError, match=f"got {size}x{size}.*data.resolution=(8|16|32)"):
        family.generator(z_dim=Z, sample_shape=(3, size, size), num_classes=0, **G_KW)
    with pytest.raises(ConfigError, match=f"data.resolution={size}: the {fam} generator needs the shorter side 4·2ⁿ"):
        family.build(Z, (3, size, size), 0, G_KW, D_KW)


def test_style_grid_sizes():
    assert style_grid("g", 32, 32) == (4, 4, 3)
    assert style_grid("g", 16, 32) == (4, 8, 2)
    assert style_grid("g", 64, 8) == (32, 4, 1)
    with pytest.raises(ImageSizeError, match="32x36"):  # 36 is not a multiple of 2³
        style_grid("g", 32, 36)


@pytest.mark.parametrize("fam", FAMILIES)
def test_unknown_and_bad_kwargs_are_rejected(fam):
    family = NETWORKS.get(fam)
    with pytest.raises(ConfigError, match=f"model.g.style_dim for arch '{fam}'"):
        family.check_kwargs({"style_dim": 16}, {})
    with pytest.raises(ConfigError, match="model.d.w_dim"):
        family.check_kwargs({}, {"w_dim": 16})  # D has no w
    family.check_kwargs(G_KW, dict(D_KW, mbstd_group=2))
    with pytest.raises(ConfigError, match="mapping_layers must be an integer >= 1, got 0"):
        family.build(Z, (3, 16, 16), 0, dict(G_KW, mapping_layers=0), D_KW)


@pytest.mark.parametrize("demodulate,up", [(True, False), (False, False), (True, True)])
def test_modulating_activations_equals_the_grouped_conv_of_modulated_weights(demodulate, up):
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, demodulate=demodulate, up=up)
    x = torch.randn(3, 6, 8, 8, requires_grad=True)
    s = torch.rand(3, 6, requires_grad=True) + 0.5
    outs, grads = [], []
    for fused in (True, False):
        conv.fused = fused
        out = conv(x, s)
        outs.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), (x, s, conv.weight)))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
