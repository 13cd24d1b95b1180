"""The semi-supervised GAN of Salimans et al. (2016, "Improved Techniques for Training GANs", Sec. 5).

D is a K-class classifier with logits l_1..l_K; the fake class K+1 is implicit, its logit fixed at 0
(a softmax over K+1 logits is unchanged by subtracting one logit from all, so l_{K+1} = 0 loses
nothing), so with Z(x) = Σ_k exp l_k(x):

    D(x) = p(real | x) = Z(x) / (Z(x) + 1),      p(y = k | x, real) = softmax(l)_k.

D's loss (Sec. 5, L = L_supervised + L_unsupervised), every term a batch mean, written stably with
logsumexp (LSE) and softplus:

    L_sup   = −log softmax(l(x_lab))_y                        (cross-entropy on the labelled batch)
    L_unsup = −log D(x_unl) − log(1 − D(G(z)))
            = [−LSE(l(x_unl)) + softplus(LSE(l(x_unl)))] + softplus(LSE(l(G(z))))
    L_D     = L_sup + unsup_weight · L_unsup

(the authors' code weighs L_unsup by 1/2: ``unsup_weight: 0.5``). G's loss is feature matching
(Sec. 3.1, the paper's choice for its semi-supervised results): ‖E f(x_unl) − E f(G(z))‖², f the
output of D's last hidden layer (:mod:`gankit.nets.ssgan`), the expectations batch means.

``data_init: true`` runs weight norm's data-dependent initialisation of D (``D.data_init``) on the
first labelled batch before the first D step (step 0 only, never on resume), in the ssgan run and
its baseline alike.

Labels. The objective never reads a label of the training batches the loop draws (their ``y`` is
ignored). It loads the training split itself (``gankit.data.load_dataset(cfg.data, "train")``, on the
first step), picks ``labels_per_class`` images per class (:func:`labelled_subset`, seeded by
``label_seed``), keeps those images and labels only, and draws its labelled mini-batches from them
with its own seeded generator (whose state is in :meth:`state_dict`, so a resumed run draws the same
batches). ``unsup_weight: 0`` trains D on the labelled batches alone (no G step): the supervised
baseline with the same classifier, optimiser and labels.

Networks: ``G`` and ``D`` of ``model.arch`` (the ``ssgan`` family: D returns (B, K) logits and has
``features(x)`` / ``logits_and_features(x)``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..nets import build_net, check_net_kwargs
from ..tasks import GenerationTask
from .base import Objective, OptimGroup, Phase, parse_options, refuse_unused, register_objective


@dataclass(frozen=True)
class SSGANOptions:
    labels_per_class: int = 10        # labelled training images per class (10 x 10 classes: 100 labels)
    label_seed: int = 0               # seed of which images are labelled (and of the labelled batches' order)
    unsup_weight: float = 1.0         # weight of L_unsup in D's loss; 0: the supervised baseline (no G step)
    num_classes: int = 10             # K, the classes of D's classifier (checked against the data)
    labelled_batch: Optional[int] = None  # labelled images per D step; None = train.batch_size
    data_init: bool = False           # weight norm's data-dependent init of D on the first labelled batch


# -- the loss, pure functions ----------------------------------------------------------------------
def log_d_real(logits: Tensor) -> Tensor:
    """log D(x) = log Z/(Z+1) = LSE(l) − softplus(LSE(l)), per row (B,), for (B, K) logits."""
    lse = torch.logsumexp(logits, 1)
    return lse - F.softplus(lse)


def log_one_minus_d(logits: Tensor) -> Tensor:
    """log(1 − D(x)) = −log(Z + 1) = −softplus(LSE(l)), per row (B,)."""
    return -F.softplus(torch.logsumexp(logits, 1))


def unsupervised_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """L_unsup = −mean log D(x_unl) − mean log(1 − D(G(z)))."""
    return -log_d_real(logits_real).mean() - log_one_minus_d(logits_fake).mean()


def ssgan_d_loss(logits_lab: Tensor, y_lab: Tensor, logits_unl: Optional[Tensor], logits_fake: Optional[Tensor],
                 unsup_weight: float = 1.0) -> Dict[str, Tensor]:
    """``{"loss", "sup", "unsup"}``: L_sup + unsup_weight·L_unsup and its two terms (batch means).
    ``logits_unl``/``logits_fake`` None: L_unsup = 0 (the supervised baseline)."""
    sup = F.cross_entropy(logits_lab, y_lab)
    if logits_unl is None:
        unsup = torch.zeros((), dtype=sup.dtype, device=sup.device)
    else:
        unsup = unsupervised_loss(logits_unl, logits_fake)
    return {"loss": sup + unsup_weight * unsup, "sup": sup, "unsup": unsup}


def feature_matching_loss(f_real: Tensor, f_fake: Tensor) -> Tensor:
    """‖mean f(x_real) − mean f(G(z))‖² (Salimans et al. 2016, Sec. 3.1); (B, F) features each."""
    return (f_real.mean(0) - f_fake.mean(0)).square().sum()


def labelled_subset(y: Tensor, per_class: int, num_classes: int, seed: int) -> Tensor:
    """Indices of ``per_class`` images of each class, sorted: walk the images in a seeded random order
    and keep each whose class still has room, until every class is full. Labels of images after the
    last one kept are never read. Fails if a class has fewer than ``per_class`` images."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    need = [per_class] * num_classes
    left, picked = per_class * num_classes, []
    for i in order.tolist():
        c = int(y[i])
        if need[c] > 0:
            need[c] -= 1
            picked.append(i)
            left -= 1
            if left == 0:
                return torch.tensor(sorted(picked), dtype=torch.long)
    short = [c for c in range(num_classes) if need[c] > 0]
    raise ConfigError(f"loss.options.labels_per_class={per_class}: class {short[0]} of the training data has "
                      f"only {per_class - need[short[0]]} images; use fewer labels per class")


@register_objective("ssgan")
class SSGANObjective(Objective):
    Options = SSGANOptions
    # With train.ema the run also keeps an average of D's weights; gankit.load (and so ``gankit eval``)
    # rebuilds D from it: the averaged classifier (the paper's code for CIFAR-10 / SVHN scores
    # parameters averaged over training). The trainer's own D stays the trained one.
    ema = ("G", "D")
    optimizers = {"G": OptimGroup(("G",), "g_optim"), "D": OptimGroup(("D",), "d_optim")}
    #: what :meth:`evaluate_model`'s numbers are, for their evaluation cards ({n}: images, {split})
    model_metric_descriptions = {
        "accuracy": "accuracy of the discriminator's {K}-way classifier on the {n} images of the {split} split "
                    "(argmax of the K logits, eval mode)"}

    @classmethod
    def extra_work(cls, cfg, options) -> List[str]:
        if options.unsup_weight == 0:
            return ["a labelled batch in D's step (the supervised baseline: no G step)"]
        return ["a labelled batch in D's step", "feature matching in G's step (G's forward run again)"]

    def __init__(self, nets: Dict[str, nn.Module], cfg, data, **kwargs):
        super().__init__(nets, cfg, data, **kwargs)
        self.z_dim = cfg.model.z_dim
        self.task = GenerationTask(self.z_dim, 0)
        o = self.options
        self.labelled_batch = o.labelled_batch or cfg.train.batch_size
        # The labelled batches' own stream (named seed: the label seed, offset from every other stream).
        self.label_rng = torch.Generator().manual_seed(o.label_seed + 7919)
        self.lab_x: Optional[Tensor] = None   # (n_lab, C, H, W) in model range, loaded on the first step
        self.lab_y: Optional[Tensor] = None   # (n_lab,) int64
        self.lab_index: Optional[Tensor] = None  # which training images they are
        # Set by the Trainer: ``(n, device) -> z`` (one seeded stream); None = torch's global RNG.
        self.noise_source = None
        self._init_due = False  # data_init: set by on_step at step 0 (never on resume)

    @property
    def G(self) -> nn.Module:
        return self.nets["G"]

    @property
    def D(self) -> nn.Module:
        return self.nets["D"]

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        shape, k = tuple(data.sample_shape), parse_options(cls, cfg.loss.options).num_classes
        return {"G": build_net(cfg.model, "G", "G", z_dim=cfg.model.z_dim, sample_shape=shape, num_classes=0),
                "D": build_net(cfg.model, "D", "D", sample_shape=shape, num_classes=k)}

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        if cfg.model.arch != "ssgan" or any("arch" in v for v in cfg.model.nets.values()):
            raise ConfigError("model.arch: objective ssgan needs model.arch: ssgan (a D with K logits and features)")
        for name in ("G", "D"):
            check_net_kwargs(cfg.model, name, name)
        o = parse_options(cls, cfg.loss.options)
        if cfg.model.conditional:
            raise ConfigError("model.conditional: objective ssgan's G is unconditional and D learns the classes "
                              "from loss.options.labels_per_class labels; set it to false")
        refuse_unused(cfg, "ssgan", ("loss.regularizers", "loss.clip_d_weights", "loss.augment"), "does not use it")
        if not (isinstance(o.labels_per_class, int) and o.labels_per_class >= 1):
            raise ConfigError(f"loss.options.labels_per_class: invalid value {o.labels_per_class!r}; allowed: an integer >= 1")
        if not o.unsup_weight >= 0:
            raise ConfigError(f"loss.options.unsup_weight: invalid value {o.unsup_weight!r}; allowed: a number >= 0")
        if not (isinstance(o.num_classes, int) and o.num_classes >= 2):
            raise ConfigError(f"loss.options.num_classes: invalid value {o.num_classes!r}; allowed: an integer >= 2")
        if o.labelled_batch is not None and not (isinstance(o.labelled_batch, int) and o.labelled_batch >= 1):
            raise ConfigError(f"loss.options.labelled_batch: invalid value {o.labelled_batch!r}; "
                              "allowed: an integer >= 1, or null (train.batch_size)")
        if o.data_init not in (True, False):
            raise ConfigError(f"loss.options.data_init: invalid value {o.data_init!r}; allowed: true, false")
        if o.data_init and not dict(cfg.model.d).get("weight_norm", True):
            raise ConfigError("loss.options.data_init: true initialises weight norm; set model.d.weight_norm: true "
                              "or data_init: false")
        if cfg.train.d_steps != 1:
            raise ConfigError("train.d_steps: objective ssgan takes one D step per G step, as the paper; set it to 1")

    @property
    def supervised_only(self) -> bool:
        return self.options.unsup_weight == 0

    def phases(self, d_steps: int) -> List[Phase]:
        if self.supervised_only:  # the baseline: the classifier on its labels alone
            return [Phase("D", "D", ("D",), needs_data=False)]
        return [Phase("D", "D", ("D",)), Phase("G", "G", ("G",))]

    # -- labels -----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Pick the labelled subset now, before the trainer writes anything: a data set whose classes
        do not match ``loss.options.num_classes`` (or too few labels per class) is refused before the
        run folder and its step-0 grid exist, as every other config error is."""
        super().prepare()
        if self.lab_x is None:
            self._load_labelled()

    def _load_labelled(self) -> None:
        from ..data import load_dataset

        o = self.options
        ds = load_dataset(self.cfg.data, "train", seed=self.cfg.seed)
        if ds.y is None:
            raise ConfigError(f"data.name={self.cfg.data.name}: objective ssgan needs a labelled dataset")
        if ds.num_classes != o.num_classes:
            raise ConfigError(f"loss.options.num_classes={o.num_classes}: dataset {ds.name} has {ds.num_classes} "
                              f"classes; set loss.options.num_classes={ds.num_classes}")
        idx = labelled_subset(ds.y, o.labels_per_class, o.num_classes, o.label_seed)
        self.lab_index = idx
        self.lab_x = ds.batch(idx)["x"]
        self.lab_y = ds.y[idx].clone()

    def labelled(self, device) -> tuple[Tensor, Tensor]:
        """The next labelled mini-batch (x, y): successive random permutations of the labelled set."""
        if self.lab_x is None:
            self._load_labelled()
        n = len(self.lab_y)
        perms = [torch.randperm(n, generator=self.label_rng) for _ in range(math.ceil(self.labelled_batch / n))]
        idx = torch.cat(perms)[: self.labelled_batch]
        return self.lab_x[idx].to(device), self.lab_y[idx].to(device)

    # -- phases -----------------------------------------------------------------------------
    def on_step(self, step: int, progress: float) -> None:
        super().on_step(step, progress)
        self._init_due = self.options.data_init and step == 0

    def noise(self, n: int, device) -> Tensor:
        if self.noise_source is not None:
            return self.noise_source(n, device)
        return torch.randn(n, self.z_dim, device=device)

    def generate(self, n: int, device) -> Tensor:
        with self.autocast():
            return self.task.run(self.G, {"z": self.noise(n, device), "y": None}).float()

    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        device = self.device()
        if phase == "D":
            return self._d_step(batch, batch_size, device)
        if phase == "G":
            return self._g_step(batch, batch_size, device)
        raise ValueError(f"objective ssgan has no phase {phase!r}")

    def _d_step(self, batch, n: int, device) -> Dict[str, Tensor]:
        x_lab, y_lab = self.labelled(device)
        if self._init_due:  # on the first labelled batch: the same init for the ssgan and its baseline
            self._init_due = False
            self.D.data_init(x_lab)
        if self.supervised_only:
            with self.autocast():
                logits_lab = self.D(x_lab).float()
            terms = ssgan_d_loss(logits_lab, y_lab, None, None, 0.0)
            stats = {}
        else:
            x_unl = batch["x"]  # batch["y"] is never read
            with torch.no_grad():
                fake = self.generate(n, device)
            m = len(x_lab)
            # One forward for the three batches: D has no batch statistics, so it is the same as three.
            with self.autocast():
                logits = self.D(torch.cat([x_lab, x_unl.reshape(-1, *x_lab.shape[1:]), fake])).float()
            logits_lab, logits_unl, logits_fake = logits[:m], logits[m:m + len(x_unl)], logits[m + len(x_unl):]
            terms = ssgan_d_loss(logits_lab, y_lab, logits_unl, logits_fake, self.options.unsup_weight)
            stats = {"d_real": log_d_real(logits_unl.detach()).exp().mean(),
                     "d_fake": log_d_real(logits_fake.detach()).exp().mean()}
        self.backward(terms["loss"])
        stats.update({"d_loss": terms["loss"].detach(), "sup_loss": terms["sup"].detach(),
                      "unsup_loss": terms["unsup"].detach(),
                      "acc_labelled": (logits_lab.detach().argmax(1) == y_lab).float().mean()})
        return stats

    def _g_step(self, batch, n: int, device) -> Dict[str, Tensor]:
        with torch.no_grad(), self.autocast():
            f_real = self.D.features(batch["x"]).float()
        fake = self.generate(n, device)
        with self.autocast():
            f_fake = self.D.features(fake).float()
        loss = feature_matching_loss(f_real, f_fake)
        self.backward(loss)
        return {"g_loss": loss.detach()}

    # -- evaluation and state ---------------------------------------------------------------
    @torch.no_grad()
    def evaluate_model(self, data_cfg, split: str = "test", seed: int = 0, D: Optional[nn.Module] = None
                       ) -> Dict[str, float]:
        """{"accuracy": argmax of D's K logits against the labels of every image of ``split``}
        (eval mode: no noise; ``data.limit`` is not applied, so the whole split is scored).
        ``D``: another classifier to score (the trainer's average of D); None = this objective's D."""
        from ..data import load_dataset

        ds = load_dataset(dataclasses.replace(data_cfg, limit=None), split, seed=0)  # the whole split: no seed
        D, device = D if D is not None else self.D, self.device()
        was_training = D.training
        D.eval()
        correct = 0
        try:
            for i in range(0, len(ds), 1000):
                b = ds.batch(torch.arange(i, min(i + 1000, len(ds))))
                with self.autocast():
                    logits = D(b["x"].to(device)).float()
                correct += int((logits.argmax(1).cpu() == b["y"]).sum())
        finally:
            D.train(was_training)
        return {"accuracy": correct / len(ds)}

    def state_dict(self) -> dict:
        return {"label_rng": self.label_rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "label_rng" in state:
            self.label_rng.set_state(torch.as_tensor(state["label_rng"], dtype=torch.uint8).cpu())
