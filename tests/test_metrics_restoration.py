"""Colour conversions (gankit/colour.py), restoration metrics (gankit/metrics/restoration.py) and the
rotation-pretext domain net of unlabelled image data (gankit/metrics/domain_net.py)."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gankit.colour import from_lab_model, lab_to_rgb, rgb_to_grey, rgb_to_lab, to_lab_model
from gankit.metrics.domain_net import DomainNet
from gankit.metrics.paired import ssim
from gankit.metrics.restoration import (colourfulness, hole_psnr, hole_ssim, mean_std, perceptual_distance,
                                        psnr_y, rgb_to_y, ssim_map, ssim_y)

skc = pytest.importorskip("skimage.color")
skm = pytest.importorskip("skimage.metrics")

# float32 Lab vs scikit-image's float64: a* = 500 (f(X) - f(Y)) with f ~ 1 amplifies float32's
# spacing near 1 (1.2e-7) by 500, about 6e-5 at worst (measured 6.3e-5 over 200k random pixels).
LAB_TOL = 1e-4


def _hwc(x):
    """(B, C, H, W) tensor -> (B, H, W, C) float64 numpy, what scikit-image takes."""
    return x.double().permute(0, 2, 3, 1).numpy()


def _corners():
    """The 8 corners of the RGB cube as a (1, 3, 2, 4) image in [0, 1]."""
    c = torch.tensor([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)], dtype=torch.float32)
    return c.T.reshape(1, 3, 2, 4)


# --- colour -----------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["random", "corners"])
def test_lab_matches_skimage_and_round_trips(which):
    torch.manual_seed(0)
    rgb = torch.rand(2, 3, 8, 8) if which == "random" else _corners()
    lab = rgb_to_lab(rgb)
    assert lab.dtype == torch.float32 and lab.shape == rgb.shape
    ref = skc.rgb2lab(_hwc(rgb))
    np.testing.assert_allclose(_hwc(lab), ref, atol=LAB_TOL, rtol=0)
    # lab2rgb on scikit-image's own Lab, and our round trip back to the start
    back = lab_to_rgb(torch.from_numpy(ref).permute(0, 3, 1, 2).float())
    np.testing.assert_allclose(_hwc(back), skc.lab2rgb(ref), atol=LAB_TOL, rtol=0)
    np.testing.assert_allclose(_hwc(lab_to_rgb(lab)), _hwc(rgb), atol=LAB_TOL, rtol=0)


def test_lab_to_rgb_clamps_out_of_gamut_like_skimage():
    lab = torch.tensor([[50.0, 120.0, -120.0], [95.0, -100.0, 100.0], [10.0, 0.0, 90.0]]).T.reshape(1, 3, 1, 3)
    ours = lab_to_rgb(lab)
    assert ours.min() >= 0 and ours.max() <= 1
    with warnings.catch_warnings():          # scikit-image warns about the clipped negative Z
        warnings.simplefilter("ignore", UserWarning)
        ref = skc.lab2rgb(_hwc(lab))
    np.testing.assert_allclose(_hwc(ours), ref, atol=LAB_TOL, rtol=0)


def test_lab_gradients_finite_at_black_and_white():
    rgb = torch.zeros(1, 3, 2, 2)
    rgb[0, :, 1, 1] = 1.0                    # one white pixel among black ones
    rgb[0, 0, 0, 1] = 0.02                   # and one on the linear segment of the companding
    rgb.requires_grad_(True)
    rgb_to_lab(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()
    lab = rgb_to_lab(rgb.detach()).requires_grad_(True)
    lab_to_rgb(lab).sum().backward()
    assert torch.isfinite(lab.grad).all()
    x = (torch.zeros(1, 3, 2, 2) - 1).requires_grad_(True)    # model-range black
    lab_m = to_lab_model(x)
    from_lab_model(lab_m[:, :1], lab_m[:, 1:]).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_lab_model_scale_and_round_trip():
    torch.manual_seed(1)
    x = torch.rand(2, 3, 5, 5) * 2 - 1
    lab_m = to_lab_model(x)
    lab = rgb_to_lab((x + 1) / 2)
    torch.testing.assert_close(lab_m[:, 0], lab[:, 0] / 50 - 1)
    torch.testing.assert_close(lab_m[:, 1:], lab[:, 1:] / 110)
    assert lab_m[:, 1:].abs().max() < 1.0    # the 110 scale keeps sRGB's a, b inside tanh's range
    torch.testing.assert_close(from_lab_model(lab_m[:, :1], lab_m[:, 1:]), x, atol=2 * LAB_TOL, rtol=0)
    # the cube's corners: the most saturated colours' a, b stay inside (-1, 1) too (sRGB's extremes
    # are blue's b* ≈ -107.9 and magenta's a* ≈ 98.2); L of black and white is -1 and 1
    corners = to_lab_model(_corners() * 2 - 1)
    assert corners[:, 1:].abs().max() < 1.0
    assert corners[:, 0].min() == pytest.approx(-1.0, abs=1e-6) and corners[:, 0].max() == pytest.approx(1.0, abs=1e-4)


def test_rgb_to_grey_bt601():
    x = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)  # pure red
    assert rgb_to_grey(x).shape == (1, 1, 1, 1)
    assert rgb_to_grey(x).item() == pytest.approx(0.299 * 1 + 0.701 * -1, abs=1e-6)
    assert rgb_to_grey(torch.full((1, 3, 2, 2), 0.3)).sub(0.3).abs().max() < 1e-6   # grey stays grey
    g = torch.rand(1, 1, 2, 2)
    assert rgb_to_grey(g) is g


# --- Y-channel PSNR / SSIM --------------------------------------------------------------------

def _pair(n=3, c=3, h=24, w=20, seed=0, noise=0.2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g) * 2 - 1
    return x, (x + noise * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def test_rgb_to_y_matches_skimage():
    x, _ = _pair()
    ref = skc.rgb2ycbcr(_hwc((x + 1) / 2))[..., 0]
    y = rgb_to_y(x)
    assert y.dtype == torch.float64 and y.shape == (3, 1, 24, 20)
    np.testing.assert_allclose(y[:, 0].numpy(), ref, atol=1e-9, rtol=0)
    grey = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    np.testing.assert_allclose(rgb_to_y(grey).flatten().numpy(), [0.0, 127.5, 255.0])


@pytest.mark.parametrize("crop,channels", [(0, 3), (2, 3), (4, 1)])
def test_psnr_ssim_y_match_skimage(crop, channels):
    x, y = _pair(c=channels)
    p, s = psnr_y(x, y, crop), ssim_y(x, y, crop)
    assert p.shape == s.shape == (3,) and p.dtype == s.dtype == torch.float64
    for i in range(3):
        if channels == 3:
            a, b = (skc.rgb2ycbcr(_hwc((t[i:i + 1] + 1) / 2))[0, ..., 0] for t in (x, y))
        else:
            a, b = ((t[i, 0].double().numpy() + 1) / 2 * 255 for t in (x, y))
        if crop:
            a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
        assert abs(p[i].item() - skm.peak_signal_noise_ratio(a, b, data_range=255)) < 1e-6
        ref = skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=255)
        assert abs(s[i].item() - ref) < 1e-6


def test_crop_too_large_is_refused():
    x, y = _pair(h=12, w=12)
    with pytest.raises(ValueError, match="crop"):
        psnr_y(x, y, crop=6)


# --- hole PSNR / SSIM -------------------------------------------------------------------------

def test_hole_psnr_counts_only_hole_pixels():
    x = torch.zeros(3, 3, 4, 4)
    y = x.clone()
    mask = torch.zeros(3, 1, 4, 4)
    mask[:, :, 1:3, 1:3] = 1                  # a 2x2 hole in each image
    y[0, :, 1:3, 1:3] = 0.5                   # image 0: the hole is off by 0.5 everywhere
    y[0, :, 0, 0] = 1.0                       # ... and a known pixel is wrong: must not count
    y[1, 0, 1, 1] = 1.0                       # image 1: one channel of one hole pixel off by 1
    mask[2] = 0                               # image 2: empty hole
    v = hole_psnr(y, x, mask)
    assert v[0].item() == pytest.approx(10 * math.log10(4 / 0.25), abs=1e-12)
    assert v[1].item() == pytest.approx(10 * math.log10(4 / (1 / 12)), abs=1e-12)   # 1 of 4 px x 3 ch
    assert math.isnan(v[2].item())
    assert hole_psnr(x, x, mask)[0].item() == math.inf


def test_ssim_map_valid_region_equals_paired_ssim():
    x, y = _pair(h=20, w=18)
    m = ssim_map(x, y)
    assert m.shape == x.shape
    torch.testing.assert_close(m[..., 5:-5, 5:-5].mean((1, 2, 3)), ssim(x, y), atol=1e-12, rtol=0)


def test_hole_ssim():
    x, y = _pair(n=2, h=16, w=16, noise=0.0)
    y = y.clone()
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 4:12, 4:12] = 1
    y[0, :, 4:12, 4:12] = 0.0                 # hole filled with flat grey: clearly worse than 1
    full = ssim_map(y, x).mean(1)[0]
    v = hole_ssim(y, x, mask)
    assert v[0].item() == pytest.approx(full[4:12, 4:12].mean().item(), abs=1e-12)
    assert v[0].item() < 0.5
    assert math.isnan(v[1].item())            # image 1 has no hole
    assert hole_ssim(x, x, mask)[0].item() == pytest.approx(1.0, abs=1e-12)


# --- colourfulness ----------------------------------------------------------------------------

def test_colourfulness_hand_computed_and_grey():
    # 2x2 pixels (0-255): red, red, black, white -> rg = [255, 255, 0, 0], yb = [127.5, 127.5, 0, 0]:
    # mean rg 127.5, sd rg 127.5 (population), mean yb 63.75, sd yb 63.75, so
    # M = sqrt(127.5² + 63.75²) + 0.3 sqrt(127.5² + 63.75²) = 1.3 · 63.75 · sqrt(5) ≈ 185.31
    img = torch.tensor([[[1.0, 1.0], [-1.0, 1.0]],        # R
                        [[-1.0, -1.0], [-1.0, 1.0]],      # G
                        [[-1.0, -1.0], [-1.0, 1.0]]])     # B
    grey3 = torch.rand(1, 1, 2, 2).expand(1, 3, 2, 2) * 2 - 1
    v = colourfulness(torch.cat([img[None], grey3]))
    assert v.dtype == torch.float64
    assert v[0].item() == pytest.approx(1.3 * 63.75 * math.sqrt(5), abs=1e-9)
    assert v[1].item() == pytest.approx(0.0, abs=1e-9)
    assert colourfulness(torch.rand(2, 1, 4, 4)).abs().max() == 0


# --- perceptual distance ----------------------------------------------------------------------

def _blur(x, sigma):
    r = int(3 * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _smooth_image(size=16):
    t = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    disc = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.08).float()
    r = torch.sin(6 * xx) * 0.5 + disc * 0.4
    g = torch.cos(5 * yy) * 0.5 - disc * 0.3
    b = torch.sin(4 * (xx + yy)) * 0.5
    return torch.stack([r, g, b])[None].clamp(-1, 1)


def test_perceptual_distance():
    torch.manual_seed(0)
    net = DomainNet(3, 16, 10, width=8)
    x = _smooth_image()
    light, heavy = _blur(x, 0.7), _blur(x, 2.0)
    d = perceptual_distance(torch.cat([x, x, x]), torch.cat([x, light, heavy]), net)
    assert d.shape == (3,) and d.dtype == torch.float64
    assert d[0].item() == 0.0
    assert 0 < d[1].item() < d[2].item()
    torch.testing.assert_close(perceptual_distance(heavy, x, net), d[2:], atol=1e-12, rtol=0)   # symmetric
    assert net.training                       # the net's mode is restored
    # other channels and sizes are fitted to the net: a 1-channel 32x32 image
    grey = F.interpolate(x.mean(1, keepdim=True), size=32, mode="bilinear")
    assert perceptual_distance(grey, grey, net).item() == 0.0
    assert perceptual_distance(grey, _blur(grey, 2.0), net).item() > 0


def test_mean_std_ignores_nan():
    m, s = mean_std(torch.tensor([1.0, float("nan"), 3.0]))
    assert (m, s) == (2.0, pytest.approx(math.sqrt(2)))
    assert mean_std(torch.tensor([5.0])) == (5.0, 0.0)
    assert all(math.isnan(v) for v in mean_std(torch.tensor([float("nan")])))


# --- rotation pretext for unlabelled images ---------------------------------------------------

def test_domain_net_unlabelled_folder_trains_rotation(tmp_path, monkeypatch):
    from PIL import Image

    from gankit.config import DataConfig
    from gankit.metrics.cache import load_tensors
    from gankit.metrics.domain_net import DomainFeatures, train_domain_net

    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):   # a bright top half, a dark bottom half, noise: an obvious "up"
        a = rng.integers(0, 60, (16, 16, 3))
        a[:8] += 150 + rng.integers(0, 40)
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(root / f"{i:02d}.png")
    path = train_domain_net(DataConfig(name="folder", root=str(root)), epochs=8, limit=16)
    assert path.parent.parent == tmp_path / "cache"
    _, meta = load_tensors(path)
    assert meta["pretext"] == "rotation"
    assert meta["arch"]["num_classes"] == 4 and meta["n_train"] == 16 and meta["n_test"] == 40
    assert meta["test_accuracy"] > 0.5        # chance is 0.25
    feats = DomainFeatures.for_dataset(DataConfig(name="folder", root=str(root)), train_if_missing=False)
    out = feats(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert out.features.shape == (2, 128) and out.logits is None   # rotation logits are not class logits
    # A large folder: the rotation task learns from, and is scored on, a seeded subset of at most
    # ROTATION_MAX_IMAGES (10,000) images, so a first evaluation does not take tens of CPU minutes.
    import gankit.metrics.domain_net as domain_net
    monkeypatch.setattr(domain_net, "ROTATION_MAX_IMAGES", 12)
    _, meta = load_tensors(train_domain_net(DataConfig(name="folder", root=str(root)), epochs=1))
    assert meta["n_train"] == 12 and meta["n_test"] == 12


def test_domain_net_unlabelled_non_square_is_refused(tmp_path):
    from gankit.data.base import Dataset
    from gankit.errors import GankitError
    from gankit.metrics.domain_net import fit_domain_net

    # no registered unlabelled dataset has non-square native images, so stand one in
    wide = Dataset(name="folder", x=torch.zeros(4, 3, 8, 12, dtype=torch.uint8), y=None, kind="image",
                   num_classes=0, info={})
    with pytest.raises(GankitError, match="not square"):
        fit_domain_net(wide, wide, "folder", "domain-folder-test", tmp_path / "net.safetensors")
    assert not (tmp_path / "net.safetensors").exists()
