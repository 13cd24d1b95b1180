"""Restoration data: a clean image, a degraded copy made from it in every batch, nothing downloaded.

Each dataset pairs an input A, made from a clean image by a *degradation*, with the clean image B
as the target — the paired data of Pix2Pix, but the pairs are made on the fly, so a photo gives a
new crop and a new hole at every step:

====================  ==========================================================================
``super-resolution``  A = B downscaled ×``scale`` (2 or 4) with antialiased bicubic filtering
                      and quantised to 8 bit, as a saved low-resolution file would be (the
                      SR literature's "BI" degradation; torch's bicubic, a = −0.75)
``inpainting``        A = (B with the hole set to 0, mid-grey; the mask), mask 1 on the hole,
                      masks of ``masks`` kinds (:mod:`gankit.data.masks`) drawn per image
``uncropping``        the same with ``border`` masks: bands along the sides to extend into
``colorization``      A = the lightness L* of B (CIE L*a*b*, :mod:`gankit.colour`); B is RGB
``labels2image``      A = a one-hot label map of ``classes`` colour classes, from a k-means
                      segmentation of each image (:func:`segment`), classes ordered dark → light
====================  ==========================================================================

``data.options.source`` says where the clean images come from (:mod:`gankit.data.photos`):
``photos`` (scikit-image's bundled colour photographs; coffee and rocket held out), ``emoji``
(Noto Color Emoji, 10 % held out), ``fashion-mnist`` (grey), ``folder`` (every photo under
``data.root``, any size, recursive; a fixed ~10 % held out). ``photos`` and ``folder`` are cut into
random ``data.resolution`` crops per batch; an epoch is ``data.options.crops`` of them.

Batches are dicts ``{"A", "B"[, "mask"]}`` in model range. The randomness of a batch (crops, masks)
comes from the ``generator`` handed to :meth:`RestorationDataset.batch`; training passes none and so
draws from torch's global RNG, which checkpoints keep: a resumed run sees the batches an
uninterrupted run would. Evaluation and grids pass a seeded generator: the same test inputs every time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from .base import DATASET_OPTIONS, DATASETS, IMAGE, MASK, Dataset, fit_resolution, resolution_hw, to_model_range
from .masks import MASKS, draw_masks

TASKS = ("super-resolution", "inpainting", "uncropping", "colorization", "labels2image")
SOURCES = ("photos", "emoji", "fashion-mnist", "folder")
CROP_SOURCES = ("photos", "folder")
DEFAULT_RESOLUTION = 64
KMEANS_ITERS = 10
# the options each task takes beyond `source` and `crops`, with their defaults
TASK_OPTIONS = {
    "super-resolution": {"scale": 4},
    "inpainting": {"masks": ["centre", "rect", "stroke"]},
    "uncropping": {"masks": ["border"]},
    "colorization": {},
    "labels2image": {"classes": 8},
}


def downscale(clean: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, H/scale, W/scale): antialiased bicubic, rounded to 8 bit."""
    x = F.interpolate(clean.float(), scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False,
                      recompute_scale_factor=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def upscale_bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline of super-resolution: model-range (N, C, h, w) -> (N, C, h·scale, w·scale)."""
    return F.interpolate(x.float(), scale_factor=scale, mode="bicubic", align_corners=False).clamp_(-1, 1)


def with_hole(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The generator's input: model-range (N, C, H, W) with the hole (mask 1) set to 0, and the mask."""
    return torch.cat([image * (1 - mask), mask], 1)


def segment(rgb: torch.Tensor, classes: int, iters: int = KMEANS_ITERS) -> torch.Tensor:
    """A k-means segmentation of each image into ``classes`` colour classes: model-range (N, C, H, W)
    -> int64 (N, 1, H, W), class 0 the darkest cluster, ``classes − 1`` the lightest.

    Lloyd's algorithm per image on its pixels' colours, started deterministically from pixels at
    evenly spaced quantiles of brightness (no RNG: an image always gets the same map); a cluster that
    empties keeps its centre. The label map is what Pix2PixHD's semantic maps are to a photo.
    """
    n, c, h, w = rgb.shape
    px = rgb.float().flatten(2).transpose(1, 2)                        # (N, HW, C)
    order = px.mean(-1).argsort(dim=1)                                  # brightness order
    pick = ((torch.arange(classes, device=rgb.device) + 0.5) * (h * w) / classes).long()
    centres = torch.gather(px, 1, order[:, pick, None].expand(-1, -1, c))  # (N, K, C)
    for _ in range(iters):
        labels = torch.cdist(px, centres).argmin(-1)                   # (N, HW)
        onehot = F.one_hot(labels, classes).float()                    # (N, HW, K)
        counts = onehot.sum(1)                                          # (N, K)
        sums = onehot.transpose(1, 2) @ px                              # (N, K, C)
        centres = torch.where(counts[..., None] > 0, sums / counts.clamp(min=1)[..., None], centres)
    labels = torch.cdist(px, centres).argmin(-1)
    rank = centres.mean(-1).argsort(-1).argsort(-1)                     # cluster -> its brightness rank
    return torch.gather(rank, 1, labels).view(n, 1, h, w)


def symmetries(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Each image of (N, C, H, W) under a random symmetry of the square, drawn from ``generator``:
    one of the 8 (identity, rotations by 90°, 180°, 270°, and each mirrored) — BasicSR's
    ``use_hflip`` + ``use_rot`` — or, when H ≠ W, one of the 4 that keep the shape (identity, mirror
    left-right, mirror top-bottom, 180°). Exact: pixels are moved, never resampled."""
    square = x.shape[2] == x.shape[3]
    k = torch.randint(8 if square else 4, (len(x),), generator=generator).tolist()
    out = torch.empty_like(x)
    for j, kind in enumerate(k):
        img = x[j]
        if square:
            img = torch.rot90(img, kind % 4, dims=(1, 2))
            img = img.flip(2) if kind >= 4 else img
        else:
            img = img.flip([d for d, bit in ((2, 1), (1, 2)) if kind & bit])
        out[j] = img
    return out


def one_hot_map(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """int64 (N, 1, H, W) class map -> float32 (N, classes, H, W) one-hot."""
    return F.one_hot(labels[:, 0], classes).permute(0, 3, 1, 2).float()


@dataclass
class RestorationDataset:
    """Clean images and the degradation that makes each batch's inputs from them.

    Exactly one of ``clean`` (uint8 (N, C, H, W): fixed images, one per index) and ``photos`` (uint8
    (C, H_i, W_i) images of any size, cropped to ``size`` per batch; index ``i`` crops photo
    ``i mod len(photos)``) is set. ``length``: indices per epoch. ``options``: the task's settings.
    """

    name: str
    task: str
    size: tuple                          # (H, W) of a clean image B
    channels: int
    length: int
    options: dict
    clean: Optional[torch.Tensor] = None
    photos: Optional[List[torch.Tensor]] = None
    domains: dict = field(default_factory=dict)  # {"B": a registered dataset of the clean images}
    flips: bool = False                  # each clean training image turned by a random symmetry of the square
    info: dict = field(default_factory=dict)

    kind: ClassVar[str] = "translation"
    paired: ClassVar[bool] = True
    num_classes: ClassVar[int] = 0
    label_classes: ClassVar[int] = 0
    modes: ClassVar[None] = None
    mode_std: ClassVar[None] = None
    device_indexable: ClassVar[bool] = False  # crops and masks are drawn on the host

    def __len__(self) -> int:
        return self.length

    @property
    def compose(self) -> str:
        """How a model's output joins its input (:data:`gankit.tasks.COMPOSE`)."""
        return {"inpainting": "keep-known", "uncropping": "keep-known", "colorization": "lab"}.get(self.task, "none")

    @property
    def sample_shape(self) -> tuple:
        h, w = self.size
        if self.task == "super-resolution":
            s = self.options["scale"]
            return (self.channels, h // s, w // s)
        if self.task in ("inpainting", "uncropping"):
            return (self.channels + 1, h, w)
        if self.task == "colorization":
            return (1, h, w)
        return (self.options["classes"], h, w)

    @property
    def target_shape(self) -> tuple:
        return (self.channels, *self.size)

    @property
    def index_sizes(self) -> Dict[str, int]:
        return {"A": self.length}

    @property
    def fields(self) -> dict:
        out = {"A": IMAGE, "B": IMAGE}
        if self.task in ("inpainting", "uncropping"):
            out["mask"] = MASK
        return out

    def to(self, device) -> "RestorationDataset":
        if self.clean is not None:
            self.clean = self.clean.to(device)
        return self

    def clean_images(self, index: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """uint8 (B, C, H, W) clean images for ``index``: the fixed images, or one fresh crop each; with
        ``flips``, each under a random symmetry of the square (:func:`symmetries`)."""
        if self.clean is not None:
            return symmetries(self.clean[index], generator) if self.flips else self.clean[index]
        from .photos import random_crops

        h, w = self.size
        picks = [self.photos[int(i) % len(self.photos)] for i in index.tolist()]
        out = torch.empty(len(picks), self.channels, h, w, dtype=torch.uint8)
        for j, photo in enumerate(picks):  # one photo each: random_crops draws a crop position
            out[j] = random_crops([photo], 1, max(h, w), generator)[0, :, :h, :w]
        return (symmetries(out, generator) if self.flips else out).to(index.device)

    def batch(self, index: torch.Tensor, generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """{"A": input, "B": clean target[, "mask": (B, 1, H, W) 1 on the hole]}, model range, float32.
        ``generator``: where crops and masks come from (None: torch's global RNG)."""
        if isinstance(index, dict):
            index = index["A"]
        clean = self.clean_images(index, generator)
        b = to_model_range(clean)
        out = {"B": b}
        if self.task == "super-resolution":
            out["A"] = to_model_range(downscale(clean, self.options["scale"]))
        elif self.task in ("inpainting", "uncropping"):
            n, _, h, w = b.shape
            mask = draw_masks(self.options["masks"], n, h, w, generator).to(b.device)
            out["A"], out["mask"] = with_hole(b, mask), mask
        elif self.task == "colorization":
            from ..colour import to_lab_model
            out["A"] = to_lab_model(b)[:, :1]
        else:
            k = self.options["classes"]
            out["A"] = one_hot_map(segment(b, k), k)
        return out

    def whole_images(self) -> List[torch.Tensor]:
        """Every clean image whole: the photos crops are cut from (each uint8 (C, H, W), its own size),
        or the fixed images one by one. Super-resolution is scored on these, as the SR literature
        scores whole test images."""
        if self.photos is not None:
            return list(self.photos)
        return list(self.clean.cpu())

    def domain(self, which: str) -> Dataset:
        """The clean images as a plain :class:`Dataset` (fixed; crops drawn with a fixed seed)."""
        if which != "B":
            raise ValueError("restoration data has one image domain, B (the clean images)")
        index = torch.arange(self.length)
        x = self.clean_images(index, torch.Generator().manual_seed(0)).cpu()
        return Dataset(name=f"{self.name}-B", x=x, y=None, kind="image", info=dict(self.info))


# --------------------------------------------------------------------------------------------
# Options and sources


def check_options(name: str, options: dict) -> None:
    """``data.options`` of restoration dataset ``name``: one ConfigError line naming a bad key or value."""
    allowed = {"source": None, "crops": None, "flips": None, **TASK_OPTIONS[name]}
    for key in options:
        if key not in allowed:
            raise ConfigError(f"data.options.{key}: dataset {name} has no such option; allowed: {', '.join(allowed)}")
    source = options.get("source", "photos")
    if source not in SOURCES:
        raise ConfigError(f"data.options.source: {source!r} is not a source of {name}; choose one of "
                          f"{', '.join(SOURCES)}")
    if not isinstance(options.get("flips", False), bool):
        raise ConfigError(f"data.options.flips: true or false, got {options['flips']!r}")
    crops = options.get("crops")
    if crops is not None and (not isinstance(crops, int) or isinstance(crops, bool) or crops < 1):
        raise ConfigError(f"data.options.crops: give a positive whole number of crops per epoch, got {crops!r}")
    if "scale" in options and options["scale"] not in (2, 4):
        raise ConfigError(f"data.options.scale: super-resolution is trained ×2 or ×4, got {options['scale']!r}")
    if "masks" in options:
        masks = options["masks"]
        if isinstance(masks, str):
            masks = [masks]
        bad = [m for m in masks or [None] if m not in MASKS]
        if bad:
            raise ConfigError(f"data.options.masks: {bad[0]!r} is not a mask kind; choose from {', '.join(MASKS)}")
    if "classes" in options:
        k = options["classes"]
        if not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= 64:
            raise ConfigError(f"data.options.classes: give 2 to 64 colour classes, got {k!r}")
    if name == "colorization" and source == "fashion-mnist":
        raise ConfigError("data.options.source: colorization needs colour images; fashion-mnist is grey "
                          "(use photos, emoji or folder)")


def _settings(name: str, cfg) -> dict:
    options = dict(cfg.options or {})
    check_options(name, options)
    out = {**TASK_OPTIONS[name], **options}
    out.setdefault("source", "photos")
    if isinstance(out.get("masks"), str):
        out["masks"] = [out["masks"]]
    return out


# the dataset whose domain network features a source's images (perceptual losses and distances, FID):
# its own, except for photographs — scikit-image's 7 training photos are too few for a network that
# generalises (a rotation predictor memorises their crops and is at chance on held-out photos), so
# they, and a user's photo folder, use the colour-emoji network, as VGG is an ImageNet network
FEATURE_SOURCE = {"photos": "emoji", "folder": "emoji", "emoji": "emoji", "fashion-mnist": "fashion-mnist"}


def clean_domain_config(data_cfg):
    """The dataset whose domain network gives ``data_cfg``'s clean images their features (perceptual
    loss and distance, FID): a :class:`~gankit.config.DataConfig` at that dataset's own resolution."""
    from ..config import DataConfig

    name = FEATURE_SOURCE[(data_cfg.options or {}).get("source", "photos")]
    root = data_cfg.root if name == "emoji" and (data_cfg.options or {}).get("source") == "emoji" else None
    return DataConfig(name=name, root=root, channels=data_cfg.channels)


def _load_clean(source: str, cfg, split: str, size: tuple, channels: int):
    """(fixed uint8 images or None, photos to crop or None, the registered dataset of the clean images)."""
    from .photos import load_emoji, load_folder_photos, load_photos

    if source == "photos":
        if cfg.root:
            raise ConfigError("data.root: source photos uses scikit-image's bundled photographs; use source: folder "
                              "for your own")
        photos = [x for _, x in load_photos(split)]
        return None, [fit_resolution(p[None], None, channels)[0] for p in photos], "photos"
    if source == "folder":
        if not cfg.root:
            raise ConfigError("data.root: source folder needs data.root, a folder of your photos")
        photos = [x for _, x in load_folder_photos(cfg.root, split, min_size=0)]
        return None, [fit_resolution(p[None], None, channels)[0] for p in photos], None
    if source == "emoji":
        x = load_emoji(split, size=max(size), root=cfg.root)
        return fit_resolution(x, size, channels), None, "emoji"
    base = DATASETS.get("fashion-mnist")(cfg, split=split)
    return fit_resolution(base.x, size, channels), None, "fashion-mnist"


def _restoration(name: str):
    def factory(cfg, split: str = "train", seed: int = 0) -> RestorationDataset:
        if split not in ("train", "test"):
            raise DataError(f"{name}: unknown split {split!r}; use train or test")
        if cfg.direction != "AtoB":
            raise ConfigError(f"data.direction: {name} data goes from the degraded image to the clean one (AtoB)")
        opts = _settings(name, cfg)
        source = opts["source"]
        default = 32 if source == "fashion-mnist" else DEFAULT_RESOLUTION
        size = resolution_hw(cfg.resolution) or (default, default)
        channels = cfg.channels or (1 if source == "fashion-mnist" else 3)
        if name == "colorization" and channels != 3:
            raise ConfigError("data.channels: colorization makes RGB images; set data.channels to 3 or null")
        if name == "super-resolution" and (size[0] % opts["scale"] or size[1] % opts["scale"]):
            raise ConfigError(f"data.resolution: {size[0]}x{size[1]} crops do not divide by the scale "
                              f"{opts['scale']}; pick a multiple of it")
        clean, photos, domain = _load_clean(source, cfg, split, size, channels)
        if photos is not None:
            small = [tuple(p.shape[1:]) for p in photos if min(p.shape[1:]) < min(size)]
            length = opts.get("crops") or (2000 if split == "train" else 500)
            info = {"photos": len(photos), "upscaled_photos": len(small)}
        else:
            if cfg.limit is not None:
                clean = clean[:cfg.limit]
            length, info = len(clean), {}
        spec = {k: v for k, v in opts.items() if k not in ("crops", "flips")}
        info.update({"split": split, "restoration": {"task": name, **spec, "size": list(size)}})
        return RestorationDataset(name=name, task=name, size=size, channels=channels, length=length,
                                  options=opts, clean=clean, photos=photos,
                                  domains={"B": domain} if domain else {}, info=info,
                                  flips=bool(opts.get("flips")) and split == "train")  # never the held-out images

    factory.__name__ = name.replace("-", "_")
    factory.__doc__ = f"Restoration data {name}: see :mod:`gankit.data.restoration`."
    return factory


for _name in TASKS:
    DATASETS.register(_name, _restoration(_name))
    DATASET_OPTIONS[_name] = check_options
