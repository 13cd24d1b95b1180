"""Sample grids for images and scatter/density plots for 1D/2D samples."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..colour import to_uint8
from ..provenance import context as provenance_context, png_info, png_text
from ..utils import atomic_write_bytes


def image_grid(x: torch.Tensor, nrow: Optional[int] = None, padding: int = 2) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (H', W', C) uint8 grid with ``padding`` pixels between tiles."""
    x = to_uint8(x.detach()).cpu()
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    grid = torch.zeros(c, ncol * (h + padding) + padding, nrow * (w + padding) + padding, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return grid.permute(1, 2, 0).numpy()


def png_bytes(array: np.ndarray, scale: int = 1) -> bytes:
    from PIL import Image

    img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=png_info())  # provenance text chunks (gankit inspect)
    return buf.getvalue()


def save_image_grid(x: torch.Tensor, path: Path, nrow: Optional[int] = None, min_width: int = 256) -> None:
    """Write a PNG grid of images in [-1, 1]; small images are enlarged (nearest) to ≥ ``min_width`` px wide."""
    grid = image_grid(x, nrow)
    scale = max(1, min_width // grid.shape[1])
    layout = {"images": len(x), "per_row": nrow or max(1, int(math.ceil(math.sqrt(len(x))))),
              "tile": list(x.shape[2:]), "padding": 2, "scale": scale}  # gankit detect finds the images by it
    with provenance_context(grid=layout):
        atomic_write_bytes(Path(path), png_bytes(grid, scale))


def input_picture(inputs: torch.Tensor, out_channels: int, size: tuple) -> torch.Tensor:
    """A translator's inputs as pictures beside its outputs (``out_channels`` at ``size`` (H, W)):
    an image with its hole mask (C + 1 channels) -> the image, hole left grey; a one-hot label map
    (more channels than an image has) -> each class a colour of a fixed palette; a smaller image (a
    super-resolution input) -> enlarged with nearest neighbours, so its pixels show."""
    x = inputs.float().cpu()
    c = x.shape[1]
    if c == out_channels + 1 and c in (2, 4):
        x = x[:, :-1]
    elif c > 4:
        g = torch.Generator().manual_seed(c)
        palette = torch.rand(c, 3, generator=g) * 2 - 1                    # (K, 3) in [-1, 1]
        palette = palette[torch.argsort(palette.mean(1))]                   # class 0 darkest, as label maps
        x = palette[x.argmax(1)].permute(0, 3, 1, 2)
    if tuple(x.shape[2:]) != tuple(size):
        x = torch.nn.functional.interpolate(x, size=tuple(size), mode="nearest")
    return x


def translation_columns(inputs: torch.Tensor, outputs: torch.Tensor, targets: Optional[torch.Tensor] = None
                        ) -> tuple[torch.Tensor, int]:
    """Tiles input | output [| target] side by side, one triple per sample, channels made equal
    (grey tiles repeated to RGB beside colour ones; inputs drawn by :func:`input_picture`). Returns the
    tiles and how many form one triple."""
    inputs = input_picture(inputs, outputs.shape[1], tuple(outputs.shape[2:]))
    parts = [inputs, outputs] + ([targets] if targets is not None else [])
    c = max(p.shape[1] for p in parts)
    parts = [p.float().cpu().expand(-1, c, -1, -1) if p.shape[1] != c else p.float().cpu() for p in parts]
    return torch.stack(parts, 1).flatten(0, 1), len(parts)  # (N·k, C, H, W)


def save_translation_grid(inputs: torch.Tensor, outputs: torch.Tensor, path: Path,
                          targets: Optional[torch.Tensor] = None, per_row: int = 4, min_width: int = 256) -> None:
    """A PNG of ``per_row`` samples a row, each as input | output [| target]."""
    tiles, k = translation_columns(inputs, outputs, targets)
    save_image_grid(tiles, path, nrow=k * per_row, min_width=min_width)


def scatter_limits(modes: np.ndarray, x: np.ndarray) -> tuple:
    """(lo, hi) of a 2D scatter's axes: the modes ± 25 % of their span, widened to hold the samples
    ``x``, but never more than one span further out on any side (a diverged G does not squash the
    data into a dot; what stays outside is counted on the figure)."""
    span = float(modes.max() - modes.min()) + 1e-9
    lo, hi = modes.min(0) - 0.25 * span, modes.max(0) + 0.25 * span
    ok = x[np.all(np.isfinite(x), axis=1)]
    if len(ok):
        lo = np.maximum(np.minimum(lo, ok.min(0)), modes.min(0) - 1.25 * span)
        hi = np.minimum(np.maximum(hi, ok.max(0)), modes.max(0) + 1.25 * span)
    return lo, hi


def scatter_samples(x: torch.Tensor, real: Optional[torch.Tensor] = None, modes: Optional[torch.Tensor] = None,
                    title: str = "") -> bytes:
    """PNG bytes: generated 2D points over the real ones (or 1D histograms), modes marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = x.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    if x.shape[1] == 1:
        bins = 80
        lo = min(x.min(), real.min().item() if real is not None else x.min())
        hi = max(x.max(), real.max().item() if real is not None else x.max())
        if real is not None:
            ax.hist(real.cpu().numpy()[:, 0], bins=bins, range=(lo, hi), density=True, alpha=0.4,
                    color="tab:blue", label="real")
        ax.hist(x[:, 0], bins=bins, range=(lo, hi), density=True, alpha=0.6, color="tab:orange", label="generated")
        ax.legend(loc="upper right", fontsize=8)
    else:
        # Drawn bottom to top: mode markers (thin, grey), real points over them (σ = 0.01 hides under
        # a cross otherwise), generated samples on top.
        if modes is not None:
            m = modes.cpu().numpy()
            ax.scatter(m[:, 0], m[:, 1], marker="x", s=30, c="0.55", lw=0.8, zorder=1, label="modes")
        if real is not None:
            r = real.detach().cpu().numpy()[:2000]
            ax.scatter(r[:, 0], r[:, 1], s=4, c="tab:blue", alpha=0.5, zorder=2, label="real")
        ax.scatter(x[:, 0], x[:, 1], s=3, c="tab:orange", alpha=0.6, zorder=3, label="generated")
        if modes is not None:
            lo, hi = scatter_limits(m, x)
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            outside = int((~np.all(np.isfinite(x) & (x >= lo) & (x <= hi), axis=1)).sum())
            if outside:
                ax.set_xlabel(f"{outside:,} of {len(x):,} generated samples outside the plot", fontsize=8)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7, markerscale=3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=png_text())
    plt.close(fig)
    return buf.getvalue()


def save_samples_figure(x: torch.Tensor, path: Path, real: Optional[torch.Tensor] = None,
                        modes: Optional[torch.Tensor] = None, title: str = "",
                        inputs: Optional[torch.Tensor] = None, targets: Optional[torch.Tensor] = None) -> None:
    """Images -> grid PNG (input | output | target triples when ``inputs`` are given: translation);
    vectors -> scatter/histogram PNG over the real data."""
    if inputs is not None:
        save_translation_grid(inputs, x, path, targets)
    elif x.ndim == 4:
        save_image_grid(x, path)
    else:
        atomic_write_bytes(Path(path), scatter_samples(x, real, modes, title))
