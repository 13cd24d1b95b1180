"""Network families (G and D designed together), one file each, chosen by ``model.arch``."""
from . import dcgan, mlp, resnet  # noqa: F401  (register the families)
from .base import NETWORKS, Family, count_parameters

__all__ = ["NETWORKS", "Family", "count_parameters"]
