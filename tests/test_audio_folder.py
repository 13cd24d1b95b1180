"""Speech from a user's own folder of WAVs (DIR/alice/*.wav, DIR/bob/*.wav): the sub-folders name the
classes, voice conversion is scored on what such a folder can say (the speaker, not the words), and
the cached classifiers follow the corpus's content. One tiny corpus (2 voices, 2 digits, 5 takes)."""

import math
import shutil

import pytest
import torch

from gankit.config import DataConfig
from gankit.data import load_dataset
from gankit.train.run import train

VC = ["model.g.width=4", "model.g.n_blocks=1", "model.d.width=4", "train.steps=2", "train.batch_size=2",
      "train.threads=1", "train.minutes=null", "train.log_every=2", "health.enabled=false"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from gankit.audio.corpus import make_corpus

    root = tmp_path_factory.mktemp("speech") / "corpus"
    make_corpus(root, speakers=("flite-slt", "flite-rms"), texts=("zero", "one"), takes=5, seed=0)
    return root


@pytest.fixture(scope="module")
def folder(corpus, tmp_path_factory):
    """The corpus as a user would have it: one sub-folder per speaker, no manifest."""
    root = tmp_path_factory.mktemp("user") / "voices"
    for speaker, name in (("flite-slt", "alice"), ("flite-rms", "bob")):
        shutil.copytree(corpus / speaker, root / name)
    return root


def test_a_user_folder_names_its_classes_by_sub_folder(folder):
    ds = load_dataset(DataConfig(name="spoken-digits", root=str(folder)), "train")
    assert ds.info["audio"]["classes"] == ["alice", "bob"]       # not the first file's stem
    assert ds.num_classes == 2
    vc = load_dataset(DataConfig(name="voices", root=str(folder)), "train")
    assert vc.a_labels is None and vc.label_classes == 0         # the folder index is no content label
    assert all(d is None and t is None for _, d, t in vc.info["utterances"]["alice"])


@pytest.fixture(scope="module")
def folder_run(folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("vc") / "run"
    train("cyclegan-voices", [f"data.root={folder}", "data.options.speakers=[alice,bob]", *VC], out=run, quiet=True)
    return run


def test_voice_conversion_in_a_user_folder_reports_the_speaker_and_says_why_not_the_content(folder_run):
    from gankit.evaluation import evaluate_translation

    run = folder_run
    scores = evaluate_translation(run, write=False)
    for direction in ("AtoB", "BtoA"):
        r = scores[direction]
        assert 0 <= r["target_speaker"] <= 1 and 0 <= r["target_speaker_input"] <= 1
        assert not {"digit_kept", "digit_input", "mcd", "mcd_input"} & set(r)
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in r.values())
    note = scores["protocol"]["not_computed"]
    assert "digit_kept, mcd" in note and "no content labels" in note and note.count("digit_kept") == 1


def test_a_corpus_rebuilt_in_the_same_folder_gets_new_classifiers(tmp_path):
    """The digit and speaker classifiers are cached by the content of the train split (domain_key), not
    by the folder's path: a corpus made again in place with other takes trains new ones."""
    from gankit.audio.corpus import make_corpus
    from gankit.metrics.audio import classifier_cfg
    from gankit.metrics.domain_net import domain_key

    root = tmp_path / "corpus"
    cfg = DataConfig(name="spoken-digits", root=str(root))
    keys = []
    for seed in (0, 1):
        shutil.rmtree(root, ignore_errors=True)
        make_corpus(root, speakers=("flite-slt", "flite-rms"), texts=("zero", "one"), takes=5, seed=seed)
        keys.append({label: domain_key("spoken-digits", classifier_cfg(cfg, label)) for label in ("digit", "speaker")})
    assert keys[0]["digit"] != keys[0]["speaker"]
    assert keys[0]["digit"] != keys[1]["digit"] and keys[0]["speaker"] != keys[1]["speaker"]


def test_class_acc_with_a_domain_network_of_other_classes_does_not_advise_the_domain_network():
    from types import SimpleNamespace

    from gankit.metrics.class_acc import _class_acc_metric

    logits = SimpleNamespace(logits=torch.zeros(4, 7))
    ctx = SimpleNamespace(fake_labels=torch.zeros(4, dtype=torch.int64), real_labels=torch.zeros(4, dtype=torch.int64),
                          fake_features=logits, real_features=logits, dataset=SimpleNamespace(num_classes=3, name="x"),
                          extractor=SimpleNamespace(name="domain-spoken-digits-0123456789"))
    with pytest.raises(ValueError, match="3 classes; the domain network domain-spoken-digits-0123456789 has 7") as e:
        _class_acc_metric(ctx)
    assert "--features domain" not in str(e.value)


def test_translating_a_folder_of_sounds_checks_every_file_first_takes_ogg_and_mp3_and_says_where_clashes_went(
        folder_run, folder, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from gankit.api import translate
    from gankit.errors import GankitError

    word, rate = sf.read(sorted((folder / "alice").glob("*.wav"))[0])
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "a.wav", word, rate)
    sf.write(src / "sub" / "a.wav", word, rate)                      # the same name in a sub-folder
    sf.write(src / "c.ogg", word, rate, format="OGG", subtype="VORBIS")
    sf.write(src / "d.mp3", word, rate, format="MP3")
    (src / "zz.wav").write_bytes(b"RIFF0000WAVEnot really")         # sorted last: found before any output
    out = tmp_path / "out"
    with pytest.raises(GankitError, match=r"zz\.wav: not a readable sound file"):
        translate(folder_run, [src], out, griffin_lim_iters=2)
    assert not list(out.rglob("*.wav"))                              # nothing written before the check
    (src / "zz.wav").unlink()
    written = translate(folder_run, [src], out, griffin_lim_iters=2)
    assert sorted(p.name for p in written) == ["a.wav", "a_.wav", "c.wav", "d.wav"]
    assert f"{src / 'sub' / 'a.wav'} -> {out / 'a_.wav'}" in capsys.readouterr().err
    assert all(abs(len(sf.read(p)[0]) - len(word)) <= 1 and np.abs(sf.read(p)[0]).max() > 0 for p in written)


def test_a_wav_louder_than_full_scale_is_scaled_down_not_clipped(tmp_path):
    import numpy as np

    from gankit.audio_io import read_wav, write_wav

    t = np.arange(16000) / 16000
    loud = 1.214 * np.sin(2 * np.pi * 220 * t)                # as Griffin-Lim gave a 60 s conversion
    back, _ = read_wav(write_wav(tmp_path / "loud.wav", loud, 16000))
    np.testing.assert_allclose(back[:, 0], loud / 1.214, atol=1 / 32767)   # the shape kept, no flat tops
    assert np.abs(back).max() == pytest.approx(1.0, abs=1 / 32767)
    quiet, _ = read_wav(write_wav(tmp_path / "quiet.wav", 0.5 * np.sin(2 * np.pi * 220 * t), 16000))
    np.testing.assert_allclose(quiet[:, 0], 0.5 * np.sin(2 * np.pi * 220 * t), atol=1 / 32767)  # left as it is


def test_a_small_corpus_trains_its_classifier_for_enough_steps_under_its_own_name(folder, monkeypatch):
    """36 spectrograms x 30 epochs were 30 full-batch steps, after which the speaker classifier gave every
    word one speaker (0.333 with 3 = chance); the default epochs now train MIN_STEPS steps at least."""
    from gankit.metrics import domain_net
    from gankit.metrics.audio import classifier_cfg

    calls, lines = [], []
    monkeypatch.setattr(domain_net, "fit_classifier", lambda net, x, y, epochs, **kw: calls.append(
        max(int(epochs * len(x) / min(128, len(x))), kw.get("min_steps", 1))))
    cfg = classifier_cfg(DataConfig(name="voices", root=str(folder)), "speaker")
    domain_net.train_domain_net(cfg, path=folder.parent / "net.safetensors", log=lines.append)
    assert calls == [domain_net.MIN_STEPS] and domain_net.MIN_STEPS >= 100
    assert lines[0].startswith(f"training the spoken-digits speaker classifier on 16 images for {domain_net.MIN_STEPS}")
    assert any(line.startswith("spoken-digits speaker classifier: test accuracy") for line in lines)
    domain_net.train_domain_net(cfg, epochs=1, path=folder.parent / "net.safetensors")   # asked for: as asked
    assert calls[-1] == 1


@pytest.mark.parametrize("acc, classes, warned", [(0.333, 3, True), (0.49, 3, True), (0.5, 3, False),
                                                  (0.3, 10, True), (0.35, 10, False), (1.0, 2, False)])
def test_a_judge_near_chance_warns_on_what_it_judges(acc, classes, warned):
    from gankit.metrics.domain_net import chance_warning
    from gankit.metrics.translation import format_translation

    meta = {"test_accuracy": acc, "arch": {"num_classes": classes}, "n_test": 9,
            "title": "spoken-digits speaker classifier"}
    w = chance_warning(meta)
    assert (w is not None) == warned
    if warned:
        assert "speaker classifier" in w and f"{acc:.3f}" in w
        table = format_translation({"protocol": {"warnings": [w]}, "AtoB": {"target_speaker": 1.0}})
        assert table.splitlines()[-1] == f"WARNING  {w}"
