"""Objectives: what a model is made of (named networks, optimisers, phases, task) and what each
phase computes. One file per family; ``loss.objective`` picks one from :data:`OBJECTIVES`."""
from .base import OBJECTIVES, DataInfo, Objective, OptimGroup, Phase, parse_options, register_objective
from .gan import GANObjective
from . import acgan, cyclegan, pix2pix, unrolled  # noqa: F401,E402  (register the objectives)
from . import vae  # noqa: F401,E402  (the VAE baseline)
from . import anomaly  # noqa: F401,E402  (ganomaly, autoencoder: anomaly detection)
from . import ssgan  # noqa: F401,E402  (the semi-supervised GAN)
from . import sr  # noqa: F401,E402  (super-resolution: SRResNet, SRGAN, ESRGAN)
from . import inpaint, pix2pixhd  # noqa: F401,E402  (inpainting and uncropping; label map -> image)
from . import stylegan  # noqa: F401,E402  (StyleGAN, StyleGAN2: mixing, path length, ADA)
from . import biggan  # noqa: F401,E402  (BigGAN: orthogonal regularisation)
from . import progan  # noqa: F401,E402  (ProGAN: progressive growing)
from ..config import check_name, register_check


@register_check
def _check_objective(cfg) -> None:
    check_name("loss.objective", cfg.loss.objective, OBJECTIVES)
    OBJECTIVES.get(cfg.loss.objective).check_config(cfg)


__all__ = ["OBJECTIVES", "DataInfo", "Objective", "OptimGroup", "Phase", "GANObjective", "parse_options",
           "register_objective"]
