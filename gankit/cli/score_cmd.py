"""gankit score: anomaly scores of images under a trained ganomaly/autoencoder run (docs/anomaly.md)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

from . import positive_int

if TYPE_CHECKING:
    import torch


def register(sub):
    p = sub.add_parser("score", help="anomaly scores of images under a trained ganomaly/autoencoder run",
                       description="Print one anomaly score per image (higher = more anomalous) and its name, "
                                   "tab-separated. INPUTs are image files or folders (searched recursively for "
                                   "PNG/JPEG/BMP/WEBP), converted to the model's channels and centre-cropped "
                                   "and resized to its training resolution as a folder dataset's training images "
                                   "are; --npz FILE adds the images of array 'x' of FILE: "
                                   "(N, C, H, W) or (N, H, W), uint8 in [0, 255] or float in [-1, 1].")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files or folders")
    p.add_argument("--npz", default=None, metavar="FILE", help="an .npz file with images in array 'x'")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"])
    p.add_argument("--batch-size", type=positive_int, default=500, help="images per forward pass")
    p.set_defaults(func=run)


def read_npz(path, shape: tuple):
    """Images of array ``x`` in ``path`` as (N, C, H, W) float32 in [-1, 1]; one GankitError line
    naming the file when it is not such an array of the model's ``shape`` (C, H, W)."""
    import numpy as np
    import torch

    from ..data.base import to_model_range
    from ..errors import GankitError

    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f.files:
                raise GankitError(f"{path}: no array 'x' (found: {', '.join(f.files) or 'none'}); "
                                  "save the images as x=...")
            x = f["x"]
    except FileNotFoundError:
        raise GankitError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise GankitError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if x.ndim == 3 and shape[0] == 1:
        x = x[:, None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        want = ", ".join(map(str, shape))
        raise GankitError(f"{path}: array 'x' has shape {tuple(x.shape)}; this model takes (N, {want})")
    if x.dtype == np.uint8:
        return to_model_range(torch.from_numpy(x))
    if not np.issubdtype(x.dtype, np.floating):
        raise GankitError(f"{path}: array 'x' is {x.dtype}; give uint8 in [0, 255] or float in [-1, 1]")
    t = torch.from_numpy(x.astype(np.float32))
    if t.numel() and not (torch.isfinite(t).all() and t.min() >= -1.0001 and t.max() <= 1.0001):
        raise GankitError(f"{path}: float images must lie in [-1, 1] (model range); uint8 is read as [0, 255]")
    if t.numel() > 1 and t.min() >= 0 and t.max() > 0:  # all non-negative: most likely [0, 1], not [-1, 1]
        import sys
        print(f"warning: {path}: float images all in [0, {t.max():.3g}]: scored as [-1, 1] (model range); "
              "if they are in [0, 1], give x * 2 - 1 (or uint8)", file=sys.stderr)
    return t


def score(run_dir, inputs=(), npz: Optional[str] = None, which: str = "latest", batch_size: int = 500
          ) -> Tuple[List[str], torch.Tensor]:
    """(names, (N,) anomaly scores) of image files/folders ``inputs`` and the images of ``npz``
    under the run at ``run_dir`` (names: the file paths, and ``FILE[i]`` for the arrays)."""
    import torch

    from ..api import load, read_images
    from ..errors import GankitError
    from ..objectives.anomaly import score_images

    if not inputs and npz is None:
        raise GankitError("give image files or folders to score, or --npz FILE")
    model = load(run_dir, which=which)
    shape = tuple(model.info.sample_shape)
    names, parts = [], []
    if inputs:
        paths, x = read_images(list(inputs), shape[0], tuple(shape[1:]), purpose="score")
        names += [str(p) for p in paths]
        parts.append(x)
    if npz is not None:
        x = read_npz(npz, shape)
        names += [f"{npz}[{i}]" for i in range(len(x))]
        parts.append(x)
    return names, score_images(model, torch.cat(parts), batch_size)


def run(args):
    names, scores = score(args.run_dir, args.inputs, args.npz, args.checkpoint, args.batch_size)
    for name, s in zip(names, scores.tolist()):
        print(f"{s:.6g}\t{name}")
