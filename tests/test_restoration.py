"""Restoration (super-resolution, inpainting, uncropping, colorization, labels2image): the data made per
batch, the composed outputs, tiling, the losses, evaluation and `gankit translate` on tiny trained runs."""
import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import gankit
from gankit.api import load
from gankit.cli.main import main as cli_main
from gankit.colour import from_lab_model, to_lab_model
from gankit.config import load_config
from gankit.data import load_dataset, to_uint8
from gankit.data.masks import MASKS, draw_masks
from gankit.data.restoration import downscale, one_hot_map, segment, with_hole
from gankit.errors import ConfigError, DataError
from gankit.losses.perceptual import FeatureLoss
from gankit.metrics.domain_net import DomainNet
from gankit.nets import NETWORKS
from gankit.restore import tiled
from gankit.tasks import TranslationTask

RUN = ["train.steps=4", "train.threads=1", "train.log_every=2", "health.enabled=false", "train.precision=fp32",
       "train.minutes=null", "train.batch_size=4", "train.num_samples=4"]
# Tiny runs of every restoration recipe (16 px crops, widths 4-8)
TINY = {
    "sr-psnr": ("esrgan-psnr-photos", ["data.resolution=32", "data.options.crops=16", "model.g.width=8",
                                       "model.g.n_blocks=1", "model.g.growth=4"]),
    "inpaint": ("inpaint-emoji", ["data.resolution=16", "data.limit=16", "model.g.width=8", "model.d.width=8"]),
    "uncrop": ("uncrop-photos", ["data.resolution=16", "data.options.crops=16", "model.g.width=8",
                                 "model.d.width=8"]),
    # the recipe pair: the U-Net with L1 alone, then the cGAN from its G ({root}: the fixture's folder)
    "colorize-l1": ("colorize-l1-emoji", ["data.resolution=16", "data.limit=16", "model.g.width=8",
                                          "model.g.depth=4", "model.d.width=8"]),
    "colorize": ("colorize-emoji", ["data.resolution=16", "data.limit=16", "model.g.width=8", "model.g.depth=4",
                                    "model.d.width=8", "loss.options.init_from={root}/colorize-l1"]),
    "labels": ("pix2pixhd-emoji", ["data.resolution=16", "data.limit=16", "model.g.width=8", "model.g.n_downsample=1",
                                   "model.g.n_blocks=1", "model.g.n_blocks_local=1", "model.d.width=8",
                                   "loss.options.perceptual_weight=0", "loss.options.l1_weight=1.0"]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("restoration")
    # Feature networks of the clean images (FID, perceptual distance), trained briefly on a few images:
    # the numbers they give are not the point here, that evaluation runs and repeats is.
    from gankit.config import DataConfig
    from gankit.metrics.domain_net import domain_net_path, train_domain_net
    for name in ("emoji",):  # photos are featured by the emoji network (data.restoration.FEATURE_SOURCE)
        if not domain_net_path(name).exists():
            train_domain_net(DataConfig(name=name), epochs=1, limit=64)
    for name, (recipe, overrides) in TINY.items():
        gankit.train(recipe, [o.format(root=root) for o in overrides] + RUN, out=root / name, quiet=True)
    # ESRGAN's second stage, started from the PSNR run (relativistic critic, no perceptual term here)
    gankit.train("esrgan-photos", TINY["sr-psnr"][1] + RUN + [
        "model.d.width=8", "loss.options.perceptual_weight=0", "loss.options.pixel_weight=1.0",
        f"loss.options.init_from={root / 'sr-psnr'}"], out=root / "sr-gan", quiet=True)
    return root


def photo(path, size=(37, 29), seed=0):
    """A smooth colour picture of odd size (W, H) saved as PNG."""
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    rgb = np.stack([xx * 255 // size[0], yy * 255 // size[1], (xx + yy) * 127 // sum(size)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


# ----------------------------------------------------------------------------------------------
# Data made per batch


@pytest.mark.parametrize("kind", list(MASKS))
def test_masks_are_binary_non_empty_and_follow_the_generator(kind):
    a = MASKS[kind](6, 32, 48, torch.Generator().manual_seed(3))
    b = MASKS[kind](6, 32, 48, torch.Generator().manual_seed(3))
    assert a.shape == (6, 1, 32, 48) and torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    area = a.mean(dim=(1, 2, 3))
    assert (area > 0).all() and (area < 1).all()
    if kind == "centre":
        assert area.eq(0.25).all()  # half the side each way
    if kind == "border":  # every hole touches the border
        edge = torch.cat([a[:, 0, 0], a[:, 0, -1], a[:, 0, :, 0], a[:, 0, :, -1]], 1)
        assert (edge.amax(1) == 1).all()
    if kind != "centre":
        assert not torch.equal(a, MASKS[kind](6, 32, 48, torch.Generator().manual_seed(4)))


def test_draw_masks_mixes_kinds():
    m = draw_masks(["centre", "border"], 40, 16, 16, torch.Generator().manual_seed(0))
    centre = (m == MASKS["centre"](1, 16, 16)).flatten(1).all(1)
    assert 5 < centre.sum() < 35  # about half of each


def test_known_pixels_come_back_bit_exact():
    """keep-known composition: whatever G outputs, the known pixels of the output are the input's."""
    cfg = load_config("inpaint-emoji", ["data.resolution=16", "data.limit=8", "train.steps=1"])
    data = load_dataset(cfg.data, "test")
    batch = data.batch(torch.arange(8), generator=torch.Generator().manual_seed(0))
    task = TranslationTask(compose="keep-known")
    G = NETWORKS.get("inpaint").generator(in_channels=4, out_channels=3, width=4)
    out = task.generate(G, {"x": batch["A"]})
    known = (batch["mask"] == 0).expand_as(out)
    assert torch.equal(to_uint8(out)[known], to_uint8(batch["B"])[known])
    assert not torch.equal(to_uint8(out)[~known], to_uint8(batch["B"])[~known])  # the hole is G's


def test_super_resolution_pairs_at_x2_and_x4():
    for scale in (2, 4):
        cfg = load_config("srresnet-photos", ["data.resolution=32", f"data.options.scale={scale}",
                                              "data.options.crops=8", "train.steps=1"])
        data = load_dataset(cfg.data, "train")
        assert data.sample_shape == (3, 32 // scale, 32 // scale) and data.target_shape == (3, 32, 32)
        b = data.batch(torch.arange(8), generator=torch.Generator().manual_seed(0))
        assert b["A"].shape == (8, 3, 32 // scale, 32 // scale) and b["B"].shape == (8, 3, 32, 32)
        # A is B downscaled: a flat image stays flat, and A is the 8-bit downscale of B
        assert torch.equal(b["A"], downscale(to_uint8(b["B"]), scale).float() / 127.5 - 1)
    flat = torch.full((1, 3, 16, 16), 77, dtype=torch.uint8)
    assert torch.equal(downscale(flat, 4), torch.full((1, 3, 4, 4), 77, dtype=torch.uint8))


def test_crops_and_holes_are_new_each_batch_and_fixed_under_a_seed():
    cfg = load_config("inpaint-emoji", ["data.name=inpainting", "data.options.source=photos", "data.resolution=16",
                                        "data.options.crops=8", "train.steps=1"])
    data = load_dataset(cfg.data, "train")
    i = torch.arange(8)
    a, b = data.batch(i, torch.Generator().manual_seed(5)), data.batch(i, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(0)
    c, d = data.batch(i), data.batch(i)  # training: the global RNG moves on
    assert not torch.equal(c["B"], d["B"]) and not torch.equal(c["mask"], d["mask"])


@pytest.mark.parametrize("source", ["photos", "emoji"])
def test_flips_turn_training_images_by_the_squares_symmetries_and_never_the_held_out_ones(source):
    """data.options.flips: each training image under one of the 8 symmetries (exact pixel moves, drawn
    from the batch's generator); off, the batches are those of before (no extra draw); test: never."""
    from gankit.data.restoration import symmetries

    over = ["data.name=super-resolution", f"data.options.source={source}", "data.resolution=16", "data.limit=4",
            "data.options.crops=4", "data.options.flips=false"]
    plain = load_dataset(load_config("srresnet-photos", over).data, "train")
    flipped = load_dataset(load_config("srresnet-photos", over + ["data.options.flips=true"]).data, "train")
    i = torch.arange(4)
    a = plain.batch(i, torch.Generator().manual_seed(5))["B"]
    g = torch.Generator().manual_seed(5)
    b = flipped.batch(i, g)["B"]
    # the same crops as without flips, then turned: the generator's next draws pick the symmetries
    g2 = torch.Generator().manual_seed(5)
    plain.clean_images(i, g2)
    assert torch.equal(b, to_model_range_u8(symmetries(to_uint8(a), g2)))
    views = {tuple(symmetries(to_uint8(a[:1]), torch.Generator().manual_seed(s)).flatten().tolist()) for s in range(64)}
    assert len(views) == 8
    for split_data in (load_dataset(load_config("srresnet-photos", over + ["data.options.flips=true"]).data, "test"),):
        ref = load_dataset(load_config("srresnet-photos", over).data, "test")
        assert torch.equal(split_data.batch(i, torch.Generator().manual_seed(1))["B"],
                           ref.batch(i, torch.Generator().manual_seed(1))["B"])
    assert "flips" not in flipped.info["restoration"]


def to_model_range_u8(x):
    from gankit.data import to_model_range
    return to_model_range(x)


def test_colorization_input_is_lightness_and_lab_composition_inverts_it():
    cfg = load_config("colorize-l1-emoji", ["data.resolution=16", "data.limit=8", "model.g.depth=4", "train.steps=1"])
    data = load_dataset(cfg.data, "test")
    b = data.batch(torch.arange(8))
    assert b["A"].shape == (8, 1, 16, 16) and b["B"].shape == (8, 3, 16, 16)
    lab = to_lab_model(b["B"])
    assert torch.allclose(lab[:, :1], b["A"])
    # G predicting the true a*, b* gives back the image (8-bit sRGB is inside the Lab gamut)
    assert (from_lab_model(b["A"], lab[:, 1:]) - b["B"]).abs().max() < 2e-3


def test_segment_orders_classes_dark_to_light_and_is_deterministic():
    img = torch.full((2, 3, 12, 12), -0.9)
    img[:, :, :, 4:8] = 0.1
    img[:, :, :, 8:] = 0.8
    img[1] = img[1].flip(-1)
    labels = segment(img, 3)
    assert torch.equal(labels, segment(img, 3))
    assert (labels[0, 0, :, :4] == 0).all() and (labels[0, 0, :, 4:8] == 1).all() and (labels[0, 0, :, 8:] == 2).all()
    assert torch.equal(labels[1], labels[0].flip(-1))
    oh = one_hot_map(labels, 3)
    assert oh.shape == (2, 3, 12, 12) and torch.equal(oh.sum(1), torch.ones(2, 12, 12))


@pytest.mark.parametrize("override,key", [
    ("data.options.scale=3", "data.options.scale"),
    ("data.options.source=cifar", "data.options.source"),
    ("data.options.colour=1", "data.options.colour"),
    ("data.options.crops=0", "data.options.crops"),
    ("data.options.flips=2", "data.options.flips"),
    ("data.resolution=30", "data.resolution"),
])
def test_bad_restoration_settings_are_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        cfg = load_config("srresnet-photos", [override, "train.steps=1"])
        load_dataset(cfg.data, "train")
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


def test_the_colorization_recipes_are_one_model_in_two_stages():
    """colorize-l1-emoji is colorize-emoji without its critic, and colorize-emoji starts from its run:
    the same data, networks and training settings but the budget (10 + 5 minutes, as measured)."""
    l1, gan = load_config("colorize-l1-emoji"), load_config("colorize-emoji")
    assert (l1.data, l1.model, l1.loss.name) == (gan.data, gan.model, gan.loss.name)
    assert dataclasses.replace(l1.train, minutes=gan.train.minutes) == gan.train
    assert (l1.train.minutes, gan.train.minutes) == (10, 5)
    rest = lambda options: {k: v for k, v in options.items() if k not in ("adversarial", "init_from")}  # noqa: E731
    assert rest(l1.loss.options) == rest(gan.loss.options)
    assert l1.loss.options["adversarial"] is False and gan.loss.options["init_from"] == "runs/colorize-l1-emoji"


def test_colorization_refuses_grey_data():
    with pytest.raises(ConfigError, match=r"^data\.options\.source: colorization needs colour images"):
        load_config("colorize-emoji", ["data.options.source=fashion-mnist", "train.steps=1"])


def test_a_grey_photo_in_a_colour_folder_is_one_line(tmp_path):
    for i in range(3):
        photo(tmp_path / f"p{i}.png", seed=i)
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(tmp_path / "grey.png")
    cfg = load_config("inpaint-emoji", ["data.options.source=folder", f"data.root={tmp_path}", "train.steps=1"])
    with pytest.raises(DataError) as e:
        load_dataset(cfg.data, "train")
        load_dataset(cfg.data, "test")
    assert "grey.png" in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------------
# Networks at non-square sizes, tiling, losses


@pytest.mark.parametrize("hw", [(32, 64), (64, 32)])
@pytest.mark.parametrize("family,g,d", [
    ("srresnet", {"width": 8, "n_blocks": 1, "scale": 2}, {"width": 8}),
    ("rrdb", {"width": 8, "n_blocks": 1, "growth": 4, "scale": 4}, {"width": 8}),
    ("pix2pixhd", {"width": 8, "n_downsample": 2, "n_blocks": 1, "n_blocks_local": 1}, {"width": 8}),
    ("inpaint", {"width": 8, "dilations": (2,)}, {"width": 8}),
])
def test_restoration_families_take_non_square_images(family, g, d, hw):
    fam = NETWORKS.get(family)
    c_in = 4 if family == "inpaint" else 3
    G = fam.generator(in_channels=c_in, out_channels=3, **g)
    D = fam.discriminator(in_channels=3 + (1 if family == "inpaint" else 0), **d)
    scale = g.get("scale", 1)
    x = G(torch.randn(2, c_in, *hw))
    assert x.shape == (2, 3, hw[0] * scale, hw[1] * scale)
    cond = torch.zeros(2, 1, *x.shape[2:]) if family == "inpaint" else None
    out = D(x, cond)
    flat = torch.cat([t.flatten() for t in (out.values() if isinstance(out, dict) else
                                            [o.flatten() for o in out] if isinstance(out, list) else [out])])
    flat.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.parameters())


def test_tiling_agrees_with_one_pass_where_the_receptive_field_fits():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(12, 12, 3, padding=1), torch.nn.PixelShuffle(2)).eval()
    x = torch.randn(1, 3, 40, 57)
    with torch.no_grad():
        whole = to_uint8(net(x))
        pieces = tiled(net, x, tile=16, margin=2, scale=2)   # receptive reach 2 px
    assert pieces.shape == whole.shape == (1, 3, 80, 114) and pieces.dtype == torch.uint8
    assert (pieces.int() - whole.int()).abs().max() <= 1
    with torch.no_grad():
        assert torch.equal(tiled(net, x[:, :, :16, :16], tile=16, margin=2, scale=2), to_uint8(net(x[:, :, :16, :16])))
    with pytest.raises(ValueError):
        tiled(net, x, tile=4, margin=2, scale=2)


def test_relativistic_losses_match_their_closed_form():
    from gankit.objectives.sr import SRObjective

    real, fake = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0])
    sp = F.softplus
    # D: -log σ(C(r) − E C(f)) − log(1 − σ(C(f) − E C(r))), averaged over samples and the two terms
    d = (sp(-(real - fake.mean())).mean() + sp(fake - real.mean()).mean()) / 2
    g = (sp(real - fake.mean()).mean() + sp(-(fake - real.mean())).mean()) / 2
    assert torch.allclose(SRObjective._relativistic(None, real, fake, 1), d)
    assert torch.allclose(SRObjective._relativistic(None, real, fake, 0), g)


def test_feature_loss_is_zero_for_equal_images_and_reaches_the_output():
    torch.manual_seed(0)
    loss = FeatureLoss(DomainNet(3, 16, 4, width=4, feature_dim=8).eval(), "l1")
    y = torch.rand(2, 3, 16, 16) * 2 - 1
    assert loss(y, y) == 0
    x = (y + 0.3 * torch.randn_like(y)).requires_grad_()
    value = loss(x, y)
    value.backward()
    assert value > 0 and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.net.parameters())  # frozen


def test_sr_with_a_user_supplied_feature_network(tmp_path):
    """features: a safetensors domain network read without executing code; the content loss is logged."""
    from gankit.metrics.cache import save_tensors
    from gankit.utils import read_jsonl

    torch.manual_seed(0)
    net = DomainNet(3, 16, 4, width=4, feature_dim=8)
    save_tensors(tmp_path / "f.safetensors", net.state_dict(), {"kind": "domain", "version": 1, "arch": net.arch,
                                                                "dataset": "mine"})
    gankit.train("srgan-photos", ["data.resolution=16", "data.options.crops=16"] + RUN + [
        "model.g.width=8", "model.g.n_blocks=1", "model.d.width=8", "loss.options.init_from=null",
        f"loss.options.features={tmp_path / 'f.safetensors'}"], out=tmp_path / "r", quiet=True)
    rows = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    assert all(np.isfinite(r["perceptual"]) and r["perceptual"] > 0 for r in rows if "perceptual" in r)
    with pytest.raises(ConfigError, match=r"^loss\.options\.features: .* is not a file"):
        gankit.train("srgan-photos", RUN + ["loss.options.init_from=null", "loss.options.features=/nope.safetensors"],
                     out=tmp_path / "r2", quiet=True)


# ----------------------------------------------------------------------------------------------
# Tiny trained runs: evaluation and gankit translate


def test_evaluation_scores_the_task_and_its_baseline_reproducibly(runs):
    from gankit.evaluation import evaluate_translation

    a = evaluate_translation(runs / "sr-psnr", n=8, write=False, metrics=("kid",))
    b = evaluate_translation(runs / "sr-psnr", n=8, write=False, metrics=("kid",))
    s = a["AtoB"]
    assert {"psnr_y", "ssim_y", "psnr_y_baseline", "ssim_y_baseline", "perceptual", "kid_input"} <= set(s)
    assert s == b["AtoB"]  # the same held-out crops every time
    assert 15 < s["psnr_y_baseline"] < 60 and "restoration" in a["protocol"]
    assert a["protocol"]["metrics"] == ["kid"] and "not_computed" not in a["protocol"]
    h = evaluate_translation(runs / "inpaint", n=8, write=False, metrics=("kid",))["AtoB"]
    assert {"hole_psnr", "hole_ssim", "hole_psnr_baseline"} <= set(h)
    c = evaluate_translation(runs / "colorize", n=8, write=False, metrics=("kid",))["AtoB"]
    assert c["colourfulness_baseline"] < 0.05 and c["colourfulness_real"] > 5  # grey: 0 up to Lab rounding


def test_translate_super_resolution_any_size_tiled_and_alpha(runs, tmp_path, capsys):
    from gankit.restore import sr_margin
    photo(tmp_path / "in.png", size=(37, 29))
    out = tmp_path / "out"
    assert cli_main(["translate", str(runs / "sr-psnr"), str(tmp_path / "in.png"), "-o", str(out)]) == 0
    assert np.asarray(Image.open(out / "in.png")).shape == (29 * 4, 37 * 4, 3)
    # tiles (the smallest allowed: a 16 px core) against one pass: the same picture
    margin = sr_margin(load(runs / "sr-psnr"))
    photo(tmp_path / "big.png", size=(2 * margin + 41, 2 * margin + 30))
    for tile, name in ((2 * margin + 16, "tiled"), (0, "one")):
        assert cli_main(["translate", str(runs / "sr-psnr"), str(tmp_path / "big.png"), "-o", str(tmp_path / name),
                         "--tile", str(tile)]) == 0
    big, one = (np.asarray(Image.open(tmp_path / n / "big.png")).astype(int) for n in ("tiled", "one"))
    assert big.shape == one.shape and np.abs(big - one).max() <= 1
    capsys.readouterr()
    assert cli_main(["translate", str(runs / "sr-psnr"), str(tmp_path / "in.png"), "-o", str(tmp_path / "t1"),
                     "--tile", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--tile 1: this network sees {margin} input px" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "t1").exists()
    # ESRGAN's interpolation: alpha 0 is the PSNR model, alpha 1 the GAN
    for alpha, run in (("0", "sr-psnr"), ("1", "sr-gan")):
        assert cli_main(["translate", str(runs / "sr-gan"), str(tmp_path / "in.png"), "-o", str(tmp_path / alpha),
                         "--alpha", alpha, "--tile", "0"]) == 0
        ref = tmp_path / f"ref-{run}"
        assert cli_main(["translate", str(runs / run), str(tmp_path / "in.png"), "-o", str(ref), "--tile", "0"]) == 0
        assert np.array_equal(np.asarray(Image.open(tmp_path / alpha / "in.png")), np.asarray(Image.open(ref / "in.png")))
    assert cli_main(["translate", str(runs / "sr-psnr"), str(tmp_path / "in.png"), "-o", str(out), "--alpha", "0.5"]) == 2


def test_translate_inpainting_keeps_known_pixels_of_the_users_photo(runs, tmp_path, capsys):
    rgb = photo(tmp_path / "in.png", size=(37, 29))
    mask = np.zeros((29, 37), np.uint8)
    mask[8:20, 10:25] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert cli_main(["translate", str(runs / "inpaint"), str(tmp_path / "in.png"), "-o", str(tmp_path / "o"),
                     "--mask", str(tmp_path / "mask.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "o" / "in.png"))
    assert out.shape == rgb.shape
    assert np.array_equal(out[mask == 0], rgb[mask == 0])
    assert cli_main(["translate", str(runs / "inpaint"), str(tmp_path / "in.png"), "-o", str(tmp_path / "s"),
                     "--mask", "stroke", "--side-by-side"]) == 0
    assert np.asarray(Image.open(tmp_path / "s" / "in.png")).shape == (29, 74, 3)
    capsys.readouterr()
    assert cli_main(["translate", str(runs / "inpaint"), str(tmp_path / "in.png"), "-o", str(tmp_path / "x")]) == 2
    assert "--mask" in capsys.readouterr().err


@pytest.mark.parametrize("painted", ["zero-one", "red-on-transparent", "white-jpeg"])
def test_a_mask_file_as_users_save_it_marks_its_hole(runs, tmp_path, painted):
    """A 0/1 mask saved from numpy, a coloured stroke on a transparent layer (composited over black: red
    is grey 76) and a JPEG with compression noise all give the painted rectangle as the hole."""
    rgb = photo(tmp_path / "in.png", size=(37, 29))
    hole = np.zeros((29, 37), bool)
    hole[8:20, 10:25] = True
    if painted == "zero-one":
        Image.fromarray(hole.astype(np.uint8)).save(tmp_path / "mask.png")
    elif painted == "red-on-transparent":
        a = np.zeros((29, 37, 4), np.uint8)
        a[hole] = (255, 0, 0, 255)
        Image.fromarray(a, "RGBA").save(tmp_path / "mask.png")
    else:
        Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.jpg", quality=60)
    mask = next(tmp_path.glob("mask.*"))
    out = tmp_path / "o.png"  # one input: -o may name the file itself
    assert cli_main(["translate", str(runs / "inpaint"), str(tmp_path / "in.png"), "-o", str(out),
                     "--mask", str(mask)]) == 0
    changed = np.any(np.asarray(Image.open(out)) != rgb, axis=-1)
    assert not changed[~hole].any()  # known pixels exact
    assert changed[hole].mean() > 0.5  # the hole was filled (a tiny model leaves some pixels as they were)


@pytest.mark.parametrize("args,message", [
    (["--mask", "BLACK"], "black everywhere, so no hole"),
    (["--mask", "centre", "--extend", "3"], "--extend is for uncropping models; this is a inpainting model"),
    (["--mask", "centre", "--tile", "8"], "--tile is for super-resolution models"),
    (["--mask", "centre", "-o", "EXISTING"], "a file, not a folder"),
    (["--mask", "centre", "-o", "TWO.png"], "one output file for 2 inputs"),  # the folder: in.png, black.png
])
def test_restoration_options_that_cannot_apply_are_one_line(runs, tmp_path, capsys, args, message):
    photo(tmp_path / "in.png")
    Image.fromarray(np.zeros((29, 37), np.uint8)).save(tmp_path / "black.png")
    (tmp_path / "existing").write_text("a user's file")
    subst = {"BLACK": str(tmp_path / "black.png"), "EXISTING": str(tmp_path / "existing"),
             "TWO.png": str(tmp_path / "two.png")}
    inputs = str(tmp_path) if "TWO.png" in args else str(tmp_path / "in.png")
    argv = ["translate", str(runs / "inpaint"), inputs, "-o", str(tmp_path / "o")]
    capsys.readouterr()
    assert cli_main(argv + [subst.get(a, a) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert (tmp_path / "existing").read_text() == "a user's file"


def test_uncropping_refuses_a_negative_border(runs, tmp_path, capsys):
    photo(tmp_path / "in.png", size=(40, 24))
    assert cli_main(["translate", str(runs / "uncrop"), str(tmp_path / "in.png"), "-o", str(tmp_path / "o"),
                     "--extend", "-5"]) == 2
    assert "--extend -5: nothing to fill; give 1 or more pixels" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extend,message", [
    ("0", "--extend 0: nothing to fill"),             # as a mask with no hole
    ("3", "give at most 2 (half the shorter side)"),   # a 5 x 5 photo: the border would be mostly invented
    ("5000", "give at most 2"),
])
def test_uncropping_bounds_the_border(runs, tmp_path, capsys, extend, message):
    photo(tmp_path / "in.png", size=(5, 5))
    capsys.readouterr()
    assert cli_main(["translate", str(runs / "uncrop"), str(tmp_path / "in.png"), "-o", str(tmp_path / "o"),
                     "--extend", extend]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_uncropping_refuses_an_output_over_the_pixel_budget():
    from gankit.restore import MAX_UNCROP_PIXELS, check_options
    fake = type("M", (), {"data": {"restoration": {"task": "uncropping"}}})()
    check_options(fake, extend=1000, size=(4000, 6000))   # 8000 x 6000 = 48 MP: allowed
    with pytest.raises(gankit.GankitError, match=f"over the {MAX_UNCROP_PIXELS // 1_000_000} allowed"):
        check_options(fake, extend=1001, size=(4000, 6000))


def test_no_output_is_written_over_an_input_or_a_named_file(runs, tmp_path, capsys):
    """-o the input folder, -o the input file, -o an existing file, -o x.tif: one line each, nothing written;
    a folder's earlier outputs are replaced, or kept with --skip-existing."""
    (tmp_path / "same").mkdir()
    rgb = photo(tmp_path / "same" / "in.png")
    (tmp_path / "exists.png").write_bytes(b"a user's file")
    sr = str(runs / "sr-psnr")
    for inputs, out, message in (("same", "same", "would write"), ("same/in.png", "same/in.png", "over the input"),
                                 ("same/in.png", "exists.png", "the file exists"),
                                 ("same/in.png", "x.tif", "this run writes .png files")):
        capsys.readouterr()
        assert cli_main(["translate", sr, str(tmp_path / inputs), "-o", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert np.array_equal(np.asarray(Image.open(tmp_path / "same" / "in.png")), rgb)
    assert (tmp_path / "exists.png").read_bytes() == b"a user's file" and not (tmp_path / "x.tif").exists()
    assert sorted(p.name for p in (tmp_path / "same").iterdir()) == ["in.png"]
    # a folder -o: a rerun replaces its earlier outputs; --skip-existing keeps them
    photo(tmp_path / "same" / "two.png", size=(20, 16))
    (tmp_path / "o").mkdir()
    assert cli_main(["translate", sr, str(tmp_path / "same" / "in.png"), "-o", str(tmp_path / "o")]) == 0
    earlier = (tmp_path / "o" / "in.png").read_bytes()
    capsys.readouterr()
    assert cli_main(["translate", sr, str(tmp_path / "same"), "-o", str(tmp_path / "o"), "--skip-existing"]) == 0
    assert (tmp_path / "o" / "in.png").read_bytes() == earlier and (tmp_path / "o" / "two.png").exists()
    assert "keeping 1 output(s)" in capsys.readouterr().err
    assert cli_main(["translate", sr, str(tmp_path / "same"), "-o", str(tmp_path / "o")]) == 0
    assert np.asarray(Image.open(tmp_path / "o" / "in.png")).shape == (29 * 4, 37 * 4, 3)
    assert "replacing 2 output(s)" in capsys.readouterr().err
    # ... but a file there that gankit did not write is the user's: refused in one line, before any output
    (tmp_path / "o" / "two.png").write_bytes(b"my own picture")
    before = (tmp_path / "o" / "in.png").read_bytes()
    assert cli_main(["translate", sr, str(tmp_path / "same"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("two.png: the file exists and gankit did not write it (no gankit provenance); gankit "
                            "replaces only its own outputs: move it away or give another name")
    assert (tmp_path / "o" / "two.png").read_bytes() == b"my own picture"
    assert (tmp_path / "o" / "in.png").read_bytes() == before


def test_a_folder_is_read_whole_before_anything_is_written(runs, tmp_path, capsys):
    """A bad file anywhere in a folder: one line naming it, no output; GIF and TIFF are read from a folder
    as when named, an animated one with a note; more than one input shows a progress bar."""
    (tmp_path / "in").mkdir()
    photo(tmp_path / "in" / "a.png")
    frames = [Image.fromarray(np.full((12, 16, 3), c, np.uint8)) for c in (0, 255)]
    frames[0].save(tmp_path / "in" / "b.gif", save_all=True, append_images=frames[1:])
    frames[1].save(tmp_path / "in" / "c.tif")
    (tmp_path / "in" / "z.png").write_bytes(b"not a png")
    capsys.readouterr()
    assert cli_main(["translate", str(runs / "colorize"), str(tmp_path / "in"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "z.png" in err and len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
    (tmp_path / "in" / "z.png").unlink()
    assert cli_main(["translate", str(runs / "colorize"), str(tmp_path / "in"), "-o", str(tmp_path / "o")]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "b.png", "c.png"]
    err = capsys.readouterr().err
    assert "b.gif: 2 frames; only the first is used" in err and "restoring" in err and "3/3" in err


def test_a_small_hole_survives_a_mask_resized_to_the_photo(tmp_path):
    from gankit.restore import read_mask
    m = np.zeros((100, 70), np.uint8)
    m[37, 51] = 255                                     # one pixel, in a mask 10x larger than the photo
    Image.fromarray(m).save(tmp_path / "m.png")
    small = read_mask(tmp_path / "m.png", (10, 7))[0, 0]
    assert small.sum() == 1 and small[3, 5] == 1
    m = np.zeros((5, 5), np.uint8)
    m[2, 3] = 1
    Image.fromarray(m).save(tmp_path / "s.png")
    big = read_mask(tmp_path / "s.png", (10, 10))[0, 0]  # enlarged: as nearest neighbours
    assert big.sum() == 4 and big[4:6, 6:8].all()


def test_translate_uncropping_extends_the_photo(runs, tmp_path):
    rgb = photo(tmp_path / "in.png", size=(40, 24))
    assert cli_main(["translate", str(runs / "uncrop"), str(tmp_path / "in.png"), "-o", str(tmp_path / "o"),
                     "--extend", "5"]) == 0
    out = np.asarray(Image.open(tmp_path / "o" / "in.png"))
    assert out.shape == (34, 50, 3) and np.array_equal(out[5:-5, 5:-5], rgb)


def test_translate_colorization_and_labels_keep_the_size(runs, tmp_path):
    photo(tmp_path / "in.png", size=(37, 29))
    assert cli_main(["translate", str(runs / "colorize"), str(tmp_path / "in.png"), "-o", str(tmp_path / "c")]) == 0
    assert np.asarray(Image.open(tmp_path / "c" / "in.png")).shape == (29, 37, 3)
    labels = (np.arange(29 * 37).reshape(29, 37) % 8).astype(np.uint8)
    Image.fromarray(labels).save(tmp_path / "map.png")
    for name in ("in", "map"):
        assert cli_main(["translate", str(runs / "labels"), str(tmp_path / f"{name}.png"), "-o", str(tmp_path / "l")]) == 0
        assert np.asarray(Image.open(tmp_path / "l" / f"{name}.png")).shape == (29, 37, 3)
    model = load(runs / "labels")
    assert json.loads(json.dumps(model.data["restoration"]))["classes"] == 8


@pytest.mark.parametrize("name", ["colorize", "labels", "inpaint"])
def test_a_gan_stage_starts_from_the_reconstruction_runs_generator(runs, tmp_path, name):
    """loss.options.init_from works for every paired objective: step 0 of the second stage is the first
    stage's G exactly; a run of another architecture is refused with one line naming the key."""
    from gankit.objectives.paired import init_weights
    from gankit.train.run import Run

    recipe, overrides = TINY[name]
    cfg = load_config(recipe, overrides + RUN + [f"loss.options.init_from={runs / name}"])
    run = Run(cfg, tmp_path / "stage2", quiet=True, callbacks=[])
    first = init_weights(str(runs / name))
    start = run.trainer.nets["G"].state_dict()
    assert first.keys() == start.keys()
    assert all(torch.equal(first[k], start[k]) for k in first)
    assert "D" in run.trainer.nets   # the critic starts fresh
    wider = [o for o in overrides if not o.startswith("model.g.width")] + ["model.g.width=4"]
    with pytest.raises(ConfigError, match=r"loss.options.init_from: .* is another network than this run's") as e:
        Run(load_config(recipe, wider + RUN + [f"loss.options.init_from={runs / name}"]), tmp_path / "bad",
            quiet=True, callbacks=[])
    assert "\n" not in str(e.value)


def test_alpha_interpolates_a_colouriser_and_its_l1_stage(runs, tmp_path):
    """--alpha works for any two-stage run: 0 is the first stage's G, 1 the second's, between differs."""
    recipe, overrides = TINY["colorize"]
    gankit.train(recipe, overrides + RUN + [f"loss.options.init_from={runs / 'colorize'}",
                                            "train.g_optim.lr=0.01"], out=tmp_path / "gan", quiet=True)
    photo(tmp_path / "in.png", size=(24, 20))
    outs = {}
    for a in ("0", "0.5", "1"):
        assert cli_main(["translate", str(tmp_path / "gan"), str(tmp_path / "in.png"), "-o", str(tmp_path / a),
                         "--alpha", a]) == 0
        outs[a] = np.asarray(Image.open(tmp_path / a / "in.png")).astype(int)
    assert cli_main(["translate", str(runs / "colorize"), str(tmp_path / "in.png"), "-o", str(tmp_path / "l1")]) == 0
    first = np.asarray(Image.open(tmp_path / "l1" / "in.png")).astype(int)
    assert np.abs(outs["0"] - first).max() <= 1          # the L1 stage (up to 8-bit rounding)
    assert np.abs(outs["1"] - outs["0"]).max() > 2        # 4 steps at lr 0.01 moved G
    assert not np.array_equal(outs["0.5"], outs["1"])


def test_loss_curves_show_the_reconstruction_terms_and_warn_about_nothing():
    """An SRResNet or inpainting run logs no D loss: its curves show its own losses, with no matplotlib
    warning about an empty legend."""
    import warnings

    from gankit.viz.curves import plot_curves

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for key in ("mse", "l1_hole", "perceptual", "feature_matching"):
            lines = plot_curves([{"step": s, key: 1.0 / (s + 1)} for s in range(0, 500, 100)])
            assert lines[:8] == b"\x89PNG\r\n\x1a\n"
        plot_curves([{"step": 0, "unknown": 1.0}])


def test_pix2pixhd_adversarial_terms_are_the_reference_codes_sums_over_scales():
    """G's adversarial term is Σ_k MSE(D_k(G(x)), 1) and D's is ½ Σ_k [MSE(D_k(y), 1) + MSE(D_k(G(x)), 0)],
    as NVIDIA's pix2pixHD GANLoss adds them up: gankit's least-squares G loss (½·MSE) with the recipe's
    gan_weight 2, summed (not averaged) over the critics' scales."""
    from gankit.train.loop import Trainer

    recipe, overrides = TINY["labels"]
    cfg = load_config(recipe, overrides + RUN + ["loss.options.l1_weight=0", "loss.options.fm_weight=0",
                                                 "model.d.num_d=3"])
    obj = Trainer(cfg).objective
    assert obj.options.gan_weight == 2.0  # the recipe's
    torch.manual_seed(0)
    batch = {"A": F.one_hot(torch.randint(8, (2, 16, 16)), 8).permute(0, 3, 1, 2).float(),
             "B": torch.rand(2, 3, 16, 16) * 2 - 1}
    fake = obj.nets["G"](batch["A"])
    g_loss, _ = obj.g_loss(batch, fake)
    D = obj.nets["D"]
    with torch.no_grad():
        fake_out, real_out = D(fake, cond=batch["A"]), D(batch["B"], cond=batch["A"])
    assert len(fake_out) == 3
    want_g = sum(F.mse_loss(o, torch.ones_like(o)) for o in fake_out)
    assert g_loss.item() == pytest.approx(want_g.item(), rel=1e-5)
    d_loss, _ = obj.d_loss(batch, fake.detach())
    want_d = 0.5 * sum(F.mse_loss(r, torch.ones_like(r)) + F.mse_loss(f, torch.zeros_like(f))
                       for r, f in zip(real_out, fake_out))
    assert d_loss.item() == pytest.approx(want_d.item(), rel=1e-5)
