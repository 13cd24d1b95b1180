"""A model folder: what ``gankit export --format folder`` writes and ``gankit.load(folder)`` reads.

::

    config.json        {"format": "gankit-model-v1", "config": ..., "data": ..., "step": ..., "source": ...}
    model.safetensors  the sampling weights, one tensor per ``NETWORK.parameter`` (EMA where the run kept one)
    README.md          the model card

The layout lives here, below both the writer (:mod:`gankit.export`) and the reader
(:func:`gankit.api.load`), so neither imports the other.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import torch

from .errors import CheckpointError, GankitError

FOLDER_FORMAT = "gankit-model-v1"
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"


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


def read_model_folder(path: Path) -> Tuple[dict, Dict[str, Dict[str, torch.Tensor]]]:
    """``(config.json, {network: state_dict})`` of a model folder; never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_folder_config(path)
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path / WEIGHTS_FILE}: corrupt or truncated ({e}); export the model again") from None
    states: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        net, _, param = key.partition(".")  # network names (G, D, G_AB, ...) have no dot
        states.setdefault(net, {})[param] = value
    return meta, states
