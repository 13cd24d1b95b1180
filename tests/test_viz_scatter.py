"""2D scatter figures of samples (run grids, gankit sample -o .png): what lies outside the axes is
counted, the axes widen within a bound, and the real points are drawn over the mode markers."""
import math

import numpy as np
import pytest
import torch

from gankit.viz.grids import scatter_limits, scatter_samples

RING = torch.tensor([[math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)] for k in range(8)])


@pytest.fixture
def figures(monkeypatch):
    """The figures scatter_samples closes, kept for inspection."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    for fig in kept:
        close(fig)


def test_samples_far_from_the_modes_are_counted_not_silently_cut(figures):
    g = torch.Generator().manual_seed(0)
    far = torch.randn(1000, 2, generator=g) * 0.1 + 5   # the audit's empty plot: all beyond the mode box
    png = scatter_samples(far, modes=RING)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    ax = figures[-1].axes[0]
    # The axes widen at most one span of the modes (2) beyond the ±25 % box: x up to 1 + 0.5 + 2.
    assert ax.get_xlim()[1] == pytest.approx(3.5, abs=1e-6)
    assert ax.get_xlabel() == "1,000 of 1,000 generated samples outside the plot"


def test_samples_near_the_modes_widen_the_axes_and_need_no_note(figures):
    g = torch.Generator().manual_seed(0)
    near = torch.randn(1000, 2, generator=g) * 0.05 + torch.tensor([2.5, 0.0])  # inside the bound
    scatter_samples(near, modes=RING)
    ax = figures[-1].axes[0]
    assert ax.get_xlim()[1] >= near[:, 0].max().item() and ax.get_xlabel() == ""
    lo, hi = scatter_limits(RING.numpy(), RING.numpy())   # samples on the modes: the ±25 % box
    assert np.allclose(lo, -1.5) and np.allclose(hi, 1.5)


def test_real_points_are_drawn_over_the_mode_markers(figures):
    real = RING.repeat(50, 1) + 0.01 * torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    scatter_samples(RING.repeat(10, 1), real=real, modes=RING)
    ax = figures[-1].axes[0]
    z = {c.get_label(): c.get_zorder() for c in ax.collections}
    assert z["modes"] < z["real"] < z["generated"]
