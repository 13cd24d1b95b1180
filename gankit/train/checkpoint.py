"""Moved to :mod:`gankit.checkpoint` (reading weights does not import the training engine)."""
from ..checkpoint import FORMAT, FORMATS, load_checkpoint, rng_state, save_checkpoint, set_rng_state  # noqa: F401
