"""Anomaly detection: GANomaly (Akcay et al. 2018) and the plain convolutional autoencoder it is
measured against. Both learn to reconstruct the normal data (a training split without the classes
of ``data.exclude_classes``) and score an image by how badly the model handles it: higher = more
anomalous. See docs/anomaly.md.

**GANomaly** (``loss.objective: ganomaly``). Networks (:mod:`gankit.nets.ganomaly`, ``model.arch:
ganomaly``): ``G`` = encoder G_E -> decoder G_D -> second encoder E, so x -> z = G_E(x) ->
x̂ = G_D(z) -> ẑ = E(x̂); ``D`` = the DCGAN discriminator. Losses (Sec. 3.2, Eq. 1-4):

    L_adv = mean (f(x) − f(x̂))²      f: D's features before its last layer (feature matching)
    L_con = mean |x − x̂|             contextual loss, L1 on pixels in [-1, 1]
    L_enc = mean (z − ẑ)²             encoder loss in the latent space
    L_G   = w_adv·L_adv + w_con·L_con + w_enc·L_enc      (paper: w_adv = 1, w_con = 50, w_enc = 1)

and D minimises the adversarial loss of ``loss.name`` on D(x) against D(x̂) (default
``non-saturating``: the logistic loss, the paper's binary cross-entropy). The anomaly score
(``loss.options.score``) is by default the official code's (samet-akcay/ganomaly, lib/model.py:
``torch.mean(torch.pow(latent_i - latent_o, 2), dim=1)``), A(x) = mean_j (G_E(x)_j − E(G_D(G_E(x)))_j)²;
the paper's Eq. 5 writes an L1 norm, ‖G_E(x) − E(G_D(G_E(x)))‖₁, which ``score: l1`` gives (as
mean_j |·|: ‖·‖₁ / z_dim, the same ranking). The rankings differ, so the AUROCs do (measured once:
docs/anomaly.md). Both are taken before the paper's min-max scaling over the test set, which
changes no ranking and so no AUROC. Left out: the official code re-initialises D
when its loss falls below 1e-5 (a branch on the host between steps).

**Autoencoder** (``loss.objective: autoencoder``): the same G_E -> G_D (``reencode=False``), trained
on the reconstruction error alone (``loss.options.reconstruction``: ``l2``, the mean squared error,
or ``l1``); the score is that error per image.

Why GANomaly rather than f-AnoGAN (Schlegl et al. 2019): it trains in one stage with one objective
through the engine's phases, and its generator *is* an autoencoder, so the baseline shares its
encoder and decoder layer for layer and the comparison isolates what the adversarial and latent
terms add. f-AnoGAN needs a WGAN-GP trained to convergence first, then an encoder against the
frozen G: two runs, whose first stage alone would take most of a 40-second budget.

Both objectives make outputs with a :class:`ReconstructionTask`: a translation from batch field ``x``
to ``x`` itself (x -> x̂), so sample grids show input | reconstruction; it is named
``reconstruction`` (and ``kind = "reconstruction"``) so that commands made for pix2pix/CycleGAN,
which read a second image domain, refuse these runs in one line instead of misreading them.
"""
from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, GankitError
from ..losses import LOSSES
from ..nets import build_net, check_net_kwargs
from ..nets.layers import flatten_features
from ..tasks import TranslationTask
from .base import DISCRIMINATOR_KEYS, Objective, OptimGroup, Phase, parse_options, refuse_unused, register_objective

RECONSTRUCTIONS = ("l1", "l2")


# -- pure functions --------------------------------------------------------------------------------
def per_image_error(x: Tensor, x_hat: Tensor, norm: str = "l2") -> Tensor:
    """(B,) mean over pixels and channels of |x − x̂| (``l1``) or (x − x̂)² (``l2``)."""
    d = (x.float() - x_hat.float()).flatten(1)
    if norm == "l1":
        return d.abs().mean(1)
    if norm == "l2":
        return d.square().mean(1)
    raise ValueError(f"norm must be one of {', '.join(RECONSTRUCTIONS)}, got {norm!r}")


def latent_error(z: Tensor, z_hat: Tensor, norm: str = "l2") -> Tensor:
    """(B,) GANomaly's anomaly score: mean_j (z_j − ẑ_j)² (``l2``, the official code's) or mean_j |z_j − ẑ_j|
    (``l1``, Akcay et al. 2018, Eq. 5's ‖z − ẑ‖₁ divided by z_dim, which changes no ranking)."""
    return per_image_error(z, z_hat, norm)


def ganomaly_generator_loss(x: Tensor, x_hat: Tensor, z: Tensor, z_hat: Tensor, feat_real: Tensor,
                            feat_fake: Tensor, w_adv: float = 1.0, w_con: float = 50.0, w_enc: float = 1.0
                            ) -> Dict[str, Tensor]:
    """``{"loss", "adv", "con", "enc"}`` (scalars): GANomaly's generator loss (Eq. 1-4, see the
    module docstring); ``feat_*``: D's features (B, F) of x and x̂."""
    adv = (feat_real.float() - feat_fake.float()).square().mean()
    con = (x.float() - x_hat.float()).abs().mean()
    enc = (z.float() - z_hat.float()).square().mean()
    return {"loss": w_adv * adv + w_con * con + w_enc * enc, "adv": adv, "con": con, "enc": enc}


def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` (higher = more likely positive) for binary ``labels``
    (1 = positive): the Mann–Whitney U statistic / (n_pos · n_neg), ties counted one half (average
    ranks), which is what ``sklearn.metrics.roc_auc_score`` computes."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} and {y.size}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both positives and negatives")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty_like(s)
    # average rank (1-based) of each run of tied scores
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


# -- the objectives --------------------------------------------------------------------------------
class ReconstructionTask(TranslationTask):
    """x -> G(x) = x̂ for the batch field ``x`` (inputs and targets are the same images)."""

    name = "reconstruction"

    def __init__(self, net: str = "G"):
        super().__init__(source="x", target="x", net=net)


class _AnomalyObjective(Objective):
    """What both detectors share: the reconstruction task, scoring, AUROC on held-out classes."""

    kind = "reconstruction"
    ema = ("G",)
    reencode = True
    # What gankit eval's cards say of evaluate_model's numbers (gankit/metrics/evaluate.py model_results).
    model_metric_descriptions = {
        "auroc": "area under the ROC curve of the anomaly score on the {n} images of the {split} split, "
                 "the classes held out of training (data.exclude_classes, and test/ classes train/ lacks) positive",
        "n_anomalous": "images of the held-out classes among the {n} of the {split} split",
    }

    def __init__(self, nets: Dict[str, nn.Module], cfg, data, **kwargs):
        super().__init__(nets, cfg, data, **kwargs)
        self.task = ReconstructionTask()

    @classmethod
    def _build_g(cls, cfg, data) -> nn.Module:
        if data.kind != "image":
            raise ConfigError(f"data.name: objective {cls.registered_name} needs images, got {data.kind} data")
        return build_net(cfg.model, "G", "G", z_dim=cfg.model.z_dim, sample_shape=tuple(data.sample_shape),
                         num_classes=0, reencode=cls.reencode)

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        name = cls.registered_name
        if cfg.model.arch != "ganomaly":
            raise ConfigError(f"model.arch: objective {name} needs arch ganomaly (its encoder-decoder), "
                              f"got {cfg.model.arch!r}")
        if "reencode" in cfg.model.g or "reencode" in cfg.model.nets.get("G", {}):
            raise ConfigError(f"model.g.reencode: set by objective {name} itself; remove it")
        if cfg.model.conditional:
            raise ConfigError(f"model.conditional: objective {name} is unconditional; set it to false")
        refuse_unused(cfg, name, ("loss.regularizers", "loss.clip_d_weights", "loss.augment"), "does not use it")
        check_net_kwargs(cfg.model, "G", "G")

    def reconstruct(self, x: Tensor):
        """(z, x̂, ẑ) of G for images ``x`` in [-1, 1] (ẑ None for the autoencoder)."""
        with self.autocast():
            return self.nets["G"].reconstruct(x)

    def _scores(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def score_images(self, x: Tensor, batch_size: int = 500) -> Tensor:
        """(N,) float32 anomaly scores on the CPU for images ``x`` (N, C, H, W) in [-1, 1], higher =
        more anomalous; networks in eval mode (BatchNorm's running statistics), modes restored."""
        g = self.nets["G"]
        was = g.training
        g.eval()
        out = []
        try:
            dev = self.device()
            for i in range(0, x.shape[0], batch_size):
                out.append(self._scores(x[i:i + batch_size].to(dev).float()).float().cpu())
        finally:
            g.train(was)
        return torch.cat(out) if out else torch.zeros(0)

    def evaluate_model(self, data_cfg, split: str = "test", seed: int = 0) -> Dict[str, float]:
        """``{"auroc", "n_anomalous"}`` on the whole ``split`` (the run's ``data.limit`` is a training
        setting: it is not applied here, as the card's count says) with the anomaly classes as the
        positives: those of ``data.exclude_classes``, and a folder's held-out classes that its train/
        lacks (``info["anomalous_classes"]``, the MVTec AD layout); ``{}`` when there are none."""
        from ..data import load_dataset
        from ..data.subsets import anomaly_classes

        data = load_dataset(dataclasses.replace(data_cfg, limit=None), split, seed=seed)  # the whole split
        if data_cfg.exclude_classes and data.y is None:
            raise ConfigError(f"data.exclude_classes: dataset {data_cfg.name!r} has no labels")
        held = anomaly_classes(data_cfg.exclude_classes, data)
        if not held:
            return {}
        labels = torch.isin(data.y.cpu(), torch.tensor(held, dtype=data.y.dtype)).numpy()
        if labels.all() or not labels.any():
            raise GankitError(f"{split} split of {data_cfg.name}: needs both anomalous and normal images to "
                              "compute an AUROC")
        scores = self.score_images(data.all_model_range())
        return {"auroc": auroc(scores.numpy(), labels), "n_anomalous": float(labels.sum())}


@dataclass(frozen=True)
class GANomalyOptions:
    w_adv: float = 1.0                # weight of the feature-matching adversarial loss (paper: 1)
    w_con: float = 50.0               # weight of the contextual L1 loss |x − x̂| (paper: 50)
    w_enc: float = 1.0                # weight of the latent loss (z − ẑ)² (paper: 1)
    # The anomaly score: l2 = mean_j (z − ẑ)², the official code's; l1 = mean_j |z − ẑ|, the paper's Eq. 5
    score: str = "l2"


@register_objective("ganomaly")
class GANomalyObjective(_AnomalyObjective):
    Options = GANomalyOptions
    optimizers = {"G": OptimGroup(("G",), "g_optim"), "D": OptimGroup(("D",), "d_optim")}

    def __init__(self, nets: Dict[str, nn.Module], cfg, data, **kwargs):
        super().__init__(nets, cfg, data, **kwargs)
        self.loss = LOSSES.get(cfg.loss.name)

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        return {"G": cls._build_g(cfg, data),
                "D": build_net(cfg.model, "D", "D", sample_shape=tuple(data.sample_shape), num_classes=0)}

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        check_net_kwargs(cfg.model, "D", "D")
        if cfg.model.d.get("pack", 1) != 1:
            raise ConfigError("model.d.pack: ganomaly's feature matching compares images one by one; remove it")
        o = parse_options(cls, cfg.loss.options)
        for k in ("w_adv", "w_con", "w_enc"):
            if not getattr(o, k) >= 0:
                raise ConfigError(f"loss.options.{k}: invalid value {getattr(o, k)!r}; allowed: a number >= 0")
        if o.score not in RECONSTRUCTIONS:
            raise ConfigError(f"loss.options.score: invalid value {o.score!r}; allowed: l2 (mean (z − ẑ)², the "
                              "official code's), l1 (mean |z − ẑ|, the paper's Eq. 5)")
        unknown = set(cfg.model.nets) - {"G", "D"}
        if unknown:
            raise ConfigError(f"model.nets.{sorted(unknown)[0]}: objective ganomaly has networks G and D only")

    def phases(self, d_steps: int) -> List[Phase]:
        return [Phase("D", "D", ("D",), repeats=d_steps), Phase("G", "G", ("G",))]

    def features(self, x: Tensor) -> Tensor:
        """D's features before its last layer, (B, F): what feature matching compares."""
        with self.autocast():
            return flatten_features(self.nets["D"].body(x))

    def _scores(self, x: Tensor) -> Tensor:
        r = self.reconstruct(x)
        return latent_error(r.z, r.z_hat, self.options.score)

    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        x = batch["x"]
        D = self.nets["D"]
        if phase == "D":
            with torch.no_grad():
                x_hat = self.reconstruct(x).x_hat
            with self.autocast():
                real, fake = D(x).float(), D(x_hat.detach()).float()
            loss = self.loss.d(real, fake)
            self.backward(loss)
            return {"d_loss": loss.detach(), "d_real": self.loss.d_real_fake(real).mean().detach(),
                    "d_fake": self.loss.d_real_fake(fake).mean().detach()}
        if phase == "G":
            r = self.reconstruct(x)
            with torch.no_grad():
                feat_real = self.features(x)
            feat_fake = self.features(r.x_hat)
            o = self.options
            terms = ganomaly_generator_loss(x, r.x_hat, r.z, r.z_hat, feat_real, feat_fake, o.w_adv, o.w_con, o.w_enc)
            self.backward(terms["loss"])
            return {"g_loss": terms["loss"].detach(), **{f"g_{k}": terms[k].detach() for k in ("adv", "con", "enc")}}
        raise ValueError(f"unknown phase {phase!r}")


@dataclass(frozen=True)
class AutoencoderOptions:
    reconstruction: str = "l2"        # l2 (mean squared error) | l1: the loss and the anomaly score


@register_objective("autoencoder")
class AutoencoderObjective(_AnomalyObjective):
    Options = AutoencoderOptions
    optimizers = {"G": OptimGroup(("G",), "g_optim")}
    reencode = False

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        return {"G": cls._build_g(cfg, data)}

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        o = parse_options(cls, cfg.loss.options)
        if o.reconstruction not in RECONSTRUCTIONS:
            raise ConfigError(f"loss.options.reconstruction: invalid value {o.reconstruction!r}; "
                              f"allowed: {', '.join(RECONSTRUCTIONS)}")
        if cfg.model.d:
            raise ConfigError("model.d: objective autoencoder has no discriminator; remove it")
        refuse_unused(cfg, "autoencoder", DISCRIMINATOR_KEYS, "has no discriminator for it")
        unknown = set(cfg.model.nets) - {"G"}
        if unknown:
            raise ConfigError(f"model.nets.{sorted(unknown)[0]}: objective autoencoder has network G only")

    def phases(self, d_steps: int) -> List[Phase]:
        return [Phase("G", "G", ("G",))]

    def _scores(self, x: Tensor) -> Tensor:
        return per_image_error(x, self.reconstruct(x).x_hat, self.options.reconstruction)

    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        x = batch["x"]
        loss = per_image_error(x, self.reconstruct(x).x_hat, self.options.reconstruction).mean()
        self.backward(loss)
        return {"g_loss": loss.detach()}


def score_images(model, x: Tensor, batch_size: int = 500) -> Tensor:
    """(N,) anomaly scores (higher = more anomalous) of images ``x`` (N, C, H, W) in [-1, 1] under a
    loaded model (:func:`gankit.api.load`) of objective ``ganomaly`` or ``autoencoder``."""
    objective = model.objective
    if not isinstance(objective, _AnomalyObjective):
        raise GankitError(f"objective {model.cfg.loss.objective!r} does not score anomalies; "
                          "train one with loss.objective ganomaly or autoencoder")
    if batch_size < 1:
        raise GankitError(f"batch_size={batch_size}: give at least 1")
    want = tuple(model.info.sample_shape)
    if tuple(x.shape[1:]) != want:
        raise GankitError(f"images of shape {tuple(x.shape[1:])}: this model takes {want}")
    return objective.score_images(x, batch_size)
