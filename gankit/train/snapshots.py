"""Snapshots of G and D during training, for ``gankit animate`` (how a 1D/2D run learned).

With ``train.snapshot_every = s`` the run writes ``snapshots/step_NNNNNN.safetensors`` at step 0,
at the first log step of every s-step *slot* (slot ``k`` = steps ``[k·s, (k+1)·s)``; a log step
that crosses into a new slot takes its snapshot) and at the end. Each file is one safetensors file:
the weights of every network as the run samples with it (``G``'s EMA when the run keeps one, ``D``
as trained), plus JSON metadata — the step, the resolved config and the data facts (kind, shape,
mixture modes and σ) — so a snapshot rebuilds its networks alone, without the run's checkpoints.

Pruning (at most ``train.snapshot_keep`` = K files, evenly spread): the snapshots kept are those
whose slot is a multiple of a stride m, the smallest power of two with
``current_slot // m + 1 <= K - 1`` — one place stays free for the final snapshot. Whenever the
count would pass that, m doubles and every other snapshot is deleted, so a run of any length
keeps between about K/2 and K snapshots at equal spacing, and which ones does not depend on when
the run was killed and resumed. Only vector data (1D/2D mixtures) gets snapshots: image models'
weights are large and ``gankit animate`` draws only densities and point clouds.

Resuming at step c drops the snapshots written after c (they are made again); so does a rollback
of the health monitor to step c (:meth:`~gankit.train.callback.Callback.on_rollback`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

from ..errors import CheckpointError
from ..utils import atomic_write_bytes
from .callback import Callback

FORMAT = "gankit-snapshot-v1"
FOLDER = "snapshots"


def snapshot_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / FOLDER / f"step_{step:06d}.safetensors"


def list_snapshots(run_dir: str | Path) -> List[Tuple[int, Path]]:
    """``(step, path)`` of every snapshot in ``run_dir``, by step."""
    found = []
    for p in (Path(run_dir) / FOLDER).glob("step_*.safetensors"):
        digits = p.stem[len("step_"):]
        if digits.isdigit():
            found.append((int(digits), p))
    return sorted(found)


def stride(slot: int, keep: int) -> int:
    """The smallest power of two m with ``slot // m + 1 <= keep - 1``: kept slots are multiples of m."""
    m = 1
    while slot // m + 1 > keep - 1:
        m *= 2
    return m


def save_snapshot(path: Path, step: int, nets: Dict[str, torch.nn.Module], config: dict, data: dict) -> None:
    """Write the networks' weights (tensors ``NAME/param``) and the metadata atomically to ``path``."""
    tensors = {f"{name}/{k}": v.detach().float().cpu().contiguous().clone()
               for name, net in nets.items() for k, v in net.state_dict().items()}
    meta = {"format": FORMAT, "step": str(step), "nets": json.dumps(list(nets)),
            "config": json.dumps(config), "data": json.dumps(data)}
    atomic_write_bytes(path, safetensors_save(tensors, metadata=meta))


def load_snapshot(path: str | Path) -> dict:
    """``{"step", "config", "data", "modules": {name: state_dict}}`` of a snapshot; never unpickles."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a gankit snapshot (format {meta.get('format')!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        names = json.loads(meta["nets"])
        modules = {n: {k[len(n) + 1:]: v for k, v in tensors.items() if k.startswith(n + "/")} for n in names}
        return {"step": int(meta["step"]), "config": json.loads(meta["config"]), "data": json.loads(meta["data"]),
                "modules": modules}
    except CheckpointError:
        raise
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: damaged snapshot ({type(e).__name__}: {e}); delete it") from None


class SnapshotCallback(Callback):
    """Keeps the snapshots of a run (see the module docstring); the files are its only state."""

    def __init__(self, every: int, keep: int):
        self.every, self.keep = every, keep
        self.enabled = True

    def _write(self, run, step: int) -> None:
        t = run.trainer
        with torch.random.fork_rng(devices=[]):  # an EMA's BatchNorm refresh must not move training's RNG
            nets = {name: t.sampling_net(name) for name in t.nets}
            save_snapshot(snapshot_path(run.dir, step), step, nets, run.cfg.to_dict(), run.data_meta())
        self._prune(run.dir, step)

    def _prune(self, run_dir: Path, newest: int) -> None:
        m = stride(newest // self.every, self.keep)
        for step, path in list_snapshots(run_dir):
            if step != newest and (step // self.every) % m:
                path.unlink(missing_ok=True)

    def _drop_after(self, run_dir: Path, step: int) -> None:
        for s, path in list_snapshots(run_dir):
            if s > step:
                path.unlink(missing_ok=True)

    def on_start(self, run) -> None:
        if run.trainer.info.kind != "vector":
            self.enabled = False
            print(f"note: train.snapshot_every is set but {run.cfg.data.name} is not vector (1D/2D) data; "
                  "no snapshots are kept (gankit animate draws 1D/2D runs)", file=sys.stderr)
            return
        step = run.trainer.state.step
        self._drop_after(run.dir, step)  # resumed: made again; restarted from config: everything goes
        if step == 0:
            self._write(run, 0)

    def on_log(self, run, record: dict) -> None:
        if not self.enabled:
            return None
        step = record["step"]
        done = list_snapshots(run.dir)
        last_slot = done[-1][0] // self.every if done else -1
        slot = step // self.every
        if slot > last_slot and slot % stride(slot, self.keep) == 0:
            self._write(run, step)
        return None

    def on_rollback(self, run, step: int) -> None:
        if self.enabled:
            self._drop_after(run.dir, step)
    
    def on_end(self, run) -> None:
        if not self.enabled:
            return
        step = run.trainer.state.step
        done = list_snapshots(run.dir)
        if not done or done[-1][0] != step:
            self._write(run, step)


def snapshot_callbacks(cfg) -> list:
    """One :class:`SnapshotCallback` when ``train.snapshot_every`` is set."""
    t = cfg.train
    return [SnapshotCallback(t.snapshot_every, t.snapshot_keep)] if t.snapshot_every else []
