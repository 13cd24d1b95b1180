"""The evaluation pipeline: feature networks, cached reference features, cards, bad input, CLI, training hook."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gankit.config import DataConfig
from gankit.errors import GankitError
from gankit.evaluation import evaluate
from gankit.metrics import EvalError
from gankit.metrics.domain_net import DomainFeatures, domain_net_path, load_domain_net, train_domain_net

CARD_KEYS = {"metric", "params", "features", "features_sha256", "preprocessing", "input", "reference", "n_real", "n_fake",
             "seed", "gankit", "warnings"}


@pytest.fixture
def digits_net():
    """The digits domain net, trained once per test session (10 epochs of 1,438 8x8 images: seconds)."""
    path = domain_net_path("digits")
    if not path.exists():
        train_domain_net(DataConfig(name="digits"), epochs=10)
    return path


def _digits_npz(tmp_path, split="train", n=359, name="real.npz", labels=True):
    from gankit.data import load_dataset

    ds = load_dataset(DataConfig(name="digits"), split)
    batch = ds.batch(torch.arange(min(n, len(ds))))
    x, y = batch["x"], batch["y"]
    path = tmp_path / name
    arrays = {"x": x.numpy()}
    if labels:
        arrays["y"] = y.numpy()
    np.savez(path, **arrays)
    return path


def test_domain_net_is_accurate_cached_and_loadable(digits_net):
    net, meta = load_domain_net(digits_net)
    assert meta["test_accuracy"] >= 0.95 and meta["dataset"] == "digits"
    feats, logits = net(torch.zeros(3, 1, 8, 8))
    assert feats.shape == (3, 128) and logits.shape == (3, 10)
    mtime = digits_net.stat().st_mtime_ns
    from gankit.metrics.domain_net import DomainFeatures
    DomainFeatures.for_dataset(DataConfig(name="digits"))        # cached: not retrained
    assert digits_net.stat().st_mtime_ns == mtime


def test_real_vs_real_is_close_and_noise_is_far(digits_net, tmp_path):
    real = evaluate(_digits_npz(tmp_path), data="digits", n=359, metrics="fid,kid,is,pr,dc", quiet=True)
    noise_path = tmp_path / "noise.npz"
    np.savez(noise_path, x=np.random.default_rng(0).uniform(-1, 1, (359, 1, 8, 8)).astype(np.float32))
    noise = evaluate(noise_path, data="digits", n=359, metrics="fid,kid,is,pr,dc", quiet=True)
    assert real["fid"] < 0.1 * noise["fid"]
    assert real["kid"] < 0.1 * noise["kid"]
    assert real["is"] > 7 > 3 > noise["is"] >= 1
    assert real["precision"] > 0.6 and real["recall"] > 0.6
    assert real["coverage"] > 0.6 > 0.3 > noise["coverage"]
    assert noise["density"] < 0.5 * real["density"]
    # every value carries a full card; numbers are comparable only between identical protocols
    for r in real.results:
        assert set(r["card"]) == CARD_KEYS
        assert r["card"]["features"] == "domain-digits" or r["name"] in ("is",) and r["card"]["n_real"] == 0
    card = real.results[0]["card"]
    from gankit.metrics.domain_net import weights_sha256
    assert card["features_sha256"] == weights_sha256(load_domain_net(digits_net)[0].state_dict())
    assert card["reference"]["dataset"] == "digits" and card["reference"]["split"] == "test"
    assert card["n_real"] == card["n_fake"] == 359
    written = json.loads((tmp_path / "real.eval.json").read_text())
    assert [r["name"] for r in written["results"]] == real.names()
    assert written["source"]["kind"] == "npz" and len(written["source"]["sha256"]) == 64


def test_the_feature_networks_hash_is_of_its_tensors_not_its_file(digits_net, tmp_path):
    """The same weights trained on another machine (another wall time in the file's metadata) keep
    their hash, so their cards and card ids are the same; one changed weight changes it."""
    from gankit.metrics.cache import load_tensors, save_tensors
    from gankit.metrics.domain_net import DomainFeatures
    from gankit.utils import sha256_file

    state, meta = load_tensors(digits_net)
    elsewhere, changed = tmp_path / "elsewhere.safetensors", tmp_path / "changed.safetensors"
    save_tensors(elsewhere, state, {**meta, "seconds": meta["seconds"] + 52.3})
    first = next(k for k in sorted(state) if state[k].is_floating_point())
    save_tensors(changed, {**state, first: state[first] + 1e-6}, meta)
    assert sha256_file(elsewhere) != sha256_file(digits_net)
    here = DomainFeatures.for_dataset(DataConfig(name="digits")).sha256
    assert DomainFeatures.for_dataset(DataConfig(name="digits"), path=elsewhere).sha256 == here
    assert DomainFeatures.for_dataset(DataConfig(name="digits"), path=changed).sha256 != here


def test_reference_features_are_cached(digits_net, tmp_path):
    from gankit.metrics.cache import cache_dir

    evaluate(_digits_npz(tmp_path, n=100), data="digits", n=100, metrics="fid", quiet=True)
    files = list((cache_dir() / "stats").glob("digits-test-domain-digits-*.safetensors"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again = evaluate(_digits_npz(tmp_path, n=100), data="digits", n=100, metrics="fid", quiet=True)
    assert files[0].stat().st_mtime_ns == mtime and "real_features" in again.seconds
    from gankit.metrics.cache import load_tensors
    t, meta = load_tensors(files[0])
    assert t["features"].shape == (359, 128) and t["sigma"].dtype == torch.float64 and meta["n"] == 359


@pytest.mark.parametrize("x,msg", [
    (np.full((50, 1, 8, 8), np.nan, np.float32), "NaN"),
    (np.full((50, 1, 8, 8), 200.0, np.float32), "[0, 255]"),
    (np.zeros((50, 64), np.float32), "shape"),
    (np.zeros((50, 2, 8, 8), np.float32), "channels"),
    (np.zeros((1, 1, 8, 8), np.float32), "at least 2"),
])
def test_bad_samples_are_refused(digits_net, tmp_path, x, msg):
    path = tmp_path / "bad.npz"
    np.savez(path, x=x)
    with pytest.raises(EvalError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        evaluate(path, data="digits", metrics="fid", quiet=True)


def test_doubtful_samples_get_warnings_on_the_card(digits_net, tmp_path):
    path = _digits_npz(tmp_path, n=60)
    with np.load(path) as f:
        x = f["x"]
    np.savez(path, x=(x + 1) / 2)                      # [0, 1] instead of [-1, 1]
    res = evaluate(path, data="digits", n=60, metrics="fid,kid", quiet=True)
    warnings = res.results[0]["card"]["warnings"]
    assert any("[0, 1]" in w for w in warnings)
    assert any("covariance is singular" in w for w in warnings)   # 60 samples, 128-d features
    with pytest.raises(EvalError, match="needs data='NAME'"):
        evaluate(path, quiet=True)
    with pytest.raises(EvalError, match="unknown metric"):
        evaluate(path, data="digits", metrics="fid,nope", quiet=True)


def test_inception_loads_a_pytorch_fid_state_dict(tmp_path):
    from gankit.metrics.inception import FIDInceptionV3, InceptionFeatures, load_fid_inception

    torch.manual_seed(0)
    net = FIDInceptionV3()
    state = net.state_dict()
    # Names and shapes as in pytorch-fid's fid_inception_v3() (torchvision Inception3, 1008 classes, no aux).
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    assert state["fc.weight"].shape == (1008, 2048)
    assert sum(p.numel() for p in net.parameters()) == 23_850_960  # torchvision's 27,161,264 - aux + 8 classes
    # a random "weights file" as pytorch-fid ships it: a plain state dict without num_batches_tracked
    plain = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    for k in plain:
        if k.endswith("running_var"):
            plain[k] = torch.rand_like(plain[k]) + 0.5
    path = tmp_path / "pt_inception-test.pth"
    torch.save(plain, path)
    loaded = load_fid_inception(path)
    assert torch.equal(loaded.state_dict()["Mixed_7b.branch1x1.bn.running_var"], plain["Mixed_7b.branch1x1.bn.running_var"])
    ext = InceptionFeatures.from_file(path)
    out = ext(torch.rand(2, 1, 28, 28) * 2 - 1)
    assert out.features.shape == (2, 2048) and out.logits.shape == (2, 1008)
    assert torch.isfinite(out.features).all() and len(ext.sha256) == 64
    # wrong files fail with one clear line
    torch.save({"fc.weight": plain["fc.weight"]}, tmp_path / "missing.pth")
    with pytest.raises(GankitError, match="not the FID InceptionV3 state dict"):
        load_fid_inception(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a weights file")
    with pytest.raises(GankitError, match="not a readable weights file"):
        load_fid_inception(tmp_path / "junk.pth")
    with pytest.raises(GankitError, match="never downloads"):
        InceptionFeatures.from_file(None)


def test_cli_eval_and_features(digits_net, tmp_path):
    real = _digits_npz(tmp_path, n=200)
    half = _digits_npz(tmp_path, n=100, name="half.npz")
    proc = subprocess.run([sys.executable, "-m", "gankit", "eval", str(real), str(half), "--data", "digits",
                           "--metrics", "fid,pr", "-n", "200"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "real.npz" in out and "half.npz" in out and "domain-digits" in out
    # 200 vs 100 generated samples: different cards, so never on one row
    assert "fid: rows with different cards are NOT comparable (they differ in: n_fake, n_real)" in out
    proc = subprocess.run([sys.executable, "-m", "gankit", "features", "list"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "digits" in proc.stdout and "test accuracy" in proc.stdout
    # the hash it shows is the one cards carry: the weights', not the file's (which holds the training time)
    card_hash = DomainFeatures.for_dataset(DataConfig(name="digits"), train_if_missing=False).sha256
    assert f"weights sha256 {card_hash[:16]}" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "gankit", "eval", str(tmp_path / "none.npz"), "--data", "digits"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_cas_real_samples_score_like_real_data(digits_net, tmp_path, monkeypatch):
    monkeypatch.setattr("gankit.metrics.cas.MIN_STEPS", 150)   # 8x8 digits learn in fewer steps
    res = evaluate(_digits_npz(tmp_path, split="train", n=600), data="digits", n=600, metrics="cas", quiet=True)
    assert res["cas_real"] > 0.85 and abs(res["cas"] - res["cas_real"]) < 0.1
    shuffled = tmp_path / "shuffled.npz"
    with np.load(tmp_path / "real.npz") as f:
        np.savez(shuffled, x=f["x"], y=np.random.default_rng(0).permutation(f["y"]))
    res = evaluate(shuffled, data="digits", n=600, metrics="cas", quiet=True)
    assert res["cas"] < 0.4 < res["cas_real"]      # labels that do not match the images teach nothing
    with pytest.raises(EvalError, match="class labels"):
        evaluate(_digits_npz(tmp_path, n=50, labels=False), data="digits", metrics="cas", quiet=True)


def test_class_acc_is_the_domain_classifiers_agreement_with_the_intended_classes(digits_net, tmp_path):
    from gankit.metrics.class_acc import class_accuracy

    assert class_accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0]]), torch.tensor([0, 1, 1])) == 2 / 3
    # real test images with their own labels: the domain net's test accuracy (0.9+ on digits)
    res = evaluate(_digits_npz(tmp_path, split="test", n=359), data="digits", n=359, metrics="class_acc", quiet=True)
    assert res["class_acc"] > 0.9 and abs(res["class_acc"] - res["class_acc_real"]) < 1e-9  # same images, same net
    shuffled = tmp_path / "shuffled.npz"
    with np.load(tmp_path / "real.npz") as f:
        np.savez(shuffled, x=f["x"], y=np.random.default_rng(0).permutation(f["y"]))
    res = evaluate(shuffled, data="digits", n=359, metrics="class_acc", quiet=True)
    assert res["class_acc"] < 0.25 < 0.9 < res["class_acc_real"]   # chance is 0.1: labels that do not match
    with pytest.raises(EvalError, match="generated for"):
        evaluate(_digits_npz(tmp_path, n=50, labels=False), data="digits", metrics="class_acc", quiet=True)


def test_run_folder_eval_and_training_hook(tmp_path, monkeypatch):
    from gankit import train
    from gankit.train.run import read_metrics

    from gankit.train.callback import Callback

    class Watch(Callback):
        """A user's callback: it sees the whole record (the evaluation's and health's keys too) and
        what it adds reaches metrics.jsonl."""
        seen = []

        def on_log(self, run, record):
            self.seen.append((record["step"], record.get("fid"), record.get("health")))
            record["mine"] = record["step"] * 2

    run = train("gan-ring8", ["train.steps=40", "train.log_every=10", "eval.every=20", "eval.n=500",
                              "eval.metrics=[fid, modes]"], out=tmp_path / "run", quiet=True, callbacks=[Watch()])
    records = read_metrics(run.dir)
    evals = [r for r in records if "fid" in r]
    assert [r["step"] for r in evals] == [20, 40]
    assert [(s, f, h) for s, f, h in Watch.seen if f is not None] == [(r["step"], r["fid"], r["health"]) for r in evals]
    assert all(h is not None for _, _, h in Watch.seen) and [r["mine"] for r in records] == [20, 40, 60, 80]
    assert all(r["fid"] >= 0 and 0 <= r["modes"] <= 8 and "hq" in r for r in evals)
    assert (run.dir / "checkpoints" / "best.safetensors").exists()
    best = min(evals, key=lambda r: r["fid"])["step"]
    assert run.trainer.state.best_step == best
    cards = json.loads((run.dir / "eval_cards.json").read_text())
    assert cards["step"] == 40 and {r["card"]["n_fake"] for r in cards["results"]} == {500}
    res = evaluate(run.dir, n=2500, quiet=True)       # 2D data: modes, fid, kid, pr, dc on raw coordinates
    assert res.names()[:3] == ["modes", "hq", "rkl"] and res.results[0]["card"]["n_fake"] == 2500
    assert json.loads((run.dir / "eval.json").read_text())["source"]["step"] == 40

    # A misspelt metric or feature extractor is refused before any sample is made (10,000 samples of
    # a large generator take minutes on a CPU): sampling here would fail the test.
    from gankit.api import GAN

    # A metric this kind of data cannot have (IS on 2D points) is refused before any sample is made
    # (the checkpoint says the kind; sampling at all would be recorded below).
    sizes, real_sample = [], GAN.sample

    def small_sampling(self, n, *a, **k):
        sizes.append(n)
        assert n <= 2, f"sampled {n} before the metrics' kinds were checked"
        return real_sample(self, n, *a, **k)
    monkeypatch.setattr(GAN, "sample", small_sampling)
    with pytest.raises(EvalError, match="metrics='is': only for image data, and this data is vector"):
        evaluate(run.dir, metrics="fid,is", quiet=True)
    assert sizes == []

    def no_sampling(*a, **k):
        raise AssertionError("sampled before the names were checked")
    monkeypatch.setattr(GAN, "sample", no_sampling)
    with pytest.raises(EvalError, match="metrics='fod': unknown metric"):
        evaluate(run.dir, metrics="fid,fod", quiet=True)
    with pytest.raises(EvalError, match="features='incepshun': unknown feature extractor"):
        evaluate(run.dir, metrics="fid", features="incepshun", quiet=True)


def test_eval_config_is_checked():
    from gankit.config import load_config
    from gankit.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.metrics.0"):
        load_config("gan-ring8", ["eval.metrics=[fidd]"])
    with pytest.raises(ConfigError, match="unknown config key eval.evry"):
        load_config("gan-ring8", ["eval.evry=10"])
    with pytest.raises(ConfigError, match="eval.score"):
        load_config("gan-ring8", ["eval.every=10", "eval.metrics=[kid]"])
    assert load_config("gan-ring8", ["eval.every=10"]).eval.n == 2000


def test_a_run_on_an_unlabelled_folder_is_scored_by_default_without_is(tmp_path, capsys):
    """Your own folder: its domain network tells rotations (no class head), so the default metrics leave
    IS out and say so; asked for by name, IS is one line saying what it needs."""
    from PIL import Image

    from gankit import train
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    run = train("dcgan-fashion-mnist", ["data.name=folder", f"data.root={tmp_path / 'imgs'}", "data.resolution=16",
                                       "data.channels=3", "train.steps=2", "train.batch_size=8", "model.g.width=4",
                                       "model.d.width=4"], out=tmp_path / "run", quiet=True)
    # The folder's rotation network, trained for one step here (its default 150 steps at the folder's
    # native 64 px took 50-100 s of the suite; training it by default is test_metrics_restoration's):
    # the run's evaluation finds it in the cache, as it would after `gankit features train`.
    from gankit.metrics.domain_net import train_domain_net
    train_domain_net(DataConfig(name="folder", root=str(tmp_path / "imgs")), epochs=1)
    res = evaluate(run.dir, n=48)
    assert "is" not in res.names() and {"fid", "kid", "precision", "recall"} <= set(res.names())
    assert "IS left out of the default metrics: the domain-folder-" in capsys.readouterr().err
    # The real images at the size the model makes (16 px RGB), not the folder's default 64 px; and the
    # card says they are the training images.
    from gankit.data import load_dataset
    from gankit.metrics.cache import sha256_tensor
    real = load_dataset(DataConfig(name="folder", root=str(tmp_path / "imgs"), resolution=16, channels=3)).x
    card = res.results[0]["card"]
    assert real.shape == (24, 3, 16, 16) and sha256_tensor(real).startswith(card["reference"]["sha256"])
    assert "the reference is the training images: this folder has no held-out split (test/ or val/)" in card["warnings"]
    res = evaluate(run.dir, n=48, metrics="fid", quiet=True)
    assert res.names() == ["fid"]
    with pytest.raises(EvalError, match="no class head; IS needs class logits"):
        evaluate(run.dir, n=48, metrics="is", quiet=True)


def test_eval_every_between_log_records_says_when_it_really_evaluates(tmp_path, capsys):
    """Evaluations ride on log records: eval.every=15 with a record every 10 steps scores at 20 and 40,
    and the run says so once at the start instead of leaving the user to find out from metrics.jsonl."""
    from gankit import train
    from gankit.train.run import read_metrics

    run = train("gan-ring8", ["train.steps=40", "train.log_every=10", "eval.every=15", "eval.n=200"],
                out=tmp_path / "run", quiet=True)
    assert [r["step"] for r in read_metrics(run.dir) if "fid" in r] == [20, 40]
    err = capsys.readouterr().err
    assert err.count("note: eval.every=15 is not a multiple of train.log_every=10") == 1 and "(every 20 steps)" in err


@pytest.mark.parametrize("resolution,channels", [(10, 1), (12, 1), (14, 1), (16, 1), (24, 1), (8, 3), (16, 3)])
def test_real_images_at_any_resolution_the_loader_makes_score_zero_against_themselves(digits_net, tmp_path,
                                                                                      resolution, channels):
    """The evaluation undoes the loader's resolution rule (one rule, gankit.data.base.border_pad): its
    pad is cropped, its resize inverted. Before, 14 and 16 px digits were resized back with a blur (FID
    15.8 and 20.0 against themselves; Fashion-MNIST at 34/36 px was cropped: FID 53/68). Measured now:
    0.0000-0.0001 (uint8 rounding of the enlarged images); 0.01 leaves room for BLAS round-off. The
    card records the samples' shape and what was done to it, so these inputs never share a card id."""
    from gankit.data import load_dataset

    ds = load_dataset(DataConfig(name="digits", resolution=resolution, channels=channels), "test")
    path = tmp_path / "real.npz"
    np.savez(path, x=ds.all_model_range().numpy())
    res = evaluate(path, data="digits", n=len(ds), metrics="fid,pr", quiet=True, write=False)
    assert res["fid"] < 0.01 and res["precision"] == res["recall"] == 1.0
    native = evaluate(_digits_npz(tmp_path), data="digits", n=len(ds), metrics="fid", quiet=True, write=False)
    card = res.results[0]["card"]
    assert card["input"]["shape"] == [channels, resolution, resolution] and card["input"]["fit"].startswith(
        f"{channels}x{resolution}x{resolution} -> 1x8x8: ")
    assert res.results[0]["card_id"] != native.results[0]["card_id"]
    assert native.results[0]["card"]["input"] == {"shape": [1, 8, 8], "fit": None, "subset": None}


def test_a_sorted_file_larger_than_n_is_scored_on_a_seeded_random_subset(digits_net, tmp_path):
    """-n smaller than the file took its first n rows: a file sorted by class scored only some classes."""
    from gankit.data import load_dataset

    ds = load_dataset(DataConfig(name="digits"), "test")
    order = ds.y.argsort()
    path = tmp_path / "sorted.npz"
    np.savez(path, x=ds.all_model_range()[order].numpy(), y=ds.y[order].numpy())
    res = evaluate(path, data="digits", n=120, metrics="is", quiet=True, write=False)
    first = tmp_path / "first.npz"           # what the first 120 rows hold: classes 0-3 only
    np.savez(first, x=ds.all_model_range()[order[:120]].numpy())
    low = evaluate(first, data="digits", n=120, metrics="is", quiet=True, write=False)["is"]
    assert low < 4 < 5 < res["is"]
    assert res.results[0]["card"]["input"]["subset"] == {"n": 120, "of": len(ds), "seed": 0}
    from gankit.metrics import samples_from_npz
    s = samples_from_npz(path, 120, "digits", None, seed=0)
    assert len(s.y.unique()) == 10 and torch.equal(s.x, samples_from_npz(path, 120, "digits", None, seed=0).x)


def test_a_folders_feature_network_follows_its_content_not_its_path(tmp_path):
    """The rotation-trained network of a folder was keyed by path and options only: replacing the
    images reused the old network (the audit: FID 491.8 with it vs 137.9 with a fresh one)."""
    from PIL import Image

    from gankit.metrics.domain_net import domain_key
    folder = tmp_path / "imgs"
    folder.mkdir()

    def fill(seed):
        rng = np.random.default_rng(seed)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")

    fill(0)
    cfg = DataConfig(name="folder", root=str(folder), options={"cache": False})
    before = domain_key("folder", cfg)
    assert domain_key("folder", cfg) == before            # same images: the cached net is found again
    fill(1)                                               # same path, same names, new images
    assert domain_key("folder", cfg) != before
    assert domain_key("fashion-mnist") == "domain-fashion-mnist"   # bundled data: named as before


def test_saved_samples_of_a_folder_model_are_scored_against_the_folder_at_their_own_size(tmp_path):
    """gankit eval SAMPLES.npz --data folder --data-root DIR reads the folder at the samples' channels and
    resolution (the size the folder model was trained at), not at the default 64x64 RGB."""
    from PIL import Image

    from gankit.evaluation import evaluate

    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    np.savez(tmp_path / "s.npz", x=rng.uniform(-1, 1, (12, 1, 8, 12)).astype(np.float32))
    result = evaluate(tmp_path / "s.npz", metrics="fid", features="raw", data="folder",
                      data_root=str(tmp_path / "imgs"), quiet=True, write=False)
    card = result.results[0]["card"]
    assert np.isfinite(result["fid"]) and card["n_real"] == 12


def test_a_feature_network_near_chance_warns_on_every_card_it_judges(digits_net, tmp_path, monkeypatch):
    """A judge that scored near chance when trained (a small folder or corpus) makes numbers that mean
    nothing: each card its features or classes make says so."""
    from gankit.metrics import domain_net

    monkeypatch.setattr(domain_net, "chance_warning", lambda meta: "the judge is near chance")
    res = evaluate(_digits_npz(tmp_path, split="test", n=359), data="digits", n=359, metrics="fid,class_acc",
                   quiet=True)
    assert all("the judge is near chance" in r["card"]["warnings"] for r in res.results)
