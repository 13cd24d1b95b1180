"""One process per run folder: ``RUN_DIR/.lock``, held with an OS file lock while a run trains into it."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from .errors import GankitError


LOCK = ".lock"  # in the run folder: held (flock) by the process training into it


@contextmanager
def run_lock(run_dir: Path, create: bool = True, hold: bool = True):
    """Hold ``run_dir/.lock`` while training into ``run_dir``: a second process (a job started twice,
    a scheduler resuming a job that is still alive) is refused in one line instead of writing into
    the same files. The operating system drops the lock when the holder exits, even on ``kill -9``,
    so no stale lock is left. ``hold`` False (the other ranks of a torchrun job, whose rank 0 holds it)
    takes nothing. Where no run began (the run failed before writing its config), the lock file goes
    again, and so does a folder made here and left empty. No-op where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    if not hold or not create and not run_dir.is_dir():
        yield  # another rank of the job, or no folder to resume (_resume says so)
        return
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise GankitError(f"{run_dir}: another process (pid {holder}) is training into this folder; wait for it "
                          "to finish, or choose another --out") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
        if not (run_dir / "config.yaml").exists():  # no run began here: leave the folder as it was
            (run_dir / LOCK).unlink(missing_ok=True)
            if made and not any(run_dir.iterdir()):
                run_dir.rmdir()


def lock_holder(run_dir: Path) -> Optional[str]:
    """The pid written by the process holding ``run_dir``'s lock ("?" if it wrote none), or None when no
    process holds it (nothing is taken: the lock is released at once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    path = Path(run_dir) / LOCK
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 32).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)
    return None


def before_first_checkpoint(run_dir: Path) -> str:
    """What to do about a run folder with no checkpoint yet: wait, when a process is training into it
    (resuming would be refused), else resume it."""
    holder = lock_holder(run_dir)
    if holder is not None:
        return (f"process {holder} is training into {run_dir} and writes its first checkpoint at its first record "
                "(train.log_every): wait for it")
    return f"resume the run (gankit train --resume {run_dir}) or wait for its first checkpoint"
