"""Moved to :mod:`gankit.objectives` (objectives own their named networks, optimisers and phases)."""
from ..objectives import OBJECTIVES, GANObjective, Phase  # noqa: F401
