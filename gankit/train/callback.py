"""What a run calls between training steps (loggers, evaluators, the health monitor)."""
from __future__ import annotations

from typing import Optional


class Callback:
    """Hooks the run calls between training steps, never inside one.

    ``on_log`` may return ``{"score": float}`` (lower is better) to choose the best checkpoint.
    A callback acts on the run only through :meth:`Run.request_stop` and
    :meth:`Run.request_rollback` (the health monitor's policies), which take effect after the step.
    """

    def on_start(self, run) -> None: ...
    def on_log(self, run, record: dict) -> Optional[dict]: ...
    def on_end(self, run) -> None: ...
