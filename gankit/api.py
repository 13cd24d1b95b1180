"""The Python API over a run folder: load a trained model, sample from it, walk its latent space,
translate images with it."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from . import provenance
from .config import Config, from_dict, import_plugins
from .checkpoint import LATEST, load_checkpoint, load_latest
from .errors import CheckpointError, GankitError, option
from .latent import slerp
from .model_folder import WEIGHTS_FILE, is_model_folder, read_model_folder
from .utils import atomic_write_bytes, resolve_device


class GAN:
    """A trained model: its networks by name (sampling uses the EMA copies when the run kept them),
    its config, data facts and task — how outputs are made from inputs (:mod:`gankit.tasks`)."""

    def __init__(self, cfg: Config, nets: Dict[str, torch.nn.Module], data: dict, step: int,
                 run_dir: Optional[Path] = None):
        from .objectives import OBJECTIVES, DataInfo

        self.cfg, self.nets, self.data, self.step, self.run_dir = cfg, nets, data, step, run_dir
        for m in nets.values():
            m.eval()
        self.info = DataInfo.from_meta(data)
        self.objective = OBJECTIVES.get(cfg.loss.objective)(nets, cfg, self.info)
        self.task = self.objective.task

    @property
    def G(self) -> torch.nn.Module:
        """The network the task runs (a generator or a translator)."""
        return self.nets[self.task.net]

    @property
    def D(self) -> Optional[torch.nn.Module]:
        return self.nets.get("D")

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    @property
    def class_names(self) -> List[str]:
        """The classes' names when the data had them (a folder's sub-folders, the spoken digits), else []."""
        return list(self.data.get("classes") or (self.data.get("audio") or {}).get("classes") or [])

    def class_index(self, label: Optional[int | str]) -> Optional[int]:
        """``label`` (an index, or a class name such as a folder's sub-folder) as this conditional model's
        class index; None stays None. Anything else is one line naming the classes."""
        if label is None:
            return None
        if not self.num_classes:
            raise GankitError("this model is not conditional: it takes no class label")
        names, last = self.class_names, self.num_classes - 1
        if isinstance(label, str) and label in names:
            return names.index(label)
        if isinstance(label, str) and not label.lstrip("-").isdigit():
            known = f"its classes: {', '.join(names)}" if names else f"its classes have no names, only 0..{last}"
            raise GankitError(f"{option('--class', label, param='label')}: no class of that name; {known}")
        if not 0 <= int(label) <= last:
            raise GankitError(f"{option('--class', label, param='label')}: this model has classes 0..{last}"
                              + (f" ({', '.join(names)})" if names else ""))
        return int(label)

    def _labels(self, labels, n: int):
        """``sample``'s ``labels`` as an int class index, an (n,) int64 tensor or None: a class name, an
        int (numpy's and 0-d tensors too), or n class indices (list, numpy array, tensor). Anything else,
        a length other than n or a class the model lacks is one GankitError line naming ``labels``."""
        if labels is None or isinstance(labels, str):
            return self.class_index(labels)
        if _is_whole(labels):
            return self.class_index(int(labels))
        if isinstance(labels, (bool, float)) or (torch.is_tensor(labels) and labels.ndim == 0):
            raise GankitError(f"labels={labels!r}: give a class index or name, or {n} class indices")
        try:
            y = torch.as_tensor(np.asarray(labels.cpu() if torch.is_tensor(labels) else labels))
        except (TypeError, ValueError, RuntimeError):
            raise GankitError(f"labels: give a class index or name, or {n} class indices; got "
                              f"{type(labels).__name__}") from None
        if not self.num_classes:
            raise GankitError("labels: this model is not conditional: it takes no class label")
        if y.ndim != 1 or y.dtype in (torch.bool,) or y.is_floating_point() or y.is_complex():
            raise GankitError(f"labels: give {n} integer class indices (a 1-D list, array or tensor); got "
                              f"{y.dtype} of shape {tuple(y.shape)}")
        if len(y) != n:
            raise GankitError(f"labels: {len(y)} labels for n={n} samples; give one per sample")
        last = self.num_classes - 1
        if len(y) and not (0 <= int(y.min()) and int(y.max()) <= last):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise GankitError(f"labels: class {bad} is not one of this model's classes 0..{last}")
        return y.long()

    def require_generation(self) -> None:
        """Fail with one line unless this model makes outputs from noise (a generator)."""
        if self.task.name == "reconstruction":  # an anomaly detector: it scores images, it makes none
            raise GankitError(f"this is an anomaly detector ({self.cfg.loss.objective}): it scores images rather "
                              "than making them; use gankit score RUN IMAGES... (or gankit eval RUN for its AUROC)")
        if self.task.name != "generation":
            raise GankitError(f"this is a {self.task.name} model ({self.cfg.loss.objective}): it makes outputs "
                              "from inputs; use translate (gankit translate RUN INPUT...)")

    @torch.no_grad()
    def sample(self, n: int, seed: Optional[int] = 0, labels: Optional[torch.Tensor | int | str] = None,
               batch_size: int = 500, truncation: float = 1.0,
               cutoff: Optional[int] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``n`` samples in the data's range: (n, C, H, W) or (n, D) float32 on the CPU, and labels
        (n,) for conditional models (``labels`` an int or a class name picks one class; None cycles through all).
        ``seed`` None draws from torch's global RNG. ``truncation``: ψ, 0 < ψ ≤ 1 (1 = none; 0 also
        for a style generator): W toward its mean for a style generator, on style indices < ``cutoff``
        (None = all), z resampled inside BigGAN's τ(ψ) for any other (see :mod:`gankit.latent`)."""
        self.require_generation()
        n, batch_size = whole_number(n, "n"), whole_number(batch_size, "batch_size", low=1)
        seed = None if seed is None else whole_number(seed, "seed")
        labels = self._labels(labels, n)
        task = self.task.truncated(truncation, cutoff, self.G)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        inputs = task.draw(n, g, labels)
        if n == 0:
            return torch.zeros((0, *self.info.sample_shape)), inputs["y"]
        return task.generate(self.G, inputs, batch_size), inputs["y"]

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: Optional[str] = None, batch_size: int = 64) -> torch.Tensor:
        """Outputs for input images ``x`` (N, C, H, W) in [-1, 1]; ``direction`` picks one of
        :meth:`directions` (CycleGAN: ``AtoB`` or ``BtoA``), the first by default."""
        tasks = self.objective.tasks()
        if self.task.name != "translation":
            raise GankitError(f"this is a {self.task.name} model: it takes no input images; use sample")
        name = direction or next(iter(tasks))
        if name not in tasks:
            raise GankitError(f"{option('--direction', name)}: this model translates {', '.join(tasks)}")
        task = tasks[name]
        return task.generate(self.nets[task.net], {"x": x}, batch_size)

    def directions(self) -> list:
        return list(self.objective.tasks())

    def rejection_sampler(self, steps: int = 1000, percentile: Optional[float] = None, seed: int = 0):
        """Discriminator rejection sampling (Azadi et al. 2019) for this model: a copy of D is fitted to
        G's density ratio on the run's training data (``steps`` Adam steps), then
        ``.sample(n, seed, label)`` keeps G's samples in proportion to it (see :mod:`gankit.sampling`)."""
        from .data import load_dataset
        from .sampling import rejection_sampler

        self.require_generation()
        if self.D is None:
            raise GankitError(f"{option('--rejection', True)}: this {self.cfg.loss.objective} model has no "
                              f"discriminator to reject samples with; sample without {option('--rejection')}")
        data = load_dataset(self.cfg.data, "train", seed=self.cfg.seed)
        return rejection_sampler(self.G, self.D, data, self.task, steps=steps, percentile=percentile, seed=seed)

    @torch.no_grad()
    def interpolate(self, rows: int = 8, steps: int = 10, seed: int = 0,
                    label: Optional[int | str] = None) -> torch.Tensor:
        """A latent walk: ``rows`` spherical interpolations between random z pairs, ``steps`` each.
        Returns (rows·steps, *sample_shape). ``label`` (an index or a class name): every walk stays in
        that class (a conditional model; None: row i walks in class i mod K). A style generator
        renders every frame with its constant noise maps (stylegan2-ada's ``noise_mode="const"``), so
        only the latent changes along a walk, not the per-layer noise."""
        self.require_generation()
        label = self.class_index(label)
        g = torch.Generator().manual_seed(seed)
        a, b = torch.randn(rows, self.cfg.model.z_dim, generator=g), torch.randn(rows, self.cfg.model.z_dim, generator=g)
        t = torch.linspace(0, 1, steps).view(1, steps, 1)
        z = slerp(a.unsqueeze(1), b.unsqueeze(1), t).reshape(rows * steps, -1)  # (rows, steps, z_dim) walks
        y = None
        if self.num_classes:
            y = (torch.full((rows,), label, dtype=torch.long) if label is not None
                 else torch.arange(rows) % self.num_classes).repeat_interleave(steps)
        style = callable(getattr(self.G, "truncate", None))
        task = self.task.truncated(1.0, None, self.G, noise_mode="const") if style else self.task
        return task.generate(self.G, {"z": z, "y": y})


def _is_whole(value) -> bool:
    """An integer as a user means one: int, a numpy integer, a 0-d integer tensor (not bool)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return (torch.is_tensor(value) and value.ndim == 0 and not value.is_floating_point()
            and not value.is_complex() and value.dtype != torch.bool)


def whole_number(value, name: str, low: int = 0) -> int:
    """``value`` (:func:`_is_whole`) as an int of at least ``low``; else one GankitError line naming ``name``."""
    if not _is_whole(value) or int(value) < low:
        raise GankitError(f"{name}={value!r}: give a whole number of at least {low}")
    return int(value)


def load(run_dir: str | Path, which: str = "latest", device: str = "auto", ema: bool = True,
         trust_plugins: bool = False) -> GAN:
    """Rebuild a trained model from a run folder (or a checkpoint file, or a model folder written by
    ``gankit export --format folder``, or the :class:`~gankit.train.run.Run` that ``gankit.train``
    returned) without running its code. ``device``: auto, cpu, cuda or cuda:N. ``trust_plugins``: import
    the ``plugins`` a model folder's config.json names (modules of code, run on import); without it such
    a folder loads only when they are imported already (a run folder is your own: its plugins are imported)."""
    import re

    from .objectives import OBJECTIVES, DataInfo

    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise GankitError(f"device={device!r}: not a device; use auto, cpu, cuda or cuda:N")
    resolve_device(device)  # a CUDA device not here: one line, before anything is read
    if not isinstance(run_dir, (str, Path)) and isinstance(getattr(run_dir, "dir", None), (str, Path)):
        run_dir = run_dir.dir  # a Run
    path = Path(run_dir)
    if not path.exists():
        raise GankitError(f"{run_dir}: no such folder; give a run folder (runs/NAME), a checkpoint file or a "
                          "model folder from gankit export")
    if path.is_dir() and is_model_folder(path) and not (path / "checkpoints").is_dir():
        if which != "latest":  # it holds one model: the option cannot be honoured, and is not ignored
            raise GankitError(f"{option('--checkpoint', which, param='which')}: {run_dir} is a model folder "
                              "(gankit export), which holds one model; leave the option out")
        return _load_model_folder(path, device, trust_plugins)
    if path.is_dir() and which == "latest":
        run = path
        found = load_latest(path)  # the previous checkpoint (with a warning) when the latest is damaged
        if found is None:
            from .runlock import before_first_checkpoint
            raise CheckpointError(f"{path / LATEST}: no checkpoint there yet; {before_first_checkpoint(path)}")
        state, path = found  # path: the checkpoint file read (provenance records its SHA-256)
    else:
        if path.is_dir():
            run = path
            path = path / "checkpoints" / f"{which}.safetensors"
        else:
            run = path.parent.parent
        state = load_checkpoint(path)
    cfg = from_dict(Config, state["config"])
    import_plugins(cfg.plugins)  # the run's own parts register before they are looked up
    data = state["data"]
    nets = OBJECTIVES.get(cfg.loss.objective).build_networks(cfg, DataInfo.from_meta(data))
    mods = state["modules"]
    for name, net in nets.items():
        net.load_state_dict(mods[f"{name}_ema"] if ema and f"{name}_ema" in mods else mods[name])
    dev = resolve_device(device)
    model = GAN(cfg, {k: m.to(dev) for k, m in nets.items()}, data, int(state["trainer"]["step"]), run)
    model.checkpoint_path = path  # the file it was loaded from (see gankit.provenance)
    return model


def _load_model_folder(path: Path, device: str, trust_plugins: bool = False) -> GAN:
    """A folder ``gankit export --format folder`` wrote (:mod:`gankit.model_folder`)."""
    from .objectives import OBJECTIVES, DataInfo

    meta, states = read_model_folder(path, trust_plugins)
    cfg = from_dict(Config, meta["config"])
    import_plugins(cfg.plugins)
    nets = OBJECTIVES.get(cfg.loss.objective).build_networks(cfg, DataInfo.from_meta(meta["data"]))
    for name, net in nets.items():
        if name not in states:
            raise CheckpointError(f"{path / WEIGHTS_FILE}: no weights for network {name}; export the model again")
        net.load_state_dict(states[name])
    dev = resolve_device(device)
    model = GAN(cfg, {k: m.to(dev) for k, m in nets.items()}, meta["data"], int(meta["step"]), None)
    model.checkpoint_path = path / WEIGHTS_FILE  # what files made from it name as their source (gankit.provenance)
    return model


@provenance.scoped
def sample(run_dir: str | Path, n: Optional[int] = None, out: str | Path = "samples.png", seed: int = 0,
           label: Optional[int] = None, interpolate: bool = False, which: str = "latest",
           rejection: bool = False, rejection_steps: int = 1000,
           rejection_percentile: Optional[float] = None, watermark: Optional[str] = None,
           griffin_lim_iters: int = 64, truncation: float = 1.0, cutoff: Optional[int] = None) -> Path:
    """Write ``n`` samples (None: 64) of a trained run: ``.png`` -> grid (or scatter plot), ``.npz`` -> arrays
    ``x`` [and ``y``]; ``interpolate``: ``n`` latent walks (None: 8), one row of 10 steps each;
    for a spectrogram model (audio data) a path without a suffix -> a folder of WAVs (Griffin-Lim,
    ``griffin_lim_iters`` iterations) and their grid.
    ``rejection``: keep only the samples discriminator rejection sampling accepts (see
    :meth:`GAN.rejection_sampler`). ``watermark``: a key; every image carries its invisible
    watermark (:mod:`gankit.watermark`). ``truncation``/``cutoff``: ψ and the style cutoff of
    :meth:`GAN.sample` (plain samples only). ``label`` with ``interpolate``: every walk in that class.
    (A latent of ``gankit project`` is rendered by :func:`gankit.steer.projection.sample_latent`.)
    The files carry their provenance (:mod:`gankit.provenance`); an existing ``out`` is replaced only
    when gankit wrote it (:func:`check_replaceable`)."""
    from .watermark import METHOD, embed

    model = load(run_dir, which=which)
    truncating = truncation != 1 or cutoff is not None
    if truncating:
        model.require_generation()
        model.task.truncated(truncation, cutoff, model.G)  # a bad ψ or cutoff fails before anything is drawn
        if interpolate or rejection:
            raise GankitError(f"{option('--truncation')}/{option('--cutoff')} apply to plain samples; drop "
                              f"{option('--interpolate', True)} or {option('--rejection', True)}")
    index = model.class_index(label) if model.task.name == "generation" else label
    provenance.update_from_model(model, "gankit.sample", seed=seed, label=index, rejection=rejection or None,
                                 watermark=METHOD if watermark is not None else None,
                                 truncation=truncation if truncating else None, cutoff=cutoff)
    walks, n = (8, 64) if n is None else (n, n)  # -n: the walks of --interpolate, else the samples
    out = Path(out)
    audio = model.data.get("audio")
    if audio is not None and out.suffix == "":  # a folder: one WAV per sample, and their spectrograms
        if interpolate or rejection or watermark is not None:
            raise GankitError(f"{out}: a folder of WAVs takes plain samples; {option('--interpolate')}, "
                              f"{option('--rejection')} and {option('--watermark')} write .png/.npz files")
        from .audio.render import write_samples as write_wavs
        x, y = model.sample(n, seed=seed, labels=label, truncation=truncation, cutoff=cutoff)
        write_wavs(x, y, audio, out, n_iter=griffin_lim_iters, seed=seed)
        return out
    if out.suffix not in (".png", ".npz"):
        hint = " or a folder (WAV files of the spectrograms)" if audio is not None else ""
        raise GankitError(f"{out}: the output must end in .png (a picture) or .npz (arrays){hint}")
    check_replaceable(out)
    if interpolate:
        if rejection:
            raise GankitError(f"{option('--interpolate', True)} walks the latent space; it cannot reject samples: "
                              f"drop {option('--rejection', True)}")
        if out.suffix != ".png":
            raise GankitError(f"{option('--interpolate', True)} writes a picture: give "
                              f"{option('-o', 'FILE.png', param='out')}")
        x = model.interpolate(rows=whole_number(walks, "n", low=1), seed=seed, label=index)
        if x.ndim != 4:
            raise GankitError(f"{option('--interpolate', True)} needs an image model; for 1D/2D data sample to .png "
                              "instead")
        x = embed(x, watermark) if watermark is not None else x
        from .viz.grids import save_image_grid
        save_image_grid(x, out, nrow=10)
        return out
    label = model.class_index(label)
    if rejection:
        drs = model.rejection_sampler(steps=rejection_steps, percentile=rejection_percentile, seed=seed)
        x, y = drs.sample(n, seed=seed, label=label)
        print(f"rejection sampling kept {drs.acceptance:.1%} of G's samples", file=sys.stderr)
    else:
        x, y = model.sample(n, seed=seed, labels=label, truncation=truncation, cutoff=cutoff)
    x = embed(x, watermark) if watermark is not None else x  # per image, in the model's range
    write_samples(model, x, y, out)
    return out


def write_samples(model: GAN, x: torch.Tensor, y: Optional[torch.Tensor], out: Path) -> None:
    """Samples ``x`` (and labels ``y``) to ``out``: .npz arrays, or a .png grid (or scatter plot)."""
    from .viz import save_samples_figure

    if out.suffix == ".npz":
        import io
        buf = io.BytesIO()
        arrays = {"x": x.numpy().astype(np.float32)}
        if y is not None:
            arrays["y"] = y.numpy().astype(np.int64)
        np.savez(buf, **arrays, **provenance.npz_field())
        atomic_write_bytes(out, buf.getvalue())
    else:
        modes = torch.tensor(model.data["modes"]) if "modes" in model.data else None
        save_samples_figure(x, out, modes=modes)


def _restore_files(model, inputs, out_dir: Path, side_by_side: bool, mask, seed, tile, extend, alpha,
                   skip_existing: bool = False) -> list:
    """``translate`` for a restoration run: each image at its own size (:mod:`gankit.restore`).
    Every input (and a mask file) is read once before the first output is written, so a bad file is one
    line naming it and nothing is written; more than one input shows a progress bar on stderr."""
    from .data.restoration import one_hot_map
    from .restore import check_options, check_tile, interpolated, load_for_restoration, read_mask, restore_image
    from .viz.grids import image_grid, input_picture, png_bytes

    check_options(model, mask, tile, extend)
    paths = expand_inputs(inputs, list_input_images, f"{INPUT_KINDS} images")
    targets = output_targets(paths, out_dir, ".png", make=False)
    if mask is not None and Path(mask).expanduser().is_file():
        read_mask(Path(mask).expanduser())  # a mask with no hole: one line before anything is written
    check_images(paths)
    if model.data["restoration"]["task"] == "super-resolution":
        check_tile(model, tile)
    if extend is not None:
        for p in paths:
            try:
                check_options(model, extend=extend, size=image_size(p)[::-1])
            except GankitError as e:
                raise GankitError(f"{p}: {e}") from None
    if alpha is not None:
        interpolated(model, alpha)
    todo = pending(paths, targets, out_dir, skip_existing)
    Path(targets[0]).parent.mkdir(parents=True, exist_ok=True)
    written = []
    for p, target in progress(todo, "restoring", "image"):
        x, labels = load_for_restoration(p, model)
        y = restore_image(model, x, mask=mask, seed=seed, tile=tile, extend=extend, label_map=labels)
        if side_by_side:  # the input as a picture (a label map in its palette), enlarged to the output's size
            y = y.float() / 127.5 - 1
            shown = x if labels is None else one_hot_map(labels, int(model.data["restoration"]["classes"]))
            shown = input_picture(shown, y.shape[1], tuple(y.shape[2:]))
            if shown.shape[1] != y.shape[1]:
                shown = shown.expand(-1, y.shape[1], -1, -1)
            array = image_grid(torch.cat([shown, y]), nrow=2, padding=0)
        else:
            array = y[0].permute(1, 2, 0).numpy()  # the uint8 picture; channels-last already when tiled
        atomic_write_bytes(target, png_bytes(array))
        written.append(target)
    return written


# What translate reads from a folder: every suffix it reads as a named file (GIF and TIFF too: their
# first frame, said in a note when there are more)
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
INPUT_KINDS = "PNG/JPEG/BMP/WEBP/GIF/TIFF"
# -o names one file of the kind a run writes; any other file kind here is refused, never made a folder
_FILE_SUFFIXES = set(INPUT_SUFFIXES) | {".npz", ".wav", ".flac", ".mp4"}


def written_by_gankit(path: str | Path) -> bool:
    """Whether the existing file ``path`` carries gankit's record of having written it: the provenance
    of a PNG, NPZ, WAV or ONNX file (:func:`gankit.provenance.read_provenance`), a JSON object whose
    ``provenance`` field is such a record (what ``gankit truncation`` writes beside its plot), or a
    safetensors latent of ``gankit project`` (metadata ``format: gankit-latent``). Any other file — a
    kind gankit does not mark, or one whose record was stripped — is not."""
    import json

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(doc, dict) and isinstance(doc.get("provenance"), dict) and "gankit" in doc["provenance"]
        if suffix == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:
                return (f.metadata() or {}).get("format") == "gankit-latent"
        provenance.read_provenance(path)
        return True
    except Exception:  # noqa: BLE001  (unreadable or damaged: not a file gankit may replace)
        return False


def check_replaceable(path: str | Path, flag: str = "-o", param: str = "out") -> Path:
    """``path`` if gankit may write it: new, or a file gankit wrote (:func:`written_by_gankit`), which is
    replaced. A folder, or a file gankit did not write, is refused in one line naming it — gankit never
    replaces a file it did not make. ``flag``/``param``: how the message names the option."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise GankitError(f"{option(flag, path, param=param)}: a folder; give a file name")
    if path.exists() and not written_by_gankit(path):
        raise GankitError(f"{path}: the file exists and gankit did not write it (no gankit provenance); gankit "
                          "replaces only its own outputs: move it away or give another name")
    return path


def list_input_images(folder: Path) -> list:
    """The images ``translate`` reads under ``folder`` (recursively, sorted by path): the suffixes of
    :data:`INPUT_SUFFIXES`, any case."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)


def image_size(path: Path) -> tuple:
    """(W, H) of an image as a viewer shows it (EXIF orientation applied), from its header."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)


def check_images(paths, purpose: str = "translate") -> None:
    """Decode every image in ``paths`` once (a bad one is one line naming it) and note each one of
    several frames (:func:`note_frames`)."""
    from .data.images import open_image

    for p in paths:
        open_image(p, "RGB", purpose)
    note_frames(paths)


def note_frames(paths) -> None:
    """A note on stderr for each image of several frames (an animated GIF, a multi-page TIFF): only
    its first frame is read."""
    from PIL import Image

    for p in paths:
        try:
            with Image.open(p) as im:
                frames = getattr(im, "n_frames", 1)
        except Exception:  # noqa: BLE001  (an unreadable file is reported by whoever decodes it)
            continue
        if frames > 1:
            print(f"note: {p}: {frames} frames; only the first is used", file=sys.stderr)


def pending(paths: list, targets: list, out, skip_existing: bool) -> list:
    """(input, output) pairs to make, checked before anything is written: an output renamed because
    another input has its name is said on stderr (``X -> Y``, when ``out`` is a folder); an output
    already there (from an earlier run into the folder ``out``) is replaced if gankit wrote it, or with
    ``skip_existing`` kept and its input skipped, either said on stderr; a file there that gankit did
    not write is refused in one line (:func:`check_replaceable`)."""
    if Path(out).expanduser().suffix.lower() not in OUTPUT_SUFFIXES:  # a folder: say where each renamed input went
        for p, target in zip(paths, targets):
            if Path(target).stem != Path(p).stem:
                print(f"{p} -> {target} (another input is also named {Path(p).stem})", file=sys.stderr, flush=True)
    there = [t for t in targets if Path(t).exists()]
    if there:
        print(f"{'keeping' if skip_existing else 'replacing'} {len(there)} output(s) already in {out}"
              f" ({option('--skip-existing', True)}{'' if skip_existing else ' keeps them'})", file=sys.stderr)
    todo = [(p, t) for p, t in zip(paths, targets) if not (skip_existing and Path(t).exists())]
    for _, t in todo:  # a user's own file in the folder is never replaced
        check_replaceable(t, "-o", "out_dir")
    return todo


#: what ``translate``'s ``out_dir`` ends in when it names one output file, not a folder
OUTPUT_SUFFIXES = (".png", ".wav")


def progress(items: list, desc: str, unit: str):
    """``items`` with a tqdm bar on stderr when there is more than one, redrawn 10 times a second on a
    terminal and every 30 s into a file or pipe, as training's bar is."""
    if len(items) <= 1:
        return items
    from tqdm.auto import tqdm
    return tqdm(items, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.1 if sys.stderr.isatty() else 30)


def unique_stems(paths) -> list:
    """Output names for input files: each file's stem, with "_" appended until it differs from the
    stems before it (the same name in two folders writes two files; the commands that use it say
    each renaming on stderr)."""
    used, out = set(), []
    for p in paths:
        stem = Path(p).stem
        while stem in used:
            stem += "_"
        used.add(stem)
        out.append(stem)
    return out


def read_images(inputs, channels: int, size: tuple, purpose: str = "translate",
                half: Optional[str] = None) -> tuple[list, torch.Tensor]:
    """Image files (or folders, searched recursively) -> (paths, (N, C, H, W) float32 in [-1, 1]) with
    ``channels`` and spatial ``size`` (H, W), prepared as a folder dataset prepares its training images
    (:func:`gankit.data.images.prepare_image`: centre crop to the aspect ratio, bicubic resize).
    ``purpose``: the command named in a bad file's error line. ``half`` ("left" or "right", for a run
    trained on side-by-side A|B files): a file twice as wide as high is such a pair, and only that
    half of it is read, as paired-folder reads its training files (:func:`side_by_side_half`); one
    note on stderr says how many were cut."""
    from .data.base import to_model_range
    from .data.images import prepare_image, stack_images

    paths = expand_inputs(inputs, list_input_images, f"{INPUT_KINDS} images")
    note_frames(paths)
    h, w = tuple(size)
    # a side-by-side pair is 2:1; a model whose own input is 2:1 could not tell one from a plain input
    pairs = set()
    if half is not None and w != 2 * h:
        pairs = {p for p in paths for pw, ph in [image_size(p)] if pw == 2 * ph}
    if pairs:
        print(f"note: {len(pairs)} input(s) twice as wide as high, A|B pairs as this run's training files: "
              f"translating each one's {half} half ({'A' if half == 'left' else 'B'}), as pix2pix's test.py does",
              file=sys.stderr)
    arrays = [_pair_half(p, channels, (h, w), half, purpose) if p in pairs
              else prepare_image(p, channels, (h, w), purpose) for p in paths]
    return paths, to_model_range(stack_images(arrays))


def _pair_half(path: Path, channels: int, size: tuple, half: str, purpose: str):
    """One half of a side-by-side A|B file (left: A, right: B), prepared as paired-folder prepares it:
    the h x h half, centre-cropped to ``size``'s aspect ratio, bicubic resize."""
    from .data.images import centre_crop, open_image

    im = open_image(path, "L" if channels == 1 else "RGB", purpose)
    w, h = im.size
    im = im.crop((0, 0, h, h) if half == "left" else (h, 0, w, h))
    return np.asarray(centre_crop(im, size, "BICUBIC"), dtype=np.uint8)


def side_by_side_half(model, source: str) -> Optional[str]:
    """Which half of a side-by-side A|B file is the input of a task whose source is ``source`` ("A"
    or "B", the model's sides), for a run trained on paired-folder data: "left" (the file's A) or
    "right" (its B, when data.direction is BtoA or the task translates back). None for other data,
    or when the run's data.root holds the A/ B/ folder layout rather than side-by-side files."""
    cfg = model.cfg.data
    if cfg.name != "paired-folder":
        return None
    root = Path(cfg.root).expanduser() if cfg.root else None
    if root is not None and ((root / "A").is_dir() or (root / "B").is_dir()):
        return None
    return "left" if (getattr(cfg, "direction", "AtoB") == "AtoB") == (source == "A") else "right"


def expand_inputs(inputs, find, what: str) -> list:
    """Files and folders -> files: each folder replaced by ``find(folder)`` (its files of one kind,
    ``what`` in the error when it has none); a missing path fails in one line."""
    paths = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = find(p)
            if not found:
                raise GankitError(f"{p}: no {what} in this folder")
            paths += found
        elif p.exists():
            paths.append(p)
        else:
            raise GankitError(f"{p}: no such file or folder")
    return paths


def output_targets(paths: list, out: Path, suffix: str, make: bool = True) -> list:
    """Where ``translate`` writes the output of each input in ``paths``: ``out`` itself when it ends in
    ``suffix`` (one input; refused when it exists), else ``out/<name><suffix>`` (the folder made here
    unless ``make`` is False). An output that would be one of the inputs is refused, in one line,
    as is an ``out`` with another file suffix (``-o x.tif`` is not made a folder)."""
    out = Path(out).expanduser()
    if out.suffix.lower() in _FILE_SUFFIXES - {suffix}:
        raise GankitError(f"{option('-o', out, param='out_dir')}: this run writes {suffix} files; give a folder, or a "
                          f"{suffix} file name for one input")
    if out.suffix.lower() == suffix:
        if len(paths) != 1:
            raise GankitError(f"{option('-o', out, param='out_dir')}: one output file for {len(paths)} inputs; give a "
                              "folder instead")
        targets = [out]
    else:
        if out.exists() and not out.is_dir():
            raise GankitError(f"{option('-o', out, param='out_dir')}: a file, not a folder; give a folder for the "
                              f"outputs (or a {suffix} file name for one input)")
        targets = [out / f"{stem}{suffix}" for stem in unique_stems(paths)]
    ids = {(st.st_dev, st.st_ino): p for p in paths for st in [os.stat(p)]}  # the same file by any name
    for t in targets:
        clash = ids.get((os.stat(t).st_dev, os.stat(t).st_ino)) if t.exists() else None
        if clash is not None:
            raise GankitError(f"{option('-o', out, param='out_dir')}: would write {t} over the input {clash}; give "
                              f"another {'name' if t == out else 'folder'} for the outputs")
    if targets == [out] and out.exists():
        raise GankitError(f"{option('-o', out, param='out_dir')}: the file exists; delete it or give a new name (a "
                          "folder -o replaces earlier outputs in it)")
    if make:
        targets[0].parent.mkdir(parents=True, exist_ok=True)
    return targets


def _sound_files(folder: Path) -> list:
    """The sound files under ``folder`` (recursively, hidden ones skipped): the suffixes of
    :data:`gankit.audio.corpus.SOUND_SUFFIXES`, the one list a corpus folder takes too."""
    from .audio.corpus import SOUND_SUFFIXES

    return sorted(q for q in folder.rglob("*") if q.suffix.lower() in SOUND_SUFFIXES and q.is_file()
                  and not any(part.startswith(".") for part in q.relative_to(folder).parts))


def _convert_audio(model: GAN, direction: str, inputs, out: Path, n_iter: int = 64, skip_existing: bool = False) -> list:
    """Voice conversion: each sound file converted whole (:func:`gankit.audio.render.convert`) and
    written as a WAV of the input's length: ``out`` itself when it ends in .wav (one input), else
    ``out/<name>.wav``, named as image translation names its PNGs (:func:`output_targets`: flat, a
    repeated name gets "_" appended; :func:`pending` says each renaming, and replaces only gankit's own WAVs).

    Every input is read before anything is converted, so an unreadable one fails in one line naming
    it and no output is written."""
    from .audio.corpus import SOUND_KINDS, load_wav
    from .audio.render import convert, settings_of
    from .audio_io import write_wav

    s = settings_of(model.data["audio"])
    paths = expand_inputs(inputs, _sound_files, f"{SOUND_KINDS} files")
    for p in paths:      # check them all first (load_wav raises one line naming a bad file)
        load_wav(p, s.sample_rate)
    targets = output_targets(paths, out, ".wav")
    written = []
    for p, target in pending(paths, targets, out, skip_existing):
        audio = load_wav(p, s.sample_rate)
        y, _, _ = convert(lambda x: model.translate(x, direction), audio, s, n_iter=n_iter)
        written.append(write_wav(target, y, s.sample_rate))
    return written


@provenance.scoped
def translate(run_dir: str | Path, inputs, out_dir: str | Path, direction: Optional[str] = None,
              which: str = "latest", side_by_side: bool = False, griffin_lim_iters: int = 64,
              mask: Optional[str] = None, seed: int = 0, tile: Optional[int] = None, extend: Optional[int] = None,
              alpha: Optional[float] = None, skip_existing: bool = False) -> list:
    """Translate image files or folders with a trained translation run; writes ``out_dir/<name>.png``
    for each input (``side_by_side``: input | output), or ``out_dir`` itself when it ends in .png and
    there is one input, and returns the written paths. A voice-conversion run (audio data) takes sound
    files and writes WAVs of the same length (``out_dir`` may be one .wav).
    A restoration run takes images of any size (:mod:`gankit.restore`: ``mask`` a file or a kind drawn
    with ``seed``, ``tile`` for super-resolution, ``extend`` for uncropping, ``alpha`` ESRGAN's network
    interpolation) and writes each at its own size.

    No output is written over an input, nor over an existing file named by ``out_dir``; outputs
    already in an ``out_dir`` folder are replaced if gankit wrote them (their provenance), a file there
    that gankit did not write is refused; with ``skip_existing`` they are kept and their inputs skipped.
    An output renamed because another input has its name is said on stderr (``X -> Y``). A run trained
    on side-by-side A|B files (paired-folder) translates the source half of an input twice as wide as
    high (:func:`read_images`). Inputs are all read before the first output is written."""
    from .data.base import to_uint8
    from .viz.grids import image_grid, png_bytes, translation_columns

    model = load(run_dir, which=which)
    if model.task.name != "translation":
        raise GankitError(f"{run_dir}: a {model.task.name} run ({model.cfg.loss.objective}); "
                          "gankit translate needs a pix2pix or cyclegan run")
    tasks = model.objective.tasks()
    name = direction or next(iter(tasks))
    if name not in tasks:
        raise GankitError(f"{option('--direction', name)}: this model translates {', '.join(tasks)}")
    provenance.update_from_model(model, "gankit.translate", direction=name)  # in every PNG written below
    shape = model.info.sample_shape if tasks[name].source == "A" else model.info.target_shape
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if model.data.get("audio") is not None:
        if side_by_side:
            raise GankitError(f"{option('--side-by-side', True)} pairs images; a voice-conversion run writes WAV "
                              "files: drop it")
        return _convert_audio(model, name, inputs, Path(out_dir), n_iter=griffin_lim_iters, skip_existing=skip_existing)
    restoring = model.data.get("restoration") is not None
    if not restoring and (mask is not None or tile is not None or extend is not None or alpha is not None):
        raise GankitError(f"{option('--mask')}, {option('--tile')}, {option('--extend')} and {option('--alpha')} are "
                          "for restoration runs (super-resolution, inpainting, uncropping, colorization, labels2image)")
    if restoring:
        return _restore_files(model, inputs, Path(out_dir), side_by_side, mask, seed, tile, extend, alpha,
                              skip_existing)
    paths, x = read_images(inputs, shape[0], tuple(shape[1:]), half=side_by_side_half(model, tasks[name].source))
    targets = output_targets(paths, out_dir, ".png")
    todo = {t for _, t in pending(paths, targets, out_dir, skip_existing)}
    keep = [i for i, t in enumerate(targets) if t in todo]
    if not keep:
        return []
    x = x[keep]
    y = model.translate(x, name)
    written = []
    for i, target in enumerate(targets[j] for j in keep):
        if side_by_side:
            tiles, k = translation_columns(x[i:i + 1], y[i:i + 1])
            array = image_grid(tiles, nrow=k, padding=0)
        else:
            array = to_uint8(y[i]).permute(1, 2, 0).numpy()
        atomic_write_bytes(target, png_bytes(array))
        written.append(target)
    return written
