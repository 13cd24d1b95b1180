"""Projection: the latent that makes a trained generator reproduce a given image (GAN inversion by
optimisation).

The recipe is StyleGAN2's projector (Karras et al. 2020, "Analyzing and Improving the Image Quality
of StyleGAN", Sec. 5 and Appendix D), with gankit's domain network in place of LPIPS/VGG:

* the latent starts at the mean w of the mapping network (style generators; estimated from
  ``w_avg_samples`` draws) or at z = 0 (other generators), and is optimised with Adam
  (β = 0.9, 0.999) for ``steps`` steps;
* the learning rate ramps up over the first ``lr_rampup`` of the steps and down along a cosine over
  the last ``lr_rampdown``;
* Gaussian noise of std ``noise_factor · σ · max(0, 1 − t / noise_ramp)²`` is added to the latent
  at step fraction t (σ: the RMS distance of the latents from their mean), which helps it leave
  the start early on and vanishes after ``noise_ramp`` of the steps;
* loss (per image) = pixel MSE (on [-1, 1]; :func:`pixel_mse`) + ``feature_weight`` × the mean over the domain
  network's conv layers of the MSE between their pre-ReLU activations (:mod:`gankit.losses.perceptual`;
  skipped when no network is given) + ``noise_weight`` × the noise regulariser of
  :func:`noise_regularization` when the generator has noise maps (they are optimised too, and
  renormalised to zero mean and unit variance after every step).

Spaces: ``w`` (one w for every style index), ``w+`` (one w per style index, Abdal et al. 2019,
Image2StyleGAN) and ``z`` (the generator's input noise; the only one a non-style generator has).
"""
from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import provenance
from ..errors import GankitError, option

SPACES = ("w", "w+", "z")


def is_style_generator(G: nn.Module) -> bool:
    """Whether ``G`` follows the style-generator interface (mapping, synthesis, num_ws)."""
    return all(hasattr(G, a) for a in ("mapping", "synthesis", "num_ws"))


def latent_dims(G: nn.Module, z_dim: Optional[int] = None, num_classes: Optional[int] = None) -> tuple[int, int]:
    """(z_dim, num_classes) of ``G``: the values given, else its attributes (style generators have
    both; the noise-generator contract promises neither, so callers holding a :class:`gankit.GAN`
    pass ``cfg.model.z_dim`` and ``num_classes``); num_classes 0 when unknown (unconditional)."""
    z = z_dim if z_dim is not None else getattr(G, "z_dim", None)
    if z is None:
        raise GankitError(f"{type(G).__name__} does not say its z_dim; pass z_dim (the run's model.z_dim)")
    k = num_classes if num_classes is not None else getattr(G, "num_classes", 0)
    return int(z), int(k or 0)


def noise_maps(G: nn.Module) -> List[Tensor]:
    """The constant noise maps (1, 1, h, w) of a style generator; [] when it has none."""
    synthesis = getattr(G, "synthesis", None)
    if synthesis is None or not hasattr(synthesis, "noise_buffers"):
        return []
    return list(synthesis.noise_buffers())


def noise_regularization(maps: Sequence[Tensor], stop: int = 8) -> Tensor:
    """StyleGAN2's noise regulariser (Karras et al. 2020, Appendix D): for every map (1, 1, h, w) and
    each level of its pyramid (halved by 2×2 average pooling while the side is > ``stop``), the
    squared mean autocorrelation at a one-pixel shift along x plus the same along y (shifts wrap
    around). Zero when the maps look like white noise, so the noise cannot smuggle image content.
    A scalar; 0 for no maps."""
    total = maps[0].new_zeros(()) if len(maps) else torch.zeros(())
    for v in maps:
        n = v
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean() ** 2 + (n * torch.roll(n, 1, dims=2)).mean() ** 2
            if n.shape[2] <= stop:
                break
            n = F.avg_pool2d(n, 2)
    return total


@torch.no_grad()
def renormalize_noise(maps: Sequence[Tensor]) -> None:
    """Each map shifted and scaled in place to zero mean and unit variance (over its pixels)."""
    for v in maps:
        v -= v.mean()
        v *= v.square().mean().rsqrt()


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """PSNR in dB of images (N, C, H, W) in [-1, 1] (clamped to it, as a picture shows them), measured
    on the [0, 1] range (peak 1), per image (N,); 100 dB for identical images."""
    mse = ((x.float().clamp(-1, 1) - y.float().clamp(-1, 1)) / 2).square().flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def learning_rate(t: float, lr: float, rampup: float, rampdown: float) -> float:
    """The learning rate at step fraction ``t`` in [0, 1): linear ramp up over the first ``rampup``,
    cosine ramp down over the last ``rampdown`` (StyleGAN2's projector)."""
    down = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(down * math.pi)
    ramp *= min(1.0, t / rampup) if rampup > 0 else 1.0
    return lr * ramp


def default_space(G: nn.Module) -> str:
    return "w" if is_style_generator(G) else "z"


def check_space(G: nn.Module, space: Optional[str]) -> str:
    """``space`` (None: ``w`` for style generators, ``z`` for others), checked against ``G``."""
    space = default_space(G) if space is None else space
    if space not in SPACES:
        raise GankitError(f"{option('--space', space)}: choose one of {', '.join(SPACES)}")
    if space != "z" and not is_style_generator(G):
        raise GankitError(f"{option('--space', space)}: this generator has no style (W) space; use "
                          f"{option('--space', 'z')}")
    return space


def _labels(G: nn.Module, n: int, label: Optional[int], generator: torch.Generator) -> Optional[Tensor]:
    k = latent_dims(G)[1]
    if not k:
        return None
    if label is not None:
        return torch.full((n,), int(label), dtype=torch.long)
    return torch.randint(k, (n,), generator=generator)


@torch.no_grad()
def w_statistics(G: nn.Module, samples: int = 10_000, label: Optional[int] = None, seed: int = 0,
                 batch_size: int = 1000) -> tuple[Tensor, float]:
    """The mean w (w_dim,) of ``samples`` mapped z ~ N(0, I) (of class ``label``, or of random classes
    when None, for a conditional G) and σ = sqrt(mean ‖w − w̄‖²), the scale of the projector's noise."""
    g = torch.Generator().manual_seed(seed)
    dev = next(G.parameters()).device
    ws = []
    for i in range(0, samples, batch_size):
        m = min(batch_size, samples - i)
        z = torch.randn(m, G.z_dim, generator=g)
        y = _labels(G, m, label, g)
        ws.append(G.mapping(z.to(dev), None if y is None else y.to(dev)).float().cpu())
    w = torch.cat(ws)
    mean = w.mean(0)
    return mean, float((w - mean).square().sum(1).mean().sqrt())


def _render(G: nn.Module, latent: Tensor, space: str, y: Optional[Tensor]) -> Tensor:
    if space == "z":
        if is_style_generator(G):
            w = G.mapping(latent, y)
            return G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const")
        return G(latent, y)
    ws = latent.unsqueeze(1).expand(-1, G.num_ws, -1) if space == "w" else latent
    return G.synthesis(ws, noise_mode="const")


def pixel_mse(out: Tensor, target: Tensor) -> Tensor:
    """Per image (N,): the mean squared difference of ``out`` and ``target`` (N, C, H, W), except that a
    target pixel at the end of the range (−1 or 1: saturated, as a picture stores anything beyond it)
    counts as matched by any value at or beyond that end (a generator's linear output may overshoot)."""
    beyond = ((target >= 1) & (out >= 1)) | ((target <= -1) & (out <= -1))
    return torch.where(beyond, torch.zeros_like(out), out - target).square().flatten(1).mean(1)


def feature_distance(net: nn.Module, x: Tensor, target_acts: List[Tensor]) -> Tensor:
    """Per image (N,): the mean over the domain network's conv layers of the mean squared difference
    between the pre-ReLU activations of ``x`` and ``target_acts`` (computed by :func:`activations`)."""
    acts = activations(net, x)
    return torch.stack([(a - b).square().flatten(1).mean(1) for a, b in zip(acts, target_acts)]).mean(0)


def activations(net: nn.Module, x: Tensor) -> List[Tensor]:
    """The domain network's pre-ReLU conv activations of images ``x`` (N, C, H, W) in [-1, 1], after
    fitting them to the network's channels and size (differentiably: crop or bilinear resize)."""
    from ..losses.perceptual import conv_activations
    from ..metrics.extractor import fit_images

    arch = net.arch
    size = arch["size"] if isinstance(arch["size"], int) else tuple(arch["size"])
    return conv_activations(net, fit_images(x.float(), arch["in_channels"], size))


def project_tensor(G: nn.Module, target: Tensor, steps: int = 1000, space: Optional[str] = None, *,
                   label: Optional[int] = None, feature_net: Optional[nn.Module] = None,
                   feature_weight: float = 0.1, noise_weight: float = 1e5, optimize_noise: bool = True,
                   lr: float = 0.1, noise_factor: float = 0.05, noise_ramp: float = 0.75,
                   lr_rampup: float = 0.05, lr_rampdown: float = 0.25, w_avg_samples: int = 10_000,
                   seed: int = 0, batch_size: int = 16, record: Optional[dict] = None,
                   z_dim: Optional[int] = None, num_classes: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Project images ``target`` (N, C, H, W) in [-1, 1] into ``G``'s ``space`` (module docstring).

    Returns the latents — (N, w_dim) for ``w``, (N, num_ws, w_dim) for ``w+``, (N, z_dim) for ``z`` —,
    the reconstructions (N, C, H, W) in [-1, 1] rendered from them with the (optimised) constant noise,
    and the PSNR per image (N,) in dB on the [0, 1] range. ``G`` is left untouched (a copy is optimised).

    ``label``: the class of a conditional G (needed in ``z``; in ``w``/``w+`` it only picks the class
    whose mean w is the start; None = the mean over all classes). ``feature_net``: a
    :class:`~gankit.metrics.domain_net.DomainNet` for the feature term (None: pixels only).
    ``optimize_noise``: also fit the noise maps (with the regulariser); each image then gets its own
    maps and is projected alone, otherwise ``batch_size`` images go together (the latents of a batch
    are independent: the loss is a sum over images and Adam acts per element). ``seed`` fixes the
    w-statistics draws and the latent noise. ``record``: a dict filled with ``"loss"`` (N, steps), each
    image's loss at each step, and ``"noise"``, one list of optimised maps per image ([] without them).
    ``z_dim``, ``num_classes``: for generators that do not carry them (:func:`latent_dims`).
    """
    if steps < 1:
        raise GankitError(f"{option('--steps', steps)}: give at least one step")
    if target.ndim != 4:
        raise GankitError(f"projection needs images (N, C, H, W); got shape {tuple(target.shape)}")
    space = check_space(G, space)
    z_dim, classes = latent_dims(G, z_dim, num_classes)
    conditional = classes > 0
    if conditional and space == "z" and label is None:
        raise GankitError("this generator is conditional: give the class of the images "
                          f"({option('--class', param='label')}) to project into z")
    if label is not None and conditional and not 0 <= label < classes:
        raise GankitError(f"{option('--class', label, param='label')}: this model has classes 0..{classes - 1}")
    dev = next(G.parameters()).device
    G = copy.deepcopy(G).eval().requires_grad_(False)
    maps = noise_maps(G)
    originals = [m.detach().clone() for m in maps]
    fit_noise = optimize_noise and bool(maps)
    net = None
    if feature_net is not None:
        net = copy.deepcopy(feature_net).to(dev).eval().requires_grad_(False)

    if space == "z":
        start, sigma = torch.zeros(z_dim), math.sqrt(z_dim)  # E‖z − 0‖² = z_dim
    else:
        start, sigma = w_statistics(G, w_avg_samples, label, seed)
        if space == "w+":
            start = start.unsqueeze(0).expand(G.num_ws, -1)
    g = torch.Generator().manual_seed(seed)
    chunk = 1 if fit_noise else max(1, batch_size)
    latents, recons, losses, noises = [], [], [], []
    for i in range(0, len(target), chunk):
        x = target[i:i + chunk].to(dev).float()
        n = len(x)
        with torch.no_grad():
            for m, o in zip(maps, originals):  # every image starts from the model's own maps
                m.copy_(o)
        y = torch.full((n,), int(label), dtype=torch.long, device=dev) if conditional and label is not None else None
        latent = start.to(dev).unsqueeze(0).repeat(n, *([1] * start.ndim)).clone().requires_grad_(True)
        params = [latent]
        if fit_noise:
            for m in maps:
                m.requires_grad_(True)
            params += maps
        opt = torch.optim.Adam(params, betas=(0.9, 0.999), lr=lr)
        target_acts = [a.detach() for a in activations(net, x.clamp(-1, 1))] if net is not None else None
        history = torch.zeros(n, steps, device=dev)  # on the device: no sync per step
        for step in range(steps):
            t = step / steps
            for group in opt.param_groups:
                group["lr"] = learning_rate(t, lr, lr_rampup, lr_rampdown)
            scale = sigma * noise_factor * max(0.0, 1.0 - t / noise_ramp) ** 2
            jitter = torch.randn(latent.shape, generator=g).to(dev) * scale
            out = _render(G, latent + jitter, space, y).float()
            loss = pixel_mse(out, x)
            if net is not None:
                # the picture as shown: the feature network never saw values beyond the range
                loss = loss + feature_weight * feature_distance(net, out.clamp(-1, 1), target_acts)
            if fit_noise:
                loss = loss + noise_weight * noise_regularization(maps)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            if fit_noise:
                renormalize_noise(maps)
            history[:, step] = loss.detach()
        with torch.no_grad():
            final = latent.detach()
            recons.append(_render(G, final, space, y).float().clamp(-1, 1).cpu())
        latents.append(final.cpu())
        losses.append(history.cpu())
        noises += [[m.detach().cpu().clone() for m in maps] if fit_noise else [] for _ in range(n)]
        for m in maps:
            m.requires_grad_(False)
    latent, recon = torch.cat(latents), torch.cat(recons)
    if record is not None:
        record["loss"] = torch.cat(losses)
        record["noise"] = noises
    return latent, recon, psnr(recon, target.float().cpu())


FEATURE_CHOICES = ("auto", "domain", "none")


def feature_network(data_cfg, features: str = "auto") -> tuple[Optional[nn.Module], str]:
    """The domain network for the feature term of a run on ``data_cfg``'s dataset, and a line saying
    what the loss is. ``features``: ``auto`` uses the cached network when there is one (pixels only
    otherwise), ``domain`` trains and caches it when missing (:mod:`gankit.metrics.domain_net`),
    ``none`` uses pixels only."""
    from ..metrics.domain_net import DomainFeatures, domain_net_path

    if features not in FEATURE_CHOICES:
        raise GankitError(f"{option('--features', features)}: choose one of {', '.join(FEATURE_CHOICES)}")
    if features == "none":
        return None, "loss: pixel MSE only (--features none)"
    path = domain_net_path(data_cfg.name, data_cfg)
    if features == "auto" and not path.exists():
        return None, (f"loss: pixel MSE only: no domain network cached for {data_cfg.name} at {path} "
                      f"(gankit features train {data_cfg.name}, or {option('--features', 'domain')}, adds the feature term)")
    feats = DomainFeatures.for_dataset(data_cfg, train_if_missing=True, path=path)
    return feats.net, f"loss: pixel MSE + feature distance in the {feats.name} network"


def save_latent(path, latent: Tensor, space: str, noise: Sequence[Tensor] = (), **meta) -> None:
    """One image's latent as safetensors: tensor ``latent`` — (1, w_dim) for ``w``, (1, num_ws, w_dim) for
    ``w+``, (1, z_dim) for ``z`` — and the optimised noise maps ``noise.0``, ``noise.1``, … (1, 1, h, w)
    in ``synthesis.noise_buffers()`` order; metadata ``space``, ``psi`` ("1.0": the latent is not
    truncated) and ``meta`` (strings)."""
    from safetensors.torch import save

    from ..utils import atomic_write_bytes

    tensors = {"latent": latent.detach().float().cpu().contiguous()}
    tensors.update({f"noise.{i}": m.detach().float().cpu().contiguous() for i, m in enumerate(noise)})
    info = {"format": "gankit-latent", "space": space, "psi": "1.0", **{k: str(v) for k, v in meta.items()}}
    atomic_write_bytes(path, save(tensors, metadata=info))


def load_latent(path) -> tuple[Tensor, str, List[Tensor], dict]:
    """(latent, space, noise maps, metadata) of a file :func:`save_latent` wrote; one line if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise GankitError(f"{path}: cannot read the latent ({type(e).__name__}: {e})") from None
    if meta.get("format") != "gankit-latent" or "latent" not in tensors:
        raise GankitError(f"{path}: not a latent written by gankit project")
    noise = [tensors[f"noise.{i}"] for i in range(sum(k.startswith("noise.") for k in tensors))]
    return tensors["latent"], meta["space"], noise, meta


#: the names ``project`` gives its outputs: NAME + each suffix
OUTPUT_SUFFIXES = ("-projected.png", "-latent.safetensors", "-side-by-side.png")


def projection_inputs(inputs, out_dir) -> list:
    """The image files to project: ``inputs`` (files, or folders searched recursively) less the files a
    folder holds inside ``out_dir`` under an output name of :data:`OUTPUT_SUFFIXES` — earlier outputs of
    ``project`` into a folder inside the input folder are never projected again (a file named
    explicitly is always taken)."""
    from ..api import INPUT_KINDS, expand_inputs, list_input_images

    out = Path(out_dir).expanduser().resolve()
    paths = []
    for item in inputs:
        found = expand_inputs([item], list_input_images, f"{INPUT_KINDS} images")
        if Path(item).expanduser().is_dir():
            found = [p for p in found if not (p.resolve().parent == out and p.name.endswith(OUTPUT_SUFFIXES))]
            if not found:
                raise GankitError(f"{item}: no images to project in this folder other than earlier outputs of "
                                  f"gankit project in {out_dir}")
        paths += found
    return paths


def output_files(paths: list, out_dir) -> List[List[Path]]:
    """The three outputs of each input (``out_dir/NAME`` + :data:`OUTPUT_SUFFIXES`), checked before any
    work: ``out_dir`` must be a folder (not an existing file, nor a name with a file suffix such as
    ``x.png``), and an existing output is replaced only when gankit wrote it
    (:func:`gankit.api.check_replaceable`). One line otherwise."""
    from ..api import _FILE_SUFFIXES, check_replaceable, unique_stems

    out = Path(out_dir).expanduser()
    flag = option("-o", out, param="out_dir")
    if out.exists() and not out.is_dir():
        raise GankitError(f"{flag}: a file, not a folder; gankit project writes three files per image "
                          "into a folder: give a folder")
    if out.suffix.lower() in _FILE_SUFFIXES | {".safetensors", ".json"}:
        raise GankitError(f"{flag}: a file name; gankit project writes three files per image into a folder: "
                          "give a folder")
    files = [[out / f"{stem}{suffix}" for suffix in OUTPUT_SUFFIXES] for stem in unique_stems(paths)]
    for f in (f for group in files for f in group):
        check_replaceable(f)
    return files


def project_files(model, inputs, out_dir, steps: int = 1000, space: Optional[str] = None, seed: int = 0,
                  label: Optional[int] = None, features: str = "auto", log=None, **options) -> List[dict]:
    """Project image files (or folders) with a loaded :class:`gankit.GAN`; for each image NAME writes
    ``out_dir/NAME-projected.png`` (the reconstruction), ``NAME-latent.safetensors`` (:func:`save_latent`)
    and ``NAME-side-by-side.png`` (target | reconstruction). Returns one dict per image: ``name``,
    ``psnr`` (dB), ``files``. ``log``: receives the line saying what the loss is (None: not shown).
    ``options``: passed to :func:`project_tensor`. Every input and output location is checked before
    the optimisation starts (:func:`projection_inputs`, :func:`output_files`)."""
    from ..api import read_images
    from ..data.base import to_uint8
    from ..utils import atomic_write_bytes, sha256_file
    from ..viz.grids import image_grid, png_bytes

    model.require_generation()
    if model.info.kind != "image":
        raise GankitError(f"projection needs an image generator; this model makes {model.info.kind} samples")
    label = model.class_index(label)
    G = model.G
    space = check_space(G, space)
    c, h, w = model.info.sample_shape
    paths = projection_inputs(inputs, out_dir)
    targets = output_files(paths, out_dir)
    paths, x = read_images(paths, c, (h, w), purpose="project")
    net, note = feature_network(model.cfg.data, features)
    if log is not None:
        log(note)
    record: dict = {}
    latent, recon, values = project_tensor(G, x, steps, space, label=label, feature_net=net, seed=seed,
                                           record=record, z_dim=model.cfg.model.z_dim,
                                           num_classes=model.num_classes, **options)
    ckpt = getattr(model, "checkpoint_path", None)
    source = {"run": Path(model.run_dir).name if getattr(model, "run_dir", None) else "",
              "checkpoint": Path(ckpt).name if ckpt else "",
              "checkpoint_sha256": sha256_file(ckpt) if ckpt and Path(ckpt).is_file() else ""}
    Path(out_dir).expanduser().mkdir(parents=True, exist_ok=True)
    results = []
    for i, (p, files) in enumerate(zip(paths, targets)):
        atomic_write_bytes(files[0], png_bytes(to_uint8(recon[i]).permute(1, 2, 0).numpy()))
        save_latent(files[1], latent[i:i + 1], space, record["noise"][i], image=p.name, steps=steps, seed=seed,
                    psnr=f"{values[i].item():.3f}", label="" if label is None else label,
                    step=model.step, recipe=model.cfg.name, **source, provenance=provenance.to_json())
        atomic_write_bytes(files[2], png_bytes(image_grid(torch.stack([x[i], recon[i]]), nrow=2, padding=0)))
        results.append({"name": p.name, "psnr": values[i].item(), "files": files})
    return results


# -- a projected latent, used again (gankit sample / edit --latent) ------------------------------

@dataclass(frozen=True)
class Projected:
    """A latent ``gankit project`` wrote, checked against the model that will render it."""
    path: Path
    latent: Tensor         # (1, w_dim) for w, (1, num_ws, w_dim) for w+, (1, z_dim) for z
    space: str
    noise: List[Tensor]    # the optimised noise maps, in synthesis.noise_buffers() order ([] if none)
    label: Optional[int]   # the class it was projected with (a conditional model), else None
    meta: dict


def read_projected(model, path, flag: str = "--latent", param: str = "latent") -> Projected:
    """The latent file ``path`` (:func:`save_latent`) for a loaded :class:`gankit.GAN`. It must come from
    this very checkpoint (its recorded SHA-256 equals that of the file the model was loaded from) and fit
    the generator's shapes; anything else is one line naming the file (a missing one as the option
    ``flag`` / keyword ``param`` that gave it)."""
    from ..utils import sha256_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise GankitError(f"{option(flag, path, param=param)}: no such file")
    latent, space, noise, meta = load_latent(path)
    recorded = meta.get("checkpoint_sha256") or ""
    ckpt = getattr(model, "checkpoint_path", None)
    here = sha256_file(ckpt) if ckpt and Path(ckpt).is_file() else None
    if not recorded:
        raise GankitError(f"{path}: the latent records no checkpoint (an older gankit project wrote it); project "
                          "the image again with this model")
    if recorded != here:
        run = Path(model.run_dir).name if getattr(model, "run_dir", None) else "?"
        raise GankitError(f"{path}: projected with {meta.get('run') or '?'}'s {meta.get('checkpoint') or '?'} "
                          f"(step {meta.get('step', '?')}), not this model ({run}'s "
                          f"{Path(ckpt).name if ckpt else '?'}, step {model.step}); use that checkpoint, or "
                          "project the image again")
    G = model.G
    style = is_style_generator(G)
    if space == "z":
        shape = (1, model.cfg.model.z_dim)
    elif style:
        shape = (1, G.w_dim) if space == "w" else (1, G.num_ws, G.w_dim)
    else:
        shape = None
    maps = noise_maps(G)
    if shape is None or tuple(latent.shape) != shape or (noise and [tuple(m.shape) for m in noise]
                                                         != [tuple(m.shape) for m in maps]):
        raise GankitError(f"{path}: a {space} latent of shape {tuple(latent.shape)} does not fit this generator")
    label = int(meta["label"]) if meta.get("label", "") != "" else None
    if model.num_classes and label is None and space == "z":
        raise GankitError(f"{path}: a z latent of a conditional model without its class; project it again")
    return Projected(path, latent.float(), space, [m.float() for m in noise], label, meta)


@contextmanager
def noise_of(G: nn.Module, noise: Sequence[Tensor]):
    """Within the block, ``G``'s constant noise maps are ``noise`` (none given: unchanged); restored after."""
    maps = noise_maps(G)
    saved = [m.detach().clone() for m in maps]
    try:
        with torch.no_grad():
            for m, v in zip(maps, noise):
                m.copy_(v.to(m.device, m.dtype))
        yield
    finally:
        with torch.no_grad():
            for m, v in zip(maps, saved):
                m.copy_(v)


def projected_start(G: nn.Module, p: Projected) -> Tensor:
    """What an edit moves: ws (1, num_ws, w_dim) of a style G (a z latent mapped with its class), or z
    (1, z_dim) of another G; on G's device."""
    dev = next(G.parameters()).device
    latent = p.latent.to(dev)
    if not is_style_generator(G):
        return latent
    if p.space == "z":
        y = None if p.label is None else torch.tensor([p.label], device=dev)
        latent = G.mapping(latent, y)
    return latent.unsqueeze(1).expand(-1, G.num_ws, -1) if latent.ndim == 2 else latent


@torch.no_grad()
def render_projected(G: nn.Module, p: Projected) -> Tensor:
    """The image (1, C, H, W) in [-1, 1], on the CPU, that ``project`` saved as NAME-projected.png:
    the latent rendered with its own noise maps (constant noise), as the projector rendered it."""
    was = G.training
    G.eval()
    try:
        dev = next(G.parameters()).device
        y = None if p.label is None else torch.tensor([p.label], device=dev)
        with noise_of(G, p.noise):
            return _render(G, p.latent.to(dev), p.space, y).float().clamp(-1, 1).cpu()
    finally:
        G.train(was)


# -- on a run folder (the API and the CLI) --------------------------------------------------

@provenance.scoped
def sample_latent(run_dir: str | Path, latent: str | Path, out: str | Path = "projected.png", which: str = "latest",
                  watermark: Optional[str] = None) -> Path:
    """Write the image a latent of :func:`project` renders — the projected image, with its own noise maps
    and class — to ``out`` (``.png`` or ``.npz``), as ``gankit sample RUN --latent FILE`` does. The latent
    must come from this run's checkpoint ``which`` (:func:`read_projected`); an existing ``out`` is replaced
    only when gankit wrote it. ``watermark``: a key, as for :func:`gankit.sample`."""
    from ..api import check_replaceable, load, write_samples
    from ..watermark import METHOD, embed

    model = load(run_dir, which=which)
    model.require_generation()
    out = Path(out)
    if out.suffix not in (".png", ".npz"):
        raise GankitError(f"{option('-o', out, param='out')}: the output must end in .png (a picture) or .npz "
                          "(arrays)")
    check_replaceable(out)
    projected = read_projected(model, latent)
    provenance.update_from_model(model, "gankit.sample", label=projected.label, latent=Path(latent).name,
                                 watermark=METHOD if watermark is not None else None)
    x = render_projected(model.G, projected)
    y = None if projected.label is None else torch.tensor([projected.label])
    write_samples(model, embed(x, watermark) if watermark is not None else x, y, out)
    return out


@provenance.scoped
def project(run_dir: str | Path, images, out_dir: str | Path, steps: int = 1000, space: Optional[str] = None,
            seed: int = 0, label: Optional[int] = None, features: str = "auto", which: str = "latest",
            **options) -> list:
    """Project image files or folders into a trained generator's latent space (StyleGAN2's projector,
    :mod:`gankit.steer.projection`): ``space`` ``w``, ``w+`` (style generators; ``w`` by default) or
    ``z`` (the default otherwise), ``steps`` Adam steps per image, ``label`` the class for a
    conditional model, ``features`` ``auto``/``domain``/``none`` (the domain-network term of the
    loss; see :func:`~gankit.steer.projection.feature_network`). Writes NAME-projected.png,
    NAME-latent.safetensors and NAME-side-by-side.png per image in ``out_dir``; returns one dict per
    image (``name``, ``psnr`` in dB on [0, 1], ``files``). ``options`` go to
    :func:`~gankit.steer.projection.project_tensor`. The line saying what the loss is goes to stderr."""
    import sys

    from ..api import load

    model = load(run_dir, which=which)
    provenance.update_from_model(model, "gankit.project", seed=seed, space=check_space(model.G, space),
                                 steps=steps, label=model.class_index(label))
    if isinstance(images, (str, Path)):
        images = [images]
    return project_files(model, images, out_dir, steps=steps, space=space, seed=seed, label=label,
                         features=features, log=lambda s: print(s, file=sys.stderr), **options)
