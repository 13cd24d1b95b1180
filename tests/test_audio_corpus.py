"""The spoken-digit corpus (gankit/audio/corpus.py): a tiny corpus built with both synthesisers, its
files and manifest, determinism under the seed, reading it back and reading a user folder, the CLI,
resampling and the one-line errors."""
import csv
import json
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf

import gankit.audio_io
from gankit.audio.corpus import (COLUMNS, DIGITS, PEAK, PITCH_SEMITONES, RATE, SNR_DB, finish, load_wav, make_corpus,
                                 parse_speaker, plan, read_corpus)
from gankit.audio_io import write_wav
from gankit.cli.main import main
from gankit.errors import GankitError
from gankit.provenance import read_provenance

SPEAKERS = ["espeak-en-us", "flite-slt"]
TEXTS = ["one", "7"]  # "7" means "seven"
TAKES = 2


def fixed_provenance(monkeypatch):
    """Files written from here carry a fixed provenance record (the real one holds the date)."""
    monkeypatch.setattr(gankit.audio_io, "current", lambda: {"gankit": "test", "date": "2026-01-01T00:00:00Z"})


def build(root, seed=0, **kw):
    return make_corpus(root, speakers=kw.pop("speakers", SPEAKERS), texts=kw.pop("texts", TEXTS),
                       takes=kw.pop("takes", TAKES), seed=seed, **kw)


def samples(path):
    """The bytes of a WAV's `data` chunk (its audio, without the provenance chunk)."""
    data = path.read_bytes()
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"data":
            return data[pos + 8:pos + 8 + size]
        pos += 8 + size + size % 2
    raise AssertionError(f"{path}: no data chunk")


def one_line_error(fn, *words):
    with pytest.raises(GankitError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    return msg


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    summary = build(root)
    return root, summary


def read_manifest(root):
    with open(root / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_files_and_manifest(corpus):
    root, summary = corpus
    rows = read_manifest(root)
    assert len(rows) == len(SPEAKERS) * len(TEXTS) * TAKES == summary["counts"]["files"]
    assert tuple(rows[0]) == COLUMNS
    wavs = sorted(str(p.relative_to(root)) for p in root.rglob("*.wav"))
    assert wavs == sorted(r["path"] for r in rows)
    assert "flite-slt/flite-slt_seven_01.wav" in wavs and "espeak-en-us/espeak-en-us_one_00.wav" in wavs
    for r in rows:
        assert r["label"] == str(DIGITS.index(r["text"]))  # the digit, not the text's index
        assert r["engine"] == {"espeak-en-us": "espeak-ng", "flite-slt": "flite"}[r["speaker"]]
        assert PITCH_SEMITONES[0] <= float(r["pitch"]) <= PITCH_SEMITONES[1]
        assert RATE[0] <= float(r["rate"]) <= RATE[1] and SNR_DB[0] <= float(r["snr_db"]) <= SNR_DB[1]
        info = sf.info(str(root / r["path"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == round(float(r["seconds"]) * 16000)
        assert 0.2 < info.duration < 1.5  # one word, silence trimmed
        audio = load_wav(root / r["path"])
        assert abs(np.abs(audio).max() - PEAK) < 1e-3  # peak-normalised
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["seed"] == 0 and meta["settings"]["texts"] == ["one", "seven"]
    assert set(meta["tools"]) == {"espeak-ng", "flite"} and meta["counts"]["seconds"] > 1


def test_same_seed_same_bytes_other_seed_differs(corpus, tmp_path, monkeypatch):
    root, _ = corpus
    fixed_provenance(monkeypatch)
    build(tmp_path / "a", seed=0, jobs=2)
    build(tmp_path / "b", seed=0)
    build(tmp_path / "c", seed=1)
    rows = read_manifest(root)
    for r in rows:
        a, b, c = (tmp_path / d / r["path"] for d in "abc")
        assert a.read_bytes() == b.read_bytes()          # whole files, threads or not
        assert samples(a) == samples(root / r["path"])   # the audio of a build at another time
        assert samples(a) != samples(c)
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()
    assert read_manifest(tmp_path / "c") != rows


def test_jitter_streams_are_per_file():
    both = plan(["flite-slt", "espeak-en-us"], ["one", "two"], 3, seed=5)
    alone = plan(["espeak-en-us"], ["two"], 3, seed=5)
    assert [t for t in both if t.speaker == "espeak-en-us" and t.text == "two"] == alone
    assert len({t.pitch for t in both}) == len(both)


def test_finish_trims_adds_noise_at_the_snr_and_normalises():
    t = np.arange(4000) / 16000
    speech = 0.3 * np.sin(2 * np.pi * 200 * t)
    audio = np.concatenate([np.zeros(2000), speech, np.zeros(2000)]).astype(np.float32)
    out = finish(audio, 30.0, np.random.default_rng(0))
    assert 4000 <= out.size <= 4000 + 2 * 512  # trimmed to the tone, up to a frame each side
    assert np.abs(out).max() == pytest.approx(PEAK)
    # the same draw by hand: noise power = speech power / 10^(30/10) over the trimmed span
    span, _ = __import__("librosa").effects.trim(audio, top_db=40, frame_length=512, hop_length=128)
    power = np.mean(span.astype(np.float64) ** 2)
    noise = np.random.default_rng(0).standard_normal(span.size) * np.sqrt(power / 1000)
    expect = (span + noise) * (PEAK / np.abs(span + noise).max())
    np.testing.assert_allclose(out, expect, atol=1e-6)


def test_read_corpus_from_manifest(corpus):
    root, _ = corpus
    utts = read_corpus(root)
    assert len(utts) == 8 and {u.speaker for u in utts} == set(SPEAKERS)
    assert sorted({(u.text, u.label) for u in utts}) == [("one", 1), ("seven", 7)]
    assert {u.take for u in utts} == {0, 1} and all(u.path.is_file() for u in utts)
    audio = utts[0].load()
    assert audio.dtype == np.float32 and audio.ndim == 1


def test_read_user_folder(tmp_path):
    tone = 0.5 * np.sin(np.linspace(0, 100, 8000))
    write_wav(tmp_path / "bob" / "hello.wav", tone, 16000)
    write_wav(tmp_path / "alice" / "day1" / "yes.wav", tone, 16000)
    write_wav(tmp_path / "alice" / "no.wav", tone, 16000)
    (tmp_path / "alice" / ".DS_Store").write_bytes(b"x")  # hidden: skipped
    (tmp_path / "README.txt").write_text("about")          # beside the sub-folders: ignored
    utts = read_corpus(tmp_path, sample_rate=8000)
    assert [(u.speaker, u.text, u.label) for u in utts] == [("alice", "yes", 0), ("alice", "no", 0),
                                                            ("bob", "hello", 1)]
    assert utts[2].load().shape == (4000,)  # read at the rate asked


@pytest.mark.speech
def test_cli_make(tmp_path, capsys):
    out = tmp_path / "digits"
    rc = main(["data", "make", "spoken-digits", str(out), "--speakers", "flite-rms", "--texts", "3", "4",
               "--takes", "1", "--seed", "3", "--jobs", "2"])
    assert rc == 0
    said = capsys.readouterr().out
    assert "wrote 2 files" in said and "flite-rms" in said
    assert sorted(p.name for p in (out / "flite-rms").iterdir()) == ["flite-rms_four_00.wav", "flite-rms_three_00.wav"]
    assert [u.label for u in read_corpus(out)] == [3, 4]
    record = read_provenance(out / "flite-rms" / "flite-rms_four_00.wav")  # written by a pool thread
    assert record["made_by"] == "gankit.audio.make_corpus" and record["seed"] == 3


@pytest.mark.speech  # flite lists its voices
def test_cli_bad_speaker_is_one_line(tmp_path, capsys):
    rc = main(["data", "make", "spoken-digits", str(tmp_path), "--speakers", "flite-nobody", "--takes", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "flite-nobody" in err and "slt" in err


def test_resamples_and_mixes_down(tmp_path):
    rate = 22050
    t = np.arange(int(0.5 * rate)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    write_wav(tmp_path / "s.wav", np.stack([left, left], axis=1), rate)
    audio = load_wav(tmp_path / "s.wav", 16000)
    assert audio.shape == (8000,) and audio.dtype == np.float32  # 0.5 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * 16000 / audio.size == pytest.approx(440, abs=2)  # the same tone
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.01)


def test_one_line_errors(tmp_path, corpus, monkeypatch):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    one_line_error(lambda: load_wav(bad), str(bad), "not a readable")
    one_line_error(lambda: load_wav(tmp_path / "none.wav"), "none.wav", "no such file")
    (tmp_path / "empty").mkdir()
    one_line_error(lambda: read_corpus(tmp_path / "empty"), "empty", "no WAV, FLAC, OGG, Opus, MP3 or AIFF files")
    (tmp_path / "mixed" / "alice").mkdir(parents=True)
    (tmp_path / "mixed" / "alice" / "one.txt").write_bytes(b"words")
    one_line_error(lambda: read_corpus(tmp_path / "mixed"), "one.txt", "not a WAV, FLAC, OGG, Opus, MP3 or AIFF")
    root, _ = corpus
    before = sorted(p.name for p in root.rglob("*"))
    one_line_error(lambda: build(root, seed=1), str(root), "holds a corpus of other settings")  # nothing orphaned
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    one_line_error(lambda: build(tmp_path / "mine"), "not empty and not a corpus gankit made")
    assert sorted(p.name for p in root.rglob("*")) == before and (tmp_path / "mine" / "notes.txt").exists()
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "flite-slt" / "flite-slt_one_00.wav").unlink()
    one_line_error(lambda: read_corpus(copy), "manifest.csv line", "flite-slt_one_00.wav", "missing")
    one_line_error(lambda: parse_speaker("mary"), "mary", "espeak-")
    one_line_error(lambda: build(tmp_path / "x", speakers=["espeak-en-us+nosuch"]), "nosuch", "variant")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    one_line_error(lambda: build(tmp_path / "y"), "apt-get install espeak-ng", "scripts/setup.sh")


def test_a_users_folder_takes_flac_and_skips_hidden_files(tmp_path):
    """FLAC beside WAV, and the `._x.wav` files macOS leaves in a folder's root, as users' folders have them."""
    import soundfile as sf

    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(8000) / 16000)
    for speaker, suffix in (("alice", ".wav"), ("bob", ".flac")):
        (tmp_path / speaker).mkdir()
        sf.write(tmp_path / speaker / f"one{suffix}", tone, 16000)
    (tmp_path / "._one.wav").write_bytes(b"\0\5\x16\7")       # AppleDouble metadata, not sound
    (tmp_path / "bob" / "._one.flac").write_bytes(b"\0\5\x16\7")
    utts = read_corpus(tmp_path)
    assert sorted((u.speaker, u.path.suffix) for u in utts) == [("alice", ".wav"), ("bob", ".flac")]
    assert np.allclose(utts[1].load(), tone, atol=1e-3)
