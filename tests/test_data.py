"""Datasets: IDX parsing, the real Fashion-MNIST files, mixtures, folders, CIFAR pickles, errors."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.config import DataConfig
from gankit.data import EpochSampler, fit_resolution, load_dataset
from gankit.data.idx import FASHION_MNIST_DEFAULT, read_idx
from gankit.data.images import safe_unpickle
from gankit.errors import DataError


def write_idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:  # closed: a GzipFile writes its last block on close
        f.write(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    labels = np.array([0, 1, 2, 3, 9], dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", imgs, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, gz)
    ds = load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    assert ds.x.shape == (5, 1, 28, 28) and ds.x.dtype == torch.uint8
    assert np.array_equal(ds.x[:, 0].numpy(), imgs) and ds.y.tolist() == [0, 1, 2, 3, 9]
    batch = ds.batch(torch.tensor([0, 4]))
    x, y = batch["x"], batch["y"]
    assert y.tolist() == [0, 9]
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


def test_fashion_mnist_names_its_classes_as_its_authors_do(tmp_path):
    """Fashion-MNIST's labels carry the paper's names (so `--class Sneaker` and `exclude_classes: [Bag]`
    work); IDX files under that name whose labels go past 9 are another label set and stay unnamed."""
    imgs = np.zeros((3, 28, 28), np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", imgs, False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 7, 9], np.uint8), False)
    ds = load_dataset(DataConfig(name="fashion-mnist", root=str(tmp_path)))
    names = ds.info["classes"]
    assert len(names) == 10 and names[0] == "T-shirt/top" and names[7] == "Sneaker" and names[9] == "Ankle boot"
    kept = load_dataset(DataConfig(name="fashion-mnist", root=str(tmp_path), exclude_classes=("Sneaker",)))
    assert kept.y.tolist() == [0, 9]
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 7, 25], np.uint8), False)  # EMNIST-like
    assert "classes" not in load_dataset(DataConfig(name="fashion-mnist", root=str(tmp_path))).info
    mnist = load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    assert "classes" not in mnist.info  # digits are their indices


def test_truncated_idx_is_a_clear_error(tmp_path):
    imgs = np.zeros((5, 28, 28), np.uint8)
    write_idx(tmp_path / "x", imgs, False)
    (tmp_path / "y").write_bytes((tmp_path / "x").read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "y")


def test_missing_dataset_names_the_path(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)) as e:
        load_dataset(DataConfig(name="fashion-mnist", root=str(tmp_path)))
    assert "dataset-fashion-mnist" in str(e.value)


def test_missing_dataset_through_cli_is_one_line(tmp_path):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "gankit", "train", "dcgan-fashion-mnist", "--set",
                           f"data.root={tmp_path}", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert str(tmp_path) in proc.stderr


def test_real_fashion_mnist():
    train = load_dataset(DataConfig(name="fashion-mnist"))
    test = load_dataset(DataConfig(name="fashion-mnist"), split="test")
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.num_classes == 10 and torch.bincount(train.y).tolist() == [6000] * 10
    assert FASHION_MNIST_DEFAULT in train.info["root"]


def test_resolution_pads_28_to_32_and_resizes_to_64():
    x = torch.full((2, 1, 28, 28), 200, dtype=torch.uint8)
    p = fit_resolution(x, 32)
    assert p.shape == (2, 1, 32, 32) and p[0, 0, 0, 0] == 0 and p[0, 0, 2, 2] == 200
    r = fit_resolution(x, 64, channels=3)
    assert r.shape == (2, 3, 64, 64) and abs(int(r[0, 0, 32, 32]) - 200) <= 1


@pytest.mark.parametrize("name,n_modes,std", [("ring8", 8, 0.01), ("grid25", 25, 0.05), ("gaussian1d", 1, 0.5)])
def test_mixtures_match_their_definition(name, n_modes, std):
    ds = load_dataset(DataConfig(name=name, size=20000), seed=3)
    assert ds.modes.shape[0] == n_modes and ds.mode_std == std
    err = ds.x - ds.modes[ds.y]
    assert err.std().item() == pytest.approx(std, rel=0.03)
    assert torch.bincount(ds.y, minlength=n_modes).min() > 20000 / n_modes * 0.8
    if name == "ring8":
        assert torch.allclose(ds.modes.norm(dim=1), torch.ones(8))
    if name == "grid25":
        assert sorted(set(ds.modes[:, 0].tolist())) == [-4, -2, 0, 2, 4]


def test_digits_and_split_are_disjoint():
    tr = load_dataset(DataConfig(name="digits"))
    te = load_dataset(DataConfig(name="digits"), split="test")
    assert len(tr) + len(te) == 1797 and tr.x.shape[1:] == (1, 8, 8) and tr.x.max() == 255


def test_folder_dataset_with_class_subfolders(tmp_path):
    from PIL import Image
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = load_dataset(DataConfig(name="folder", root=str(tmp_path), resolution=16))
    assert ds.x.shape == (6, 3, 16, 16) and ds.num_classes == 2 and ds.y.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "dogs" / "9.png").write_bytes(b"not an image")   # last in path order
    with pytest.raises(DataError, match="dogs/9.png"):
        load_dataset(DataConfig(name="folder", root=str(tmp_path), resolution=16))
    (tmp_path / "dogs" / "9.png").unlink()
    few = load_dataset(DataConfig(name="folder", root=str(tmp_path), resolution=16, limit=4))  # spread over classes
    assert few.num_classes == 2 and few.y.tolist() == [0, 0, 1, 1]
    assert all(any(torch.equal(row, r) for r in ds.x) for row in few.x)


def test_a_folder_with_train_and_test_has_splits_not_two_classes(tmp_path):
    from PIL import Image

    def put(path, value):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((10, 10, 3), value, np.uint8)).save(path)
    for i in range(3):
        put(tmp_path / "train" / "cats" / f"{i}.png", 10 + i)
        put(tmp_path / "train" / "dogs" / f"{i}.png", 100 + i)
    put(tmp_path / "test" / "dogs" / "0.png", 200)            # the held-out split: one dog
    cfg = DataConfig(name="folder", root=str(tmp_path), resolution=8)
    train, test = load_dataset(cfg, "train"), load_dataset(cfg, "test")
    assert len(train) == 6 and train.info["classes"] == ["cats", "dogs"] and train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(test) == 1 and test.y.tolist() == [1] and int(test.x.float().mean()) == 200   # dogs is 1 in both
    assert not test.info["test_is_train"]
    put(tmp_path / "test" / "cows" / "0.png", 50)  # a class train/ lacks: an anomaly class, numbered after
    test = load_dataset(cfg, "test")
    assert test.info["classes"] == ["cats", "dogs", "cows"] and test.info["anomalous_classes"] == ["cows"]
    assert test.y.tolist() == [2, 1]
    flat = DataConfig(name="folder", root=str(tmp_path / "train"), resolution=8)     # no split folders
    assert load_dataset(flat, "test").info["test_is_train"] and torch.equal(load_dataset(flat, "test").x, train.x)


def test_folder_images_as_a_viewer_shows_them(tmp_path):
    """What users' folders hold: a phone JPEG stored sideways with an EXIF orientation, an RGBA icon
    whose transparent pixels hide colour, a 16-bit greyscale scan. Each loads as a viewer shows it
    (Pillow's plain convert would keep it sideways, show the hidden colour, clip the scan to white)."""
    from PIL import Image
    upright = np.zeros((24, 40, 3), np.uint8)          # (H, W): wide, red on the left half
    upright[:, :20, 0] = 255
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # stored turned a quarter left: (40, 24)
    exif = Image.Exif()
    exif[0x0112] = 6                                    # Orientation 6: turn 90° clockwise to view
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    icon = np.zeros((24, 40, 4), np.uint8)
    icon[..., 1] = 255                                  # green everywhere, opaque only in the top half
    icon[:12, :, 3] = 255
    Image.fromarray(icon, "RGBA").save(tmp_path / "icon.png")
    scan = np.tile(np.linspace(0, 65535, 40), (24, 1)).astype(np.uint16)
    Image.fromarray(scan).save(tmp_path / "scan.png")
    with Image.open(tmp_path / "scan.png") as im:
        assert im.mode.startswith("I")                  # 16-bit, as Pillow opens it

    ds = load_dataset(DataConfig(name="folder", root=str(tmp_path), resolution=[24, 40]))
    assert ds.x.shape == (3, 3, 24, 40)                 # sorted: icon, phone, scan
    icon_x, phone, scan_x = ds.x[0], ds.x[1].int(), ds.x[2, 0].int()
    assert phone[0, :, :18].min() > 200 and phone[0, :, 22:].max() < 60   # red on the left: upright
    assert icon_x[:, :10].tolist() == torch.tensor([0, 255, 0]).view(3, 1, 1).expand(3, 10, 40).tolist()
    assert (icon_x[:, 14:] == 255).all()                # transparent: white, not the hidden green
    assert scan_x[:, 0].max() <= 1 and scan_x[:, -1].min() >= 254          # black to white, not clipped
    assert (scan_x[0, 1:] >= scan_x[0, :-1]).all() and 15 < int(scan_x[0, 20]) * 40 / 255 < 25


def test_a_folder_is_decoded_once_and_read_from_the_cache_until_it_changes(tmp_path, monkeypatch, capsys):
    import os

    from PIL import Image

    import gankit.data.images as images
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(5):
        Image.fromarray(np.full((30, 20, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
    cfg = DataConfig(name="folder", root="~/imgs", resolution=8)    # `--set data.root=~/imgs`: no shell expands it
    first = load_dataset(cfg)
    assert "folder: decoded 5 images" in capsys.readouterr().err
    cached = list((tmp_path / "cache" / "data").glob("folder-*.safetensors"))
    assert len(cached) == 1

    real_open = images.open_image
    monkeypatch.setattr(images, "open_image", lambda *a, **k: pytest.fail("decoded although cached"))
    again = load_dataset(cfg)
    err = capsys.readouterr().err                              # a cache hit says so in one line
    assert torch.equal(again.x, first.x) and err.count("\n") == 1 and "folder: 5 images under " in err
    assert f"from the cache {cached[0]}" in err

    monkeypatch.setattr(images, "open_image", real_open)
    Image.fromarray(np.full((30, 20, 3), 250, np.uint8)).save(root / "0.png")   # a file changes: a new key
    os.utime(root / "0.png", ns=(1, 1))
    changed = load_dataset(cfg)
    assert changed.x[0].min() > 240 and torch.equal(changed.x[1:], first.x[1:])
    assert len(list((tmp_path / "cache" / "data").glob("folder-*.safetensors"))) == 2

    newest = max((tmp_path / "cache" / "data").glob("folder-*.safetensors"), key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(b"damaged")                                            # a damaged cache: decoded again
    assert torch.equal(load_dataset(cfg).x, changed.x)

    off = DataConfig(name="folder", root=str(root), resolution=16, options={"cache": False})
    before = set((tmp_path / "cache" / "data").iterdir())
    assert load_dataset(off).x.shape == (5, 3, 16, 16) and set((tmp_path / "cache" / "data").iterdir()) == before
    assert "not cached (data.options.cache=false)" in capsys.readouterr().err
    from gankit.data import reference_config                   # evaluation's data keeps cache=false
    assert load_dataset(reference_config(off), "test").x.shape == (5, 3, 16, 16)
    assert set((tmp_path / "cache" / "data").iterdir()) == before

    from gankit.config import load_config
    from gankit.errors import ConfigError
    with pytest.raises(ConfigError, match="data.options.cache: auto, true or false, got 'sometimes'"):
        load_config("dcgan-fashion-mnist", ["data.name=folder", "data.options={cache: sometimes}"])
    with pytest.raises(ConfigError, match="data.options.crops: dataset folder has no such option; allowed: cache"):
        load_config("dcgan-fashion-mnist", ["data.name=folder", "data.options={crops: 3}"])


def test_a_mask_painted_on_a_transparent_layer_marks_only_the_strokes(tmp_path):
    from PIL import Image

    from gankit.restore import read_mask
    m = np.zeros((16, 16, 4), np.uint8)
    m[..., :3] = 255                                    # white everywhere, painted (opaque) only in a square
    m[4:8, 4:8, 3] = 255
    Image.fromarray(m, "RGBA").save(tmp_path / "hole.png")
    mask = read_mask(tmp_path / "hole.png", (16, 16))[0, 0]
    assert mask.sum() == 16 and mask[4:8, 4:8].all()


def test_damaged_or_mixed_up_idx_files_are_one_line_naming_the_file(tmp_path, capsys):
    """As users' copies go wrong: a gzip with damaged bytes, a file cut inside its header, float images,
    the images file given as labels; a label beyond 9 (EMNIST-style) is said, not silently a wider model."""
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    write_idx(tmp_path / "x.gz", imgs, True)
    raw = bytearray((tmp_path / "x.gz").read_bytes())
    raw[40:60] = bytes(b ^ 0xFF for b in raw[40:60])
    (tmp_path / "damaged.gz").write_bytes(bytes(raw))
    (tmp_path / "header").write_bytes(struct.pack(">BBBB", 0, 0, 0x08, 3) + b"\0\0\0\5\0")
    for name, match in (("damaged.gz", "cannot read IDX file"), ("header", "truncated IDX file")):
        with pytest.raises(DataError, match=match):
            read_idx(tmp_path / name)

    def dataset(images, labels):
        root = tmp_path / f"set{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        for stem, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
            code = {np.dtype(np.uint8): 0x08, np.dtype(">f4"): 0x0D}[array.dtype]
            (root / stem).write_bytes(struct.pack(">BBBB", 0, 0, code, array.ndim)
                                      + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())
        return load_dataset(DataConfig(name="mnist", root=str(root)))

    labels = np.array([0, 1, 2, 3, 4], np.uint8)
    with pytest.raises(DataError, match="are two files swapped"):
        dataset(imgs, imgs)
    with pytest.raises(DataError, match="images are >f4; MNIST-style images are uint8"):
        dataset(imgs.astype(">f4"), labels)
    assert dataset(imgs, labels).num_classes == 10  # a split holding classes 0-4 is still a 10-class dataset
    wide = dataset(imgs, np.array([0, 1, 2, 3, 25], np.uint8))
    assert wide.num_classes == 26 and "labels go up to 25: 26 classes, not mnist's 10" in capsys.readouterr().err


@pytest.mark.parametrize("batch,match", [
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1]}, "holds 4 images and 2 labels"),
    ([1, 2, 3], "a list, not CIFAR's dict"),
])
def test_a_cifar_batch_that_is_not_cifars_is_one_line(tmp_path, batch, match):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match=match):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


def test_cifar_pickles_load_and_code_in_them_does_not_run(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    for i in range(1, 6):
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    ds = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert ds.x.shape == (20, 3, 32, 32)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    (root / "evil").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        safe_unpickle(root / "evil")


def test_sampler_is_an_epoch_permutation_and_resumable():
    s = EpochSampler(10, 3, seed=0)
    first = torch.cat([s.next() for _ in range(3)])
    assert sorted(first.tolist()) == sorted(set(first.tolist()))  # no repeats within an epoch
    state = s.state_dict()
    a = [s.next().tolist() for _ in range(5)]
    s2 = EpochSampler(10, 3, seed=99)
    s2.load_state_dict(state)
    assert [s2.next().tolist() for _ in range(5)] == a


def test_fields_resize_images_bilinear_and_masks_nearest():
    from gankit.data.base import IMAGE, LABEL, MASK, Field, resize

    labels = torch.tensor([0, 3, 7], dtype=torch.uint8)
    x = labels[torch.randint(3, (2, 1, 32, 32), generator=torch.Generator().manual_seed(0))]
    as_mask = resize(x, (20, 24), MASK)
    assert as_mask.shape == (2, 1, 20, 24) and set(as_mask.unique().tolist()) <= {0, 3, 7}
    as_image = resize(x, (20, 24), IMAGE)
    assert as_image.shape == (2, 1, 20, 24) and not set(as_image.unique().tolist()) <= {0, 3, 7}  # blended
    assert resize(x, (20, 24), LABEL) is x  # labels have no size
    with pytest.raises(ValueError, match="field kind"):
        Field("picture")
    ds_fields = load_dataset(DataConfig(name="digits")).fields
    assert ds_fields["x"] == IMAGE and ds_fields["y"] == LABEL


def _three_class_folder(root, n=6):
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8), 40 * "abc".index(c) + i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_a_folder_holds_classes_out_before_data_limit_and_spreads_the_limit_over_the_rest(tmp_path):
    from gankit.config import load_config
    from gankit.data import load_dataset

    root = _three_class_folder(tmp_path / "f")
    base = ["data.name=folder", f"data.root={root}", "data.resolution=8", "data.channels=1"]
    ds = load_dataset(load_config("dcgan-digits", base + ["data.exclude_classes=[0]", "data.limit=6"]).data, "train")
    assert sorted(ds.y.tolist()) == [1, 1, 1, 2, 2, 2]  # 6 of what is kept, both kept classes, none of class a
    again = load_dataset(load_config("dcgan-digits", base + ["data.exclude_classes=[0]", "data.limit=6"]).data)
    assert torch.equal(ds.x, again.x)  # seeded (data.subset_seed)
    ds = load_dataset(load_config("dcgan-digits", base + ["data.limit=3"]).data, "train")
    assert sorted(ds.y.tolist()) == [0, 1, 2]


def test_exclude_classes_takes_a_folders_class_names(tmp_path):
    from gankit.config import load_config
    from gankit.data import load_dataset
    from gankit.errors import ConfigError

    root = _three_class_folder(tmp_path / "f")
    base = ["data.name=folder", f"data.root={root}", "data.resolution=8", "data.channels=1"]
    by_name = load_dataset(load_config("dcgan-digits", base + ["data.exclude_classes=[b]"]).data, "train")
    by_index = load_dataset(load_config("dcgan-digits", base + ["data.exclude_classes=[1]"]).data, "train")
    assert torch.equal(by_name.y, by_index.y) and sorted(set(by_name.y.tolist())) == [0, 2]
    with pytest.raises(ConfigError, match="data.exclude_classes: folder has no class named 'z'; its classes: a, b, c"):
        load_dataset(load_config("dcgan-digits", base + ["data.exclude_classes=[z]"]).data, "train")
    with pytest.raises(ConfigError, match="data.exclude_classes: digits has no class named 'z'"):
        load_dataset(load_config("dcgan-digits", ["data.exclude_classes=[z]"]).data, "train")


def _png(path, value=0, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def test_a_folder_is_read_as_torchvisions_imagefolder_reads_it(tmp_path, capsys):
    """Top-level sub-folders are the classes (one may be called train), folder links are followed (a loop
    is not), nested folders belong to their top-level class, hidden entries and loose images beside class
    folders are not read, and each is said in one line."""
    import os
    cfg = lambda root, **k: DataConfig(name="folder", root=str(root), resolution=8, **k)  # noqa: E731
    for i, c in enumerate(("car", "train", "tram")):          # vehicles: "train" is a class, not a split
        for j in range(2):
            _png(tmp_path / "vehicles" / c / f"{j}.png", 50 * i)
    ds = load_dataset(cfg(tmp_path / "vehicles"))
    assert ds.info["classes"] == ["car", "train", "tram"] and ds.y.tolist() == [0, 0, 1, 1, 2, 2]

    src, mine = tmp_path / "src", tmp_path / "mine"
    for j in range(3):
        _png(src / "cats" / f"{j}.png", 10)
    _png(mine / "owls" / "0.png", 200)
    _png(mine / "owls" / "deep" / "er" / "1.png", 201)        # nested: still an owl
    os.symlink(src / "cats", mine / "cats")                   # a linked class folder is followed
    os.symlink(mine, mine / "owls" / "loop")                  # a link back to the root: not followed
    _png(mine / "stray.png", 99)                              # loose beside class folders: not read
    _png(mine / ".ipynb_checkpoints" / "0-checkpoint.png", 7)
    (mine / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (mine / "owls" / "._0.png").write_bytes(b"\0\5\26\7 AppleDouble, not an image")
    capsys.readouterr()
    ds = load_dataset(cfg(mine))
    assert ds.info["classes"] == ["cats", "owls"] and ds.y.tolist() == [0, 0, 0, 1, 1]
    assert ds.x[:3].max() == 10 and ds.x[3:].min() == 200    # no stray (99), no checkpoint copy (7)
    err = capsys.readouterr().err
    assert "folder: 1 image directly in " in err and "as torchvision's ImageFolder" in err
    assert "folder: skipped 3 hidden entries" in err and "owls/._0.png" in err
    assert "not following 1 folder link back to a folder above it (a loop): owls/loop" in err

    for d in ("train/cats", "test/cats"):                     # a splits layout: loose images at its top are said
        _png(tmp_path / "splits" / d / "0.png", 30)
    _png(tmp_path / "splits" / "forgotten.png", 40)
    capsys.readouterr()
    ds = load_dataset(cfg(tmp_path / "splits"))
    assert len(ds) == 1 and ds.x.max() == 30
    assert "folder: 1 image directly in " in capsys.readouterr().err

    for d in ("train/cats", "test/cats", "extra"):            # split names beside other folders: ambiguous
        _png(tmp_path / "mixed" / d / "0.png")
    with pytest.raises(DataError, match=r"folder: .*mixed holds split folders \(test/, train/\) beside other "
                                        r"folders \(extra/\); for splits, put the class folders inside each split"):
        load_dataset(cfg(tmp_path / "mixed"))


def test_a_non_utf8_file_name_is_read_and_cached(tmp_path, monkeypatch):
    import os
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "imgs"
    _png(root / "a.png", 0)
    name = os.fsdecode(b"caf\xe9.png")                        # Latin-1 bytes: not UTF-8 (Linux takes any bytes)
    _png(root / name, 100)
    ds = load_dataset(DataConfig(name="folder", root=str(root), resolution=8))
    assert len(ds) == 2 and sorted(ds.x.float().mean(dim=(1, 2, 3)).tolist()) == [0, 100]
    assert len(list((tmp_path / "cache" / "data").glob("folder-*.safetensors"))) == 1


def test_every_unreadable_file_is_named_in_one_line(tmp_path, monkeypatch):
    import gankit.data.images as images
    for i in range(4):
        _png(tmp_path / f"{i}.png")
    for bad in ("b1.jpg", "b2.png", "b3.png"):
        (tmp_path / bad).write_bytes(b"not an image")
    cfg = DataConfig(name="folder", root=str(tmp_path), resolution=8, options={"cache": False})
    with pytest.raises(DataError) as e:
        load_dataset(cfg)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"folder: 3 unreadable images under {tmp_path}: b1.jpg, b2.png, "
                                              "b3.png (b1.jpg: UnidentifiedImageError") and msg.endswith(
        "; remove or fix them")
    monkeypatch.setattr(images, "MAX_BAD_FILES", 2)
    with pytest.raises(DataError, match=r"folder: at least [23] unreadable images under .* \(stopped looking after 2\): "
                                        r"b1.jpg, b2.png \(b1.jpg: "):
        load_dataset(cfg)


def test_a_folder_larger_than_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    import gankit.data.images as images
    for i in range(3):
        _png(tmp_path / f"{i}.png")
    monkeypatch.setattr(images, "available_memory", lambda: 1000)           # 1,000 bytes free
    monkeypatch.setattr(images, "open_image", lambda *a, **k: pytest.fail("decoded although it cannot fit"))
    with pytest.raises(DataError, match=r"folder: 3 images under .* at 16x16 take 2.2 KiB decoded, more than "
                                        r"the 1.0 KiB of memory available; set data.limit \(about 1 fit\) or a lower "
                                        r"data.resolution"):
        load_dataset(DataConfig(name="folder", root=str(tmp_path), resolution=16))


def test_a_folder_is_decoded_into_one_tensor_not_three_copies(tmp_path, capsys, monkeypatch):
    """numpy's buffers are traced by tracemalloc, torch's are not: decoding into a preallocated tensor leaves
    only the images in flight and Pillow's 64 KiB read buffer per thread (2 threads here: ~150 KB); a list,
    np.stack and a transposed copy were 3x the data (> 2x traced, ~1 MB)."""
    import tracemalloc

    import gankit.data.images as images
    for i in range(40):
        _png(tmp_path / f"{i:02d}.png", i, size=(64, 64))
    monkeypatch.setattr(images, "PROGRESS_FROM", 10)          # a long decode shows a bar
    monkeypatch.setattr(images, "usable_cores", lambda: 2)          # buffers in flight do not grow with the machine
    cfg = DataConfig(name="folder", root=str(tmp_path), resolution=64, options={"cache": False})
    load_dataset(cfg)                                          # imports and first-call set-up, untraced
    tracemalloc.start()
    try:
        ds = load_dataset(cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    data = ds.x.numel()                                        # 40 x 3 x 64 x 64 = 492 KB
    assert ds.x.shape == (40, 3, 64, 64) and ds.x[:, 0, 5, 5].tolist() == list(range(40))
    assert peak < 0.5 * data, (peak, data)                     # 3 copies traced were > 2x data
    err = capsys.readouterr().err
    assert f"folder: reading 40 images under {tmp_path} at 64x64 (~480.0 KiB); not cached" in err
    assert "40/40" in err                                      # the bar's last state


def test_a_folder_keeps_its_few_most_recent_cache_files(tmp_path, monkeypatch):
    import gankit.data.images as images
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    for i in range(6):
        _png(tmp_path / "a" / f"{i}.png", i)
    _png(tmp_path / "b" / "0.png")
    cfg = lambda root, limit=None: DataConfig(name="folder", root=str(tmp_path / root), resolution=8, limit=limit)  # noqa: E731
    files = lambda: set((tmp_path / "cache" / "data").glob("folder-*.safetensors"))  # noqa: E731
    load_dataset(cfg("b"))
    other = files()
    for limit in range(1, 7):                                  # six keys of one folder
        load_dataset(cfg("a", limit))
    assert len(other) == 1 and files() >= other and len(files() - other) == images.FOLDER_CACHE_KEEP == 4
    real_open = images.open_image
    monkeypatch.setattr(images, "open_image", lambda *a, **k: pytest.fail("a recent cache was deleted"))
    for limit in (3, 4, 5, 6):
        assert len(load_dataset(cfg("a", limit))) == limit
    monkeypatch.setattr(images, "open_image", real_open)
    assert len(load_dataset(cfg("a", 2))) == 2 and len(files() - other) == 4   # the oldest went
    monkeypatch.setattr(images, "open_image", lambda *a, **k: pytest.fail("a recent cache was deleted"))
    load_dataset(cfg("a", 6))                                  # read last: kept, though written before limit 2
