"""Losses and regularisers, chosen by name from registries."""
from .adversarial import LOSSES, AdversarialLoss, register_loss
from .regularizers import REGULARIZERS, double_backward
from ..config import check, check_name, register_check


@register_check
def _check_loss(cfg) -> None:
    check_name("loss.name", cfg.loss.name, LOSSES)
    for i, r in enumerate(cfg.loss.regularizers):
        check_name(f"loss.regularizers.{i}.name", r.name, REGULARIZERS)
        check(f"loss.regularizers.{i}.every", r.every >= 1, "an integer >= 1")
        check(f"loss.regularizers.{i}.weight", r.weight >= 0, "a number >= 0 (a penalty's weight)")


__all__ = ["LOSSES", "REGULARIZERS", "AdversarialLoss", "double_backward", "register_loss"]
