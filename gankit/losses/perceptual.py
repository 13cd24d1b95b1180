"""Perceptual (feature) losses: distances between images in a frozen network's activations.

SRGAN's content loss (Ledig et al. 2017, Eq. 5) and ESRGAN's perceptual loss (Wang et al. 2018,
Sec. 3.3) compare images in the activations of an ImageNet VGG19. No such weights exist offline, so
gankit uses a network trained here on the data's own domain — the ``domain`` feature network of
:mod:`gankit.metrics.domain_net` (a classifier, or a rotation predictor for unlabelled photos), or any
network of that format a user supplies as a safetensors file (read without executing code). It has
three conv layers instead of VGG's sixteen, so its deepest layer sees 16 × 16 px, not VGG's ~200.

Like ESRGAN, the activations are taken *before* their ReLU (denser, so the loss has a gradient
everywhere); each layer's distance is averaged over its elements and the layers are averaged.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CRITERIA = {"l1": F.l1_loss, "mse": F.mse_loss}


def conv_activations(net: nn.Module, x: Tensor) -> List[Tensor]:
    """The pre-ReLU output of every conv + norm block of a DomainNet's ``body``, (B, C_i, H_i, W_i) each."""
    out = []
    for block in net.body:
        if isinstance(block, nn.Sequential):  # conv, norm, ReLU
            for layer in block:
                if isinstance(layer, nn.ReLU):
                    out.append(x)
                    x = F.relu(x)
                else:
                    x = layer(x)
        elif isinstance(block, nn.Flatten):
            break
        else:
            x = block(x)
    return out


class FeatureLoss(nn.Module):
    """``loss(fake, real)``: mean over layers of ``criterion`` between the activations of ``net``.

    The net is frozen (eval mode, no gradients to its weights); gradients flow to ``fake``. Images
    with another channel count than the net's are averaged to grey or repeated to its channels.
    """

    def __init__(self, net: nn.Module, criterion: str = "l1"):
        super().__init__()
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.criterion = CRITERIA[criterion]
        self.channels = net.body[0][0].in_channels

    def train(self, mode: bool = True):  # always eval: BatchNorm keeps its running statistics
        return super().train(False)

    def _fit(self, x: Tensor) -> Tensor:
        if x.shape[1] == self.channels:
            return x
        if self.channels == 1:
            return x.mean(1, keepdim=True)
        return x.expand(-1, self.channels, -1, -1)

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        fa = conv_activations(self.net, self._fit(fake.float()))
        with torch.no_grad():
            ra = conv_activations(self.net, self._fit(real.float()))
        return torch.stack([self.criterion(a, b) for a, b in zip(fa, ra)]).mean()
