"""Directions in a generator's latent space along which images change in one way, and edit strips.

* ``sefa:I`` — closed-form factorisation (SeFa, Shen & Zhou 2021, "Closed-Form Factorization of
  Latent Semantics in GANs", Eq. 5): a style generator turns w into the style of its first layer by
  an affine map y = A w + b, so moving w by n·d moves the style by n·A d. The unit directions that
  move it most are the eigenvectors of AᵀA with the largest eigenvalues (λ = ‖A d‖²); ``sefa:0`` is
  the largest. A is the first style affine's weight as applied (the stored weight times its
  equalized-LR scale), (style_dim, w_dim). ``sefa-all:I`` stacks the weights of every style affine
  (the paper's "all layers" variant), so it ranks directions by how much they move all styles.
  Unit norm in W; only the first rank(A) = min(rows, w_dim) are offered (the rest have λ = 0).
* ``class:A-B`` — the difference of class means, a linear direction in the style of InterFaceGAN
  (Shen et al. 2020) without its SVM: mean w of class B minus mean w of class A. A conditional style G
  maps the same ``n`` z with label A and with label B; an unconditional one maps ``n`` z, renders
  them and lets a classifier (the dataset's domain network, :mod:`gankit.metrics.domain_net`) sort
  them. Not normalised: strength 1 moves a latent by the distance between the two class means.
* Generators without a style space get class directions in z the same way (classified samples);
  SeFa is not defined for them.

An edit strip renders ``n`` latents (rows) moved by each of several strengths s (columns):
w + s·d (or z + s·d) with the generator's constant noise, so strength 0 is the unedited image.
Truncation ψ follows ``gankit sample`` (:mod:`gankit.latent`): a style G's w is pulled toward its mean
before editing, any other G's z is resampled inside BigGAN's τ(ψ). Images are clamped to [-1, 1], as
samples are.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import provenance
from ..errors import GankitError, option
from .projection import is_style_generator, latent_dims

Classifier = Callable[[Tensor], Tensor]   # images (N, C, H, W) in [-1, 1] -> class labels (N,) int64


@dataclass(frozen=True)
class Direction:
    name: str        # "sefa:0", "sefa-all:2", "class:3-5"
    space: str       # "w" (style generators) or "z"
    vector: Tensor   # (w_dim,) or (z_dim,), float32 on the CPU
    note: str        # how it was made, for listings (eigenvalue, sample counts)


def affine_matrix(G: nn.Module, all_layers: bool = False) -> Tensor:
    """A: the first style affine's weight as applied, (style_dim, w_dim) float64; with ``all_layers``
    every affine's, stacked row-wise (Σ style_dim, w_dim)."""
    affines = list(G.affines()) if is_style_generator(G) and hasattr(G, "affines") else []
    if not affines:
        raise GankitError("SeFa needs a style generator (arch stylegan or stylegan2); "
                          "this model's directions are class:A-B in z")
    used = affines if all_layers else affines[:1]
    return torch.cat([a.weight.detach().double().cpu() * float(getattr(a, "scale", 1.0)) for a in used])


def sefa(G: nn.Module, k: Optional[int] = None, all_layers: bool = False) -> tuple[Tensor, Tensor]:
    """The top ``k`` (None: all rank(A)) SeFa directions (k, w_dim) float32, unit norm, and their
    eigenvalues (k,) of AᵀA in descending order (module docstring). The sign of each eigenvector is
    fixed so that its largest-magnitude component is positive (eigenvectors are defined up to sign)."""
    A = affine_matrix(G, all_layers)
    rank = min(A.shape)
    k = rank if k is None else k
    if not 0 < k <= rank:
        raise GankitError(f"SeFa: {k} directions asked; this generator has {rank} (rank of its style affine)")
    values, vectors = torch.linalg.eigh(A.T @ A)          # ascending; columns are eigenvectors
    order = values.argsort(descending=True)[:k]
    values, vectors = values[order], vectors[:, order].T   # (k, w_dim)
    peak = vectors.gather(1, vectors.abs().argmax(1, keepdim=True))
    vectors = vectors * torch.sign(peak)
    return vectors.float(), values.float()


#: a class direction whose estimated sampling error is more than this share of its length gets a note
NOISY_DIRECTION = 0.25


def sampling_error(groups: Sequence[Tensor]) -> float:
    """The expected norm of the error of a sum (or difference) of the means of ``groups`` (each (k, d),
    independent samples): sqrt(Σ_groups tr(Cov)/k). A group of one sample has no spread to estimate:
    infinite."""
    total = 0.0
    for x in groups:
        if len(x) < 2:
            return float("inf")
        total += float(x.var(0, unbiased=True).sum()) / len(x)
    return total ** 0.5


def note_noisy(name: str, d: Tensor, groups: Sequence[Tensor]) -> None:
    """A note on stderr when the direction ``d``, estimated from ``groups``' means, is mostly sampling
    noise: its expected error (:func:`sampling_error`) over :data:`NOISY_DIRECTION` of its length."""
    import sys

    err, length = sampling_error(groups), float(d.norm())
    if err <= NOISY_DIRECTION * length:
        return
    sizes = " and ".join(str(len(x)) for x in groups)
    ratio = "unknown (one sample)" if err == float("inf") else f"about {err / max(length, 1e-12):.0%} of its length"
    print(f"note: {name}: estimated from {sizes} sample(s); its sampling error is {ratio}, so the edit follows "
          f"noise as much as the class: draw more ({option('--samples')})", file=sys.stderr)


@torch.no_grad()
def class_direction(G: nn.Module, a: int, b: int, n: int = 1000, seed: int = 0,
                    classify: Optional[Classifier] = None, batch_size: int = 250,
                    z_dim: Optional[int] = None, num_classes: Optional[int] = None) -> Direction:
    """``class:a-b``: mean latent of class ``b`` minus mean latent of class ``a`` (module docstring).

    A conditional style G maps the same ``n`` z ~ N(0, I) (seeded) with each label, so the
    difference is the mean of mapping(z, b) − mapping(z, a). Otherwise ``classify`` labels ``n``
    rendered samples (constant noise) and the means are over the latents — w for a style G, z for
    others — of the samples it put in each class; fails when it put none in ``a`` or ``b``.
    ``z_dim``, ``num_classes``: of a G that does not carry them (:func:`~.projection.latent_dims`).
    """
    if a == b:
        raise GankitError(f"class:{a}-{b}: give two different classes")
    if n < 1:
        raise GankitError(f"{option('--samples', n)}: a class direction averages latents; give at least 1")
    style = is_style_generator(G)
    z_dim, classes = latent_dims(G, z_dim, num_classes)
    conditional = classes > 0
    dev = next(G.parameters()).device
    name = f"class:{a}-{b}"
    g = torch.Generator().manual_seed(seed)
    was = G.training
    G.eval()
    try:
        if conditional:
            if not style:
                raise GankitError(f"{name}: this conditional generator takes its class as a label, not a "
                                  "direction in z; sample a class with gankit sample --class")
            for c in (a, b):
                if not 0 <= c < classes:
                    raise GankitError(f"{name}: this model has classes 0..{classes - 1}")
            diffs = []
            for i in range(0, n, batch_size):
                z = torch.randn(min(batch_size, n - i), z_dim, generator=g).to(dev)
                ya, yb = (torch.full((len(z),), c, dtype=torch.long, device=dev) for c in (a, b))
                diffs.append((G.mapping(z, yb) - G.mapping(z, ya)).double().cpu())
            diff = torch.cat(diffs)
            d = diff.mean(0)
            note_noisy(name, d, [diff])
            return Direction(name, "w", d.float(), f"difference of class means over {n} paired samples")
        if classify is None:
            raise GankitError(f"{name}: this model is unconditional; class directions need a classifier "
                              "of its images (the dataset's domain network)")
        latents, labels = [], []
        for i in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - i), z_dim, generator=g).to(dev)
            if style:
                w = G.mapping(z, None)
                x = G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const")
                latents.append(w.double().cpu())
            else:
                x = G(z, None)
                latents.append(z.double().cpu())
            labels.append(torch.as_tensor(classify(x.float())).cpu())
        lat, lab = torch.cat(latents), torch.cat(labels)
        counts = {c: int((lab == c).sum()) for c in (a, b)}
        missing = [str(c) for c, k in counts.items() if k == 0]
        if missing:
            raise GankitError(f"{name}: none of {n} samples was classified as class {' or '.join(missing)}; "
                              "draw more samples (--samples) or pick other classes")
        d = lat[lab == b].mean(0) - lat[lab == a].mean(0)
        note_noisy(name, d, [lat[lab == a], lat[lab == b]])
        return Direction(name, "w" if style else "z", d.float(),
                         f"difference of class means ({counts[a]} samples of {a}, {counts[b]} of {b}, of {n})")
    finally:
        G.train(was)


#: why a conditional generator without a style space offers no direction, and what to use instead
NO_DIRECTIONS = ("no latent directions to edit along: SeFa needs a style generator, and a conditional generator's "
                 "classes are labels, not directions in z; sample a class with gankit sample --class (or walk "
                 "its latent space with gankit sample --interpolate)")

_NAME = re.compile(r"^(sefa|sefa-all):(\d+)$|^class:(\d+)-(\d+)$")


def available(G: nn.Module, classifier_classes: Optional[int] = None, num_classes: Optional[int] = None) -> List[str]:
    """The direction names ``G`` offers, as patterns: ``sefa:0..sefa:K-1`` (style generators),
    ``sefa-all:0..``, and ``class:A-B`` with the class range: a conditional G's own classes, else
    ``classifier_classes``, those of the classifier sorting an unconditional G's samples (None:
    unknown until it is loaded). ``num_classes``: G's classes when G does not carry them."""
    out = []
    if is_style_generator(G) and hasattr(G, "affines"):
        for prefix, every in (("sefa", False), ("sefa-all", True)):
            k = min(affine_matrix(G, every).shape)
            out.append(f"{prefix}:0..{prefix}:{k - 1}")
    classes = latent_dims(G, 0, num_classes)[1]
    if classes and not is_style_generator(G):
        return out
    k = classes or classifier_classes
    out.append(f"class:A-B (A ≠ B in 0..{k - 1})" if k else "class:A-B (classes of the dataset's domain network)")
    return out


def resolve(G: nn.Module, name: str, n: int = 1000, seed: int = 0, classify: Optional[Classifier] = None,
            classifier_classes: Optional[int] = None, z_dim: Optional[int] = None,
            num_classes: Optional[int] = None) -> Direction:
    """The direction called ``name`` (see :func:`available`); an unknown name fails listing the valid ones.
    ``n``, ``seed``, ``classify``, ``z_dim``, ``num_classes``: as for :func:`class_direction`."""
    m = _NAME.match(name.strip())
    valid = ", ".join(available(G, classifier_classes, num_classes)) or NO_DIRECTIONS
    if m is None:
        raise GankitError(f"{option('--direction', name)}: unknown; this model offers {valid}")
    if m.group(1) and not is_style_generator(G):
        offers = (f"; this model offers {valid}" if valid != NO_DIRECTIONS else
                  ", and this conditional generator's classes are labels, not directions in z: it has no "
                  "directions; sample a class with gankit sample --class (or walk its latent space with gankit "
                  "sample --interpolate)")
        raise GankitError(f"{option('--direction', name)}: SeFa needs a style generator (arch stylegan or "
                          f"stylegan2){offers}")
    if m.group(1):
        every = m.group(1) == "sefa-all"
        index = int(m.group(2))
        k = min(affine_matrix(G, every).shape)
        if index >= k:
            raise GankitError(f"{option('--direction', name)}: unknown; this model offers {valid}")
        vectors, values = sefa(G, index + 1, every)
        return Direction(name, "w", vectors[index], f"eigenvalue {values[index].item():.4g} of AᵀA")
    a, b = int(m.group(3)), int(m.group(4))
    k = latent_dims(G, 0, num_classes)[1] or classifier_classes
    if k and not (a < k and b < k):
        raise GankitError(f"{option('--direction', name)}: unknown; this model offers {valid}")
    return class_direction(G, a, b, n=n, seed=seed, classify=classify, z_dim=z_dim, num_classes=num_classes)


def check_strengths(values: Sequence[float], shown=None) -> List[float]:
    """``values`` as floats when every one is finite, else one GankitError line naming the strength
    option (``shown``: the value the user gave, default the first bad one). A NaN strength would
    blank every column, the unedited one too (NaN · 0 = NaN)."""
    import math

    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise GankitError(f"{option('--strength', v, param='strengths')}: not a number") from None
        if not math.isfinite(f):
            raise GankitError(f"{option('--strength', v if shown is None else shown, param='strengths')}: give a "
                              "finite strength (e.g. 3)")
        out.append(f)
    return out


def strengths_between(strength: float, steps: int) -> List[float]:
    """``steps`` strengths evenly from −``strength`` to +``strength``, each rounded to 12 significant
    digits (so 1/3 steps of 3 give exactly ±1.0, the value shown, stored and rendered); with an odd
    count the middle one is exactly 0. A strength that is not finite fails in one line."""
    (strength,) = check_strengths([strength])
    if steps < 1:
        raise GankitError(f"{option('--steps', steps)}: give at least one column")
    if steps == 1:
        return [0.0]
    return [float(f"{strength * (2 * i / (steps - 1) - 1):.12g}") + 0.0 for i in range(steps)]


@torch.no_grad()
def render_edit(G: nn.Module, direction: Direction, strengths: Sequence[float], n: int = 4, seed: int = 0,
                label: Optional[int] = None, psi: float = 1.0, layers: Optional[Sequence[int]] = None,
                z_dim: Optional[int] = None, num_classes: Optional[int] = None, start=None) -> Tensor:
    """Images (n · len(strengths), C, H, W) in [-1, 1], row-major: row i is latent i (z ~ N(0, I) from
    ``seed``) moved by each strength. Style G: w = mapping(z, y) (truncated by ``psi`` towards the mean
    w), edited on the style indices in ``layers`` (None: all) and rendered with the constant noise;
    other G: G(z + s·d, y). ``label``: the class of a conditional G (None: rows cycle through them).
    ``z_dim``, ``num_classes``: of a G that does not carry them (:func:`~.projection.latent_dims`).
    ``psi``: truncation ψ by :func:`gankit.latent.check_psi` (a style G also takes 0); a G without a
    style space resamples z inside BigGAN's τ(ψ), as ``gankit sample --truncation`` does. Images are
    clamped to [-1, 1] when G's output is linear (as :meth:`gankit.tasks.GenerationTask.generate` does).
    ``start``: a :class:`~.projection.Projected` latent (``gankit project``) edited instead of drawn
    ones: one row, its class, rendered with its own noise maps (strength 0 is the projected image)."""
    from ..latent import check_psi, psi_to_tau, resample_outside
    from .projection import noise_of, projected_start

    style = is_style_generator(G)
    psi = check_psi(psi, style)
    strengths = check_strengths(strengths)
    if (direction.space == "w") != style:
        raise GankitError(f"{direction.name}: a direction in {direction.space}, but this generator's latents are "
                          f"{'w' if style else 'z'}")
    if start is not None and psi != 1:
        raise GankitError(f"{option('--latent', start.path)} is edited as projected: drop {option('--truncation')}")
    dev = next(G.parameters()).device
    g = torch.Generator().manual_seed(seed)
    z_dim, k = latent_dims(G, z_dim, num_classes)
    if start is not None:
        n, label = 1, start.label
    z = torch.randn(n, z_dim, generator=g)
    if psi != 1 and not style:  # the rule GenerationTask.draw applies: the same z as gankit sample at ψ
        z = resample_outside(z, psi_to_tau(psi), g)
    z = z.to(dev)
    y = None
    if k:
        y = (torch.full((n,), int(label), dtype=torch.long) if label is not None else torch.arange(n) % k).to(dev)
    d = direction.vector.to(dev)
    was = G.training
    G.eval()
    try:
        rows = []
        if start is not None and not style:
            z = projected_start(G, start)
        if style:
            if start is not None:
                ws = projected_start(G, start)                                 # (1, num_ws, w_dim)
            else:
                w = G.mapping(z, y)
                if psi != 1.0:
                    w = G.truncate(w, psi, None, y)  # a conditional G: toward each row's class mean
                ws = w.unsqueeze(1).expand(-1, G.num_ws, -1)                 # (n, num_ws, w_dim)
            mask = torch.zeros(G.num_ws, 1, device=dev)
            mask[list(range(G.num_ws)) if layers is None else list(layers)] = 1.0
            with noise_of(G, start.noise if start is not None else ()):
                for i in range(n):
                    edited = torch.stack([ws[i] + float(s) * mask * d for s in strengths])
                    rows.append(G.synthesis(edited, noise_mode="const"))
        else:
            for i in range(n):
                edited = torch.stack([z[i] + float(s) * d for s in strengths])
                yi = None if y is None else y[i].expand(len(strengths))
                rows.append(G(edited, yi))
        x = torch.cat(rows).float().cpu()
        return x.clamp_(-1, 1) if getattr(G, "linear_output", False) else x
    finally:
        G.train(was)


def model_classifier(model) -> tuple[Optional[Classifier], Optional[int]]:
    """For an unconditional model: a classifier of its images — argmax of the dataset's domain
    network (:mod:`gankit.metrics.domain_net`, trained and cached once when missing) — and its class
    count; (None, classes) for a conditional model, which needs none."""
    from ..metrics.domain_net import DomainFeatures

    if model.num_classes:
        return None, model.num_classes
    feats = DomainFeatures.for_dataset(model.cfg.data)
    if not feats.num_classes:
        raise GankitError(f"class directions: dataset {model.cfg.data.name!r} has no labels (its domain network "
                          "predicts rotations), so there are no classes to move between; use sefa:I")

    def classify(x: Tensor) -> Tensor:
        net = feats.net.to(x.device)
        return net(feats.prepare(x))[1].argmax(1)

    return classify, feats.num_classes


def model_directions(model) -> List[str]:
    """:func:`available` for a loaded :class:`gankit.GAN`, with the class range of a cached domain
    network of an unconditional model's dataset when there is one (none is trained to list)."""
    model.require_generation()
    if model.num_classes and not is_style_generator(model.G):
        raise GankitError(f"this conditional {type(model.G).__name__} has {NO_DIRECTIONS}")
    k = model.num_classes or _cached_classifier_classes(model)
    return available(model.G, k, model.num_classes)


def _cached_classifier_classes(model) -> Optional[int]:
    """The classes of the cached domain network of an unconditional model's dataset; None when there
    is none cached (none is trained to name them) or it predicts a pretext task."""
    from ..metrics.domain_net import domain_net_path, load_domain_net

    path = domain_net_path(model.cfg.data.name, model.cfg.data)
    if not path.exists():
        return None
    _, meta = load_domain_net(path)
    return None if meta.get("pretext") else int(meta["arch"]["num_classes"])


def edit_strip(model, direction: str, strengths: Sequence[float], out, n: int = 4, seed: int = 0,
               label: Optional[int] = None, psi: float = 1.0, samples: int = 1000,
               start=None) -> tuple[Tensor, Direction]:
    """Write the edit strip of a loaded :class:`gankit.GAN` to ``out`` (PNG): ``n`` rows (latents from
    ``seed``) × one column per strength, tiles without padding, so the picture is (n·H, len·W).
    ``samples``: latents drawn to estimate a class direction. ``start``: a projected latent
    (:func:`~.projection.read_projected`), edited as the one row. An existing ``out`` is replaced only
    when gankit wrote it. Returns the images (row-major) and the direction."""
    from pathlib import Path

    from ..api import check_replaceable
    from ..utils import atomic_write_bytes
    from ..viz.grids import image_grid, png_bytes

    from ..latent import check_psi

    model.require_generation()
    check_psi(psi, is_style_generator(model.G))  # before a class direction is estimated
    strengths = check_strengths(strengths)
    if samples < 1:
        raise GankitError(f"{option('--samples', samples)}: a class direction averages latents; give at least 1")
    if model.info.kind != "image":
        raise GankitError(f"edit strips need an image generator; this model makes {model.info.kind} samples")
    label = model.class_index(label)
    if n < 1:
        raise GankitError(f"-n {n}: give at least one row")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise GankitError(f"{option('-o', out, param='out')}: the strip is a picture; give a .png path")
    check_replaceable(out)
    G = model.G
    classify, k = None, None
    if direction.strip().startswith("class:") and not model.num_classes:
        classify, k = model_classifier(model)
    elif not model.num_classes:
        k = _cached_classifier_classes(model)  # named in a refusal as --list names it
    dims = dict(z_dim=model.cfg.model.z_dim, num_classes=model.num_classes)
    d = resolve(G, direction, n=samples, seed=seed, classify=classify, classifier_classes=k, **dims)
    x = render_edit(G, d, strengths, n=n, seed=seed, label=label, psi=psi, start=start, **dims)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, png_bytes(image_grid(x, nrow=len(strengths), padding=0)))
    return x, d


# -- on a run folder (the API and the CLI) --------------------------------------------------

@provenance.scoped
def edit(run_dir: str | Path, direction: str, strengths=3.0, seed: int = 0, n: int = 4,
         out: str | Path = "edit.png", steps: int = 7, label: Optional[int] = None, psi: float = 1.0,
         samples: int = 1000, which: str = "latest", latent: Optional[str | Path] = None):
    """Write an edit strip of a trained generator (:mod:`gankit.steer.directions`): ``n`` rows of latents
    from ``seed``, moved along ``direction`` (``sefa:I``, ``sefa-all:I``, ``class:A-B``) by each strength
    — ``strengths`` a number S gives ``steps`` strengths from −S to +S (0 in the middle for odd
    ``steps``), a sequence gives those — one column each. ``psi``: truncation ψ as ``gankit sample``
    takes it (:func:`render_edit`). ``samples``: latents drawn to estimate a class direction.
    ``latent``: a NAME-latent.safetensors of ``gankit project`` for this checkpoint, edited as the one
    row (its class and noise maps from the file). Returns (images (n·columns, C, H, W) row-major, the
    Direction). A strength that is not finite fails in one line."""
    from ..api import load
    from .projection import read_projected

    model = load(run_dir, which=which)
    values = strengths_between(strengths, steps) if isinstance(strengths, (int, float)) else \
        check_strengths(strengths)
    start = None
    if latent is not None:
        if label is not None:
            raise GankitError(f"{option('--latent', latent)} carries its class: drop {option('--class', param='label')}")
        model.require_generation()
        start = read_projected(model, latent)
        n = 1
    index = start.label if start is not None else model.class_index(label)
    provenance.update_from_model(model, "gankit.edit", seed=seed if start is None else None, direction=direction,
                                 strengths=values, truncation=psi if psi != 1 else None, label=index,
                                 latent=None if start is None else start.path.name)
    return edit_strip(model, direction, values, out, n=n, seed=seed, label=index if start is None else None,
                      psi=psi, samples=samples, start=start)
