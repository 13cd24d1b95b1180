"""Truncation for every noise generator (gankit/steer/truncation.py, GenerationTask.truncated), the
truncation curve, and `gankit sample --truncation` / `gankit truncation`."""
import json
import math

import pytest
import torch
from scipy.stats import norm

from gankit.api import load
from gankit.cli.main import main
from gankit.config import DataConfig, load_config
from gankit.errors import GankitError
from gankit.latent import check_psi, psi_to_tau, resample_outside
from gankit.steer.truncation import format_curve, truncation_curve
from gankit.tasks import GenerationTask
from gankit.train.run import train

TINY = ["train.steps=2", "train.minutes=null", "health.enabled=false", "train.precision=fp32", "train.batch_size=8"]
STYLE2 = ["model.arch=stylegan2", "loss.objective=stylegan",
          "model.g={width: 128, max_width: 16, w_dim: 16, mapping_layers: 2}", "model.d={width: 128, max_width: 16}"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A DCGAN and a StyleGAN2 run on 16x16 digits, widths 8-16, two steps each."""
    root = tmp_path_factory.mktemp("trunc")
    dc = train(load_config("dcgan-digits", TINY + ["model.g.width=8", "model.d.width=8"]), out=root / "dc", quiet=True)
    sg = train(load_config("dcgan-digits", TINY + STYLE2), out=root / "sg", quiet=True)
    return {"dcgan": dc.dir, "stylegan2": sg.dir}


def close(a, b):
    return torch.allclose(a, b, rtol=1e-5, atol=2e-4)


# -- the ψ -> τ rule and the resampling ------------------------------------------------------------

def test_psi_to_tau_keeps_mass_psi():
    assert psi_to_tau(1.0) == math.inf
    assert psi_to_tau(0.5) == pytest.approx(0.6744897501960817, abs=1e-12)   # Φ⁻¹(0.75)
    assert psi_to_tau(0.95) == pytest.approx(1.959963984540054, abs=1e-12)   # the two-sided 95 % point
    for psi in (0.01, 0.3, 0.7, 0.99):
        tau = psi_to_tau(psi)
        assert norm.cdf(tau) - norm.cdf(-tau) == pytest.approx(psi, abs=1e-12)  # P(|z| ≤ τ) = ψ
    for bad in (0.0, -0.5, 1.01):
        with pytest.raises(ValueError):
            psi_to_tau(bad)


def test_resampling_keeps_inside_components_and_draws_a_truncated_normal():
    z = torch.randn(4000, 8, generator=torch.Generator().manual_seed(0))
    tau = psi_to_tau(0.5)
    out = resample_outside(z, tau, torch.Generator().manual_seed(1))
    inside = z.abs() <= tau
    assert torch.equal(out[inside], z[inside])                   # kept bit for bit
    assert (out.abs() <= tau).all()
    assert (out[~inside] != z[~inside]).all()                    # every outside component was redrawn
    again = resample_outside(z, tau, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)                               # deterministic for a generator state
    # The redrawn values follow N(0, 1) conditioned on |z| ≤ τ: variance 1 − 2τφ(τ)/(2Φ(τ) − 1) = 0.1426.
    # About 16,000 redrawn values of a near-uniform law (kurtosis 1.9): the sample variance's standard
    # error is 0.1426·√(0.9/16000) ≈ 0.001; ±0.006 is 6 of them.
    fresh = out[~inside].double()
    expected = 1 - 2 * tau * norm.pdf(tau) / (2 * norm.cdf(tau) - 1)
    assert fresh.var().item() == pytest.approx(expected, abs=0.006)
    assert fresh.mean().item() == pytest.approx(0.0, abs=0.01)   # SE 0.003
    assert resample_outside(z, math.inf) is z                    # ψ = 1: nothing drawn


def test_truncated_task_draws_inside_tau_with_the_same_labels():
    task = GenerationTask(z_dim=16, num_classes=3)
    plain = task.draw(500, torch.Generator().manual_seed(7), labels="random")
    cut = task.truncated(0.5).draw(500, torch.Generator().manual_seed(7), labels="random")
    tau = psi_to_tau(0.5)
    assert torch.equal(cut["y"], plain["y"])                    # labels are drawn before the resampling
    assert (cut["z"].abs() <= tau).all()
    inside = plain["z"].abs() <= tau
    assert torch.equal(cut["z"][inside], plain["z"][inside])
    assert not torch.equal(cut["z"], plain["z"])
    same = task.truncated(1.0).draw(500, torch.Generator().manual_seed(7), labels="random")
    assert torch.equal(same["z"], plain["z"]) and torch.equal(same["y"], plain["y"])
    assert task.psi == 1.0 and not task.w_space                  # truncated() returns a copy


def test_check_psi_range():
    assert check_psi(0.7, style=False) == 0.7
    assert check_psi(0, style=True) == 0.0                       # a style generator's average image
    for psi, style in ((0, False), (-0.1, True), (1.2, False), ("x", False)):
        with pytest.raises(GankitError, match="truncation="):
            check_psi(psi, style)


# -- on real networks ------------------------------------------------------------------------------

def test_psi_one_leaves_dcgan_samples_unchanged_and_lower_psi_is_deterministic(runs):
    model = load(runs["dcgan"])
    g = torch.Generator().manual_seed(3)
    reference = model.task.generate(model.G, model.task.draw(16, g))   # the untruncated path, by hand
    assert torch.equal(model.sample(16, seed=3)[0], reference)
    assert torch.equal(model.sample(16, seed=3, truncation=1.0)[0], reference)
    a, _ = model.sample(16, seed=3, truncation=0.5)
    assert torch.equal(a, model.sample(16, seed=3, truncation=0.5)[0])
    assert not torch.equal(a, reference)
    task = model.task.truncated(0.5, None, model.G)
    z = task.draw(16, torch.Generator().manual_seed(3))["z"]
    assert torch.equal(a, model.task.generate(model.G, {"z": z, "y": None}))  # G run on the resampled z


def test_psi_one_leaves_style_samples_unchanged(runs):
    model = load(runs["stylegan2"])
    torch.manual_seed(0)  # the synthesis draws its per-layer noise from torch's RNG
    reference = model.task.generate(model.G, model.task.draw(8, torch.Generator().manual_seed(5)))
    torch.manual_seed(0)
    assert torch.equal(model.sample(8, seed=5, truncation=1.0)[0], reference)


def test_style_psi_zero_gives_the_average_image_and_cutoff_spares_fine_styles(runs):
    model = load(runs["stylegan2"])
    G = model.G
    assert G.w_avg.abs().sum() > 0                                     # training moved it off zero
    task = model.task.truncated(0.0, None, G, noise_mode="const")
    x = task.generate(G, task.draw(6, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        # samples are clamped to the data range (a style G's output is linear)
        avg = G.synthesis(G.w_avg.view(1, 1, -1).expand(1, G.num_ws, -1), noise_mode="const").clamp(-1, 1)
    # Equal up to float32 rounding that depends on the batch size (6 samples against 1): measured
    # ≤ 5e-5 on outputs of magnitude ≤ 16; a sample that kept its own w differs by O(0.1-1).
    assert close(x, avg.expand_as(x))                                  # every z -> the w_avg image
    assert (x - x[:1]).abs().max() < 1e-4

    k = 2
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ws = G.mapping(z).unsqueeze(1).expand(-1, G.num_ws, -1)
        hand = ws.clone()
        hand[:, :k] = G.w_avg                                          # ψ = 0 on indices < k only
        want = G.synthesis(hand, noise_mode="const").clamp(-1, 1)
        untouched = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
    task = model.task.truncated(0.0, k, G, noise_mode="const")
    got = task.generate(G, {"z": z, "y": None})
    assert close(got, want)
    assert not close(got, untouched) and not close(got, avg.expand_as(got))


def test_bad_truncation_and_cutoff_fail_in_one_line(runs):
    dc, sg = load(runs["dcgan"]), load(runs["stylegan2"])
    for psi in (0.0, 1.5, -1.0):
        with pytest.raises(GankitError, match=r"truncation=.*0 < ψ ≤ 1"):
            dc.sample(4, truncation=psi)
    with pytest.raises(GankitError, match="cutoff=2: only a style generator"):  # from Python, the keyword
        dc.sample(4, truncation=0.5, cutoff=2)
    with pytest.raises(GankitError, match=f"cutoff=99: this generator has {sg.G.num_ws} style inputs"):
        sg.sample(4, truncation=0.5, cutoff=99)


def test_sample_cli_truncation(runs, tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["sample", str(runs["dcgan"]), "-n", "8", "--truncation", "0.7", "-o", str(out)]) == 0
    import numpy as np
    with np.load(out) as f:
        x = torch.from_numpy(f["x"])
    assert torch.equal(x, load(runs["dcgan"]).sample(8, seed=0, truncation=0.7)[0])
    capsys.readouterr()
    for argv, words in ((["--truncation", "1.5"], "--truncation 1.5"), (["--truncation", "0"], "--truncation 0"),
                        (["--truncation", "0.5", "--cutoff", "2"], "--cutoff 2")):
        assert main(["sample", str(runs["dcgan"]), "-o", str(tmp_path / "x.png")] + argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "x.png").exists()


def test_a_tiny_psi_has_a_positive_threshold_and_pulls_z_to_zero(runs, tmp_path, capsys):
    """ψ below ~1.1e-16 rounded (1 + ψ)/2 to 0.5 and gave τ = 0, a ValueError in the CLI and a 500
    in the server. τ = √2·erf⁻¹(ψ) ≈ ψ·√(π/2) near 0 (the first term of erf⁻¹'s series; the next is
    relatively ψ²·π/12 smaller, so rel=1e-12 is generous)."""
    for psi in (1e-17, 1e-300, 5e-324):
        tau = psi_to_tau(psi)
        assert tau > 0 and tau == pytest.approx(psi * math.sqrt(math.pi / 2), rel=1e-12, abs=5e-324)
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    assert (resample_outside(z, psi_to_tau(1e-17), torch.Generator().manual_seed(1)).abs() <= 2e-17).all()
    out = tmp_path / "tiny.npz"
    assert main(["sample", str(runs["dcgan"]), "-n", "4", "--truncation", "1e-17", "-o", str(out)]) == 0
    capsys.readouterr()
    import numpy as np
    with np.load(out) as f:
        x = torch.from_numpy(f["x"])
    # every z is within 1.3e-17 of 0: all four samples are G(0), up to float rounding
    model = load(runs["dcgan"])
    z0 = torch.zeros(4, model.cfg.model.z_dim)
    want = model.task.generate(model.G, {"z": z0, "y": None}, batch_size=4)
    assert torch.allclose(x, want, atol=1e-5)

def test_sample_cli_states_the_range_a_style_model_takes(runs, tmp_path, capsys):
    from gankit.latent import PSI_RANGE

    assert main(["sample", str(runs["stylegan2"]), "--truncation", "1.5", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and PSI_RANGE in err[0]           # says 0 is a style generator's average image
    assert main(["sample", str(runs["stylegan2"]), "--truncation", "0", "-n", "2", "-o", str(tmp_path / "x.png")]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "style generator also takes 0" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("cmd", ["truncation", "mix"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and f"usage: gankit {cmd}" in capsys.readouterr().out


# -- the curve -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_domain_net():
    """A digits domain net for the evaluation's features (2 epochs on 1,438 8x8 images: < 1 s)."""
    from gankit.metrics.domain_net import domain_net_path, train_domain_net
    if not domain_net_path("digits").exists():
        train_domain_net(DataConfig(name="digits"), epochs=2)


def test_truncation_curve_rows_json_png_and_agreement_with_eval(runs, digits_domain_net, tmp_path):
    from gankit.evaluation import evaluate

    out = tmp_path / "curve.png"
    rows = truncation_curve(runs["dcgan"], [1.0, 0.5], n=200, seed=0, out=out)
    assert [r["psi"] for r in rows] == [1.0, 0.5]
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("fid", "precision", "recall"))
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["fid"] >= 0
    assert rows[0]["fid"] != rows[1]["fid"]                            # ψ changed the samples scored
    # ψ = 1 is exactly what gankit eval reports for the run with the same n and seed
    ref = evaluate(runs["dcgan"], metrics="fid,pr", n=200, seed=0, write=False, quiet=True)
    assert rows[0]["fid"] == pytest.approx(ref["fid"], rel=1e-9)
    assert rows[0]["precision"] == ref["precision"] and rows[0]["recall"] == ref["recall"]
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["rows"] == rows and doc["n"] == 200
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_curve(rows).splitlines()
    assert len(table) == 3 and table[0].split() == ["psi", "fid", "precision", "recall"]


def test_truncation_cli(runs, digits_domain_net, tmp_path, capsys):
    out = tmp_path / "c.png"
    assert main(["truncation", str(runs["dcgan"]), "--psi", "1,0.6", "-n", "50", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "precision" in printed and out.exists() and out.with_suffix(".json").exists()
    assert len(json.loads(out.with_suffix(".json").read_text())["rows"]) == 2
    assert main(["truncation", str(runs["dcgan"]), "--psi", "1,2", "-o", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--psi" in err[0] and not (tmp_path / "d.png").exists()
