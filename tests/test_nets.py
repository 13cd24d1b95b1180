"""Every network family: shapes, backward, save -> load -> same output, determinism under a seed."""
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from gankit.errors import ConfigError
from gankit.nets import NETWORKS

# (family, sample_shape, tiny kwargs for G, tiny kwargs for D)
CASES = {
    "mlp": [((2,), {"width": 16, "depth": 2}, {"width": 16, "depth": 2}),
            ((1, 28, 28), {"width": 16}, {"width": 16, "dropout": 0.3})],
    "dcgan": [((1, 28, 28), {"width": 8}, {"width": 8}),
              ((3, 32, 32), {"width": 8}, {"width": 8}),
              ((3, 64, 64), {"width": 4}, {"width": 4}),
              ((1, 16, 16), {"width": 8}, {"width": 8, "spectral": True, "minibatch_std": True}),
              ((1, 28, 28), {"width": 8, "extra_layers": 1}, {"width": 8, "extra_layers": 2})],
    "stylegan": [((1, 16, 16), {"w_dim": 8, "mapping_layers": 2, "width": 64, "max_width": 8},
                  {"width": 64, "max_width": 8})],
    "stylegan2": [((3, 16, 16), {"w_dim": 8, "mapping_layers": 2, "width": 64, "max_width": 8},
                   {"width": 64, "max_width": 8}),
                  ((1, 8, 16), {"w_dim": 8, "mapping_layers": 1, "width": 32, "max_width": 4},
                   {"width": 32, "max_width": 4})],
    "biggan": [((3, 32, 32), {"width": 8, "shared_dim": 4}, {"width": 8}),
               ((1, 8, 8), {"width": 8, "shared_dim": 4}, {"width": 8, "attention": None})],
    "resnet": [((3, 32, 32), {"width": 8}, {"width": 8}),
               ((1, 32, 32), {"width": 8, "attention": 16, "spectral": True},
                {"width": 8, "attention": 16, "minibatch_std": True})],
}
# Translation families: (family, in_channels, out_channels, (H, W), tiny G kwargs, tiny D kwargs, D sees
# the input too (pix2pix's conditional D)). Shapes and layers are tested in tests/test_nets_translation.py.
TRANSLATION = {
    "pix2pix": [(1, 3, (32, 32), {"width": 8, "depth": 5}, {"width": 8, "n_layers": 2}, True),
                (3, 3, (16, 24), {"width": 4, "depth": 3, "norm": "instance"}, {"width": 4, "n_layers": 1,
                                                                                  "norm": "none"}, True)],
    "cyclegan": [(1, 1, (32, 32), {"width": 8, "n_blocks": 2}, {"width": 8, "n_layers": 2, "norm": "instance"},
                  False)],
}
T_PARAMS = [(fam, *case) for fam, cases in TRANSLATION.items() for case in cases]
PARAMS = [(fam, *case, nc) for fam, cases in CASES.items() for case in cases for nc in (0, 3)]


# Families made for one objective, whose networks are tested with it (tests/test_anomaly.py,
# tests/test_ssgan.py): GANomaly's encoder-decoder-encoder G and the semi-supervised GAN's MLP D; ProGAN,
# whose networks hold every resolution's layers but use only the active ones (tests/test_progan.py runs
# these checks at each growth stage).
# Not yet covered here: the generic shape and class-conditioning cases below.
OWN = {"ganomaly", "ssgan", "progan"}
# Restoration families (layers tested in tests/test_nets_sr.py, tests/test_nets_pix2pixhd_inpaint.py): a
# generator whose output may be ×scale, critics returning a tensor, a list of scales or a dict of heads.
# (family, G's in/out channels, (H, W), G kwargs, D kwargs, D's cond channels or None)
RESTORATION = {
    "srresnet": (3, 3, (8, 12), {"width": 8, "n_blocks": 1, "scale": 4, "residual": True}, {"width": 8}, None),
    "rrdb": (1, 1, (8, 8), {"width": 8, "n_blocks": 1, "growth": 4, "scale": 2}, {"width": 8, "n_blocks": 2}, None),
    "pix2pixhd": (8, 3, (32, 32), {"width": 8, "n_downsample": 2, "n_blocks": 1, "n_blocks_local": 1},
                  {"width": 8, "n_layers": 2}, 8),
    "inpaint": (4, 3, (16, 24), {"width": 8, "dilations": (2, 4)}, {"width": 8, "n_layers": 3}, 1),
}


def test_every_registered_family_is_covered():
    shipped = {n for n, fam in NETWORKS.items() if fam.generator.__module__.startswith("gankit.")}  # not tests' own
    assert shipped == set(CASES) | set(TRANSLATION) | set(RESTORATION) | OWN
    assert not set(CASES) & set(TRANSLATION)


def build_translation(fam, c_in, c_out, gk, dk, cond, seed=0):
    torch.manual_seed(seed)
    family = NETWORKS.get(fam)
    return (family.role("G")(in_channels=c_in, out_channels=c_out, **gk),
            family.role("D")(in_channels=c_out + (c_in if cond else 0), **dk))


@pytest.mark.parametrize("fam,c_in,c_out,hw,gk,dk,cond", T_PARAMS)
def test_translation_save_load_same_output_and_deterministic(fam, c_in, c_out, hw, gk, dk, cond, tmp_path):
    G, D = build_translation(fam, c_in, c_out, gk, dk, cond, seed=0)
    G.eval(), D.eval()
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, tmp_path / "g.safetensors")
    save_file({k: v.contiguous() for k, v in D.state_dict().items()}, tmp_path / "d.safetensors")
    G2, D2 = build_translation(fam, c_in, c_out, gk, dk, cond, seed=1)
    x = torch.rand(2, c_in, *hw) * 2 - 1
    with torch.no_grad():
        assert not torch.equal(G(x), G2.eval()(x))       # another seed, other weights
    G2.load_state_dict(load_file(tmp_path / "g.safetensors"))
    D2.load_state_dict(load_file(tmp_path / "d.safetensors"))
    G2.eval(), D2.eval()
    with torch.no_grad():
        y = G(x)
        assert y.shape == (2, c_out, *hw) and torch.equal(y, G2(x))
        cond_x = x if cond else None
        assert torch.equal(D(y, cond_x), D2(y, cond_x))
    G3, _ = build_translation(fam, c_in, c_out, gk, dk, cond, seed=0)
    with torch.no_grad():
        assert torch.equal(G3.eval()(x), y)              # the same seed builds the same network


def flat(out):
    """A critic's output (tensor, list of scales (of lists of features), dict of heads) as one vector."""
    if isinstance(out, dict):
        return torch.cat([flat(out[k]) for k in sorted(out)])
    if isinstance(out, (list, tuple)):
        return torch.cat([flat(o) for o in out])
    return out.flatten()


def build_restoration(fam, c_in, c_out, gk, dk, cond, seed=0):
    torch.manual_seed(seed)
    family = NETWORKS.get(fam)
    return (family.role("G")(in_channels=c_in, out_channels=c_out, **gk),
            family.role("D")(in_channels=c_out + (cond or 0), **dk))


@pytest.mark.parametrize("fam", sorted(RESTORATION))
def test_restoration_save_load_same_output_backward_and_deterministic(fam, tmp_path):
    c_in, c_out, hw, gk, dk, cond = RESTORATION[fam]
    G, D = build_restoration(fam, c_in, c_out, gk, dk, cond, seed=0)
    x = torch.rand(2, c_in, *hw) * 2 - 1
    c = torch.rand(2, cond, *(s * gk.get("scale", 1) for s in hw)).round() if cond else None
    y = G(x)
    assert y.shape == (2, c_out, *(s * gk.get("scale", 1) for s in hw))
    flat(D(y, c)).square().mean().backward()
    for net in (G, D):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    G.eval(), D.eval()
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, tmp_path / "g.safetensors")
    save_file({k: v.contiguous() for k, v in D.state_dict().items()}, tmp_path / "d.safetensors")
    G2, D2 = build_restoration(fam, c_in, c_out, gk, dk, cond, seed=1)
    G2.load_state_dict(load_file(tmp_path / "g.safetensors"))
    D2.load_state_dict(load_file(tmp_path / "d.safetensors"))
    G2.eval(), D2.eval()
    with torch.no_grad():
        y = G(x)
        assert torch.equal(y, G2(x)) and torch.equal(flat(D(y, c)), flat(D2(y, c)))
        G3, _ = build_restoration(fam, c_in, c_out, gk, dk, cond, seed=0)
        assert torch.equal(G3.eval()(x), y)                      # the same seed builds the same network
        G4, _ = build_restoration(fam, c_in, c_out, {**gk, "residual": False} if "residual" in gk else gk, dk,
                                  cond, seed=1)
        assert not torch.equal(G4.eval()(x), y)                  # another seed, other weights


def build(fam, shape, gk, dk, nc, seed=0):
    torch.manual_seed(seed)
    return NETWORKS.get(fam).build(8, shape, nc, gk, dk)


@pytest.mark.parametrize("fam,shape,gk,dk,nc", PARAMS)
def test_shapes_and_backward(fam, shape, gk, dk, nc):
    G, D = build(fam, shape, gk, dk, nc)
    z = torch.randn(4, 8)
    y = torch.tensor([0, 1, 2, 0]) if nc else None
    x = G(z, y)
    assert x.shape == (4, *shape)
    if len(shape) == 3 and not getattr(G, "linear_output", False):
        assert x.min() >= -1 and x.max() <= 1  # tanh output in the data range (style generators: linear)
    out = D(x, y)
    assert out.shape == (4,)
    out.sum().backward()
    assert all(p.grad is not None for p in G.parameters() if p.requires_grad)


@pytest.mark.parametrize("fam,shape,gk,dk,nc", PARAMS)
def test_save_load_same_output(fam, shape, gk, dk, nc, tmp_path):
    G, D = build(fam, shape, gk, dk, nc, seed=0)
    G.eval(), D.eval()
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, tmp_path / "g.safetensors")
    save_file({k: v.contiguous() for k, v in D.state_dict().items()}, tmp_path / "d.safetensors")
    G2, D2 = build(fam, shape, gk, dk, nc, seed=1)
    G2.load_state_dict(load_file(tmp_path / "g.safetensors"))
    D2.load_state_dict(load_file(tmp_path / "d.safetensors"))
    G2.eval(), D2.eval()
    z = torch.randn(4, 8)
    y = torch.tensor([0, 1, 2, 0]) if nc else None
    with torch.no_grad():
        assert torch.equal(G(z, y), G2(z, y))
        x = G(z, y)
        assert torch.equal(D(x, y), D2(x, y))


@pytest.mark.parametrize("fam,shape,gk,dk,nc", PARAMS)
def test_deterministic_under_seed(fam, shape, gk, dk, nc):
    outs = []
    for _ in range(2):
        G, _ = build(fam, shape, gk, dk, nc, seed=123)
        torch.manual_seed(7)
        outs.append(G(torch.randn(3, 8), torch.tensor([0, 1, 2]) if nc else None))
    assert torch.equal(outs[0], outs[1])
    G, _ = build(fam, shape, gk, dk, nc, seed=124)
    torch.manual_seed(7)
    assert not torch.equal(outs[0], G(torch.randn(3, 8), torch.tensor([0, 1, 2]) if nc else None))


def test_dcgan_rejects_unsupported_resolution_and_unknown_kwargs():
    with pytest.raises(ConfigError, match="resolution"):
        NETWORKS.get("dcgan").build(8, (1, 30, 30), 0, {}, {})
    with pytest.raises(ConfigError, match="model.g.widht"):
        NETWORKS.get("dcgan").build(8, (1, 28, 28), 0, {"widht": 3}, {})
    with pytest.raises(ConfigError, match="extra_layers must be an integer >= 0, got -1"):
        NETWORKS.get("dcgan").build(8, (1, 28, 28), 0, {}, {"extra_layers": -1})


def test_dcgan_extra_layers_are_3x3_convs_at_the_lowest_resolution():
    G, D = build("dcgan", (1, 28, 28), {"width": 8, "extra_layers": 2}, {"width": 8, "extra_layers": 1}, 0)
    g_extra = [m for m in G.modules() if isinstance(m, torch.nn.Conv2d)]
    d_convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in g_extra] == [(16, 16, (3, 3), (1, 1))] * 2
    assert [(m.kernel_size, m.stride) for m in d_convs] == [((4, 4), (2, 2))] * 2 + [((3, 3), (1, 1))]
    assert d_convs[-1].in_channels == d_convs[-1].out_channels == 16  # at 7x7, after the last stride-2 conv
    shapes = []
    D.body[-3].register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    D(G(torch.randn(2, 8)))
    assert shapes == [(2, 16, 7, 7)]


def test_dcgan_init_is_normal_0_02():
    G, D = build("dcgan", (1, 32, 32), {"width": 32}, {"width": 32}, 0)
    w = G.net[0].weight
    assert abs(w.mean().item()) < 0.002 and abs(w.std().item() - 0.02) < 0.002


@pytest.mark.parametrize("kwargs,biases", [({}, [True, False, False, False]),
                                            ({"batchnorm": False}, [True, True, True, True]),
                                            ({"spectral": True}, [True, True, True, True])])
def test_dcgan_d_convs_keep_their_bias_unless_batchnorm_follows(kwargs, biases):
    """A conv followed by BatchNorm has no bias (BN's shift cancels it); with spectral norm in BN's place
    every conv keeps its bias, as Miyato et al.'s SN-CNN (Table 3) — it had lost the stride-2 ones."""
    from gankit.errors import CheckpointError
    from gankit.nets.dcgan import DCGANDiscriminator

    D = DCGANDiscriminator((1, 32, 32), 0, width=8, extra_layers=1, **kwargs)
    convs = [m for m in D.body if isinstance(m, torch.nn.Conv2d)]  # 3 stride-2 convs, 1 extra 3x3
    assert [m.bias is not None for m in convs] == biases
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in D.body) == (kwargs == {})
    if kwargs.get("spectral"):
        # weights written before (stride-2 convs without bias) are refused in one line, naming the key
        old = {k: v for k, v in D.state_dict().items() if k not in ("body.2.bias", "body.4.bias")}
        with pytest.raises(CheckpointError, match=r"^model\.d\.spectral: true: this dcgan D's weights have no "
                                                  r"bias in conv body\.2 \(written by a gankit that dropped"):
            DCGANDiscriminator((1, 32, 32), 0, width=8, extra_layers=1, spectral=True).load_state_dict(old)
        D.load_state_dict(D.state_dict())  # its own weights load


@pytest.mark.parametrize("spectral", [False, True])
def test_resnet_init_is_xavier_also_under_spectral_norm(spectral):
    """ResNet D's convs start Xavier-uniform (gain √2 for 3×3) whether or not spectral norm wraps them:
    under SN the stored ``original`` is what must be initialised (its scale sets the effective step of
    Adam), and the power iteration must have run on it (σ of the normalised weight ≈ 1)."""
    from torch.nn.utils import parametrize

    from gankit.nets.resnet import ResNetDiscriminator

    torch.manual_seed(0)
    D = ResNetDiscriminator((1, 32, 32), 0, width=64, spectral=spectral)
    conv = D.blocks[1].conv1   # 64 -> 64, 3x3: fan_in = fan_out = 576
    stored = conv.parametrizations.weight.original if spectral else conv.weight
    assert parametrize.is_parametrized(conv, "weight") == spectral
    expected = math.sqrt(2) * math.sqrt(2 / (576 + 576))   # 0.0589; PyTorch's default would be 0.024
    assert abs(stored.std().item() / expected - 1) < 0.03   # 36,864 draws: sampling error ~0.4 %
    if spectral:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), 2).item()
        assert abs(sigma - 1) < 0.05


# -- layers that exist for speed must compute exactly what the plain layers compute -------------
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_latent_conv_transpose_is_the_transposed_conv(bias, channels_last):
    from gankit.nets.layers import LatentConvTranspose2d

    torch.manual_seed(0)
    fast, plain = LatentConvTranspose2d(10, 6, 7, bias=bias), torch.nn.ConvTranspose2d(10, 6, 7, bias=bias)
    plain.load_state_dict(fast.state_dict())  # same parameters, same keys
    if channels_last:
        fast.to(memory_format=torch.channels_last)
    z = torch.randn(4, 10, 1, 1)
    out, ref = fast(z), plain(z)
    assert out.shape == (4, 6, 7, 7)
    assert torch.allclose(out, ref, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    out.square().sum().backward()
    ref.square().sum().backward()
    assert torch.allclose(fast.weight.grad, plain.weight.grad, atol=1e-5)
    # anything but a 1x1 input falls back to the transposed conv itself
    x = torch.randn(2, 10, 3, 3)
    assert torch.allclose(fast(x), plain(x), atol=1e-6)


def test_flatten_features_keeps_order_and_hands_back_the_inputs_layout():
    from gankit.nets.layers import flatten_features

    h = torch.randn(3, 4, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out = flatten_features(h)
    assert torch.equal(out, h.detach().flatten(1))  # C, H, W order, as a plain flatten
    w = torch.randn(out.shape[1])
    (out * w).sum().backward()
    assert torch.equal(h.grad, w.view(1, 4, 5, 5).expand(3, -1, -1, -1))
    assert h.grad.is_contiguous(memory_format=torch.channels_last) and not h.grad.is_contiguous()
