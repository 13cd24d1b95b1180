"""Intended-class accuracy of a conditional generator: how often the feature network's own
classifier recognises the class each sample was generated for (e.g. "is this spectrogram the
digit it was asked to say?"), beside the same classifier's accuracy on the real reference images.

Unlike CAS (:mod:`gankit.metrics.cas`), nothing is trained on the samples: the domain classifier,
trained once on the real train split, judges them. It needs a feature network with a class head
over the dataset's own classes (``--features domain``).
"""
from __future__ import annotations

import torch

from .base import register_metric


def class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose argmax logit is their label; ``logits`` (N, K), ``labels`` int (N,)."""
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} logits but {len(labels)} labels")
    return float((logits.argmax(1) == labels.to(logits.device)).double().mean()) if len(labels) else float("nan")


@register_metric("class_acc", ("class_acc", "class_acc_real"), kinds=("image",))
def _class_acc_metric(ctx):
    if ctx.fake_labels is None:
        raise ValueError("class_acc needs the class each sample was generated for (a conditional model, "
                         "or y in the .npz)")
    if ctx.real_labels is None:
        raise ValueError(f"class_acc needs a labelled dataset; {ctx.dataset.name!r} has no labels")
    fake, real = ctx.fake_features.logits, ctx.real_features.logits
    k = int(ctx.dataset.num_classes)
    if fake is not None and real is not None and fake.shape[1] != k and ctx.extractor.name.startswith("domain"):
        # already the domain network, so --features domain is no advice: it learnt other labels than these
        raise ValueError(f"class_acc needs a classifier over the dataset's {k} classes; the domain network "
                         f"{ctx.extractor.name} has {fake.shape[1]}, so it was trained on other labels: delete "
                         f"its cached file (features/{ctx.extractor.name}.safetensors in gankit's cache) to "
                         "train it again on this data")
    if fake is None or real is None or fake.shape[1] != k:
        raise ValueError(f"class_acc needs a classifier over the dataset's {k} classes: use --features domain "
                         f"(the {ctx.extractor.name} features have "
                         f"{'no class head' if fake is None else f'{fake.shape[1]} classes'})")
    return {"class_acc": class_accuracy(fake, ctx.fake_labels), "class_acc_real": class_accuracy(real, ctx.real_labels)}
