"""Non-square images (H ≠ W): every network family at 32×64 and 64×32, data resized or cropped to
(H, W), tiny generation and translation runs whose grids and checkpoints work, one clear line for a
size a family cannot take."""
import inspect
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import gankit
from gankit.cli.main import main as cli_main
from gankit.config import load_config
from gankit.data.base import MASK, fit_resolution, resize
from gankit.data.images import centre_crop
from gankit.errors import ConfigError, GankitError
from gankit.nets import NETWORKS, ImageSizeError, build_net
from gankit.nets.sizes import grid

# Tiny settings of every shipped family; the coverage test compares this with the registry.
TINY = {
    "mlp": ({"width": 16, "depth": 2}, {"width": 16, "depth": 2}),
    "dcgan": ({"width": 4}, {"width": 4}),
    "resnet": ({"width": 8, "attention": 16}, {"width": 8, "attention": 16}),
    "pix2pix": ({"width": 4, "depth": 4}, {"width": 4, "n_layers": 2}),
    "cyclegan": ({"width": 4, "n_blocks": 1}, {"width": 4, "n_layers": 2}),
    "biggan": ({"width": 8, "shared_dim": 4}, {"width": 8}),
    "stylegan": ({"w_dim": 8, "mapping_layers": 1, "width": 64, "max_width": 4}, {"width": 64, "max_width": 4}),
    "stylegan2": ({"w_dim": 8, "mapping_layers": 1, "width": 64, "max_width": 4}, {"width": 64, "max_width": 4}),
}
# A size each family cannot take at these settings (None: it takes every size), and the message it gives.
BAD = {
    "mlp": None,
    "dcgan": ((30, 64), "needs the shorter side 4·2ⁿ or 7·2ⁿ"),
    "resnet": ((32, 60), "needs the shorter side 4·2ⁿ or 7·2ⁿ"),
    "pix2pix": ((40, 64), "UNetGenerator(depth=4) needs H and W divisible by 2**4"),
    "cyclegan": ((34, 64), "ResnetGenerator(n_down=2) needs H and W divisible by 2**2 and at least 8"),
    "biggan": ((30, 64), "needs the shorter side 4·2ⁿ or 7·2ⁿ"),
    "stylegan": ((28, 64), "needs the shorter side 4·2ⁿ (8, 16, 32, 64, ...)"),
    "stylegan2": ((28, 64), "needs the shorter side 4·2ⁿ (8, 16, 32, 64, ...)"),
}
SIZES = [(32, 64), (64, 32)]
QUIET = ["health.enabled=false", "train.precision=fp32", "train.threads=1"]


# Families made for one objective, whose networks are tested with it (tests/test_anomaly.py,
# tests/test_ssgan.py): GANomaly's encoder-decoder-encoder G and the semi-supervised GAN's MLP D.
# Not yet covered here: non-square sizes.
OWN = {"ganomaly", "ssgan",
       # ProGAN uses only its active resolution's layers: 16×32 at every growth stage in tests/test_progan.py
       "progan",
       # restoration families (×scale outputs, dict / list critics): 32×64 and 64×32 in tests/test_restoration.py
       "srresnet", "rrdb", "pix2pixhd", "inpaint"}


def shipped():
    """The families of the generation and translation objectives (not those in OWN)."""
    return sorted(n for n, fam in NETWORKS.items() if fam.generator.__module__.startswith("gankit.") and n not in OWN)


def is_translator(family: str) -> bool:
    return "in_channels" in inspect.signature(NETWORKS.get(family).generator.__init__).parameters


def test_every_registered_family_is_covered():
    assert set(TINY) == set(shipped()) == set(BAD)
    assert set(shipped()) | OWN == {n for n, fam in NETWORKS.items() if fam.generator.__module__.startswith("gankit.")}


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("family", shipped())
def test_generator_and_discriminator_forward_backward(family, hw):
    """G's output has (H, W); D scores it (noise families: one logit per sample, PatchGAN: an h×w map
    whose aspect follows the image's); every parameter of both gets a gradient."""
    gk, dk = TINY[family]
    torch.manual_seed(0)
    h, w = hw
    if is_translator(family):
        G = build_net(_model(family, gk, dk), "G", "G", in_channels=1, out_channels=3)
        D = build_net(_model(family, gk, dk), "D", "D", in_channels=3)
        x = G(torch.randn(2, 1, h, w))
        assert x.shape == (2, 3, h, w)
        s = D(x)
        # two stride-2 4x4 convs (padding 1) halve each side, two stride-1 4x4 convs take 1 each
        assert s.shape == (2, 1, h // 4 - 2, w // 4 - 2)
    else:
        G = build_net(_model(family, gk, dk), "G", "G", z_dim=8, sample_shape=(3, h, w), num_classes=3)
        D = build_net(_model(family, gk, dk), "D", "D", sample_shape=(3, h, w), num_classes=3)
        y = torch.tensor([0, 2])
        x = G(torch.randn(2, 8), y)
        assert x.shape == (2, 3, h, w)
        s = D(x, y)
        assert s.shape == (2,)
    if not getattr(G, "linear_output", False):  # style generators' outputs are linear (samples are clamped)
        assert x.abs().max() <= 1.0
    s.square().mean().backward()
    for name, net in (("G", G), ("D", D)):
        for pname, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (family, name, pname)


def _model(family, gk, dk):
    return load_config({"model": {"arch": family, "g": gk, "d": dk}, "train": {"steps": 1}}).model


@pytest.mark.parametrize("family", shipped())
def test_a_size_a_family_cannot_take_is_one_line_naming_data_resolution(family):
    gk, dk = TINY[family]
    model = {"arch": family, "g": gk, "d": dk}
    if BAD[family] is None:  # takes any size: the config loads
        assert load_config({"data": {"resolution": [30, 62]}, "model": model, "train": {"steps": 1}})
        return
    (h, w), reason = BAD[family]
    with pytest.raises(ConfigError) as e:
        load_config({"data": {"resolution": [h, w]}, "model": model, "train": {"steps": 1}})
    msg = str(e.value)
    assert msg.startswith(f"data.resolution=[{h}, {w}]: ") and reason in msg and "\n" not in msg
    suggested = json.loads(re.search(r"use e\.g\. (\[\d+, \d+\])", msg).group(1))
    # the size it suggests loads, and is near the one asked for
    assert load_config({"data": {"resolution": suggested}, "model": model, "train": {"steps": 1}})
    assert abs(suggested[0] - h) <= 8 and abs(suggested[1] - w) <= 8


def test_the_network_itself_refuses_with_the_same_error():
    """Built from a data shape (no data.resolution set) or fed a size at run time, the error is a
    GankitError (one CLI line) and still a ValueError for code that builds networks directly."""
    with pytest.raises(ConfigError, match=r"^data\.resolution=\[30, 64\]: the dcgan generator needs"):
        NETWORKS.get("dcgan").build(8, (1, 30, 64), 0, {"width": 4}, {"width": 4})
    G = NETWORKS.get("pix2pix").generator(in_channels=1, out_channels=1, width=4, depth=4)
    with pytest.raises(ImageSizeError, match=r"got 40x64; use e\.g\. data\.resolution=\[32, 64\]") as e:
        G(torch.zeros(1, 1, 40, 64))
    assert isinstance(e.value, GankitError) and isinstance(e.value, ValueError)


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    code = cli_main(["train", "dcgan-digits", "--set", "data.resolution=[30, 64]", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("gankit: error: data.resolution=[30, 64]:") and "use e.g. [32, 64]" in err
    assert not (tmp_path / "r").exists()  # failed before anything was written


@pytest.mark.parametrize("bad", ["[32, 64, 3]", "[3, 64]", "[32.5, 64]", "wide"])
def test_malformed_resolution_names_the_key(bad):
    with pytest.raises(ConfigError, match=r"^data\.resolution: "):
        load_config("dcgan-digits", [f"data.resolution={bad}"])


def test_resolution_pair_round_trips_through_the_saved_config(tmp_path):
    cfg = load_config("dcgan-digits", ["data.resolution=[32, 64]"])
    assert cfg.data.resolution == (32, 64)
    again = load_config(cfg.to_dict())
    assert again.data.resolution == (32, 64) and again == cfg
    assert load_config("dcgan-digits", ["data.resolution=32"]).data.resolution == 32  # an int stays an int


def test_generation_grid_starts_from_the_quotient_map():
    assert grid(32, 32) == (4, 4, 3) and grid(28, 28) == (7, 7, 2)  # the square networks' grids
    assert grid(32, 64) == (4, 8, 3) and grid(64, 32) == (8, 4, 3) and grid(28, 56) == (7, 14, 2)
    G = NETWORKS.get("dcgan").generator(z_dim=8, sample_shape=(1, 32, 64), width=4)
    assert G.net[0].kernel_size == (4, 8)  # z -> a 4x8 map, then 3 doublings


# -- data ---------------------------------------------------------------------------------------

def test_tensor_data_is_resized_to_h_w_and_square_padding_is_unchanged():
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(fit_resolution(x, 32)[:, :, 2:30, 2:30], x)  # 28 -> 32 still pads
    assert torch.equal(fit_resolution(x, (32, 32)), fit_resolution(x, 32))
    y = fit_resolution(x, (32, 64))
    assert y.shape == (3, 1, 32, 64)
    # stretched, not cropped: a vertical bar at the left edge stays at the left edge
    bar = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    bar[..., :7] = 255
    out = fit_resolution(bar, (32, 64))[0, 0].float()
    assert out[:, :14].mean() > 250 and out[:, 18:].max() < 5


def test_label_maps_resize_nearest_to_h_w():
    labels = torch.randint(0, 5, (2, 1, 16, 16), dtype=torch.uint8) * 50
    out = resize(labels, (24, 40), MASK)
    assert out.shape == (2, 1, 24, 40)
    assert set(out.unique().tolist()) <= set(labels.unique().tolist())  # never a blend of two labels


def test_centre_crop_keeps_the_centre_at_the_target_aspect():
    a = np.zeros((60, 60), dtype=np.uint8)
    a[15:45] = 255  # a white band across the middle half of the rows
    im = Image.fromarray(a)
    wide = np.asarray(centre_crop(im, (16, 32)))  # H:W 1:2 keeps rows 15..45: all white
    assert wide.shape == (16, 32) and wide.min() == 255
    tall = np.asarray(centre_crop(im, (32, 16)))  # 2:1 keeps all rows, the middle 30 columns
    assert tall.shape == (32, 16) and tall[:4].max() < 30 and tall[14:18].min() > 225
    assert np.array_equal(np.asarray(centre_crop(im, 16)), np.asarray(centre_crop(im, (16, 16))))


def test_folder_data_at_h_w(tmp_path):
    for i in range(3):
        a = np.zeros((40, 50, 3), dtype=np.uint8)
        a[10:30] = 40 * (i + 1)
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    cfg = load_config({"data": {"name": "folder", "root": str(tmp_path), "resolution": [16, 40]},
                       "train": {"steps": 1}})
    ds = gankit.data.load_dataset(cfg.data)
    assert ds.sample_shape == (3, 16, 40)
    # 50 wide, 20 high (aspect 2.5) keeps rows 10..30 of each image: one flat grey
    assert torch.equal(ds.x[:, :, 0, 0], torch.tensor([[40] * 3, [80] * 3, [120] * 3], dtype=torch.uint8))
    assert (ds.x.float().std(dim=(2, 3)) == 0).all()


# -- tiny runs ----------------------------------------------------------------------------------

def _png_size(path):
    with Image.open(path) as im:
        return im.size


def test_generation_run_at_32x64_samples_and_reloads(tmp_path):
    run = gankit.train("dcgan-digits", ["data.resolution=[32, 64]", "model.g.width=4", "model.d.width=4",
                                        "train.steps=4", "train.batch_size=16", "train.log_every=2",
                                        "train.sample_every=2", "train.num_samples=16", *QUIET],
                       out=tmp_path / "gen", quiet=True)
    grid_png = tmp_path / "gen" / "samples" / "step_000004.png"
    assert _png_size(grid_png) == (4 * (64 + 2) + 2, 4 * (32 + 2) + 2)  # 4 x 4 tiles of 32 high, 64 wide
    model = gankit.load(tmp_path / "gen")
    x, _ = model.sample(5, seed=3)
    assert x.shape == (5, 1, 32, 64)
    tr = run.trainer
    inputs = {k: v for k, v in tr.fixed_inputs.items() if k in ("z", "y")}
    assert torch.allclose(model.task.generate(model.G, inputs), tr.task.generate(tr.sampling_net(), inputs),
                          atol=1e-6)


def test_cyclegan_run_at_24x40_grids_reloads_and_translates_files(tmp_path):
    run = gankit.train("cyclegan-digits2mnist",
                       ["data.resolution=[24, 40]", "data.limit=32", "model.g.width=4", "model.g.n_blocks=1",
                        "model.d.width=4", "train.batch_size=4", "loss.options.pool_size=3", "train.minutes=null",
                        "train.steps=2", "train.log_every=1", "train.sample_every=2", "train.num_samples=8",
                        *QUIET], out=tmp_path / "cyc", quiet=True)
    # input | output pairs, 4 a row: 8 tiles of 40 wide, 2 rows of 24 high
    assert _png_size(tmp_path / "cyc" / "samples" / "step_000002.png") == (8 * 42 + 2, 2 * 26 + 2)
    model = gankit.load(tmp_path / "cyc")
    tr = run.trainer
    x = tr.fixed_inputs["x"]
    assert x.shape[1:] == (1, 24, 40)
    want = tr.task.generate(tr.sampling_net(), {"x": x})
    got = model.translate(x, "AtoB")
    assert got.shape == x.shape and torch.allclose(got, want, atol=1e-6)
    assert model.translate(x, "BtoA").shape == x.shape
    # a file of another size and shape is resized to the model's 24x40 and translated
    Image.fromarray(np.full((30, 30), 200, dtype=np.uint8)).save(tmp_path / "in.png")
    (out,) = gankit.translate(tmp_path / "cyc", tmp_path / "in.png", tmp_path / "out")
    assert _png_size(out) == (40, 24)
