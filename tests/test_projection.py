"""Projection into a generator's latent space (gankit/steer/projection.py, gankit project)."""
import numpy as np
import pytest
import torch
from PIL import Image

from gankit.api import load
from gankit.cli.main import main
from gankit.data.base import to_uint8
from gankit.errors import GankitError
from gankit.steer.projection import (load_latent, project, noise_regularization, pixel_mse, project_tensor, psnr,
                                     renormalize_noise)
from gankit.train.run import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def style_run(tmp_path_factory, tiny_overrides):
    o = tiny_overrides
    return train("dcgan-digits", o["tiny"] + o["style"], out=tmp_path_factory.mktemp("p") / "style", quiet=True).dir


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory, tiny_overrides):
    o = tiny_overrides
    return train("dcgan-digits", o["tiny"] + o["dcgan"], out=tmp_path_factory.mktemp("p") / "dcgan", quiet=True).dir


def generated(G, seed=3, n=1):
    """Images G makes from known w (constant noise), and those w."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = G.mapping(torch.randn(n, G.z_dim, generator=g))
        return G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const"), w


def test_noise_regularization_matches_a_hand_computation():
    # 4x4: one level. Rolling by one along x pairs pixel (i, j) with (i, j-1 mod 4).
    v = torch.arange(16.0).reshape(1, 1, 4, 4) / 7 - 1
    a = v[0, 0]
    ax = sum(a[i, j] * a[i, (j - 1) % 4] for i in range(4) for j in range(4)) / 16
    ay = sum(a[i, j] * a[(i - 1) % 4, j] for i in range(4) for j in range(4)) / 16
    assert noise_regularization([v]).item() == pytest.approx((ax ** 2 + ay ** 2).item(), rel=1e-6)
    # 16x16: the map, then its 2x2 average (8x8), where the pyramid stops; maps add up
    u = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))

    def level(m):
        h, w = m.shape
        return (sum(m[i, j] * m[i, (j - 1) % w] for i in range(h) for j in range(w)) / (h * w)) ** 2 + \
               (sum(m[i, j] * m[(i - 1) % h, j] for i in range(h) for j in range(w)) / (h * w)) ** 2

    half = u[0, 0].reshape(8, 2, 8, 2).mean((1, 3))
    expected = level(u[0, 0]) + level(half) + (ax ** 2 + ay ** 2)
    assert noise_regularization([u, v]).item() == pytest.approx(expected.item(), rel=1e-5)
    # white noise scores far lower than a smooth map of the same variance
    smooth = torch.linspace(-1.7, 1.7, 16).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    assert noise_regularization([u]).item() < 0.05 * noise_regularization([smooth]).item()


def test_renormalize_noise_gives_zero_mean_unit_std():
    maps = [torch.randn(1, 1, 8, 8) * 5 + 3, torch.rand(1, 1, 4, 4) - 7]
    renormalize_noise(maps)
    for m in maps:  # float32: removing a mean of -7 leaves rounding of ~7 · 2⁻²⁴ per pixel
        assert abs(m.mean().item()) < 1e-5
        assert m.square().mean().sqrt().item() == pytest.approx(1.0, abs=1e-6)


def test_psnr_on_the_unit_range():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[1] += 0.2  # 0.1 on [0, 1]: MSE 0.01 -> 20 dB
    assert psnr(x, y).tolist() == pytest.approx([100.0, 20.0], abs=1e-4)


def test_pixel_mse_treats_saturated_pixels_as_matched_beyond_the_range():
    target = torch.tensor([1.0, -1.0, 0.5, 1.0]).view(1, 1, 1, 4)
    out = torch.tensor([1.7, -2.0, 0.9, 0.6]).view(1, 1, 1, 4)
    # pixels 0 and 1 overshoot a saturated target: no error; 2 and 3 count as usual
    assert pixel_mse(out, target).item() == pytest.approx((0.4 ** 2 + 0.4 ** 2) / 4)


def test_projection_recovers_an_image_the_model_made(style_run):
    # 80 steps reach ~27 dB and 250 steps ~32 dB on this net (measured); 30 dB is a picture whose
    # pixels are off by 3 % of the range (RMS).
    G = load(style_run).G
    x, w = generated(G)
    rec = {}
    _, _, short = project_tensor(G, x, steps=80, space="w", w_avg_samples=1000)
    latent, recon, long = project_tensor(G, x, steps=250, space="w", w_avg_samples=1000, record=rec)
    assert long.item() >= 30 and long.item() > short.item() + 3
    assert latent.shape == (1, G.w_dim) and recon.shape == x.shape
    assert rec["loss"].shape == (1, 250) and rec["loss"][0, -1] < 1e-3 * rec["loss"][0, 0]
    assert len(rec["noise"][0]) == len(G.synthesis.noise_buffers())
    # G itself is untouched (a copy was optimised)
    again, _ = generated(G)
    assert torch.equal(again, x)


def test_w_plus_has_one_w_per_style(style_run):
    G = load(style_run).G
    x, _ = generated(G, seed=4)
    latent, _, value = project_tensor(G, x, steps=100, space="w+", w_avg_samples=1000, optimize_noise=False)
    assert latent.shape == (1, G.num_ws, G.w_dim)
    assert value.item() > 24  # measured ~27 dB


def test_z_projection_of_a_dcgan_lowers_the_loss(dcgan_run):
    G = load(dcgan_run).G
    with torch.no_grad():
        x = G(torch.randn(2, 16, generator=torch.Generator().manual_seed(1)), None)
    rec = {}
    _, _, short = project_tensor(G, x, steps=20, space="z", z_dim=16)
    latent, _, long = project_tensor(G, x, steps=200, space="z", record=rec, z_dim=16)
    assert latent.shape == (2, 16)
    assert (rec["loss"][:, -1] < 0.2 * rec["loss"][:, 0]).all()
    assert (long > short).all()
    with pytest.raises(GankitError, match="no style"):
        project_tensor(G, x, steps=1, space="w", z_dim=16)


def test_feature_term_uses_the_domain_network(style_run, tmp_path, monkeypatch):
    from gankit.metrics.domain_net import domain_net_path, load_domain_net, train_domain_net
    from gankit.steer.projection import activations, feature_distance, feature_network

    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))  # a network of its own, trained below
    model = load(style_run)
    net, note = feature_network(model.cfg.data, "auto")
    assert net is None and "pixel MSE only" in note
    path = train_domain_net(model.cfg.data, epochs=1, limit=64, path=domain_net_path("digits", model.cfg.data))
    net, note = feature_network(model.cfg.data, "auto")
    assert net is not None and "feature distance" in note
    x, _ = generated(model.G, n=2)
    acts = activations(net, x[:1])
    d = feature_distance(net, x, [a.expand(2, *a.shape[1:]) for a in acts])
    assert d[0].item() == pytest.approx(0.0, abs=1e-10) and d[1].item() > 1e-3
    _, _, value = project_tensor(model.G, x[:1], steps=250, feature_net=load_domain_net(path)[0],
                                 w_avg_samples=1000)
    assert value.item() > 28  # measured ~33 dB with the feature term


def test_project_api_writes_the_three_files(style_run, tmp_path):
    model = load(style_run)
    x, _ = generated(model.G, seed=7)
    Image.fromarray(to_uint8(x[0, 0]).numpy()).save(tmp_path / "digit.png")
    results = project(style_run, tmp_path / "digit.png", tmp_path / "out", steps=250, w_avg_samples=1000)
    (r,) = results
    assert r["name"] == "digit.png" and r["psnr"] > 28
    projected, latent_file, pair = r["files"]
    assert [f.name for f in r["files"]] == ["digit-projected.png", "digit-latent.safetensors",
                                            "digit-side-by-side.png"]
    assert Image.open(pair).size == (32, 16)  # target | reconstruction
    latent, space, noise, meta = load_latent(latent_file)
    assert space == "w" and meta["psi"] == "1.0" and latent.shape == (1, model.G.w_dim)
    # the saved latent and noise maps render the saved reconstruction
    G = model.G
    for buf, m in zip(G.synthesis.noise_buffers(), noise):
        buf.copy_(m)
    with torch.no_grad():
        again = G.synthesis(latent.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const")
    assert np.array_equal(np.asarray(Image.open(projected)), to_uint8(again[0, 0]).numpy())


def test_cli_help_and_a_missing_image(style_run, tmp_path, capsys):
    # in-process: main() is what the console script runs, without a second interpreter's start-up
    with pytest.raises(SystemExit) as exit_:
        main(["project", "--help"])
    assert exit_.value.code == 0 and "usage: gankit project" in capsys.readouterr().out
    missing = tmp_path / "nope.png"
    assert main(["project", str(style_run), str(missing), "-o", str(tmp_path / "out"), "--steps", "2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0]
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    with pytest.raises(GankitError, match="bad.png"):
        project(style_run, bad, tmp_path / "out", steps=2)


def test_cli_prints_psnr_per_image_and_mean(dcgan_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))  # empty: no domain network cached
    G = load(dcgan_run).G
    with torch.no_grad():
        x = G(torch.randn(2, 16, generator=torch.Generator().manual_seed(2)), None)
    for i in range(2):
        Image.fromarray(to_uint8(x[i, 0]).numpy()).save(tmp_path / f"im{i}.png")
    assert main(["project", str(dcgan_run), str(tmp_path / "im0.png"), str(tmp_path / "im1.png"),
                 "-o", str(tmp_path / "out"), "--steps", "30"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0].startswith("im0.png: PSNR ") and lines[1].startswith("im1.png: PSNR ")
    values = [float(l.split("PSNR ")[1].split()[0]) for l in lines[:2]]
    assert float(lines[2].split("mean PSNR ")[1].split()[0]) == pytest.approx(sum(values) / 2, abs=0.01)
    assert "pixel MSE only" in err
    assert len(list((tmp_path / "out").iterdir())) == 6
