"""Network families (G and D designed together), one file each, chosen by ``model.arch``."""
from . import biggan, cyclegan, dcgan, ganomaly, inpaint, mlp, pix2pix, pix2pixhd, progan, resnet, sr, ssgan, stylegan  # noqa: F401  (register the families)
from .base import NETWORKS, Family, build_net, check_config_sizes, check_net_kwargs, count_parameters, register_family
from .sizes import ImageSizeError
from ..config import check_name, register_check


@register_check
def _check_model(cfg) -> None:
    check_name("model.arch", cfg.model.arch, NETWORKS)
    check_config_sizes(cfg)  # data.resolution against every network's size rule, before data is loaded


__all__ = ["NETWORKS", "Family", "ImageSizeError", "build_net", "check_net_kwargs", "count_parameters",
           "register_family"]
