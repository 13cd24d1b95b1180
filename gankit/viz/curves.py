"""Loss and discriminator-accuracy curves from metrics.jsonl records."""
from __future__ import annotations

import io
from pathlib import Path
from typing import List

from ..utils import atomic_write_bytes


def plot_curves(records: List[dict], path: Path | None = None) -> bytes:
    """Two panels: D and G loss; D's accuracy on real and fake (0.5 = D cannot tell)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in records if "d_loss" in r]
    steps = [r["step"] for r in recs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for key, label in (("d_loss", "D loss"), ("g_loss", "G loss")):
        a.plot(steps, [r.get(key, float("nan")) for r in recs], label=label)
    a.set_xlabel("generator step")
    a.set_title("losses")
    a.legend()
    for key, label in (("acc_real", "D accuracy on real"), ("acc_fake", "D accuracy on fake")):
        b.plot(steps, [r.get(key, float("nan")) for r in recs], label=label)
    b.axhline(0.5, color="grey", ls="--", lw=0.8, label="chance (converged)")
    b.set_ylim(-0.02, 1.02)
    b.set_xlabel("generator step")
    b.set_title("discriminator accuracy")
    b.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(Path(path), data)
    return data
