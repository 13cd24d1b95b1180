"""Anomaly detection (GANomaly and the autoencoder baseline): the losses and scores against hand
computations, AUROC against scikit-learn, the held-out-class data setting, scoring and AUROC of a tiny
trained run, the ``gankit score`` command and its one-line errors."""
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from gankit.api import load
from gankit.cli.main import main
from gankit.config import load_config
from gankit.data import load_dataset
from gankit.errors import ConfigError, GankitError
from gankit.objectives.anomaly import (auroc, ganomaly_generator_loss, latent_error, per_image_error,
                                       score_images)
from gankit.train.run import train

TINY = ["data.name=digits", "data.resolution=16", "data.exclude_classes=[3]", "model.z_dim=8", "model.g.width=8",
        "train.minutes=null", "train.steps=20", "train.batch_size=32", "train.threads=1", "train.precision=fp32",
        "health.enabled=false"]

# Two 1x2x2 images, their reconstructions, codes and D features (hand-made numbers).
X = np.array([[[[-1.0, 1.0], [0.5, -0.25]]], [[[0.0, 0.9], [-0.8, 1.0]]]])
XH = np.array([[[[-0.9, 0.7], [0.2, 0.1]]], [[[0.3, 0.5], [-0.6, 0.95]]]])
Z = np.array([[0.5, -1.0, 0.0], [2.0, 0.1, -0.3]])
ZH = np.array([[0.4, -0.5, 0.2], [1.0, 0.1, 0.3]])
FR = np.array([[1.0, 2.0], [0.0, -1.0]])
FF = np.array([[0.5, 2.5], [1.0, -1.0]])
t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731


def test_per_image_errors_match_a_hand_computation():
    # image 0: |d| = .1 .3 .3 .35 ; image 1: .3 .4 .2 .05
    l1 = per_image_error(t(X), t(XH), "l1")
    assert torch.allclose(l1, t([1.05 / 4, 0.95 / 4]).float(), atol=1e-6)
    l2 = per_image_error(t(X), t(XH), "l2")
    assert torch.allclose(l2, t([(.01 + .09 + .09 + .1225) / 4, (.09 + .16 + .04 + .0025) / 4]).float(), atol=1e-6)
    # latent: image 0: .01 .25 .04 ; image 1: 1 0 .36
    assert torch.allclose(latent_error(t(Z), t(ZH)), t([0.30 / 3, 1.36 / 3]).float(), atol=1e-6)
    # the paper's Eq. 5 (L1, here / z_dim): |d| = .1 .5 .2 ; 1 0 .6 — it ranks the two the same way here
    assert torch.allclose(latent_error(t(Z), t(ZH), "l1"), t([0.8 / 3, 1.6 / 3]).float(), atol=1e-6)
    with pytest.raises(ValueError):
        per_image_error(t(X), t(XH), "l3")


@pytest.mark.parametrize("w", [(1.0, 50.0, 1.0), (0.0, 1.0, 2.0), (3.0, 0.5, 0.0)])
def test_ganomaly_loss_matches_a_hand_computation(w):
    got = ganomaly_generator_loss(t(X), t(XH), t(Z), t(ZH), t(FR), t(FF), *w)
    adv = (0.25 + 0.25 + 1.0 + 0.0) / 4         # mean (f(x) − f(x̂))²
    con = (1.05 + 0.95) / 8                       # mean |x − x̂| over 8 pixels
    enc = (0.30 + 1.36) / 6                       # mean (z − ẑ)² over 6 numbers
    for k, v in (("adv", adv), ("con", con), ("enc", enc), ("loss", w[0] * adv + w[1] * con + w[2] * enc)):
        assert abs(got[k].item() - v) < 1e-6, (k, got[k].item(), v)


def test_auroc_matches_sklearn_with_and_without_ties():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75           # the classic example
    assert auroc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5                     # all tied: chance
    assert auroc([3, 2, 1], [1, 0, 0]) == 1.0 and auroc([1, 2, 3], [1, 0, 0]) == 0.0
    rng = np.random.default_rng(0)
    for ties in (False, True):
        y = rng.integers(0, 2, 500)
        s = rng.normal(size=500) + 0.7 * y
        s = np.round(s, 1) if ties else s
        assert abs(auroc(s, y) - roc_auc_score(y, s)) < 1e-12
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [1, 1])


def test_exclude_classes_drops_them_from_the_train_split_only():
    cfg = load_config("ganomaly-fashion-mnist", ["data.name=digits", "data.exclude_classes=[3, 7]"])
    assert cfg.data.exclude_classes == (3, 7)
    full = load_dataset(load_config("dcgan-digits").data, "train")
    train_ = load_dataset(cfg.data, "train")
    test = load_dataset(cfg.data, "test")
    assert not torch.isin(train_.y, torch.tensor([3, 7])).any()
    assert len(train_) == int((~torch.isin(full.y, torch.tensor([3, 7]))).sum())
    assert torch.isin(test.y, torch.tensor([3, 7])).any()
    limited = load_dataset(load_config("ganomaly-fashion-mnist", ["data.name=digits", "data.exclude_classes=[3]",
                                                                  "data.limit=50"]).data, "train")
    assert len(limited) == 50 and not (limited.y == 3).any()  # the limit counts the images kept


@pytest.mark.parametrize("overrides,key", [
    (["data.exclude_classes=[1, 1]"], "data.exclude_classes"),
    (["data.exclude_classes=[-1]"], "data.exclude_classes"),
    (["data.exclude_classes=x"], "data.exclude_classes"),
])
def test_bad_exclude_classes_fail_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        load_config("ganomaly-fashion-mnist", overrides)


def test_exclude_classes_need_labelled_data_with_those_classes(tmp_path):
    with pytest.raises(ConfigError, match="data.exclude_classes: class 10"):
        load_dataset(load_config("dcgan-digits", ["data.exclude_classes=[10]"]).data, "train")
    for i in range(2):  # a flat folder of images: no classes
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    cfg = load_config("dcgan-digits", ["data.name=folder", f"data.root={tmp_path}", "data.resolution=8",
                                       "data.exclude_classes=[0]"])
    with pytest.raises(ConfigError, match="data.exclude_classes: dataset 'folder' has no labels"):
        load_dataset(cfg.data, "train")
    with pytest.raises(ConfigError, match="data.exclude_classes: leaves none of digits's training images"):
        load_dataset(load_config("dcgan-digits", [f"data.exclude_classes={list(range(10))}"]).data, "train")


def test_a_detector_with_nothing_held_out_is_one_line_at_eval(tmp_path, capsys):
    """No class held out: no AUROC, and a detector makes no samples: nothing to evaluate, said so."""
    run = tmp_path / "ae"
    train(load_config("autoencoder-fashion-mnist", TINY + ["data.exclude_classes=[]"]), out=run, quiet=True)
    capsys.readouterr()
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("nothing to evaluate: no class was held out (data.exclude_classes is empty), so there is "
                        "no AUROC; train with data.exclude_classes=[k] to measure one") and "\n" not in err


def test_score_refuses_a_batch_size_below_one(runs, tmp_path, capsys):
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "x.png")
    for bad in ("0", "-5"):
        with pytest.raises(SystemExit):
            main(["score", str(runs["autoencoder"]), str(tmp_path / "x.png"), "--batch-size", bad])
        assert "give a whole number of at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("recipe,overrides,key", [
    ("ganomaly-fashion-mnist", ["model.arch=dcgan"], "model.arch"),
    ("ganomaly-fashion-mnist", ["model.g.reencode=false"], "model.g.reencode"),
    ("ganomaly-fashion-mnist", ["loss.options.w_con=-1"], "loss.options.w_con"),
    ("ganomaly-fashion-mnist", ["loss.options.lambda=1"], "loss.options.lambda"),
    ("ganomaly-fashion-mnist", ["model.d.pack=2"], "model.d.pack"),
    ("ganomaly-fashion-mnist", ["loss.options.score=l3"], "loss.options.score"),
    ("ganomaly-fashion-mnist", ["model.conditional=true"], "model.conditional"),
    ("autoencoder-fashion-mnist", ["model.d.width=8"], "model.d"),
    ("autoencoder-fashion-mnist", ["loss.options.reconstruction=l3"], "loss.options.reconstruction"),
    ("autoencoder-fashion-mnist", ["loss.options.w_con=1"], "loss.options.w_con"),
])
def test_bad_settings_fail_naming_the_key(recipe, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(recipe, overrides)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("anomaly")
    out = {}
    for name, extra in (("ganomaly", ["model.d.width=8"]), ("autoencoder", ["loss.options.reconstruction=l1"])):
        train(load_config(f"{name}-fashion-mnist", TINY + extra), out=root / name, quiet=True)
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", ["ganomaly", "autoencoder"])
def test_scores_and_auroc_of_a_trained_run(runs, name):
    model = load(runs[name])
    test = load_dataset(model.cfg.data, "test")
    x = test.all_model_range()
    scores = score_images(model, x)
    assert scores.shape == (len(x),) and torch.isfinite(scores).all() and (scores >= 0).all()
    # the score by hand from the networks, in eval mode
    G = model.nets["G"].eval()
    with torch.no_grad():
        r = G.reconstruct(x[:10])
        want = latent_error(r.z, r.z_hat) if name == "ganomaly" else (x[:10] - r.x_hat).abs().flatten(1).mean(1)
    assert torch.allclose(scores[:10], want, atol=1e-5)
    assert torch.allclose(score_images(model, x[:10], batch_size=3), scores[:10], rtol=1e-4, atol=0)  # nor batching
    result = model.objective.evaluate_model(model.cfg.data, "test")
    labels = (test.y == 3).numpy()
    assert result["n_anomalous"] == labels.sum() == 36
    assert abs(result["auroc"] - roc_auc_score(labels, scores.numpy())) < 1e-9
    # no class held out: nothing to report
    from dataclasses import replace
    assert model.objective.evaluate_model(replace(model.cfg.data, exclude_classes=()), "test") == {}
    with pytest.raises(GankitError, match="this model takes"):
        score_images(model, torch.zeros(2, 1, 8, 8))


def test_ganomaly_scores_with_the_official_codes_l2_by_default_and_the_papers_l1_on_request(runs):
    """Default ``score: l2``, mean_j (z − ẑ)² (samet-akcay/ganomaly lib/model.py); ``score: l1``, mean_j |z − ẑ|
    (Akcay et al. 2018, Eq. 5's ‖·‖₁ / z_dim). The two rank images differently, so their AUROCs differ."""
    from dataclasses import replace

    model = load(runs["ganomaly"])
    assert model.objective.options.score == "l2"
    x = load_dataset(model.cfg.data, "test").all_model_range()[:200]
    l2 = score_images(model, x)
    model.objective.options = replace(model.objective.options, score="l1")
    l1 = score_images(model, x)
    G = model.nets["G"].eval()
    with torch.no_grad():
        r = G.reconstruct(x)
    assert torch.allclose(l2, (r.z - r.z_hat).square().mean(1), rtol=1e-5, atol=1e-7)
    assert torch.allclose(l1, (r.z - r.z_hat).abs().mean(1), rtol=1e-5, atol=1e-7)
    assert not torch.equal(l1.argsort(), l2.argsort())  # another ranking (200 images: a tie is all but impossible)
    assert load_config("ganomaly-fashion-mnist", ["loss.options.score=l1"]).loss.options["score"] == "l1"


def test_score_refuses_a_model_that_does_not_score(tmp_path):
    cfg = load_config("dcgan-digits", ["model.g.width=8", "model.d.width=8", "train.steps=1", "train.minutes=null",
                                       "health.enabled=false", "train.precision=fp32"])
    run = train(cfg, out=tmp_path / "g", quiet=True)
    with pytest.raises(GankitError, match="does not score anomalies"):
        score_images(load(run.dir), torch.zeros(1, 1, 16, 16))


def test_score_cli(runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["score", "--help"])
    assert e.value.code == 0
    capsys.readouterr()
    model = load(runs["autoencoder"])
    test = load_dataset(model.cfg.data, "test")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(test.x[i, 0].numpy()).save(folder / f"{i}.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "big.jpg")  # RGB 32x32: converted, resized
    np.savez(tmp_path / "a.npz", x=test.x[:2].numpy())
    np.savez(tmp_path / "f.npz", x=test.all_model_range()[:2, 0].numpy())  # (N, H, W) float in [-1, 1]
    assert main(["score", str(runs["autoencoder"]), str(folder), "--npz", str(tmp_path / "a.npz"),
                 str(tmp_path / "big.jpg")]) == 0  # an INPUT after an option is still an INPUT
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6
    got = {name: float(s) for s, name in (line.split("\t") for line in lines)}
    want = score_images(model, test.all_model_range()[:3])
    for i in range(3):
        assert abs(got[str(folder / f"{i}.png")] - want[i].item()) < 1e-4 * max(1.0, want[i].item())
        if i < 2:
            assert abs(got[f"{tmp_path / 'a.npz'}[{i}]"] - want[i].item()) < 1e-4 * max(1.0, want[i].item())
    assert main(["score", str(runs["autoencoder"]), "--npz", str(tmp_path / "f.npz")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    # errors: one line naming the file
    (tmp_path / "bad.png").write_text("not an image")
    np.savez(tmp_path / "wrong.npz", x=np.zeros((2, 3, 16, 16), np.uint8))
    np.savez(tmp_path / "nox.npz", y=np.zeros(2))
    for args, needle in (([str(tmp_path / "bad.png")], "bad.png"), ([str(tmp_path / "missing.png")], "missing.png"),
                         (["--npz", str(tmp_path / "wrong.npz")], "wrong.npz"),
                         (["--npz", str(tmp_path / "nox.npz")], "nox.npz: no array 'x'"),
                         ([], "give image files")):
        assert main(["score", str(runs["autoencoder"]), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err


def test_gankit_eval_reports_the_auroc_with_its_card_and_refuses_sample_metrics(runs):
    """A detector makes no samples: `gankit eval` gives its own numbers (eval.json, cards), and asking
    for a sample metric is one line naming the flag."""
    import json

    from gankit.cli.main import main
    from gankit.evaluation import evaluate
    from gankit.metrics.evaluate import EvalError

    model = load(runs["ganomaly"])
    result = evaluate(runs["ganomaly"], quiet=True)
    assert result.names() == ["auroc", "n_anomalous"]
    assert result["auroc"] == pytest.approx(model.objective.evaluate_model(model.cfg.data, "test")["auroc"], abs=1e-12)
    card = next(r["card"] for r in result.results if r["name"] == "auroc")
    assert "held out of training" in card["params"]["what"] and card["reference"]["split"] == "test"
    assert json.loads((runs["ganomaly"] / "eval.json").read_text())["results"][0]["name"] == "auroc"
    with pytest.raises(EvalError, match="metrics='fid': .* makes no samples"):
        evaluate(runs["ganomaly"], metrics="fid", quiet=True)
    assert main(["eval", str(runs["autoencoder"]), "--metrics", "kid"]) == 2


def test_sampling_a_detector_points_to_score(runs):
    with pytest.raises(GankitError, match="anomaly detector .* use gankit score RUN"):
        load(runs["ganomaly"]).sample(4)


def _class_folder(root, classes=("a", "b"), n=6, size=(12, 20), split=None):
    """Non-square grey images in one sub-folder per class (under ``root/split`` when given)."""
    rng = np.random.default_rng(0)
    for c in classes:
        d = root / (split or "") / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(d / f"{i}.png")
    return root


def test_files_are_read_for_scoring_as_the_folder_dataset_reads_them_for_training(tmp_path):
    """gankit score prepares an image as training did (centre crop keeping the aspect ratio), so a
    non-square training image scores as its training saw it, not stretched."""
    from gankit.api import read_images

    root = _class_folder(tmp_path / "imgs")
    cfg = load_config("autoencoder-fashion-mnist", TINY + ["data.name=folder", f"data.root={root}",
                                                           "data.resolution=8", "data.channels=1",
                                                           "data.exclude_classes=[]"])
    train_x = load_dataset(cfg.data, "train").all_model_range()
    paths, x = read_images([root], 1, (8, 8), purpose="score")
    assert len(paths) == 12 and torch.equal(x, train_x)


def test_the_auroc_uses_the_whole_test_split_whatever_data_limit_and_names_the_held_out_classes(tmp_path):
    from gankit.metrics.evaluate import model_results

    run = tmp_path / "ae"
    train(load_config("autoencoder-fashion-mnist", TINY + ["data.limit=40", "train.steps=4"]), out=run, quiet=True)
    model = load(run)
    result = model.objective.evaluate_model(model.cfg.data, "test")
    assert result["n_anomalous"] == 36  # digit 3 in the whole 359-image test split, not in its first 40
    cards = {r["name"]: r["card"] for r in model_results(model)}
    assert cards["auroc"]["n_real"] == 359 and cards["auroc"]["params"]["held_out_classes"] == [3]
    assert cards["auroc"]["warnings"] == []


def test_numbers_on_training_images_carry_a_warning_and_the_held_out_class_by_name(tmp_path):
    """A folder without test/: the AUROC is computed on the training images; its card says so."""
    from gankit.metrics.evaluate import model_results

    root = _class_folder(tmp_path / "imgs")
    run = tmp_path / "ae"
    train(load_config("autoencoder-fashion-mnist", TINY + [
        "data.name=folder", f"data.root={root}", "data.resolution=8", "data.channels=1", "data.exclude_classes=[1]",
        "train.steps=4", "train.batch_size=4"]), out=run, quiet=True)
    cards = [r["card"] for r in model_results(load(run))]
    assert cards and all(any("training images" in w for w in c["warnings"]) for c in cards)
    assert cards[0]["params"]["held_out_classes"] == ["1 (b)"]


def test_the_mvtec_layout_is_evaluated_with_test_classes_train_lacks_as_anomalies(tmp_path):
    """ad/train/normal, ad/test/normal, ad/test/defect: train on normal only; gankit eval gives the AUROC
    of test/normal against test/defect."""
    from gankit.evaluation import evaluate

    root = tmp_path / "ad"
    _class_folder(root, ("normal",), n=8, split="train")
    _class_folder(root, ("normal", "defect"), n=3, split="test")
    run = tmp_path / "ae"
    train(load_config("autoencoder-fashion-mnist", TINY + [
        "data.name=folder", f"data.root={root}", "data.resolution=8", "data.channels=1", "data.exclude_classes=[]",
        "train.steps=4", "train.batch_size=4"]), out=run, quiet=True)
    model = load(run)
    result = evaluate(run, quiet=True)
    assert result["n_anomalous"] == 3
    test = load_dataset(model.cfg.data, "test")
    labels = (test.y == 1).numpy()
    assert result["auroc"] == pytest.approx(roc_auc_score(labels, score_images(model, test.all_model_range())), abs=1e-9)
    card = next(r["card"] for r in result.results if r["name"] == "auroc")
    assert card["params"]["held_out_classes"] == ["1 (defect)"] and card["warnings"] == []
