"""The truncation trick: trading variety for typical samples with one number ψ, for every noise generator.

ψ = 1 is no truncation; smaller ψ gives more typical, less varied samples. What ψ does depends on
the generator (:meth:`gankit.tasks.GenerationTask.truncated` picks the rule):

* a style generator (one with ``truncate``: StyleGAN, StyleGAN2) truncates in W (Karras et al. 2019,
  §B / StyleGAN2 §C): ``w' = w_avg + ψ (w − w_avg)``, on the style indices below ``cutoff`` (all
  when None). ψ = 0 is allowed there: every z gives the average image.
* any other noise generator (DCGAN, ResNet, BigGAN, ...) truncates z by resampling (Brock et al. 2019,
  BigGAN §3.1): every component with |z_i| > τ is redrawn, with τ chosen so that ψ is the probability
  mass of N(0, 1) a component keeps, τ = Φ⁻¹((1 + ψ)/2) (:func:`gankit.latent.psi_to_tau`).

:func:`truncation_curve` (a run folder) and :func:`curve_rows` (a loaded model) score samples at several ψ with gankit's evaluation (FID, precision, recall
on the domain features against the same real statistics as ``gankit eval``): how much fidelity each
step of truncation buys and how much recall it costs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from .. import provenance
from ..errors import GankitError, option
from ..latent import check_psi

DEFAULT_PSIS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
CURVE_METRICS = ("fid", "pr")          # gankit.metrics names; "pr" reports precision and recall
CURVE_COLUMNS = ("fid", "precision", "recall")


# -- the truncation curve -----------------------------------------------------------------------

def curve_rows(model, psis: Sequence[float], n: int = 10_000, seed: int = 0, split: str = "test",
               features: Optional[str] = None, cutoff: Optional[int] = None,
               threads: Optional[int] = None, log: Optional[Callable[[str], None]] = None) -> List[dict]:
    """Rows ``{"psi", "fid", "precision", "recall"}``, one per ψ in ``psis`` (in that order), for a
    loaded :class:`gankit.GAN`: ``n`` samples at each ψ (``model.sample(n, seed, truncation=ψ)``, the
    same seed, so each ψ truncates the same codes) scored by :func:`gankit.metrics.evaluate.evaluate_samples`
    against ``split`` of the run's data with ``features`` (default: ``domain`` for images, ``raw`` for
    vectors) and the same real subset as ``gankit eval`` with this seed. The extractor and the reference
    data are loaded once for all ψ. A value the evaluation could not compute is None."""
    from ..data import reference_config
    from ..metrics.evaluate import EvalError, Samples, evaluate_samples, load_reference
    from ..metrics.features import default_features, get_extractor, num_threads

    if not psis:
        raise GankitError(f"{option('--psi', param='psis')}: give at least one ψ (1 = none), e.g. 1, 0.9, 0.8, 0.7")
    if n < 2:
        raise EvalError(f"{option('-n', n)}: need at least 2 samples")
    model.require_generation()
    style = callable(getattr(model.G, "truncate", None))
    psis = [check_psi(p, style, "--psi", "psis") for p in psis]
    cfg = model.cfg.data
    ref = reference_config(cfg)  # as gankit eval's reference
    reference = load_reference(ref, split)
    extractor = get_extractor(features or default_features(ref, reference.kind), ref)
    src = {"kind": "run", "path": str(model.run_dir) if model.run_dir else None, "name": model.cfg.name,
           "step": model.step}
    rows = []
    with num_threads(threads):
        for psi in psis:
            x, y = model.sample(n, seed=seed, truncation=psi, cutoff=cutoff)
            samples = Samples(x, y, ref, dict(src, label=f"ψ={psi:g}", truncation=psi))
            result = evaluate_samples(samples, metrics=list(CURVE_METRICS), split=split, seed=seed,
                                      extractor=extractor, reference=reference, log=log)
            values = {r["name"]: r["value"] for r in result.results}
            rows.append({"psi": psi, **{c: values.get(c) for c in CURVE_COLUMNS}})
            if log:
                log(f"ψ={psi:g}: " + ", ".join(f"{c} {_fmt(values.get(c))}" for c in CURVE_COLUMNS))
    return rows


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def format_curve(rows: List[dict]) -> str:
    """The rows as an aligned text table: ψ, FID (lower is better), precision and recall (higher)."""
    lines = [f"{'psi':>6} {'fid':>10} {'precision':>10} {'recall':>10}"]
    for r in rows:
        lines.append(f"{r['psi']:>6g} " + " ".join(f"{_fmt(r[c]):>10}" for c in CURVE_COLUMNS))
    return "\n".join(lines)


def curve_json(rows: List[dict], meta: dict) -> str:
    """The JSON document a curve is saved as: ``{"provenance": {...}, **meta, "rows": [...]}`` (meta: run,
    n, seed, ...; ``provenance`` the record a PNG gankit writes carries, :func:`gankit.provenance.current`,
    which also marks the file as gankit's to replace)."""
    return json.dumps({"provenance": provenance.current(), **meta, "rows": rows}, indent=1) + "\n"


def plot_curve(rows: List[dict], path: Optional[Path] = None, title: str = "") -> bytes:
    """PNG bytes of FID (left axis) and precision and recall (right axis, [0, 1]) against ψ, with ψ
    decreasing to the right (more truncation); written atomically to ``path`` when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz.curves import figure_png

    psi = [r["psi"] for r in rows]
    nan = float("nan")
    fig, a = plt.subplots(figsize=(6, 3.6), dpi=100)
    a.plot(psi, [nan if r["fid"] is None else r["fid"] for r in rows], "o-", color="C0", label="FID")
    a.set_xlabel("truncation ψ (1 = none)")
    a.set_ylabel("FID (lower is better)", color="C0")
    a.invert_xaxis()
    a.ticklabel_format(axis="y", useOffset=False)  # FID values as they are, not as offsets from one
    b = a.twinx()
    for key, colour in (("precision", "C1"), ("recall", "C2")):
        b.plot(psi, [nan if r[key] is None else r[key] for r in rows], "s--", color=colour, label=key)
    b.set_ylim(-0.02, 1.02)
    b.set_ylabel("precision / recall")
    handles = a.get_legend_handles_labels()[0] + b.get_legend_handles_labels()[0]
    a.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="best")
    a.set_title(title or "truncation curve")
    fig.tight_layout()
    return figure_png(fig, path)


# -- on a run folder (the API and the CLI) --------------------------------------------------

@provenance.scoped
def truncation_curve(run_dir: str | Path, psis=DEFAULT_PSIS, n: int = 10_000, seed: int = 0,
                     out: Optional[str | Path] = None, split: str = "test", features: Optional[str] = None,
                     cutoff: Optional[int] = None, which: str = "latest", threads: Optional[int] = None,
                     quiet: bool = True) -> list:
    """FID, precision and recall of a generation run's samples at each truncation ψ in ``psis``
    (:func:`curve_rows`: ``n`` samples a ψ, seed ``seed``, scored as
    ``gankit eval`` scores them, on ``features`` against ``split``). Returns the rows
    ``[{"psi", "fid", "precision", "recall"}, ...]``. ``out`` (a .png): the plot is written there and
    the rows as JSON beside it (``<stem>.json``, with a ``provenance`` record), both atomically; an
    existing file of either name is replaced only when gankit wrote it (refused in one line, before
    any work, otherwise). None writes nothing."""
    import sys

    from ..api import check_replaceable, load
    from ..utils import atomic_write_bytes

    if out is not None and Path(out).suffix != ".png":
        raise GankitError(f"{option('-o', out, param='out')}: the curve is a picture; give a file ending in .png (the "
                          "JSON goes beside it)")
    if out is not None:  # both files, before any sample is scored: gankit replaces only what it wrote
        check_replaceable(out)
        check_replaceable(Path(out).with_suffix(".json"))
    model = load(run_dir, which=which)
    log = None if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    rows = curve_rows(model, list(psis), n=n, seed=seed, split=split, features=features, cutoff=cutoff,
                 threads=threads, log=log)
    if out is not None:
        out = Path(out)
        provenance.update_from_model(model, "gankit.truncation", seed=seed)
        meta = {"run": str(run_dir), "step": model.step, "n": n, "seed": seed, "split": split,
                "features": features or "default (domain for images, raw for vectors)", "cutoff": cutoff,
                "rule": "W toward w_avg" if callable(getattr(model.G, "truncate", None)) else "z resampled inside τ(ψ)"}
        atomic_write_bytes(out.with_suffix(".json"), curve_json(rows, meta).encode())
        plot_curve(rows, out, title=f"{Path(run_dir).name}: truncation (n={n})")
    return rows
