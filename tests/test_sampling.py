"""Discriminator rejection sampling (gankit/sampling.py) against its definition."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import gankit
from gankit.errors import GankitError
from gankit.sampling import DiscriminatorRejectionSampler, fit_density_ratio
from gankit.tasks import GenerationTask

# p_g = N(0, 1) (G passes z through), p_data = N(1, 0.5²): log p_data/p_g is bounded above because
# the data's variance is the smaller one, so exact rejection sampling applies.
MU, SIGMA = 1.0, 0.5
TASK = GenerationTask(z_dim=1)  # unconditional: G(z) with z ~ N(0, 1)


def log_ratio(x):
    return (-0.5 * ((x - MU) / SIGMA) ** 2 - math.log(SIGMA)) - (-0.5 * x ** 2)


class PassThrough(nn.Module):
    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, z, y=None):
        return z


class ExactRatio(nn.Module):
    def forward(self, x, y=None):
        return log_ratio(x).flatten()


def test_exact_density_ratio_turns_g_into_the_data():
    # With D's logit = log p_data/p_g and γ = 0, DRS is rejection sampling: the kept samples follow
    # p_data. 20k samples: the standard errors of mean and std are 0.0035 and 0.0025; ±0.02 is > 5 SE.
    drs = DiscriminatorRejectionSampler(PassThrough(), ExactRatio(), task=TASK, burn_in=50_000, batch_size=5000)
    x, y = drs.sample(20_000, seed=1)
    assert y is None and x.shape == (20_000, 1)
    assert x.mean().item() == pytest.approx(MU, abs=0.02)
    assert x.std().item() == pytest.approx(SIGMA, abs=0.02)
    # acceptance = 1 / M with M = max_x p_data/p_g = exp(max log_ratio)
    xs = torch.linspace(-3, 4, 100_001)
    assert drs.acceptance == pytest.approx(1 / math.exp(log_ratio(xs).max().item()), rel=0.05)


def test_a_percentile_accepts_more_and_is_no_longer_exact():
    exact = DiscriminatorRejectionSampler(PassThrough(), ExactRatio(), task=TASK, batch_size=5000)
    shifted = DiscriminatorRejectionSampler(PassThrough(), ExactRatio(), task=TASK, batch_size=5000, percentile=50)
    x_exact, _ = exact.sample(5000, seed=2)
    x_shift, _ = shifted.sample(5000, seed=2)
    assert shifted.acceptance > 1.5 * exact.acceptance
    assert x_shift.std().item() > x_exact.std().item() + 0.05  # closer to G's own spread of 1
    with pytest.raises(GankitError, match="percentile"):
        DiscriminatorRejectionSampler(PassThrough(), ExactRatio(), task=TASK, percentile=120)


def test_fitting_d_learns_the_log_density_ratio():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(1, 64), nn.LeakyReLU(0.2), nn.Linear(64, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))

    class TakesLabels(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = D

        def forward(self, x, y=None):
            return self.net(x).flatten()

    before = [p.detach().clone() for p in D.parameters()]
    fitted = fit_density_ratio(TakesLabels(), lambda n: (torch.randn(n, 1), None),
                               lambda n: (MU + SIGMA * torch.randn(n, 1), None), steps=1500, batch_size=256)
    assert all(torch.equal(a, b) for a, b in zip(before, D.parameters()))  # the original D is untouched
    xs = torch.linspace(-0.5, 2.0, 11).view(-1, 1)  # where both densities have mass
    with torch.no_grad():
        err = (fitted(xs) - log_ratio(xs).flatten()).abs()
    assert err.max().item() < 0.5, err  # log-ratio spans -2.2 .. 1.2 here; 0.5 nats ≈ a 1.6x ratio error


def test_rejection_sampling_from_a_run_and_the_cli(tmp_path):
    tiny = ["train.steps=300", "train.batch_size=64", "data.size=5000", "train.log_every=100",
            "train.checkpoint_every=1000", "train.sample_every=1000"]
    run = gankit.train("gan-ring8", tiny, out=tmp_path / "run", quiet=True)
    model = gankit.load(run.dir)
    drs = model.rejection_sampler(steps=100)
    x, _ = drs.sample(200, seed=0)
    assert x.shape == (200, 2) and torch.isfinite(x).all() and 0 < drs.acceptance <= 1
    proc = subprocess.run([sys.executable, "-m", "gankit", "sample", str(run.dir), "-n", "50", "--rejection",
                           "--rejection-steps", "50", "-o", str(tmp_path / "s.npz")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "rejection sampling kept" in proc.stderr
    assert np.load(tmp_path / "s.npz")["x"].shape == (50, 2)
    proc = subprocess.run([sys.executable, "-m", "gankit", "sample", str(run.dir), "--rejection", "--interpolate",
                           "-o", str(tmp_path / "w.png")], capture_output=True, text=True)
    assert proc.returncode != 0 and "--rejection" in proc.stderr.strip().splitlines()[-1]


def test_packed_discriminators_are_refused():
    D = ExactRatio()
    D.pack = 4
    with pytest.raises(GankitError, match="pack"):
        fit_density_ratio(D, lambda n: (torch.randn(n, 1), None), lambda n: (torch.randn(n, 1), None), steps=1)


def test_rejection_sampling_of_a_style_generator_is_reproducible(tmp_path):
    """A style G draws per-layer noise itself: the sampler makes its proposals through Task.generate,
    whose seeded private stream gives that noise, so the same seed gives the same samples."""
    tiny = ["data.name=digits", "data.resolution=16", "data.limit=64", "train.steps=2", "train.batch_size=8",
            "train.log_every=1", "model.z_dim=8", "model.arch=stylegan2",
            "model.g={w_dim: 8, mapping_layers: 2, width: 64, max_width: 8}", "model.d={width: 64, max_width: 8}"]
    run = gankit.train("dcgan-digits", tiny, out=tmp_path / "run", quiet=True)
    model = gankit.load(run.dir)
    draws = []
    for _ in range(2):
        torch.manual_seed(len(draws))                 # the global RNG differs between the two draws
        drs = model.rejection_sampler(steps=2, seed=3)
        drs.burn_in, drs.batch_size = 32, 16
        draws.append(drs.sample(6, seed=3)[0])
    assert draws[0].shape == (6, 1, 16, 16) and torch.equal(draws[0], draws[1])
    assert draws[0].min() >= -1 and draws[0].max() <= 1   # clamped as gankit sample's images are


def test_a_discriminator_without_one_real_vs_fake_score_is_refused_in_one_line(tmp_path):
    """ssgan's D gives one logit per class and a VAE has no D: DRS cannot use either; said before fitting."""
    from gankit.data import Dataset
    from gankit.sampling import rejection_sampler

    class PerClass(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3))

        def forward(self, x, y=None):
            return x * self.w  # (B, 3): one score per class

    data = Dataset(name="d", x=torch.randn(16, 1), y=None, kind="vector")
    with pytest.raises(GankitError, match="one real-vs-fake score per sample; this one gives \\(3,\\)"):
        rejection_sampler(PassThrough(), PerClass(), data, TASK, steps=1)
    tiny = ["data.name=digits", "data.resolution=16", "model.g.width=8", "model.nets.E.width=8", "train.minutes=null",
            "train.steps=2", "train.threads=1", "train.precision=fp32", "health.enabled=false"]
    run = gankit.train("vae-fashion-mnist", tiny, out=tmp_path / "vae", quiet=True)
    with pytest.raises(GankitError, match="vae model has no discriminator"):
        gankit.load(run.dir).rejection_sampler(steps=1)
