"""The variational auto-encoder (Kingma & Welling 2014), the likelihood baseline GANs are compared with.

Networks: ``E`` (an encoder of :data:`gankit.nets.vae.ENCODERS`, settings ``model.nets.E``) maps an
image x to the mean and log-variance of a diagonal Gaussian q(z|x); ``G`` (a family's generator,
``model.g``: the decoder) maps z to the decoder's mean in model range [-1, 1]. ``G`` has a GAN
generator's interface, so sampling (z ~ N(0, I) -> G(z)), grids, ``gankit eval`` and export are the
GAN's. One optimiser (``G``, from ``train.g_optim``) steps E and G together in one phase ``G``.

The loss per image is the negative ELBO (Kingma & Welling 2014, Eq. 10, one sample of z per image by
the reparameterisation z = mu + exp(logvar / 2)·eps, eps ~ N(0, I)):

    -ELBO_β = -log p(x | z) + β · KL(q(z|x) || N(0, I)),
    KL = ½ Σ_j (mu_j² + exp(logvar_j) − 1 − logvar_j)       (Appendix B, closed form)

with the reconstruction term summed over every pixel and channel (nats per image), and ``β`` of
Higgins et al. (2017) (β = 1: the ELBO itself). Decoders (``loss.options.decoder``):

* ``bernoulli`` (default): pixels t = (x + 1) / 2 in [0, 1] scored by the binary cross-entropy against
  p = (G(z) + 1) / 2, as Kingma & Welling's MNIST experiments; on grey levels it is the usual
  (unnormalised) continuous relaxation. It has no scale to tune, so β = 1 means the ELBO.
* ``gaussian``: N(x; G(z), σ²I) on [-1, 1] pixels with a fixed σ (``sigma``), the constant
  included, so ``recon`` is a true negative log-density there. σ trades off against β (the loss is
  ‖x − G(z)‖² / 2σ² + β·KL up to a constant): a large σ blurs, a small one ignores the prior.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..nets import build_net, check_net_kwargs
from ..nets.vae import ENCODERS
from ..tasks import GenerationTask
from .base import DISCRIMINATOR_KEYS, Objective, OptimGroup, Phase, parse_options, refuse_unused, register_objective

DECODERS = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class VAEOptions:
    beta: float = 1.0                 # weight of the KL term (1: the ELBO; Higgins et al. 2017's β-VAE)
    decoder: str = "bernoulli"        # bernoulli | gaussian: p(x|z), see the module docstring
    sigma: float = 0.1                # gaussian decoder: fixed std of p(x|z), in [-1, 1] pixel units
    kl_warmup: float = 0.0            # fraction of the budget over which β rises linearly from 0 (0: off)


# -- the loss, pure functions ----------------------------------------------------------------------
def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row, (B,) nats (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)


def reconstruction_nll(x: Tensor, mean: Tensor, decoder: str = "bernoulli", sigma: float = 0.1) -> Tensor:
    """−log p(x | z) per image, (B,) nats summed over every pixel; ``x`` and the decoder's ``mean``
    in [-1, 1] (model range). See the module docstring for the two decoders."""
    dtype = torch.promote_types(mean.dtype, torch.float32)  # fp32 at least (bf16 autocast), fp64 kept
    x, mean = x.to(dtype).flatten(1), mean.to(dtype).flatten(1)
    if decoder == "bernoulli":
        # F.binary_cross_entropy clamps each log at -100, so a saturated tanh gives a finite loss.
        return F.binary_cross_entropy((mean + 1) / 2, (x + 1) / 2, reduction="none").sum(1)
    if decoder == "gaussian":
        return ((x - mean).square() / (2 * sigma ** 2)).sum(1) + x.shape[1] * 0.5 * math.log(2 * math.pi * sigma ** 2)
    raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")


def negative_elbo(x: Tensor, mean: Tensor, mu: Tensor, logvar: Tensor, beta: float = 1.0,
                  decoder: str = "bernoulli", sigma: float = 0.1) -> Dict[str, Tensor]:
    """``{"loss", "recon", "kl"}``: batch means per image of −log p(x|z) + β·KL, −log p(x|z) and KL."""
    recon = reconstruction_nll(x, mean, decoder, sigma)
    kl = kl_standard_normal(mu, logvar)
    return {"loss": (recon + beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean()}


def build_encoder(cfg, z_dim: int, sample_shape: tuple) -> nn.Module:
    """``E`` from ``model.nets.E`` (``arch`` picks an encoder, ``conv`` by default)."""
    kwargs = dict(cfg.model.nets.get("E", {}))
    arch = kwargs.pop("arch", "conv")
    try:
        return ENCODERS.get(arch)(z_dim=z_dim, sample_shape=tuple(sample_shape), **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model.nets.E ({arch}): {e}") from None


@register_objective("vae")
class VAEObjective(Objective):
    Options = VAEOptions
    ema = ("G",)
    optimizers = {"G": OptimGroup(("E", "G"), "g_optim")}

    def __init__(self, nets: Dict[str, nn.Module], cfg, data, **kwargs):
        super().__init__(nets, cfg, data, **kwargs)
        self.z_dim = cfg.model.z_dim
        self.task = GenerationTask(self.z_dim, 0)
        self.beta_now = self.options.beta if self.options.kl_warmup <= 0 else 0.0
        # Set by the Trainer: ``(n, device) -> (n, z_dim)`` standard normal draws (one seeded stream,
        # sharded under torchrun); here the reparameterisation's eps. None = torch's global RNG.
        self.noise_source: Optional[Callable[[int, torch.device], Tensor]] = None

    @classmethod
    def build_networks(cls, cfg, data) -> Dict[str, nn.Module]:
        shape = tuple(data.sample_shape)
        return {"E": build_encoder(cfg, cfg.model.z_dim, shape),
                "G": build_net(cfg.model, "G", "G", z_dim=cfg.model.z_dim, sample_shape=shape, num_classes=0)}

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        check_net_kwargs(cfg.model, "G", "G")
        opts = parse_options(cls, cfg.loss.options)
        if opts.decoder not in DECODERS:
            raise ConfigError(f"loss.options.decoder: invalid value {opts.decoder!r}; allowed: {', '.join(DECODERS)}")
        if not opts.beta >= 0:
            raise ConfigError(f"loss.options.beta: invalid value {opts.beta!r}; allowed: a number >= 0")
        if not opts.sigma > 0:
            raise ConfigError(f"loss.options.sigma: invalid value {opts.sigma!r}; allowed: a number > 0")
        if not 0 <= opts.kl_warmup <= 1:
            raise ConfigError(f"loss.options.kl_warmup: invalid value {opts.kl_warmup!r}; allowed: 0 to 1 "
                              "(a fraction of the budget)")
        if cfg.model.d:
            raise ConfigError("model.d: objective vae has no discriminator; the encoder's settings are "
                              "model.nets.E (e.g. model.nets.E.width=32)")
        if cfg.model.conditional:
            raise ConfigError("model.conditional: objective vae is unconditional; set it to false")
        refuse_unused(cfg, "vae", DISCRIMINATOR_KEYS, "has no discriminator for it")
        unknown = set(cfg.model.nets) - {"E", "G"}
        if unknown:
            raise ConfigError(f"model.nets.{sorted(unknown)[0]}: objective vae has networks E and G only")
        e = dict(cfg.model.nets.get("E", {}))
        arch = e.pop("arch", "conv")
        if arch not in ENCODERS:
            raise ConfigError(f"model.nets.E.arch: invalid value {arch!r}; allowed: {', '.join(ENCODERS.names())}")
        allowed = [p for p in inspect.signature(ENCODERS.get(arch).__init__).parameters
                   if p not in ("self", "z_dim", "sample_shape")]
        for k in e:
            if k not in allowed:
                raise ConfigError(f"unknown config key model.nets.E.{k} for encoder {arch!r}; "
                                  f"allowed: {', '.join(allowed)}")

    def phases(self, d_steps: int) -> List[Phase]:
        return [Phase("G", "G", ("E", "G"))]

    def on_step(self, step: int, progress: float) -> None:
        w = self.options.kl_warmup
        self.beta_now = self.options.beta * (min(1.0, progress / w) if w > 0 else 1.0)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z|x), each (B, z_dim), fp32."""
        with self.autocast():
            mu, logvar = self.nets["E"](x)
        return mu.float(), logvar.float()

    def reconstruct(self, x: Tensor, sample: bool = False) -> Tensor:
        """G(mu) (or G(z) with z ~ q(z|x) when ``sample``) for images ``x`` in [-1, 1]."""
        mu, logvar = self.encode(x)
        z = mu + (logvar / 2).exp() * torch.randn_like(mu) if sample else mu
        with self.autocast():
            return self.task.run(self.nets["G"], {"z": z, "y": None}).float()

    def accumulate_gradients(self, phase: str, batch: Optional[Dict[str, Tensor]], batch_size: int
                             ) -> Dict[str, Tensor]:
        x = batch["x"]
        mu, logvar = self.encode(x)
        eps = (self.noise_source(x.shape[0], x.device) if self.noise_source is not None
               else torch.randn_like(mu))
        z = mu + (logvar / 2).exp() * eps  # the reparameterisation trick (Kingma & Welling 2014, Sec. 2.4)
        with self.autocast():
            mean = self.task.run(self.nets["G"], {"z": z, "y": None})
        o = self.options
        terms = negative_elbo(x, mean, mu, logvar, self.beta_now, o.decoder, o.sigma)
        self.backward(terms["loss"])
        return {k: v.detach() for k, v in terms.items()}
