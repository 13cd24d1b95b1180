"""Metric values against independent computations on the same features (no feature network)."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from gankit.metrics import fid, fid_from_stats, inception_score, kid, mode_stats, prdc
from gankit.metrics.card import card_id, differences, format_table


def _features(n, d, seed, shift=0.0, scale=1.0):
    mix = np.random.default_rng(1000 + d).standard_normal((d, d)) / np.sqrt(d)  # correlated, well conditioned
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) @ (np.eye(d) + 0.5 * mix)) * scale + shift


def _fid_scipy(a, b):
    """FID as pytorch-fid computes it: scipy.linalg.sqrtm of the product, real part kept."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.3, 1.2), (2.0, 0.5)])
def test_fid_matches_scipy_sqrtm(shift, scale):
    a, b = _features(800, 48, 0), _features(700, 48, 1, shift, scale)
    ours, ref = fid(a, b), _fid_scipy(a, b)
    assert ref > 0.1
    assert abs(ours - ref) / ref <= 1e-6


def test_fid_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    v1, v2 = rng.uniform(0.1, 3, 10), rng.uniform(0.1, 3, 10)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert fid_from_stats(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)


def test_fid_of_a_set_with_itself_is_zero():
    a = _features(500, 64, 3)
    assert abs(fid(a, a)) < 1e-8
    # a singular covariance (fewer samples than dimensions) still gives a finite, real value
    s = _features(20, 64, 4)
    assert abs(fid(s, s)) < 1e-8 and math.isfinite(fid(s, _features(20, 64, 5)))


def _mmd2_reference(x, y):
    """Unbiased MMD² written out term by term (Gretton et al. 2012, eq. 3) with k = (x·y/d + 1)³."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.sum() / (m * n))


def test_kid_matches_direct_computation():
    a, b = _features(300, 32, 0), _features(300, 32, 1, 0.2)
    mean, std = kid(a, b, num_subsets=3, subset_size=300)  # one subset holds both sets whole
    ref = _mmd2_reference(a, b)
    assert ref > 0
    assert abs(mean - ref) / ref <= 1e-6
    assert std is None  # every draw would be the same two sets: no spread to report
    mean, std = kid(a, b, num_subsets=50, subset_size=299)  # subsets one short of the sets: a real spread
    assert abs(mean - ref) / ref < 0.05 and 0 < std < 0.2 * ref


def test_kid_subsets_same_distribution_near_zero_and_seeded():
    a, b = _features(1200, 16, 0), _features(1200, 16, 1)
    m1, s1 = kid(a, b, num_subsets=10, subset_size=300, seed=5)
    m2, s2 = kid(a, b, num_subsets=10, subset_size=300, seed=5)
    assert (m1, s1) == (m2, s2)
    assert abs(m1) < 3 * s1 + 1e-3
    far, _ = kid(a, _features(1200, 16, 2, 1.0), num_subsets=10, subset_size=300)
    assert far > 10 * (abs(m1) + s1)


def _is_torch_fidelity(logits, splits=10, seed=2020):
    """torch-fidelity's isc_featuresdict_to_metric, written out: shuffle with RandomState(seed), split
    at i*N//splits, exp of the mean KL to the split's marginal, np.std (ddof 0) over the splits."""
    p_all = torch.softmax(torch.as_tensor(logits).double(), 1).numpy()
    n = len(p_all)
    p_all = p_all[np.random.RandomState(seed).permutation(n)]
    scores = []
    for i in range(splits):
        p = p_all[i * n // splits:(i + 1) * n // splits]
        scores.append(np.exp((p * (np.log(p) - np.log(p.mean(0, keepdims=True)))).sum(1).mean()))
    return np.mean(scores), np.std(scores)


def _kid_torch_fidelity(fake, real, subsets, size, seed):
    """torch-fidelity's kid_features_to_metric, written out from its documented procedure: one
    RandomState(seed); per subset rng.choice(n, size, replace=False) of input1 (generated), then of
    input2 (real); unbiased MMD² with the polynomial kernel (x.y/d + 1)^3; np.mean and np.std (ddof 0)."""
    rng = np.random.RandomState(seed)
    vals = []
    for _ in range(subsets):
        f = fake[rng.choice(len(fake), size, replace=False)]
        r = real[rng.choice(len(real), size, replace=False)]
        vals.append(_mmd2_reference(f, r))
    return np.mean(vals), np.std(vals)


@pytest.mark.parametrize("n_real,n_fake,size", [(700, 500, 200), (400, 400, 399), (300, 900, 300)])
def test_kid_is_torch_fidelitys(n_real, n_fake, size):
    real, fake = _features(n_real, 24, 0), _features(n_fake, 24, 1, 0.1)
    mean, std = kid(real, fake, num_subsets=20, subset_size=size, seed=3)
    ref_mean, ref_std = _kid_torch_fidelity(fake, real, 20, size, 3)
    # both in float64, summed in another order: 1e-9 relative is round-off, not protocol
    assert mean == pytest.approx(ref_mean, rel=1e-9) and std == pytest.approx(ref_std, rel=1e-9)


def test_inception_score_limits_and_torch_fidelitys_formula():
    n, k = 1000, 10
    assert inception_score(torch.zeros(n, k))[0] == pytest.approx(1.0, abs=1e-9)
    confident = torch.full((n, k), -30.0)
    confident[torch.arange(n), torch.arange(n) % k] = 30.0
    # confident and balanced: each split scores exp(entropy of its class histogram), k when a split
    # holds every class equally, a little less after shuffling
    assert 9 < inception_score(confident, splits=10)[0] < k
    assert inception_score(confident, splits=1)[0] == pytest.approx(k, rel=1e-6)
    logits = torch.randn(1003, k, generator=torch.Generator().manual_seed(0)) * 3   # 1003: ragged splits
    mean, std = inception_score(logits, splits=10)
    ref_mean, ref_std = _is_torch_fidelity(logits)
    assert mean == pytest.approx(ref_mean, rel=1e-9) and std == pytest.approx(ref_std, rel=1e-9)


def test_inception_score_does_not_depend_on_sample_order():
    """A file sorted by class: consecutive splits would each hold one class (IS 1, the audit's 1.41 vs
    7.99); shuffled first, it scores within sampling noise of the same samples in random order."""
    n, k = 2000, 10
    g = torch.Generator().manual_seed(1)
    cls = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g) + 6 * torch.nn.functional.one_hot(cls, k)
    shuffled, _ = inception_score(logits)
    ordered, _ = inception_score(logits[cls.argsort()])
    assert shuffled > 5
    # the two orders differ only by which samples share a split: measured |difference| 0.0x; 2 % is
    # far inside the gap to the unshuffled value (about 1)
    assert ordered == pytest.approx(shuffled, rel=0.02)


def test_inception_score_refuses_fewer_samples_than_splits():
    with pytest.raises(ValueError, match="IS over 10 splits needs at least 10 samples, got 5"):
        inception_score(torch.randn(5, 10))


def _prdc_reference(real, fake, k_pr, k_dc):
    """The prdc package's formulas, with scipy's full distance matrices."""
    drr, dff, drf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    rr = {k: np.sort(drr, 1)[:, k] for k in (k_pr, k_dc)}
    rf = np.sort(dff, 1)[:, k_pr]
    return {"precision": (drf < rr[k_pr][:, None]).any(0).mean(),
            "recall": (drf < rf[None, :]).any(1).mean(),
            "density": (drf < rr[k_dc][:, None]).sum(0).mean() / k_dc,
            "coverage": (drf.min(1) < rr[k_dc]).mean()}


def test_prdc_matches_full_matrix_reference_in_small_blocks():
    real, fake = _features(300, 16, 0), _features(250, 16, 1, 0.3, 1.3)
    ours = prdc(real, fake, k_pr=3, k_dc=5, block=64)  # several blocks, a ragged last one
    ref = _prdc_reference(real, fake, 3, 5)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-9), key
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1


def test_prdc_same_gaussian_sanity():
    """Two samples of one 1000-d Gaussian, k = 5 (the prdc README's setting).

    Naeem et al. (2020) show E[density] = 1 and E[coverage] = 1 - 2^-k ≈ 0.969 for identical
    distributions; their published values at n = 10k are P 0.477, R 0.471, D 1.056, C 0.974
    (benchmarks/eval.py reproduces n = 10k). Here n = 2000 to stay fast: precision and recall
    are higher at this n (k-NN balls are larger); over seeds 0-3 we measured P 0.55 ± 0.02,
    R 0.56 ± 0.015, D 1.01 ± 0.10, C 0.969 ± 0.01, so the bounds are about ±3 sd.
    """
    rng = np.random.default_rng(0)
    real = rng.standard_normal((2000, 1000)).astype(np.float32)
    fake = rng.standard_normal((2000, 1000)).astype(np.float32)
    out = prdc(real, fake, k_pr=5, k_dc=5)
    assert 0.49 < out["precision"] < 0.62
    assert 0.51 < out["recall"] < 0.61
    assert 0.7 < out["density"] < 1.3
    assert abs(out["coverage"] - (1 - 2 ** -5)) < 0.03


def test_prdc_detects_a_shift():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((500, 8))
    far = rng.standard_normal((500, 8)) + 10
    out = prdc(real, far)
    assert out == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


@pytest.mark.parametrize("offset", [1000.0, 1e5])
def test_prdc_is_exact_far_from_the_origin(offset):
    """Features far from the origin: ‖a‖² − 2ab + ‖b‖² on raw float32 lost the distances (offset 1000:
    precision 0.63 -> 0.57, 1e5: everything 0); centred, the values are the reference's exactly."""
    real = _features(400, 32, 0) + offset
    fake = (_features(350, 32, 1, 0.2) + offset).astype(np.float32)   # float32 features, as extractors give
    ref = _prdc_reference(real, fake.astype(np.float64), 3, 5)         # cdist: direct differences, float64
    assert prdc(real, fake, k_pr=3, k_dc=5, block=128) == pytest.approx(ref, abs=1e-12)


def test_prdc_of_a_set_with_itself_is_exactly_one():
    """Every fake is exactly on a real point and at exactly that point's k-NN radius from k of them;
    ties must fall as the reference's exact distances put them: all four values 1, density not 1.0005."""
    real = _features(1500, 64, 2, shift=300.0).astype(np.float32)
    assert prdc(real, real.copy(), block=256) == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}


@pytest.mark.parametrize("metric", [fid, kid, prdc])
@pytest.mark.parametrize("side", ["real", "fake"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features_are_refused_naming_the_set(metric, side, bad):
    sets = {"real": _features(300, 16, 0), "fake": _features(300, 16, 1)}
    sets[side][3, 2] = bad
    sets[side][7] = bad
    with pytest.raises(ValueError, match=f"^{side} features: 2 of 300 rows contain NaN or inf$"):
        metric(sets["real"], sets["fake"])


def test_mode_stats_hand_made_ring():
    from gankit.data.toy import ring_means

    modes = ring_means(8).float()
    std = 0.01
    # 25 samples exactly on each of modes 0..3, nothing near 4..7
    x = modes[:4].repeat_interleave(25, 0)
    out = mode_stats(x, modes, std)
    assert out["modes"] == 4 and out["hq"] == 100.0
    assert out["rkl"] == pytest.approx(math.log(2))      # uniform over half the modes: log(8/4)
    assert out["counts"] == [25, 25, 25, 25, 0, 0, 0, 0]
    # 10 of 110 samples at the origin, far (> 3σ) from every mode: 100/110 high quality
    out = mode_stats(torch.cat([x, torch.zeros(10, 2)]), modes, std)
    assert out["hq"] == pytest.approx(100 * 100 / 110) and out["modes"] == 4
    # just inside / just outside 3σ of mode 0
    edge = torch.tensor([[1 + 2.9 * std, 0.0], [1 + 3.1 * std, 0.0]])
    assert mode_stats(edge, modes, std)["hq"] == 50.0
    # all samples in one mode: rkl = log 8; 19 samples is below the 20 that count as covered
    assert mode_stats(modes[:1].repeat(19, 1), modes, std) == {
        "modes": 0, "hq": 100.0, "rkl": pytest.approx(math.log(8)), "counts": [19] + [0] * 7,
        "num_modes": 8, "n": 19}
    assert mode_stats(torch.full((5, 2), 5.0), modes, std)["rkl"] is None
    # every mode evenly: 8 covered, rkl 0
    even = mode_stats(modes.repeat(30, 1) + 0.001 * torch.randn(240, 2), modes, std)
    assert even["modes"] == 8 and even["rkl"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("data", ["ring8", "grid25"])
def test_mode_stats_of_the_data_itself_is_the_protocols_ceiling(data):
    # High quality is a Euclidean distance under 3σ (PacGAN's MetricLogger), so points drawn from
    # the mixture itself score P(χ²₂ < 9) = 1 − e^(−4.5) = 98.89 %, not 100 %: the ceiling of a
    # faithful generator (README, "Variants"). 20k points: standard error 0.07 points; 4 SE.
    from gankit.config import DataConfig
    from gankit.data import load_dataset

    ds = load_dataset(DataConfig(name=data, size=20_000), seed=3)
    out = mode_stats(ds.x, ds.modes, ds.mode_std)
    assert out["hq"] == pytest.approx(100 * (1 - math.exp(-4.5)), abs=0.3)
    assert out["modes"] == len(ds.modes) and out["rkl"] < 0.01


def test_mode_stats_1d():
    out = mode_stats(torch.tensor([4.0, 4.2, 5.4, 2.0]), torch.tensor([[4.0]]), 0.5)
    assert out["hq"] == 75.0 and out["modes"] == 0 and out["rkl"] == 0.0


def _card(**kw):
    c = {"metric": "fid", "params": {}, "features": "domain-digits", "features_sha256": "ab" * 32,
         "preprocessing": "p", "reference": {"dataset": "digits", "split": "test", "sha256": "cd" * 32},
         "n_real": 100, "n_fake": 100, "seed": 0, "gankit": "0.1.0", "warnings": []}
    c.update(kw)
    return c


def test_cards_decide_what_is_comparable():
    a, b = _card(), _card(n_fake=200)
    assert card_id(a) == card_id(_card(warnings=["x"]))   # warnings do not change the protocol
    assert card_id(a) != card_id(b) and differences(a, b) == ["n_fake"]
    same = format_table([("A", [{"name": "fid", "value": 1.0, "std": None, "card": a}]),
                         ("B", [{"name": "fid", "value": 2.0, "std": None, "card": _card()}])])
    row = [line for line in same.splitlines() if line.startswith("fid ")]
    assert len(row) == 1 and "1" in row[0] and "2" in row[0] and "NOT comparable" not in same
    diff = format_table([("A", [{"name": "fid", "value": 1.0, "std": None, "card": a}]),
                         ("B", [{"name": "fid", "value": 2.0, "std": None, "card": b}])])
    rows = [line for line in diff.splitlines() if line.startswith("fid ")]
    assert len(rows) == 2
    assert "fid: rows with different cards are NOT comparable (they differ in: n_fake)" in diff


def test_each_warning_is_shown_with_the_sources_it_belongs_to():
    """Warnings are not part of a card's id, so two sources share a card and a row; the table kept the
    last source's card and so dropped or misattributed the other's warnings."""
    only_b = format_table([("a.npz", [{"name": "fid", "value": 1.0, "std": None, "card": _card()}]),
                           ("b.npz", [{"name": "fid", "value": 2.0, "std": None, "card": _card(warnings=["[0, 1]"])}]),
                           ("c.npz", [{"name": "fid", "value": 3.0, "std": None, "card": _card()}])])
    assert len([line for line in only_b.splitlines() if line.startswith("fid ")]) == 1   # still one row
    assert [line.strip() for line in only_b.splitlines() if "WARNING" in line] == ["WARNING       b.npz: [0, 1]"]
    both = format_table([("a.npz", [{"name": "fid", "value": 1.0, "std": None, "card": _card(warnings=["w1", "small"])}]),
                         ("b.npz", [{"name": "fid", "value": 2.0, "std": None, "card": _card(warnings=["small"])}])])
    assert [line.strip() for line in both.splitlines() if "WARNING" in line] == [
        "WARNING       a.npz: w1", "WARNING       a.npz, b.npz: small"]
    alone = format_table([("a.npz", [{"name": "fid", "value": 1.0, "std": None, "card": _card(warnings=["w1"])}])])
    assert "WARNING       w1" in alone   # one source: no label needed


def test_fit_images_undoes_padding_and_resizes():
    from gankit.data import fit_resolution
    from gankit.metrics.features import fit_images, quantize

    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    padded = fit_resolution(x, 32).float() / 127.5 - 1           # how a run at 32x32 sees Fashion-MNIST
    assert torch.equal(fit_images(padded, 1, 28), x.float() / 127.5 - 1)
    big = fit_images(torch.rand(2, 3, 64, 64) * 2 - 1, 1, 28)
    assert big.shape == (2, 1, 28, 28) and big.min() >= -1 and big.max() <= 1
    q = quantize(torch.tensor([-1.2, -0.0031, 0.5, 1.0]))
    assert torch.allclose((q + 1) * 127.5, torch.tensor([0.0, 127.0, 191.0, 255.0]), atol=1e-4)
