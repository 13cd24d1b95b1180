"""Training health: diagnose a run while it trains and act on what is found.

Three stages, imported one way (signals <- rules <- policy):

* :mod:`.signals` — what is measured on every log record: losses, D's accuracy and gradient
  norms from the record; diversity, energy distance, histogram entropy and modes of G's samples
  on fixed noise (:class:`SampleProbe`); NaN/Inf in numbers and weights (:func:`weight_norms`).
* :mod:`.rules` — the diagnoses: :class:`HealthMonitor` turns the last ``health.window`` signal
  dicts into :class:`Event` s (``diverged``, ``mode_collapse``, ``vanishing_gradients``,
  ``unstable``, ``d_lost``, ``converged``).
* :mod:`.policy` — what the run does about them: :class:`HealthCallback` rolls back, stops,
  switches the loss or adds instance noise, and writes ``events.jsonl`` and ``health.json``;
  :func:`health_callbacks` gives a run its callbacks.
"""
from __future__ import annotations

from .policy import HealthCallback, clone_state, health_callbacks
from .rules import ADVICE, KINDS, Event, HealthMonitor
from .signals import (SampleProbe, entropy, features, mean_pairwise_distance, mode_histogram, mode_radius,
                      weight_norms)

__all__ = ["ADVICE", "KINDS", "Event", "HealthCallback", "HealthMonitor", "SampleProbe", "clone_state",
           "entropy", "features", "health_callbacks", "mean_pairwise_distance", "mode_histogram",
           "mode_radius", "weight_norms"]
