"""Speech through the engine: spectrogram datasets, a conditional spectrogram GAN sampled to WAVs,
voice conversion of WAV files of any length, the speech scores, and the report's audio players in a
real Chromium. One tiny corpus (3 voices, 3 digits, 5 takes) made once for the module."""

import numpy as np
import pytest
import soundfile as sf
import torch

from gankit.audio.spectrogram import SpecSettings
from gankit.cli.main import main
from gankit.config import DataConfig, load_config
from gankit.data import load_dataset
from gankit.errors import ConfigError, GankitError
from gankit.train.run import train

SPEAKERS = ("flite-slt", "flite-rms", "espeak-en-us")
TEXTS = ("zero", "one", "two")
TAKES = 5
S = SpecSettings()
SPEC_GAN = ["model.conditional=true", "model.g.width=8", "model.g.embed_dim=8", "model.d.width=8",
            "train.steps=6", "train.batch_size=8", "train.threads=1", "train.log_every=3", "health.enabled=false"]
VC = ["model.g.width=4", "model.g.n_blocks=1", "model.d.width=4", "train.steps=4", "train.batch_size=2",
      "train.threads=1", "train.minutes=null", "train.log_every=2", "health.enabled=false"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from gankit.audio.corpus import make_corpus

    root = tmp_path_factory.mktemp("speech") / "corpus"
    make_corpus(root, speakers=SPEAKERS, texts=TEXTS, takes=TAKES, seed=0)
    return root


@pytest.fixture(scope="module")
def spec_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("specgan") / "run"
    train("specgan-digits", [f"data.root={corpus}", "train.minutes=null", *SPEC_GAN], out=out, quiet=True)
    return out


@pytest.fixture(scope="module")
def vc_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("vc") / "run"
    train("cyclegan-voices", [f"data.root={corpus}", *VC], out=out, quiet=True)
    return out


def test_spoken_digits_are_64x128_spectrogram_images_with_held_out_takes(corpus):
    train_ds = load_dataset(DataConfig(name="spoken-digits", root=str(corpus)), "train")
    test_ds = load_dataset(DataConfig(name="spoken-digits", root=str(corpus)), "test")
    per = len(SPEAKERS) * len(TEXTS)
    assert (len(train_ds), len(test_ds)) == (per * (TAKES - 1), per)          # take 4 of 0..4 held out
    assert train_ds.x.dtype == torch.uint8 and train_ds.sample_shape == (1, S.n_mels, S.frames)
    assert train_ds.num_classes == 3 and sorted(train_ds.y.unique().tolist()) == [0, 1, 2]
    assert train_ds.info["audio"]["classes"] == list(TEXTS)
    assert train_ds.info["audio"]["speakers"] == sorted(SPEAKERS)
    batch = train_ds.batch(torch.arange(4))
    assert batch["x"].dtype == torch.float32 and -1 <= batch["x"].min() and batch["x"].max() <= 1
    # silence pads each word: the first and last columns sit at the floor (-1) in most mel bands
    edges = torch.cat([batch["x"][..., 0], batch["x"][..., -1]])
    assert (edges < -0.9).float().mean() > 0.8
    by_speaker = load_dataset(DataConfig(name="spoken-digits", root=str(corpus),
                                         options={"label": "speaker", "speakers": ["flite-rms", "flite-slt"]}), "test")
    assert by_speaker.num_classes == 3 and len(by_speaker) == 2 * len(TEXTS)
    assert set(by_speaker.y.tolist()) == {sorted(SPEAKERS).index("flite-rms"), sorted(SPEAKERS).index("flite-slt")}
    small = load_dataset(DataConfig(name="spoken-digits", root=str(corpus), options={"spectrogram": {"n_mels": 32,
                                                                                                   "frames": 64}}))
    assert small.sample_shape == (1, 32, 64)


@pytest.mark.parametrize("overrides, match", [
    (["data.options.frames=64"], r"data\.options\.frames: unknown key for spoken-digits"),
    (["data.options.spectrogram.hops=64"], r"data\.options\.spectrogram\.hops: unknown key"),
    (["data.options.label=gender"], r"data\.options\.label: invalid value 'gender'"),
    (["data.name=fashion-mnist", "data.options.label=digit"], r"dataset 'fashion-mnist' takes no options"),
])
def test_bad_audio_options_fail_in_one_line_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("specgan-digits", overrides)


def test_bad_audio_folders_fail_in_one_line(corpus, tmp_path):
    with pytest.raises(GankitError, match="is not a folder"):
        load_dataset(DataConfig(name="spoken-digits", root=str(tmp_path / "nowhere")))
    with pytest.raises(GankitError, match="spectrogram's size is set by data.options.spectrogram"):
        load_dataset(DataConfig(name="spoken-digits", root=str(corpus), resolution=32))
    with pytest.raises(GankitError, match="'nobody' is not a speaker"):
        load_dataset(DataConfig(name="voices", root=str(corpus), options={"speakers": ["flite-slt", "nobody"]}))


def test_voices_pairs_two_speakers_unpaired_with_digits_for_scoring_only(corpus):
    ds = load_dataset(DataConfig(name="voices", root=str(corpus)), "train")
    assert not ds.paired and ds.info["audio"]["pair"] == ["flite-slt", "flite-rms"]
    assert len(ds.a) == len(ds.b) == len(TEXTS) * (TAKES - 1)
    assert ds.num_classes == 0 and ds.label_classes == 3          # labels never reach the networks
    flipped = load_dataset(DataConfig(name="voices", root=str(corpus), direction="BtoA"), "train")
    assert torch.equal(flipped.a, ds.b) and torch.equal(flipped.b, ds.a)
    paths = ds.info["utterances"]["flite-slt"]
    assert all("flite-slt" in p for p, _, _ in paths) and [d for _, d, _ in paths] == ds.a_labels.tolist()


def test_a_spectrogram_gan_samples_to_wav_files_of_its_classes(spec_run, tmp_path):
    out = tmp_path / "digits"
    assert main(["sample", str(spec_run), "-n", "4", "-o", str(out)]) == 0
    wavs = sorted(out.glob("*.wav"))
    assert [w.name for w in wavs] == ["0_zero.wav", "1_one.wav", "2_two.wav", "3_zero.wav"]
    audio, rate = sf.read(wavs[0])
    assert rate == S.sample_rate and audio.shape == ((S.frames - 1) * S.hop,)
    assert (out / "spectrograms.png").stat().st_size > 0
    ones = ["sample", str(spec_run), "-n", "2", "--class", "1", "--griffin-lim", "4", "-o", str(tmp_path / "ones")]
    assert main(ones) == 0
    assert sorted(p.name for p in (tmp_path / "ones").glob("*.wav")) == ["0_one.wav", "1_one.wav"]
    assert main(["sample", str(spec_run), "-n", "2", "-o", str(tmp_path / "x.wav")]) == 2   # one line, exit 2
    assert main(["sample", str(spec_run), "-n", "2", "--griffin-lim", "0", "-o", str(tmp_path / "y")]) == 2


def test_voice_conversion_writes_a_wav_of_the_inputs_length_at_any_length(vc_run, corpus, tmp_path, capsys):
    word = sorted((corpus / "flite-slt").glob("*.wav"))[0]
    out = tmp_path / "out.wav"
    assert main(["translate", str(vc_run), str(word), "-o", str(out)]) == 0
    assert " -> " not in capsys.readouterr().err   # -o names the file: nothing was renamed
    a, ra = sf.read(word)
    b, rb = sf.read(out)
    assert rb == ra == S.sample_rate and b.shape == a.shape and np.abs(b).max() > 0
    # 3 s at 22,050 Hz: resampled to 16 kHz, longer than one 128-frame chunk, converted chunk by chunk
    long = np.concatenate([a] * 6)
    sf.write(tmp_path / "long.wav", np.interp(np.linspace(0, len(long) - 1, int(len(long) * 22050 / 16000)),
                                              np.arange(len(long)), long), 22050)
    assert main(["translate", str(vc_run), str(tmp_path / "long.wav"), "-o", str(tmp_path / "conv")]) == 0
    c, rc = sf.read(tmp_path / "conv" / "long.wav")
    assert rc == S.sample_rate and abs(len(c) - len(long)) <= 1
    capsys.readouterr()
    (tmp_path / "conv" / "long.wav").write_bytes(b"my own recording")   # the user's file now: never replaced
    assert main(["translate", str(vc_run), str(tmp_path / "long.wav"), "-o", str(tmp_path / "conv")]) == 2
    assert "long.wav: the file exists and gankit did not write it" in capsys.readouterr().err
    assert (tmp_path / "conv" / "long.wav").read_bytes() == b"my own recording"
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEnot really")
    with pytest.raises(GankitError, match="bad.wav: not a readable sound file"):
        from gankit.api import translate
        translate(vc_run, [tmp_path / "bad.wav"], tmp_path / "o")


def test_chunked_conversion_with_an_identity_translator_gives_back_the_spectrogram():
    from gankit.audio.render import convert
    from gankit.audio.spectrogram import logmel

    t = np.arange(int(2.5 * S.sample_rate)) / S.sample_rate
    audio = (0.5 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 1.5 * t)) / 2).astype(np.float32)
    calls = []

    def identity(x):
        calls.append(len(x))
        return x

    y, spec_in, spec_out = convert(identity, audio, S, n_iter=8)
    assert sum(calls) == 4 and y.shape == audio.shape                 # 313 frames: 4 chunks of 128, hop 64
    np.testing.assert_allclose(spec_out, spec_in, atol=1e-6)
    np.testing.assert_allclose(spec_in, logmel(audio, S))
    import warnings
    with warnings.catch_warnings():  # a click of 100 samples, shorter than one STFT window: no librosa warning
        warnings.simplefilter("error")
        y, _, _ = convert(identity, audio[:100], S, n_iter=4)
    assert y.shape == (100,)


def test_speech_scores(spec_run, vc_run, monkeypatch):
    from gankit.evaluation import evaluate, evaluate_translation
    from gankit.metrics import domain_net

    # The corpus's digit and speaker classifiers train for their 30 epochs (30 full-batch steps on this
    # tiny corpus), not the 150-step floor a real corpus gets: the floor cost 70 s of the suite here, and
    # this test checks that the scores are computed and bounded, not how good the classifiers are.
    monkeypatch.setattr(domain_net, "MIN_STEPS", 30)

    res = evaluate(spec_run, metrics="fid,class_acc,voices", n=30, quiet=True)
    assert 0 <= res["class_acc"] <= 1 and 0 <= res["class_acc_real"] <= 1
    assert 1 <= res["speakers"] <= 3 and 1 <= res["speakers_real"] <= 3
    scores = evaluate_translation(vc_run, write=False)
    for direction in ("AtoB", "BtoA"):
        r = scores[direction]
        assert r["n"] == len(TEXTS) and r["n_mcd"] == len(TEXTS)   # every held-out take has its pair
        assert all(0 <= r[k] <= 1 for k in ("target_speaker", "digit_kept", "target_speaker_input"))
        assert np.isfinite(r["mcd"]) and r["mcd_input"] > 0
    assert "voice" in scores["protocol"]
    assert "not_computed" not in scores["protocol"]  # the image translators' reasons do not apply to speech


def test_effective_number_of_speakers():
    from gankit.metrics.audio import effective_number

    big = 50.0
    one_voice = torch.tensor([[big, 0, 0]] * 6)
    even = torch.tensor([[big, 0, 0], [0, big, 0], [0, 0, big]] * 2)
    assert effective_number(one_voice) == pytest.approx(1.0, abs=1e-9)
    assert effective_number(even) == pytest.approx(3.0, abs=1e-9)
    half = torch.tensor([[big, 0, 0], [0, big, 0]])
    assert effective_number(half) == pytest.approx(2.0, abs=1e-9)


def test_report_plays_the_audio_in_headless_chromium(spec_run, vc_run, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.test_report import CHROMIUM, CHROMIUM_ARGS

    pages = []
    for run in (spec_run, vc_run):
        assert main(["report", str(run)]) == 0
        pages.append(run / "report.html")
        assert pages[-1].read_text().count("<audio controls") == (3 if run == spec_run else 2 * len(TEXTS))
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            states = []
            for path in pages:
                page.goto(path.as_uri())
                page.wait_for_load_state("load")
                ready = "() => Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1)"
                page.wait_for_function(ready, timeout=20_000)
                states.append(page.evaluate("() => Array.from(document.querySelectorAll('audio')).map("
                                            "a => [a.readyState, a.duration, a.error === null])"))
        finally:
            browser.close()
    want = (S.frames - 1) * S.hop / S.sample_rate
    for state in states:
        assert state and all(ready >= 1 and abs(duration - want) < 1e-3 and ok for ready, duration, ok in state), state
