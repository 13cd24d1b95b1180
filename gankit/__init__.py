"""gankit: generative adversarial networks, trained, diagnosed and evaluated honestly."""
from importlib import import_module

from .version import __version__  # noqa: F401  (modules import it from .version, not the package face)

# Imported on first use, so `import gankit.config` (or reading a checkpoint) loads only what it needs.
_EXPORTS = {"GAN": ".api", "load": ".api", "sample": ".api", "translate": ".api", "mix": ".steer.mixing",
            "project": ".steer.projection", "edit": ".steer.directions", "truncation_curve": ".steer.truncation", "Config": ".config",
            "load_config": ".config", "GankitError": ".errors", "evaluate": ".evaluation"}


def __getattr__(name):
    if name in ("recipes", "train"):  # packages callable as their function (gankit/facade.py)
        return import_module(f".{name}", __name__)
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["GAN", "Config", "GankitError", "edit", "evaluate", "load", "load_config", "mix", "project", "recipes",
           "sample", "translate", "train", "truncation_curve", "__version__"]
