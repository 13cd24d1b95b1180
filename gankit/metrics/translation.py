"""Scores of an image-to-image translator on held-out data (``gankit eval`` on a translation run).

For each direction the model translates (Pix2Pix: one; CycleGAN: AtoB and BtoA), the held-out
split's source images are translated and scored:

* ``psnr``, ``ssim`` against the paired targets (paired data only; :mod:`gankit.metrics.paired`);
* ``fid``, ``kid`` of the outputs against the target domain's held-out images, on the target
  domain's feature network (when the domain is a registered dataset with one: Fashion-MNIST,
  MNIST-5k, digits); the same numbers for the untranslated inputs (``fid_input``) say how far
  the domains were apart to begin with;
* ``content_kept``: the fraction of outputs that the target domain's classifier puts in the
  source image's class (labels are never used in training).

Every value carries the protocol it was measured with (``protocol``), written to ``eval.json``.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Dict, Optional

import torch

from ..version import __version__
from ..errors import GankitError, option
from .paired import content_kept, paired_scores


#: What a translator is scored with on the target domain's network, unless ``metrics`` says otherwise.
FEATURE_METRICS = ("fid", "kid", "content_kept")


def _domain_cfg(name: str, size: tuple):
    """The target domain's dataset at the outputs' (H, W) (an int when square, as recipes write it)."""
    from ..config import DataConfig
    h, w = int(size[0]), int(size[1])
    return DataConfig(name=name, resolution=h if h == w else (h, w))


def folder_reference(model, task, held_out):
    """The target side of ``held_out`` (the oriented split being scored) as a reference dataset, for a
    translation target that is a folder of the user's images."""
    from ..data.base import Dataset

    side = "B" if task.source == "A" else "A"     # the target domain, as the folder names it
    return Dataset(name=f"{model.cfg.data.name}-{side}", x=held_out.b, y=None, kind="image")


def folder_domain(model, task, held_out, log=None):
    """``(extractor, reference)`` for a translation target that is a folder of the user's images (no
    registered dataset): a domain net trained by the rotation task on the target side of the *train*
    split (cached under a key of those images' bytes, so another folder, size or direction gets its
    own), and the target side of ``held_out`` (the oriented split being scored) as the real images.
    None when the images are not square (rotation needs them square)."""
    from ..data import load_dataset
    from ..data.base import Dataset
    from .cache import cache_dir, sha256_tensor
    from .domain_net import DomainFeatures, fit_domain_net

    cfg = model.cfg.data
    reference = folder_reference(model, task, held_out)
    if reference.x.shape[-1] != reference.x.shape[-2]:
        return None
    name = reference.name
    train = oriented(load_dataset(cfg, "train", seed=model.cfg.seed), task).b
    key = f"domain-{name}-{sha256_tensor(train)[:10]}"
    path = cache_dir() / "features" / f"{key}.safetensors"
    if not path.exists():
        fit_domain_net(Dataset(name=name, x=train, y=None, kind="image"), reference, name, key, path, log=log)
    return DomainFeatures.load(path), reference


def score_translations(outputs: torch.Tensor, inputs: torch.Tensor, targets: Optional[torch.Tensor],
                       labels: Optional[torch.Tensor], domain: Optional[str], seed: int = 0,
                       metrics=FEATURE_METRICS, features_cfg=None, extractor=None, reference=None) -> Dict[str, float]:
    """Scores of ``outputs`` (N, C, H, W) in [-1, 1] translated from ``inputs`` (pictures of them scored
    as ``*_input``; None: none); ``targets`` the paired ground truth (or None), ``labels`` the inputs'
    classes (or None), ``domain`` the registered dataset of the target domain, whose domain network gives
    the features and whose test split the real images (None: no FID or content kept, unless
    ``reference``); ``features_cfg``: the dataset whose domain network gives the features, when not the
    target domain's own (restoration on photographs); ``extractor`` and ``reference``: other features
    (``--features inception``, a folder's rotation network: :func:`folder_domain`) and other real images
    (a folder's held-out targets), with no content kept (it needs the domain's classifier).
    ``metrics``: which of the numbers on the features to compute (fid, kid, content_kept); none of them:
    the network is not even loaded (nor trained, the first time)."""
    out: Dict[str, float] = {"n": int(len(outputs))}
    if targets is not None:
        out.update(paired_scores(outputs, targets))
    keep = "content_kept" in metrics and labels is not None and extractor is None
    metrics = [m for m in metrics if m != "content_kept"]
    if domain is None and reference is None or not (metrics or keep):
        return out
    from .evaluate import Samples, evaluate_samples
    from .features import get_extractor

    cfg = _domain_cfg(domain, outputs.shape[-2:]) if domain is not None else None
    if extractor is None:
        extractor = get_extractor("domain", features_cfg or cfg)
    for key, x in (("", outputs), ("_input", inputs)):
        if x is None:
            continue
        channels = getattr(extractor, "channels", None)  # Inception takes any: it makes grey RGB itself
        if channels and x.shape[1] != channels:  # e.g. RGB inputs against a grey domain: compare in its channels
            x = x.mean(1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)
        if metrics:
            result = evaluate_samples(Samples(x, None, cfg, {"kind": "translation"}), metrics=metrics,
                                      split="test", seed=seed, n_real=len(x), extractor=extractor,
                                      reference=reference)
            for k, v in result.scalars().items():
                out[k + key] = v
        if keep and key == "":
            logits = extractor(x).logits
            out["content_kept"] = content_kept(logits, labels.to(logits.device))
    return out


def oriented(data, task):
    """``data`` with the task's source as its side A (CycleGAN's B->A task reads the swapped data)."""
    return data.swapped() if task.source == "B" else data


def score_translator(model, split: str = "test", n: Optional[int] = None, seed: int = 0,
                     checkpoint: str = "latest", write: bool = True, metrics=FEATURE_METRICS,
                     features: Optional[str] = None, inception_weights: Optional[str] = None) -> dict:
    """Score a loaded translation model (a :class:`~gankit.GAN` whose ``checkpoint`` was loaded) on
    ``split``: ``{direction: {metric: value}}`` plus ``protocol``; writes ``eval.json`` in its run
    folder. ``features``: ``domain`` (None: the target domain's network) or ``inception`` (the FID
    InceptionV3 from ``inception_weights``, for numbers comparable with papers; no content kept).
    :func:`gankit.evaluation.evaluate_translation` takes a run folder."""
    from ..data import load_dataset
    from .features import get_extractor

    if model.task.name != "translation":
        raise GankitError("scoring a translator needs a translation run (pix2pix, cyclegan, ...)")
    if features not in (None, "domain", "inception"):
        raise GankitError(f"{option('--features', features)}: a translator is scored on domain or inception features")
    inception = (get_extractor("inception", None, inception_weights=inception_weights) if features == "inception"
                 else None)
    data = load_dataset(model.cfg.data, split, seed=model.cfg.seed)
    results = {"protocol": {"split": split, "n": n, "seed": seed, "checkpoint": checkpoint, "gankit": __version__,
                            "data": model.cfg.data.name, "metrics": list(metrics),
                            "psnr": "per image, dB, range [-1, 1] (data range 2), mean over images",
                            "ssim": "Wang et al. 2004, Gaussian window 11, sigma 1.5, per channel, mean "
                                    "(none under 11 px)",
                            "features": "domain network of the target domain (trained on its train split)"}}
    if "restoration" in data.info:
        results["protocol"]["restoration"] = (
            "psnr_y/ssim_y: on luma Y (MATLAB rgb2ycbcr), data range 255, a border of `scale` px cropped, "
            "on the held-out crops, and *_whole on the whole held-out photos (mean over photos); "
            "hole_psnr: the error pooled over every hole pixel; hole_ssim: the SSIM map's mean over the hole; "
            "perceptual: LPIPS-style (uniform weights, not LPIPS) and fid/kid on the domain network of "
            "data.restoration.FEATURE_SOURCE (photos: the emoji network); *_input / *_baseline: bicubic (SR), "
            "the grey hole, the grey image; inputs (crops, holes) drawn with a generator seeded by `seed`")
    if "audio" in data.info:
        results["protocol"]["voice"] = ("target_speaker / digit_kept: argmax of the speaker / digit classifier "
                                        "trained on real spectrograms of the corpus (metrics/audio.py); mcd: dB, "
                                        "against the target speaker's same digit and take, DTW-aligned, both "
                                        "through Griffin-Lim (64 iterations); *_input: the unconverted source")
    voice_notes, voice_warnings = [], []
    for direction, task in model.objective.tasks().items():
        d = oriented(data, task)
        count = len(d) if n is None else min(n, len(d))
        g = torch.Generator().manual_seed(seed)  # the same held-out inputs (crops, holes) every time
        index = torch.randperm(len(d), generator=g)[:count].sort().values
        batch = d.batch(index, generator=g)
        inputs = batch["A"]
        outputs = model.translate(inputs, direction)
        targets = batch["B"] if d.paired else None
        labels = batch.get("A_y")
        # FID against the target domain's own held-out images: every B of the split for unpaired data.
        domain = d.domains.get("B")
        spec = d.info.get("restoration")
        shown, features_cfg = inputs, None
        if spec is not None:  # restoration: the no-learning baseline is scored as *_input, on its features
            from ..data.restoration import clean_domain_config
            from .restoration import baseline_pictures
            shown = baseline_pictures(inputs, spec["task"], spec)
            features_cfg = clean_domain_config(model.cfg.data)
        extractor, reference = inception, None
        wanted = any(m != "content_kept" for m in metrics)
        if domain is None and spec is None and "utterances" not in d.info and wanted:  # the user's own folders
            extractor, reference = ((inception, folder_reference(model, task, d)) if inception is not None
                                    else folder_domain(model, task, d, log=_stderr) or (None, None))
        results[direction] = score_translations(outputs, shown, targets, labels, domain, seed=seed, metrics=metrics,
                                                features_cfg=features_cfg, extractor=extractor, reference=reference)
        if spec is not None:
            results[direction].update(_restoration_scores(outputs, batch, spec, model.cfg.data))
            if spec["task"] == "super-resolution" and d.photos is not None:
                results[direction].update(whole_image_sr(model, d, int(spec["scale"])))
        if "utterances" in d.info:  # voice conversion: speaker and digit classifiers, MCD (metrics/audio.py)
            from .audio import score_conversion
            pair = d.info["audio"]["pair"]
            src, dst = pair if d.info.get("direction", "AtoB") == "AtoB" else pair[::-1]
            utts = d.info["utterances"]
            source = {"speaker": src, "items": [utts[src][i] for i in index.tolist()]}
            target = {"speaker": dst, "items": utts[dst]}
            scores = score_conversion(outputs, inputs, source, target, d.info["audio"]["speakers"], model.cfg.data)
            voice_notes.append(scores.pop("not_computed", None))   # what speech could not score, and why
            voice_warnings += scores.pop("warnings", [])             # a judge classifier near chance
            results[direction].update(scores)
    computed = {k for d in results.values() if d is not results["protocol"] for k in d}
    results["protocol"]["metrics"] = [m for m in metrics if m in computed]
    # what plain translation could not compute (speech and restoration are scored their own way)
    left_out = [m for m in metrics if m not in computed] if not {"audio", "restoration"} & set(data.info) else []
    reasons = []
    if [m for m in left_out if m != "content_kept"]:  # a folder's rotation network needs square images
        reasons.append(f"{', '.join(m for m in left_out if m != 'content_kept')}: the target domain is a folder of "
                       "images that are not square, which the rotation-trained feature network cannot take")
    if "content_kept" in left_out:
        reasons.append("content_kept: needs the target domain's classifier (--features domain)" if inception
                       else "content_kept: the held-out inputs have no class labels")
    reasons += list(dict.fromkeys(r for r in voice_notes if r))   # once, though both directions give it
    if reasons:
        results["protocol"]["not_computed"] = "; ".join(reasons)
    if voice_warnings:
        results["protocol"]["warnings"] = list(dict.fromkeys(voice_warnings))
    if inception is not None:
        results["protocol"]["features"] = (f"{inception.name} (weights sha256 {inception.sha256[:16]}): "
                                           f"{inception.preprocessing}")
    elif any(k.startswith("fid") or k.startswith("kid") for k in computed) and model.cfg.data.name.endswith("-folder"):
        results["protocol"]["features"] = ("domain network of the target domain, a folder: trained on the rotation "
                                           "task (RotNet) on the target side of the train split")
    if write and model.run_dir is not None and Path(model.run_dir).is_dir():
        from ..utils import atomic_write_text
        atomic_write_text(Path(model.run_dir) / "eval.json", json.dumps(results, indent=1, default=_json) + "\n")
    return results


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _restoration_scores(outputs, batch, spec: dict, data_cfg) -> dict:
    """PSNR/SSIM on Y or on the hole, colourfulness, perceptual distance (metrics/restoration.py)."""
    from ..data.restoration import clean_domain_config
    from .domain_net import DomainFeatures
    from .restoration import score_restoration

    try:
        net = DomainFeatures.for_dataset(clean_domain_config(data_cfg)).net
    except GankitError:
        net = None
    return score_restoration(outputs, batch["B"], batch["A"], spec, net=net, mask=batch.get("mask"))


def whole_image_sr(model, data, scale: int) -> dict:
    """PSNR / SSIM on Y of the whole photos of ``data`` (a super-resolution dataset of one split;
    each photo cut to a multiple of ``scale``, downscaled, restored in one pass), mean over photos,
    and the same for bicubic upscaling: ``*_whole``. ``gankit eval`` uses it on the held-out split;
    ``benchmarks/restoration.py gap`` on the training split too."""
    from ..data.base import to_model_range
    from ..data.restoration import downscale, upscale_bicubic
    from .restoration import psnr_y, ssim_y

    rows = {"psnr_y_whole": [], "ssim_y_whole": [], "psnr_y_whole_baseline": [], "ssim_y_whole_baseline": []}
    for img in data.whole_images():
        h, w = img.shape[1:]
        img = img[None, :, :h - h % scale, :w - w % scale]
        lr, hr = to_model_range(downscale(img, scale)), to_model_range(img)
        for key, x in (("", model.translate(lr, batch_size=1)), ("_baseline", upscale_bicubic(lr, scale))):
            rows["psnr_y_whole" + key].append(float(psnr_y(x, hr, scale)[0]))
            rows["ssim_y_whole" + key].append(float(ssim_y(x, hr, scale)[0]))
    return {k: sum(v) / len(v) for k, v in rows.items()}


def _json(v):
    return None if isinstance(v, float) and not math.isfinite(v) else float(v)


def format_translation(results: dict) -> str:
    """A table: one row per metric, one column per direction."""
    dirs = [k for k in results if k != "protocol"]
    keys = []
    for d in dirs:
        keys += [k for k in results[d] if k not in keys]
    w = max([len("metric")] + [len(k) for k in keys]) + 2  # the longest name (target_speaker_input) fits
    lines = [f"{'metric':<{w}}" + "".join(f"{d:>14}" for d in dirs)]
    for k in keys:
        cells = []
        for d in dirs:
            v = results[d].get(k)
            cells.append(f"{v:>14.4g}" if isinstance(v, float) else f"{'' if v is None else v:>14}")
        lines.append(f"{k:<{w}}" + "".join(cells))
    lines += [f"WARNING  {line}" for line in results["protocol"].get("warnings", [])]
    return "\n".join(lines)
