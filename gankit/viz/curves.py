"""Loss and discriminator-accuracy curves from metrics.jsonl records."""
from __future__ import annotations

import io
from pathlib import Path
from typing import List

from ..provenance import png_text
from ..utils import atomic_write_bytes


def plot_curves(records: List[dict], path: Path | None = None) -> bytes:
    """Two panels: the losses (and reconstruction terms); each D's accuracy on real and fake (0.5 = D cannot tell)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in records if any(k in r for k in ("d_loss", "g_loss", "l1", "recon", "mse", "l1_hole",
                                                       "perceptual"))]
    steps = [r["step"] for r in recs]
    present = {k for r in recs for k in r}
    dot = {"marker": "o"} if len(recs) < 3 else {}  # one record is a point, which a bare line would not show
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    # Adversarial losses, then the reconstruction terms translation objectives log (pix2pix L1,
    # CycleGAN cycle and identity), each as its own line.
    for key, label in (("d_loss", "D loss"), ("g_loss", "G loss"), ("l1", "L1"), ("cycle_A", "cycle A"),
                       ("cycle_B", "cycle B"), ("identity", "identity"),
                       ("loss", "−ELBO (VAE)"), ("recon", "reconstruction"), ("kl", "KL"),
                       ("mse", "pixel MSE"), ("l1_hole", "L1 on the hole"), ("perceptual", "perceptual"),
                       ("feature_matching", "feature matching")):
        if key in present:
            a.plot(steps, [r.get(key, float("nan")) for r in recs], label=label, **dot)
    a.set_xlabel("generator step")
    a.set_title("losses")
    if a.get_legend_handles_labels()[0]:
        a.legend()
    # One pair of lines per discriminator when there are several (acc_real/D_A, ...).
    per_d = sorted({k.split("/", 1)[1] for k in present if k.startswith("acc_real/")})
    pairs = ([(f"acc_real/{d}", f"{d} accuracy on real") for d in per_d] +
             [(f"acc_fake/{d}", f"{d} accuracy on fake") for d in per_d]) if per_d else \
        [("acc_real", "D accuracy on real"), ("acc_fake", "D accuracy on fake")]
    for key, label in pairs:
        if key in present:
            b.plot(steps, [r.get(key, float("nan")) for r in recs], label=label, **dot)
    b.axhline(0.5, color="grey", ls="--", lw=0.8, label="chance (converged)")
    b.set_ylim(-0.02, 1.02)
    b.set_xlabel("generator step")
    b.set_title("discriminator accuracy")
    b.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig, path)


def figure_png(fig, path=None) -> bytes:
    """The PNG of a matplotlib figure, with gankit's provenance text chunks (``gankit inspect``); the
    figure is closed, and written atomically to ``path`` when given."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=png_text())
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(Path(path), data)
    return data
