"""Training health, what is measured: cheap signals read on every log record.

Every log record (``train.log_every`` generator steps) the health monitor reads:

* from the record: D's accuracy on real and fake, D and G losses, and the gradient norms the
  loop measured on that step (``grad/G``, ``grad/G/<layer>``, ``grad/D``; see
  :meth:`Trainer.grad_norm_stats`);
* from ``health.samples`` samples of the sampling generator (the EMA of G when the run keeps one,
  as grids and evaluation use; else G) on fixed noise against as many real samples, in a feature
  space (1D/2D points as they are; images in the domain feature network's space when its
  weights are cached, else pixels average-pooled to at most 16×16): diversity = mean pairwise
  distance of generated / of real samples; energy distance between the two sets divided by the
  real mean distance (a quality proxy: 0 = same distribution); the entropy of the histogram of
  generated samples over the data's classes (domain network) or nearest modes (mixtures)
  divided by the real data's, counting only samples that look like data (within a mode's radius;
  a class predicted as confidently as for 90 % of the reals), and that share (``on_data``); for mixtures, the share of modes visited (≥ 1/4 of a fair share of
  samples within a quarter of the spacing between modes) and covered (VEEGAN/PacGAN protocol:
  within 3σ, its 20-of-2,500 count scaled to the sample count);
* whether any logged number or any weight of G or D is NaN or infinite.

This module holds the measurements on samples and weights (:class:`SampleProbe`,
:func:`weight_norms` and the distance/histogram helpers); :mod:`.rules` turns a window of
signals into diagnoses and :mod:`.policy` acts on them.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch

from ...nets.equalized import runtime_scales


# -- signals ------------------------------------------------------------------------------------
def features(x: torch.Tensor) -> torch.Tensor:
    """(N, ...) samples -> (N, F) float features for distances: vectors as they are; images
    average-pooled to at most 16×16 pixels (a cheap stand-in for a domain feature network)."""
    x = x.detach().float()
    if x.ndim == 4:
        side = min(16, x.shape[-1])
        x = torch.nn.functional.adaptive_avg_pool2d(x, side)
    return x.reshape(x.shape[0], -1)


def mean_pairwise_distance(a: torch.Tensor, b: Optional[torch.Tensor] = None) -> float:
    """Mean Euclidean distance over pairs (i ≠ j within ``a``; all pairs between ``a`` and ``b``)."""
    if b is None:
        n = a.shape[0]
        return float(torch.cdist(a, a).sum() / max(n * (n - 1), 1))
    return float(torch.cdist(a, b).mean())


def mode_radius(modes: torch.Tensor, std: float) -> float:
    """How near a sample must be to a mode to count for it: a quarter of the smallest distance
    between modes (loose on purpose: early, imprecise samples still show which modes G visits),
    and never less than 3σ·√D."""
    r = 3 * std * math.sqrt(modes.shape[1])
    if len(modes) > 1:
        d = torch.cdist(modes.float(), modes.float()) + torch.eye(len(modes)) * 1e9
        r = max(r, 0.25 * float(d.min()))
    return r


def mode_histogram(x: torch.Tensor, modes: torch.Tensor, radius: float) -> torch.Tensor:
    """Counts (M,) of samples whose nearest mode is within ``radius`` (further ones count nowhere)."""
    d = torch.cdist(x.float(), modes.float().to(x.device))   # (N, M)
    dist, idx = d.min(1)
    return torch.bincount(idx[dist <= radius], minlength=modes.shape[0]).float()


def entropy(counts: torch.Tensor) -> float:
    p = counts / counts.sum().clamp_min(1e-12)
    return float(-(p[p > 0] * p[p > 0].log()).sum()) + 0.0  # + 0.0: no "-0"


def native_train_split(data_cfg, data) -> bool:
    """Whether the run's loaded ``data`` is what the domain feature network's key hashes (its train split at
    native resolution and channels, all of it: :func:`gankit.metrics.domain_net._load_split`), so the key can
    be computed from it instead of decoding the data again."""
    from ...data.base import Dataset

    return (type(data) is Dataset and data.kind == "image" and data_cfg.resolution is None
            and data_cfg.channels is None and data_cfg.limit is None and data_cfg.subset_fraction is None
            and not data_cfg.exclude_classes)


class SampleProbe:
    """Generated vs real samples on fixed noise: diversity, energy distance, histogram entropy.

    Images are compared in the domain feature network's space when its cached weights exist
    (``gankit features train DATASET``; never trained here), with the class histogram of its
    predictions; otherwise in pixel space average-pooled to at most 16×16 (no class histogram).
    1D/2D points are compared as they are, with the histogram of their nearest modes.
    """

    def __init__(self, trainer, n: int, seed: int):
        self.trainer = trainer
        data = trainer.data
        g = torch.Generator().manual_seed(seed + 7)
        n = min(n, len(data))
        idx = torch.randperm(len(data), generator=g)[:n]
        task = trainer.task
        # The probe's own generator, never torch's global RNG: a run's training draws (a translation
        # folder's jitter, restoration's crops and masks) stay those of a run without the probe, and
        # the probe built again on resume takes the same images.
        batch = data.batch(idx.to(trainer.device), generator=g)
        if task.name == "generation":  # G's samples against the data
            real = batch["x"]
            self.inputs = task.draw(n, g, device=trainer.device)
        else:  # outputs against the target domain
            real = batch[task.target]
            self.inputs = task.from_batch(batch)
        self.extractor, self.space = None, "points" if data.kind == "vector" else "pixels pooled to <=16x16"
        if data.kind == "image":
            try:
                from ...errors import GankitError
                from ...metrics.domain_net import DomainFeatures
                # Never trained here, and never decoded again only to be looked up: with no cached file for
                # the data the look-up reads nothing; the run's own images stand for the net's key when they
                # are the native train split it hashes.
                self.extractor = DomainFeatures.for_dataset(trainer.cfg.data, train_if_missing=False,
                                                            train=data if native_train_split(trainer.cfg.data, data) else None)
                self.space = self.extractor.name
            except (ImportError, GankitError, KeyError, ValueError):
                self.extractor = None
        self.modes = data.modes.cpu() if getattr(data, "modes", None) is not None else None
        if self.modes is not None:
            self.radius = mode_radius(self.modes, data.mode_std)
            self.mode_std = data.mode_std
        self.last_mean: Optional[torch.Tensor] = None  # the generated samples' mean at the previous probe
        self.confidence_floor = 0.0  # a class counts a sample the classifier is as sure of as of 90 % of the reals
        self.real, real_counts, real_conf = self._embed(real)
        if real_conf is not None:
            self.confidence_floor = float(real_conf.quantile(0.1))
        self.real_dist = max(mean_pairwise_distance(self.real), 1e-12)
        self.real_entropy = entropy(real_counts) if real_counts is not None else None
        if self.modes is not None:  # every real sample counted at its nearest mode, however far
            self.real_entropy_all = max(entropy(mode_histogram(self.real, self.modes, math.inf)), 1e-12)

    def _embed(self, x: torch.Tensor):
        """(features (N, F) on the CPU, histogram counts or None, the classifier's confidence (N,) or None).
        The histogram counts only samples that look like data: a mixture's within the mode radius, a
        class's predicted with at least ``confidence_floor`` (the blobs of an untrained G belong to
        no class, however the classifier's argmax falls)."""
        if self.extractor is not None:
            out = self.extractor(x.detach().float().cpu())
            if out.logits is None:
                return out.features, None, None
            conf, cls = out.logits.float().softmax(1).max(1)
            counts = torch.bincount(cls[conf >= self.confidence_floor], minlength=out.logits.shape[1]).float()
            return out.features, counts, conf
        f = features(x).cpu()
        counts = mode_histogram(f, self.modes, self.radius) if self.modes is not None else None
        return f, counts, None

    @torch.no_grad()
    def measure(self) -> Dict[str, float]:
        task = self.trainer.task
        # The generator the run samples from (its grids, checkpoints' samples, evaluation): the EMA
        # of G when the run keeps one, else G. A run that works through its EMA (raw G circling the
        # modes, its average on them) is judged on what it delivers, not on the raw iterate.
        x = task.generate(self.trainer.sampling_net(task.net), self.inputs, cpu=False)
        if not torch.isfinite(x).all():
            return {"diversity": float("nan"), "energy": float("nan")}
        fake, counts, _ = self._embed(x)
        div = mean_pairwise_distance(fake)
        cross = mean_pairwise_distance(fake, self.real)
        out = {"diversity": div / self.real_dist,
               "energy": (2 * cross - div - self.real_dist) / self.real_dist}
        if counts is not None and self.real_entropy:
            out["entropy"] = entropy(counts) / self.real_entropy
            out["on_data"] = float(counts.sum()) / fake.shape[0]  # the share of samples the histogram holds
        # Mixtures: how far the generated samples' mean moved since the previous probe, in units of
        # the real data's mean pairwise distance (a collapsed G that hops from mode to mode moves its
        # mean between probes; one spread over the data barely moves it).
        if self.modes is not None:
            mean = fake.mean(0)
            if self.last_mean is not None:
                out["mean_shift"] = float((mean - self.last_mean).norm()) / self.real_dist
            self.last_mean = mean
            # Every sample at its nearest mode, however far (a collapsed G often sits between
            # modes, where the histogram of samples that look like data holds none of them).
            out["entropy_all"] = entropy(mode_histogram(fake, self.modes, math.inf)) / self.real_entropy_all
            # Visited: a mode holds at least 1/4 of its fair share of samples within the loose radius.
            out["modes"] = float((counts >= 0.25 * fake.shape[0] / len(self.modes)).float().mean())
            # Covered as the VEEGAN/PacGAN protocol counts it (within 3σ; its 20 of 2,500 samples
            # scaled to this sample count), as `gankit eval --metrics modes` reports it.
            from ...metrics.modes import MIN_COUNT, NUM_SAMPLES, mode_stats
            st = mode_stats(fake, self.modes, self.mode_std,
                            min_count=max(1, round(MIN_COUNT * fake.shape[0] / NUM_SAMPLES)))
            out["modes_hq"] = st["modes"] / st["num_modes"]
        return out


def weight_norms(*modules: torch.nn.Module) -> List[float]:
    """L2 norm of all parameters of each module, read in one host sync (NaN/Inf shows through): of the
    weights the network computes with, so a layer with an equalized learning rate counts its stored
    weight times its runtime scale (:func:`gankit.nets.equalized.runtime_scales`)."""
    if not modules:
        return []
    norms = []
    for m in modules:
        params, scales = list(m.parameters()), runtime_scales(m)
        per = [n.float() * scales[id(p)] if id(p) in scales else n.float()
               for p, n in zip(params, torch._foreach_norm([p.detach() for p in params]))]
        norms.append(torch.stack(per).norm())
    return torch.stack(norms).tolist()
