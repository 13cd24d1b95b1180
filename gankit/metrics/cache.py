"""Where evaluation keeps what it computes once: feature networks and reference features.

Everything is stored as safetensors (tensors plus a JSON string in the header), never
pickle, and written atomically so two processes can fill the cache at the same time.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from safetensors import safe_open

from ..utils import atomic_write_bytes, cache_dir, sha256_file  # noqa: F401 (cache_dir, sha256_file: used through this module)




def sha256_tensor(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().cpu().numpy().tobytes()).hexdigest()


def save_tensors(path: Path, tensors: Dict[str, torch.Tensor], meta: Optional[dict] = None) -> None:
    """Write ``tensors`` and a JSON-able ``meta`` dict to one safetensors file, atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = save(tensors, metadata={"gankit": json.dumps(meta or {})})
    atomic_write_bytes(Path(path), data)


def load_tensors(path: Path) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Inverse of :func:`save_tensors`; raises ``OSError``/``ValueError`` on a bad file."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("gankit", "{}"))
    except (SafetensorError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable cache file ({e})") from None
    return tensors, meta
