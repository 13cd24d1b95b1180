"""What every paired image-to-image objective shares: a translator G, an optional critic, two phases.

Pix2Pix, super-resolution (SRResNet, SRGAN, ESRGAN), inpainting and Pix2PixHD all train one
network G that maps an input A to its paired target B, with a reconstruction loss and — unless
``loss.options.adversarial`` is false — discriminators that judge G's outputs. A subclass says
which networks it builds and what the two losses are (:meth:`PairedObjective.d_loss`,
:meth:`PairedObjective.g_loss`); this base class owns the optimisers, the phases (k D steps,
then one G step; with one D step the G step reuses that step's batch and G(A)), the task (the
data's compose rule: an inpainter keeps the known pixels), the checks of the config, and the
two-stage start: ``loss.options.init_from`` (a run folder or checkpoint) starts G from that run's G
— ESRGAN's GAN stage from its PSNR-oriented model, or any GAN from its reconstruction-only model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from torch import Tensor, nn

from ..errors import ConfigError
from ..losses import LOSSES
from ..losses.perceptual import FeatureLoss
from ..nets import check_net_kwargs
from ..tasks import TranslationTask
from .base import Objective, OptimGroup, Phase, refuse_unused

Stats = Dict[str, Tensor]


def check_translation_config(cfg, name: str) -> None:
    """What a translation objective cannot use: parts of the noise-driven GAN."""
    if cfg.loss.regularizers:
        raise ConfigError(f"loss.regularizers: objective {name} takes none; remove them")
    if cfg.loss.clip_d_weights is not None:
        raise ConfigError(f"loss.clip_d_weights: objective {name} does not clip; set it to null")
    # DiffAugment is never applied by a translator's critic: accepted, it would sit in config.yaml as if it had acted.
    refuse_unused(cfg, name, ("loss.augment",), "applies no DiffAugment (the paired-folder and unpaired-folder "
                  "data jitter and mirror training images with data.options {load_size: 286, flip: true})")
    if cfg.eval.every is not None:
        raise ConfigError(f"eval.every: objective {name} is scored after training (gankit eval RUN: PSNR, SSIM, "
                          "FID, content kept); set eval.every to null")
    if cfg.model.conditional:
        raise ConfigError(f"model.conditional: objective {name} is conditioned on its input image, not a class; "
                          "set it to false")


def feature_loss(spec: str, data_cfg, criterion: str) -> FeatureLoss:
    """The frozen feature network of ``spec`` ("domain", or a safetensors file) as a loss."""
    from ..data.restoration import clean_domain_config
    from ..metrics.domain_net import DomainFeatures, load_domain_net

    if spec == "domain":
        net = DomainFeatures.for_dataset(clean_domain_config(data_cfg)).net
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(f"loss.options.features: {path} is not a file; give a gankit domain network "
                              "(.safetensors) or 'domain'")
        net = load_domain_net(path)[0]
    return FeatureLoss(net, criterion)


def init_weights(path: str, name: str = "G") -> Dict[str, Tensor]:
    """Weights of network ``name`` (its EMA copy when the run kept one) in a run folder or checkpoint."""
    from ..checkpoint import load_checkpoint, load_latest

    p = Path(path).expanduser()
    if p.is_dir():
        found = load_latest(p)
        if found is None:
            raise ConfigError(f"loss.options.init_from: {p} has no checkpoint; train that run first")
        state = found[0]
    elif p.is_file():
        state = load_checkpoint(p)
    else:
        raise ConfigError(f"loss.options.init_from: {p} is neither a run folder nor a checkpoint; train the first "
                          f"stage into it (a recipe's default names that recipe's run folder), or set "
                          f"loss.options.init_from=null to start from scratch")
    mods = state["modules"]
    key = f"{name}_ema" if f"{name}_ema" in mods else name
    if key not in mods:
        raise ConfigError(f"loss.options.init_from: {p} has no network {name}")
    return mods[key]


def load_init(net: nn.Module, path: str, name: str = "G") -> None:
    """Start ``net`` from ``init_weights(path, name)``; another architecture is one line naming both."""
    state = init_weights(path, name)
    mine = net.state_dict()
    other = sorted(set(state) ^ set(mine)) or [k for k in mine if tuple(mine[k].shape) != tuple(state[k].shape)]
    if other:
        raise ConfigError(f"loss.options.init_from: {path}'s {name} is another network than this run's "
                          f"({len(other)} tensors differ, e.g. {other[0]}); start from a run with the same model settings")
    net.load_state_dict(state)


class PairedObjective(Objective):
    """Base of the paired translators; ``Options`` must have ``adversarial: bool``."""

    kind = "translation"
    ema = ("G",)
    nets_checked: Tuple[str, ...] = ("G", "D")

    def __init__(self, nets: Dict[str, nn.Module], cfg, data, **kwargs):
        super().__init__(nets, cfg, data, **kwargs)
        self.loss = LOSSES.get(cfg.loss.name)
        self.task = TranslationTask("A", "B", "G", compose=getattr(data, "compose", "none"))
        self.adversarial = self.options.adversarial
        self.optimizers = {"G": OptimGroup(("G",), "g_optim")}
        if self.adversarial:
            self.optimizers["D"] = OptimGroup(("D",), "d_optim")
        self._cached: Optional[tuple] = None
        self.reuse = False

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        check_translation_config(cfg, cls.registered_name)
        for name in cls.nets_checked:
            check_net_kwargs(cfg.model, name, name)

    def tasks(self) -> Dict[str, TranslationTask]:
        return {self.cfg.data.direction: self.task}

    def prepare(self) -> None:
        start = getattr(self.options, "init_from", None)
        if start:
            load_init(self.nets["G"], start)

    def phases(self, d_steps: int) -> List[Phase]:
        if not self.adversarial:
            return [Phase("G", "G", ("G",))]
        # One D step per G step reuses the D step's G(x) and batch for the G step.
        self.reuse = d_steps == 1
        return [Phase("D", "D", ("D",), repeats=d_steps, graph=("G",) if self.reuse else ()),
                Phase("G", "G", ("G",), needs_data=not self.reuse)]

    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int) -> Stats:
        if phase == "D":
            with self.autocast():
                fake = self.task.run(self.nets["G"], {"x": batch["A"]})
            if self.reuse:
                self._cached = (batch, fake)
            loss, stats = self.d_loss(batch, fake.detach())
        else:
            if batch is None:
                batch, fake = self._cached
                self._cached = None
            else:
                with self.autocast():
                    fake = self.task.run(self.nets["G"], {"x": batch["A"]})
            loss, stats = self.g_loss(batch, fake)
        self.backward(loss)
        return stats

    def d_loss(self, batch: Dict[str, Tensor], fake: Tensor) -> Tuple[Tensor, Stats]:
        """D's loss on real ``batch["B"]`` and G's detached outputs ``fake``, and what to log."""
        raise NotImplementedError

    def g_loss(self, batch: Dict[str, Tensor], fake: Tensor) -> Tuple[Tensor, Stats]:
        """G's loss on its outputs ``fake`` for ``batch``, and what to log."""
        raise NotImplementedError
