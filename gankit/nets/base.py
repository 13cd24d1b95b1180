"""The network registry and the interface every G/D family follows.

A generator is ``G(z: (B, z_dim), y: (B,) int64 | None) -> (B, *sample_shape)``;
a discriminator is ``D(x: (B, *sample_shape), y | None) -> (B,)`` raw scores ("logits").
Both are built from ``(sample_shape, num_classes, **kwargs)`` so one family serves every
resolution and channel count.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError
from ..registry import Registry

NETWORKS = Registry("network family")

_FIXED = {"self", "z_dim", "sample_shape", "num_classes"}


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

    def build(self, z_dim: int, sample_shape: tuple, num_classes: int, g_kwargs: dict, d_kwargs: dict):
        self.check_kwargs(g_kwargs, d_kwargs)
        try:
            g = self.generator(z_dim=z_dim, sample_shape=tuple(sample_shape), num_classes=num_classes, **g_kwargs)
            d = self.discriminator(sample_shape=tuple(sample_shape), num_classes=num_classes, **d_kwargs)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model ({self.name}): {e}") from None
        return g, d


def register_family(name: str, generator: type, discriminator: type, reference: str = "") -> Family:
    return NETWORKS.register(name, Family(name, generator, discriminator, reference))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
