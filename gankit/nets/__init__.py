"""Network families (G and D designed together), one file each, chosen by ``model.arch``."""
from . import cyclegan, dcgan, mlp, pix2pix, resnet  # noqa: F401  (register the families)
from .base import NETWORKS, Family, build_net, check_net_kwargs, count_parameters
from ..config import check_name, register_check


@register_check
def _check_model(cfg) -> None:
    check_name("model.arch", cfg.model.arch, NETWORKS)


__all__ = ["NETWORKS", "Family", "build_net", "check_net_kwargs", "count_parameters"]
