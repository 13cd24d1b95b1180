"""Classification Accuracy Score (Ravuri & Vinyals 2019) for conditional models.

A classifier is trained only on generated, labelled samples and tested on the real test
split; the same classifier trained on as many real train samples, with the same recipe,
is reported beside it (``cas_real``), so the gap is the generator's.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .base import register_metric

EPOCHS = 3
MIN_STEPS = 400   # small sample sets still get enough updates to fit


class _MLP(nn.Module):
    def __init__(self, d: int, num_classes: int, width: int = 128):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x):
        f = self.body(x.reshape(len(x), -1))
        return f, self.head(f)


def _classifier(sample_shape, num_classes):
    from .domain_net import DomainNet

    if len(sample_shape) == 3:
        c, h, w = sample_shape
        return DomainNet(c, h if h == w else [h, w], num_classes)
    return _MLP(int(torch.tensor(sample_shape).prod()), num_classes)


def cas(x_fake, y_fake, x_train, y_train, x_test, y_test, num_classes: int, epochs: float = EPOCHS,
        seed: int = 0) -> dict:
    """Test accuracy of one classifier trained on (x_fake, y_fake) and one on (x_train, y_train).

    All x in model range with one shape (N, ...); labels int64 (N,).
    """
    from .domain_net import accuracy, fit_classifier

    out = {}
    for key, (x, y) in (("cas", (x_fake, y_fake)), ("cas_real", (x_train, y_train))):
        torch.manual_seed(seed)
        net = _classifier(tuple(x.shape[1:]), num_classes)
        fit_classifier(net, x.float(), y.long(), epochs, seed=seed, min_steps=MIN_STEPS)
        out[key] = accuracy(net, x_test.float(), y_test)
    return out


@register_metric("cas", ("cas", "cas_real"), uses_features=False, params={"epochs": EPOCHS, "min_steps": MIN_STEPS})
def _cas_metric(ctx):
    from ..data import load_dataset, reference_config

    if ctx.fake_labels is None:
        raise ValueError("CAS needs class labels with the generated samples (a conditional model, or y in the .npz)")
    ds = ctx.dataset
    if ds.y is None:
        raise ValueError(f"CAS needs a labelled dataset; {ds.name!r} has no labels")
    train = load_dataset(reference_config(ctx.data_cfg), "train", seed=ctx.seed)  # as the test reference
    n = min(len(ctx.fake), len(train))
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(ctx.seed))[:n]
    batch = train.batch(idx)
    x_train, y_train = batch["x"], batch["y"]
    x_test, y_test = ds.all_model_range(), ds.y
    x_fake = ctx.fake
    if x_fake.shape[1:] != x_test.shape[1:]:
        from .extractor import fit_images
        x_fake = fit_images(x_fake, x_test.shape[1], x_test.shape[2])
    return cas(x_fake[:n], ctx.fake_labels[:n], x_train, y_train, x_test, y_test,
               max(ds.num_classes, int(ds.y.max()) + 1), seed=ctx.seed)
