"""Image-to-image translation networks: pix2pix's U-Net and PatchGAN, CycleGAN's ResNet generator."""
import re

import pytest
import torch

from gankit.nets.cyclegan import ResnetBlock, ResnetGenerator
from gankit.nets.pix2pix import PatchDiscriminator, UNetGenerator, receptive_field


def _nonzero_span(mask: torch.Tensor) -> tuple[int, int, bool]:
    """(first index, length, contiguous) of the True entries of a 1-D mask."""
    idx = mask.nonzero().flatten()
    first, last = int(idx[0]), int(idx[-1])
    return first, last - first + 1, len(idx) == last - first + 1


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("hw,depth", [((32, 32), 3), ((32, 64), 5), ((16, 48), 4)])
def test_unet_shapes_and_range(hw, depth, norm):
    torch.manual_seed(0)
    g = UNetGenerator(3, 2, width=8, depth=depth, norm=norm)
    y = g(torch.randn(2, 3, *hw) * 3)
    assert y.shape == (2, 2, *hw)
    assert y.min() >= -1 and y.max() <= 1


def test_unet_default_depth_is_the_256px_network():
    g = UNetGenerator(3, 3, width=2).eval()
    assert g.depth == 8 and len(g.down) == 8
    widths = [m.out_channels for d in g.down for m in d if isinstance(m, torch.nn.Conv2d)]
    assert widths == [2, 4, 8, 16, 16, 16, 16, 16]  # C64-C128-C256-C512×5 at width 64
    with torch.no_grad():
        assert g(torch.randn(1, 3, 256, 256)).shape == (1, 3, 256, 256)
    with pytest.raises(ValueError, match=re.escape("needs H and W divisible by 2**8, got 128x128")):
        g(torch.randn(1, 3, 128, 128))


BAD_SIZES = [  # (generator, input H x W, the message it must give)
    *[(lambda: UNetGenerator(3, 3, width=4, depth=3), hw, "UNetGenerator(depth=3) needs H and W divisible by 2**3")
      for hw in [(20, 20), (32, 20), (12, 32)]],
    *[(lambda: ResnetGenerator(3, 3, width=4, n_blocks=1), hw,
       "ResnetGenerator(n_down=2) needs H and W divisible by 2**2 and at least 8") for hw in [(18, 18), (16, 18), (4, 4)]],
]


@pytest.mark.parametrize("make,hw,msg", BAD_SIZES)
def test_generators_refuse_sizes_they_cannot_take(make, hw, msg):
    with pytest.raises(ValueError, match=re.escape(f"{msg}, got {hw[0]}x{hw[1]}")):
        make()(torch.randn(1, 3, *hw))


def test_unet_skip_connections_carry_the_input_past_a_cut_bottleneck():
    # With the innermost features zeroed, only the skips connect input to output: without them
    # the output would be constant and this gradient zero.
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, width=8, depth=4).eval()
    g.down[-1].register_forward_hook(lambda m, inp, out: out * 0)
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    g(x)[0, :, 16, 16].sum().backward()
    assert x.grad[0, :, 16, 16].abs().sum() > 0
    # and they are spatially aligned: a depth-4 cut U-Net's output pixel sees only a local window
    rows = x.grad[0].abs().sum((0, 2)) > 0
    first, span, _ = _nonzero_span(rows)
    assert first <= 16 < first + span and span < 32


def test_unet_dropout_is_the_noise_source_in_train_mode_only():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    g = UNetGenerator(3, 3, width=8, depth=5)
    assert sum(isinstance(m, torch.nn.Dropout) for m in g.modules()) == 3
    assert not torch.equal(g(x), g(x))
    g.eval()
    assert torch.equal(g(x), g(x))
    g0 = UNetGenerator(3, 3, width=8, depth=5, dropout=0.0)  # train mode, no dropout: deterministic
    assert torch.equal(g0(x), g0(x))


def test_receptive_field_values():
    assert receptive_field(3) == 70
    assert receptive_field(1) == 16
    assert receptive_field(2) == 34
    for bad in (0, -1):
        with pytest.raises(ValueError, match="n_layers >= 1"):
            receptive_field(bad)
    with pytest.raises(ValueError, match="n_layers >= 1"):
        PatchDiscriminator(3, n_layers=0)


@pytest.mark.parametrize("n_layers,size", [(1, 32), (2, 64), (3, 128)])
def test_receptive_field_matches_the_gradient_support(n_layers, size):
    torch.manual_seed(0)
    d = PatchDiscriminator(3, width=4, n_layers=n_layers).double().eval()  # eval: BN does not mix pixels
    x = torch.randn(1, 3, size, size, dtype=torch.double, requires_grad=True)
    out = d(x)
    i = out.shape[2] // 2
    out[0, 0, i, i].backward()
    support = x.grad[0].abs().sum(0) > 0  # (H, W)
    for mask in (support.any(1), support.any(0)):
        first, span, contiguous = _nonzero_span(mask)
        assert contiguous and span == receptive_field(n_layers)
        assert 0 < first and first + span < size  # not clipped by the border
    assert support.sum() == receptive_field(n_layers) ** 2


@pytest.mark.parametrize("hw,out_hw", [((64, 64), (6, 6)), ((64, 96), (6, 10))])
def test_patch_discriminator_shapes(hw, out_hw):
    d = PatchDiscriminator(3, width=4)
    assert d(torch.randn(2, 3, *hw)).shape == (2, 1, *out_hw)
    dc = PatchDiscriminator(3 + 2, width=4, norm="instance", spectral_norm=True)
    assert dc(torch.randn(2, 3, *hw), cond=torch.randn(2, 2, *hw)).shape == (2, 1, *out_hw)
    with pytest.raises(ValueError, match=r"in_channels=5\) got 3 channels"):
        dc(torch.randn(2, 3, *hw))


def test_patch_discriminator_too_small_raises():
    with pytest.raises(ValueError, match=re.escape("PatchDiscriminator(n_layers=3) needs H and W >= 24, got 16x32")):
        PatchDiscriminator(3, width=4)(torch.randn(1, 3, 16, 32))


@pytest.mark.parametrize("hw,n_down", [((32, 32), 2), ((16, 48), 2), ((12, 20), 0), ((32, 16), 3)])
def test_resnet_generator_shapes_and_range(hw, n_down):
    torch.manual_seed(0)
    g = ResnetGenerator(3, 1, width=8, n_blocks=2, n_down=n_down)
    y = g(torch.randn(2, 3, *hw) * 3)
    assert y.shape == (2, 1, *hw)
    assert y.min() >= -1 and y.max() <= 1


def test_resnet_block_is_residual():
    blk = ResnetBlock(4, "none", 0.0)
    torch.nn.init.zeros_(blk.body[-1].weight), torch.nn.init.zeros_(blk.body[-1].bias)  # zero branch: identity
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(blk(x), x)


def test_resnet_generator_dropout():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    g = ResnetGenerator(3, 3, width=8, n_blocks=2, dropout=0.5)
    assert not torch.equal(g(x), g(x))
    g.eval()
    assert torch.equal(g(x), g(x))


NETS = {
    "unet-batch": lambda: UNetGenerator(3, 3, width=8, depth=3),
    "unet-instance": lambda: UNetGenerator(3, 3, width=8, depth=3, norm="instance"),
    "unet-none": lambda: UNetGenerator(3, 3, width=8, depth=3, norm="none"),
    "resnet-instance": lambda: ResnetGenerator(3, 3, width=8, n_blocks=2),
    "resnet-batch": lambda: ResnetGenerator(3, 3, width=8, n_blocks=2, norm="batch", dropout=0.5),
    "patch": lambda: PatchDiscriminator(3, width=8, n_layers=2),
    "patch-sn": lambda: PatchDiscriminator(3, width=8, n_layers=2, norm="none", spectral_norm=True),
}


@pytest.mark.parametrize("name", NETS)
def test_every_parameter_gets_a_finite_nonzero_gradient(name):
    torch.manual_seed(0)
    net = NETS[name]()
    out = net(torch.randn(2, 3, 32, 32))
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NETS)
def test_channels_last_same_output(name):
    torch.manual_seed(0)
    net = NETS[name]().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
        net = net.to(memory_format=torch.channels_last)
        out = net(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_init_normal():
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, width=64, depth=4)
    convs = [m for m in g.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    w = torch.cat([m.weight.flatten() for m in convs])
    assert abs(w.mean()) < 1e-3 and abs(w.std() - 0.02) < 1e-3
    assert all(m.bias is None or not m.bias.any() for m in convs)
    bn = torch.cat([m.weight for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(bn.mean() - 1) < 5e-3 and abs(bn.std() - 0.02) < 5e-3


@pytest.mark.parametrize("make", [lambda: UNetGenerator(3, 3, norm="layer"),
                                  lambda: ResnetGenerator(3, 3, norm="group"),
                                  lambda: PatchDiscriminator(3, norm="spectral"),
                                  lambda: UNetGenerator(3, 3, depth=0),
                                  lambda: UNetGenerator(3, 3, dropout=1.0),
                                  lambda: ResnetGenerator(3, 3, n_down=-1)])
def test_bad_arguments_raise(make):
    with pytest.raises(ValueError):
        make()
