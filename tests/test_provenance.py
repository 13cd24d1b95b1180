"""Every PNG, NPZ and WAV gankit writes carries its provenance; `gankit inspect` prints it."""
import hashlib
import json
import re
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gankit
from gankit.audio_io import read_wav, read_wav_info, write_wav
from gankit.cli.main import main
from gankit.errors import GankitError
from gankit.provenance import context, format_provenance, read_provenance

TINY = ["train.threads=1", "train.log_every=5", "train.steps=10"]
GANKIT = Path(gankit.__file__).parent


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prov") / "digits"
    gankit.train("dcgan-digits", ["model.g.width=8", "model.d.width=8", "train.batch_size=16", *TINY],
                 out=out, quiet=True)
    return out


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prov") / "ring"
    gankit.train("gan-ring8", TINY, out=out, quiet=True)
    return out


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prov") / "p2p"
    gankit.train("pix2pix-edges2fashion", ["data.limit=64", "model.g.width=8", "model.d.width=8", "train.batch_size=8",
                                           "train.minutes=null", *TINY], out=out, quiet=True)
    return out


def check_training_file(path, run_dir):
    rec = read_provenance(path)
    assert rec["gankit"] == gankit.__version__
    assert rec["made_by"] == "gankit.train" and rec["run"] == Path(run_dir).name
    assert rec["checkpoint_sha256"] is None and "no checkpoint" in rec["note"]  # says why, gives the step
    assert isinstance(rec["step"], int) and rec["seed"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rec["date"])
    return rec


@pytest.mark.parametrize("which", ["image_run", "vector_run", "pix2pix_run"])
def test_every_png_a_training_run_writes_has_provenance(which, request):
    run_dir = request.getfixturevalue(which)
    pngs = sorted(run_dir.rglob("*.png"))
    assert run_dir / "curves.png" in pngs and len(list((run_dir / "samples").glob("step_*.png"))) >= 2
    for p in pngs:
        rec = check_training_file(p, run_dir)
        if p.parent.name == "samples":  # each grid names its own step
            assert rec["step"] == int(p.stem.split("_")[1])


def test_sample_png_and_npz_carry_the_checkpoint_hash(image_run, tmp_path, capsys):
    for name in ("s.png", "s.npz"):
        assert main(["sample", str(image_run), "-n", "4", "-o", str(tmp_path / name), "--seed", "7"]) == 0
        rec = read_provenance(tmp_path / name)
        assert rec["made_by"] == "gankit.sample" and rec["seed"] == 7 and rec["truncation"] is None
        assert rec["checkpoint"] == "latest.safetensors" and rec["step"] == 10 and rec["recipe"] == "dcgan-digits"
        assert rec["checkpoint_sha256"] == sha256(image_run / "checkpoints" / "latest.safetensors")
        assert rec["watermark"] is None
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:  # readable without pickle, data intact
        assert z["x"].shape == (4, 1, 16, 16) and json.loads(str(z["provenance"]))["seed"] == 7
    # --checkpoint best hashes that file
    assert main(["sample", str(image_run), "-n", "4", "-o", str(tmp_path / "b.png"), "--checkpoint", "best"]) == 0
    assert read_provenance(tmp_path / "b.png")["checkpoint_sha256"] == sha256(image_run / "checkpoints" / "best.safetensors")


def test_vector_samples_scatter_png_and_interpolation(vector_run, image_run, tmp_path):
    assert main(["sample", str(vector_run), "-n", "100", "-o", str(tmp_path / "v.png")]) == 0  # matplotlib figure
    assert read_provenance(tmp_path / "v.png")["run"] == "ring"
    assert main(["sample", str(image_run), "--interpolate", "-o", str(tmp_path / "i.png")]) == 0
    assert read_provenance(tmp_path / "i.png")["made_by"] == "gankit.sample"


def test_translate_outputs_carry_provenance(pix2pix_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(src / f"e{i}.png")
    for side in (False, True):
        out = gankit.translate(pix2pix_run, src, tmp_path / f"out{side}", side_by_side=side)
        assert len(out) == 2
        for p in out:
            rec = read_provenance(p)
            assert rec["made_by"] == "gankit.translate" and rec["direction"] == "AtoB"
            assert rec["checkpoint_sha256"] == sha256(pix2pix_run / "checkpoints" / "latest.safetensors")


def test_wav_round_trip_with_info_chunk(tmp_path):
    t = np.linspace(0, 1, 8000, endpoint=False)
    audio = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 220 * t)], 1)
    with context(made_by="test", seed=5, run="r"):
        write_wav(tmp_path / "a.wav", audio, 8000)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and back.shape == (8000, 2)
    assert np.abs(back - audio).max() <= 0.5 / 32767 + 1e-6  # 16-bit rounding only
    with wave.open(str(tmp_path / "a.wav")) as w:  # the standard reader accepts the extra chunk
        assert w.getnframes() == 8000 and w.getnchannels() == 2
    info = read_wav_info(tmp_path / "a.wav")
    assert info["ISFT"] == f"gankit {gankit.__version__}" and info["ICRD"].endswith("Z")
    rec = read_provenance(tmp_path / "a.wav")
    assert rec["seed"] == 5 and rec["made_by"] == "test"


def test_context_nests_and_ends():
    with context(run="outer", seed=1):
        with context(seed=2):
            from gankit.provenance import current
            assert current()["run"] == "outer" and current()["seed"] == 2
        assert current()["seed"] == 1
    assert current()["seed"] is None and current()["made_by"] is None


def test_inspect_prints_one_key_per_line_and_fails_clearly(image_run, tmp_path, capsys):
    png = sorted((image_run / "samples").glob("step_*.png"))[-1]
    assert main(["inspect", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["gankit", gankit.__version__]
    assert any(l.split() == ["step", "10"] for l in out)
    assert format_provenance(read_provenance(png)).splitlines() == out
    plain = tmp_path / "plain.png"
    Image.new("L", (8, 8)).save(plain)
    for bad, words in ((plain, "no gankit provenance"), (tmp_path / "x.txt", "no such file")):
        assert main(["inspect", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(GankitError, match="no gankit provenance"):
        read_provenance(tmp_path / "plain.npz")


def test_command_line_is_recorded(image_run, tmp_path, monkeypatch):
    out = tmp_path / "c.png"
    # what `python -m gankit sample ...` (or the console script) leaves in sys.argv
    monkeypatch.setattr(sys, "argv", [str(GANKIT / "__main__.py"), "sample", str(image_run), "-o", str(out)])
    assert main(sys.argv[1:]) == 0
    assert read_provenance(out)["command"] == f"gankit sample {image_run} -o {out}"
    monkeypatch.setattr(sys, "argv", ["/usr/bin/python3", "my_script.py"])
    gankit.sample(image_run, n=2, out=out)
    assert read_provenance(out)["command"] is None  # the API from another program: made_by says it


# Calls that make PNG / NPZ bytes, and the provenance argument each must pass on the same line.
WRITERS = {r"\.savefig\(": "metadata=", r"format=\"PNG\"": "pnginfo=", r"np\.savez\w*\(": "npz_field"}
# Calls that make pictures that never become files of their own.
EXEMPT = {"report.py": "figures inlined into report.html as data: URIs"}


def test_every_png_and_npz_writer_in_gankit_passes_provenance():
    missing = []
    for path in GANKIT.rglob("*.py"):
        rel = path.relative_to(GANKIT).as_posix()
        if rel in EXEMPT:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            for call, arg in WRITERS.items():
                if re.search(call, line) and arg not in line and not line.lstrip().startswith(("#", '"')):
                    missing.append(f"gankit/{rel}:{i}: {line.strip()}")
    assert not missing, "writers without provenance (see gankit/provenance.py):\n" + "\n".join(missing)
