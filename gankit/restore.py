"""Applying a trained restoration model to a user's own images, at any size (``gankit translate``).

A restoration run (data ``super-resolution``, ``inpainting``, ``uncropping``, ``colorization``,
``labels2image``) was trained on small crops, but its networks are fully convolutional, so a whole
photo goes through at its own size:

* super-resolution: the photo *is* the low-resolution input; the output is ×scale. Large photos go
  through in overlapping tiles (:func:`tiled`) whose outputs are blended with linear ramps over the
  overlap, so no seam shows and memory stays bounded;
* inpainting: the hole comes from ``mask`` — a file (the hole brighter than half the mask's brightest
  value: white on black, 1 on 0, any colour on transparent; resized nearest to the photo) or a kind
  drawn with ``seed`` (``centre``, ``rect``, ``stroke``, ``border``); the known pixels come back exactly;
* uncropping: the photo is extended by ``extend`` pixels on every side (default an eighth of its
  shorter side, the middle of the bands the model trained on) and the new border is filled;
* colorization: the photo's lightness L* (a colour photo is first made grey) gets colour;
* labels2image: a label map (a grey or palette PNG whose values are all below the model's number of
  classes) or a photo, segmented into the model's colour classes as in training.

Images are padded (edge pixels repeated) to a multiple of :data:`PAD_MULTIPLE` for networks with a
size rule and cropped back; outputs keep the input's name and size (×scale for super-resolution,
plus the new border when uncropping).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .errors import GankitError

PAD_MULTIPLE = 64          # covers every shipped network's size rule (a U-Net of depth 6 needs 64)


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int,
          scale: int = 1) -> torch.Tensor:
    """``fn`` applied to ``x`` (N, C, H, W) in overlapping ``tile``-sized pieces, ``fn`` mapping an
    (h, w) piece to (h·scale, w·scale); outputs are blended with weights that ramp linearly over
    the middle half of the ``overlap`` (pixels within a quarter of the overlap of a tile's inner edge
    are not used). Where the network's receptive radius is at most a quarter of the overlap the result
    equals one pass over the whole image; an ``x`` no larger than ``tile`` is one pass."""
    n, _, h, w = x.shape
    if (h <= tile and w <= tile) or tile <= 0:
        return fn(x)
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")

    def starts(size: int) -> list:
        if size <= tile:
            return [0]
        step = tile - overlap
        out = list(range(0, size - tile, step))
        return out + [size - tile]

    o = overlap * scale  # the overlap in output pixels

    def ramp(length: int, inner_before: bool, inner_after: bool) -> torch.Tensor:
        """Weights along one axis of a tile's output: 0 on the quarter of the overlap nearest an inner
        edge (whose pixels saw the tile's zero padding), rising linearly over the next half, then 1."""
        w = torch.ones(length)
        if o == 0:
            return w
        d = torch.arange(length, dtype=torch.float32) + 0.5          # distance from the leading edge
        rise = lambda dist: ((dist - o / 4) / (o / 2)).clamp(0, 1)    # noqa: E731
        if inner_before:
            w = torch.minimum(w, rise(d))
        if inner_after:
            w = torch.minimum(w, rise(length - d))
        return w

    out = weight = None
    for y0 in starts(h):
        for x0 in starts(w):
            piece = x[:, :, y0:y0 + tile, x0:x0 + tile]
            y = fn(piece).float()
            if out is None:
                out = torch.zeros(n, y.shape[1], h * scale, w * scale)
                weight = torch.zeros(1, 1, h * scale, w * scale)
            th, tw = y.shape[2:]
            ys, xs = y0 * scale, x0 * scale
            wgt = (ramp(th, ys > 0, ys + th < h * scale)[:, None] *
                   ramp(tw, xs > 0, xs + tw < w * scale)[None, :])
            out[:, :, ys:ys + th, xs:xs + tw] += y.cpu() * wgt
            weight[:, :, ys:ys + th, xs:xs + tw] += wgt
    return out / weight


def padded(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int = PAD_MULTIPLE,
           scale: int = 1) -> torch.Tensor:
    """``fn(x)`` with ``x`` padded (edge pixels repeated) at the bottom and right to a multiple of
    ``multiple`` and the output cropped back to (H·scale, W·scale)."""
    h, w = x.shape[2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return fn(x)[:, :, :h * scale, :w * scale]


def read_mask(path: Path, size: tuple) -> torch.Tensor:
    """A mask file -> (1, 1, H, W) float {0, 1}, 1 where the file is brighter than half its brightest
    value (the hole: white on black, 1 on 0 as numpy saves a boolean mask, a stroke of any colour on a
    transparent layer), resized with nearest neighbours to ``size`` (H, W). A mask with no hole is refused."""
    from PIL import Image

    from .data.images import open_image

    img = open_image(path, "L", "--mask", background=0)  # transparent = not painted = known
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.NEAREST)
    grey = np.asarray(img)
    if grey.max() == 0:
        raise GankitError(f"--mask {path}: black everywhere, so no hole; paint the hole white (non-zero)")
    m = torch.from_numpy((grey > grey.max() / 2).astype(np.float32))
    return m[None, None]


def draw_mask(kind: str, size: tuple, seed: int) -> torch.Tensor:
    from .data.masks import MASKS

    if kind not in MASKS:
        raise GankitError(f"--mask {kind}: not a file; give a mask image or one of {', '.join(MASKS)}")
    return MASKS[kind](1, size[0], size[1], torch.Generator().manual_seed(seed))


def check_options(model, mask=None, tile=None, extend=None) -> None:
    """One line for an option this restoration ``model`` would ignore, or a size it cannot use."""
    kind = model.data["restoration"]["task"]
    for flag, value, kinds in (("--mask", mask, ("inpainting", "uncropping")), ("--tile", tile, ("super-resolution",)),
                               ("--extend", extend, ("uncropping",))):
        if value is not None and kind not in kinds:
            raise GankitError(f"{flag} is for {' and '.join(kinds)} models; this is a {kind} model: drop it")
    if tile is not None and tile < 0 or extend is not None and extend < 0:
        raise GankitError(f"--{'tile' if tile is not None and tile < 0 else 'extend'}: give 0 or more pixels")
    if extend is not None and mask is not None:
        raise GankitError("--extend and --mask both say where to fill: give one of them")


def restore_image(model, image: torch.Tensor, mask: Optional[str] = None, seed: int = 0,
                  tile: Optional[int] = None, extend: Optional[int] = None,
                  label_map: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The restored image of a trained restoration ``model`` (:class:`gankit.GAN`) for ``image``
    (1, C, H, W) in model range (channels already the model's); see the module docstring.
    ``tile``: super-resolution tile side in input pixels (None: 4 × the training input's side; 0: one
    pass). Returns (1, C', H', W') in [-1, 1]."""
    from .data.restoration import one_hot_map, segment, with_hole

    spec = model.data["restoration"]
    kind = spec["task"]
    run = lambda x: model.translate(x, batch_size=16).float()  # noqa: E731  (eval mode, composed output)
    h, w = image.shape[2:]
    check_options(model, mask, tile, extend)
    if kind == "super-resolution":
        scale = int(spec["scale"])
        train_side = int(model.info.sample_shape[1])
        side = 4 * train_side if tile is None else tile
        return tiled(run, image, side, overlap=max(side // 4, 1), scale=scale).clamp(-1, 1)
    if kind in ("inpainting", "uncropping"):
        if kind == "uncropping" and mask is None:
            pad = extend if extend is not None else max(1, min(h, w) // 8)
            image = F.pad(image, (pad, pad, pad, pad), mode="replicate")
            m = torch.ones(1, 1, h + 2 * pad, w + 2 * pad)
            m[:, :, pad:pad + h, pad:pad + w] = 0
        elif mask is None:
            raise GankitError("--mask: an inpainting model needs a hole: give a mask image (white = hole) "
                              "or a kind: centre, rect, stroke")
        elif Path(mask).expanduser().is_file():
            m = read_mask(Path(mask).expanduser(), (h, w))
        else:
            m = draw_mask(mask, (h, w), seed)
        # padding repeats the edge pixels and the mask's edge with them: cropped away afterwards
        return padded(run, with_hole(image, m))
    if kind == "colorization":
        from .colour import to_lab_model
        rgb = image if image.shape[1] == 3 else image.expand(-1, 3, -1, -1)
        return padded(run, to_lab_model(rgb)[:, :1])
    k = int(spec["classes"])
    labels = label_map if label_map is not None else segment(image, k)
    return padded(run, one_hot_map(labels, k))


def load_for_restoration(path: Path, model) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """An image file as the model's input picture: ((1, C, H, W) in [-1, 1], label map or None).
    A labels2image model reads a grey or palette PNG whose values are all below its number of
    classes as a label map (returned as (1, 1, H, W) int64); anything else is a picture."""
    from PIL import Image

    from .data.base import to_model_range
    from .data.images import open_image

    spec = model.data["restoration"]
    channels = int(model.info.target_shape[0])
    if spec["task"] == "labels2image":
        with Image.open(path) as im:
            if im.mode in ("L", "P"):
                a = np.asarray(im)
                if a.max() < int(spec["classes"]):
                    return torch.zeros(1, channels, *a.shape), torch.from_numpy(a.astype(np.int64))[None, None]
                if len(np.unique(a)) <= 2 * int(spec["classes"]):  # few values: meant as a label map?
                    print(f"note: {path}: values up to {int(a.max())}, not all below the model's "
                          f"{spec['classes']} classes, so it is read as a picture and segmented, not as a label map",
                          file=sys.stderr)
    if spec["task"] == "colorization":
        channels = 3
    img = open_image(path, "L" if channels == 1 else "RGB", "translate")
    a = np.asarray(img, dtype=np.uint8)
    x = torch.from_numpy(a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None].copy())
    return to_model_range(x), None


def interpolated(model, alpha: float) -> None:
    """ESRGAN's network interpolation (Wang et al. 2018, Sec. 3.4), in place: G's weights become
    (1 − alpha)·PSNR model + alpha·this model, the PSNR model being the run ``loss.options.init_from``
    started from."""
    from .nets.sr import interpolate_state
    from .objectives.paired import init_weights

    start = model.cfg.loss.options.get("init_from")
    if not start:
        raise GankitError("--alpha: this run did not start from a PSNR model (loss.options.init_from); "
                          "network interpolation needs both")
    if not 0.0 <= alpha <= 1.0:
        raise GankitError(f"--alpha {alpha}: give a weight in [0, 1] (0: the PSNR model, 1: this GAN)")
    G = model.G
    psnr = init_weights(start)
    device = next(G.parameters()).device
    try:
        state = interpolate_state({k: v.to(device) for k, v in psnr.items()}, G.state_dict(), alpha)
    except ValueError as e:
        raise GankitError(f"--alpha: {start} holds another network than this run's G ({e})") from None
    G.load_state_dict(state)
