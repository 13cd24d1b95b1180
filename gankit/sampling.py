"""Discriminator rejection sampling (DRS; Azadi et al. 2019): keep G's samples in proportion to
how real D finds them.

For a fixed G, the optimal discriminator's logit is D̃*(x) = log p_data(x) / p_g(x) (Goodfellow et
al. 2014, Prop. 1). Accepting a sample x ~ p_g with probability exp(D̃*(x) − D̃_M), where D̃_M bounds
the logit, is rejection sampling: the accepted samples follow p_data exactly. DRS uses the trained
D, fine-tuned against the final G with the plain logistic loss so that its logit estimates that
ratio (the discriminator of a GAN run was trained against earlier Gs and, with an EMA, not against
the sampling generator at all), estimates D̃_M as the largest logit seen (burn-in, then a running
maximum), and accepts with probability σ(F(x) − γ), where (the paper's Eq. 8)

    F(x) = D̃(x) − D̃_M − log(1 − exp(D̃(x) − D̃_M − ε)).

With γ = 0 this is exactly exp(D̃(x) − D̃_M) (ε keeps the log finite). The paper sets γ per batch
to a percentile of F, which accepts more samples and departs from exact rejection; here γ is 0
unless ``percentile`` is given: on the 2D mixtures the percentile cost reverse KL (README,
"Variants").
"""
from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import GankitError
from .tasks import GenerationTask


def fit_density_ratio(D: nn.Module, sample_fake: Callable[[int], tuple[Tensor, Optional[Tensor]]],
                      sample_real: Callable[[int], tuple[Tensor, Optional[Tensor]]], steps: int = 1000,
                      batch_size: int = 256, lr: float = 1e-3, betas: tuple = (0.5, 0.999)) -> nn.Module:
    """A copy of ``D`` trained ``steps`` Adam steps with the logistic loss, real against fake, with
    G held fixed: its logit then estimates log p_data / p_g for that G. ``sample_*(n)`` return
    (x, y) batches in model range (y None for unconditional models). ``D`` itself is not changed."""
    if int(getattr(D, "pack", 1)) > 1:
        raise GankitError("rejection sampling needs a D that scores single samples; this one scores packs "
                          "(model.d.pack > 1, PacGAN)")
    D = copy.deepcopy(D).train().requires_grad_(True)
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    for _ in range(steps):
        (xr, yr), (xf, yf) = sample_real(batch_size), sample_fake(batch_size)
        loss = F.softplus(-D(xr, yr).float()).mean() + F.softplus(D(xf.detach(), yf).float()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return D.eval().requires_grad_(False)


class DiscriminatorRejectionSampler:
    """Draws accepted samples of ``G`` (noise (B, z_dim) [+ labels] -> samples) under the density-ratio
    discriminator ``D`` (see :func:`fit_density_ratio`).

    ``percentile``: None for exact rejection (γ = 0); else γ is that percentile (0-100) of F over each
    batch. ``burn_in``: samples whose largest logit starts D̃_M. ``max_tries``: the most samples drawn
    per accepted one before giving up (a D that rejects nearly everything is a bad ratio estimate).
    """

    def __init__(self, G: nn.Module, D: nn.Module, task: GenerationTask,
                 percentile: Optional[float] = None, epsilon: float = 1e-6, burn_in: int = 10_000,
                 batch_size: int = 1000, max_tries: int = 1000):
        if percentile is not None and not 0 <= percentile <= 100:
            raise GankitError(f"percentile {percentile}: give a number in [0, 100], or none for exact rejection")
        self.G, self.D, self.task = G.eval(), D.eval(), task
        self.num_classes = task.num_classes
        self.percentile, self.epsilon, self.burn_in = percentile, epsilon, burn_in
        self.batch_size, self.max_tries = batch_size, max_tries
        self.logit_max: Optional[Tensor] = None  # D̃_M
        self.tried = self.accepted = 0

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    @torch.no_grad()
    def generate(self, n: int, gen: torch.Generator, label: Optional[int] = None) -> tuple[Tensor, Optional[Tensor]]:
        """n samples of G (fp32, on G's device) and their labels: ``label``, else uniform over the
        classes (None if unconditional). Made by :meth:`~gankit.tasks.Task.generate`, as every sample is:
        randomness G draws itself (a style generator's per-layer noise) comes from its seeded private
        stream, not torch's global RNG, so the same ``gen`` state gives the same samples."""
        inputs = self.task.draw(n, gen, labels=label if label is not None else "random", device=self.device)
        return self.task.generate(self.G, inputs, batch_size=max(1, n), cpu=False), inputs["y"]

    @torch.no_grad()
    def _propose(self, n: int, gen: torch.Generator, label: Optional[int]) -> tuple[Tensor, Optional[Tensor], Tensor]:
        """n samples of G, their labels and D's logits (n,)."""
        x, y = self.generate(n, gen, label)
        return x, y, self.D(x, y).float().flatten()

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, label: Optional[int] = None) -> tuple[Tensor, Optional[Tensor]]:
        """``n`` accepted samples (n, *sample_shape) on the CPU, and their labels (n,) or None."""
        gen = torch.Generator().manual_seed(seed)
        if self.logit_max is None:
            burn = [self._propose(min(self.batch_size, self.burn_in - i), gen, label)[2]
                    for i in range(0, self.burn_in, self.batch_size)]
            self.logit_max = torch.cat(burn).max()
        xs, ys = [], []
        while sum(len(x) for x in xs) < n:
            if self.tried > self.max_tries * max(n, self.accepted + 1):
                raise GankitError(f"rejection sampling accepted {self.accepted} of {self.tried} samples; "
                                  "D rejects nearly everything (fit it longer, or give a percentile)")
            x, y, logit = self._propose(self.batch_size, gen, label)
            self.logit_max = torch.maximum(self.logit_max, logit.max())
            delta = logit - self.logit_max                                      # ≤ 0
            f = delta - torch.log1p(-torch.exp(delta - self.epsilon))           # Eq. 8 without γ
            if self.percentile is not None:
                f = f - torch.quantile(f, self.percentile / 100)
            keep = torch.rand(len(f), generator=gen).to(f.device) < torch.sigmoid(f)
            self.tried += len(f)
            self.accepted += int(keep.sum())
            xs.append(x[keep].cpu())
            ys.append(y[keep].cpu() if y is not None else None)
        x = torch.cat(xs)[:n]
        return x, (torch.cat(ys)[:n] if self.num_classes else None)

    @property
    def acceptance(self) -> float:
        """Fraction of proposals accepted so far."""
        return self.accepted / max(1, self.tried)


def rejection_sampler(G: nn.Module, D: nn.Module, data, task: GenerationTask, steps: int = 1000,
                      batch_size: int = 256, lr: float = 1e-3, percentile: Optional[float] = None,
                      seed: int = 0) -> DiscriminatorRejectionSampler:
    """DRS for a trained pair: fit a copy of ``D`` to ``G``'s density ratio on ``data`` (a
    :class:`gankit.data.Dataset`, its training split) and return the sampler."""
    sampler = DiscriminatorRejectionSampler(G, D, task, percentile=percentile)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # DRS reads one real-vs-fake logit per sample; refuse any other D before fitting it
        score = D.eval()(*sampler.generate(2, torch.Generator().manual_seed(seed)))
    if not isinstance(score, Tensor) or tuple(score.shape) not in ((2,), (2, 1)):
        shape = tuple(score.shape[1:]) if isinstance(score, Tensor) else type(score).__name__
        raise GankitError(f"rejection sampling needs a discriminator that gives one real-vs-fake score per sample; "
                          f"this one gives {shape} per sample (e.g. one score per class)")

    def real(n: int):
        batch = data.batch(torch.randint(len(data), (n,), generator=gen).to(data.x.device))
        y = batch.get("y")
        return batch["x"].to(sampler.device), (y.to(sampler.device) if task.num_classes else None)

    sampler.D = fit_density_ratio(D, lambda n: sampler.generate(n, gen), real, steps=steps,
                                  batch_size=batch_size, lr=lr)
    return sampler
