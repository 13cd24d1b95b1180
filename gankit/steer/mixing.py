"""Style mixing (Karras et al. 2019, StyleGAN §3.1 and Fig. 3): a picture made with the coarse styles of
one latent and the rest of another's shows what each group of layers controls — coarse styles (the
small feature maps) pose and overall shape, the finer ones detail and colour.

A style generator takes one w per style index (``ws`` (B, num_ws, w_dim), :mod:`gankit.nets.stylegan`);
mixing with ``coarse`` = K takes indices < K from the row source and indices ≥ K from the column source.
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .. import provenance
from ..errors import GankitError, option

COARSE_MAX_SIDE = 8   # the default coarse styles: those acting on feature maps of at most 8 px a side


def is_style_generator(G: nn.Module) -> bool:
    """True for a generator with per-layer styles (``mapping``, ``synthesis``, ``truncate``, ``num_ws``)."""
    return all(hasattr(G, a) for a in ("mapping", "synthesis", "truncate", "num_ws"))


def require_style_generator(G: nn.Module, what: str = "style mixing") -> None:
    """One GankitError line unless ``G`` is a style generator; ``what`` names the feature refused."""
    if not is_style_generator(G):
        raise GankitError(f"{what} needs a style generator (model.arch stylegan or stylegan2); this run's "
                          f"generator is a {type(G).__name__}, which has no per-layer styles")


def default_coarse(G: nn.Module, max_side: int = COARSE_MAX_SIDE) -> int:
    """The number of style indices that act on feature maps of at most ``max_side`` pixels a side
    (``G.ws_resolution``; they come first): StyleGAN's "coarse" styles, 4² to 8²."""
    return sum(1 for side in G.ws_resolution if side <= max_side)


def check_coarse(G: nn.Module, coarse: Optional[int]) -> int:
    """``coarse`` (None -> :func:`default_coarse`) checked against ``G.num_ws``: 0 ≤ K ≤ num_ws."""
    if coarse is None:
        return default_coarse(G)
    if isinstance(coarse, bool) or not isinstance(coarse, numbers.Integral) or not 0 <= int(coarse) <= G.num_ws:
        raise GankitError(f"{option('--coarse', coarse)}: this generator has {G.num_ws} style inputs (sides "
                          f"{', '.join(map(str, G.ws_resolution))}); give 0..{G.num_ws}")
    return int(coarse)


def mix_ws(ws_rows: Tensor, ws_cols: Tensor, coarse: int) -> Tensor:
    """(R, num_ws, w_dim) and (C, num_ws, w_dim) -> (R, C, num_ws, w_dim): entry (i, j) has style
    indices < ``coarse`` from row i and the others from column j."""
    r, c = ws_rows.shape[0], ws_cols.shape[0]
    rows = ws_rows.unsqueeze(1).expand(r, c, *ws_rows.shape[1:])
    cols = ws_cols.unsqueeze(0).expand(r, c, *ws_cols.shape[1:])
    take_row = (torch.arange(ws_rows.shape[1], device=ws_rows.device) < coarse).view(1, 1, -1, 1)
    return torch.where(take_row, rows, cols)


@torch.no_grad()
def to_ws(G: nn.Module, z: Tensor, y: Optional[Tensor] = None, psi: float = 1.0) -> Tensor:
    """z (B, z_dim), y (B,) | None -> ws (B, num_ws, w_dim): one w per sample broadcast to every style
    index and truncated by ``psi`` (1 = none) toward ``G.w_avg`` (a conditional G: each class's mean w)."""
    w = G.mapping(z, y)
    return G.truncate(w.unsqueeze(1).expand(-1, G.num_ws, -1), psi, None, y)


@torch.no_grad()
def style_mixing(G: nn.Module, z_rows: Tensor, z_cols: Tensor, coarse: Optional[int] = None,
                 y_rows: Optional[Tensor] = None, y_cols: Optional[Tensor] = None, psi: float = 1.0,
                 noise_mode: str = "const") -> dict:
    """The pictures of a style-mixing grid, in G's eval mode (restored after), on the CPU in float32:
    ``{"rows": (R, C_img, H, W) the row sources, "cols": (C, C_img, H, W) the column sources,
    "cells": (R, C, C_img, H, W) cell (i, j) = synthesis(coarse styles of row i, the rest of column j),
    "coarse": K}``. ``z_rows`` (R, z_dim), ``z_cols`` (C, z_dim) and their labels ``y_*`` (conditional G)
    are on any device; ``coarse`` None = :func:`default_coarse`; ``psi`` truncates every w first;
    ``noise_mode`` "const" (default) makes every picture with the same noise maps, so only styles differ."""
    require_style_generator(G)
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    try:
        ws_r = to_ws(G, z_rows.to(device), None if y_rows is None else y_rows.to(device), psi)
        ws_c = to_ws(G, z_cols.to(device), None if y_cols is None else y_cols.to(device), psi)
    finally:
        G.train(was_training)
    return mix_sources(G, ws_r, ws_c, coarse, noise_mode)


@torch.no_grad()
def mix_sources(G: nn.Module, ws_rows: Tensor, ws_cols: Tensor, coarse: Optional[int] = None,
                noise_mode: str = "const") -> dict:
    """:func:`style_mixing` of sources given as ws, (R, num_ws, w_dim) and (C, num_ws, w_dim): drawn and
    mapped, or projected from real images (``gankit mix --row-latents``)."""
    require_style_generator(G)
    k = check_coarse(G, coarse)
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    try:
        ws_r, ws_c = ws_rows.to(device), ws_cols.to(device)
        rows = G.synthesis(ws_r, noise_mode=noise_mode).float().cpu()
        cols = G.synthesis(ws_c, noise_mode=noise_mode).float().cpu()
        mixed = mix_ws(ws_r, ws_c, k)                                        # (R, C, num_ws, w_dim)
        cells = torch.stack([G.synthesis(mixed[i], noise_mode=noise_mode).float().cpu()
                             for i in range(mixed.shape[0])])                # one row of cells at a time
    finally:
        G.train(was_training)
    return {"rows": rows, "cols": cols, "cells": cells, "coarse": k}


def grid_tiles(mix: dict, corner: float = 0.0) -> Tensor:
    """The ((R + 1)·(C + 1), C_img, H, W) tiles of the grid in reading order, ``C + 1`` a row: a blank
    corner (value ``corner``, 0 = mid grey in [-1, 1]), the column sources along the top, then each row
    source followed by its cells."""
    rows, cols, cells = mix["rows"], mix["cols"], mix["cells"]
    blank = torch.full_like(cols[:1], corner)
    lines = [torch.cat([blank, cols])]
    lines += [torch.cat([rows[i:i + 1], cells[i]]) for i in range(rows.shape[0])]
    return torch.cat(lines)


# -- on a run folder (the API and the CLI) --------------------------------------------------

@provenance.scoped
def mix(run_dir: str | Path, out: str | Path = "mix.png", rows: int = 4, cols: int = 4, seed: int = 0,
        coarse: Optional[int] = None, truncation: float = 1.0, which: str = "latest",
        row_latents: Sequence[str | Path] = (), col_latents: Sequence[str | Path] = ()) -> Path:
    """Write a style-mixing grid of a style-generator run (:mod:`gankit.steer.mixing`) as a PNG and
    return its path: the top row are ``cols`` column sources, the first column ``rows`` row sources
    (all their latents drawn from one generator seeded ``seed``, rows first; a conditional model's
    labels cycle through its classes), and cell (i, j) takes the style indices < ``coarse`` (None:
    those acting at sides ≤ 8 px) from row source i and the rest from column source j. Pictures use
    the constant noise maps; ``truncation`` ψ pulls every drawn w toward the mean first (1 = none).

    ``row_latents`` / ``col_latents``: latent files of ``gankit project`` (this checkpoint's) to use as
    that side's sources instead of drawn ones, e.g. the pose of your photo with the detail of another.
    They are not truncated, and render with the constant noise maps like every picture here, so a
    source differs in fine detail from its NAME-projected.png (made with its own optimised noise)."""
    from .mixing import grid_tiles, require_style_generator
    from ..api import load
    from ..latent import check_psi
    from ..viz.grids import save_image_grid

    for flag, v, files in (("--rows", rows, row_latents), ("--cols", cols, col_latents)):
        if not files and not 1 <= v <= 64:
            raise GankitError(f"{flag} {v}: give 1..64 sources")
    for flag, files in (("--row-latents", row_latents), ("--col-latents", col_latents)):
        if len(files) > 64:
            raise GankitError(f"{flag}: {len(files)} latent files; give 1..64")
    out = Path(out)
    if out.suffix != ".png":
        raise GankitError(f"{option('-o', out, param='out')}: a mixing grid is a picture; give a file ending in .png")
    from ..api import check_replaceable

    check_replaceable(out)
    model = load(run_dir, which=which)
    model.require_generation()
    require_style_generator(model.G)
    psi = check_psi(truncation, style=True)
    g = torch.Generator().manual_seed(seed)
    ws = []
    for count, files, flag in ((rows, row_latents, "--row-latents"), (cols, col_latents, "--col-latents")):
        if files:
            ws.append(projected_ws(model, files, flag, flag[2:].replace("-", "_")))
        else:
            drawn = model.task.draw(count, g)
            ws.append(drawn_ws(model.G, drawn["z"], drawn["y"], psi))
    result = mix_sources(model.G, ws[0], ws[1], coarse)
    names = {key: [Path(f).name for f in files] or None
             for key, files in (("row_latents", row_latents), ("col_latents", col_latents))}
    provenance.update_from_model(model, "gankit.mix", seed=seed, coarse=result["coarse"],
                                 truncation=psi if psi != 1 else None, **{k: v for k, v in names.items() if v})
    save_image_grid(grid_tiles(result), out, nrow=ws[1].shape[0] + 1)
    return out


@torch.no_grad()
def drawn_ws(G: nn.Module, z: Tensor, y: Optional[Tensor], psi: float) -> Tensor:
    """:func:`to_ws` in G's eval mode (restored after), with z and y moved to G's device."""
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    try:
        return to_ws(G, z.to(device), None if y is None else y.to(device), psi)
    finally:
        G.train(was_training)


@torch.no_grad()
def projected_ws(model, files: Sequence[str | Path], flag: str, param: str) -> Tensor:
    """ws (len(files), num_ws, w_dim) of latent files ``gankit project`` wrote with this model's checkpoint
    (any space: z is mapped with its class, w broadcast to every style index, w+ as it is)."""
    from .projection import projected_start, read_projected

    G = model.G
    was_training = G.training
    G.eval()
    try:
        return torch.cat([projected_start(G, read_projected(model, f, flag, param)) for f in files])
    finally:
        G.train(was_training)
