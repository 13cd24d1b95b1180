"""How a 1D/2D run learned, animated from its snapshots (``gankit animate RUN_DIR``).

1D data: each frame is Figure 1 of Goodfellow et al. (2014) at one snapshot — the data density
p_data (black, dotted; the known Gaussian mixture of the dataset), the generator's density p_g
(green; a Gaussian kernel density estimate of its samples, Scott's bandwidth) and the
discriminator's output D(x) (blue, dashed) on a grid, with the line D = ½ that an optimal D
reaches when p_g = p_data. When G takes a 1-dimensional z, the panel below draws the mapping
x = G(z) as the paper does: z at equally spaced quantiles of its N(0, 1) (so uniformly spaced, as
the paper's uniform z) with an arrow to where G puts it, dense where p_g is high.

2D data: each frame is D's output as a heat map over the plane (the ½ contour drawn), the real
data points (black) and the generator's samples (green) over it; samples outside the plotted area
are counted under it. A D whose score depends on the rest of its batch (minibatch discrimination)
scores each point as inside a batch of the training batch size filled with G's samples, as it
judges G's batches; the figure says so.

"D(x)" is the probability D gives x of being real for the logistic losses (minimax,
non-saturating) and D's raw output for least squares (whose optimal D is also
p_data / (p_data + p_g)); for hinge and Wasserstein critics it is the raw score, drawn on its own
axis (1D) or colour scale (2D), and no ½ line is drawn. A PacGAN D scores ``pack`` copies of x.

Frames become a GIF (Pillow) or, when ffmpeg is available (``pip install imageio-ffmpeg`` or a
system ffmpeg), an MP4; both written atomically.
"""
from __future__ import annotations

import contextlib
import io
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .errors import GankitError, option
from .utils import atomic_write, atomic_write_bytes

N_SAMPLES_1D = 5000   # generator samples per frame for the KDE
N_SAMPLES_2D = 1500   # generator samples per frame in the cloud
N_REAL_2D = 1500      # real points drawn from the mixture
GRID_1D = 400         # points where the densities and D(x) are evaluated
GRID_2D = 120         # per side of D's heat map
D_CHUNK = 1024        # grid points per call of D: bounded memory (a minibatch layer holds (chunk, R, K, Dk))
N_ARROWS = 24         # z quantiles drawn in the mapping panel (z_dim == 1)
HOLD_LAST = 3         # the last frame stays this many frame durations


# -- the curves --------------------------------------------------------------------------------

def mixture_density(grid: np.ndarray, modes: np.ndarray, std: float) -> np.ndarray:
    """Density at ``grid`` (G,) of the equal-weight 1D mixture of N(mode, std²) (gankit.data.toy)."""
    modes = np.asarray(modes, dtype=np.float64).reshape(-1)
    z = (grid[:, None] - modes[None, :]) / std
    return np.exp(-0.5 * z ** 2).mean(1) / (std * math.sqrt(2 * math.pi))


def kde_density(samples: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density estimate of 1D ``samples`` at ``grid``, with Scott's bandwidth
    σ̂·n^(−1/5) (scipy.stats.gaussian_kde's default); the bandwidth is at least the grid spacing, so a
    collapsed generator (all samples equal) shows as a narrow peak rather than a division by zero."""
    s = np.asarray(samples, dtype=np.float64).reshape(-1)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return np.zeros_like(grid)
    spacing = float(grid[1] - grid[0]) if grid.size > 1 else 1.0
    h = max(float(s.std(ddof=1)) * s.size ** (-0.2) if s.size > 1 else 0.0, spacing)
    out = np.empty_like(grid, dtype=np.float64)
    for i in range(0, grid.size, 100):  # (100, n) blocks: bounded memory for any n
        z = (grid[i:i + 100, None] - s[None, :]) / h
        out[i:i + 100] = np.exp(-0.5 * z ** 2).sum(1)
    return out / (s.size * h * math.sqrt(2 * math.pi))


@dataclass
class Model:
    """The networks of a run rebuilt once; each snapshot's weights are loaded into them in turn."""

    cfg: object
    data: dict
    info: object                     # gankit.objectives.DataInfo: sample shape, classes
    nets: Dict[str, torch.nn.Module]
    objective: object

    @property
    def probability(self) -> bool:
        """Whether D's output reads as a probability of real (logistic losses and least squares)."""
        loss = getattr(self.objective, "loss", None)
        return loss is not None and (loss.logistic or loss.name == "least-squares")

    def load(self, modules: Dict[str, dict]) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(modules[name])
            net.eval()

    @torch.no_grad()
    def samples(self, n: int, seed: int) -> np.ndarray:
        """``n`` generator samples (n, dim) from the noise of ``seed``."""
        task = self.objective.task
        return task.generate(self.nets[task.net], task.seeded(n, seed)).reshape(n, -1).double().numpy()

    @torch.no_grad()
    def mapping(self) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(u, G(z)) for z at the quantiles u = (i + ½)/N_ARROWS of N(0, 1); None unless z is 1-D."""
        task = self.objective.task
        if getattr(task, "z_dim", None) != 1 or task.num_classes:
            return None
        u = (torch.arange(N_ARROWS, dtype=torch.float64) + 0.5) / N_ARROWS
        z = (math.sqrt(2) * torch.erfinv(2 * u - 1)).float().view(-1, 1)
        x = task.generate(self.nets[task.net], {"z": z, "y": None}).reshape(-1).double().numpy()
        return u.numpy(), x

    @property
    def batch_dependent(self) -> bool:
        """Whether D's score of a sample depends on the other samples of its batch (minibatch
        discrimination): then a point is scored as if it were in a batch of G's samples."""
        from .nets.layers import MinibatchDiscrimination

        d = self.nets.get("D")
        return d is not None and any(isinstance(m, MinibatchDiscrimination) for m in d.modules())

    @torch.no_grad()
    def d_values(self, x: np.ndarray, context: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """D's output at points ``x`` (P, dim) (see the module docstring), averaged over classes when
        D is conditional; None when the objective has no single discriminator D.

        A batch-dependent D (:attr:`batch_dependent`) scores each point as it would inside a batch of
        the training batch size whose other samples are ``context`` (n, dim; G's samples: the batch D
        judges as fake and G learns from): its minibatch layers compare each point with the context's
        kernel features only (``MinibatchDiscrimination.reference``), in chunks, so memory stays
        bounded (all points in one batch would compare every pair of them: 83 GB for 120×120)."""
        obj = self.objective
        if "D" not in self.nets or not hasattr(obj, "discriminate") or not hasattr(obj, "loss"):
            return None
        pts = torch.as_tensor(x, dtype=torch.float32).view(-1, *self.info.sample_shape)
        pack = int(getattr(self.nets["D"], "pack", 1))
        pts = pts.repeat_interleave(pack, 0)  # PacGAN: D scores `pack` copies of each point
        classes = range(self.info.num_classes) if self.info.num_classes else [None]
        total = torch.zeros(x.shape[0], dtype=torch.float64)
        for c in classes:
            with self._compared_with(context, c, pack):
                outs = []
                for i in range(0, pts.shape[0], D_CHUNK * pack):
                    part = pts[i:i + D_CHUNK * pack]
                    y = None if c is None else torch.full((part.shape[0],), c, dtype=torch.long)
                    outs.append(obj.discriminate(part, y)[0].double().view(-1))
            out = torch.cat(outs)
            total += torch.sigmoid(out) if obj.loss.logistic else out
        return (total / len(classes)).numpy()

    @contextlib.contextmanager
    def _compared_with(self, context: Optional[np.ndarray], c: Optional[int], pack: int):
        """While open, D's minibatch layers compare each sample with the kernel features of the first
        batch_size − pack samples of ``context`` (what a batch of the training batch size holds
        besides the point's own pack); nothing to do for a D without them."""
        from .nets.layers import MinibatchDiscrimination

        layers = [m for m in self.nets["D"].modules() if isinstance(m, MinibatchDiscrimination)]
        if not layers:
            yield
            return
        batch = max(int(self.cfg.train.batch_size) // pack * pack, 2 * pack)
        if context is None or len(context) < batch - pack:
            raise ValueError(f"scoring points with a minibatch-discrimination D needs {batch - pack} context samples")
        ctx = torch.as_tensor(np.asarray(context)[:batch - pack], dtype=torch.float32).view(-1, *self.info.sample_shape)
        feats = {}
        hooks = [m.register_forward_pre_hook(lambda mod, inp: feats.__setitem__(mod, mod.features(inp[0])))
                 for m in layers]
        try:
            y = None if c is None else torch.full((ctx.shape[0],), c, dtype=torch.long)
            self.objective.discriminate(ctx, y)  # the context's kernel features, captured on the way in
        finally:
            for h in hooks:
                h.remove()
        for m in layers:
            m.reference = feats[m]
        try:
            yield
        finally:
            for m in layers:
                m.reference = None


def build_model(snap: dict) -> Model:
    """The networks and objective of a snapshot (:func:`~gankit.train.snapshots.load_snapshot`);
    its weights are not loaded (:meth:`Model.load`)."""
    from .config import Config, from_dict, import_plugins
    from .objectives import OBJECTIVES, DataInfo

    cfg = from_dict(Config, snap["config"])
    import_plugins(cfg.plugins)
    info = DataInfo.from_meta(snap["data"])
    cls = OBJECTIVES.get(cfg.loss.objective)
    nets = cls.build_networks(cfg, info)
    return Model(cfg, snap["data"], info, nets, cls(nets, cfg, info))


# -- frames ------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _canvas_image(fig):
    from PIL import Image

    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())


@dataclass
class Frame1D:
    """One snapshot's curves on a grid: p_g's KDE, D(x) (None: no D), the mapping panel's arrows (z 1-D)."""

    p_g: np.ndarray
    d: Optional[np.ndarray]
    mapping: Optional[Tuple[np.ndarray, np.ndarray]]


def curves_1d(model: Model, grid: np.ndarray, seed: int = 0, samples: Optional[np.ndarray] = None) -> Frame1D:
    """The curves at ``grid`` for the weights now loaded in ``model``; p_g from ``samples`` (n,) or else
    from N_SAMPLES_1D new ones of the noise of ``seed``."""
    x = samples if samples is not None else model.samples(N_SAMPLES_1D, seed)[:, 0]
    return Frame1D(kde_density(x, grid), model.d_values(grid[:, None]), model.mapping())


def _range_1d(modes: np.ndarray, std: float, samples: List[np.ndarray]) -> Tuple[float, float]:
    """x range shared by all frames: the data ± 4σ and the bulk (0.5–99.5 %) of every frame's samples,
    at most 4 × the data's own width on either side (a diverged G does not squash the picture)."""
    lo, hi = float(modes.min() - 4 * std), float(modes.max() + 4 * std)
    width = hi - lo
    for s in samples:
        s = s[np.isfinite(s)]
        if s.size:
            lo, hi = min(lo, float(np.percentile(s, 0.5))), max(hi, float(np.percentile(s, 99.5)))
    lo = max(lo, float(modes.min() - 4 * std) - 4 * width)
    hi = min(hi, float(modes.max() + 4 * std) + 4 * width)
    pad = 0.03 * (hi - lo)
    return lo - pad, hi + pad


def frames_1d(model: Model, snaps: List[Tuple[int, Path]], title: str, seed: int = 0) -> list:
    from .train.snapshots import load_snapshot

    modes = np.asarray(model.data["modes"], dtype=np.float64).reshape(-1)
    std = float(model.data["mode_std"])
    raw = []
    for step, path in snaps:  # every frame's samples first: the x range is shared by all frames
        modules = load_snapshot(path)["modules"]
        model.load(modules)
        raw.append((step, modules, model.samples(N_SAMPLES_1D, seed)[:, 0]))
    lo, hi = _range_1d(modes, std, [r[2] for r in raw])
    grid = np.linspace(lo, hi, GRID_1D)
    p_data = mixture_density(grid, modes, std)
    top = max(1.05, 1.3 * float(p_data.max()))

    plt = _plt()
    has_map = model.mapping() is not None
    fig = plt.figure(figsize=(7.0, 4.2 if has_map else 3.4), dpi=90)
    gs = fig.add_gridspec(2 if has_map else 1, 1, height_ratios=[4, 1.3] if has_map else [1], hspace=0.05)
    ax = fig.add_subplot(gs[0])
    ax.plot(grid, p_data, color="black", ls=":", lw=2, label="p_data")
    (g_line,) = ax.plot(grid, np.zeros_like(grid), color="green", lw=2, label=f"p_g (KDE of {N_SAMPLES_1D:,} samples)")
    critic = not model.probability
    d_ax = ax.twinx() if critic else ax
    (d_line,) = d_ax.plot(grid, np.zeros_like(grid), color="tab:blue", ls="--", lw=1.8,
                          label="D(x)" if not critic else "D's score (critic)")
    if not critic:
        ax.axhline(0.5, color="tab:blue", lw=0.6, alpha=0.5)
        ax.text(lo + 0.005 * (hi - lo), 0.51, "½", color="tab:blue", fontsize=9, va="bottom")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, top)
    ax.set_ylabel("density, D(x)" if not critic else "density")
    lines = [ax.get_lines()[0], g_line, d_line]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3,
              fontsize=8, frameon=False)  # above the axes: the curves move everywhere inside them
    suptitle = fig.suptitle("", fontsize=10)
    mapping_ax = None
    if has_map:
        ax.tick_params(labelbottom=False)
        mapping_ax = fig.add_subplot(gs[1], sharex=ax)
        mapping_ax.set_ylim(-0.25, 1.25)
        mapping_ax.set_yticks([0, 1], ["z", "x"])
        mapping_ax.axhline(0, color="black", lw=0.8)
        mapping_ax.axhline(1, color="black", lw=0.8)
        mapping_ax.set_xlabel("x = G(z): z at equally spaced quantiles of N(0, 1) (bottom line)", fontsize=8)
    else:
        ax.set_xlabel("x")
    fig.subplots_adjust(left=0.09, right=0.91 if critic else 0.98, top=0.86, bottom=0.13 if has_map else 0.15)

    images = []
    arrows = []
    for step, modules, x in raw:
        model.load(modules)
        frame = curves_1d(model, grid, samples=x)
        g_line.set_ydata(frame.p_g)
        if frame.d is not None:
            d_line.set_ydata(frame.d)
            if critic:
                span = float(np.ptp(frame.d)) or 1.0
                d_ax.set_ylim(float(frame.d.min()) - 0.1 * span, float(frame.d.max()) + 0.1 * span)
        suptitle.set_text(f"{title}, step {step:,}")
        for a in arrows:
            a.remove()
        arrows = []
        if mapping_ax is not None and frame.mapping is not None:
            u, gx = frame.mapping
            zpos = lo + u * (hi - lo)
            for z0, x1 in zip(zpos, gx):
                if np.isfinite(x1):
                    arrows.append(mapping_ax.annotate("", xy=(float(np.clip(x1, lo, hi)), 1), xytext=(z0, 0),
                                                      arrowprops=dict(arrowstyle="->", color="0.35", lw=0.7)))
        images.append(_canvas_image(fig))
    plt.close(fig)
    return images


def frames_2d(model: Model, snaps: List[Tuple[int, Path]], title: str, seed: int = 0) -> list:
    from .train.snapshots import load_snapshot

    modes = np.asarray(model.data["modes"], dtype=np.float64)
    std = float(model.data["mode_std"])
    rng = np.random.default_rng(seed)
    real = modes[rng.integers(len(modes), size=N_REAL_2D)] + std * rng.standard_normal((N_REAL_2D, 2))
    lo, hi = modes.min(0) - 4 * std, modes.max(0) + 4 * std
    pad = 0.25 * float((hi - lo).max())
    lo, hi = lo - pad, hi + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], GRID_2D), np.linspace(lo[1], hi[1], GRID_2D))
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    critic = not model.probability
    batch = int(model.cfg.train.batch_size)
    note = (f"D(x): each point scored in a batch of {batch} with {batch - 1} of G's samples "
            "(D compares the samples of a batch)" if model.batch_dependent else "")

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.4, 4.6), dpi=90)
    images = []
    cbar = None
    for step, path in snaps:
        model.load(load_snapshot(path)["modules"])
        x = model.samples(N_SAMPLES_2D, seed)
        d = model.d_values(pts, context=model.samples(batch, seed + 1) if model.batch_dependent else None)
        ax.clear()
        if d is not None:
            d = d.reshape(GRID_2D, GRID_2D)
            levels = np.linspace(0, 1, 21) if not critic else 20
            cs = ax.contourf(gx, gy, np.clip(d, 0, 1) if not critic else d, levels=levels, cmap="coolwarm",
                             alpha=0.85)
            if not critic and d.min() < 0.5 < d.max():
                ax.contour(gx, gy, d, levels=[0.5], colors="white", linewidths=1.0)
            if cbar is None:
                cbar = fig.colorbar(cs, ax=ax, fraction=0.046, pad=0.03)
                cbar.set_label("D(x)" if not critic else "D's score (critic)")
            elif critic:
                cbar.update_normal(cs)
        ax.scatter(real[:, 0], real[:, 1], s=2, c="black", lw=0, label="data")
        ax.scatter(x[:, 0], x[:, 1], s=3, c="limegreen", lw=0, alpha=0.8, label="G's samples")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7, markerscale=3, framealpha=0.7)
        ax.set_title(f"{title}, step {step:,}", fontsize=10)
        outside = int((~np.all(np.isfinite(x) & (x >= lo) & (x <= hi), axis=1)).sum())
        lines = ([f"{outside:,} of {len(x):,} samples outside the plot"] if outside else []) + ([note] if note else [])
        ax.set_xlabel("\n".join(lines), fontsize=7)
        fig.tight_layout()
        images.append(_canvas_image(fig))
    plt.close(fig)
    return images


# -- files -------------------------------------------------------------------------------------

def gif_bytes(images: list, fps: float) -> bytes:
    """An endlessly looping GIF of ``images`` (PIL), the last frame held ``HOLD_LAST`` times as long."""
    from PIL import Image

    ms = max(20, int(round(1000 / fps)))
    frames = [im.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
              for im in images]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], loop=0, optimize=True,
                   duration=[ms] * (len(frames) - 1) + [ms * HOLD_LAST], disposal=1)
    return buf.getvalue()


def _ffmpeg() -> Optional[str]:
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary missing: a system ffmpeg may still be there
        return shutil.which("ffmpeg")


def write_mp4(images: list, path: Path, fps: float) -> None:
    """H.264 MP4 through ffmpeg (frames piped as raw RGB), written to a temp file and renamed."""
    exe = _ffmpeg()
    if exe is None:
        raise GankitError(f"{path}: writing MP4 needs ffmpeg (pip install imageio-ffmpeg); or give "
                          f"{option('-o', 'FILE.gif', param='out')}")
    w, h = images[0].size
    images = images + [images[-1]] * (HOLD_LAST - 1)
    data = b"".join(np.asarray(im.convert("RGB")).tobytes() for im in images)

    def encode(tmp: str) -> None:
        cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", f"{fps:g}", "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264",
               "-pix_fmt", "yuv420p", "-movflags", "+faststart", tmp]
        proc = subprocess.run(cmd, input=data, capture_output=True)
        if proc.returncode != 0:
            raise GankitError(f"{path}: ffmpeg failed ({proc.stderr.decode(errors='replace').strip()[:200]})")

    atomic_write(path, encode, suffix=".tmp.mp4")


def _data_kind(run_dir: Path) -> Optional[str]:
    """The kind of a run's data ("image", "vector", ...) as its latest checkpoint records it; None
    without a readable one."""
    from .checkpoint import load_latest

    try:
        found = load_latest(run_dir)
    except GankitError:
        return None
    return None if found is None else found[0].get("data", {}).get("kind")


def animate_run(run_dir: str | Path, out: Optional[str | Path] = None, fps: float = 4.0, seed: int = 0) -> Path:
    """Draw every snapshot of ``run_dir`` (1D: p_data, p_g, D(x); 2D: samples over D's heat map) and
    write the frames as ``out`` (.gif, or .mp4 with ffmpeg; default ``RUN_DIR/animation.gif``).
    Returns the path written. ``seed`` fixes the generator's noise (the same z in every frame)."""
    from .train.snapshots import list_snapshots, load_snapshot

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GankitError(f"{run_dir}: no such run folder")
    if not fps > 0:
        raise GankitError(f"{option('--fps', fps)}: give a number of frames per second > 0")
    path = Path(out) if out is not None else run_dir / "animation.gif"
    if path.suffix.lower() not in (".gif", ".mp4"):
        raise GankitError(f"{path}: the output must end in .gif or .mp4")
    if path.suffix.lower() == ".mp4" and _ffmpeg() is None:
        raise GankitError(f"{path}: writing MP4 needs ffmpeg (pip install imageio-ffmpeg, or apt-get install "
                          f"ffmpeg); or give {option('-o', 'FILE.gif', param='out')}")
    snaps = list_snapshots(run_dir)
    if not snaps:
        kind = _data_kind(run_dir)
        if kind not in (None, "vector"):  # the advice below would retrain for nothing: images keep no snapshots
            raise GankitError(f"{run_dir}: gankit animate draws 1D/2D mixture data; this run's data is {kind} "
                              "(its sample grids are in samples/)")
        raise GankitError(f"{run_dir}: no snapshots in {run_dir / 'snapshots'}; train with "
                          "--set train.snapshot_every=N (e.g. 50) to keep them, then animate again")
    last = load_snapshot(snaps[-1][1])
    data = last["data"]
    dim = int(np.prod(data.get("sample_shape", [0])))
    if data.get("kind") != "vector" or dim not in (1, 2) or data.get("modes") is None:
        raise GankitError(f"{run_dir}: gankit animate draws 1D/2D mixture data; this run's data is "
                          f"{data.get('name')!r} ({data.get('kind')}, shape {data.get('sample_shape')})")
    model = build_model(last)
    title = str(last["config"].get("name", run_dir.name))
    with torch.random.fork_rng(devices=[]):
        images = (frames_1d if dim == 1 else frames_2d)(model, snaps, title, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        atomic_write_bytes(path, gif_bytes(images, fps))
    else:
        write_mp4(images, path, fps)
    return path
