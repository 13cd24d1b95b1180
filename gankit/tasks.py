"""Tasks: how a model's outputs are made from its inputs, in one place.

Every consumer of a trained or training model — sample grids, ``gankit sample`` and
``gankit translate``, the Python API, evaluation during training, health probes, the EMA's
BatchNorm re-estimation, rejection sampling — draws inputs with :meth:`Task.draw` (or takes
them from a batch with :meth:`Task.from_batch`) and runs the network with :meth:`Task.run`.

* :class:`GenerationTask`: noise ``z ~ N(0, I)`` and an optional class label -> ``G(z, y)``.
* :class:`TranslationTask`: an input image (batch field ``source``) -> ``G(x)``; the paired
  target (field ``target``) is what the output is compared with, when the data has one. A
  restoration task composes the network's raw output with its input (:data:`COMPOSE`): an
  inpainter's output keeps the known pixels exactly, a colouriser's predicted colour (a*, b*) is
  joined to the input's lightness.

Inputs are dicts of tensors (``{"z", "y"}`` or ``{"x"}``), so a task is free to add fields.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor, nn

Inputs = Dict[str, Optional[Tensor]]
#: the seed of the private stream a network's own noise draws from when outputs are made (Task.generate)
OUTPUT_NOISE_SEED = 0


class Task:
    name = "task"
    net = "G"          # the network (by the objective's names) that makes outputs

    def run(self, net: nn.Module, inputs: Inputs) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, net: nn.Module, inputs: Inputs, batch_size: int = 500, cpu: bool = True) -> Tensor:
        """Outputs for ``inputs`` in eval mode (dropout off, BatchNorm's running statistics),
        in batches of ``batch_size``, fp32; the network's mode is restored.

        Randomness a network draws itself (a style generator's per-layer noise) comes from a private
        stream seeded :data:`OUTPUT_NOISE_SEED` at each call: the same inputs give the same outputs, and
        making outputs during training (grids, evaluation) never moves training's random stream, so a
        resumed run continues exactly."""
        was_training = net.training
        net.eval()
        device = next(net.parameters()).device
        n = len(next(v for v in inputs.values() if v is not None))
        out = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(OUTPUT_NOISE_SEED)
            try:
                for i in range(0, n, batch_size):
                    part = {k: (v[i:i + batch_size].to(device) if v is not None else None) for k, v in inputs.items()}
                    x = self.output(net, part)
                    out.append(x.cpu() if cpu else x)
            finally:
                net.train(was_training)
        return torch.cat(out)

    def output(self, net: nn.Module, inputs: Inputs) -> Tensor:
        """One batch's outputs, fp32, as :meth:`generate` makes them: :meth:`run`, then :meth:`finish`.
        No batching, mode or RNG handling: what an exported graph computes (:mod:`gankit.export`)."""
        return self.finish(self.run(net, inputs).float(), net)

    def finish(self, out: Tensor, net: nn.Module) -> Tensor:
        """The last step of making outputs, on ``run``'s fp32 result: none here."""
        return out

    def from_batch(self, batch: Dict[str, Tensor]) -> Inputs:
        raise NotImplementedError

    def seeded(self, n: int, seed: int, data=None, device="cpu", labels=None) -> Inputs:
        """The same ``n`` inputs for the same seed (grids, evaluation), from a private generator."""
        raise NotImplementedError

    def standing(self, seed: int, data, device="cpu", batches: int = 8, batch_size: int = 256) -> list:
        """``batches`` input dicts, the same for the same seed, on which an averaged network's
        BatchNorm statistics are re-estimated (a private generator: training's RNG is untouched)."""
        raise NotImplementedError


class GenerationTask(Task):
    """``G(z, y)``: z ~ N(0, I) of ``z_dim``; y class labels when ``num_classes`` > 0.

    Truncation (:mod:`gankit.latent`; make a truncated copy with :meth:`truncated`):
    ``psi`` = 1 is none. With ``w_space`` (a style generator) ψ and ``cutoff`` go to
    ``G(z, y, psi=, cutoff=)``, which truncates W toward its running mean; otherwise :meth:`draw`
    redraws the components of z outside BigGAN's threshold τ(ψ). ``noise_mode`` (style generators:
    "random", "const", "none"; None = the network's default) is passed to G when set."""

    name = "generation"

    def __init__(self, z_dim: int, num_classes: int = 0, net: str = "G", psi: float = 1.0,
                 cutoff: Optional[int] = None, w_space: bool = False, noise_mode: Optional[str] = None):
        self.z_dim, self.num_classes, self.net = z_dim, num_classes, net
        self.psi, self.cutoff, self.w_space, self.noise_mode = float(psi), cutoff, w_space, noise_mode

    def truncated(self, psi: float = 1.0, cutoff: Optional[int] = None, G: Optional[nn.Module] = None,
                  noise_mode: Optional[str] = None) -> "GenerationTask":
        """A copy of this task that samples with truncation ψ (1 = none), by the rule ``G`` takes: a
        generator with ``truncate`` (StyleGAN's) truncates W, on style indices < ``cutoff`` (None =
        all; 1 ≤ cutoff ≤ G.num_ws); any other (or G None) resamples z (BigGAN), and takes no cutoff.
        A ψ or cutoff this G cannot take fails in one line naming the truncation or cutoff option. With
        ψ = 1, no cutoff and no ``noise_mode`` the copy makes exactly what this task makes."""
        import copy

        from .errors import GankitError, option
        from .latent import check_psi

        style = callable(getattr(G, "truncate", None))
        psi = check_psi(psi, style)
        if cutoff is not None:
            if not style:
                raise GankitError(f"{option('--cutoff', cutoff)}: only a style generator (stylegan, stylegan2) "
                                  f"truncates some layers; this {type(G).__name__ if G is not None else 'generator'} "
                                  f"truncates z as a whole: drop {option('--cutoff')}")
            num_ws = int(G.num_ws)
            import numbers
            if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Integral) or not 1 <= int(cutoff) <= num_ws:
                raise GankitError(f"{option('--cutoff', cutoff)}: this generator has {num_ws} style inputs; give "
                                  f"1..{num_ws}")
            cutoff = int(cutoff)
        if noise_mode is not None and not style:
            raise GankitError(f"noise_mode {noise_mode!r}: only a style generator takes per-layer noise")
        out = copy.copy(self)
        out.psi, out.cutoff, out.w_space, out.noise_mode = psi, cutoff, style, noise_mode
        return out

    def labels(self, n: int, labels=None, generator: Optional[torch.Generator] = None) -> Optional[Tensor]:
        """(n,) int64 or None: ``labels`` an int -> that class; a tensor -> itself; ``"random"`` ->
        uniform draws from ``generator``; None -> 0, 1, …, K−1, 0, … (every class equally)."""
        if not self.num_classes:
            if labels is not None and not isinstance(labels, str):
                from .errors import GankitError
                raise GankitError("this model is not conditional: it takes no class label")
            return None
        if labels is None:
            return torch.arange(n) % self.num_classes
        if isinstance(labels, str):
            return torch.randint(self.num_classes, (n,), generator=generator)
        if isinstance(labels, int):
            return torch.full((n,), labels, dtype=torch.long)
        return torch.as_tensor(labels, dtype=torch.long)

    def draw(self, n: int, generator: Optional[torch.Generator] = None, labels=None, device="cpu") -> Inputs:
        """``n`` inputs: z from ``generator`` (torch's global RNG when None), then labels; then, when
        truncating z (ψ < 1 and not ``w_space``), the components outside τ(ψ) redrawn from the same
        generator — after the labels, so a seed gives the same labels at every ψ."""
        z = torch.randn(n, self.z_dim, generator=generator)
        y = self.labels(n, labels, generator)
        if self.psi < 1 and not self.w_space:
            from .latent import psi_to_tau, resample_outside
            z = resample_outside(z, psi_to_tau(self.psi), generator)
        return {"z": z.to(device), "y": y.to(device) if y is not None else None}

    def seeded(self, n: int, seed: int, data=None, device="cpu", labels=None) -> Inputs:
        return self.draw(n, torch.Generator().manual_seed(seed), labels, device)

    def standing(self, seed: int, data=None, device="cpu", batches: int = 8, batch_size: int = 256) -> list:
        g = torch.Generator().manual_seed(seed)
        return [self.draw(batch_size, g, labels="random", device=device) for _ in range(batches)]

    def run(self, net: nn.Module, inputs: Inputs) -> Tensor:
        if self.w_space:  # a style generator truncates W itself (G.forward's psi, cutoff)
            kw = {"psi": self.psi, "cutoff": self.cutoff} if self.psi != 1 else {}
            if self.noise_mode is not None:
                kw["noise_mode"] = self.noise_mode
            if kw:
                return net(inputs["z"], inputs.get("y"), **kw)
        return net(inputs["z"], inputs.get("y"))

    def finish(self, out: Tensor, net: nn.Module) -> Tensor:
        """A generator with a linear output (``linear_output``: StyleGAN's, whose images are only about
        [-1, 1] once trained) is clamped to the data's range [-1, 1]."""
        return out.clamp(-1, 1) if getattr(net, "linear_output", False) else out

    def from_batch(self, batch: Dict[str, Tensor]) -> Inputs:
        """Noise for a batch's size, with its labels (a conditional G follows the data's labels)."""
        x = batch["x"]
        y = batch.get("y") if self.num_classes else None
        return {"z": torch.randn(x.shape[0], self.z_dim, device=x.device), "y": y}


class Compose:
    """How a translator's raw output ``g`` becomes the task's output, given its input ``x``."""

    name = "none"

    def out_channels(self, target_channels: int) -> int:
        """Channels the network must output for targets of ``target_channels``."""
        return target_channels

    def __call__(self, g: Tensor, x: Tensor) -> Tensor:
        return g


class KeepKnown(Compose):
    """Inpainting and uncropping: ``x`` = (masked image, mask) with mask 1 on the hole (the last channel);
    the output is ``g`` on the hole and the input elsewhere, so known pixels come back bit-exact."""

    name = "keep-known"

    def __call__(self, g: Tensor, x: Tensor) -> Tensor:
        known, mask = x[:, :-1], x[:, -1:]
        return torch.where(mask.to(torch.bool), g.to(known.dtype), known)


class LabColour(Compose):
    """Colourisation: ``x`` = lightness L* (model scale L/50 − 1), the network predicts a*, b* (scale
    1/110, :mod:`gankit.colour`); the output is the RGB image of (L*, a*, b*) in [-1, 1]."""

    name = "lab"

    def out_channels(self, target_channels: int) -> int:
        return 2

    def __call__(self, g: Tensor, x: Tensor) -> Tensor:
        from .colour import from_lab_model

        return from_lab_model(x.float(), g.float())


#: ``DataInfo.compose`` -> the rule that joins a translator's output to its input
COMPOSE = {c.name: c() for c in (Compose, KeepKnown, LabColour)}


class TranslationTask(Task):
    """``G(x)`` for the batch field ``source``; ``target`` names the field it should become;
    ``compose`` (a key of :data:`COMPOSE`) joins the network's output to its input."""

    name = "translation"

    def __init__(self, source: str = "A", target: str = "B", net: str = "G", compose: str = "none"):
        self.source, self.target, self.net = source, target, net
        self.compose = COMPOSE[compose]

    def run(self, net: nn.Module, inputs: Inputs) -> Tensor:
        x = inputs["x"]
        return self.compose(net(x), x)

    def from_batch(self, batch: Dict[str, Tensor]) -> Inputs:
        return {"x": batch[self.source]}

    def finish(self, out: Tensor, net: nn.Module) -> Tensor:
        """Clamped to the images' range [-1, 1] (a super-resolution G has a linear output that may
        overshoot it slightly)."""
        return out.clamp(-1, 1)

    def seeded(self, n: int, seed: int, data=None, device="cpu", labels=None) -> Inputs:
        """``n`` inputs drawn from ``data`` (at most all of it), with their targets under ``"target"``
        when the data is paired (grids show them beside the outputs)."""
        n = min(n, len(data))
        g = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(data), generator=g)[:n].sort().values
        batch = data.batch(index.to(_device_of(data)), generator=g)
        out = {"x": batch[self.source].to(device)}
        if getattr(data, "paired", False):
            out["target"] = batch[self.target].to(device)
        return out

    def standing(self, seed: int, data=None, device="cpu", batches: int = 8, batch_size: int = 32) -> list:
        """As :meth:`Task.standing`, 32 images a batch: a translator's BatchNorm averages over every
        pixel, so 8 × 32 images of 64×64 give a million values per channel (256 a batch made a
        super-resolution run's EMA refresh cost more wall time than its training)."""
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(batches):
            index = torch.randint(len(data), (min(batch_size, len(data)),), generator=g)
            out.append(self.from_batch(data.batch(index.to(_device_of(data)), generator=g)))
        return [{k: v.to(device) for k, v in inputs.items()} for inputs in out]


def _device_of(data) -> torch.device:
    for v in vars(data).values():
        if isinstance(v, Tensor):
            return v.device
    return torch.device("cpu")
