"""Paired translation metrics against closed forms and an independent implementation.

SSIM is checked against scikit-image's ``structural_similarity`` (skipped where scikit-image
is not installed; it is not a gankit dependency) and against the same protocol written with
scipy.ndimage, which always runs. Tolerance 1e-6 absolute: both sides compute in float64,
so they differ only in the order of the filter sums (observed: at most 1.5e-15). 1e-6 leaves
room for other builds of torch and scipy and still catches a change of protocol: on these
images another sigma, the data range 1 or a uniform window moves SSIM by >1e-2, and sample
instead of population covariance by 2e-6 (random) to 4e-4 (smooth).
"""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from gankit.metrics import paired
from gankit.metrics.paired import content_kept, paired_scores, psnr, ssim

SSIM_ATOL = 1e-6


def _pair(kind: str, c: int, h: int, w: int, seed: int = 0):
    """(x, y) in [-1, 1], (1, C, H, W) float64: y is x plus noise, clipped."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        x = rng.uniform(-1, 1, (c, h, w))
    else:  # smooth natural image: a crop of a bundled scikit-image photo
        data = pytest.importorskip("skimage.data")
        img = data.camera()[200:200 + h, 220:220 + w][None] if c == 1 else \
            data.astronaut()[100:100 + h, 180:180 + w].transpose(2, 0, 1)
        x = img.astype(np.float64) / 127.5 - 1
    y = np.clip(x + rng.normal(0, 0.2, x.shape), -1, 1)
    return torch.from_numpy(x[None]), torch.from_numpy(y[None])


def _ssim_scipy(x: np.ndarray, y: np.ndarray, data_range=2.0, sigma=1.5) -> float:
    """Wang et al.'s mean SSIM of (C, H, W) images written with scipy.ndimage: Gaussian filter
    over the whole image, 'reflect' borders, then the 5-px border cropped (scikit-image's steps)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for a, b in zip(x, y):
        f = lambda z: ndimage.gaussian_filter(z, sigma, truncate=3.5, mode="reflect")  # noqa: E731
        ux, uy = f(a), f(b)
        vx, vy, vxy = f(a * a) - ux ** 2, f(b * b) - uy ** 2, f(a * b) - ux * uy
        s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))


# --- PSNR ---------------------------------------------------------------------------------

def test_psnr_closed_form_constant_offset():
    x = torch.rand(3, 3, 16, 20, dtype=torch.float64) * 1.8 - 0.9  # stays inside [-1, 1] after the offsets
    offsets = torch.tensor([0.1, -0.05, 0.4], dtype=torch.float64).view(3, 1, 1, 1)
    got = psnr(x + offsets, x)
    expected = torch.tensor([10 * math.log10(4 / o ** 2) for o in (0.1, 0.05, 0.4)], dtype=torch.float64)
    assert got.dtype == torch.float64 and got.shape == (3,)
    assert got[0].item() == pytest.approx(26.020599913279625, abs=1e-9)
    assert torch.allclose(got, expected, rtol=0, atol=1e-9)
    # data_range scales the peak: [0, 1] images with the same offset
    assert psnr(x[:1] * 0 + 0.6, x[:1] * 0 + 0.5, data_range=1.0).item() == pytest.approx(20.0, abs=1e-9)


def test_psnr_protocol_averages_per_image_values():
    x = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    fake = x + torch.tensor([0.1, 0.2], dtype=torch.float64).view(2, 1, 1, 1)
    per_image = [10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.04)]
    s = paired_scores(fake, x)
    assert s["psnr"] == pytest.approx(np.mean(per_image), abs=1e-9)
    assert s["psnr_std"] == pytest.approx(np.std(per_image, ddof=1), abs=1e-9)
    psnr_of_mean_mse = 10 * math.log10(4 / 0.025)
    assert abs(s["psnr"] - psnr_of_mean_mse) > 0.5           # the two protocols really differ


def test_psnr_identical_images_is_inf_and_paired_scores_counts_it():
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64) * 2 - 1
    fake = x.clone()
    fake[1] += 0.1
    fake[3] -= 0.1
    p = psnr(x, x)
    assert torch.isinf(p).all() and (p > 0).all()
    s = paired_scores(fake, x)
    assert s["psnr_inf"] == 2
    assert s["psnr"] == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-9)   # over the two finite values
    assert s["psnr_std"] == pytest.approx(0.0, abs=1e-9)
    assert math.isfinite(s["ssim"]) and 0 < s["ssim"] < 1
    every = paired_scores(x, x)
    assert every["psnr"] == math.inf and every["psnr_inf"] == 4 and every["ssim"] == pytest.approx(1.0, abs=1e-12)


# --- SSIM ---------------------------------------------------------------------------------

SSIM_CASES = [(kind, c, h, w) for kind in ("random", "smooth") for c in (1, 3) for h, w in ((32, 32), (40, 56))]
SSIM_CASES += [("random", 1, 11, 11), ("random", 3, 11, 14)]   # the smallest images: one valid row/position


@pytest.mark.parametrize("kind,c,h,w", SSIM_CASES)
def test_ssim_matches_skimage(kind, c, h, w):
    metrics = pytest.importorskip("skimage.metrics")
    x, y = _pair(kind, c, h, w, seed=c * 100 + h + w)
    ref = metrics.structural_similarity(x[0].numpy(), y[0].numpy(), channel_axis=0, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False, data_range=2.0)
    got = ssim(x, y)
    assert got.shape == (1,) and got.dtype == torch.float64
    assert abs(got.item() - ref) <= SSIM_ATOL, (got.item(), ref)


@pytest.mark.parametrize("c,h,w", [(1, 32, 32), (3, 40, 56)])
def test_ssim_matches_scipy_reference_batched(c, h, w):
    pairs = [_pair("random", c, h, w, seed=s) for s in range(3)]
    x, y = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    got = ssim(x.float(), y.float())                         # float32 input, computed in float64
    ref = [_ssim_scipy(a.float().double().numpy(), b.float().double().numpy()) for a, b in zip(x, y)]
    assert np.abs(got.numpy() - np.asarray(ref)).max() <= SSIM_ATOL


def test_ssim_identity_symmetry_and_order():
    x, y = _pair("random", 3, 24, 30, seed=1)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, y).item() == pytest.approx(ssim(y, x).item(), abs=1e-14)
    noisier = torch.clamp(x + 0.6 * torch.randn_like(x, dtype=torch.float64), -1, 1)
    assert ssim(x, noisier).item() < ssim(x, y).item() < 1


def test_ssim_and_psnr_chunking_does_not_change_values(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 2, 16, 18, generator=g) * 2 - 1
    y = (x + 0.2 * torch.randn(5, 2, 16, 18, generator=g)).clamp(-1, 1)
    whole_s, whole_p = ssim(x, y), psnr(x, y)
    monkeypatch.setattr(paired, "CHUNK", 2)
    assert torch.allclose(ssim(x, y), whole_s, rtol=0, atol=1e-15)
    assert torch.allclose(psnr(x, y), whole_p, rtol=0, atol=1e-12)
    single = torch.cat([ssim(x[i:i + 1], y[i:i + 1]) for i in range(5)])
    assert torch.allclose(single, whole_s, rtol=0, atol=1e-15)


def test_ssim_rejects_images_smaller_than_the_window():
    x = torch.zeros(1, 1, 10, 32)
    with pytest.raises(ValueError, match="10x32.*11x11"):
        ssim(x, x)
    with pytest.raises(ValueError, match="odd"):
        ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), window=10)


# --- content kept, shapes -----------------------------------------------------------------

def test_content_kept_hand_made_logits():
    logits = torch.tensor([[2.0, 0.1, 0.0],    # class 0
                           [0.0, 3.0, 1.0],    # class 1
                           [0.5, 0.2, 0.9],    # class 2
                           [1.0, 0.0, -1.0]])  # class 0
    assert content_kept(logits, torch.tensor([0, 1, 2, 0])) == 1.0
    assert content_kept(logits, torch.tensor([0, 2, 2, 1])) == 0.5
    assert content_kept(logits, torch.tensor([1, 0, 0, 2])) == 0.0
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(3,\)"):
        content_kept(logits, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("fn", [psnr, ssim, paired_scores])
def test_mismatched_shapes_name_both(fn):
    with pytest.raises(ValueError, match=r"\(2, 3, 16, 16\) vs \(2, 1, 16, 16\)"):
        fn(torch.zeros(2, 3, 16, 16), torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="N, C, H, W"):
        fn(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="floating-point"):
        fn(torch.zeros(1, 1, 16, 16, dtype=torch.uint8), torch.zeros(1, 1, 16, 16, dtype=torch.uint8))
