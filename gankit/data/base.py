"""One dataset interface for images and vectors, held in memory and sampled by index."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ..colour import to_model_range, to_uint8  # noqa: F401  (the data's value range; also gankit.data's)
from ..registry import Registry

#: name -> factory(cfg: DataConfig, split: str, seed: int) -> Dataset (or another dataset with fields)
DATASETS = Registry("dataset")
#: name -> check(name, options): validates ``data.options`` of the datasets that take options (one
#: ConfigError line naming the key); a dataset not listed here takes none
DATASET_OPTIONS: dict = {}


@dataclass(frozen=True)
class Field:
    """One named entry of a batch: what it holds and how it is normalised and resized.

    ``kind``: ``image`` (stored uint8 (N, C, H, W), handed to networks as float32 in [-1, 1]),
    ``mask`` (uint8 {0, 1} or label map (N, 1, H, W), handed over as float32 {0, 1} / as stored),
    ``vector`` (float32 (N, D), as stored), ``label`` (int64 (N,) class indices), ``float`` (float32
    arrays of any shape, e.g. spectrograms, as stored). ``resize``: how a spatial field changes size
    — images ``bilinear`` (antialiased), masks and label maps ``nearest`` (never blended).
    """

    kind: str
    resize: str = "bilinear"

    def __post_init__(self):
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"field kind must be one of {', '.join(FIELD_KINDS)}, got {self.kind!r}")
        if self.resize not in ("bilinear", "nearest", "none"):
            raise ValueError(f"field resize must be bilinear, nearest or none, got {self.resize!r}")


FIELD_KINDS = ("image", "mask", "vector", "label", "float")
IMAGE = Field("image", "bilinear")
MASK = Field("mask", "nearest")
LABEL = Field("label", "none")
VECTOR = Field("vector", "none")


@dataclass
class Dataset:
    """A whole dataset as tensors.

    ``x`` is uint8 (N, C, H, W) for images (model range [-1, 1] after :meth:`batch`)
    or float32 (N, D) for vectors (used as is). ``y`` holds int64 class labels (N,)
    or is None when the data has none.
    """

    name: str
    x: torch.Tensor
    y: Optional[torch.Tensor]
    kind: str  # "image" | "vector"
    num_classes: int = 0
    # For the 2D/1D mixtures: component means (M, D) and the per-axis std of each component.
    modes: Optional[torch.Tensor] = None
    mode_std: Optional[float] = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ("image", "vector"):
            raise ValueError(f"kind must be 'image' or 'vector', got {self.kind!r}")
        if self.kind == "image" and (self.x.dtype != torch.uint8 or self.x.ndim != 4):
            raise ValueError(f"image data must be uint8 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.kind == "vector" and self.x.ndim != 2:
            raise ValueError(f"vector data must be (N, D), got {tuple(self.x.shape)}")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def sample_shape(self) -> tuple:
        """Shape of one sample: (C, H, W) or (D,)."""
        return tuple(self.x.shape[1:])

    # batch() indexes tensors only, so indices drawn on the GPU work (gankit/train/graphs.py DeviceDraws)
    device_indexable = True

    def to(self, device) -> "Dataset":
        self.x = self.x.to(device)
        if self.y is not None:
            self.y = self.y.to(device)
        return self

    @property
    def fields(self) -> dict:
        """The batch's fields: ``x`` (image or vector) and ``y`` (class labels) when there are labels."""
        out = {"x": IMAGE if self.kind == "image" else VECTOR}
        if self.y is not None:
            out["y"] = LABEL
        return out

    def batch(self, index: torch.Tensor, generator: Optional[torch.Generator] = None) -> dict:
        """Samples ``index`` as a batch dict: ``x`` in model range (images float32 in [-1, 1],
        vectors as stored) and ``y`` (int64 labels, or None when the data has none). ``generator``
        is unused (the samples are fixed); data that draws per batch takes it (gankit.data.restoration)."""
        x = self.x[index]
        x = to_model_range(x) if self.kind == "image" else x
        y = self.y[index] if self.y is not None else None
        return {"x": x, "y": y}

    def all_model_range(self) -> torch.Tensor:
        return to_model_range(self.x) if self.kind == "image" else self.x


Resolution = Union[int, Tuple[int, int], None]


def resolution_hw(resolution: Resolution) -> Optional[Tuple[int, int]]:
    """``data.resolution`` as (H, W): an int is a square side, a pair is (H, W), None stays None."""
    if resolution is None:
        return None
    if isinstance(resolution, int):
        return resolution, resolution
    h, w = resolution
    return int(h), int(w)


def border_pad(native: Tuple[int, int], size: Tuple[int, int]) -> Optional[int]:
    """The border (px on each side) with which :func:`fit_resolution` pads ``native`` (H, W) images
    to ``size``, or None when it resizes them instead: square images growing by 2 or 4 px (28 -> 30,
    32, the 32x32 MNIST-family convention). The one rule for both directions: evaluation crops that
    border off again and resizes everything else back (:func:`gankit.metrics.extractor.fit_images`)."""
    (h, w), (res_h, res_w) = native, size
    if h == w and res_h == res_w and res_h > h and (res_h - h) % 2 == 0 and res_h - h <= 4:
        return (res_h - h) // 2
    return None


def fit_resolution(x: torch.Tensor, resolution: Resolution, channels: Optional[int] = None) -> torch.Tensor:
    """Bring uint8 images (N, C, H, W) to ``resolution`` (a side, or (H, W)) and ``channels``.

    Square 28 -> 30 or 32 pads with the border value (as the 32x32 MNIST-family convention;
    :func:`border_pad` is the rule); other sizes, non-square ones included, resize with antialiased bilinear filtering (a square
    image asked for at 32×64 is stretched, not cropped: all of it stays). Done once at load time.
    """
    if channels is not None and channels != x.shape[1]:
        if x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1).contiguous()
        elif channels == 1:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise ValueError(f"cannot convert {x.shape[1]} channels to {channels}")
    size = resolution_hw(resolution)
    if size is None or tuple(x.shape[2:]) == size:
        return x
    pad = border_pad(tuple(x.shape[2:]), size)
    if pad is not None:
        return F.pad(x, (pad, pad, pad, pad), value=0)
    return resize(x, size, IMAGE)


def resize(x: torch.Tensor, size: tuple, field: Field = IMAGE) -> torch.Tensor:
    """uint8 (N, C, H, W) to ``size`` (H, W) as ``field`` says: images bilinear with antialiasing,
    masks and label maps nearest (a label is never blended with its neighbour's)."""
    if tuple(x.shape[2:]) == tuple(size) or field.resize == "none":
        return x
    out = []
    for chunk in x.split(4096):
        if field.resize == "nearest":
            out.append(F.interpolate(chunk, size=tuple(size), mode="nearest-exact"))
            continue
        y = F.interpolate(chunk.float(), size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


class EpochSampler:
    """Shuffled index batches without replacement, epoch after epoch (drop_last).

    Its whole state (permutation, position, generator) goes into checkpoints so a
    resumed run draws exactly the batches an uninterrupted run would.

    Data-parallel runs: every rank holds the same sampler (same seed, hence one global
    permutation) and :meth:`next` returns rank ``rank``'s slice of the global batch of
    ``batch_size``. The state is the same on every rank and for any ``world_size``, so a
    checkpoint resumes on any number of processes.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n} samples)")
        if batch_size % world_size or not 0 <= rank < world_size:
            raise ValueError(f"batch_size {batch_size} cannot be split evenly over {world_size} processes")
        self.n, self.batch_size = n, batch_size
        self.rank, self.world_size = rank, world_size
        self.local_batch_size = batch_size // world_size  # rows of each global batch this rank draws
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.position = 0
        self.perm = torch.randperm(n, generator=self.generator)

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > self.n:
            self.epoch += 1
            self.position = 0
            self.perm = torch.randperm(self.n, generator=self.generator)
        start = self.position + self.rank * self.local_batch_size
        idx = self.perm[start:start + self.local_batch_size]  # this rank's slice of the global batch
        self.position += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "perm": self.perm.clone(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if len(state["perm"]) != self.n:  # its permutation would index samples that are gone, or miss new ones
            raise ValueError(f"the sampler state is of {len(state['perm'])} samples, not {self.n}")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.perm = state["perm"].clone()
        self.generator.set_state(state["generator"])
