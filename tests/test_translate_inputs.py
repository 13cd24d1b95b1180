"""`gankit translate` on a pix2pix run: side-by-side A|B inputs, renamed outputs, files it did not write."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gankit
from gankit.errors import GankitError


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rgb(seed, h, w):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny pix2pix runs (8x8, 2 steps) on side-by-side A|B files, AtoB and BtoA."""
    root = tmp_path_factory.mktemp("p2p")
    for i in range(4):
        write_png(root / "data" / "train" / f"{i}.png", rgb(i, 8, 16))
    tiny = [f"data.root={root / 'data'}", "data.resolution=8", "model.g.depth=3", "model.g.width=4",
            "model.d.width=4", "model.d.n_layers=1", "train.epochs=null", "train.steps=2", "train.log_every=1",
            "train.num_samples=2", "train.batch_size=2"]
    out = {}
    for direction in ("AtoB", "BtoA"):
        out[direction] = root / direction
        gankit.train("pix2pix-folder", tiny + [f"data.direction={direction}"], out=out[direction], quiet=True)
    return out


@pytest.mark.parametrize("direction, half", [("AtoB", slice(0, 8)), ("BtoA", slice(8, 16))])
def test_a_side_by_side_input_is_split_and_its_source_half_translated(runs, tmp_path, capsys, direction, half):
    """As pix2pix's test.py: an A|B file (twice as wide as high) is cut, the run's input half
    translated (A for AtoB, B for data.direction BtoA) — not the middle square, half A and half B."""
    pair = rgb(10, 8, 16)
    write_png(tmp_path / "in" / "pair.png", pair)
    write_png(tmp_path / "alone" / "half.png", np.ascontiguousarray(pair[:, half]))
    out = gankit.translate(runs[direction], tmp_path / "in", tmp_path / "out")
    err = capsys.readouterr().err
    side = "left half (A)" if direction == "AtoB" else "right half (B)"
    assert f"note: 1 input(s) twice as wide as high, A|B pairs as this run's training files: translating each " \
           f"one's {side}" in err
    alone = gankit.translate(runs[direction], tmp_path / "alone", tmp_path / "out_alone")
    assert pixels(out[0]).shape == (8, 8, 3)
    assert np.array_equal(pixels(out[0]), pixels(alone[0]))  # the same output as its half given alone
    middle = np.ascontiguousarray(pair[:, 4:12])  # what it translated before: the middle square
    write_png(tmp_path / "mid" / "mid.png", middle)
    mid = gankit.translate(runs[direction], tmp_path / "mid", tmp_path / "out_mid")
    assert not np.array_equal(pixels(out[0]), pixels(mid[0]))


def test_a_square_input_is_read_whole_and_says_nothing(runs, tmp_path, capsys):
    write_png(tmp_path / "in" / "sq.png", rgb(11, 8, 8))
    gankit.translate(runs["AtoB"], tmp_path / "in", tmp_path / "out")
    assert "A|B pairs" not in capsys.readouterr().err


def test_each_renamed_output_is_said(runs, tmp_path, capsys):
    """a.jpg, a.png and a_.png: a.png's output is a_.png and a_.png's is a__.png, each said in a line."""
    for name in ("a.jpg", "a.png", "a_.png"):
        write_png(tmp_path / "names" / name, rgb(12, 8, 8))
    out = gankit.translate(runs["AtoB"], tmp_path / "names", tmp_path / "out")
    assert [p.name for p in out] == ["a.png", "a_.png", "a__.png"]
    err = capsys.readouterr().err
    assert f"{tmp_path / 'names' / 'a.png'} -> {tmp_path / 'out' / 'a_.png'} (another input is also named a)" in err
    assert f"{tmp_path / 'names' / 'a_.png'} -> {tmp_path / 'out' / 'a__.png'} (another input is also named a_)" in err
    assert "a.jpg ->" not in err
    gankit.translate(runs["AtoB"], tmp_path / "names" / "a.png", tmp_path / "one.png")  # -o a file: no rename line
    assert "->" not in capsys.readouterr().err


def test_a_file_gankit_did_not_write_is_not_replaced(runs, tmp_path, capsys):
    write_png(tmp_path / "in" / "x.png", rgb(13, 8, 8))
    first = gankit.translate(runs["AtoB"], tmp_path / "in", tmp_path / "out")
    assert gankit.translate(runs["AtoB"], tmp_path / "in", tmp_path / "out") == first  # its own output: replaced
    notes = tmp_path / "out" / "x.png"
    notes.write_text("my notes")
    with pytest.raises(GankitError) as e:
        gankit.translate(runs["AtoB"], tmp_path / "in", tmp_path / "out")
    assert str(e.value).startswith(f"{notes}: the file exists and gankit did not write it") and "\n" not in str(e.value)
    assert notes.read_text() == "my notes"
    write_png(notes, rgb(14, 8, 8))  # a PNG of the user's, without gankit's provenance
    with pytest.raises(GankitError, match="gankit did not write it"):
        gankit.translate(runs["AtoB"], tmp_path / "in", tmp_path / "out")
    assert gankit.translate(runs["AtoB"], tmp_path / "in", tmp_path / "out", skip_existing=True) == []
