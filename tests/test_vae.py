"""The VAE baseline: its ELBO against a hand computation, the closed-form KL against Monte Carlo, a tiny
training run, sampling and loading; the sharpness metric on blurred and unblurred images."""
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

import gankit
from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.metrics.base import METRICS, EvalContext
from gankit.metrics.sharpness import laplacian_variance, sharpness_ratio
from gankit.objectives.vae import VAEObjective, kl_standard_normal, negative_elbo

TINY = ["data.name=digits", "data.resolution=16", "model.g.width=8", "model.nets.E.width=8",
        "train.minutes=null", "train.steps=30", "train.threads=1", "train.precision=fp32", "health.enabled=false"]

# Two 1x2x2 images in [-1, 1], the decoder's mean for each, and q(z|x) of 3 dimensions.
X = np.array([[[[-1.0, 1.0], [0.5, -0.25]]], [[[0.0, 0.9], [-0.8, 1.0]]]])
MEAN = np.array([[[[-0.9, 0.7], [0.2, 0.1]]], [[[0.3, 0.5], [-0.6, 0.95]]]])
MU = np.array([[0.5, -1.0, 0.0], [2.0, 0.1, -0.3]])
LOGVAR = np.array([[0.0, -1.0, 0.7], [-2.0, 0.3, 0.0]])


def hand_elbo(decoder, beta, sigma):
    """−ELBO terms per image by hand, numpy float64."""
    x, m = X.reshape(2, -1), MEAN.reshape(2, -1)
    if decoder == "bernoulli":
        t, p = (x + 1) / 2, (m + 1) / 2
        recon = -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(1)
    else:
        recon = ((x - m) ** 2 / (2 * sigma ** 2) + 0.5 * np.log(2 * np.pi * sigma ** 2)).sum(1)
    kl = 0.5 * (MU ** 2 + np.exp(LOGVAR) - 1 - LOGVAR).sum(1)
    return {"loss": (recon + beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean()}


@pytest.mark.parametrize("decoder,beta,sigma", [("bernoulli", 1.0, 0.1), ("bernoulli", 4.0, 0.1),
                                                ("gaussian", 0.25, 0.3), ("gaussian", 1.0, 1.0)])
def test_elbo_matches_a_hand_computation(decoder, beta, sigma):
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    got = negative_elbo(t(X), t(MEAN), t(MU), t(LOGVAR), beta, decoder, sigma)
    want = hand_elbo(decoder, beta, sigma)
    for k in want:
        assert abs(got[k].item() - want[k]) < 1e-6, (k, got[k].item(), want[k])
    assert want["kl"] > 0.5  # β matters in this case: loss ≠ recon + kl unless β = 1
    if beta != 1:
        assert abs(want["loss"] - (want["recon"] + want["kl"])) > 0.1


class _Fixed(nn.Module):
    """A network that returns fixed outputs and records what it was given."""

    def __init__(self, out):
        super().__init__()
        self.out, self.w, self.seen = out, nn.Parameter(torch.zeros(())), []

    def forward(self, *args):
        self.seen.append(args[0].detach().clone())
        return tuple(o + 0 * self.w for o in self.out) if isinstance(self.out, tuple) else self.out + 0 * self.w


def test_the_objective_reparameterises_and_logs_the_elbo():
    cfg = load_config("vae-fashion-mnist", TINY + ["loss.options.beta=2.5", "loss.options.decoder=gaussian",
                                                  "loss.options.sigma=0.3"])
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    E, G = _Fixed((t(MU), t(LOGVAR))), _Fixed(t(MEAN))
    obj = VAEObjective({"E": E, "G": G}, cfg, None)
    eps = torch.tensor([[1.0, -0.5, 2.0], [0.0, 0.3, -1.0]])
    obj.noise_source = lambda n, device: eps
    obj.on_step(0, 0.0)
    stats = obj.accumulate_gradients("G", {"x": t(X)}, 2)
    z = t(MU) + torch.exp(t(LOGVAR) / 2) * eps            # z = mu + sigma * eps
    assert torch.allclose(G.seen[0], z, atol=1e-6)
    want = hand_elbo("gaussian", 2.5, 0.3)
    for k in want:
        assert abs(stats[k].item() - want[k]) < 1e-4 * max(1.0, abs(want[k])), k  # fp32 path


def test_kl_warmup_ramps_beta():
    cfg = load_config("vae-fashion-mnist", TINY + ["loss.options.beta=2", "loss.options.kl_warmup=0.5"])
    obj = VAEObjective({"E": nn.Identity(), "G": nn.Identity()}, cfg, None)
    betas = []
    for p in (0.0, 0.25, 0.5, 0.9):
        obj.on_step(0, p)
        betas.append(obj.beta_now)
    assert betas == [0.0, 1.0, 2.0, 2.0]


def test_closed_form_kl_agrees_with_monte_carlo():
    mu = torch.tensor([[0.5, -1.0, 0.0, 1.5]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.0, 0.7, -0.3]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    std = (logvar / 2).exp()
    eps = torch.randn(n, 4, generator=g, dtype=torch.float64)
    z = mu + std * eps
    # log q(z) − log p(z) per draw; the constants ½·log 2π cancel.
    log_q = (-0.5 * eps ** 2 - torch.log(std)).sum(1)
    log_p = (-0.5 * z ** 2).sum(1)
    d = log_q - log_p
    mc, se = d.mean().item(), d.std().item() / math.sqrt(n)
    closed = kl_standard_normal(mu, logvar).item()
    # 4 standard errors: a correct formula fails this with probability ~6e-5 (and the seed is fixed).
    assert abs(mc - closed) < 4 * se, (mc, closed, se)
    assert se < 0.01 * closed  # the test can tell a wrong constant or factor of 2 apart


def test_tiny_training_lowers_the_reconstruction_loss_and_the_run_loads(tmp_path):
    # With the health monitor on: a run without D must not trip it (its D-side signals are absent).
    run = gankit.train("vae-fashion-mnist", TINY + ["train.batch_size=32", "train.log_every=10",
                                                    "train.ema=0.9", "health.enabled=true"],
                       out=tmp_path / "r", quiet=True)
    import json
    assert json.loads((tmp_path / "r" / "health.json").read_text())["status"] == "healthy"
    recs = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    recon = [r["recon"] for r in recs if "recon" in r]
    assert len(recon) == 3 and all(math.isfinite(r["kl"]) and r["kl"] >= 0 for r in recs if "kl" in r)
    # 256 pixels × ~0.69 nats at p = 1/2: ~170 nats at the start; the tiny model learns the mean digit fast.
    assert recon[-1] < 0.9 * recon[0], recon
    assert set(run.trainer.nets) == {"E", "G"} and [p.name for p in run.trainer.phases] == ["G"]
    model = gankit.load(tmp_path / "r")
    x, y = model.sample(8, seed=1)
    assert x.shape == (8, 1, 16, 16) and y is None and torch.isfinite(x).all() and x.abs().max() <= 1
    assert torch.equal(model.sample(8, seed=1)[0], x)
    # The encoder comes back too (30 steps are too few for its reconstructions to mean much).
    data = run.trainer.data.batch(torch.arange(32))["x"].cpu()
    with torch.no_grad():
        rec = model.objective.reconstruct(data)
    assert rec.shape == data.shape and torch.isfinite(rec).all()
    assert torch.equal(model.nets["E"].head.weight, run.trainer.nets["E"].head.weight.cpu())
    res = gankit.evaluate(tmp_path / "r", metrics=["fid", "sharpness"], n=64, write=False, quiet=True)
    values = {r["name"]: r["value"] for r in res.results}
    assert 0 < values["sharpness"] < 1.5 and values["lapvar"] > 0


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="loss.options.betta"):
        load_config("vae-fashion-mnist", TINY + ["loss.options.betta=2"])
    with pytest.raises(ConfigError, match="loss.options.decoder"):
        load_config("vae-fashion-mnist", TINY + ["loss.options.decoder=poisson"])
    with pytest.raises(ConfigError, match="model.d"):
        load_config("vae-fashion-mnist", TINY + ["model.d.width=8"])
    with pytest.raises(ConfigError, match="model.nets.E.colour"):
        load_config("vae-fashion-mnist", TINY + ["model.nets.E.colour=1"])



@pytest.mark.parametrize("override", ["loss.name=hinge", "loss.augment=color", "train.d_steps=5",
                                      "train.d_optim.lr=1e-3", "loss.clip_d_weights=0.01"])
def test_a_setting_of_the_adversarial_game_is_refused_naming_its_own_key(override):
    """Accepted, it would sit in the run's config.yaml as if it had acted on a model without a D."""
    key = override.split("=")[0].rsplit(".lr", 1)[0]
    with pytest.raises(ConfigError) as e:
        load_config("vae-fashion-mnist", TINY + [override])
    assert str(e.value) == f"{key}: objective vae has no discriminator for it; remove it"


def _textures(n=32, size=16, seed=0):
    rng = np.random.default_rng(seed)
    # Squares and bars: sharp edges, as digits and clothes have.
    x = -np.ones((n, 1, size, size))
    for i in range(n):
        a, b = rng.integers(0, size - 6, 2)
        x[i, 0, a:a + 6, b:b + 6] = 1.0
        x[i, 0, :, rng.integers(0, size)] = 0.5
    return x


def test_sharpness_falls_with_blur_and_is_one_for_identical_sets():
    real = _textures()
    blurred = np.stack([gaussian_filter(im, sigma=(0, 1.0, 1.0)) for im in real])
    assert sharpness_ratio(real, real) == 1.0
    r = sharpness_ratio(blurred, real)
    assert r < 0.5, r                      # a σ = 1 px blur removes most of the Laplacian's power
    more = np.stack([gaussian_filter(im, sigma=(0, 2.0, 2.0)) for im in real])
    assert sharpness_ratio(more, real) < r  # more blur, less sharp
    # the variance of the Laplacian by hand for one image: a single bright pixel in [0, 1]
    im = np.zeros((1, 5, 5)) - 1
    im[0, 2, 2] = 1                         # 1 in [0, 1] at the centre; the stencil gives -4 there, 1 at 4 neighbours
    lap = np.zeros((5, 5))
    lap[2, 2], lap[1, 2], lap[3, 2], lap[2, 1], lap[2, 3] = -4, 1, 1, 1, 1
    assert laplacian_variance(im)[0] == pytest.approx(lap.var(), rel=1e-12)
    # through the registry, as gankit eval computes it
    ctx = EvalContext(fake=torch.tensor(blurred), fake_labels=None, real=torch.tensor(real), real_labels=None,
                      dataset=None, data_cfg=None, extractor=None)
    out = METRICS.get("sharpness").compute(ctx)
    assert out["sharpness"] == pytest.approx(r) and out["lapvar"] == pytest.approx(laplacian_variance(blurred).mean())
    # real images stored at another size are compared at the samples' (digits: 8x8 data, 16x16 model)
    small = torch.tensor(real)[:, :, ::2, ::2]
    ctx = EvalContext(fake=torch.tensor(real), fake_labels=None, real=small, real_labels=None,
                      dataset=None, data_cfg=None, extractor=None)
    assert METRICS.get("sharpness").compute(ctx)["sharpness"] > 1  # upsampled real images are blurrier
