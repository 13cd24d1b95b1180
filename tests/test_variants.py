"""The GAN variants as parts: every shipped recipe runs, and each part does what its paper says."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.nets import NETWORKS
from gankit.nets.attention import SelfAttention
from gankit.nets.layers import MinibatchDiscrimination, MinibatchStdDev
from gankit.recipes import recipe_names
from gankit.objectives import OBJECTIVES, DataInfo, GANObjective
from gankit.objectives.acgan import ACGANObjective
from gankit.objectives.unrolled import UnrolledObjective
from gankit.losses.augment import AUGMENTS, DiffAugment
from gankit.train.loop import Trainer

torch.set_num_threads(1)

TOY = {"data": {"name": "ring8", "size": 256}, "model": {"arch": "mlp", "z_dim": 4, "g": {"width": 16},
                                                          "d": {"width": 16}},
       "train": {"steps": 10, "batch_size": 32}}
TOY_INFO = DataInfo("vector", (2,), 0)


def _objective(cls, G, D, cfg, info=TOY_INFO, **kwargs):
    """Objective ``cls`` over the pair (G, D) built by hand, outside a Trainer."""
    return cls({"G": G, "D": D}, cfg, info, **kwargs)


def _optimizers(obj, g_opt, d_opt, d_steps):
    """What the Trainer does with its optimisers: bind them (unrolled needs D's) and build the phases."""
    if hasattr(obj, "attach_optimizers"):
        obj.attach_optimizers({"G": g_opt, "D": d_opt})
    return obj.phases(d_steps)


# -- every shipped recipe: a few steps at tiny widths -------------------------------------------------

def _image_folder(root, data_name, n=16, side=12):
    """A tiny folder in the layout dataset ``data_name`` reads: A/ and B/ of matching names
    (paired-folder), trainA/ and trainB/ (unpaired-folder)."""
    from PIL import Image

    sub = {"paired-folder": ("A", "B"), "unpaired-folder": ("trainA", "trainB")}[data_name]
    rng = np.random.default_rng(0)
    for folder in sub:
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def tiny_speech_corpus(tmp_path_factory):
    """Two voices (the default pair of `voices`) saying two digits, 5 takes: a stand-in for the default corpus."""
    from gankit.audio.corpus import make_corpus

    root = tmp_path_factory.mktemp("speech") / "corpus"
    make_corpus(root, speakers=("flite-slt", "flite-rms"), texts=("zero", "one"), takes=5, seed=0)
    return root


RESTORATION_DATA = ("super-resolution", "inpainting", "uncropping", "colorization", "labels2image")


def _recipes_marked():
    """Every recipe; those trained on the default speech corpus (made by espeak-ng and flite) marked `speech`."""
    from gankit.data.audio import SPEECH_DATASETS

    def speech(name):
        data = load_config(name).data
        return data.name in SPEECH_DATASETS and data.root is None
    return [pytest.param(n, marks=pytest.mark.speech) if speech(n) else n for n in recipe_names()]


@pytest.mark.parametrize("name", _recipes_marked())
def test_recipe_smoke(name, tmp_path, request):
    cfg = load_config(name)
    tiny = ["train.steps=2", "train.batch_size=16", "data.size=256", "data.limit=64", "model.g.width=8",
            "model.d.width=8", "train.threads=1", "train.device=cpu"]
    if request.node.get_closest_marker("speech"):  # the default corpus takes 100 s to make: a tiny one
        tiny += [f"data.root={request.getfixturevalue('tiny_speech_corpus')}", "train.batch_size=4"]
    if cfg.data.name.endswith("-folder") and cfg.data.root is None:  # the user's images: a tiny stand-in
        tiny.append(f"data.root={_image_folder(tmp_path / 'data', cfg.data.name)}")
        tiny.append(f"train.batch_size={min(16, cfg.train.batch_size)}")  # 256x256 recipes: their own batch
    if cfg.model.arch == "mlp" and "minibatch_kernels" in cfg.model.d:
        tiny.append("model.d.minibatch_kernels=4")
    if cfg.loss.objective == "vae":  # no D: the encoder's width instead
        tiny = [t for t in tiny if not t.startswith("model.d.")] + ["model.nets.E.width=8"]
    if cfg.loss.objective == "autoencoder":  # no D
        tiny = [t for t in tiny if not t.startswith("model.d.")]
    if cfg.model.arch == "ssgan":  # the paper's MLP D (layer widths) or its conv D (channels)
        small = "model.d.channels=[8, 8, 8]" if cfg.model.d.get("kind") == "conv" else "model.d.widths=[16, 8]"
        tiny = [t for t in tiny if not t.startswith("model.d.")] + [small, "loss.options.labels_per_class=2"]
    if cfg.data.name in RESTORATION_DATA:  # no other run to start from; no feature network to train here
        opts = cfg.loss.options
        if "init_from" in opts:
            tiny.append("loss.options.init_from=null")
        if opts.get("perceptual_weight", 0) > 0:
            content = "pixel_weight" if cfg.loss.objective == "sr" else "l1_weight"
            tiny += ["loss.options.perceptual_weight=0", f"loss.options.{content}=1.0"]
    cfg = load_config(name, tiny)
    tr = Trainer(cfg)
    for _ in range(2):
        tr.train_step()
    stats = tr.pop_stats()
    want = {"vae": {"loss", "recon", "kl"}, "autoencoder": {"g_loss"}}.get(cfg.loss.objective, {"d_loss", "g_loss"})
    if not cfg.loss.options.get("adversarial", True):  # a PSNR model (SRResNet, ESRGAN's first stage): no critic
        want = {cfg.loss.options.get("pixel", "l1")}
    assert want <= set(stats)
    assert all(math.isfinite(v) for v in stats.values()), stats
    x = tr.fixed_samples()["output"]
    out_shape = tr.info.target_shape if tr.task.name == "translation" else tr.info.sample_shape  # a reconstruction too
    assert x.shape[1:] == out_shape and torch.isfinite(x).all()
    if tr.task.name == "generation" and "D" in tr.nets:
        batch = tr.data.batch(torch.arange(16))
        with torch.no_grad():
            out = tr.nets["D"](batch["x"], batch["y"] if tr.num_classes else None)
        assert out.shape[0] == 16 // getattr(tr.objective, "pack", 1)  # (B / pack,), or (B, K) class logits


def test_recipe_names_say_variant_and_data():
    names = set(recipe_names())
    for want in ("wgan-gp-grid25", "pacgan-ring8", "sngan-fashion-mnist", "cgan-fashion-mnist", "acgan-fashion-mnist",
                 "wgan-fashion-mnist", "lsgan-fashion-mnist", "sagan-fashion-mnist", "unrolled-ring8"):
        assert want in names
    for name in names:
        assert load_config(name).name == name


# -- objectives registry and config -----------------------------------------------------------------------

def test_objective_registry_and_config_checks():
    assert {"gan", "acgan", "unrolled"} <= set(OBJECTIVES.names())
    with pytest.raises(ConfigError, match="loss.objective"):
        load_config(TOY, ["loss.objective=nope"])
    with pytest.raises(ConfigError, match="loss.augment"):
        load_config(TOY, ["loss.augment=color,zoom"])
    with pytest.raises(ConfigError, match="loss.unroll_steps"):
        load_config(TOY, ["loss.unroll_steps=-1"])
    with pytest.raises(ConfigError, match="acgan"):
        load_config(TOY, ["loss.objective=acgan"])  # not conditional
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(TOY, ["loss.unroll=3"])
    assert type(Trainer(load_config(TOY, ["loss.objective=unrolled"])).objective) is UnrolledObjective


# -- cGAN / ACGAN labels -----------------------------------------------------------------------------------

def _labelled_images(n=32, classes=3, side=8):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(classes, (n,), generator=g)
    x = torch.randn(n, 1, side, side, generator=g).clamp(-1, 1)
    return x, y


@pytest.mark.parametrize("arch,d_kwargs", [("dcgan", {}), ("resnet", {"conditioning": "projection"}),
                                          ("resnet", {"conditioning": "concat"}), ("mlp", {})])
def test_conditional_g_and_d_use_the_label(arch, d_kwargs):
    torch.manual_seed(0)
    shape = (1, 8, 8) if arch != "mlp" else (2,)
    G, D = NETWORKS.get(arch).build(4, shape, 3, {"width": 8}, {"width": 8, **d_kwargs})
    G.eval()
    z = torch.randn(1, 4).repeat(3, 1)
    y = torch.arange(3)
    x = G(z, y)
    assert not torch.allclose(x[0], x[1])  # same z, other class, other sample
    with torch.no_grad():
        for m in D.modules():  # move the label embeddings off their tiny init
            if isinstance(m, torch.nn.Embedding):
                m.weight.normal_()
    xs = x[:1].detach().repeat(3, *[1] * len(shape))
    out = D(xs, y)
    assert out.shape == (3,) and not torch.allclose(out[0], out[1])  # same sample, other class, other score
    with pytest.raises(ValueError, match="conditional"):
        G(z, None)


def _acgan(aux_weight=1.0):
    cfg = load_config({"data": {"name": "digits", "resolution": 8}, "model": {
        "arch": "resnet", "conditional": True, "z_dim": 4, "g": {"width": 8}, "d": {"width": 8, "conditioning": "aux"}},
        "loss": {"objective": "acgan", "aux_weight": aux_weight}, "train": {"steps": 1}})
    torch.manual_seed(0)
    G, D = NETWORKS.get("resnet").build(4, (1, 8, 8), 3, dict(cfg.model.g), dict(cfg.model.d))
    return _objective(ACGANObjective, G, D, cfg, DataInfo("image", (1, 8, 8), 3)), cfg


def test_acgan_adds_class_cross_entropy_on_both_sides():
    obj, cfg = _acgan(aux_weight=0.7)
    x, y = _labelled_images()
    obj.D.eval()  # spectral norm's power iteration would move between the two calls otherwise
    scores, aux, stats = obj.discriminate(x, y)
    s_ref, logits = obj.D.scores_and_classes(x)
    obj.D.train()
    assert scores.shape == (32,) and logits.shape == (32, 3)
    assert aux.item() == pytest.approx(0.7 * F.cross_entropy(logits, y).item(), rel=1e-5)
    assert stats["cls_acc"].item() == pytest.approx((logits.argmax(1) == y).float().mean().item())
    _optimizers(obj, torch.optim.SGD(obj.G.parameters(), 0.1), torch.optim.SGD(obj.D.parameters(), 0.1), 1)
    d_stats = obj.accumulate_gradients("D", {"x": x, "y": y}, 32)
    assert {"cls_loss_real", "cls_loss_fake", "cls_acc_real", "cls_acc_fake"} <= set(d_stats)
    assert obj.D.classifier.bias.grad is not None and obj.D.classifier.bias.grad.abs().sum() > 0
    # The fake batch in the D step carries the real batch's labels; G's loss uses its own labels.
    assert obj._cached[1] is y
    g_stats = obj.accumulate_gradients("G", None, 32)
    assert "g_cls_loss" in g_stats
    # With aux_weight 0, G's gradient is the adversarial part alone: it must differ.
    obj0, _ = _acgan(aux_weight=0.0)
    obj0.G.load_state_dict(obj.G.state_dict())
    obj0.D.load_state_dict(obj.D.state_dict())
    _optimizers(obj0, torch.optim.SGD(obj0.G.parameters(), 0.1), torch.optim.SGD(obj0.D.parameters(), 0.1), 1)
    torch.manual_seed(1)
    obj0.accumulate_gradients("G", None, 32)
    torch.manual_seed(1)
    obj.G.zero_grad()
    obj.accumulate_gradients("G", None, 32)
    assert any(not torch.allclose(a.grad, b.grad) for a, b in zip(obj.G.parameters(), obj0.G.parameters()))


def test_acgan_needs_a_classifier_d():
    cfg = load_config({"data": {"name": "digits"}, "model": {"arch": "dcgan", "conditional": True},
                       "loss": {"objective": "acgan"}, "train": {"steps": 1}})
    G, D = NETWORKS.get("dcgan").build(4, (1, 8, 8), 3, {"width": 8}, {"width": 8})
    with pytest.raises(ConfigError, match="auxiliary classifier"):
        _objective(ACGANObjective, G, D, cfg, DataInfo("image", (1, 8, 8), 3))


def test_acgan_classifier_learns_the_labels():
    """A few ACGAN D steps on two trivially separable classes teach the aux head to name them."""
    obj, _ = _acgan()
    x = torch.cat([torch.full((16, 1, 8, 8), -0.8), torch.full((16, 1, 8, 8), 0.8)])
    y = torch.cat([torch.zeros(16, dtype=torch.long), torch.ones(16, dtype=torch.long)])
    opt = torch.optim.Adam(obj.D.parameters(), 1e-2)
    _optimizers(obj, torch.optim.SGD(obj.G.parameters(), 0.0), opt, 2)
    for _ in range(30):
        opt.zero_grad()
        stats = obj.accumulate_gradients("D", {"x": x, "y": y}, 32)
        opt.step()
    assert stats["cls_acc_real"].item() == 1.0


def test_sample_class_from_a_trained_conditional_run(tmp_path):
    import gankit

    cfg = ["train.steps=2", "data.limit=64", "train.batch_size=16", "model.g.width=8", "model.d.width=8"]
    gankit.train("cgan-fashion-mnist", cfg, out=tmp_path / "run", quiet=True)
    gan = gankit.load(tmp_path / "run")
    x, y = gan.sample(6, seed=0, labels=4)
    assert x.shape == (6, 1, 28, 28) and (y == 4).all()


# -- unrolled GAN -------------------------------------------------------------------------------------------

def _pair(loss="non-saturating"):
    torch.manual_seed(0)
    G, D = NETWORKS.get("mlp").build(4, (2,), 0, {"width": 16, "depth": 2}, {"width": 16, "depth": 2})
    cfg = load_config(TOY, [f"loss.name={loss}"])
    return G, D, cfg


def _g_grads(obj, real, seed=7):
    obj.G.zero_grad(set_to_none=True)
    obj.G.requires_grad_(True)
    obj.D.requires_grad_(False)
    torch.manual_seed(seed)
    stats = obj.accumulate_gradients("G", {"x": real, "y": None}, real.shape[0])
    obj.D.requires_grad_(True)
    return stats["g_loss"].item(), [p.grad.clone() for p in obj.G.parameters()]


def test_unrolled_with_k0_equals_the_plain_objective():
    G, D, cfg = _pair()
    real = torch.randn(32, 2)
    plain = _objective(GANObjective, G, D, cfg)
    _optimizers(plain, torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters()), 2)
    unrolled = _objective(UnrolledObjective, G, D, load_config(TOY, ["loss.objective=unrolled", "loss.unroll_steps=0"]))
    phases = _optimizers(unrolled, torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters()), 2)
    assert not [p for p in phases if p.name == "G"][0].needs_data
    l0, g0 = _g_grads(plain, real)
    l1, g1 = _g_grads(unrolled, real)
    assert l0 == pytest.approx(l1, rel=1e-6)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, atol=1e-7)


@pytest.mark.parametrize("loss", ["relativistic", "relativistic-average"])
def test_a_relativistic_g_loss_sees_d_on_a_real_batch(loss):
    """RSGAN/RaGAN (Jolicoeur-Martineau 2019): the G phase draws a real batch and G's loss is the closed
    form of D's scores on both; D stays frozen and only G gets gradients."""
    G, D, cfg = _pair(loss)
    obj = _objective(GANObjective, G, D, cfg)
    g_phase = [p for p in _optimizers(obj, torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters()), 1)
               if p.name == "G"][0]
    assert g_phase.needs_data
    real = torch.randn(32, 2)
    value, grads = _g_grads(obj, real)
    torch.manual_seed(7)
    with torch.no_grad():
        fake = G(torch.randn(32, 4))
        r, f = D(real).float(), D(fake).float()
    expected = (F.softplus(-(f - r)).mean() if loss == "relativistic" else
                F.softplus(-(f - r.mean())).mean() + F.softplus(r - f.mean()).mean())
    assert value == pytest.approx(expected.item(), rel=1e-5)
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in D.parameters())
    with pytest.raises(ConfigError, match=f"loss.name: {loss} compares G's fakes with D on real data, which objective "
                                          "unrolled does not"):
        load_config(TOY, [f"loss.name={loss}", "loss.objective=unrolled"])


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "rmsprop", "rmsprop-momentum"])
def test_unrolled_steps_are_d_optimiser_steps(opt_name):
    """G's unrolled loss equals its plain loss against a copy of D stepped k times by D's optimiser
    (RMSprop's momentum, train.*_optim.momentum, included)."""
    G, D, cfg = _pair()
    real = torch.randn(32, 2)
    make = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.5),
            "adam": lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.5, 0.9)),
            "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=0.01),
            "rmsprop-momentum": lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5)}[opt_name]
    d_opt = make(D.parameters())
    # one real D step first, so the optimiser has moments the unrolling must start from
    (D(real).sum() * 0.1).backward()
    d_opt.step()
    d_opt.zero_grad()
    k = 3
    obj = _objective(UnrolledObjective, G, D, load_config(TOY, ["loss.objective=unrolled", f"loss.unroll_steps={k}"]))
    _optimizers(obj, torch.optim.SGD(G.parameters(), 0.0), d_opt, 2)  # d_steps 2: fresh fake in the G step
    loss_unrolled, grads_k = _g_grads(obj, real)
    # the same fake batch, then k explicit optimiser steps on a copy of D
    torch.manual_seed(7)
    fake = G(torch.randn(32, 4)).detach()
    D2 = copy.deepcopy(D)
    opt2 = make(D2.parameters())
    opt2.load_state_dict(d_opt.state_dict())
    for _ in range(k):
        opt2.zero_grad()
        obj.loss.d(D2(real), D2(fake)).backward()
        opt2.step()
    assert loss_unrolled == pytest.approx(obj.loss.g(D2(fake)).item(), rel=1e-4)
    assert torch.allclose(D(real), D(real))  # the real D is untouched ...
    assert all(p.grad is None for p in D.parameters())  # ... and gets no gradient from G's step
    # G's gradient sees through the unrolled updates: it differs from the gradient against D_k held fixed.
    fixed = _objective(GANObjective, G, D2, cfg)
    _optimizers(fixed, torch.optim.SGD(G.parameters(), 0.0), make(D2.parameters()), 2)
    loss_fixed, grads_fixed = _g_grads(fixed, real)
    assert loss_fixed == pytest.approx(loss_unrolled, rel=1e-4)
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_k, grads_fixed))


def test_unrolled_look_ahead_clips_as_ds_real_steps_do():
    """With loss.clip_d_weights, each unrolled step is D's optimiser step then the clamp to [-c, c]:
    G's unrolled loss equals its loss against a copy of D stepped and clipped k times by hand."""
    G, D, _ = _pair("wasserstein")
    c, k = 0.05, 3
    with torch.no_grad():
        for p in D.parameters():
            p.clamp_(-c, c)  # a WGAN critic as its last real step left it
    real = torch.randn(32, 2)
    cfg = load_config(TOY, ["loss.name=wasserstein", f"loss.clip_d_weights={c}", "loss.objective=unrolled",
                            f"loss.unroll_steps={k}"])
    obj = _objective(UnrolledObjective, G, D, cfg)
    _optimizers(obj, torch.optim.SGD(G.parameters(), 0.0), torch.optim.SGD(D.parameters(), lr=0.5), 2)
    loss_unrolled, _ = _g_grads(obj, real)
    torch.manual_seed(7)
    fake = G(torch.randn(32, 4)).detach()

    def look_ahead(clip: bool):
        """G's loss after k plain SGD steps of a copy of D, clipped after each or not."""
        D2 = copy.deepcopy(D)
        opt2 = torch.optim.SGD(D2.parameters(), lr=0.5)
        for _ in range(k):
            opt2.zero_grad()
            obj.loss.d(D2(real), D2(fake)).backward()
            opt2.step()
            if clip:
                with torch.no_grad():
                    for p in D2.parameters():
                        p.clamp_(-c, c)
        return obj.loss.g(D2(fake)).item()

    assert loss_unrolled == pytest.approx(look_ahead(clip=True), rel=1e-5)
    # the clip bites: without it the look-ahead ends 1 % away, 1000× the tolerance above
    assert look_ahead(clip=False) != pytest.approx(loss_unrolled, rel=5e-3)


def test_unrolled_trains_end_to_end():
    tr = Trainer(load_config(TOY, ["loss.objective=unrolled", "loss.unroll_steps=2", "train.steps=3"]))
    assert [p.needs_data for p in tr.phases] == [True, True]
    for _ in range(3):
        tr.train_step()
    assert all(math.isfinite(v) for v in tr.pop_stats().values())


# -- DiffAugment --------------------------------------------------------------------------------------------

def test_diffaugment_is_differentiable():
    for name in ["color", "translation", "cutout", "color,translation,cutout"]:
        aug = DiffAugment(name)
        x = torch.randn(2, 2, 8, 8, dtype=torch.float64, requires_grad=True)

        def fixed_draw(x):
            torch.manual_seed(11)  # the same random transform at every evaluation
            return aug(x)

        assert torch.autograd.gradcheck(fixed_draw, (x,), eps=1e-6, atol=1e-5)


def test_diffaugment_draws_per_sample_within_the_reference_ranges():
    torch.manual_seed(0)
    n = 4000
    x = torch.zeros(n, 1, 8, 8)
    b = AUGMENTS.get("color")(x)  # from 0: brightness U[-.5, .5], then contrast keeps the mean
    m = b.mean(dim=(1, 2, 3))
    assert -0.5 <= m.min() and m.max() <= 0.5 and abs(m.mean()) < 0.03 and m.std() == pytest.approx(1 / 12 ** 0.5, rel=0.1)
    img = torch.zeros(n, 1, 8, 8)
    img[:, :, 4, 4] = 1.0  # a single bright pixel shows the shift
    t = AUGMENTS.get("translation")(img)
    pos = t.flatten(1).argmax(1)
    dy, dx = pos // 8 - 4, pos % 8 - 4
    kept = t.flatten(1).amax(1) > 0
    assert kept.all()  # shifts of at most 1 pixel (1/8 of 8) keep the centre pixel inside
    assert set(dy.tolist()) == {-1, 0, 1} and set(dx.tolist()) == {-1, 0, 1}
    c = AUGMENTS.get("cutout")(torch.ones(n, 1, 8, 8))
    zeros = (c == 0).flatten(1).sum(1).float()
    assert zeros.max() == 16 and zeros.min() >= 4  # a 4x4 hole, clipped by the border at most to 2x2


def test_diffaugment_applies_the_same_policy_to_real_and_fake_and_g_trains_through_it():
    seen = []

    def recording(x):
        seen.append((x.requires_grad, tuple(x.shape)))
        return DiffAugment("translation,cutout")(x)

    torch.manual_seed(0)
    G, D = NETWORKS.get("dcgan").build(4, (1, 8, 8), 0, {"width": 8}, {"width": 8, "batchnorm": False})
    obj = _objective(GANObjective, G, D, load_config(TOY), DataInfo("image", (1, 8, 8), 0), augment=recording)
    _optimizers(obj, torch.optim.SGD(G.parameters(), 0.1), torch.optim.SGD(D.parameters(), 0.1), 2)
    real = torch.rand(8, 1, 8, 8) * 2 - 1
    obj.accumulate_gradients("D", {"x": real, "y": None}, 8)
    assert seen == [(False, (8, 1, 8, 8)), (False, (8, 1, 8, 8))]  # real, then detached fake
    seen.clear()
    D.requires_grad_(False)
    obj.accumulate_gradients("G", None, 8)
    assert seen == [(True, (8, 1, 8, 8))]  # G's fake goes through the augmentation with its graph
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters() if p.ndim > 1)


def test_diffaugment_from_config_and_only_for_images():
    tr = Trainer(load_config({"data": {"name": "digits", "resolution": 8}, "model": {
        "arch": "dcgan", "z_dim": 4, "g": {"width": 8}, "d": {"width": 8}},
        "loss": {"augment": "color,cutout"}, "train": {"steps": 1, "batch_size": 16}}))
    assert tr.objective.augment.names == ["color", "cutout"]
    tr.train_step()
    toy = Trainer(load_config(TOY, ["loss.augment=translation"]))
    with pytest.raises(ConfigError, match="needs images"):
        toy.train_step()


# -- PacGAN, minibatch discrimination, minibatch std ---------------------------------------------------------

def test_pacgan_batches_are_multiples_of_pack_and_accuracy_counts_packs():
    tr = Trainer(load_config(TOY, ["model.d.pack=4", "train.batch_size=32"]))
    real = tr.data.batch(torch.arange(32))["x"]
    assert tr.nets["D"](real).shape == (8,)
    tr.train_step()
    stats = tr.pop_stats()
    # 8 decisions per batch: accuracies are multiples of 1/8
    for k in ("acc_real", "acc_fake"):
        assert 0 <= stats[k] <= 1 and (stats[k] * 8) == pytest.approx(round(stats[k] * 8))
    bad = Trainer(load_config(TOY, ["model.d.pack=3", "train.batch_size=32"]))
    with pytest.raises(ConfigError, match="multiple of model.d.pack=3"):
        bad.train_step()


def test_pacgan_d_sees_the_samples_of_a_pack_jointly():
    torch.manual_seed(0)
    _, D = NETWORKS.get("mlp").build(4, (2,), 0, {}, {"width": 8, "pack": 2})
    x = torch.randn(4, 2)
    y = x.clone()
    y[1] += 1.0  # change the second member of the first pack only
    a, b = D(x), D(y)
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])


def test_minibatch_std_sees_collapse():
    layer = MinibatchStdDev(group=4)
    same = torch.randn(1, 3, 4, 4).repeat(8, 1, 1, 1)
    out = layer(same)
    assert out.shape == (8, 4, 4, 4) and out[:, 3].abs().max() < 1e-3
    diverse = layer(torch.randn(8, 3, 4, 4))
    assert diverse[:, 3].min() > 0.5  # about E|std| of unit normals


def test_minibatch_discrimination_sees_collapse():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(6, kernels=5, kernel_dim=3)
    same = layer(torch.ones(4, 6))
    assert same.shape == (4, 11) and torch.allclose(same[:, 6:], torch.full((4, 5), 3.0))  # exp(0) · (B − 1)
    far = layer(torch.randn(4, 6) * 100)
    assert far[:, 6:].max() < 1e-3


@pytest.mark.parametrize("arch,shape,kw", [("mlp", (2,), {"minibatch_kernels": 5}),
                                          ("resnet", (1, 8, 8), {"minibatch_std": True}),
                                          ("dcgan", (1, 8, 8), {"minibatch_std": True})])
def test_minibatch_layers_make_d_score_depend_on_the_batch(arch, shape, kw):
    torch.manual_seed(0)
    _, D = NETWORKS.get(arch).build(4, shape, 0, {"width": 8}, {"width": 8, **kw})
    x = torch.randn(8, *shape)
    y = x.clone()
    y[1:] = x[:1]  # the others collapse onto sample 0; sample 0 itself is unchanged
    assert not torch.allclose(D(x)[0], D(y)[0])


# -- ResNet family and self-attention ----------------------------------------------------------------------

def test_self_attention_starts_as_identity_and_mixes_positions():
    torch.manual_seed(0)
    att = SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(att(x), x)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    y = x.clone()
    y[:, :, 0, 0] += 5.0
    assert not torch.allclose(att(x)[:, :, 7, 7], att(y)[:, :, 7, 7])  # a far position sees the change


@pytest.mark.parametrize("res", [28, 32])
def test_resnet_family_shapes_and_spectral_norm(res):
    G, D = NETWORKS.get("resnet").build(8, (3, res, res), 0, {"width": 8, "attention": res // 2,
                                                                "spectral": True},
                                        {"width": 8, "attention": res // 2})
    x = G(torch.randn(4, 8))
    assert x.shape == (4, 3, res, res) and x.abs().max() <= 1
    assert D(x).shape == (4,)
    sn_layers = [m for m in D.modules() if hasattr(m, "parametrizations")]
    assert sn_layers and any(isinstance(m, SelfAttention) for m in D.modules())
    assert any(hasattr(m, "parametrizations") for m in G.modules())
    with pytest.raises(ConfigError, match="attention"):
        NETWORKS.get("resnet").build(8, (3, res, res), 0, {"attention": 5}, {})
