"""Super-resolution networks: SRResNet / RRDBNet generators, the SRGAN discriminator, network interpolation."""
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from gankit.nets.base import NETWORKS
from gankit.nets.sr import RRDBNet, SRGANDiscriminator, SRResNet, interpolate_state

TINY = {  # tiny settings per generator class: trunk width, blocks (and RRDB growth)
    SRResNet: dict(width=8, n_blocks=2),
    RRDBNet: dict(width=8, n_blocks=1, growth=4),
}
GENERATORS = list(TINY)


def _g(cls, scale, in_ch=3, out_ch=3, seed=0):
    torch.manual_seed(seed)
    return cls(in_ch, out_ch, scale, **TINY[cls])


def _d(seed=0, in_ch=3):
    torch.manual_seed(seed)
    return SRGANDiscriminator(in_ch, width=4, n_blocks=2)


def test_families_are_registered_with_their_classes():
    assert NETWORKS.get("srresnet").generator is SRResNet
    assert NETWORKS.get("rrdb").generator is RRDBNet
    assert NETWORKS.get("srresnet").discriminator is NETWORKS.get("rrdb").discriminator is SRGANDiscriminator


@pytest.mark.parametrize("cls", GENERATORS)
@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("hw", [(8, 8), (6, 10)])
def test_generator_output_shape(cls, scale, hw):
    g = _g(cls, scale, in_ch=3, out_ch=1)
    assert g.scale == scale
    y = g(torch.rand(2, 3, *hw) * 2 - 1)
    assert y.shape == (2, 1, hw[0] * scale, hw[1] * scale)
    assert torch.isfinite(y).all()


def test_scale_8_has_three_upsampling_stages():
    assert _g(SRResNet, 8)(torch.randn(1, 3, 3, 5)).shape == (1, 3, 24, 40)
    g = _g(RRDBNet, 8)
    assert len(g.up_convs) == 3 and g(torch.randn(1, 3, 2, 3)).shape == (1, 3, 16, 24)
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in _g(SRResNet, 8).modules()) == 3


@pytest.mark.parametrize("cls", GENERATORS)
@pytest.mark.parametrize("scale", [3, 0, 16, True, 2.0])
def test_bad_scale_is_one_line_value_error(cls, scale):
    with pytest.raises(ValueError, match=re.escape(f"{cls.__name__}: scale must be one of 1, 2, 4, 8")) as e:
        cls(3, 3, scale, **TINY[cls])
    assert "\n" not in str(e.value)


def test_output_is_linear_not_tanh():
    # The generators end in a plain conv (PSNR training, the task clamps when saving): scaling the
    # last conv's weights and bias by 50 must scale the output by 50, which a tanh would saturate.
    for cls in GENERATORS:
        g = _g(cls, 2).eval().double()  # float64: the comparison below is then exact to ~1e-12
        x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
        with torch.no_grad():
            y = g(x)
            g.tail.weight.mul_(50)
            g.tail.bias.mul_(50)
            y50 = g(x)
        torch.testing.assert_close(y50, 50 * y, rtol=1e-9, atol=1e-9)
        assert y50.abs().max() > 1


@pytest.mark.parametrize("cls", GENERATORS)
def test_generator_backward_gives_finite_grads_everywhere(cls):
    g = _g(cls, 2)
    g(torch.randn(2, 3, 8, 8)).square().mean().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name  # every parameter is on the path to the output


def test_discriminator_backward_gives_finite_grads_everywhere():
    d = _d()
    d(torch.randn(3, 3, 16, 16)).sum().backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("hw", [(16, 16), (12, 20), (1, 1)])
def test_discriminator_gives_one_logit_per_image_at_any_size(hw):
    d = _d()
    out = d(torch.randn(3, 3, *hw))
    assert out.shape == (3,)
    assert torch.isfinite(out).all()


def test_discriminator_is_the_papers_eight_convs_at_n_blocks_4():
    d = SRGANDiscriminator(3, width=2, n_blocks=4)
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    # k3n64s1, k3n64s2, k3n128s1, k3n128s2, k3n256s1, k3n256s2, k3n512s1, k3n512s2 at width 64
    assert [(c.out_channels, c.stride[0]) for c in convs] == [
        (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2), (16, 1), (16, 2)]
    assert all(c.kernel_size == (3, 3) for c in convs)
    bns = [m for m in d.features if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 7  # every conv but the first
    lin = [m for m in d.classifier if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(16, 32), (32, 1)]  # 512 -> 1024 -> 1 at width 64


def test_discriminator_refuses_cond_and_wrong_channels():
    d = _d()
    with pytest.raises(ValueError, match="cond must be None"):
        d(torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8))
    msg = "SRGANDiscriminator expects (B, 3, H, W) images, got shape (1, 4, 8, 8)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        d(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match=re.escape("RRDBNet expects (B, 3, H, W)")):
        _g(RRDBNet, 2)(torch.randn(1, 1, 8, 8))


MAKERS = {"SRResNet": lambda s: _g(SRResNet, 2, seed=s), "RRDBNet": lambda s: _g(RRDBNet, 4, seed=s),
          "SRGANDiscriminator": lambda s: _d(seed=s)}


@pytest.mark.parametrize("name", list(MAKERS))
def test_save_load_round_trip_gives_same_output(name, tmp_path):
    make = MAKERS[name]
    net = make(0)
    net(torch.randn(4, 3, 8, 8))  # one train-mode pass moves BN running statistics off their defaults
    path = tmp_path / "net.safetensors"
    save_file(net.state_dict(), str(path))
    other = make(1)  # different weights until loaded
    other.load_state_dict(load_file(str(path)))
    net.eval(), other.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(x), other(x))


@pytest.mark.parametrize("name", list(MAKERS))
def test_seed_determines_the_network(name):
    make = MAKERS[name]
    a, b, c = make(0).eval(), make(0).eval(), make(1).eval()
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert (a(x) - c(x)).abs().max() > 1e-4


def test_rrdb_dense_blocks_use_esrgan_small_init():
    # Dense-block conv weights ~ N(0, (0.1·sqrt(2 / fan_in))²), biases 0 (Wang et al. Sec. 3.1). Pooled
    # over the ~32k weights of this net, the normalised std has a standard error < 0.5 %; 3 % tolerance.
    torch.manual_seed(0)
    g = RRDBNet(3, 3, 1, width=16, n_blocks=1, growth=16)
    normalised = []
    for m in g.body.modules():
        if isinstance(m, torch.nn.Conv2d):
            fan_in = m.weight[0].numel()
            normalised.append(m.weight.detach().flatten() / (0.1 * (2 / fan_in) ** 0.5))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    assert len(normalised) == 15  # 3 dense blocks × 5 convs
    assert abs(torch.cat(normalised).std().item() - 1) < 0.03


def test_rrdb_residual_scaling_at_init():
    # A dense block returns x + 0.2·conv5(...); with the 0.1 init conv5's output has std ≈
    # 0.1·sqrt(2·16/80) ≈ 0.06 (only x's 16 of its 80 input channels are not tiny), so the block moves x
    # by ≈ 1.3 %, against ≈ 13 % without the small init. The RRDB then returns
    # x + 0.2·DB3(DB2(DB1(x))) ≈ 1.2·x; without the outer scaling it would give ≈ 2·x.
    torch.manual_seed(0)
    g = RRDBNet(3, 3, 1, width=16, n_blocks=1, growth=16)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        for block in g.body[0].blocks:
            assert 0.005 < (block(x) - x).norm() / x.norm() < 0.03
        assert (g.body(x) - 1.2 * x).norm() / x.norm() < 0.01


def _states(seed_p=0, seed_g=1):
    p = _g(SRResNet, 2, seed=seed_p)
    p(torch.randn(2, 3, 8, 8))  # num_batches_tracked = 1
    g = _g(SRResNet, 2, seed=seed_g)
    for _ in range(3):
        g(torch.randn(2, 3, 8, 8))  # num_batches_tracked = 3
    return p.state_dict(), g.state_dict()


def test_interpolate_state_endpoints_are_exact_and_middle_is_the_mean():
    ps, gs = _states()
    at0, at1, mid = (interpolate_state(ps, gs, a) for a in (0.0, 1.0, 0.5))
    assert set(at0) == set(at1) == set(mid) == set(ps)
    for k in ps:
        assert torch.equal(at1[k], gs[k]), k
        if ps[k].is_floating_point():
            assert torch.equal(at0[k], ps[k]), k
            # float32 rounding of one multiply-add: a few ulps
            torch.testing.assert_close(mid[k], (ps[k] + gs[k]) / 2, rtol=1e-6, atol=1e-7)
        else:  # BN num_batches_tracked comes from the GAN model at every alpha
            assert torch.equal(at0[k], gs[k]) and torch.equal(mid[k], gs[k]), k
    assert int(mid["body.0.body.1.num_batches_tracked"]) == 3
    assert not torch.equal(ps["head.0.weight"], gs["head.0.weight"])  # the check above compared different states


def test_interpolated_state_loads_into_the_network_and_leaves_inputs_alone():
    ps, gs = _states()
    before = {k: v.clone() for k, v in ps.items()}
    mid = interpolate_state(ps, gs, 0.3)
    mid["head.0.weight"].add_(1.0)  # new tensors: editing the result must not touch the inputs
    assert all(torch.equal(before[k], ps[k]) for k in ps)
    net = _g(SRResNet, 2)
    net.load_state_dict(mid)  # strict: same keys, shapes and dtypes
    torch.testing.assert_close(net.state_dict()["tail.weight"], 0.7 * ps["tail.weight"] + 0.3 * gs["tail.weight"])


def test_interpolate_state_refuses_mismatched_states():
    ps, gs = _states()
    missing = dict(gs)
    del missing["tail.bias"]
    with pytest.raises(ValueError, match=re.escape("key 'tail.bias' is only in psnr_state")):
        interpolate_state(ps, missing, 0.5)
    with pytest.raises(ValueError, match=re.escape("key 'tail.bias' is only in gan_state")):
        interpolate_state(missing, ps, 0.5)
    wider = _g(SRResNet, 2, out_ch=1).state_dict()
    with pytest.raises(ValueError, match=re.escape("'tail.weight' is torch.float32 (3, 8, 9, 9) in psnr_state but "
                                                   "torch.float32 (1, 8, 9, 9) in gan_state")):
        interpolate_state(ps, wider, 0.5)
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="alpha must be a number in"):
            interpolate_state(ps, gs, bad)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(cls=SRResNet, width=0), "SRResNet: width must be an integer >= 1, got 0"),
    (dict(cls=RRDBNet, n_blocks=1.5), "RRDBNet: n_blocks must be an integer >= 1, got 1.5"),
    (dict(cls=RRDBNet, res_scale=0), "RRDBNet: res_scale must be a number in (0, 1], got 0"),
])
def test_bad_settings_name_themselves(kwargs, msg):
    cls = kwargs.pop("cls")
    with pytest.raises(ValueError, match=re.escape(msg)):
        cls(3, 3, 2, **kwargs)
    with pytest.raises(ValueError, match=re.escape("SRGANDiscriminator: n_blocks must be an integer >= 1, got 0")):
        SRGANDiscriminator(3, n_blocks=0)


# Tiling a photo (gankit translate): the margin each tile drops is the network's receptive reach, measured
@pytest.mark.parametrize("cls,kw,reach", [
    # by hand: SRResNet's 9x9 head (4) + 2 convs per block (16) + trunk (1) + upsampling convs at x1, x2
    # (1 + 1/2) + the 9x9 tail at x4 (1) = 23.5 -> 24; RRDB: head 1 + 3 RRDBs x 3 dense blocks x 5 convs (45)
    # + trunk 1 + up convs 1 + 1/2 + hr conv and tail at x4 (1/4 + 1/4) = 49
    (SRResNet, dict(width=8, n_blocks=8), 24),          # the shipped depths (recipes), tiny width
    (RRDBNet, dict(width=8, n_blocks=3, growth=4), 49),
])
def test_tiles_give_the_one_pass_picture_for_the_shipped_networks(cls, kw, reach):
    from gankit.colour import to_uint8
    from gankit.restore import receptive_margin, tiled

    torch.manual_seed(0)
    g = cls(3, 3, 4, residual=False, **kw).eval()
    margin = receptive_margin(g, 3, 4)
    assert margin == reach
    x = torch.rand(1, 3, 2 * margin + 50, 2 * margin + 37) * 2 - 1
    with torch.no_grad():
        one = to_uint8(g(x))
        tiles = tiled(g, x, tile=2 * margin + 24, margin=margin, scale=4)   # 3 x 3 tiles
        short = tiled(g, x, tile=2 * margin + 24, margin=4, scale=4)
    assert tiles.dtype == torch.uint8 and tiles.shape == one.shape
    d = (tiles.int() - one.int()).abs()
    assert d.max() <= 1 and (d > 0).float().mean() < 1e-3   # the same bytes up to float rounding
    if cls is SRResNet:  # (RRDB's x0.1-initialised blocks barely reach a random one's output)
        assert (short.int() - one.int()).abs().max() > 1     # a margin short of the reach: seams show
