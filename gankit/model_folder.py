"""A model folder: what ``gankit export --format folder`` writes and ``gankit.load(folder)`` reads.

::

    config.json        {"format": "gankit-model-v1", "config": ..., "data": ..., "step": ..., "source": ...,
                        "files": {"model.safetensors": SHA-256, "README.md": SHA-256}}
    model.safetensors  the sampling weights, one tensor per ``NETWORK.parameter`` (EMA where the run kept one)
    README.md          the model card

Reading one verifies the weights against the SHA-256 config.json records (folders written before it
recorded one are read unchecked), refuses non-finite weights, and imports no code: a config that names
``plugins`` is refused unless those modules are already imported or the caller trusts them.

The layout lives here, below both the writer (:mod:`gankit.export`) and the reader
(:func:`gankit.api.load`), so neither imports the other.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import sys
from pathlib import Path
from typing import Dict, Tuple

import torch

from .errors import CheckpointError, GankitError, option

FOLDER_FORMAT = "gankit-model-v1"
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
#: every file a model folder holds; config.json's "files" maps the others to their SHA-256
FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is a folder ``gankit export --format folder`` wrote."""
    return (Path(path) / CONFIG_FILE).is_file() and (Path(path) / WEIGHTS_FILE).is_file()


def read_folder_config(path: Path) -> dict:
    """The folder's ``config.json`` (format checked); a bad file is one clear error."""
    cfg_path = Path(path) / CONFIG_FILE
    try:
        meta = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise GankitError(f"{cfg_path}: not readable as JSON ({e}); export the model folder again") from None
    if meta.get("format") != FOLDER_FORMAT:
        raise GankitError(f"{cfg_path}: not a gankit model folder (format {meta.get('format')!r}, "
                          f"expected {FOLDER_FORMAT!r})")
    return meta


def untrusted_plugins(meta: dict) -> list:
    """The modules a model folder's config names in ``plugins`` that are not imported yet."""
    plugins = (meta.get("config") or {}).get("plugins") or []
    return [str(p) for p in plugins if str(p) not in sys.modules]


_TRUSTED = contextvars.ContextVar("gankit_trust_plugins", default=False)


@contextlib.contextmanager
def trusting_plugins():
    """While inside, model folders' plugins are imported as if ``trust_plugins=True`` were passed
    (``gankit --trust-plugins COMMAND``)."""
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def check_plugins(path: Path, meta: dict, trust_plugins: bool = False) -> None:
    """Refuse, in one line, a folder whose config names ``plugins`` not imported yet: importing a
    module runs its code, and a model folder (from the Hub, say) must not run code by being loaded.
    ``trust_plugins`` (or :func:`trusting_plugins`): the caller has decided to run them (the importer
    then imports them)."""
    from .errors import on_command_line

    missing = untrusted_plugins(meta)
    if missing and not (trust_plugins or _TRUSTED.get()):
        names = ", ".join(missing)
        how = ("run the command as gankit --trust-plugins COMMAND ..." if on_command_line()
               else f"import them yourself first (import {missing[0]}), or pass trust_plugins=True")
        raise GankitError(f"{Path(path) / CONFIG_FILE}: this model folder's config names plugins {names}: they run "
                          f"code, so gankit does not import them; if you trust them, {how}")


def read_model_folder(path: Path, trust_plugins: bool = False) -> Tuple[dict, Dict[str, Dict[str, torch.Tensor]]]:
    """``(config.json, {network: state_dict})`` of a model folder; never unpickles. The weights file
    must match the SHA-256 config.json records and hold finite values; a config naming ``plugins``
    not imported yet is refused (:func:`check_plugins`) unless ``trust_plugins``."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    meta = read_folder_config(path)
    check_plugins(path, meta, trust_plugins)
    weights = path / WEIGHTS_FILE
    try:
        data = weights.read_bytes()
        tensors = load(data)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights}: corrupt or truncated ({e}); export the model again") from None
    want = (meta.get("files") or {}).get(WEIGHTS_FILE)
    if want is not None:
        import hashlib

        if hashlib.sha256(data).hexdigest() != want:
            raise CheckpointError(f"{weights}: damaged: its SHA-256 does not match the one in {CONFIG_FILE}; "
                                  "download or export the model folder again")
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"{weights}: tensor {key} holds {bad} NaN or infinite values; these weights "
                                  "cannot make outputs: export the model again from a healthy checkpoint")
    states: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        net, _, param = key.partition(".")  # network names (G, D, G_AB, ...) have no dot
        states.setdefault(net, {})[param] = value
    return meta, states
