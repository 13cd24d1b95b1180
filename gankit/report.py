"""One self-contained HTML page about a run: ``report.html`` in the run folder.

Everything is inlined (pictures as ``data:image/png;base64`` URIs, no scripts, no external
files), so the page can be mailed or archived alone. It reads only the run folder:
``config.yaml``, ``metrics.jsonl``, ``events.jsonl``, ``health.json``, ``eval.json`` (written by
``gankit eval``) or else ``eval_cards.json`` (the last evaluation during training), and
``samples/step_*.png`` and ``animation.gif`` (``gankit animate``; drawn here from the snapshots when missing).
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .checkpoint import LATEST, read_skeleton
from .errors import GankitError
from .utils import atomic_write_text, read_jsonl
from .viz.curves import plot_curves

# Colours of the diagnoses on the timeline and in the table.
KIND_COLOURS = {"diverged": "#d62728", "mode_collapse": "#9467bd", "vanishing_gradients": "#8c564b",
                "unstable": "#ff7f0e", "d_lost": "#7f7f7f", "converged": "#2ca02c"}
# Record keys drawn in their own panels, not among "other metrics".
_KNOWN = {"step", "epoch", "seconds", "steps_per_s", "d_loss", "g_loss", "d_real", "d_fake", "acc_real",
          "acc_fake", "health", "events"}


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str, width: Optional[int] = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img src="{_data_uri(png)}" alt="{html.escape(alt)}"{w}>'


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", bbox_inches="tight")  # a title wider than a one-panel figure is kept whole
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(records: List[dict], key: str):
    pts = [(r["step"], r[key]) for r in records
           if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_grad_norms(records: List[dict]) -> Optional[bytes]:
    """G's gradient norm per layer (input side dark) and D's total, log scale."""
    g_layers = sorted({k for r in records for k in r if k.startswith("grad/G/")},
                      key=lambda k: next(i for i, r in enumerate(records) if k in r))
    if not any("grad/G" in r or "grad/D" in r for r in records):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.4), dpi=100)
    cmap = plt.get_cmap("viridis")
    for i, k in enumerate(g_layers):
        s, v = _series(records, k)
        ax.plot(s, [max(x, 1e-12) for x in v], color=cmap(i / max(len(g_layers) - 1, 1)), lw=0.9,
                alpha=0.8, label=f"G {k[len('grad/G/'):]}")
    for key, style in (("grad/G", dict(color="black", lw=2)), ("grad/D", dict(color="tab:red", lw=2))):
        s, v = _series(records, key)
        if s:
            ax.plot(s, [max(x, 1e-12) for x in v], label=f"{key[5:]} total", **style)
    ax.set_yscale("log")
    ax.set_xlabel("generator step")
    ax.set_title("gradient norms (measured on log steps)")
    ax.legend(fontsize=7, ncol=2, loc="best")
    return _figure_png(fig)


def plot_metrics(records: List[dict], keys: List[str], title: str) -> Optional[bytes]:
    """One small panel per numeric record key."""
    keys = [k for k in keys if _series(records, k)[0]]
    if not keys:
        return None
    plt = _plt()
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols + 0.6, 2.4 * rows), dpi=100, squeeze=False)
    for ax, key in zip(axes.flat, keys):
        s, v = _series(records, key)
        ax.plot(s, v, marker="." if len(s) < 30 else None)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _figure_png(fig)


def plot_timeline(records: List[dict], events: List[dict]) -> bytes:
    """D's balanced accuracy over steps with every health event marked where it happened."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 2.6), dpi=100)
    steps = [r["step"] for r in records if "acc_real" in r and "acc_fake" in r]
    bal = [(r["acc_real"] + r["acc_fake"]) / 2 for r in records if "acc_real" in r and "acc_fake" in r]
    if steps:
        ax.plot(steps, bal, color="tab:blue", lw=1.2, label="D balanced accuracy")
    ax.axhline(0.5, color="grey", ls="--", lw=0.8)
    kinds = list(KIND_COLOURS)
    seen = set()
    for ev in events:
        kind = ev.get("kind", "?")
        y = 1.05 + 0.07 * (kinds.index(kind) if kind in kinds else len(kinds))
        ax.axvline(ev["step"], color=KIND_COLOURS.get(kind, "black"), lw=0.8, alpha=0.5)
        ax.scatter([ev["step"]], [y], color=KIND_COLOURS.get(kind, "black"), s=40, zorder=3,
                   label=kind if kind not in seen else None, marker="v")
        seen.add(kind)
    last = max([r["step"] for r in records] + [e["step"] for e in events] + [1])
    ax.set_xlim(0, last * 1.02)
    ax.set_ylim(-0.02, 1.5)
    ax.set_yticks([0, 0.5, 1])
    ax.set_xlabel("generator step")
    ax.set_title("health events on the timeline")
    if steps or events:  # a model without D or events has nothing to label (matplotlib would warn)
        ax.legend(fontsize=7, loc="lower left", ncol=4)
    return _figure_png(fig)


def _sample_files(run_dir: Path, limit: int) -> List[Path]:
    files = sorted((run_dir / "samples").glob("step_*.png"))
    if len(files) <= limit:
        return files
    idx = sorted({round(i * (len(files) - 1) / (limit - 1)) for i in range(limit)})
    return [files[i] for i in idx]


def _cards(data: dict) -> str:
    """Evaluation results as cards: a number per card, nested mappings as a card of rows."""
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
                           for k, v in value.items())
            out.append(f'<div class="card"><h4>{html.escape(str(key))}</h4><table>{rows}</table></div>')
        else:
            out.append(f'<div class="card"><h4>{html.escape(str(key))}</h4>'
                       f'<div class="big">{html.escape(_fmt(value))}</div></div>')
    return '<div class="cards">' + "".join(out) + "</div>"


def _result_cards(results: List[dict]) -> str:
    """``eval.json`` results (name, value, std, card): the number big, the card's facts below it."""
    out = []
    for r in results:
        value = r.get("value")
        big = _fmt(value) + (f" ± {_fmt(r['std'])}" if r.get("std") is not None else "")
        card = r.get("card") or {}
        ref = card.get("reference") or {}
        facts = {"features": card.get("features"), "generated": card.get("n_fake"), "real": card.get("n_real"),
                 "reference": f"{ref.get('dataset', '')} {ref.get('split', '')}".strip() or None,
                 "card": r.get("card_id")}
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>"
                       for k, v in facts.items() if v not in (None, ""))
        warn = "".join(f'<div class="muted">⚠ {html.escape(str(w))}</div>' for w in card.get("warnings", []))
        out.append(f'<div class="card"><h4>{html.escape(str(r.get("name", "?")))}</h4>'
                   f'<div class="big">{html.escape(big)}</div><table>{rows}</table>{warn}</div>')
    return '<div class="cards">' + "".join(out) + "</div>"


def _evaluation(run_dir: Path) -> Optional[str]:
    """The Evaluation section: ``eval.json`` (gankit eval), else the last evaluation during training."""
    for name, what in (("eval.json", "gankit eval"), ("eval_cards.json", "the last evaluation during training")):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise GankitError(f"{path}: not valid JSON; the file is damaged") from None
        if isinstance(data, dict) and isinstance(data.get("results"), list):
            src = data.get("source") or {}
            where = f", {src.get('checkpoint')} checkpoint at step {src.get('step')}" if src.get("step") is not None \
                else (f", step {data['step']}" if "step" in data else "")
            return (f"<p class=\"muted\">From {html.escape(what)} ({html.escape(name)}{html.escape(where)}).</p>"
                    + _result_cards(data["results"]))
        return _cards(data if isinstance(data, dict) else {name: data})
    return None


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)[:200]
    return str(v)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.muted{color:#666} img{max-width:100%}
table.events{border-collapse:collapse;width:100%;font-size:14px}
table.events td,table.events th{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}
.kind{font-weight:600;white-space:nowrap}
.samples{display:flex;flex-wrap:wrap;gap:12px} .samples figure{margin:0;text-align:center;font-size:13px} .samples img{image-rendering:pixelated}
.cards{display:flex;flex-wrap:wrap;gap:12px} .card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:140px}
.card h4{margin:0 0 4px 0;font-size:13px;color:#555} .card .big{font-size:22px;font-weight:600}
.card table{font-size:13px} pre{background:#f6f6f6;padding:12px;overflow-x:auto;font-size:12px}
.status{display:inline-block;padding:2px 10px;border-radius:12px;color:white;font-weight:600}
"""


def build_report(run_dir: str | Path, max_samples: int = 8, sections: Sequence[Tuple[str, str]] = ()) -> str:
    """The report page of ``run_dir`` as an HTML string; ``sections``: further (title, HTML body)
    sections shown after the samples (e.g. the audio players of a speech run, gankit/audio/render.py)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise GankitError(f"{run_dir}: not a gankit run folder (no config.yaml); give the folder `gankit train` wrote")
    config_text = (run_dir / "config.yaml").read_text()
    import yaml
    cfg = yaml.safe_load(config_text) or {}
    records = read_jsonl(run_dir / "metrics.jsonl")
    events = read_jsonl(run_dir / "events.jsonl")
    health = json.loads((run_dir / "health.json").read_text()) if (run_dir / "health.json").exists() else None

    name = html.escape(str(cfg.get("name", run_dir.name)))
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>gankit report: {name}</title>"
             f"<style>{CSS}</style></head><body>"]
    last = records[-1] if records else {}
    status = health["status"] if health else "no health record"
    colour = KIND_COLOURS.get(status, "#2ca02c" if status == "healthy" else "#555")
    parts.append(f"<h1>{name}</h1><p class=\"muted\">{html.escape(str(cfg.get('description', '')))}</p>")
    parts.append(f"<p>{last.get('step', 0)} generator steps, {last.get('epoch', 0):.2f} epochs, "
                 f"{last.get('seconds', 0):.1f} s of training. Health: <span class=\"status\" "
                 f"style=\"background:{colour}\">{html.escape(status)}</span></p>")
    if health and health.get("stop_reason"):
        parts.append(f"<p><b>Stopped early:</b> {html.escape(health['stop_reason'])}</p>")
    latest = read_skeleton(run_dir / LATEST)
    if latest is None or not latest.get("run", {}).get("finished"):
        at = (f"its latest checkpoint is at step {latest.get('trainer', {}).get('step')}" if latest
              else "it has no checkpoint yet")
        parts.append(f"<p><b>Not finished:</b> {at}; the run stopped before its budget (killed) or is still "
                     f"training. <code>gankit train --resume {html.escape(str(run_dir))}</code> continues it.</p>")

    # Health: summary, timeline, table.
    parts.append("<h2>Health</h2>")
    if health:
        counts = ", ".join(f"{k} ×{n}" for k, n in health.get("events", {}).items() if n) or "no diagnosis fired"
        parts.append(f"<p>{html.escape(counts)}. Rollbacks: {health.get('rollbacks', 0)}; learning rates "
                     f"×{health.get('lr_scale', 1):g} of the configured ones at the end.</p>")
    if records or events:
        parts.append(_img(plot_timeline(records, events), "health events timeline"))
    if events:
        rows = []
        for ev in events:
            c = KIND_COLOURS.get(ev.get("kind"), "black")
            rows.append(f"<tr><td>{ev['step']}</td><td class=\"kind\" style=\"color:{c}\">{html.escape(ev['kind'])}</td>"
                        f"<td>{html.escape(ev.get('message', ''))}</td><td>{html.escape(ev.get('action') or '')}</td>"
                        f"<td>{html.escape(ev.get('advice', ''))}</td></tr>")
        parts.append("<table class=\"events\"><tr><th>step</th><th>diagnosis</th><th>evidence</th><th>action</th>"
                     "<th>what to do</th></tr>" + "".join(rows) + "</table>")
    else:
        parts.append("<p>No health events.</p>")

    # Samples over time.
    files = _sample_files(run_dir, max_samples)
    if files:
        parts.append("<h2>Samples over time</h2><div class=\"samples\">")
        for f in files:
            step = f.stem.split("_")[-1].lstrip("0") or "0"
            parts.append(f"<figure>{_img(f.read_bytes(), f.name, 250)}<figcaption>step {step}</figcaption></figure>")
        parts.append("</div>")
    for title, body in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>{body}")

    # The animation of a run that kept snapshots (1D/2D), drawn here when `gankit animate` has not
    # drawn it since the last snapshot; inlined like the pictures.
    anim = run_dir / "animation.gif"
    snaps = list((run_dir / "snapshots").glob("step_*.safetensors"))
    if snaps and (not anim.exists() or anim.stat().st_mtime < max(p.stat().st_mtime for p in snaps)):
        from .animate import animate_run
        animate_run(run_dir)
    if anim.exists():
        uri = "data:image/gif;base64," + base64.b64encode(anim.read_bytes()).decode("ascii")
        parts.append("<h2>Training, animated</h2><p class=\"muted\">p_data, G's density and D(x) (1D) or G's samples "
                     f"over D's output (2D) at each snapshot (<code>gankit animate</code>).</p><img src=\"{uri}\" "
                     "alt=\"training animation\">")

    # Curves.
    if records:
        parts.append("<h2>Losses and discriminator accuracy</h2>")
        parts.append(_img(plot_curves(records), "losses and D accuracy"))
        grads = plot_grad_norms(records)
        if grads is not None:
            parts.append("<h2>Gradient norms</h2>" + _img(grads, "gradient norms"))
        health_keys = sorted({k for r in records for k in r if k.startswith("health/")})
        png = plot_metrics(records, health_keys, "health signals (diversity and energy are relative to real data)")
        if png is not None:
            parts.append("<h2>Health signals</h2>" + _img(png, "health signals"))
        other = sorted({k for r in records for k, v in r.items()
                        if k not in _KNOWN and not k.startswith(("grad/", "health/"))
                        and isinstance(v, (int, float)) and not isinstance(v, bool)})
        png = plot_metrics(records, other, "metrics")
        if png is not None:
            parts.append("<h2>Metrics</h2>" + _img(png, "metrics"))

    evaluation = _evaluation(run_dir)
    if evaluation is not None:
        parts.append("<h2>Evaluation</h2>" + evaluation)
    parts.append(f"<h2>Configuration</h2><pre>{html.escape(config_text)}</pre>")
    parts.append(f"<p class=\"muted\">Written by <code>gankit report {html.escape(str(run_dir))}</code>.</p>"
                 "</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path, out: Optional[str | Path] = None, max_samples: int = 8,
                 sections: Sequence[Tuple[str, str]] = ()) -> Path:
    """Write ``report.html`` (or ``out``) for ``run_dir`` and return its path."""
    page = build_report(run_dir, max_samples, sections)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write_text(path, page)
    return path
