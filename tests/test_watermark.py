"""The invisible watermark: round trip through `gankit sample --watermark` and `gankit detect`, its
false-positive rate on 1,000 real images, its detection after JPEG quality 75, its PSNR.

The documented rates are measured by benchmarks/watermark.py (docs/provenance.md); the tolerances
below are binomial: at n trials a rate p is measured within ±3·sqrt(p(1-p)/n) 99.7 % of the time."""
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gankit
from gankit import watermark as W
from gankit.cli.main import main
from gankit.errors import GankitError
from gankit.provenance import read_provenance

KEY = "test-key"
# Rates differ from key to key; as in the benchmark, image i uses KEYS[i % 10] (keys of neither the
# benchmark nor the calibration), so the rates tested are averages over keys.
KEYS = [f"test-key-{i}" for i in range(10)]


def key(i, shift=0):
    return KEYS[(i + shift) % len(KEYS)]


def jpeg75(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=75)
    return np.asarray(Image.open(buf))


def psnr(a, b):
    return 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


@pytest.fixture(scope="module")
def fashion_test():
    from gankit.config import DataConfig
    from gankit.data import load_dataset

    return [x[0] for x in load_dataset(DataConfig(name="fashion-mnist"), "test").x[:1000].numpy()]


@pytest.fixture(scope="module")
def photo_crops():
    """64×64 crops of skimage photographs (grey and colour), fixed seed."""
    import skimage.data as sd

    rng = np.random.default_rng(1)
    src = [sd.camera(), sd.astronaut(), sd.coffee(), sd.chelsea(), sd.rocket(), sd.moon(), sd.brick()]
    out = []
    for i in range(120):
        s = src[i % len(src)]
        oy, ox = rng.integers(0, s.shape[0] - 64), rng.integers(0, s.shape[1] - 64)
        out.append(np.ascontiguousarray(s[oy:oy + 64, ox:ox + 64]))
    return out


def test_false_positive_rate_on_1000_real_images(fashion_test):
    # Documented: 1 % per image by calibration (the 99th percentile on other images and keys);
    # measured 0.3 % on these images (10 other keys), 0.0 % to 1.4 % for single keys. Binomial
    # tolerance at n = 1000 around 1 %: 1 % + 3·sqrt(0.01·0.99/1000) = 1.94 %, so at most 19 of 1000.
    scores = np.array([W.score(x, key(i)) for i, x in enumerate(fashion_test)])
    hits = scores > W.threshold(28)
    assert hits.sum() <= 19
    # Files of 64 of them judged together as `gankit detect` judges a grid: no false alarm in 15.
    assert not any(W.file_detected(int(h), 64) for h in hits[:960].reshape(15, 64).sum(1))


def test_embedding_keeps_the_psnr_and_is_invisible(photo_crops, fashion_test):
    for x in photo_crops[:20] + fashion_test[:20]:
        assert abs(psnr(W.embed_uint8(x, KEY), x) - W.PSNR_DB) < 0.3  # 8-bit rounding only
    x = torch.rand(4, 3, 32, 48) * 2 - 1                               # non-square, colour, model range
    y = W.embed(x, KEY)
    assert y.shape == x.shape and y.dtype == x.dtype and float(y.abs().max()) <= 1
    assert abs(10 * math.log10(4 / float(((y - x) ** 2).mean())) - W.PSNR_DB) < 0.3  # peak-to-peak 2


def test_round_trip_on_photographs_and_another_key(photo_crops):
    # Documented (benchmarks/watermark.py, photos-64, 500 images): 71.0 % detected clean, 70.0 % after
    # JPEG q75, 1.6 % with another key. At n = 120, 3σ is 0.125 near 0.7 and 0.034 near 0.016.
    marked = [W.embed_uint8(x, key(i)) for i, x in enumerate(photo_crops)]
    thr = W.threshold(64)
    clean = np.mean([W.score(m, key(i)) > thr for i, m in enumerate(marked)])
    other = np.mean([W.score(m, key(i, 1)) > thr for i, m in enumerate(marked)])
    assert clean >= 0.58
    assert other <= 0.05
    assert np.mean([W.score(jpeg75(m), key(i)) > thr for i, m in enumerate(marked)]) >= 0.57


def test_detection_after_jpeg_of_28px_images(fashion_test):
    # One 28×28 image carries little of the pattern at 38 dB: documented 6.8 % detected after JPEG
    # q75 (500 images), against 0.3 % of unmarked ones. At n = 300, 3σ is 0.044: at least 2.5 %.
    marked = [W.embed_uint8(x, key(i)) for i, x in enumerate(fashion_test[:300])]
    hits = np.array([W.score(jpeg75(m), key(i)) > W.threshold(28) for i, m in enumerate(marked)])
    assert hits.mean() >= 0.025


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("wm") / "digits"
    gankit.train("dcgan-digits", ["model.g.width=8", "model.d.width=8", "train.batch_size=16", "train.steps=10",
                                  "train.threads=1", "train.log_every=5"], out=out, quiet=True)
    return out


def test_sample_watermark_then_detect(image_run, tmp_path, capsys):
    for name in ("w.png", "w.npz"):
        f = str(tmp_path / name)
        assert main(["sample", str(image_run), "-n", "16", "-o", f, "--watermark", KEY]) == 0
        assert read_provenance(f)["watermark"] == W.METHOD  # the method, never the key
        assert KEY not in Path(f).read_bytes().decode("latin-1")
        capsys.readouterr()
        assert main(["detect", f, "--key", KEY]) == 0
        assert "DETECTED" in capsys.readouterr().out
        assert main(["detect", f, "--key", "wrong"]) == 1
        assert "no watermark" in capsys.readouterr().out
    # the same samples unmarked: not detected
    f = str(tmp_path / "plain.png")
    assert main(["sample", str(image_run), "-n", "16", "-o", f]) == 0
    assert not W.detect_file(f, KEY).detected
    det = W.detect_file(tmp_path / "w.png", KEY)
    assert len(det.scores) == 16  # the grid was split into its 16 images by its recorded layout


def test_user_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(GankitError, match="vectors"):
        W.embed(torch.zeros(3, 2), KEY)
    with pytest.raises(GankitError, match="key"):
        W.embed(torch.zeros(1, 1, 8, 8), "")
    assert main(["detect", str(tmp_path / "none.png"), "--key", "k"]) == 2
    (tmp_path / "t.txt").write_text("hello")
    assert main(["detect", str(tmp_path / "t.txt"), "--key", "k"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
