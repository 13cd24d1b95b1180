"""Crash injection for the tests that prove a run survives being killed.

``GANKIT_FAULT=POINT:N`` makes this process kill itself with SIGKILL (no handler, no clean-up:
what a power cut or the kernel's OOM killer does) the N-th time it reaches ``POINT``:

``step``              right after training step N (counted from 1 in this process)
``latest-write``      inside the N-th write of the latest checkpoint, after the temporary file is
                      written and before it replaces the old one (``latest`` has just become
                      ``previous``, so the run has no ``latest`` at that moment)

Unset (the normal case) it costs one dict lookup per call. Used by ``tests/test_reliability.py``;
``benchmarks/kill_resume.py`` kills from outside at random moments instead.
"""
from __future__ import annotations

import os
import signal
from collections import Counter

from .errors import ConfigError

POINTS = ("step", "latest-write")


def _parse(spec: str) -> dict:
    if not spec:
        return {}
    point, _, n = spec.partition(":")
    if point not in POINTS or not n.isdigit() or int(n) < 1:
        raise ConfigError(f"GANKIT_FAULT={spec}: expected POINT:N with POINT one of {', '.join(POINTS)} and N >= 1")
    return {point: int(n)}


_PLAN = _parse(os.environ.get("GANKIT_FAULT", ""))
_SEEN: Counter = Counter()


def reached(point: str) -> None:
    """Count a pass through ``point``; SIGKILL this process if the plan says so."""
    if point not in _PLAN:
        return
    _SEEN[point] += 1
    if _SEEN[point] == _PLAN[point]:
        os.kill(os.getpid(), signal.SIGKILL)
