"""Image sizes (H, W) the network families can take, and the one error for those they cannot.

A network class that has a size rule gives it as ``check_size(h, w, **kwargs)``, a classmethod
raising :class:`ImageSizeError`; ``kwargs`` are the constructor's (other keys are ignored), so the
rule can be checked from a config before anything is built (:func:`check_config_sizes`). The
networks call the same method when they are built (noise generators and their discriminators,
which know ``sample_shape``) or on every forward (translators, which see the size only then).

Square sizes are the case H = W of every rule; nothing about a square network changes.
"""
from __future__ import annotations

from typing import Optional, Tuple

from ..errors import ConfigError

Size = Tuple[int, int]


def format_resolution(size: Size) -> str:
    """How ``data.resolution`` is written for ``size``: ``32`` when square, ``[32, 64]`` otherwise."""
    h, w = size
    return str(h) if h == w else f"[{h}, {w}]"


class ImageSizeError(ConfigError, ValueError):
    """An image size a network cannot take.

    A ``ValueError`` for code that builds networks directly, and a :class:`~gankit.errors.GankitError`,
    so that the CLI prints it as one line. ``str()`` is ``"{who} {reason}, got {h}x{w}"`` plus the
    suggestion; :meth:`for_config` is the same said of ``data.resolution``.
    """

    def __init__(self, who: str, reason: str, size: Size, suggest: Optional[Size] = None, note: str = ""):
        self.who, self.reason, self.size, self.suggest, self.note = who, reason, tuple(size), suggest, note
        text = f"{who} {reason}, got {size[0]}x{size[1]}"
        if suggest is not None:
            text += f"; use e.g. data.resolution={format_resolution(suggest)}"
        super().__init__(text + (f" ({note})" if note else ""))

    def for_config(self) -> str:
        """One line naming ``data.resolution``, what the network needs and a size that works."""
        text = f"data.resolution={format_resolution(self.size)}: {self.who} {self.reason}"
        if self.suggest is not None:
            text += f"; use e.g. {format_resolution(self.suggest)}"
        return text + (f" ({self.note})" if self.note else "")


# -- the rule of the noise-to-image families (dcgan, resnet) --------------------------------------

def stages(resolution: int) -> Tuple[int, int]:
    """(s0, n) with resolution = s0 · 2ⁿ, s0 ∈ {4, 7}, n ≥ 1; ValueError when there is none."""
    for s0 in (4, 7):
        r, n = resolution, 0
        while r > s0 and r % 2 == 0:
            r //= 2
            n += 1
        if r == s0 and n >= 1:
            return s0, n
    raise ValueError(f"DCGAN needs a resolution of 4·2ⁿ or 7·2ⁿ (8, 16, 28, 32, 64, ...), got {resolution}")


def _nearest_stage_side(side: int) -> int:
    """The side s0 · 2ⁿ (s0 ∈ {4, 7}, n ≥ 1) nearest to ``side`` (the larger one on a tie)."""
    sides = sorted(s0 * 2 ** n for s0 in (4, 7) for n in range(1, 14))
    return min(sides, key=lambda s: (abs(s - side), -s))


def grid(h: int, w: int) -> Tuple[int, int, int]:
    """(h0, w0, n): an (h, w) image is an (h0, w0) map upsampled n times by 2.

    The shorter side fixes n: it must be s0 · 2ⁿ with s0 ∈ {4, 7} and n ≥ 1 (8, 16, 28, 32, 56, 64,
    ...); the longer side must then be a multiple of 2ⁿ. Square sizes give (s0, s0, n), the grid the
    families always had; 32×64 gives (4, 8, 3), 28×56 gives (7, 14, 2).
    Raises ValueError (no "who" to name; see :func:`check_grid`).
    """
    short, long_ = min(h, w), max(h, w)
    s0, n = stages(short)  # ValueError when the shorter side is not s0 · 2ⁿ
    if long_ % 2 ** n:
        raise ValueError(f"the longer side must be a multiple of {2 ** n}")
    return h // 2 ** n, w // 2 ** n, n


def check_grid(who: str, h: int, w: int, up: bool = True) -> Tuple[int, int, int]:
    """:func:`grid` of (h, w), or an :class:`ImageSizeError` naming ``who`` (a generator when ``up``, else
    a discriminator) with the nearest size that works."""
    try:
        return grid(h, w)
    except ValueError:
        pass
    short = _nearest_stage_side(min(h, w))
    _, n = stages(short)
    f = 2 ** n
    long_ = max(f, round(max(h, w) / f) * f, short)
    suggest = (short, long_) if h <= w else (long_, short)
    h0, w0 = suggest[0] // f, suggest[1] // f
    how = f"it upsamples {n} times from {h0}x{w0}" if up else f"it halves {n} times to {h0}x{w0}"
    raise ImageSizeError(who, "needs the shorter side 4·2ⁿ or 7·2ⁿ (8, 16, 28, 32, 56, 64, ...) and the "
                              "longer side a multiple of 2ⁿ", (h, w), suggest, note=how)


def sample_grid(who: str, sample_shape, up: bool = True) -> tuple[int, int, int, int]:
    """(channels, h0, w0, n) of an image sample shape (C, H, W): see :func:`grid`;
    ``who`` (a generator when ``up``) is named in the error for a size it cannot take."""
    if len(sample_shape) != 3:
        raise ValueError(f"{who} needs images (C, H, W), got sample shape {tuple(sample_shape)}")
    c, h, w = sample_shape
    h0, w0, n = check_grid(who, h, w, up)
    return c, h0, w0, n


def check_multiple(who: str, h: int, w: int, multiple: int, least: int, reason: str) -> None:
    """An :class:`ImageSizeError` unless both sides are multiples of ``multiple`` and at least ``least``;
    the suggestion rounds each side to the nearest size that works."""
    if h % multiple == 0 and w % multiple == 0 and h >= least and w >= least:
        return

    def fix(side: int) -> int:
        side = max(side, least)
        return max(least, round(side / multiple) * multiple, multiple)

    raise ImageSizeError(who, reason, (h, w), (fix(h), fix(w)))
