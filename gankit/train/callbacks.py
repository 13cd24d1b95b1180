"""The callbacks every run gets, from the modules that own them."""
from __future__ import annotations

import json
import sys

from .callback import Callback


def default_callbacks(cfg) -> list:
    from .evaluation import eval_callbacks
    from .health import health_callbacks
    from .snapshots import snapshot_callbacks

    return [*eval_callbacks(cfg), *health_callbacks(cfg), *snapshot_callbacks(cfg)]


class JsonLines(Callback):
    """Prints each record as one JSON line on stderr (``gankit train --quiet``: a log a batch job keeps)."""

    def on_log(self, run, record: dict) -> None:
        print(json.dumps(record, default=str), file=sys.stderr, flush=True)
