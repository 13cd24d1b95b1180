"""Adaptive discriminator augmentation (Karras et al. 2020, "Training Generative Adversarial Networks
with Limited Data"): every image D sees, real or generated, is augmented with probability ``p``
per transformation, and ``p`` follows D's overfitting.

The heuristic (Sec. 3): r_t = E[sign(D(x_real))] over the last ``interval`` D steps; above the
target (0.6) D is too sure of the reals and ``p`` rises, below it ``p`` falls, each adjustment
``sign(r_t − target) · images / speed_images`` so that ``p`` can go from 0 to 1 in
``speed_images`` images (the paper: 500k). Because the same distribution of augmentations is applied
to real and fake images and G is trained through them, they do not leak into G's samples as long as
``p`` stays below ~0.8 (the paper's Fig. 3).

The pipeline is a subset of the paper's "bgc" in plain PyTorch, every op differentiable in x (G's
gradient and R1 flow through it):

* blit: horizontal flip, rotation by a multiple of 90°, integer translation by up to 1/8 of the side
  (reflect padding, as the paper's);
* geometric: isotropic scaling lognormal(0, (0.2·ln 2)²) and rotation U(−180°, 180°) by bilinear
  resampling with reflect padding (the paper's 'geom' has anisotropic scaling and fractional
  translation too, left out);
* colour: brightness N(0, 0.2²), contrast lognormal(0, (0.5·ln 2)²), saturation lognormal(0, (ln 2)²)
  on 3-channel images (hue rotation left out).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _gate(x: Tensor, p: float) -> Tensor:
    """(B, 1, 1, 1) bool: which samples this transformation applies to (each with probability p)."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p


def _blit(x: Tensor, p: float) -> Tensor:
    b, _, h, w = x.shape
    x = torch.where(_gate(x, p), x.flip(3), x)
    if h == w:  # a quarter turn of a non-square image would change its shape
        k = (torch.randint(4, (b,), device=x.device) * _gate(x, p).view(b).long()).view(b, 1, 1)
        # torch.rot90 by k quarter turns (H towards W) per sample, as one gather on the device (no
        # host read): out[i, j] = x[i, j], x[j, n-1-i], x[n-1-i, n-1-j], x[n-1-j, i] for k = 0..3.
        i = torch.arange(h, device=x.device).view(1, h, 1)
        j = torch.arange(w, device=x.device).view(1, 1, w)
        r = torch.where(k == 0, i, torch.where(k == 1, j, torch.where(k == 2, h - 1 - i, w - 1 - j)))
        c = torch.where(k == 0, j, torch.where(k == 1, h - 1 - i, torch.where(k == 2, w - 1 - j, i)))
        ch = x.shape[1]
        x = x.reshape(b, ch, h * w).gather(2, (r * w + c).view(b, 1, h * w).expand(b, ch, h * w)).view(b, ch, h, w)
    gate = _gate(x, p).view(b)
    mh, mw = max(1, round(h / 8)), max(1, round(w / 8))
    dy = torch.randint(-mh, mh + 1, (b,), device=x.device) * gate     # 0 for samples not translated
    dx = torch.randint(-mw, mw + 1, (b,), device=x.device) * gate
    padded = F.pad(x, (mw, mw, mh, mh), mode="reflect")
    rows = (torch.arange(h, device=x.device).view(1, -1) + mh - dy.view(-1, 1))   # (B, H)
    cols = (torch.arange(w, device=x.device).view(1, -1) + mw - dx.view(-1, 1))   # (B, W)
    c = x.shape[1]
    out = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, padded.shape[3]))
    return out.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def _geometric(x: Tensor, p: float) -> Tensor:
    b = x.shape[0]
    scale = torch.exp(torch.randn(b, device=x.device) * 0.2 * math.log(2))
    angle = (torch.rand(b, device=x.device) * 2 - 1) * math.pi
    scale = torch.where(_gate(x, p).view(b), scale, torch.ones_like(scale))
    angle = torch.where(_gate(x, p).view(b), angle, torch.zeros_like(angle))
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                         torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1).to(x.dtype)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # Samples left alone stay exactly themselves (an identity resampling is exact only to rounding).
    return torch.where(((scale != 1) | (angle != 0)).view(b, 1, 1, 1), moved, x)


def _colour(x: Tensor, p: float) -> Tensor:
    b = x.shape[0]
    one = torch.ones(b, 1, 1, 1, device=x.device, dtype=x.dtype)
    x = x + torch.where(_gate(x, p), torch.randn_like(one) * 0.2, torch.zeros_like(one))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    c = torch.where(_gate(x, p), torch.exp(torch.randn_like(one) * 0.5 * math.log(2)), one)
    x = (x - mean) * c + mean
    if x.shape[1] == 3:
        grey = x.mean(dim=1, keepdim=True)
        s = torch.where(_gate(x, p), torch.exp(torch.randn_like(one) * math.log(2)), one)
        x = (x - grey) * s + grey
    return x


class AdaptiveAugment:
    """Augments (B, C, H, W) images with probability ``p`` per transformation; ``p`` adapts to D.

    ``target``: the r_t the heuristic aims at (0.6); ``interval``: D steps between adjustments (4);
    ``speed_images``: images over which ``p`` can move by 1 (500k in the paper; fewer for short runs).
    """

    def __init__(self, target: float = 0.6, interval: int = 4, speed_images: int = 500_000, p: float = 0.0):
        self.target, self.interval, self.speed_images = target, interval, speed_images
        self.p = float(p)
        self._signs, self._count, self._images = 0.0, 0, 0
        self.rt = 0.0                     # the last r_t measured

    def __call__(self, x: Tensor) -> Tensor:
        if self.p <= 0:
            return x
        return _colour(_geometric(_blit(x, self.p), self.p), self.p)

    def observe(self, sign_real_mean, images: int) -> None:
        """Record one D step: the mean of sign(D(x_real)) over its batch (a float, or a 0-dim tensor,
        which stays on its device) and the batch's size; every ``interval`` steps, move ``p``. The
        signs are summed where they are and read once per adjustment, as stylegan2-ada-pytorch
        reads its sign statistics once every ``ada_interval`` steps: D steps between adjustments
        never wait for the GPU."""
        if isinstance(sign_real_mean, Tensor):  # fp64, as the host sum of Python floats it replaces
            sign_real_mean = sign_real_mean.detach().to(torch.float64)
        self._signs = self._signs + sign_real_mean
        self._count += 1
        self._images += images
        if self._count >= self.interval:
            self.rt = float(self._signs) / self._count  # the one host read per adjustment
            step = math.copysign(self._images / self.speed_images, self.rt - self.target)
            self.p = min(max(self.p + step, 0.0), 1.0)
            self._signs, self._count, self._images = 0.0, 0, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "signs": float(self._signs), "count": self._count, "images": self._images, "rt": self.rt}

    def load_state_dict(self, state: dict) -> None:
        self.p, self._signs = float(state["p"]), float(state["signs"])
        self._count, self._images, self.rt = int(state["count"]), int(state["images"]), float(state["rt"])
