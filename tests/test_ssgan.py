"""The semi-supervised GAN: D's loss against its closed form and a direct (K+1)-way softmax, feature
matching by hand, the labelled subset (balanced, seeded, and no other label used in training), the
supervised baseline, and the classifier's accuracy in `gankit eval`."""
import json

import numpy as np
import pytest
import torch

from gankit.config import load_config
from gankit.data import load_dataset
from gankit.errors import ConfigError
from gankit.objectives import ssgan as ssgan_mod
from gankit.objectives.ssgan import (feature_matching_loss, labelled_subset, log_d_real, log_one_minus_d,
                                     ssgan_d_loss, unsupervised_loss)
from gankit.train.loop import Trainer
from gankit.train.run import train

TINY = ["data.name=digits", "data.resolution=8", "model.g.width=16", "model.d.widths=[16,8]",
        "loss.options.labels_per_class=2", "train.batch_size=16", "train.minutes=null", "train.threads=1",
        "train.precision=fp32", "health.enabled=false", "train.log_every=1"]

# Hand-made logits, K = 3: a labelled batch of 2, an unlabelled batch of 2 (one very confident: LSE
# far beyond exp's float32 range in a naive formula) and a fake batch of 3.
LAB = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]])
Y = np.array([0, 1])
UNL = np.array([[1.0, 2.0, -0.5], [95.0, 90.0, 0.0]])
FAKE = np.array([[-3.0, -2.0, -4.0], [0.3, 0.1, -0.2], [5.0, -5.0, 0.0]])


def t(a, dtype=torch.float64):
    return torch.tensor(a, dtype=dtype)


def lse(a):
    m = a.max(1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(1, keepdims=True)))[:, 0]


def closed_form(weight):
    """L_sup + w·L_unsup with D(x) = Z/(Z+1), Z = Σ exp l, by numpy in float64."""
    sup = np.mean(lse(LAB) - LAB[np.arange(2), Y])
    z_unl, z_fake = np.exp(lse(UNL)), np.exp(lse(FAKE))        # Z(x) (finite in float64 at LSE 95)
    unsup = np.mean(-np.log(z_unl / (z_unl + 1))) + np.mean(-np.log(1 - z_fake / (z_fake + 1)))
    return sup + weight * unsup, sup, unsup


def k_plus_one(weight):
    """The same loss from an explicit (K+1)-way softmax with the fake logit fixed at 0 (torch)."""
    ext = lambda a: torch.cat([t(a), torch.zeros(len(a), 1, dtype=torch.float64)], 1)  # noqa: E731
    logp_lab, logp_unl, logp_fake = (torch.log_softmax(ext(a), 1) for a in (LAB, UNL, FAKE))
    # supervised: log p(y | x, y < K+1) = log p(y | x) − log(1 − p(K+1 | x))
    sup = -(logp_lab[torch.arange(2), t(Y, torch.long)] - torch.log1p(-logp_lab[:, -1].exp())).mean()
    unsup = -torch.log1p(-logp_unl[:, -1].exp()).mean() - logp_fake[:, -1].mean()
    return (sup + weight * unsup).item(), sup.item(), unsup.item()


@pytest.mark.parametrize("weight", [1.0, 0.5, 0.0])
def test_d_loss_matches_its_closed_form_and_a_k_plus_one_softmax(weight):
    got = ssgan_d_loss(t(LAB), t(Y, torch.long), t(UNL), t(FAKE), weight)
    for want in (closed_form(weight), k_plus_one(weight)):
        assert got["loss"].item() == pytest.approx(want[0], rel=1e-9, abs=1e-12)
        assert got["sup"].item() == pytest.approx(want[1], rel=1e-9)
        assert got["unsup"].item() == pytest.approx(want[2], rel=1e-9)
    assert closed_form(1.0)[2] > 1.0 and abs(closed_form(1.0)[0] - closed_form(0.5)[0]) > 0.5  # weight matters


def test_d_loss_is_stable_in_float32():
    # float32: exp(95) overflows, the stable form does not; D(x) -> 1 gives -log D -> 0.
    got = unsupervised_loss(t(UNL, torch.float32), t(FAKE, torch.float32))
    assert torch.isfinite(got) and got.item() == pytest.approx(closed_form(1.0)[2], rel=1e-5)
    big = torch.tensor([[200.0, 0.0], [-200.0, -300.0]])
    assert torch.allclose(log_d_real(big), torch.tensor([0.0, -200.0]), atol=1e-5)
    assert torch.allclose(log_one_minus_d(big), torch.tensor([-200.0, 0.0]), atol=1e-5)


def test_feature_matching_against_a_hand_computation():
    f_real = t([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]])               # mean (2, 1, 0.5)
    f_fake = t([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [2.0, 4.0, 1.0]])  # mean (1, 2, 1)
    assert feature_matching_loss(f_real, f_fake).item() == pytest.approx(1 + 1 + 0.25)
    assert feature_matching_loss(f_real, f_real.flip(0)).item() == 0.0   # only the means matter


def test_labelled_subset_is_balanced_seeded_and_reads_a_prefix():
    y = load_dataset(load_config("ssgan-fashion-mnist", TINY).data, "train").y
    a = labelled_subset(y, 3, 10, seed=0)
    assert len(a) == 30 and torch.equal(torch.bincount(y[a], minlength=10), torch.full((10,), 3))
    assert torch.equal(a, labelled_subset(y, 3, 10, seed=0))
    assert not torch.equal(a, labelled_subset(y, 3, 10, seed=1))
    with pytest.raises(ConfigError, match="labels_per_class"):
        labelled_subset(y, 1000, 10, seed=0)


def _permuted_outside(ds, keep_read):
    """A copy of ``ds`` whose labels are permuted among every image the subset selection does not
    read (the labels it reads are those of the images up to its last pick in its seeded order)."""
    y = ds.y.clone()
    free = torch.tensor(sorted(set(range(len(y))) - keep_read))
    perm = free[torch.randperm(len(free), generator=torch.Generator().manual_seed(5))]
    y[free] = ds.y[perm]
    out = load_dataset(load_config("ssgan-fashion-mnist", TINY).data, "train")
    out.y = y
    return out


def test_no_label_outside_the_subset_is_used(monkeypatch):
    cfg = load_config("ssgan-fashion-mnist", TINY + ["train.steps=4"])
    ds = load_dataset(cfg.data, "train", seed=cfg.seed)
    o = ssgan_mod.parse_options(ssgan_mod.SSGANObjective, cfg.loss.options)
    subset = labelled_subset(ds.y, o.labels_per_class, 10, o.label_seed)
    order = torch.randperm(len(ds.y), generator=torch.Generator().manual_seed(o.label_seed)).tolist()
    last = max(order.index(i) for i in subset.tolist())
    read = set(order[: last + 1])                   # the labels the selection reads
    assert len(read) < len(ds) // 3                 # ... a small prefix: the rest are permuted below
    permuted = _permuted_outside(ds, read)
    assert (permuted.y != ds.y).float().mean() > 0.5  # most labels changed, the subset's kept
    assert torch.equal(permuted.y[subset], ds.y[subset])

    def weights(data, same_subset=True):
        monkeypatch.setattr("gankit.data.load_dataset", lambda *a, **k: data)  # the objective's own copy
        tr = Trainer(cfg, data=data)                                               # the loop's batches (x, y)
        for _ in range(4):
            tr.train_step()
        assert torch.equal(tr.objective.lab_index, subset) == same_subset
        return {k: [p.detach().clone() for p in m.parameters()] for k, m in tr.nets.items()}

    a, b = weights(ds), weights(permuted)
    for k in a:
        assert all(torch.equal(p, q) for p, q in zip(a[k], b[k])), k
    # ... and the comparison can fail: a label the selection reads changed, other weights
    changed = load_dataset(cfg.data, "train")
    changed.y = ds.y.clone()
    changed.y[subset[0]] = (ds.y[subset[0]] + 1) % 10
    c = weights(changed, same_subset=False)
    assert not all(torch.equal(p, q) for p, q in zip(a["D"], c["D"]))


def test_supervised_baseline_trains_d_alone_on_the_labels():
    tr = Trainer(load_config("ssgan-fashion-mnist", TINY + ["loss.options.unsup_weight=0"]))
    assert [p.name for p in tr.phases] == ["D"] and not tr.phases[0].needs_data
    g0 = [p.detach().clone() for p in tr.nets["G"].parameters()]
    tr.train_step()
    stats = tr.pop_stats()
    assert stats["unsup_loss"] == 0 and stats["d_loss"] == stats["sup_loss"] > 0
    assert all(torch.equal(p, q) for p, q in zip(g0, tr.nets["G"].parameters()))


@pytest.mark.parametrize("override,key", [("model.conditional=true", "model.conditional"),
                                          ("model.arch=mlp", "model.arch"),
                                          ("loss.options.labels_per_class=0", "loss.options.labels_per_class"),
                                          ("loss.options.unsup_weight=-1", "loss.options.unsup_weight"),
                                          ("loss.options.label_sed=1", "loss.options.label_sed"),
                                          ("train.d_steps=2", "train.d_steps")])
def test_settings_that_do_not_apply_are_refused(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("ssgan-fashion-mnist", TINY + [override])


def test_wrong_number_of_classes_is_refused_before_the_run_folder_is_made(tmp_path):
    from gankit.train.run import train

    with pytest.raises(ConfigError, match="loss.options.num_classes=5: dataset digits has 10 classes"):
        train(load_config("ssgan-fashion-mnist", TINY + ["loss.options.num_classes=5"]), out=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_eval_reports_the_classifier_accuracy(tmp_path, capsys):
    from gankit.cli.main import main

    run = train(load_config("ssgan-fashion-mnist", TINY + ["train.steps=30"]), out=tmp_path / "r", quiet=True)
    want = run.trainer.objective.evaluate_model(run.trainer.cfg.data)["accuracy"]
    n_test = len(load_dataset(run.trainer.cfg.data, "test"))
    D = run.trainer.nets["D"].eval()
    test = load_dataset(run.trainer.cfg.data, "test")
    with torch.no_grad():
        assert want == pytest.approx((D(test.batch(torch.arange(n_test))["x"]).argmax(1) == test.y).float().mean().item())
    assert main(["eval", str(tmp_path / "r"), "-n", "64", "--metrics", "fid", "--features", "raw",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("accuracy"))
    assert f"{want:.4f}" in row
    assert f"10-way classifier on the {n_test} images of the test split" in out
    saved = json.loads((tmp_path / "r" / "eval.json").read_text())["results"]
    acc = next(r for r in saved if r["name"] == "accuracy")
    assert acc["value"] == pytest.approx(want) and acc["card"]["n_real"] == n_test


def test_eval_of_a_model_without_own_numbers_is_unchanged(tmp_path):
    from gankit.evaluation import evaluate
    from gankit.metrics.evaluate import model_results
    from gankit.api import load

    train(load_config("dcgan-digits", ["data.resolution=8", "model.g.width=8", "model.d.width=8", "train.batch_size=16", "train.steps=2",
                                        "health.enabled=false", "train.threads=1"]), out=tmp_path / "g", quiet=True)
    assert model_results(load(tmp_path / "g")) == []
    res = evaluate(tmp_path / "g", metrics="sharpness", n=32, write=False, quiet=True, threads=1)
    assert "accuracy" not in res.names() and "sharpness" in res.names()


# -- the two kinds of D (model.d.kind): the network checks tests/test_nets.py leaves to this file ----
CONV_TINY = TINY + ["model.d.widths=null", "model.d.kind=conv", "model.d.channels=[8,16]", "model.d.depth=1"]
NET_CASES = [((1, 8, 8), {"widths": (16, 8)}, 8),
             ((1, 28, 28), {"kind": "conv", "channels": (8, 8, 16)}, 16),
             ((3, 16, 12), {"kind": "conv", "channels": (4, 8), "depth": 1, "weight_norm": False}, 8)]


def _d(shape, kwargs, seed=0):
    from gankit.nets.ssgan import SSGANDiscriminator

    torch.manual_seed(seed)
    return SSGANDiscriminator(sample_shape=shape, num_classes=3, **kwargs)


@pytest.mark.parametrize("shape,kwargs,f_dim", NET_CASES)
def test_d_shapes_backward_save_load_and_seed(shape, kwargs, f_dim, tmp_path):
    from safetensors.torch import load_file, save_file

    D = _d(shape, kwargs)
    x = torch.rand(4, *shape) * 2 - 1
    logits, f = D.logits_and_features(x)
    assert logits.shape == (4, 3) and f.shape == (4, f_dim) == (4, D.feature_dim)
    assert torch.equal(D.eval().features(x), D.logits_and_features(x)[1])
    D.train()
    logits.sum().backward()
    assert all(p.grad is not None for p in D.parameters())
    D.eval()
    assert torch.equal(D(x), D(x))                                       # no noise / dropout in eval mode
    D.train()
    assert not torch.equal(D(x), D(x))                                   # ... and some in training mode
    save_file({k: v.contiguous() for k, v in D.state_dict().items()}, tmp_path / "d.safetensors")
    D2 = _d(shape, kwargs, seed=1).eval()
    D.eval()
    assert not torch.equal(D(x), D2(x))
    D2.load_state_dict(load_file(tmp_path / "d.safetensors"))
    assert torch.equal(D(x), D2.eval()(x))
    assert torch.equal(D(x), _d(shape, kwargs).eval()(x))               # the same seed, the same network


def test_conv_d_is_the_scaled_down_cifar_d_and_the_mlp_keeps_its_weight_names():
    D = _d((1, 28, 28), {"kind": "conv"})                                 # defaults: 32-64-128, depth 2
    convs = [m for m in D.body if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (32, 3, 1), (32, 3, 2), (64, 3, 1), (64, 3, 2), (128, 3, 1), (128, 1, 1), (128, 1, 1)]
    assert all(hasattr(c.parametrizations, "weight") for c in convs)      # weight-normalised
    h = torch.zeros(2, 1, 28, 28)
    sizes = []
    for m in D.body:
        h = m(h)
        if isinstance(m, torch.nn.Conv2d):
            sizes.append(h.shape[-1])
    assert sizes == [28, 14, 14, 7, 5, 5, 5] and D.feature_dim == 128
    # checkpoints of the mlp D from before model.d.kind existed name their weights so
    mlp = _d((1, 8, 8), {"widths": (16, 8)})
    assert {"hidden.0.0.parametrizations.weight.original0", "hidden.1.0.parametrizations.weight.original1",
            "head.parametrizations.weight.original0", "head.bias"} <= set(mlp.state_dict())


@pytest.mark.parametrize("override,key", [("model.d.kind=resnet", "kind"),
                                          ("model.d.channels=[8,16]", "channels applies to kind conv"),
                                          ("model.d.dropout=0.1", "dropout applies to kind conv")])
def test_d_settings_of_the_other_kind_are_refused(override, key):
    with pytest.raises(ConfigError, match=key):
        Trainer(load_config("ssgan-fashion-mnist", TINY + [override]))


@pytest.mark.parametrize("override,key", [("model.d.widths=[16]", "widths applies to kind mlp"),
                                          ("model.d.channels=[8,8,8]", "below its last 3x3 conv")])
def test_conv_d_bad_settings_are_refused(override, key):
    with pytest.raises(ConfigError, match=key):
        Trainer(load_config("ssgan-conv-fashion-mnist", CONV_TINY + [override]))


def test_conv_recipe_keeps_the_baseline_protocol():
    """The conv recipe differs from the mlp one only in D, the number of steps and the lr (the same for both
    runs of a seed: the baseline is the recipe with unsup_weight 0)."""
    a, b = load_config("ssgan-fashion-mnist"), load_config("ssgan-conv-fashion-mnist")
    assert a.model.g == b.model.g and a.loss == b.loss and b.model.d["kind"] == "conv"
    differ = {"steps", "g_optim", "d_optim"}
    assert {k: v for k, v in vars(a.train).items() if k not in differ} == \
        {k: v for k, v in vars(b.train).items() if k not in differ}
    assert b.train.g_optim.lr == b.train.d_optim.lr


@pytest.mark.parametrize("test", ["test_phases_train_their_networks_and_freeze_the_others",
                                  "test_resume_is_exact_and_a_checkpoint_rebuilds_the_model"])
@pytest.mark.parametrize("recipe,overrides", [("ssgan-conv-fashion-mnist", CONV_TINY),
                                              ("ssgan-fashion-mnist", TINY + ["loss.options.data_init=true"])])
def test_conv_d_and_data_init_pass_the_shared_objective_tests(test, recipe, overrides, monkeypatch, tmp_path):
    import test_engine

    monkeypatch.setitem(test_engine.CASES, "ssgan", (recipe, overrides))
    args = {"objective": "ssgan"} if "phases" in test else {"objective": "ssgan", "tmp_path": tmp_path}
    getattr(test_engine, test)(**args)


@pytest.mark.parametrize("shape,kwargs,f_dim", NET_CASES[:2])
def test_data_init_standardises_every_weight_normalised_layer(shape, kwargs, f_dim):
    D = _d(shape, kwargs).eval()                          # eval: no noise, so the check is exact
    x = torch.rand(64, *shape) * 2 - 1
    before = D(x)
    D.data_init(x)
    outs = []
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    hs = [m.register_forward_hook(lambda m, i, o: outs.append(o)) for m in layers]
    after = D(x)
    for h in hs:
        h.remove()
    assert len(outs) == len(layers) >= 3 and not torch.allclose(before, after)
    for o in outs:
        dims = [0] + list(range(2, o.ndim))
        assert torch.allclose(o.mean(dims), torch.zeros(o.shape[1]), atol=1e-4)
        assert torch.allclose(o.var(dims, unbiased=False), torch.ones(o.shape[1]), atol=1e-3)


def test_data_init_runs_once_at_the_start_on_the_labelled_batch(monkeypatch):
    from gankit.nets.ssgan import SSGANDiscriminator

    calls = []
    orig = SSGANDiscriminator.data_init
    monkeypatch.setattr(SSGANDiscriminator, "data_init", lambda self, x: calls.append(x.clone()) or orig(self, x))
    for weight in (0.5, 0):
        tr = Trainer(load_config("ssgan-fashion-mnist", TINY + ["loss.options.data_init=true",
                                                                f"loss.options.unsup_weight={weight}"]))
        for _ in range(3):
            tr.train_step()
    assert len(calls) == 2 and torch.equal(calls[0], calls[1])   # once, and the same images for the baseline
    assert calls[0].shape[0] == 16                                # the first labelled batch
    with pytest.raises(ConfigError, match="data_init"):
        load_config("ssgan-fashion-mnist", TINY + ["loss.options.data_init=true", "model.d.weight_norm=false"])


def test_with_train_ema_the_run_keeps_an_averaged_d_which_load_and_eval_score(tmp_path):
    from gankit.api import load

    run = train(load_config("ssgan-fashion-mnist", TINY + ["train.steps=6", "train.ema=0.5"]), out=tmp_path / "r",
                quiet=True)
    tr = run.trainer
    avg, raw = tr.sampling_net("D"), tr.nets["D"]
    assert avg is not raw and not all(torch.equal(p, q) for p, q in zip(avg.parameters(), raw.parameters()))
    loaded = load(tmp_path / "r")
    assert all(torch.equal(p, q) for p, q in zip(loaded.nets["D"].parameters(), avg.parameters()))
    want = tr.objective.evaluate_model(tr.cfg.data, D=avg)["accuracy"]
    assert loaded.objective.evaluate_model(tr.cfg.data)["accuracy"] == want
    assert load(tmp_path / "r", ema=False).objective.evaluate_model(tr.cfg.data)["accuracy"] == \
        tr.objective.evaluate_model(tr.cfg.data)["accuracy"]
