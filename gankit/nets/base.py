"""The network registry and the interface every family follows.

A family is a generator and a discriminator designed together (one file each). What their
constructors receive from the engine (the *fixed* arguments) depends on the objective that
builds them; everything else is a keyword argument with a default, set from the config:

* noise generators (objectives ``gan``, ``acgan``, ``unrolled``):
  ``G(z_dim=, sample_shape=, num_classes=)``, ``G(z: (B, z_dim), y: (B,) int64 | None) -> (B, *sample_shape)``;
  ``D(sample_shape=, num_classes=)``, ``D(x, y | None) -> (B,)`` raw scores ("logits");
* translators (``pix2pix``, ``cyclegan``): ``G(in_channels=, out_channels=)``, ``G(x) -> y``;
  ``D(in_channels=)``, ``D(x, cond | None) -> (B, 1, h, w)`` patch logits;
* super-resolution (``sr``): ``G(in_channels=, out_channels=, scale=)``, ``G(x) -> (B, C, h·scale, w·scale)``;
  ``D(in_channels=)``, ``D(x) -> (B,)``; inpainting and Pix2PixHD discriminators return a dict / a
  list of scales (their objectives say what they read).

One family serves every resolution and channel count, square or not (H ≠ W); a network with a size
rule states it as ``check_size(h, w, **kwargs)`` (see :mod:`gankit.nets.sizes`), which the config
check and the network itself both use.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass

from torch import nn

from ..config import coerce, did_you_mean
from ..errors import ConfigError
from ..registry import Registry
from .sizes import ImageSizeError

NETWORKS = Registry("network family")

#: Arguments the engine passes; never set from a config.
_FIXED = {"self", "z_dim", "sample_shape", "num_classes", "in_channels", "out_channels", "scale"}


@dataclass(frozen=True)
class Family:
    """A G and a D designed together (one file per family)."""

    name: str
    generator: type
    discriminator: type
    reference: str = ""

    def check_kwargs(self, g_kwargs: dict, d_kwargs: dict) -> None:
        for side, cls, kwargs in (("g", self.generator, g_kwargs), ("d", self.discriminator, d_kwargs)):
            params = inspect.signature(cls.__init__).parameters
            allowed = [p for p in params if p not in _FIXED]
            for k in kwargs:
                if k not in allowed:
                    raise ConfigError(f"unknown config key model.{side}.{k} for arch {self.name!r}; "
                                      f"allowed: {', '.join(allowed)}")

    def role(self, role: str) -> type:
        return self.generator if role == "G" else self.discriminator

    def build(self, z_dim: int, sample_shape: tuple, num_classes: int, g_kwargs: dict, d_kwargs: dict):
        self.check_kwargs(g_kwargs, d_kwargs)
        try:
            g = self.generator(z_dim=z_dim, sample_shape=tuple(sample_shape), num_classes=num_classes, **g_kwargs)
            d = self.discriminator(sample_shape=tuple(sample_shape), num_classes=num_classes, **d_kwargs)
        except ImageSizeError as e:
            raise ConfigError(e.for_config()) from None
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model ({self.name}): {e}") from None
        return g, d


def net_kwargs(model_cfg, name: str, role: str) -> tuple[str, dict, str]:
    """``(arch, kwargs, key prefix)`` of network ``name`` (role ``G`` or ``D``): ``model.g`` /
    ``model.d`` overlaid by ``model.nets.NAME``, whose ``arch`` may pick another family."""
    kwargs = dict(model_cfg.g if role == "G" else model_cfg.d)
    own = dict(model_cfg.nets.get(name, {}))
    arch = own.pop("arch", model_cfg.arch)
    kwargs.update(own)
    prefix = f"model.nets.{name}" if own else f"model.{role.lower()}"
    return arch, kwargs, prefix


def check_net_kwargs(model_cfg, name: str, role: str) -> None:
    """Fail with one line naming the key unless network ``name``'s settings fit its constructor."""
    arch, kwargs, prefix = net_kwargs(model_cfg, name, role)
    if arch not in NETWORKS:
        key = f"model.nets.{name}.arch" if "arch" in model_cfg.nets.get(name, {}) else "model.arch"
        raise ConfigError(f"{key}: invalid value {arch!r};{did_you_mean(arch, NETWORKS.names())} allowed: "
                          f"{', '.join(NETWORKS.names())} (a family of your own registers when its module is "
                          "imported: name it in the config's plugins)")
    cls = NETWORKS.get(arch).role(role)
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in _FIXED]
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # an annotation that does not resolve: names are still checked
        hints = {}
    for k, v in kwargs.items():
        where = f"model.nets.{name}" if k in model_cfg.nets.get(name, {}) else f"model.{role.lower()}"
        if k not in allowed:
            raise ConfigError(f"unknown config key {where}.{k} for arch {arch!r} ({name}); "
                              f"allowed: {', '.join(allowed)}")
        try:
            coerce(v, hints[k], f"{where}.{k}")  # the constructor's annotation: width "abc" is one line
        except (KeyError, TypeError):
            pass  # not annotated, or a type the config layer does not describe
        if isinstance(v, int) and not isinstance(v, bool) and v < 0:  # no width, depth or count is negative
            raise ConfigError(f"{where}.{k}: invalid value {v}; allowed: an integer >= 0")


def build_net(model_cfg, name: str, role: str, **fixed) -> nn.Module:
    """Network ``name`` of ``role`` (``G`` or ``D``), built from the config and the engine's ``fixed``
    arguments (see the module docstring)."""
    check_net_kwargs(model_cfg, name, role)
    arch, kwargs, _ = net_kwargs(model_cfg, name, role)
    try:
        return NETWORKS.get(arch).role(role)(**fixed, **kwargs)
    except ImageSizeError as e:
        raise ConfigError(e.for_config()) from None
    except (ValueError, TypeError, RuntimeError) as e:  # e.g. a width of 0: torch's message, with the network named
        raise ConfigError(f"model ({arch}, {name}): {e}") from None


def register_family(name: str, generator: type, discriminator: type, reference: str = "") -> Family:
    return NETWORKS.register(name, Family(name, generator, discriminator, reference))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_config_sizes(cfg) -> None:
    """Fail with one line naming ``data.resolution`` when a network of ``cfg.model`` cannot take it.

    Checks the networks of role G and D (``model.g`` / ``model.d``) and every network named in
    ``model.nets`` (role from its first letter: G_AB is a generator, D_A a discriminator). Nothing
    is built; a network whose settings are themselves invalid is left to its constructor's error.
    """
    res = cfg.data.resolution
    if res is None:
        return
    h, w = (res, res) if isinstance(res, int) else tuple(res)
    names = {"G": "G", "D": "D"}
    names.update({n: n[0] for n in cfg.model.nets if n[:1] in ("G", "D")})
    for name, role in names.items():
        arch, kwargs, _ = net_kwargs(cfg.model, name, role)
        if arch not in NETWORKS:
            continue
        check = getattr(NETWORKS.get(arch).role(role), "check_size", None)
        if check is None:
            continue
        try:
            check(h, w, **kwargs)
        except ImageSizeError as e:
            raise ConfigError(e.for_config()) from None
        except (TypeError, ValueError):
            continue  # a bad setting (e.g. depth: "x"): the constructor names it
