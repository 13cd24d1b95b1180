"""Small helpers shared across modules: atomic writes, seeding, device choice."""
from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch


def cache_dir() -> Path:
    """Where gankit keeps what it computes once (feature networks, reference features, the default
    audio corpus): ``$GANKIT_CACHE`` if set, else ``~/.cache/gankit``."""
    root = os.environ.get("GANKIT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "gankit"


def atomic_write(path: Path, write, suffix: str = ".tmp", before_replace=None) -> None:
    """Make ``path`` whole or not at all: ``write(tmp)`` writes the file at ``tmp``, a temp path in the
    same folder (ending in ``suffix``: a tool that picks its format by extension gets the right one),
    which is then flushed to disk and renamed over ``path`` (atomic): a reader sees the old file or the
    new one, never part of one, whenever the writer dies. ``before_replace`` (no arguments) is called
    between the two (the crash tests kill the process there)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a full disk on write: say which file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def atomic_write_bytes(path: Path, data: bytes, before_replace=None) -> None:
    """:func:`atomic_write` of ``data``."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write, before_replace=before_replace)


TMP_GLOB = ".*.tmp"  # what atomic_write_bytes leaves behind when the process is killed mid-write


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_jsonl(path: Path) -> list:
    """The records of a JSON-lines file ([] if absent). A damaged last line, what a crash in the
    middle of an append leaves, is skipped; a damaged line before it raises GankitError naming it."""
    import json

    from .errors import GankitError

    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):
                break
            raise GankitError(f"{path}:{i}: not valid JSON; the file is damaged (delete the line or the file)") from None
    return out


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep only the records of a JSON-lines file whose ``step`` is at most ``step`` (rewritten
    atomically; an absent file stays absent): what a resume or a rollback to ``step`` trains again."""
    import json

    path = Path(path)
    if path.exists():
        keep = [json.dumps(r) for r in read_jsonl(path) if r["step"] <= step]
        atomic_write_text(path, "".join(line + "\n" for line in keep))


def keep_first_records(path: Path, n: int) -> None:
    """Keep the first ``n`` records of a JSON-lines file (rewritten atomically; an absent file stays
    absent): the records a checkpoint knows, when what came after it is to be written again."""
    import json

    path = Path(path)
    if path.exists():
        keep = [json.dumps(r) for r in read_jsonl(path)[:n]]
        atomic_write_text(path, "".join(line + "\n" for line in keep))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_name(device: torch.device) -> str:
    """What a run or a table calls its device: the GPU's name, or the CPU and its torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


#: Environment variable that decides what a device setting of ``auto`` means (``train.device``,
#: ``gankit.load(device=...)``): cpu, cuda or cuda:N. Unset, ``auto`` is CUDA when available. The test
#: suite sets it to cpu, so tests that check exact numbers run on the CPU on any machine.
DEVICE_ENV = "GANKIT_DEVICE"


def resolve_device(name: str, setting: str = "device") -> torch.device:
    """The device a setting names; ``auto`` is ``$GANKIT_DEVICE`` when set, else CUDA when available,
    else the CPU. Every "auto" in gankit goes through here, so the variable means one thing everywhere.
    A CUDA device that is not here is one :class:`ConfigError` line naming ``setting`` (e.g.
    ``train.device``) or the variable."""
    from .errors import ConfigError

    if name != "auto":
        want, named = name, f"{setting}={name}"
    else:
        want = os.environ.get(DEVICE_ENV, "").strip()
        if not want:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        named = f"{DEVICE_ENV}={want!r}"
        if not re.fullmatch(r"cpu|cuda(:\d+)?", want):
            raise ConfigError(f"{named}: not a device; use cpu, cuda or cuda:N (or unset it for auto)")
    device = torch.device(want)
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise ConfigError(f"{named}: no such CUDA device here ({torch.cuda.device_count()} visible); "
                          f"use cpu or auto")
    return device


def replace_folder(new: Path, out: Path) -> None:
    """Rename the finished folder ``new`` (written whole beside ``out``: a model folder) to ``out``. An
    existing ``out`` is swapped with ``new`` in one step where the system can (Linux renameat2
    RENAME_EXCHANGE), then deleted; elsewhere it is moved
    aside first (a kill between the two renames leaves it as ``.NAME.old-*`` beside ``out``)."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        os.replace(new, out)  # an empty folder is replaced by rename(2) itself
        return
    if exchange_paths(new, out):
        shutil.rmtree(new)  # now the old folder
        return
    old = out.parent / f".{out.name}.old-{new.name.rsplit('-', 1)[-1]}"
    os.rename(out, old)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    return renameat2(AT_FDCWD, os.fsencode(str(a)), AT_FDCWD, os.fsencode(str(b)), RENAME_EXCHANGE) == 0


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
