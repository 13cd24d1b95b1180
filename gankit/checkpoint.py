"""Checkpoints as one safetensors file: every tensor as a tensor, everything else as JSON
in the header's metadata. Loading never unpickles and never executes code from the file.
The header also holds the SHA-256 of the JSON state and the tensor bytes (``data_sha256``), checked
on loading, so a file damaged on disk (flipped bits, not only a cut) is found before a run trains or
samples from it.

Nested state (optimizer state dicts, RNG states, sampler positions) is flattened: each
tensor leaf becomes ``prefix/path/to/leaf`` in the file, and the JSON skeleton keeps
``{"__tensor__": key}`` where it stood.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
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


_DIGEST_SLOT = "0" * 64  # written into the header first, then replaced by the digest (same length)


def _data_section(blob: bytes) -> tuple[int, memoryview]:
    """(header length, the tensor bytes) of a safetensors file's bytes."""
    n = int.from_bytes(blob[:8], "little")
    return n, memoryview(blob)[8 + n:]


def _digest(state_json: str, data) -> str:
    """SHA-256 of a checkpoint's JSON state and its tensor bytes: what ``data_sha256`` holds."""
    h = hashlib.sha256(state_json.encode())
    h.update(data)
    return h.hexdigest()


def save_checkpoint(path: Path, state: Dict[str, Any], before_replace=None) -> None:
    """Write ``state`` (nested dicts of tensors and plain values) atomically to ``path``
    (``before_replace``: see :func:`~gankit.utils.atomic_write_bytes`)."""
    tensors: Dict[str, torch.Tensor] = {}
    skeleton = flatten(state, "s", tensors)
    meta = {"format": FORMAT, "state": json.dumps(skeleton), "data_sha256": _DIGEST_SLOT}
    blob = bytearray(safetensors_save(tensors, metadata=meta))
    n, data = _data_section(blob)
    key = f'"data_sha256":"{_DIGEST_SLOT}"'.encode()
    slot = blob.find(key, 8, 8 + n) + len(key) - 65  # the digest's first character
    blob[slot:slot + 64] = _digest(meta["state"], data).encode()
    del data
    atomic_write_bytes(Path(path), bytes(blob), before_replace=before_replace)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a damaged file (cut short, or its tensor
    bytes changed: ``data_sha256``) raises CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint there")
    damaged = ("use the other checkpoint in the same folder (previous, best) or retrain")
    try:
        blob = path.read_bytes()
        n, data = _data_section(blob)
        meta = json.loads(bytes(blob[8:8 + n])).get("__metadata__") or {}
        if meta.get("format") not in FORMATS:
            raise CheckpointError(f"{path}: not a gankit checkpoint this version reads (format "
                                  f"{meta.get('format')!r}; known: {', '.join(FORMATS)})")
        tensors = safetensors_load(blob)  # a file cut short fails here: "corrupt or truncated"
        if "data_sha256" in meta and _digest(meta.get("state", ""), data) != meta["data_sha256"]:
            raise CheckpointError(f"{path}: damaged checkpoint (its state and tensor bytes do not match the SHA-256 "
                                  f"in its header); {damaged}")
        del data
        skeleton = json.loads(meta["state"])
        state = unflatten(skeleton, tensors)
        state["format_version"] = FORMATS[meta["format"]]
    except CheckpointError:
        raise
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError, UnicodeDecodeError, AttributeError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e}); {damaged}") from None
    return state


def read_skeleton(path: Path) -> Optional[Dict[str, Any]]:
    """The JSON part of a checkpoint (steps, flags, settings; each tensor a ``{"__tensor__": key}``
    reference), read from its header without loading or checking the tensors: for a glance (the
    report), not for resuming. None when the file is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(n)).get("__metadata__") or {}
        return json.loads(meta["state"])
    except (OSError, ValueError, KeyError):
        return None


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
