"""Colour image sources (gankit/data/photos.py): scikit-image's photographs, the Noto colour emoji font,
folders of photographs, random crops, and the photos / emoji datasets. Real files throughout."""
import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gankit.data.photos as P
from gankit.config import Config, DataConfig, validate
from gankit.data.base import DATASET_OPTIONS, DATASETS
from gankit.errors import ConfigError, DataError
from gankit.utils import cache_dir

# ----------------------------------------------------------------------------------- photographs


def test_photo_split_is_fixed_whole_images():
    train, test = P.photo_files("train"), P.photo_files("test")
    assert [p.name for p in test] == ["coffee.png", "rocket.jpg"]
    assert len(train) == 7 and not {p.name for p in train} & {p.name for p in test}
    assert {"motorcycle_left.png", "motorcycle_right.png"} <= {p.name for p in train}  # the stereo pair together
    photos = P.load_photos("test")
    assert [name for name, _ in photos] == ["coffee.png", "rocket.jpg"]
    coffee = photos[0][1]
    assert coffee.dtype == torch.uint8 and tuple(coffee.shape) == (3, 400, 600)  # coffee.png is 600x400 RGB
    # a colour photograph: the channels differ (a grey one would have R == G == B everywhere)
    assert (coffee[0].int() - coffee[2].int()).abs().float().mean() > 10
    assert all(x.shape[0] == 3 and x.dtype == torch.uint8 for _, x in P.load_photos("train"))
    with pytest.raises(DataError, match="no split 'val'"):
        P.photo_files("val")


def test_missing_photo_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "skimage_data_dir", lambda: tmp_path)
    with pytest.raises(DataError, match="reinstall scikit-image") as e:
        P.load_photos("test")
    assert str(tmp_path / "coffee.png") in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------- emoji


@pytest.fixture(scope="module")
def emoji64():
    """Every glyph at 64 px, decoded once per test session into the session's cache (conftest's
    GANKIT_CACHE), with the time the first load took."""
    tic = time.monotonic()
    names, x = P.emoji_glyphs(64)
    return names, x, time.monotonic() - tic


def test_emoji_glyphs_and_split(emoji64):
    names, x, seconds = emoji64
    assert len(names) > 2000 and names == sorted(names) and len(set(names)) == len(names)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (len(names), 3, 64, 64)
    assert seconds < 20, f"decoding the emoji took {seconds:.1f} s"
    train, test = P.load_emoji("train"), P.load_emoji("test")
    assert len(train) + len(test) == len(names) and len(test) == len(names) // 10
    assert tuple(test.shape[1:]) == (3, 64, 64)
    i_train, i_test = P.emoji_split(names, "train"), P.emoji_split(names, "test")
    assert not set(i_train.tolist()) & set(i_test.tolist())
    assert torch.equal(test, x[i_test]) and torch.equal(train, x[i_train])
    # on white: the border pixels are white for most glyphs, yet the glyphs hold colour
    assert x[:, :, 0, 0].float().median() == 255
    non_white = (x < 240).any(1).float().mean((1, 2))          # (N,) fraction of coloured pixels per glyph
    assert non_white.median() > 0.2 and (non_white > 0.01).float().mean() > 0.95
    colourful = (x.int().max(1).values - x.int().min(1).values > 40).float().mean()
    assert colourful > 0.1   # a grey or single-channel mistake would leave channels equal


def test_emoji_split_is_pinned():
    """The split comes from a constant seed: these indices are the split of any 20 sorted names."""
    names = [f"g{i:02d}" for i in range(20)]
    assert P.emoji_split(names, "test").tolist() == [14, 7]
    assert sorted(P.emoji_split(names, "train").tolist()) == sorted(set(range(20)) - {14, 7})


def test_emoji_second_load_reads_the_cache(emoji64, monkeypatch):
    names, x, _ = emoji64
    path = P._emoji_cache_path(P.EMOJI_FONT, 64)
    assert path.parent == cache_dir() / "data" and path.name.startswith("emoji-64-") and path.exists()

    def no_decode(*a):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(P, "_decode_emoji", no_decode)
    names2, x2 = P.emoji_glyphs(64)
    assert names2 == names and torch.equal(x2, x)


def test_emoji_font_errors_and_folder_root(tmp_path):
    with pytest.raises(DataError) as e:
        P.load_emoji("train", root=tmp_path / "nowhere.ttf")
    assert str(e.value) == (f"emoji: no colour emoji font at {tmp_path / 'nowhere.ttf'}; install Debian's "
                            "fonts-noto-color-emoji (apt-get install fonts-noto-color-emoji) or set data.root to "
                            "a NotoColorEmoji.ttf")
    (tmp_path / "fonts").mkdir()
    (tmp_path / "fonts" / "NotoColorEmoji.ttf").symlink_to(P.EMOJI_FONT)
    assert P.emoji_font(tmp_path) == tmp_path / "fonts" / "NotoColorEmoji.ttf"
    bad = tmp_path / "bad.ttf"
    bad.write_bytes(b"not a font at all")
    with pytest.raises(DataError, match="cannot read the font"):
        P.emoji_glyphs(64, bad)


def test_emoji_dataset(emoji64):
    names, x, _ = emoji64
    ds = DATASETS.get("emoji")(DataConfig(name="emoji", limit=10), "test")
    assert ds.kind == "image" and ds.y is None and ds.info["split"] == "test"
    assert torch.equal(ds.x, x[P.emoji_split(names, "test")[:10]])
    grey = DATASETS.get("emoji")(DataConfig(name="emoji", limit=10, channels=1), "test")
    assert tuple(grey.x.shape) == (10, 1, 64, 64)
    luma = (ds.x.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert (grey.x.float() - luma).abs().max() <= 0.5
    with pytest.raises(ConfigError, match="data.resolution"):
        DATASETS.get("emoji")(DataConfig(name="emoji", resolution=(32, 64)), "test")


# ---------------------------------------------------------------------------------- random crops


def _coordinates(h, w, tag):
    """uint8 (3, h, w): channel 0 = row, channel 1 = column, channel 2 = ``tag`` (which image)."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([rows, cols, torch.full_like(rows, tag)]).to(torch.uint8)


def test_random_crops_are_uniform_sub_blocks():
    images = [_coordinates(100, 120, 0), _coordinates(40, 30, 1)]
    crops = P.random_crops(images, 4000, 16, torch.Generator().manual_seed(0))
    assert crops.dtype == torch.uint8 and tuple(crops.shape) == (4000, 3, 16, 16)
    tag, top, left = crops[:, 2, 0, 0].long(), crops[:, 0, 0, 0].long(), crops[:, 1, 0, 0].long()
    # each crop is an unchanged block of its image at (top, left)
    for k in range(0, 4000, 97):
        src = images[tag[k]]
        assert torch.equal(crops[k], src[:, top[k]:top[k] + 16, left[k]:left[k] + 16])
    # images are drawn uniformly: 2,000 +- 4 sigma (sigma = sqrt(4000 / 4) = 31.6)
    assert abs(int((tag == 1).sum()) - 2000) < 127
    # positions cover every place a crop fits, both extremes included (85 rows, 105 columns)
    big = tag == 0
    assert top[big].min() == 0 and top[big].max() == 100 - 16 and left[big].max() == 120 - 16
    assert abs(top[big].float().mean().item() - 42) < 2.5   # mean of U{0..84} = 42, std of the mean ~ 0.55


def test_random_crops_deterministic_per_generator():
    images = [_coordinates(50, 60, 0), _coordinates(33, 70, 1)]
    a = P.random_crops(images, 50, 8, torch.Generator().manual_seed(3))
    b = P.random_crops(images, 50, 8, torch.Generator().manual_seed(3))
    c = P.random_crops(images, 50, 8, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_crops_upscale_a_small_image():
    ramp = torch.linspace(0, 255, 10).round().to(torch.uint8).view(1, 10, 1).expand(3, 10, 20).contiguous()
    crops = P.random_crops([ramp], 20, 16, torch.Generator().manual_seed(0))
    assert tuple(crops.shape) == (20, 3, 16, 16)
    # the short side (10 rows) became 16: every crop spans the whole ramp from top to bottom, monotone
    col = crops[:, 0, :, 5].int()
    assert (col[:, 1:] >= col[:, :-1]).all()
    assert (col[:, 0] < 20).all() and (col[:, -1] > 235).all()
    flat = torch.full((3, 5, 7), 77, dtype=torch.uint8)   # bicubic overshoot must not change a flat image
    assert (P.random_crops([flat], 3, 16, torch.Generator().manual_seed(0)) == 77).all()


# ------------------------------------------------------------------------------- photos dataset


def test_photos_dataset_is_fixed_crops():
    make = DATASETS.get("photos")
    train = make(DataConfig(name="photos"), "train", seed=0)
    assert train.kind == "image" and train.y is None and tuple(train.x.shape) == (2000, 3, 64, 64)
    assert train.info["split"] == "train" and "coffee" not in train.info["source"]
    again = make(DataConfig(name="photos"), "train", seed=5)   # the run's seed does not change the data
    assert torch.equal(again.x, train.x)
    test = make(DataConfig(name="photos", options={"crops": 40}, resolution=32), "test")
    assert tuple(test.x.shape) == (40, 3, 32, 32) and "coffee.png" in test.info["source"]
    # test crops come from coffee / rocket: the default 500 start with the same 40 (one generator per split)
    assert torch.equal(make(DataConfig(name="photos", resolution=32), "test").x[:40], test.x)
    small = make(DataConfig(name="photos", limit=7, channels=1, resolution=32), "train")
    assert tuple(small.x.shape) == (7, 1, 32, 32)
    assert not torch.equal(make(DataConfig(name="photos", resolution=32, limit=40), "train").x, test.x)
    with pytest.raises(ConfigError, match="use the folder dataset for your own"):
        make(DataConfig(name="photos", root="/tmp"), "train")


def test_options_are_checked():
    with pytest.raises(ConfigError) as e:
        DATASET_OPTIONS["photos"]("photos", {"crop": 10})
    assert str(e.value) == "data.options.crop: unknown key for photos; allowed: crops"
    for bad in (0, -3, True, "100", 2.5):
        with pytest.raises(ConfigError, match="data.options.crops"):
            DATASET_OPTIONS["photos"]("photos", {"crops": bad})
    DATASET_OPTIONS["photos"]("photos", {"crops": 1})
    with pytest.raises(ConfigError, match=r"data.options.crops: unknown key for emoji; allowed: none"):
        DATASET_OPTIONS["emoji"]("emoji", {"crops": 10})
    base = Config()
    cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=1),
                              data=DataConfig(name="photos", options={"size": 3}))
    with pytest.raises(ConfigError, match="data.options.size: unknown key for photos"):
        validate(cfg)


# ----------------------------------------------------------------------------- photo folders


def _save(path: Path, seed: int, size=(20, 16), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return arr


def _tree(root: Path, n: int):
    """n colour images in three sub-folders (PNG, JPEG every fifth); names as test_folder_* expect."""
    names = []
    for i in range(n):
        rel = f"d{i % 3}/img{i:02d}." + ("jpg" if i % 5 == 4 else "png")
        _save(root / rel, i)
        names.append(rel)
    return names


def test_folder_photos_recursive_and_stable_split(tmp_path):
    rels = _tree(tmp_path, 20)
    (tmp_path / "notes.txt").write_text("not an image")
    train = dict(P.load_folder_photos(tmp_path, "train"))
    test = dict(P.load_folder_photos(tmp_path, "test"))
    assert sorted({*train, *test}) == sorted(rels)
    assert not set(train) & set(test) and list(test) == ["d2/img11.png"]   # the one hashed below 0.1
    png = np.array(Image.open(tmp_path / "d2/img11.png"))
    assert torch.equal(test["d2/img11.png"], torch.from_numpy(png).permute(2, 0, 1))  # full size, unchanged
    assert all(x.dtype == torch.uint8 and tuple(x.shape) == (3, 16, 20) for x in train.values())
    # adding files never moves one: d2/img11 stays held out, and three of the 20 new ones hash into test
    _tree(tmp_path, 40)
    test40 = [name for name, _ in P.load_folder_photos(tmp_path, "test")]
    assert test40 == ["d1/img31.png", "d1/img37.png", "d2/img11.png", "d2/img29.jpg"]


def test_folder_photos_follow_links_and_skip_hidden_entries(tmp_path):
    """A photo folder is listed as the folder dataset lists one (images.scan_images): a linked sub-folder is
    read, a link looping back is not (no hang), and macOS's ._x.png, .DS_Store and a notebook's
    .ipynb_checkpoints/ copy are not photos (the ._ file is not even an image: it stopped the load)."""
    import os
    rels = _tree(tmp_path / "elsewhere", 6)
    root = tmp_path / "photos"
    _save(root / "own.png", 99)
    os.symlink(tmp_path / "elsewhere", root / "linked")
    os.symlink(root, root / "loop")
    (root / "._own.png").write_bytes(b"\0\5\26\7 AppleDouble")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    _save(root / ".ipynb_checkpoints" / "own-checkpoint.png", 98)
    names = [n for split in ("train", "test") for n, _ in P.load_folder_photos(root, split)]
    assert sorted(names) == sorted(["own.png"] + [f"linked/{r}" for r in rels])


def test_folder_split_keeps_both_splits_non_empty():
    for n in range(2, 12):
        rels = [f"photo{n}_{i}.png" for i in range(n)]
        flags = P.folder_split(rels)
        assert any(flags) and not all(flags)
        # only the fallback can be forced: without it the hash alone decides
        assert sum(flags) == max(1, sum(P._path_fraction(r) < 0.1 for r in rels))
    assert P.folder_split(["only.png"]) == [False]


def test_folder_with_one_image_has_no_test_split(tmp_path):
    _save(tmp_path / "a.png", 0)
    assert len(P.load_folder_photos(tmp_path, "train")) == 1
    with pytest.raises(DataError, match="add at least one more"):
        P.load_folder_photos(tmp_path, "test")


def _error_of(root):
    """The DataError message of whichever split reads the bad file (both are tried)."""
    errors = []
    for split in ("train", "test"):
        try:
            P.load_folder_photos(root, split, min_size=10)
        except DataError as e:
            errors.append(str(e))
    assert len(errors) == 1, errors
    assert "\n" not in errors[0]
    return errors[0]


@pytest.mark.parametrize("kind", ["corrupt", "grey-L", "grey-RGB", "small"])
def test_folder_bad_file_is_one_line_naming_it(tmp_path, kind):
    _save(tmp_path / "good.png", 0)
    bad = tmp_path / "sub" / "bad.png"
    if kind == "corrupt":
        bad.parent.mkdir()
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")
        expect = f"{bad}: cannot read this image ("
    elif kind == "grey-L":
        _save(bad, 1, mode="L")
        expect = f"{bad}: a grey image in a colour photo folder"
    elif kind == "grey-RGB":   # saved as RGB, but R == G == B everywhere
        _save(bad, 1, mode="L")
        Image.open(bad).convert("RGB").save(bad)
        assert Image.open(bad).mode == "RGB"
        expect = f"{bad}: a grey image in a colour photo folder"
    else:
        _save(bad, 1, size=(12, 8))
        expect = f"{bad}: 12x8 pixels, smaller than the 10 px side"
    message = _error_of(tmp_path)
    assert message.startswith(expect), message
