"""Output safety and reuse of the style tools: outputs checked before work, gankit replaces only files it
wrote, projected latents used again (sample/edit --latent), class-true latent walks with shared noise,
finite edit strengths and the provenance of edits and projections."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import gankit.steer.projection as projection
from gankit.api import load, sample
from gankit.cli.main import main
from gankit.data.base import to_uint8
from gankit.errors import GankitError
from gankit.provenance import read_provenance
from gankit.steer.directions import edit, strengths_between
from gankit.steer.mixing import mix
from gankit.steer.projection import project, sample_latent
from gankit.steer.truncation import truncation_curve
from gankit.train.run import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_overrides):
    o = tiny_overrides
    root = tmp_path_factory.mktemp("so")
    return {"style": train("dcgan-digits", o["tiny"] + o["style"], out=root / "style", quiet=True).dir,
            "cstyle": train("dcgan-digits", o["tiny"] + o["style"] + ["model.conditional=true", "seed=1"],
                            out=root / "cstyle", quiet=True).dir,
            "dcgan": train("dcgan-digits", o["tiny"] + o["dcgan"], out=root / "dcgan", quiet=True).dir}


@pytest.fixture(scope="module")
def images(runs, tmp_path_factory):
    """A folder with two of the style model's own pictures."""
    folder = tmp_path_factory.mktemp("imgs")
    G = load(runs["style"]).G
    with torch.no_grad():
        w = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(5)))
        x = G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const")
    for i in range(2):
        Image.fromarray(to_uint8(x[i, 0]).numpy()).save(folder / f"own{i}.png")
    return folder


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def no_optimising(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the projection started before its outputs were checked")
    monkeypatch.setattr(projection, "project_tensor", refuse)


# -- 1. project checks -o before optimising ------------------------------------------------------

def test_project_checks_its_output_before_optimising(runs, images, tmp_path, capsys, monkeypatch):
    no_optimising(monkeypatch)
    existing = tmp_path / "own1.png"
    existing.write_bytes((images / "own1.png").read_bytes())
    run = str(runs["style"])
    assert main(["project", run, str(images / "own0.png"), "-o", str(existing), "--steps", "2"]) == 2
    assert "-o " in one_line(capsys) and existing.read_bytes() == (images / "own1.png").read_bytes()
    assert main(["project", run, str(images / "own0.png"), "-o", str(tmp_path / "x.png"), "--steps", "2"]) == 2
    assert "a file name" in one_line(capsys) and not (tmp_path / "x.png").exists()  # no folder named x.png
    # an output gankit did not write is never replaced
    out = tmp_path / "out"
    out.mkdir()
    (out / "own0-latent.safetensors").write_text("my notes")
    assert main(["project", run, str(images / "own0.png"), "-o", str(out), "--steps", "2"]) == 2
    line = one_line(capsys)
    assert "own0-latent.safetensors" in line and "gankit did not write it" in line
    assert (out / "own0-latent.safetensors").read_text() == "my notes"


def test_project_never_projects_its_own_outputs_again(runs, images, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    first = project(runs["style"], folder, folder / "out", steps=2, w_avg_samples=100, features="none")
    second = project(runs["style"], folder, folder / "out", steps=2, w_avg_samples=100, features="none")
    assert [r["name"] for r in first] == [r["name"] for r in second] == ["own0.png", "own1.png"]
    assert sorted(p.name for p in (folder / "out").iterdir()) == sorted(
        f"own{i}{s}" for i in range(2) for s in projection.OUTPUT_SUFFIXES)  # replaced, no -projected-projected


# -- 2. edit strengths must be finite ------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_edit_refuses_a_strength_that_is_not_finite(runs, tmp_path, capsys, value):
    out = tmp_path / "x.png"
    assert main(["edit", str(runs["style"]), "--direction", "sefa:0", f"--strength={value}", "-o", str(out)]) == 2
    assert f"--strength {value}" in one_line(capsys) and not out.exists()
    with pytest.raises(GankitError, match="strengths="):
        edit(runs["style"], "sefa:0", float(value), out=out)
    with pytest.raises(GankitError, match="finite"):
        edit(runs["style"], "sefa:0", [0.0, float(value)], out=out)
    assert not out.exists()


# -- 3. and 5. latent walks: the class is honoured, the noise shared ------------------------------

def test_interpolate_walks_within_the_class_with_constant_noise(runs, tmp_path, capsys):
    model = load(runs["cstyle"])
    G = model.G
    x7 = model.interpolate(rows=2, steps=4, seed=0, label=7)
    x0 = model.interpolate(rows=2, steps=4, seed=0, label=0)
    assert (x7 - x0).abs().max() > 1e-3  # the class is used
    # every frame is G(z, 7) with the constant noise maps: the walk changes only the latent
    g = torch.Generator().manual_seed(0)
    from gankit.latent import slerp
    a, b = torch.randn(2, 16, generator=g), torch.randn(2, 16, generator=g)
    z = slerp(a.unsqueeze(1), b.unsqueeze(1), torch.linspace(0, 1, 4).view(1, 4, 1)).reshape(8, -1)
    with torch.no_grad():
        expected = G(z, torch.full((8,), 7), noise_mode="const").clamp(-1, 1)
    assert torch.allclose(x7, expected, atol=1e-5)
    out = tmp_path / "walk.png"
    sample(runs["cstyle"], n=2, out=out, label=7, interpolate=True)
    assert read_provenance(out)["label"] == 7
    assert main(["sample", str(runs["cstyle"]), "--interpolate", "--class", "99", "-o", str(tmp_path / "b.png")]) == 2
    assert "--class 99" in one_line(capsys)


# -- 4. gankit replaces only files it wrote -------------------------------------------------------

def test_single_file_outputs_replace_only_gankit_files(runs, tmp_path, capsys):
    run = str(runs["style"])
    mine = tmp_path / "mine.png"
    mine.write_text("a text file")
    for argv in (["sample", run, "-o", str(mine)], ["mix", run, "-o", str(mine)],
                 ["edit", run, "--direction", "sefa:0", "-o", str(mine)]):
        assert main(argv) == 2
        assert str(mine) in one_line(capsys) and mine.read_text() == "a text file"
    # a file gankit wrote is replaced
    ours = tmp_path / "ours.png"
    sample(run, n=4, out=ours, seed=0)
    before = ours.read_bytes()
    assert main(["sample", run, "-n", "4", "--seed", "1", "-o", str(ours)]) == 0
    assert ours.read_bytes() != before
    with pytest.raises(GankitError, match="ours.npz"):
        (tmp_path / "ours.npz").write_bytes(b"PK not an npz")
        sample(run, n=2, out=tmp_path / "ours.npz")


def test_truncation_refuses_to_replace_the_json_it_did_not_write(runs, tmp_path):
    notes = tmp_path / "results.json"
    notes.write_text('{"my": "important notes"}')
    with pytest.raises(GankitError, match="results.json.*did not write"):
        truncation_curve(runs["dcgan"], [1.0], n=4, out=tmp_path / "results.png")
    assert json.loads(notes.read_text()) == {"my": "important notes"}


def test_curve_json_carries_provenance_and_may_be_replaced(tmp_path):
    from gankit.api import written_by_gankit
    from gankit.steer.truncation import curve_json

    path = tmp_path / "c.json"
    path.write_text(curve_json([{"psi": 1.0, "fid": 1.0, "precision": 0.5, "recall": 0.5}], {"n": 4}))
    doc = json.loads(path.read_text())
    assert "gankit" in doc["provenance"] and doc["rows"][0]["psi"] == 1.0
    assert written_by_gankit(path)
    path.write_text('{"provenance": "mine"}')
    assert not written_by_gankit(path)


# -- 6. a projected latent used again --------------------------------------------------------------

def test_projected_latent_renders_again_in_sample_and_edit(runs, images, tmp_path, capsys):
    (r,) = project(runs["style"], images / "own0.png", tmp_path / "p", steps=5, w_avg_samples=100, features="none")
    projected, latent, _ = r["files"]
    from safetensors import safe_open
    with safe_open(str(latent), framework="pt") as f:
        meta = f.metadata()
    assert meta["run"] == "style" and len(meta["checkpoint_sha256"]) == 64 and meta["label"] == ""
    again = tmp_path / "again.png"
    assert main(["sample", str(runs["style"]), "--latent", str(latent), "-o", str(again)]) == 0
    target = np.asarray(Image.open(projected))
    grid = np.asarray(Image.open(again))
    # the grid of one image may be enlarged: compare the image the NPZ holds too
    npz = tmp_path / "again.npz"
    sample_latent(runs["style"], latent, out=npz)   # the same from Python
    x = torch.from_numpy(np.load(npz)["x"])
    assert np.array_equal(to_uint8(x[0, 0]).numpy(), target)
    assert grid.ndim >= 2 and read_provenance(again)["latent"] == latent.name
    strip = tmp_path / "strip.png"
    xs, _ = edit(runs["style"], "sefa:0", 2.0, steps=5, out=strip, latent=latent)
    assert xs.shape[0] == 5 and np.array_equal(to_uint8(xs[2, 0]).numpy(), target)  # strength 0: the projection
    # another model is refused in one line
    capsys.readouterr()
    for other in ("cstyle", "dcgan"):
        assert main(["sample", str(runs[other]), "--latent", str(latent), "-o", str(tmp_path / "o.png")]) == 2
        assert "not this model" in one_line(capsys)
    assert main(["edit", str(runs["cstyle"]), "--direction", "sefa:0", "--latent", str(latent),
                 "-o", str(tmp_path / "o.png")]) == 2
    assert "not this model" in one_line(capsys)


# -- 7. provenance --------------------------------------------------------------------------------

def test_edit_and_project_record_class_space_and_rounded_strengths(runs, images, tmp_path):
    out = tmp_path / "e.png"
    edit(runs["cstyle"], "sefa:0", 3.0, steps=7, n=1, label=7, out=out)
    record = read_provenance(out)
    assert record["label"] == 7 and record["strengths"] == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert strengths_between(3.0, 7)[4] == 1.0
    (r,) = project(runs["cstyle"], images / "own0.png", tmp_path / "p", steps=2, label=3, w_avg_samples=100,
                   features="none")
    record = read_provenance(r["files"][0])
    assert record["space"] == "w" and record["label"] == 3


# -- 8. messages and whole numbers ----------------------------------------------------------------

def test_psi_errors_name_psi_and_fractional_counts_are_refused(runs, tmp_path, capsys):
    assert main(["truncation", str(runs["dcgan"]), "--psi", "1,0", "-n", "4", "-o", str(tmp_path / "t.png")]) == 2
    line = one_line(capsys)
    assert "--psi 0.0" in line and "--truncation" not in line
    with pytest.raises(GankitError, match="coarse=2.7"):
        mix(runs["style"], out=tmp_path / "m.png", coarse=2.7)
    with pytest.raises(GankitError, match="cutoff=2.5"):
        load(runs["style"]).sample(2, truncation=0.5, cutoff=2.5)


# -- 9. class-conditional truncation ---------------------------------------------------------------

def test_psi_zero_of_a_conditional_style_model_is_the_class_average(runs, tmp_path):
    x7, _ = edit(runs["cstyle"], "sefa:0", 1.0, steps=1, n=2, label=7, psi=0.0, out=tmp_path / "a.png")
    x0, _ = edit(runs["cstyle"], "sefa:0", 1.0, steps=1, n=2, label=0, psi=0.0, out=tmp_path / "b.png")
    assert torch.equal(x7[0], x7[1])                  # every latent of class 7 gives the class-7 average
    assert (x7[0] - x0[0]).abs().max() > 1e-3          # which is not class 0's
    G = load(runs["cstyle"]).G
    with torch.no_grad():
        mean7 = G.class_w_avg(torch.tensor([7]))
        ref = G.synthesis(mean7.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(x7[:1], ref, atol=1e-5, rtol=0)
