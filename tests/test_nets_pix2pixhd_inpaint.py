"""pix2pixHD's coarse-to-fine generator and multi-scale discriminator, its feature-matching loss, and the
inpainting family (gated-conv completion network, global + SN-PatchGAN local discriminator)."""
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from gankit.nets.inpaint import GatedConv2d, InpaintDiscriminator, InpaintGenerator
from gankit.nets.pix2pixhd import (MultiscaleDiscriminator, Pix2PixHDGenerator, downsample, feature_matching_loss,
                                   patch_size)
from gankit.nets.sizes import ImageSizeError

# Tiny networks: (name, G builder, D builder, channels of G's 3-channel input D gets as cond, (H, W));
# G maps 3 channels to 2, so D's in_channels is 2 + cond.
HD_G = dict(width=8, n_downsample=1, n_blocks=1, n_local=1, n_blocks_local=1)
HD_D = dict(width=4, n_layers=2, num_d=2)
NETS = [
    ("pix2pixhd", lambda: Pix2PixHDGenerator(3, 2, **HD_G), lambda: MultiscaleDiscriminator(5, **HD_D), 3, (16, 24)),
    ("pix2pixhd-global", lambda: Pix2PixHDGenerator(3, 2, width=4, n_downsample=2, n_blocks=1, n_local=0),
     lambda: MultiscaleDiscriminator(5, width=4, n_layers=1, num_d=1, norm="none"), 3, (16, 16)),
    ("inpaint", lambda: InpaintGenerator(3, 2, width=4), lambda: InpaintDiscriminator(3, width=4, n_layers=2), 1,
     (16, 24)),
    ("inpaint-plain", lambda: InpaintGenerator(3, 2, width=4, dilations=(2,), gated=False),
     lambda: InpaintDiscriminator(3, width=4, n_layers=2, spectral=False), 1, (16, 16)),
]
IDS = [n[0] for n in NETS]


def _outputs(d_out) -> list:
    """D's logits as a flat list of tensors (pix2pixHD: one per scale; inpaint: global, local)."""
    return list(d_out.values()) if isinstance(d_out, dict) else list(d_out)


def _run(g, d, x, cond_channels):
    y = g(x)
    return y, _outputs(d(y, x[:, :cond_channels]))  # cond: the label map / the first channel as a "mask"


def _build(make_g, make_d, seed):
    torch.manual_seed(seed)
    return make_g(), make_d()


@pytest.mark.parametrize("name,make_g,make_d,cond,hw", NETS, ids=IDS)
def test_shapes_range_and_finite_gradients_on_every_parameter(name, make_g, make_d, cond, hw):
    g, d = _build(make_g, make_d, 0)
    x = torch.rand(2, 3, *hw) * 2 - 1
    y, logits = _run(g, d, x, cond)
    assert y.shape == (2, 2, *hw) and y.abs().max() <= 1
    sum(s.square().mean() for s in logits).backward()
    for net in (g, d):
        for pname, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (name, pname)
        assert sum(p.grad.abs().sum() for p in net.parameters()) > 0


@pytest.mark.parametrize("name,make_g,make_d,cond,hw", NETS, ids=IDS)
def test_save_load_same_output_and_seed_determinism(name, make_g, make_d, cond, hw, tmp_path):
    g, d = _build(make_g, make_d, 0)
    x = torch.rand(2, 3, *hw) * 2 - 1
    _, logits = _run(g, d, x, cond)  # a train-mode pass: spectral norm's power iteration updates its u, v
    g.eval(), d.eval()
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, tmp_path / "g.safetensors")
    save_file({k: v.contiguous() for k, v in d.state_dict().items()}, tmp_path / "d.safetensors")
    g2, d2 = _build(make_g, make_d, 1)
    g2.eval(), d2.eval()
    with torch.no_grad():
        y, logits = _run(g, d, x, cond)
        y2, _ = _run(g2, d2, x, cond)
        assert not torch.equal(y, y2)  # another seed, other weights
        g2.load_state_dict(load_file(tmp_path / "g.safetensors"))
        d2.load_state_dict(load_file(tmp_path / "d.safetensors"))
        y2, logits2 = _run(g2, d2, x, cond)
        assert torch.equal(y, y2) and all(torch.equal(a, b) for a, b in zip(logits, logits2))
        g3, _ = _build(make_g, make_d, 0)
        assert torch.equal(g3.eval()(x), y)  # the same seed builds the same network


# -- pix2pixHD ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_local,n_down,hw", [(0, 2, (8, 16)), (1, 1, (16, 8)), (2, 1, (32, 16))])
def test_pix2pixhd_global_generator_runs_on_the_input_downsampled_n_local_times(n_local, n_down, hw):
    torch.manual_seed(0)
    g = Pix2PixHDGenerator(3, 1, width=8, n_downsample=n_down, n_blocks=1, n_local=n_local, n_blocks_local=1)
    seen = []
    g.global_features.register_forward_hook(lambda m, inp, out: seen.append((inp[0].shape, out.shape)))
    y = g(torch.randn(2, 3, *hw))
    assert y.shape == (2, 1, *hw)
    f = 2 ** n_local
    assert seen == [((2, 3, hw[0] // f, hw[1] // f), (2, 8, hw[0] // f, hw[1] // f))]
    assert len(g.local_front) == len(g.local_back) == n_local
    # local enhancer i has width // 2**i: its front's first conv (after the padding) has 8 // 2**i channels
    assert [front[1].out_channels for front in g.local_front] == [8 // 2 ** i for i in range(1, n_local + 1)]
    assert g.output[1].in_channels == 8 // f


def test_pix2pixhd_local_enhancer_adds_the_global_features():
    torch.manual_seed(0)
    g = Pix2PixHDGenerator(3, 3, width=8, n_downsample=1, n_blocks=1, n_local=1, n_blocks_local=1).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        y = g(x)
        # the global branch reaches the output: zeroing its weights changes it (InstanceNorm of an
        # all-zero map is zero, so the sum then holds the local front's features alone)
        zeroed = Pix2PixHDGenerator(3, 3, width=8, n_downsample=1, n_blocks=1, n_local=1, n_blocks_local=1).eval()
        zeroed.load_state_dict(g.state_dict())
        for p in zeroed.global_features.parameters():
            p.zero_()
        y0 = zeroed(x)
    assert (y - y0).abs().mean() > 1e-3
    # and it is a sum: with the local front cut to zero, the output is back[0](global features) + head
    front_out, glob = [], []
    g.local_front[0].register_forward_hook(lambda m, i, o: front_out.append(o))
    g.global_features.register_forward_hook(lambda m, i, o: glob.append(o))
    with torch.no_grad():
        g(x)
        assert front_out[0].shape == glob[0].shape == (1, 8, 8, 8)
        expected = g.output(g.local_back[0](front_out[0] + glob[0]))
        assert torch.allclose(y, expected, atol=1e-6)


def test_pix2pixhd_generator_refuses_sizes_and_widths_it_cannot_take():
    g = Pix2PixHDGenerator(1, 1, width=4, n_downsample=2, n_blocks=1, n_local=1)
    msg = "Pix2PixHDGenerator(n_downsample=2, n_local=1) needs H and W divisible by 2**3 and at least 16"
    for hw in [(20, 32), (16, 36), (8, 8)]:
        with pytest.raises(ImageSizeError, match=re.escape(f"{msg}, got {hw[0]}x{hw[1]}")):
            g(torch.zeros(1, 1, *hw))
    Pix2PixHDGenerator.check_size(16, 32, n_downsample=2, n_local=1)  # fine
    with pytest.raises(ImageSizeError, match=r"divisible by 2\*\*5"):
        Pix2PixHDGenerator.check_size(48, 48)  # the defaults: n_downsample=4, n_local=1
    with pytest.raises(ValueError, match="width must be divisible by 2\\*\\*n_local = 4"):
        Pix2PixHDGenerator(1, 1, width=6, n_local=2)
    with pytest.raises(ValueError, match=r"in_channels=1\) got 3 channels"):
        g(torch.zeros(1, 3, 16, 16))


def test_downsample_is_an_average_that_ignores_the_padding():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = downsample(x)
    # windows centred on rows/cols 0 and 2: the corner sees rows 0-1, cols 0-1 (mean of 0, 1, 4, 5 = 2.5,
    # not 10/9 as when the padding counts); the last one rows and cols 1-3 (mean of 5, ..., 15 = 10)
    assert torch.equal(y, torch.tensor([[[[2.5, 4.0], [8.5, 10.0]]]]))
    assert torch.equal(downsample(torch.ones(1, 2, 6, 6)), torch.ones(1, 2, 3, 3))


def test_multiscale_discriminator_scales_sizes_and_features():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(4, width=4, n_layers=2, num_d=3).eval()
    x, cond = torch.randn(2, 3, 32, 24), torch.randn(2, 1, 32, 24)
    with torch.no_grad():
        logits = d(x, cond)
        feats = d(x, cond, features=True)
    # sides 32, 16, 8 and 24, 12, 6; each of 2 stride-2 convs maps s -> s//2 + 1, each stride-1 conv s -> s+1:
    # 32 -> 17 -> 9 -> 10 -> 11, 24 -> 13 -> 7 -> 8 -> 9, 16 -> 7, 12 -> 6, 8 -> 5, 6 -> 5
    assert [tuple(s.shape) for s in logits] == [(2, 1, 11, 9), (2, 1, 7, 6), (2, 1, 5, 5)]
    assert [(patch_size(h, 2), patch_size(w, 2)) for h, w in [(32, 24), (16, 12), (8, 6)]] == [(11, 9), (7, 6), (5, 5)]
    assert len(feats) == 3
    for k in range(3):
        assert [f.shape[1] for f in feats[k]] == [4, 8, 16, 1]  # n_layers + 2 activations, logits last
        assert torch.equal(feats[k][-1], logits[k])
    # scale k sees the (cond, x) input average-pooled k times
    with torch.no_grad():
        h = downsample(downsample(torch.cat([cond, x], 1)))
        for group in d.scales[2]:
            h = group(h)
    assert torch.allclose(h, logits[2], atol=1e-6)
    with pytest.raises(ValueError, match=r"in_channels=4\) got 3 channels"):
        d(x)


def test_feature_matching_loss_is_zero_for_equal_features():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(3, width=4, n_layers=2, num_d=2)
    x = torch.randn(2, 3, 16, 16)
    real, same = d(x, features=True), d(x, features=True)
    assert feature_matching_loss(real, same).item() == 0.0
    assert feature_matching_loss(real, d(torch.randn(2, 3, 16, 16), features=True)).item() > 0


def test_feature_matching_loss_matches_a_hand_computed_value():
    z = torch.zeros(1, 2, 2, 2)
    real = [[z, z, z], [z, z, z]]
    fake_0 = (z + 1).requires_grad_()
    # scale 0: layers |1|, |3| (mean over elements), logits 100 ignored -> (1 + 3) / 2 = 2;
    # scale 1: layers |-2|, 0 -> (2 + 0) / 2 = 1; mean over the 2 scales: 1.5
    fake = [[fake_0, z + 3, z + 100], [z - 2, z, z - 100]]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(1.5, abs=1e-7)
    # elementwise: d loss / d fake_0 = 1/2 (scales) · 1/2 (layers) · 1/8 (elements) · sign(+1)
    real_0 = real[0][0].clone().requires_grad_()
    real[0][0] = real_0
    loss = feature_matching_loss(real, fake)
    loss.backward()
    assert torch.allclose(fake_0.grad, torch.full_like(z, 1 / 32))
    assert real_0.grad is None  # the real side is detached
    with pytest.raises(ValueError, match="same, non-zero number of scales, got 2 real and 1 fake"):
        feature_matching_loss(real, fake[:1])
    with pytest.raises(ValueError, match="scale 0 has 3 real and 2 fake"):
        feature_matching_loss(real, [fake[0][:2], fake[1]])


# -- inpaint ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("gated", [True, False])
def test_gated_conv_is_elu_features_times_sigmoid_gates(gated):
    torch.manual_seed(0)
    m = GatedConv2d(2, 3, kernel=3, stride=2, dilation=1, gated=gated)
    x = torch.randn(1, 2, 8, 6)
    conv = torch.nn.functional.conv2d(x, m.conv.weight, m.conv.bias, stride=2, padding=1)
    expected = (torch.nn.functional.elu(conv[:, :3]) * torch.sigmoid(conv[:, 3:]) if gated
                else torch.nn.functional.elu(conv))
    assert m.conv.out_channels == (6 if gated else 3)
    assert torch.allclose(m(x), expected, atol=1e-6) and m(x).shape == (1, 3, 4, 3)


@pytest.mark.parametrize("gated", [True, False])
def test_inpaint_generator_layers_and_input_dependence(gated):
    torch.manual_seed(0)
    g = InpaintGenerator(4, 3, width=8, gated=gated)
    convs = [m for m in g.modules() if isinstance(m, GatedConv2d)]
    assert len(convs) == 16 and all(m.gated == gated for m in convs)
    assert [m.conv.dilation[0] for m in convs] == [1] * 6 + [2, 4, 8, 16] + [1] * 6
    assert [m.conv.stride[0] for m in convs].count(2) == 2
    x1, x2 = torch.rand(2, 2, 4, 16, 32) * 2 - 1
    with torch.no_grad():
        y1, y2 = g(x1), g(x2)
    assert y1.shape == (2, 3, 16, 32) and y1.abs().max() <= 1
    # the init keeps the signal through 17 layers: outputs of two random inputs differ by ~0.4 on average
    # (PyTorch's default init gives ~1e-9 here); 0.05 leaves a wide margin
    assert (y1 - y2).abs().mean() > 0.05


def test_inpaint_generator_refuses_sizes_and_channels():
    g = InpaintGenerator(4, 3, width=4, dilations=(2,))
    for hw in [(18, 16), (16, 30), (2, 4)]:
        with pytest.raises(ImageSizeError, match=re.escape(f"InpaintGenerator needs H and W divisible by 4, "
                                                           f"got {hw[0]}x{hw[1]}")):
            g(torch.zeros(1, 4, *hw))
    with pytest.raises(ValueError, match=r"in_channels=4\) got 3 channels \(the masked image and the mask"):
        g(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="width must be even"):
        InpaintGenerator(4, 3, width=5)


@pytest.mark.parametrize("spectral", [True, False])
def test_inpaint_discriminator_outputs_and_spectral_norm(spectral):
    torch.manual_seed(0)
    d = InpaintDiscriminator(4, width=4, n_layers=3, spectral=spectral)
    out = d(torch.randn(2, 3, 32, 16), torch.ones(2, 1, 32, 16))
    assert set(out) == {"global", "local"}
    assert out["global"].shape == (2,) and out["local"].shape == (2, 1, 4, 2)  # 3 stride-2 convs: /8
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 3 + 1 + 3 + 1  # global convs + Linear, local convs + logit conv
    assert all(torch.nn.utils.parametrize.is_parametrized(m, "weight") == spectral for m in layers)
    # widths w, 2w, 4w (then 4w) on both branches, which share no weights
    assert [m.out_channels for m in d.global_features if isinstance(m, torch.nn.Conv2d)] == [4, 8, 16]
    assert not set(map(id, d.global_features.parameters())) & set(map(id, d.local.parameters()))
    with pytest.raises(ValueError, match=r"in_channels=4\) got 3 channels"):
        d(torch.randn(2, 3, 32, 16))
    if spectral:  # the largest singular value of a conv's (out, in·k·k) matrix is ~1 after SN, whatever
        d.eval()      # the raw weight's scale (15 power iterations at construction; measured 1.0015)
        with torch.no_grad():
            d.local[0].parametrizations.weight.original.mul_(10)  # 0.63 -> 6.3 without SN
            sigma = torch.linalg.matrix_norm(d.local[0].weight.flatten(1), ord=2)
        assert abs(sigma - 1) < 0.05


def test_patch_weights_are_the_hole_fraction_under_each_logit():
    pw = InpaintDiscriminator.patch_weights
    assert torch.equal(pw(torch.ones(2, 1, 32, 16), (4, 2)), torch.ones(2, 1, 4, 2))
    assert torch.equal(pw(torch.zeros(2, 1, 32, 16), (4, 2)), torch.zeros(2, 1, 4, 2))
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., :, :8] = True            # the left half is hole
    mask[..., 8:10, 8:12] = True       # and 8 pixels of the 64 of the bottom-right 8x8 block
    assert torch.equal(pw(mask, 2), torch.tensor([[[[1.0, 0.0], [1.0, 8 / 64]]]]))
    d = InpaintDiscriminator(4, width=4, n_layers=3)
    local = d(torch.randn(1, 3, 16, 16), mask.float())["local"]
    assert pw(mask, local.shape[-2:]).shape == local.shape
