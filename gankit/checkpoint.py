"""Checkpoints as one safetensors file: every tensor as a tensor, everything else as JSON
in the header's metadata. Loading never unpickles and never executes code from the file.

Nested state (optimizer state dicts, RNG states, sampler positions) is flattened: each
tensor leaf becomes ``prefix/path/to/leaf`` in the file, and the JSON skeleton keeps
``{"__tensor__": key}`` where it stood.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

from . import faults
from .errors import CheckpointError
from .utils import atomic_write_bytes

#: The format written now. v2 (named networks): ``modules`` and ``optimizers`` keyed by the objective's
#: names, ``objective`` holds the objective's own state, ``data`` what rebuilding the networks needs.
#: v1 (the G/D pair engine) used the same keys for a GAN (``G``, ``D``, ``G_ema``) and had no
#: objective state; it loads unchanged (``state["format_version"]`` says which was read).
FORMAT = "gankit-checkpoint-v2"
FORMATS = {"gankit-checkpoint-v1": 1, "gankit-checkpoint-v2": 2}

# A run folder's checkpoints. Writing ``latest`` first moves the one before it to ``previous``, so a
# run whose latest checkpoint is damaged (or missing: killed between the two renames) resumes from
# the one before; ``best`` is the evaluator's choice (the final state without an evaluator).
LATEST = "checkpoints/latest.safetensors"
PREVIOUS = "checkpoints/previous.safetensors"
BEST = "checkpoints/best.safetensors"


def flatten(obj: Any, prefix: str, tensors: Dict[str, torch.Tensor]) -> Any:
    """Replace tensor leaves of ``obj`` by references, collecting them into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out[str(k)] = flatten(v, f"{prefix}/{k}", tensors)
        if any(not isinstance(k, str) for k in obj):
            out["__int_keys__"] = [str(k) for k in obj if isinstance(k, int)]
        return out
    if isinstance(obj, (list, tuple)):
        return {"__list__": [flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)],
                "__tuple__": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def unflatten(skeleton: Any, tensors: Dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__list__" in skeleton:
            items = [unflatten(v, tensors) for v in skeleton["__list__"]]
            return tuple(items) if skeleton.get("__tuple__") else items
        int_keys = set(skeleton.get("__int_keys__", []))
        return {(int(k) if k in int_keys else k): unflatten(v, tensors)
                for k, v in skeleton.items() if k != "__int_keys__"}
    return skeleton


def save_checkpoint(path: Path, state: Dict[str, Any], before_replace=None) -> None:
    """Write ``state`` (nested dicts of tensors and plain values) atomically to ``path``
    (``before_replace``: see :func:`~gankit.utils.atomic_write_bytes`)."""
    tensors: Dict[str, torch.Tensor] = {}
    skeleton = flatten(state, "s", tensors)
    meta = {"format": FORMAT, "state": json.dumps(skeleton)}
    atomic_write_bytes(Path(path), safetensors_save(tensors, metadata=meta), before_replace=before_replace)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a damaged file raises CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint there")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") not in FORMATS:
                raise CheckpointError(f"{path}: not a gankit checkpoint this version reads (format "
                                      f"{meta.get('format')!r}; known: {', '.join(FORMATS)})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        skeleton = json.loads(meta["state"])
        state = unflatten(skeleton, tensors)
        state["format_version"] = FORMATS[meta["format"]]
    except CheckpointError:
        raise
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e}); "
                              "use the other checkpoint in the same folder (previous, best) or retrain") from None
    return state


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    # Only a process that has used CUDA has CUDA RNG streams worth saving; asking for them otherwise
    # would start CUDA in a CPU run (GANKIT_DEVICE=cpu on a GPU machine), or fail in a forked child.
    if torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_latest(run_dir: Path, state: Dict[str, Any]) -> Path:
    """Write ``state`` as the run's latest checkpoint, keeping the one before as ``previous``."""
    latest = Path(run_dir) / LATEST
    if latest.exists():
        os.replace(latest, Path(run_dir) / PREVIOUS)  # atomic: every moment has one good checkpoint
    save_checkpoint(latest, state, before_replace=lambda: faults.reached("latest-write"))
    return latest


def load_latest(run_dir: Path) -> Optional[Tuple[Dict[str, Any], Path]]:
    """``(state, path)`` of the newest readable checkpoint of a run folder: ``latest``, else
    ``previous`` (saying so on stderr); None when the run has none yet. Raises CheckpointError when
    every checkpoint there is damaged."""
    errors = []
    for rel in (LATEST, PREVIOUS):
        path = Path(run_dir) / rel
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        for e in errors:
            print(f"warning: {e}\nwarning: using {path} (step {state['trainer']['step']}) instead", file=sys.stderr)
        return state, path
    if errors:
        raise CheckpointError(f"{run_dir}: no readable checkpoint ({' | '.join(e.split('; use ')[0] for e in errors)}); "
                              f"to start the run again from its config.yaml, move {Path(run_dir) / 'checkpoints'} away "
                              "and resume")
    return None
