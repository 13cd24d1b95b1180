"""Plots of 1D/2D samples for the served page, drawn without pyplot (whose global state is not
thread-safe): each call owns its Figure."""
from __future__ import annotations

import io
import threading
from typing import Optional

import numpy as np

_LOCK = threading.Lock()  # matplotlib's text layout caches are shared; one plot is drawn at a time


def vector_plot(x: np.ndarray, modes: Optional[np.ndarray] = None, path: Optional[np.ndarray] = None,
                point: Optional[np.ndarray] = None, title: str = "", metadata: Optional[dict] = None) -> bytes:
    """PNG bytes of samples ``x`` (N, D): a histogram for D = 1, a scatter of the first two
    coordinates otherwise; ``modes`` (K, D) marked; ``path`` (P, D) drawn as a line and ``point``
    (D,) as a star (a latent walk); ``metadata``: PNG text chunks (provenance)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with _LOCK:
        fig = Figure(figsize=(4.5, 4.5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        if x.shape[1] == 1:
            ax.hist(x[:, 0], bins=80, density=True, alpha=0.7, color="tab:orange", label="generated")
            for m in (modes[:, 0] if modes is not None and modes.shape[1] == 1 else []):
                ax.axvline(m, color="black", ls=":", lw=0.8)
            if point is not None:
                ax.axvline(point[0], color="tab:red", lw=2, label="walk")
            ax.set_xlabel("x")
        else:
            ax.scatter(x[:, 0], x[:, 1], s=3, c="tab:orange", alpha=0.5, label="generated")
            if modes is not None and modes.shape[1] >= 2:
                ax.scatter(modes[:, 0], modes[:, 1], marker="x", s=30, c="black", label="modes")
                pad = 0.25 * (np.ptp(modes[:, :2]) + 1e-9)
                ax.set_xlim(modes[:, 0].min() - pad, modes[:, 0].max() + pad)
                ax.set_ylim(modes[:, 1].min() - pad, modes[:, 1].max() + pad)
            if path is not None:
                ax.plot(path[:, 0], path[:, 1], color="tab:blue", lw=1.2, label="walk")
            if point is not None:
                ax.scatter([point[0]], [point[1]], marker="*", s=220, c="tab:red", zorder=5)
            ax.set_aspect("equal")
            if x.shape[1] > 2:
                title = (title + "; " if title else "") + f"first 2 of {x.shape[1]} coordinates"
        ax.legend(loc="upper right", fontsize=7, markerscale=2)
        if title:
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata=metadata)
        return buf.getvalue()
