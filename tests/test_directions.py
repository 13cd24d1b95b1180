"""Latent directions (SeFa, class means) and edit strips (gankit/steer/directions.py, gankit edit)."""
import numpy as np
import pytest
import torch
from PIL import Image

from gankit.api import load
from gankit.cli.main import main
from gankit.data.base import to_uint8
from gankit.errors import GankitError
from gankit.nets import NETWORKS
from gankit.steer.directions import (Direction, edit, available, class_direction, model_classifier, model_directions,
                                     render_edit, resolve, sefa, strengths_between)
from gankit.train.run import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def style_run(tmp_path_factory, tiny_overrides):
    o = tiny_overrides
    return train("dcgan-digits", o["tiny"] + o["style"], out=tmp_path_factory.mktemp("d") / "style", quiet=True).dir


def style_g(arch="stylegan2", num_classes=0, w_dim=32, seed=0):
    # first style affine: w_dim -> 16 channels (width 64 // side 4), so rank(A) = 16 < w_dim = 32
    torch.manual_seed(seed)
    return NETWORKS.get(arch).generator(z_dim=8, sample_shape=(1, 16, 16), num_classes=num_classes, w_dim=w_dim,
                                        mapping_layers=2, width=64, max_width=16).eval()


def dcgan_g(seed=0):
    torch.manual_seed(seed)
    return NETWORKS.get("dcgan").generator(z_dim=8, sample_shape=(1, 16, 16), num_classes=0, width=8).eval()


@pytest.mark.parametrize("arch", ["stylegan", "stylegan2"])
def test_sefa_gives_descending_orthonormal_eigenvectors_of_ata(arch):
    G = style_g(arch)
    a = G.affines()[0]
    A = a.weight.detach().double() * a.scale  # the affine as applied: (16, 32); StyleGAN's AdaIN (32, 32)
    r = min(A.shape)                          # (scale and bias per channel)
    V, lam = sefa(G)
    assert V.shape == (r, 32) and lam.shape == (r,)               # rank(A) directions
    V, lam = V.double(), lam.double()
    M = A.T @ A
    # float32 results of a float64 eigendecomposition: residuals ~1e-7 relative to the largest λ
    assert torch.allclose(V @ M, lam[:, None] * V, atol=1e-5 * lam[0].item())
    assert torch.allclose(V @ V.T, torch.eye(r, dtype=torch.float64), atol=1e-6)
    assert (lam[:-1] >= lam[1:]).all() and lam[-1] > 0
    assert torch.allclose((V @ A.T).square().sum(1), lam, rtol=1e-5)  # λ = ‖A v‖²
    # the first direction moves the style most: no unit vector does better, and λ₀ = σ_max(A)²
    u = torch.randn(5000, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u = u / u.norm(dim=1, keepdim=True)
    assert (u @ A.T).square().sum(1).max() <= lam[0] * (1 + 1e-6)
    assert lam[0].item() == pytest.approx(torch.linalg.svdvals(A)[0].item() ** 2, rel=1e-5)
    # the paper's "all layers" variant factorises every affine stacked
    A_all = torch.cat([f.weight.detach().double() * f.scale for f in G.affines()])
    V_all, lam_all = sefa(G, k=5, all_layers=True)
    assert torch.allclose(V_all.double() @ (A_all.T @ A_all), lam_all.double()[:, None] * V_all.double(),
                          atol=1e-5 * lam_all[0].item())
    assert lam_all[0].item() == pytest.approx(torch.linalg.svdvals(A_all)[0].item() ** 2, rel=1e-5)


def test_class_direction_of_a_conditional_generator_is_the_difference_of_class_means():
    G = style_g(num_classes=3, w_dim=16)
    d = class_direction(G, 0, 2, n=64, seed=5)
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(5))  # the same z for both classes
    with torch.no_grad():
        mean = [G.mapping(z, torch.full((64,), c)).mean(0) for c in (0, 2)]
    assert d.name == "class:0-2" and d.space == "w"
    assert torch.allclose(d.vector, mean[1] - mean[0], atol=1e-6)
    with pytest.raises(GankitError, match="classes 0..2"):
        class_direction(G, 0, 3, n=8)


def brightness_classes(x):
    """A stand-in classifier: class 1 for images brighter than 0 on average, else 0."""
    return (x.mean((1, 2, 3)) > 0).long()


def test_a_class_direction_that_is_mostly_sampling_noise_says_so(capsys):
    """The error of a difference of two means is sqrt(tr Σa/ka + tr Σb/kb): over a quarter of the
    direction's length (or a class seen once) is a note; 1,000 samples of this G are not."""
    from gankit.steer.directions import sampling_error

    x = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    # the error of a mean of 400 unit-variance samples in 16 dims is sqrt(16/400) = 0.2
    assert sampling_error([x]) == pytest.approx(0.2, rel=0.1) and sampling_error([x[:1]]) == float("inf")
    G = style_g(w_dim=16)
    class_direction(G, 0, 1, n=1000, seed=2, classify=brightness_classes)
    assert capsys.readouterr().err == ""
    class_direction(G, 0, 1, n=100, seed=2, classify=brightness_classes)
    err = capsys.readouterr().err
    assert err.startswith("note: class:0-1: estimated from 21 and 79 sample(s); its sampling error is about ")
    class_direction(G, 0, 1, n=10, seed=2, classify=brightness_classes)
    assert "from 1 and 9 sample(s); its sampling error is unknown (one sample)" in capsys.readouterr().err


def test_class_direction_of_an_unconditional_generator_averages_classified_latents():
    G = style_g(w_dim=16)
    d = class_direction(G, 0, 1, n=100, seed=2, classify=brightness_classes)
    z = torch.randn(100, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        w = G.mapping(z)
        labels = brightness_classes(G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const"))
    assert 0 < labels.sum() < 100  # both classes present, so the test means something
    assert torch.allclose(d.vector, w[labels == 1].mean(0) - w[labels == 0].mean(0), atol=1e-5)
    # a generator without a style space: the same in z
    D = dcgan_g()
    dz = class_direction(D, 0, 1, n=100, seed=2, classify=brightness_classes, z_dim=8)
    with torch.no_grad():
        labels = brightness_classes(D(z, None))
    assert dz.space == "z" and 0 < labels.sum() < 100
    assert torch.allclose(dz.vector, z[labels == 1].mean(0) - z[labels == 0].mean(0), atol=1e-6)
    with pytest.raises(GankitError, match="none of 20 samples was classified as class 5"):
        class_direction(G, 0, 5, n=20, classify=brightness_classes)


def test_names_sefa_limits_and_unknown_directions():
    G = style_g()
    assert available(G, classifier_classes=10) == ["sefa:0..sefa:15", "sefa-all:0..sefa-all:31",
                                                    "class:A-B (A ≠ B in 0..9)"]
    assert torch.equal(resolve(G, "sefa:3").vector, sefa(G, 4)[0][3])
    for bad in ("sefa:16", "up", "class:0-10"):
        with pytest.raises(GankitError, match=r"unknown; this model offers sefa:0\.\.sefa:15"):
            resolve(G, bad, classifier_classes=10)
    D = dcgan_g()
    assert available(D, num_classes=0) == ["class:A-B (classes of the dataset's domain network)"]
    with pytest.raises(GankitError, match="SeFa needs a style generator.*this model offers class:A-B"):
        resolve(D, "sefa:0", z_dim=8)
    with pytest.raises(GankitError, match="SeFa needs a style generator"):
        sefa(D)


def test_strengths_are_symmetric_with_an_exact_zero():
    assert strengths_between(2.0, 5) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert strengths_between(3.0, 7)[3] == 0.0 and strengths_between(1.0, 1) == [0.0]


def test_z_edit_of_a_dcgan_keeps_the_middle_column():
    D = dcgan_g()
    d = Direction("class:0-1", "z", torch.randn(8, generator=torch.Generator().manual_seed(9)), "test")
    x = render_edit(D, d, [-1.0, 0.0, 1.0], n=2, seed=4, z_dim=8)
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        plain, moved = D(z, None), D(z + d.vector, None)
    assert x.shape == (6, 1, 16, 16)
    assert torch.equal(x[1], plain[0]) and torch.equal(x[4], plain[1])
    assert torch.allclose(x[5], moved[1], atol=1e-6)


def test_edit_strip_middle_column_is_the_unedited_image(style_run, tmp_path):
    out = tmp_path / "strip.png"
    x, d = edit(style_run, "sefa:0", 2.0, seed=3, n=3, out=out, steps=5)
    assert d.name == "sefa:0" and x.shape == (15, 1, 16, 16)
    picture = np.asarray(Image.open(out))
    assert picture.shape == (3 * 16, 5 * 16)  # rows x cols tiles, no padding
    G = load(style_run).G
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain = G.synthesis(G.mapping(z).unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const").clamp(-1, 1)
    for i in range(3):  # the same w; batches of 5 and 3 may sum in another order: float32 rounding only
        assert torch.allclose(x[5 * i + 2], plain[i], atol=1e-5)
        tile = picture[16 * i:16 * (i + 1), 32:48].astype(int)
        assert np.abs(tile - to_uint8(plain[i, 0]).numpy().astype(int)).max() <= 1
        assert (x[5 * i] - plain[i]).abs().max() > 1e-3  # the ends are edited
    # strength s moves w by s along the unit direction: column 4 is w + 2·v
    with torch.no_grad():
        w = G.mapping(z[:1]) + 2.0 * d.vector
        far = G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const").clamp(-1, 1)
    assert torch.allclose(x[4], far[0], atol=1e-5)


def test_unconditional_class_directions_use_the_domain_network(style_run, tmp_path, monkeypatch):
    from gankit.metrics.domain_net import domain_net_path, train_domain_net

    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    model = load(style_run)
    assert model_directions(model)[-1] == "class:A-B (classes of the dataset's domain network)"
    train_domain_net(model.cfg.data, epochs=1, limit=64, path=domain_net_path("digits", model.cfg.data))
    assert model_directions(model)[-1] == "class:A-B (A ≠ B in 0..9)"
    classify, k = model_classifier(model)
    x = model.G(torch.randn(6, 16), noise_mode="const")
    labels = classify(x)
    assert k == 10 and labels.shape == (6,) and labels.dtype == torch.int64 and 0 <= labels.min() <= labels.max() < 10


def test_cli_help_list_and_an_unknown_direction(style_run, tmp_path, capsys):
    # in-process: main() is what the console script runs, without a second interpreter's start-up
    with pytest.raises(SystemExit) as exit_:
        main(["edit", "--help"])
    assert exit_.value.code == 0 and "usage: gankit edit" in capsys.readouterr().out
    assert main(["edit", str(style_run), "--list"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["sefa:0..sefa:15", "sefa-all:0..sefa-all:15"]
    assert main(["edit", str(style_run), "--direction", "smile", "-o", str(tmp_path / "s.png")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "--direction smile: unknown" in lines[0] and "sefa:0..sefa:15" in lines[0] and "class:A-B" in lines[0]
    assert not (tmp_path / "s.png").exists()
    assert main(["edit", str(style_run), "--direction", "sefa:1", "-n", "2", "--steps", "3",
                 "-o", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == (3 * 16, 2 * 16)


# -- truncation, clamping and refusals of gankit edit ---------------------------------------------

@pytest.mark.parametrize("psi", ["nan", "5", "1.5", "-0.5"])
def test_edit_refuses_a_truncation_sample_would_refuse(style_run, tmp_path, capsys, psi):
    out = tmp_path / "s.png"
    assert main(["edit", str(style_run), "--direction", "sefa:0", f"--truncation={psi}", "-o", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--truncation" in lines[0] and "0 < ψ ≤ 1" in lines[0]
    assert not out.exists()


def test_edit_truncation_is_applied_and_recorded(style_run, tmp_path):
    x, _ = edit(style_run, "sefa:0", 1.0, seed=2, n=2, out=tmp_path / "avg.png", steps=3, psi=0.0)
    assert torch.allclose(x[1], x[4], atol=1e-5)  # ψ = 0 (style generators): every row is the average image
    edit(style_run, "sefa:0", 1.0, seed=2, n=2, out=tmp_path / "half.png", steps=3, psi=0.5)
    import json
    assert json.loads(Image.open(tmp_path / "half.png").text["gankit"])["truncation"] == 0.5
    # a generator without a style space resamples z as gankit sample does: the unedited column is G(z at ψ)
    from gankit.tasks import GenerationTask
    G = dcgan_g()
    d = Direction("class:0-1", "z", torch.ones(8), "")
    x = render_edit(G, d, [0.0, 1.0], n=3, seed=4, psi=0.5, z_dim=8, num_classes=0)
    z = GenerationTask(8).truncated(0.5, None, G).seeded(3, 4)["z"]
    assert z.abs().max() <= 0.675 and torch.allclose(x[0::2], G(z), atol=1e-5)
    with pytest.raises(GankitError, match="truncation=0.0"):
        render_edit(G, d, [0.0], n=1, psi=0.0, z_dim=8, num_classes=0)  # 0 is a style generator's average image only


def test_edit_images_are_clamped_like_samples():
    G = style_g()
    d = Direction("sefa:0", "w", sefa(G, 1)[0][0], "")
    x = render_edit(G, d, [-40.0, 40.0], n=2, seed=0)
    with torch.no_grad():
        w = G.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))[:1] + 40.0 * d.vector
        raw = G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const")
    assert raw.abs().max() > 1                        # G's linear output overshoots here
    assert x.min() >= -1 and x.max() <= 1 and torch.allclose(x[1], raw[0].clamp(-1, 1), atol=1e-5)


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    return train("cgan-fashion-mnist", ["data.name=digits", "data.resolution=16", "data.limit=64", "train.steps=2",
                                        "train.batch_size=8", "model.g.width=8", "model.d.width=8", "model.z_dim=16"],
                 out=tmp_path_factory.mktemp("d") / "cgan", quiet=True).dir


def test_edit_refusals_are_one_line(style_run, cgan_run, tmp_path, capsys):
    out = str(tmp_path / "s.png")
    assert main(["edit", str(style_run), "--direction", "class:0-1", "--samples", "0", "-o", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--samples 0" in err[0]
    with pytest.raises(GankitError, match="samples=0: "):  # from Python, the keyword
        class_direction(style_g(num_classes=3), 0, 1, n=0)
    # a conditional generator without styles has no directions: --list says why and what to use
    assert main(["edit", str(cgan_run), "--list"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1
    assert "no latent directions" in err[0] and "gankit sample --class" in err[0]
    assert main(["edit", str(cgan_run), "--direction", "sefa:0", "-o", out]) == 2
    err = capsys.readouterr().err
    assert "gankit sample --class" in err and err.count("SeFa needs") == 1  # said once, not twice
