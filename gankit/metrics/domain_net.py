"""A small CNN classifier per dataset: the ``domain`` feature extractor.

ImageNet's Inception knows nothing about 28x28 clothing or digits, so for the MNIST
family gankit trains its own classifier on the real train split once, caches it under
``<cache>/features/domain-<dataset>.safetensors`` and uses its penultimate layer
(128-d, before the ReLU) as features and its softmax for the Inception Score.
About 1.8 M multiply-adds per 28x28 image, so training is a minute or two on a laptop CPU.

An image dataset without labels (a ``folder`` of images with no sub-folders) gets a net
trained on a self-supervised pretext task instead, rotation prediction (RotNet, Gidaris et
al. 2018): every image appears four times, turned by 0, 90, 180 and 270 degrees, labelled
with the turn (4 classes). Its features are used as for a classifier; its reported test
accuracy is rotation accuracy (chance 0.25), its metadata says ``"pretext": "rotation"``, and
its logits (which say how an image is turned, not what it shows) are not offered to the
Inception Score or class metrics. Rotation needs square images.
"""
from __future__ import annotations

import glob
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open

from ..errors import GankitError
from .cache import cache_dir, load_tensors, save_tensors, sha256_tensor
from .extractor import FeatureExtractor, describe_fit, fit_images, num_threads, quantize

# Datasets a domain net is trained for, with how long to train it (passes over the
# train split) and the test accuracy it is expected to reach.
DOMAIN_SPECS = {
    "fashion-mnist": {"epochs": 2, "expect": 0.90},
    "mnist": {"epochs": 2, "expect": 0.98},
    "mnist-5k": {"epochs": 20, "expect": 0.98, "shift": 2},   # 4,000 train images: random shifts help
    "digits": {"epochs": 40, "expect": 0.98},
    # 64x128 log-mel spectrograms (gankit/data/audio.py): the digit said, or the speaker with
    # data.options.label=speaker; 1,920 training words in the default corpus
    "spoken-digits": {"epochs": 30, "expect": None, "shift": 2, "label": "digit"},
    # unlabelled colour data: rotation prediction (below); 84.4 % on the 392 held-out emoji. (The 2,000
    # crops of scikit-image's 7 training photos are memorised and stay at chance on the held-out ones,
    # 23.2 % after 20 epochs: restoration on photos uses the emoji network, docs/restoration.md.)
    "emoji": {"epochs": 2, "expect": None},
}
DEFAULT_EPOCHS = 2
VERSION = 1  # bump when the architecture or the training recipe changes
# At least this many optimiser steps when the epochs are the dataset's default: `epochs` passes over a
# small corpus are few full-batch steps (36 spectrograms x 30 epochs = 30 steps), after which the speaker
# classifier still gave one class to every word (held-out accuracy 0.333 with 3 speakers = chance);
# 100 and 200 steps both reached 1.000 on its 9 held-out words (docs/audio.md): 150 keeps a margin.
MIN_STEPS = 150
# A judge network is "near chance" when its held-out accuracy is below chance + this share of the way
# to 1 (3 classes: under 0.5; 10: under 0.325; rotation's 4: under 0.4375): the scores it gives are then
# no evidence and every card built on it says so.
NEAR_CHANCE = 0.25


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DomainNet(nn.Module):
    """conv3x3(32) -> maxpool -> conv3x3/2(64) -> conv3x3/2(64) -> fc(feature_dim) -> fc(classes).

    Input (B, C, H, W) in [-1, 1], ``size`` = H = W (an int) or [H, W] (spectrograms: mel bins x
    frames); returns features (B, feature_dim) taken before the ReLU (a Gaussian fit to them is
    better conditioned than to rectified ones) and logits (B, num_classes).
    """

    def __init__(self, in_channels: int, size, num_classes: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.arch = dict(in_channels=in_channels, size=size, num_classes=num_classes, width=width,
                         feature_dim=feature_dim)
        self.body = nn.Sequential(_conv(in_channels, width, 1), nn.MaxPool2d(2),
                                  _conv(width, 2 * width, 2), _conv(2 * width, 2 * width, 2), nn.Flatten())
        def side(n: int) -> int:  # maxpool /2, then two stride-2 convs (ceil)
            return -(-(-(-(n // 2) // 2)) // 2)

        h, w = (size, size) if isinstance(size, int) else size
        flat = 2 * width * side(h) * side(w)
        self.embed = nn.Linear(flat, feature_dim)
        self.head = nn.Sequential(nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True), nn.Dropout(0.2),
                                  nn.Linear(feature_dim, num_classes))

    def forward(self, x):
        f = self.embed(self.body(x))
        return f, self.head(f)


def domain_net_path(dataset: str, data_cfg=None, train=None) -> Path:
    """The cached net of ``dataset``; a ``data_cfg`` with a ``root`` or ``options`` (another folder,
    the audio data's speaker labels) gets its own file, named by a hash of them and, with a root,
    of the images it trains on (:func:`domain_key`; ``train``: that split, if loaded already)."""
    return cache_dir() / "features" / f"{domain_key(dataset, data_cfg, train)}.safetensors"


def domain_source(data_cfg) -> dict:
    """What a net's file records of the data it learnt from (its metadata's ``source``): the resolved root
    and the options, the part of :func:`domain_key` known without reading a single image."""
    root = getattr(data_cfg, "root", None)
    return {"root": str(Path(root).expanduser().resolve()) if root is not None else None,
            "options": dict(getattr(data_cfg, "options", None) or {})}


def may_have_domain_net(data_cfg) -> bool:
    """Whether the cache may hold a net for ``data_cfg``, found without decoding its images: False when no
    file of the dataset's name is cached, or when each one records another root or options (files of
    before that record kept their metadata without ``source``, and may match)."""
    name = data_cfg.name
    exact = re.compile(rf"domain-{re.escape(name)}(-[0-9a-f]{{10}})?\.safetensors")
    files = [p for p in (cache_dir() / "features").glob(f"domain-{glob.escape(name)}*.safetensors")
             if exact.fullmatch(p.name)]
    want = domain_source(data_cfg)
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                source = json.loads((f.metadata() or {}).get("gankit", "{}")).get("source")
        except (OSError, ValueError, SafetensorError):
            return True  # unreadable here: loading it says what is wrong
        if source is None or source == want:
            return True
    return False


def domain_key(dataset: str, data_cfg=None, train=None) -> str:
    """``domain-<dataset>``, plus ``-<hash>`` of the data's root and options when it has either. Data
    under a root of the user's (a ``folder``, a copy of MNIST) can change in place, so the hash then
    also covers the content of the train split the net learns from: ``sha256_tensor`` of its images
    (and labels), the hash the cached reference statistics are keyed by. Replacing a folder's images
    trains a new net instead of reusing the old one."""
    root = getattr(data_cfg, "root", None)
    options = getattr(data_cfg, "options", None) or {}
    if root is None and not options:
        return f"domain-{dataset}"
    what = {"root": str(Path(root).expanduser().resolve()) if root is not None else None, "options": options}
    if root is not None:
        train = train if train is not None else _load_split(data_cfg, "train")  # the split, if loaded already
        what["data_sha256"] = sha256_tensor(train.x)
        what["labels_sha256"] = sha256_tensor(train.y) if train.y is not None else None
    return f"domain-{dataset}-{hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]}"


def _load_split(data_cfg, split: str):
    from ..config import DataConfig
    from ..data import load_dataset

    # Native resolution and channels: the net sees what the dataset is, not how a run resized it.
    cfg = DataConfig(name=data_cfg.name, root=data_cfg.root, options=dict(getattr(data_cfg, "options", None) or {}))
    ds = load_dataset(cfg, split)
    if ds.kind != "image":
        raise GankitError(f"features domain: dataset {data_cfg.name!r} is not an image dataset; "
                          "use --features raw (vectors) or --features inception")
    return ds


ROTATION_CLASSES = 4   # the pretext task's turns: 0, 90, 180, 270 degrees
# The rotation task learns from at most this many images (a seeded subset; each seen in 4 turns), and is
# scored on at most as many held-out ones: a user's folder of 70,000 images would otherwise take tens of
# CPU minutes before its first evaluation. The datasets of this project's numbers hold fewer (emoji 3,534).
ROTATION_MAX_IMAGES = 10_000


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotation pretext task (Gidaris et al. 2018) of square images ``x`` (N, C, H, H):
    images (4N, C, H, H), each turned counter-clockwise by k x 90 degrees (k = 0..3, all of
    image 0's turns first), and labels (4N,) int64 = k."""
    turned = torch.stack([torch.rot90(x, k, dims=(-2, -1)) for k in range(ROTATION_CLASSES)], 1)
    return turned.flatten(0, 1), torch.arange(ROTATION_CLASSES).repeat(len(x))


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``net`` (returning (features, logits)) on model-range images ``x``."""
    net.eval()
    correct = 0
    with torch.inference_mode(), num_threads(1):
        for i in range(0, len(x), batch_size):
            correct += (net(x[i:i + batch_size].float())[1].argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / max(len(x), 1)


def random_shift(x: torch.Tensor, shift: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image (B, C, H, W) by up to ``shift`` px in x and y, filling with the background (-1)."""
    b, _, h, w = x.shape
    xp = F.pad(x, (shift, shift, shift, shift), value=-1.0)
    oy = torch.randint(0, 2 * shift + 1, (b,), generator=g)
    ox = torch.randint(0, 2 * shift + 1, (b,), generator=g)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]            # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w))[:, None, :]            # (B, 1, W)
    return xp.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows, cols].permute(0, 3, 1, 2)


def fit_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: float, seed: int = 0,
                   batch_size: int = 128, lr: float = 3e-3, threads: Optional[int] = 1, min_steps: int = 1,
                   shift: int = 0, log: Optional[Callable[[str], None]] = None) -> nn.Module:
    """Train ``net`` with AdamW and a one-cycle schedule on uint8 or model-range images ``x`` (N, C, H, W).

    Shared by the domain net and the CAS classifier so both use one recipe. ``shift`` > 0
    augments with random translations of up to that many pixels. One thread by default: this
    net is too small to gain from a second, contended one.
    """
    with num_threads(threads):
        return _fit(net, x, y, epochs, seed, batch_size, lr, min_steps, shift, log)


def _fit(net, x, y, epochs, seed, batch_size, lr, min_steps, shift, log):
    from ..data import to_model_range

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = len(x)
    bs = min(batch_size, n)
    steps = max(int(epochs * n / bs), min_steps)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    perm, pos = torch.randperm(n, generator=g), 0
    tic = time.monotonic()
    for step in range(steps):
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos:pos + bs]
        pos += bs
        xb = x[idx]
        xb = to_model_range(xb) if xb.dtype == torch.uint8 else xb.float()
        if shift:
            xb = random_shift(xb, shift, g)
        loss = F.cross_entropy(net(xb)[1], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step + 1) % 100 == 0:
            log(f"  step {step + 1}/{steps}  loss {loss.item():.3f}  {time.monotonic() - tic:.0f}s")
    net.eval()
    return net


def train_domain_net(data_cfg, epochs: Optional[float] = None, limit: Optional[int] = None, seed: int = 0,
                     path: Optional[Path] = None, log: Optional[Callable[[str], None]] = None) -> Path:
    """Train the domain classifier of ``data_cfg.name`` on its train split and cache it; returns the file.

    ``limit`` trains on the first N images only (tests). Test accuracy on the whole test split
    is stored in the file's metadata and printed through ``log``. Unlabelled (square) images train
    on the rotation pretext task instead (module docstring); the accuracy is then rotation accuracy.
    """
    name = data_cfg.name
    train = _load_split(data_cfg, "train")
    key = domain_key(name, data_cfg, train)
    return fit_domain_net(train, _load_split(data_cfg, "test"), name,
                          key, Path(path or cache_dir() / "features" / f"{key}.safetensors"),
                          epochs=epochs, limit=limit, seed=seed, log=log, title=network_title(name, data_cfg),
                          source=domain_source(data_cfg))


def network_title(name: str, data_cfg=None) -> str:
    """What the net of ``data_cfg`` is, for people: "spoken-digits speaker classifier" (the label it
    learns, from ``data.options.label`` or the dataset's default), else "<name> feature network"."""
    label = (getattr(data_cfg, "options", None) or {}).get("label") or DOMAIN_SPECS.get(name, {}).get("label")
    return f"{name} {label} classifier" if label else f"{name} feature network"


def chance_warning(meta: dict) -> Optional[str]:
    """A warning when the net of ``meta`` scored near chance on its held-out images (:data:`NEAR_CHANCE`),
    else None: whatever it judges (FID features, class/speaker accuracy) then means nothing."""
    acc = meta.get("test_accuracy")
    k = ROTATION_CLASSES if meta.get("pretext") else int(meta["arch"]["num_classes"])
    if acc is None or k < 2:
        return None
    chance = 1.0 / k
    if acc >= chance + NEAR_CHANCE * (1.0 - chance):
        return None
    what = meta.get("title") or f"{meta.get('dataset')} feature network"
    task = "rotation accuracy" if meta.get("pretext") else "accuracy"
    from ..data.audio import SPEECH_DATASETS

    more = "give the corpus more takes" if meta.get("dataset") in SPEECH_DATASETS else "give the data more images"
    return (f"the {what} judging this scores {task} {acc:.3f} on {meta.get('n_test')} held-out images, near "
            f"chance ({chance:.3f}): its numbers mean nothing; {more}")


def fit_domain_net(train, test, name: str, key: str, path: Path, epochs: Optional[float] = None,
                   limit: Optional[int] = None, seed: int = 0, log: Optional[Callable[[str], None]] = None,
                   title: Optional[str] = None, source: Optional[dict] = None) -> Path:
    """Train a domain net on the image :class:`~gankit.data.base.Dataset` ``train`` (a classifier with
    labels, the rotation task without), score it on ``test``, and save it at ``path`` under the cache
    ``key``: :func:`train_domain_net` for a registered dataset, or images from elsewhere (the target
    side of a translation folder, :mod:`gankit.metrics.translation`). ``title`` names it in the log and
    its metadata (:func:`network_title`); ``source`` (:func:`domain_source`), recorded in it too, lets
    :func:`may_have_domain_net` pass over it without decoding any data. With the default epochs it trains at least :data:`MIN_STEPS`
    steps; epochs given explicitly are trained as asked."""
    from ..data import to_model_range

    if train.y is None and train.x.shape[-1] != train.x.shape[-2]:
        raise GankitError(f"features domain: dataset {name!r} has no labels and its images are "
                          f"{train.x.shape[-2]}x{train.x.shape[-1]}, not square, so the rotation pretext task "
                          "cannot train a net; label them (one sub-folder per class) or use --features inception")
    spec = DOMAIN_SPECS.get(name, {"epochs": DEFAULT_EPOCHS, "expect": None})
    min_steps = MIN_STEPS if epochs is None else 1
    epochs = spec["epochs"] if epochs is None else epochs
    title = title or network_title(name)
    x, y = train.x, train.y
    if limit is not None:
        x, y = x[:limit], (y[:limit] if y is not None else None)
    pretext = "rotation" if y is None else None   # unlabelled: learn to tell how an image is turned
    test_x, test_y = test.x, test.y
    if pretext:
        pick = torch.Generator().manual_seed(seed)
        if len(x) > ROTATION_MAX_IMAGES:
            x = x[torch.randperm(len(x), generator=pick)[:ROTATION_MAX_IMAGES]]
        if len(test_x) > ROTATION_MAX_IMAGES:
            test_x = test_x[torch.randperm(len(test_x), generator=pick)[:ROTATION_MAX_IMAGES]]
        n_train, n_test = len(x), len(test_x)
        x, y = rotations(x)                        # `limit` counts images, each then seen 4 times
        test_x, test_y = rotations(test_x)
    else:
        n_train, n_test = len(x), len(test_x)
    c, h, w = train.sample_shape
    tic = time.monotonic()
    if log:
        steps = max(int(epochs * len(x) / min(128, len(x))), min_steps)
        log(f"training the {title} on {len(x)} images for {steps} steps (once; cached at {path})")
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG streams as they were
        torch.manual_seed(seed)              # the same initial weights every time
        k = ROTATION_CLASSES if pretext else max(train.num_classes, int(train.y.max()) + 1)
        net = DomainNet(c, h if h == w else [h, w], k)
        fit_classifier(net, x, y, epochs, seed=seed, shift=spec.get("shift", 0), log=log, min_steps=min_steps)
    acc = accuracy(net, to_model_range(test_x), test_y)
    seconds = time.monotonic() - tic
    if log:
        what = "rotation accuracy" if pretext else "test accuracy"
        log(f"{title}: {what} {acc:.4f} ({n_test} images), trained in {seconds:.0f}s")
    meta = {"kind": "domain", "version": VERSION, "dataset": name, "key": key, "title": title,
            "arch": net.arch, "test_accuracy": acc,
            "n_test": n_test, "n_train": n_train, "epochs": epochs, "min_steps": min_steps, "shift": spec.get("shift", 0), "seed": seed,
            "seconds": round(seconds, 1),
            "expected_accuracy": spec["expect"]}
    if source is not None:
        meta["source"] = source
    if pretext:
        meta["pretext"] = pretext   # test_accuracy is then rotation accuracy, over 4 turns of n_test images
    warning = chance_warning(meta)
    if log and warning:
        log(f"warning: {warning}")
    save_tensors(path, net.state_dict(), meta)
    return path


def weights_sha256(state: dict) -> str:
    """Hex SHA-256 of a network's tensors: each name, dtype, shape and bytes, in sorted-name order. The
    file's hash would also cover its metadata (the training wall time, ...), so the same weights trained
    on two machines would get two hashes, two card ids and two reference-statistics caches."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_domain_net(path: Path) -> tuple[DomainNet, dict]:
    try:
        state, meta = load_tensors(path)
    except (OSError, ValueError) as e:
        raise GankitError(f"{path}: cannot read the feature network ({e}); delete it to retrain") from None
    if meta.get("kind") != "domain" or meta.get("version") != VERSION:
        raise GankitError(f"{path}: not a gankit domain feature network of version {VERSION}; delete it to retrain")
    net = DomainNet(**meta["arch"])
    net.load_state_dict(state)
    return net.eval(), meta


class DomainFeatures(FeatureExtractor):
    """Penultimate-layer features and class logits of a cached :class:`DomainNet`."""

    def __init__(self, net: DomainNet, meta: dict, sha256: str):
        self.net, self.meta, self.sha256 = net, meta, sha256
        a = meta["arch"]
        self.channels, self.num_classes = a["in_channels"], a["num_classes"]
        self.pretext = meta.get("pretext")   # "rotation": logits say how an image is turned, not its class
        if self.pretext:
            self.num_classes = 0
        self.size = a["size"] if isinstance(a["size"], int) else tuple(a["size"])  # a side, or (H, W)
        h, w = (self.size, self.size) if isinstance(self.size, int) else self.size
        self.name = meta.get("key") or f"domain-{meta['dataset']}"
        self.preprocessing = (f"quantize to 8 bit; to {self.channels}x{h}x{w} "
                              f"(the inverse of gankit's loader: crop its 1-2 px pad, else bilinear antialias); range [-1, 1]")
        self.batch_size = 1000
        self.threads = 1
        # for every card whose numbers this net judges: one when it is near chance on held-out images
        self.warnings = [w for w in (chance_warning(meta),) if w]

    @classmethod
    def for_dataset(cls, data_cfg, train_if_missing: bool = True, path: Optional[Path] = None,
                    train=None) -> "DomainFeatures":
        """The cached net of ``data_cfg`` (trained first unless ``train_if_missing`` is False: then a
        GankitError when there is none). ``train``: its native train split when the caller holds it (the
        key hashes it; else it is decoded). Not training, with no file for its dataset, root and options
        in the cache, nothing is decoded (:func:`may_have_domain_net`)."""
        if path is None and not train_if_missing and not may_have_domain_net(data_cfg):
            raise GankitError(f"no feature network for {data_cfg.name} in {cache_dir() / 'features'}; "
                              f"run `gankit features train {data_cfg.name}`")
        path = Path(path or domain_net_path(data_cfg.name, data_cfg, train))
        if not path.exists():
            if not train_if_missing:
                raise GankitError(f"no feature network for {data_cfg.name} at {path}; "
                                  f"run `gankit features train {data_cfg.name}`")
            train_domain_net(data_cfg, path=path, log=lambda s: print(s, file=sys.stderr, flush=True))
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> "DomainFeatures":
        """The cached network at ``path``, named on cards by its weights' hash (:func:`weights_sha256`)."""
        net, meta = load_domain_net(path)
        return cls(net, meta, weights_sha256(net.state_dict()))

    def prepare(self, x):
        return fit_images(quantize(x), self.channels, self.size)

    def describe_input(self, shape):
        return describe_fit(shape, self.channels, self.size)

    def forward(self, x):
        f, logits = self.net(x)
        return f, (None if self.pretext else logits)
