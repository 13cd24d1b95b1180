"""Losses and regularisers, chosen by name from registries."""
from .adversarial import LOSSES, AdversarialLoss
from .regularizers import REGULARIZERS

__all__ = ["LOSSES", "REGULARIZERS", "AdversarialLoss"]
