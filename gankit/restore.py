"""Applying a trained restoration model to a user's own images, at any size (``gankit translate``).

A restoration run (data ``super-resolution``, ``inpainting``, ``uncropping``, ``colorization``,
``labels2image``) was trained on small crops, but its networks are fully convolutional, so a whole
photo goes through at its own size:

* super-resolution: the photo *is* the low-resolution input; the output is ×scale. Large photos go
  through in tiles (:func:`tiled`), each a core plus a margin of the network's receptive reach
  (:func:`receptive_margin`) of which only the core is kept, written straight into the uint8 output:
  the one-pass picture, in the memory of the output bytes and one tile;
* inpainting: the hole comes from ``mask`` — a file (the hole brighter than half the mask's brightest
  value: white on black, 1 on 0, any colour on transparent; resized so any hole pixel stays hole) or a kind
  drawn with ``seed`` (``centre``, ``rect``, ``stroke``, ``border``); the known pixels come back exactly;
* uncropping: the photo is extended by ``extend`` pixels on every side (default an eighth of its
  shorter side, the middle of the bands the model trained on; at most half of it and
  :data:`MAX_UNCROP_PIXELS` of output) and the new border is filled;
* colorization: the photo's lightness L* (a colour photo is first made grey) gets colour;
* labels2image: a label map (a grey or palette PNG whose values are all below the model's number of
  classes) or a photo, segmented into the model's colour classes as in training.

Images are padded (edge pixels repeated) to a multiple of :data:`PAD_MULTIPLE` for networks with a
size rule and cropped back; outputs keep the input's name and size (×scale for super-resolution,
plus the new border when uncropping).
"""
from __future__ import annotations

import sys
import weakref
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .errors import GankitError, option

PAD_MULTIPLE = 64          # covers every shipped network's size rule (a U-Net of depth 6 needs 64)


def receptive_margin(net: torch.nn.Module, channels: int, scale: int = 1, fn: Optional[Callable] = None,
                     limit: int = 257) -> Optional[int]:
    """How far (input pixels, each way) the outputs of ``net`` (in eval mode; ``fn``: how it is
    called, default ``net`` itself) for one input pixel see; None beyond ``limit`` // 2. The larger of

    * the reach of the gradient of one input pixel's ``scale`` × ``scale`` output block, on random
      noise of a side doubled from 65 until the reach stops short of the border (this sees every
      layer, interpolation included), and
    * the sum of every conv's radius in input pixels (k // 2 × dilation, divided by the upscaling it
      runs at): the longest path of a conv stack, which the gradient misses where it underflows —
      ESRGAN's ×0.2-scaled dense blocks make their longest paths ~1e-50, so float32 saw 30 of RRDB's 49 px."""
    fn = fn or net
    radii = []
    hooks = [m.register_forward_hook(lambda m, inp, out: radii.append((m, inp[0].shape[-1])))
             for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    side, device = 65, next(net.parameters()).device
    try:
        while side <= limit:
            c = side // 2
            radii.clear()
            x = (torch.rand(1, channels, side, side, device=device) * 2 - 1).requires_grad_(True)
            with torch.enable_grad():
                y = fn(x)
                (g,) = torch.autograd.grad(y[:, :, c * scale:(c + 1) * scale, c * scale:(c + 1) * scale].sum(), x)
            rows, cols = torch.nonzero(g.abs().sum((0, 1)) > 0, as_tuple=True)
            reach = int(max((rows - c).abs().max(), (cols - c).abs().max())) if len(rows) else 0
            if reach < c - 1:  # stopped short of the border: the whole reach was seen
                convs = sum((m.kernel_size[1] // 2) * m.dilation[1] * side / w for m, w in radii)
                reach = max(reach, int(np.ceil(convs - 1e-9)))
                return reach if reach <= limit // 2 else None
            side = 2 * side - 1
    finally:
        for h in hooks:
            h.remove()
    return None


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, margin: int,
          scale: int = 1) -> torch.Tensor:
    """``fn`` applied to ``x`` (N, C, H, W) in pieces of at most ``tile`` × ``tile`` input pixels, as
    uint8 (N, C', H·scale, W·scale) (stored channels-last, so ``y[0].permute(1, 2, 0).numpy()`` is
    the picture without a copy). ``fn`` maps an (h, w) piece in [-1, 1] to (h·scale, w·scale).

    The image is cut into a grid of cores; each core goes through ``fn`` with ``margin`` pixels of
    its neighbours on every inner side (the image's own border where it has one), and only the core's
    output is kept, written straight into the uint8 result. Where ``margin`` is at least the network's
    receptive reach (:func:`receptive_margin`) every kept pixel is computed from exactly the inputs a
    single pass would use, so the result is one pass's up to float rounding, and memory is the uint8
    output plus one tile's work. ``tile`` <= 0, or an ``x`` no larger than ``tile``: one pass."""
    from .colour import to_uint8

    n, _, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return to_uint8(fn(x))
    core = tile - 2 * margin
    if core < 1:
        raise ValueError(f"tile {tile} leaves no core inside a margin of {margin} px on each side")

    def cuts(size: int) -> list:
        """Core boundaries along one axis: as few cores as fit, of near-equal length."""
        k = -(-size // core) if size > tile else 1
        return [round(i * size / k) for i in range(k + 1)]

    out = None
    ys, xs = cuts(h), cuts(w)
    for a0, a1 in zip(ys, ys[1:]):
        for b0, b1 in zip(xs, xs[1:]):
            p0, p1 = max(0, a0 - margin), min(h, a1 + margin)     # the piece: the core and its margin
            q0, q1 = max(0, b0 - margin), min(w, b1 + margin)
            y = fn(x[:, :, p0:p1, q0:q1])
            y = to_uint8(y[:, :, (a0 - p0) * scale:(a1 - p0) * scale, (b0 - q0) * scale:(b1 - q0) * scale])
            if out is None:  # (N, H', W', C') bytes: one byte per output sample
                out = torch.empty(n, h * scale, w * scale, y.shape[1], dtype=torch.uint8)
            out[:, a0 * scale:a1 * scale, b0 * scale:b1 * scale] = y.permute(0, 2, 3, 1).cpu()
    return out.permute(0, 3, 1, 2)


def padded(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int = PAD_MULTIPLE,
           scale: int = 1) -> torch.Tensor:
    """``fn(x)`` with ``x`` padded (edge pixels repeated) at the bottom and right to a multiple of
    ``multiple`` and the output cropped back to (H·scale, W·scale)."""
    h, w = x.shape[2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return fn(x)[:, :, :h * scale, :w * scale]


def read_mask(path: Path, size: Optional[tuple] = None) -> torch.Tensor:
    """A mask file -> (1, 1, H, W) float {0, 1}, 1 where the file is brighter than half its brightest
    value (the hole: white on black, 1 on 0 as numpy saves a boolean mask, a stroke of any colour on a
    transparent layer), resized to ``size`` (H, W; None: the file's own) so that every output pixel
    overlapping a hole pixel is hole: a one-pixel stroke survives a mask larger than the photo, and an
    enlarged mask is the nearest-neighbour one. A mask with no hole is refused."""
    from .data.images import open_image

    grey = np.asarray(open_image(path, "L", "--mask", background=0))  # transparent = not painted = known
    if grey.max() == 0:
        raise GankitError(f"{option('--mask', path)}: black everywhere, so no hole; paint the hole white (non-zero)")
    hole = grey > grey.max() / 2
    if size is not None:
        # output pixel i covers source pixels [i·S/T, (i+1)·S/T): the max over each run of them
        for axis, (src, dst) in enumerate(zip(hole.shape, size)):
            hole = np.maximum.reduceat(hole, (np.arange(dst) * src) // dst, axis=axis)
    return torch.from_numpy(hole.astype(np.float32))[None, None]


def draw_mask(kind: str, size: tuple, seed: int) -> torch.Tensor:
    from .data.masks import MASKS

    if kind not in MASKS:
        raise GankitError(f"{option('--mask', kind)}: not a file; give a mask image or one of {', '.join(MASKS)}")
    return MASKS[kind](1, size[0], size[1], torch.Generator().manual_seed(seed))


MAX_UNCROP_PIXELS = 48_000_000  # an uncropped output beyond a 48-megapixel phone photo is refused


def check_options(model, mask=None, tile=None, extend=None, size: Optional[tuple] = None) -> None:
    """One line for an option this restoration ``model`` would ignore, or a size it cannot use;
    ``size``: (H, W) of the photo, to bound ``extend`` (without it only the sign is checked)."""
    kind = model.data["restoration"]["task"]
    for flag, value, kinds in (("--mask", mask, ("inpainting", "uncropping")), ("--tile", tile, ("super-resolution",)),
                               ("--extend", extend, ("uncropping",))):
        if value is not None and kind not in kinds:
            raise GankitError(f"{flag} is for {' and '.join(kinds)} models; this is a {kind} model: drop it")
    if tile is not None and tile < 0:
        raise GankitError(f"{option('--tile', tile)}: give 0 (one pass) or more pixels")
    if extend is not None and extend < 1:  # as a mask with no hole: nothing to fill
        raise GankitError(f"{option('--extend', extend)}: nothing to fill; give 1 or more pixels")
    if extend is not None and mask is not None:
        raise GankitError(f"{option('--extend')} and {option('--mask')} both say where to fill: give one of them")
    if extend is not None and size is not None:
        h, w = size
        out = (h + 2 * extend) * (w + 2 * extend)
        most = max(1, min(h, w) // 2)  # twice the widest band trained on (1/4 of the side): still mostly context
        if extend > most:
            raise GankitError(f"{option('--extend', extend)}: too wide for the {w}x{h} photo: the model trained on "
                              f"bands of 1/8-1/4 of the side, so give at most {most} (half the shorter side)")
        if out > MAX_UNCROP_PIXELS:
            raise GankitError(f"{option('--extend', extend)}: the output would be "
                              f"{(w + 2 * extend)}x{(h + 2 * extend)} = "
                              f"{out / 1e6:.0f} megapixels, over the {MAX_UNCROP_PIXELS // 1_000_000} allowed "
                              "(uncropping runs in one pass)")


_MARGINS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # network -> its receptive margin
DEFAULT_CORE = 128  # input px of each tile kept (the default tile: this plus the margin on each side)
MIN_CORE = 16       # the smallest core --tile may leave: below it the margins are nearly all the work


def sr_margin(model) -> int:
    """The receptive margin (input px) of a super-resolution model's composed output
    (:func:`receptive_margin`), measured once per network and kept while the network lives. Beyond
    128 px (the paper's 23-block RRDB reaches ~350) it is 128, with a note: tiles then differ from one
    pass by what lies further away."""
    task = next(iter(model.objective.tasks().values()))
    net = model.nets[task.net]
    if net not in _MARGINS:
        was_training = net.training
        net.eval()
        try:
            reach = receptive_margin(net, int(model.info.sample_shape[0]), int(model.data["restoration"]["scale"]),
                                     fn=lambda x: task.run(net, {"x": x}))
        finally:
            net.train(was_training)
        if reach is None:
            reach = 128
            print("note: this network sees more than 128 input px each way; tiles keep a 128 px margin, so they "
                  f"can differ slightly from one pass ({option('--tile', 0)})", file=sys.stderr)
        _MARGINS[net] = reach
    return _MARGINS[net]


def check_tile(model, tile: Optional[int]) -> int:
    """The super-resolution ``model``'s margin (:func:`sr_margin`); one line for a ``tile`` too small
    to hold that margin on each side of a :data:`MIN_CORE` px core."""
    margin = sr_margin(model)
    if tile is not None and 0 < tile < 2 * margin + MIN_CORE:
        raise GankitError(f"{option('--tile', tile)}: this network sees {margin} input px each way, so a tile needs at "
                          f"least {2 * margin + MIN_CORE} px (that margin on each side of a {MIN_CORE} px "
                          "core); or give 0 for one pass")
    return margin


def restore_image(model, image: torch.Tensor, mask: Optional[str] = None, seed: int = 0,
                  tile: Optional[int] = None, extend: Optional[int] = None,
                  label_map: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The restored image of a trained restoration ``model`` (:class:`gankit.GAN`) for ``image``
    (1, C, H, W) in model range (channels already the model's); see the module docstring.
    ``tile``: super-resolution tile side in input pixels, margins included (None: a core of
    :data:`DEFAULT_CORE` px plus the network's receptive margin on each side; 0: one pass).
    Returns the picture as uint8 (1, C', H', W'), the bytes written to the PNG."""
    from .colour import to_uint8
    from .data.restoration import one_hot_map, segment, with_hole

    spec = model.data["restoration"]
    kind = spec["task"]
    run = lambda x: model.translate(x, batch_size=16).float()  # noqa: E731  (eval mode, composed output)
    h, w = image.shape[2:]
    check_options(model, mask, tile, extend, (h, w))
    if kind == "super-resolution":
        margin = check_tile(model, tile)
        side = 2 * margin + DEFAULT_CORE if tile is None else tile
        return tiled(run, image, side, margin, int(spec["scale"]))
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
        return to_uint8(padded(run, with_hole(image, m)))
    if kind == "colorization":
        from .colour import to_lab_model
        rgb = image if image.shape[1] == 3 else image.expand(-1, 3, -1, -1)
        return to_uint8(padded(run, to_lab_model(rgb)[:, :1]))
    k = int(spec["classes"])
    labels = label_map if label_map is not None else segment(image, k)
    return to_uint8(padded(run, one_hot_map(labels, k)))


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
        raise GankitError(f"{option('--alpha', alpha)}: give a weight in [0, 1] (0: the PSNR model, 1: this GAN)")
    G = model.G
    psnr = init_weights(start)
    device = next(G.parameters()).device
    try:
        state = interpolate_state({k: v.to(device) for k, v in psnr.items()}, G.state_dict(), alpha)
    except ValueError as e:
        raise GankitError(f"--alpha: {start} holds another network than this run's G ({e})") from None
    G.load_state_dict(state)
