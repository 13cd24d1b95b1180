"""Shipped YAML recipes: ``gankit recipes`` lists them, ``gankit train NAME`` runs one."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import yaml

from ..errors import ConfigError
from ..facade import make_callable

RECIPE_DIR = Path(__file__).parent


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.exists():
        import difflib
        close = difflib.get_close_matches(name, recipe_names(), n=3)
        if close:
            raise ConfigError(f"no recipe or YAML file {name!r}; did you mean {' or '.join(close)}? "
                              "(gankit recipes lists them all)")
        raise ConfigError(f"no recipe or YAML file {name!r}; shipped recipes: {', '.join(recipe_names())} "
                          "(or give a path to a .yaml file)")
    return path


def recipe_descriptions() -> Dict[str, str]:
    out = {}
    for name in recipe_names():
        data = yaml.safe_load(recipe_path(name).read_text()) or {}
        out[name] = str(data.get("description", "")).strip().splitlines()[0] if data.get("description") else ""
    return out


make_callable(__name__, __name__, "recipe_names")  # gankit.recipes(): the names, also once the package is imported
