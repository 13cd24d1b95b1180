"""What a run calls between training steps (loggers, evaluators, the health monitor)."""
from __future__ import annotations

from typing import Optional


class Callback:
    """Hooks the run calls between training steps, never inside one.

    ``on_log`` may return ``{"score": float}`` (lower is better) to choose the best checkpoint.
    A callback acts on the run only through :meth:`Run.request_stop` and
    :meth:`Run.request_rollback` (the health monitor's policies), which take effect after the step.

    A callback whose decisions depend on what it has seen (a window of records, remedies applied)
    sets ``key`` and returns that state from :meth:`state_dict` (tensors and JSON-able values); the
    run stores it in every checkpoint under ``callbacks/<key>`` and hands it back to
    :meth:`load_state_dict` before :meth:`on_start` when it resumes.
    """

    key: str = ""   # name of this callback's state in checkpoints; "" = it keeps none

    def on_start(self, run) -> None: ...
    def on_log(self, run, record: dict) -> Optional[dict]: ...
    def on_end(self, run) -> None: ...
    def on_rollback(self, run, step: int) -> None:
        """The health monitor took the run back to ``step``: drop what this callback made after it."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...
