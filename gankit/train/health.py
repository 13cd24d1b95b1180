"""Training health: diagnose a run while it trains and act on what is found.

Every log record (``train.log_every`` generator steps) the monitor reads cheap signals:

* from the record: D's accuracy on real and fake, D and G losses, and the gradient norms the
  loop measured on that step (``grad/G``, ``grad/G/<layer>``, ``grad/D``; see
  :meth:`Trainer.grad_norm_stats`);
* from ``health.samples`` samples of G on fixed noise against as many real samples, in a feature
  space (1D/2D points as they are; images in the domain feature network's space when its
  weights are cached, else pixels average-pooled to at most 16×16): diversity = mean pairwise
  distance of generated / of real samples; energy distance between the two sets divided by the
  real mean distance (a quality proxy: 0 = same distribution); the entropy of the histogram of
  generated samples over the data's classes (domain network) or nearest modes (mixtures)
  divided by the real data's; for mixtures, the share of modes visited (≥ 1/4 of a fair share of
  samples within a quarter of the spacing between modes) and covered (VEEGAN/PacGAN protocol:
  within 3σ, its 20-of-2,500 count scaled to the sample count);
* whether any logged number or any weight of G or D is NaN or infinite.

From the last ``health.window`` records it diagnoses (thresholds are ``health.*`` keys):

=====================  ==========================================================================
``diverged``           a NaN/Inf loss, gradient norm or weight, or a loss whose magnitude exceeds
                       ``explode_factor`` × its median over the previous window (at least 1).
``mode_collapse``      over the whole window, diversity < ``collapse_diversity``, or the mode
                       histogram entropy ratio < ``collapse_entropy``.
``vanishing_gradients`` over the whole window, G's gradient norm < ``vanishing_rel`` × the norm of
                       G's weights, or < ``vanishing_ratio`` × its largest window median so far.
``unstable``           in the window, a loss jumping between records by more than ``oscillation``
                       × (|its median| + 0.1) on average, ≥ 2 loss spikes (robust z-score >
                       ``spike_z``), or D's accuracy on fake moving by > ``swing`` per record.
``d_lost``/``converged`` over the whole window D's balanced accuracy is 0.5 ± ``chance_tol``, and
                       the quality score (the evaluator's if there is one, else the energy
                       distance) has not improved for ``patience`` records. ``converged`` when
                       samples look right (no collapse; ≥ 90 % of modes covered where known),
                       ``d_lost`` when they do not: D lost the game before G learnt the data.
=====================  ==========================================================================

Only ``diverged`` is judged during the first ``health.warmup`` steps. A diagnosis is an
:class:`Event` with step, evidence and advice, written to ``events.jsonl``, to the record's
``events`` list and to the progress bar; the run's summary goes to ``health.json``.

Policies: on ``diverged`` roll back to the last healthy log step, lower the learning rates by
``lr_factor`` and continue, at most ``max_rollbacks`` times, then stop there; on ``d_lost`` /
``converged`` stop (the best checkpoint is kept); on ``vanishing_gradients`` optionally switch a
minimax loss to the non-saturating one or add annealed instance noise to D's inputs.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import torch

from .run import Callback

KINDS = ("diverged", "mode_collapse", "vanishing_gradients", "unstable", "d_lost", "converged")

ADVICE = {
    "diverged": "lower the learning rates (or raise Adam's eps), add a gradient penalty (R1) or "
                "spectral normalisation to D, and check the data range",
    "mode_collapse": "G maps many z to few outputs: try minibatch discrimination or PacGAN "
                     "(model.d.minibatch_kernels / model.d.pack), unrolled D, a lower G learning "
                     "rate, or more D steps",
    "vanishing_gradients": "D rejects G's samples so confidently that G gets no signal: use the "
                           "non-saturating loss instead of minimax, lower D's learning rate or "
                           "train.d_steps, add instance noise or an R1 penalty",
    "unstable": "losses oscillate or spike: lower the learning rates, use Adam betas (0.5, 0.999) "
                "or (0, 0.99), add R1 or spectral normalisation, or an EMA of G (train.ema)",
    "d_lost": "D cannot tell real from fake but the samples are not right: strengthen D (width, "
              "learning rate, train.d_steps) or weaken G's learning rate, then retrain",
    "converged": "D is at chance and quality stopped improving: training has done what it can "
                 "with this setup; use the best checkpoint",
}


@dataclass
class Event:
    """One diagnosis: what was seen at ``step``, the numbers behind it and what to do."""

    kind: str                        # one of KINDS
    step: int                        # generator step of the record that showed it
    message: str                     # one line for people
    evidence: dict = field(default_factory=dict)
    advice: str = ""
    action: Optional[str] = None     # what the monitor did about it (rollback, stop, remedy)

    def to_dict(self) -> dict:
        return asdict(self)


# -- signals ------------------------------------------------------------------------------------
def features(x: torch.Tensor) -> torch.Tensor:
    """(N, ...) samples -> (N, F) float features for distances: vectors as they are; images
    average-pooled to at most 16×16 pixels (a cheap stand-in for a domain feature network)."""
    x = x.detach().float()
    if x.ndim == 4:
        side = min(16, x.shape[-1])
        x = torch.nn.functional.adaptive_avg_pool2d(x, side)
    return x.reshape(x.shape[0], -1)


def mean_pairwise_distance(a: torch.Tensor, b: Optional[torch.Tensor] = None) -> float:
    """Mean Euclidean distance over pairs (i ≠ j within ``a``; all pairs between ``a`` and ``b``)."""
    if b is None:
        n = a.shape[0]
        return float(torch.cdist(a, a).sum() / max(n * (n - 1), 1))
    return float(torch.cdist(a, b).mean())


def mode_radius(modes: torch.Tensor, std: float) -> float:
    """How near a sample must be to a mode to count for it: a quarter of the smallest distance
    between modes (loose on purpose: early, imprecise samples still show which modes G visits),
    and never less than 3σ·√D."""
    r = 3 * std * math.sqrt(modes.shape[1])
    if len(modes) > 1:
        d = torch.cdist(modes.float(), modes.float()) + torch.eye(len(modes)) * 1e9
        r = max(r, 0.25 * float(d.min()))
    return r


def mode_histogram(x: torch.Tensor, modes: torch.Tensor, radius: float) -> torch.Tensor:
    """Counts (M,) of samples whose nearest mode is within ``radius`` (further ones count nowhere)."""
    d = torch.cdist(x.float(), modes.float().to(x.device))   # (N, M)
    dist, idx = d.min(1)
    return torch.bincount(idx[dist <= radius], minlength=modes.shape[0]).float()


def entropy(counts: torch.Tensor) -> float:
    p = counts / counts.sum().clamp_min(1e-12)
    return float(-(p[p > 0] * p[p > 0].log()).sum()) + 0.0  # + 0.0: no "-0"


class SampleProbe:
    """Generated vs real samples on fixed noise: diversity, energy distance, histogram entropy.

    Images are compared in the domain feature network's space when its cached weights exist
    (``gankit features train DATASET``; never trained here), with the class histogram of its
    predictions; otherwise in pixel space average-pooled to at most 16×16 (no class histogram).
    1D/2D points are compared as they are, with the histogram of their nearest modes.
    """

    def __init__(self, trainer, n: int, seed: int):
        self.trainer = trainer
        data = trainer.data
        g = torch.Generator().manual_seed(seed + 7)
        n = min(n, len(data))
        idx = torch.randperm(len(data), generator=g)[:n]
        task = trainer.task
        batch = data.batch(idx.to(trainer.device))
        if task.name == "generation":  # G's samples against the data
            real = batch["x"]
            self.inputs = task.draw(n, g, device=trainer.device)
        else:  # outputs against the target domain
            real = batch[task.target]
            self.inputs = task.from_batch(batch)
        self.extractor, self.space = None, "points" if data.kind == "vector" else "pixels pooled to <=16x16"
        if data.kind == "image":
            try:
                from ..errors import GankitError
                from ..metrics.domain_net import DomainFeatures
                self.extractor = DomainFeatures.for_dataset(trainer.cfg.data, train_if_missing=False)
                self.space = self.extractor.name
            except (ImportError, GankitError, KeyError, ValueError):
                self.extractor = None
        self.modes = data.modes.cpu() if getattr(data, "modes", None) is not None else None
        if self.modes is not None:
            self.radius = mode_radius(self.modes, data.mode_std)
            self.mode_std = data.mode_std
        self.real, real_counts = self._embed(real)
        self.real_dist = max(mean_pairwise_distance(self.real), 1e-12)
        self.real_entropy = entropy(real_counts) if real_counts is not None else None

    def _embed(self, x: torch.Tensor):
        """(features (N, F) on the CPU, histogram counts or None)."""
        if self.extractor is not None:
            out = self.extractor(x.detach().float().cpu())
            counts = None
            if out.logits is not None:
                counts = torch.bincount(out.logits.argmax(1), minlength=out.logits.shape[1]).float()
            return out.features, counts
        f = features(x).cpu()
        counts = mode_histogram(f, self.modes, self.radius) if self.modes is not None else None
        return f, counts

    @torch.no_grad()
    def measure(self) -> Dict[str, float]:
        task = self.trainer.task
        x = task.generate(self.trainer.nets[task.net], self.inputs, cpu=False)
        if not torch.isfinite(x).all():
            return {"diversity": float("nan"), "energy": float("nan")}
        fake, counts = self._embed(x)
        div = mean_pairwise_distance(fake)
        cross = mean_pairwise_distance(fake, self.real)
        out = {"diversity": div / self.real_dist,
               "energy": (2 * cross - div - self.real_dist) / self.real_dist}
        if counts is not None and self.real_entropy:
            out["entropy"] = entropy(counts) / self.real_entropy
        if self.modes is not None:
            # Visited: a mode holds at least 1/4 of its fair share of samples within the loose radius.
            out["modes"] = float((counts >= 0.25 * fake.shape[0] / len(self.modes)).float().mean())
            # Covered as the VEEGAN/PacGAN protocol counts it (within 3σ; its 20 of 2,500 samples
            # scaled to this sample count), as `gankit eval --metrics modes` reports it.
            from ..metrics.modes import MIN_COUNT, NUM_SAMPLES, mode_stats
            st = mode_stats(fake, self.modes, self.mode_std,
                            min_count=max(1, round(MIN_COUNT * fake.shape[0] / NUM_SAMPLES)))
            out["modes_hq"] = st["modes"] / st["num_modes"]
        return out


def weight_norms(*modules: torch.nn.Module) -> List[float]:
    """L2 norm of all parameters of each module, read in one host sync (NaN/Inf shows through)."""
    if not modules:
        return []
    norms = [torch.stack([n.float() for n in torch._foreach_norm([p.detach() for p in m.parameters()])]).norm()
             for m in modules]
    return torch.stack(norms).tolist()


def clone_state(obj):
    """A deep copy of a (nested) state dict with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: clone_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_state(v) for v in obj)
    return obj


# -- diagnosis ----------------------------------------------------------------------------------
def _finite(v) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


def _median(values) -> float:
    return statistics.median(values) if values else float("nan")


class HealthMonitor:
    """Turns a stream of signal dicts (one per log record) into :class:`Event` s.

    Pure bookkeeping: no tensors, so each rule can be tested on hand-made records. A signal
    dict holds ``step`` and any of ``d_loss``, ``g_loss``, ``acc_real``, ``acc_fake``,
    ``grad_g``, ``grad_d``, ``diversity``, ``entropy``, ``modes``, ``energy``, ``improved``
    (bool: the quality score got better at this record) and ``nonfinite`` (list of names).
    A persistent condition is reported once, when it starts; it may fire again after it clears.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.history: List[dict] = []
        self.active: set = set()
        self.stale = 0                              # judged records since the quality score last improved
        self.grad_peak = 0.0

    def observe(self, sig: dict) -> List[Event]:
        cfg = self.cfg
        self.history.append(sig)
        if sig.get("improved"):
            self.stale = 0
        elif sig.get("improved", False) is False:
            self.stale += 1          # no improvement, or no quality score at all (None: not judged here)
        found: Dict[str, Event] = {}
        ev = self._diverged(sig)
        if ev is not None:
            found["diverged"] = ev
        window = self.history[-cfg.window:]
        full = len(window) == cfg.window and sig["step"] >= cfg.warmup and "diverged" not in found
        if full:
            for rule in (self._collapse, self._vanishing, self._unstable, self._chance):
                ev = rule(window)
                if ev is not None:
                    found[ev.kind] = ev
        if "grad_g" in sig and _finite(sig["grad_g"]) and len(self.history) >= cfg.window:
            med = _median([s["grad_g"] for s in window if "grad_g" in s])
            if "vanishing_gradients" not in found and math.isfinite(med):
                self.grad_peak = max(self.grad_peak, med)
        new = [e for k, e in found.items() if k not in self.active or k == "diverged"]
        self.active = set(found) - {"diverged"}
        if "diverged" in found:
            # Rolled back or stopped: what comes next is judged afresh.
            self.history = self.history[:-1]
            self.active = set()
        return new

    def forget_after(self, step: int) -> None:
        """After a rollback to ``step``: drop the records that came later."""
        self.history = [s for s in self.history if s["step"] <= step]
        self.stale = 0

    # Each rule returns an Event or None.
    def _diverged(self, sig: dict) -> Optional[Event]:
        bad = list(sig.get("nonfinite", []))
        prev = self.history[-1 - self.cfg.window:-1]
        exploded = {}
        for key in ("d_loss", "g_loss"):
            v = sig.get(key)
            if v is None or not math.isfinite(v):
                continue
            recent = [abs(s[key]) for s in prev if key in s and math.isfinite(s[key])]
            ref = max(_median(recent), 1.0) if recent else math.inf
            if abs(v) > min(self.cfg.explode_factor * ref, self.cfg.explode_abs):
                exploded[key] = {"value": v, "recent_median_abs": ref if recent else None}
        if not bad and not exploded:
            return None
        if bad:
            msg = f"NaN/Inf in {', '.join(bad)}"
        else:
            msg = "loss exploded: " + ", ".join(
                f"{k} = {e['value']:.4g}" + (f" (recent median {e['recent_median_abs']:.3g})"
                                             if e["recent_median_abs"] is not None else "")
                for k, e in exploded.items())
        return Event("diverged", sig["step"], msg, {"nonfinite": bad, "exploded": exploded}, ADVICE["diverged"])

    def _collapse(self, window: List[dict]) -> Optional[Event]:
        cfg = self.cfg
        if not all("diversity" in s for s in window):
            return None
        div = [s["diversity"] for s in window]
        ent = [s["entropy"] for s in window if "entropy" in s]
        low_div = all(d < cfg.collapse_diversity for d in div)
        low_ent = len(ent) == len(window) and all(e < cfg.collapse_entropy for e in ent)
        if not (low_div or low_ent):
            return None
        last = window[-1]
        ev = {"diversity": round(last["diversity"], 4), "diversity_threshold": cfg.collapse_diversity}
        parts = [f"generated samples are {last['diversity']:.0%} as spread out as real ones"]
        if "entropy" in last:
            ev.update(entropy_ratio=round(last["entropy"], 4), entropy_threshold=cfg.collapse_entropy,
                      modes_visited=last.get("modes"), modes_covered=last.get("modes_hq"))
            parts.append(f"histogram entropy {last['entropy']:.0%} of the data's"
                         + (f", {last['modes']:.0%} of modes visited" if "modes" in last else ""))
        return Event("mode_collapse", last["step"], "; ".join(parts) + f" for {len(window)} records",
                     ev, ADVICE["mode_collapse"])

    def _vanishing(self, window: List[dict]) -> Optional[Event]:
        cfg = self.cfg
        if not all("grad_g" in s for s in window):
            return None
        g = [s["grad_g"] for s in window]
        rel = [s.get("grad_g_rel", math.inf) for s in window]
        limit = cfg.vanishing_ratio * self.grad_peak
        small = all(r < cfg.vanishing_rel for r in rel)
        dropped = all(v < limit for v in g)
        if not (small or dropped):
            return None
        last = window[-1]
        ev = {"grad_g": g[-1], "grad_g_relative": rel[-1], "relative_threshold": cfg.vanishing_rel,
              "grad_g_peak": self.grad_peak, "peak_ratio_threshold": cfg.vanishing_ratio,
              "grad_g_layers": last.get("grad_g_layers", {}), "grad_d": last.get("grad_d"),
              "acc_fake": last.get("acc_fake"), "d_fake": last.get("d_fake")}
        why = (f"{rel[-1]:.1e} of G's weight norm (< {cfg.vanishing_rel:g})" if small
               else f"below {cfg.vanishing_ratio:g} × its peak {self.grad_peak:.2e}")
        msg = (f"G's gradient norm {g[-1]:.2e} is {why} for {len(window)} records; "
               f"D calls {last.get('acc_fake', float('nan')):.0%} of fakes fake")
        return Event("vanishing_gradients", last["step"], msg, ev, ADVICE["vanishing_gradients"])

    def _unstable(self, window: List[dict]) -> Optional[Event]:
        cfg = self.cfg
        spikes, osc = [], {}
        for key in ("d_loss", "g_loss"):
            vals = [s[key] for s in window if key in s]
            if len(vals) < len(window):
                continue
            med = _median(vals)
            # Oscillation: mean jump between consecutive records relative to the loss's size
            # (+0.1 so that a loss decaying towards 0 is not called oscillating).
            osc[key] = sum(abs(a - b) for a, b in zip(vals, vals[1:])) / (len(vals) - 1) / (abs(med) + 0.1)
            mad = _median([abs(v - med) for v in vals])
            # The floor (0.1 + 10 % of the median) keeps a smooth trend or a near-zero loss from
            # counting as spikes: a spike is a jump of about spike_z/10 of the loss's own size.
            scale = 1.4826 * mad + 0.1 * abs(med) + 0.1
            spikes += [(s["step"], key, round(s[key], 4)) for s in window if abs(s[key] - med) / scale > cfg.spike_z]
        acc = [s["acc_fake"] for s in window if "acc_fake" in s]
        swing = (sum(abs(a - b) for a, b in zip(acc, acc[1:])) / (len(acc) - 1)) if len(acc) > 1 else 0.0
        worst = max(osc, key=osc.get) if osc else None
        oscillating = worst is not None and osc[worst] > cfg.oscillation
        if len(spikes) < 2 and swing <= cfg.swing and not oscillating:
            return None
        parts = []
        if oscillating:
            parts.append(f"{worst} jumps by {osc[worst]:.0%} of its size between records")
        if len(spikes) >= 2:
            parts.append(f"{len(spikes)} loss spikes")
        if swing > cfg.swing:
            parts.append(f"D's accuracy on fake moves {swing:.0%} per record")
        msg = "; ".join(parts) + f" over the last {len(window)} records"
        return Event("unstable", window[-1]["step"], msg,
                     {"oscillation": {k: round(v, 4) for k, v in osc.items()}, "oscillation_threshold": cfg.oscillation,
                      "spikes": spikes, "acc_fake_swing": round(swing, 4), "swing_threshold": cfg.swing},
                     ADVICE["unstable"])

    def _chance(self, window: List[dict]) -> Optional[Event]:
        cfg = self.cfg
        if not all("acc_real" in s and "acc_fake" in s for s in window):
            return None
        bal = [(s["acc_real"] + s["acc_fake"]) / 2 for s in window]
        stale = self.stale
        if not all(abs(b - 0.5) <= cfg.chance_tol for b in bal) or stale < cfg.patience:
            return None
        last = window[-1]
        good = self._collapse(window) is None and last.get("modes_hq", 1.0) >= 0.9
        kind = "converged" if good else "d_lost"
        ev = {"balanced_accuracy": [round(b, 4) for b in bal], "records_without_improvement": stale,
              "modes_covered": last.get("modes_hq"), "modes_visited": last.get("modes"), "energy": last.get("energy")}
        msg = (f"D's balanced accuracy {bal[-1]:.0%} (chance) for {len(window)} records and no quality "
               f"improvement for {stale} records" + ("" if good else "; samples are still off"))
        return Event(kind, last["step"], msg, ev, ADVICE[kind])


# -- the callback --------------------------------------------------------------------------------
class HealthCallback(Callback):
    """Measures signals on log steps, feeds :class:`HealthMonitor`, applies the policies."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.monitor = HealthMonitor(cfg)
        self.events: List[Event] = []
        self.snapshot: Optional[dict] = None      # last healthy trainer state (CPU copy)
        self.snapshot_step: Optional[int] = None
        self.rollbacks = 0
        self.lr_scale = 1.0
        self.best_energy: Optional[float] = None
        self.noise_sigma = 0.0
        self.probe: Optional[SampleProbe] = None
        self.seconds = 0.0                        # wall time spent in this monitor (its own cost)

    # -- hooks ------------------------------------------------------------------------------
    def on_start(self, run) -> None:
        tic = time.perf_counter()
        self._start(run)
        self.seconds += time.perf_counter() - tic

    def on_log(self, run, record: dict) -> Optional[dict]:
        tic = time.perf_counter()
        try:
            return self._on_log(run, record)
        finally:
            self.seconds += time.perf_counter() - tic

    def _start(self, run) -> None:
        t = run.trainer
        t.grad_norms = self.cfg.grad_norms
        self.probe = SampleProbe(t, self.cfg.samples, run.cfg.seed) if self.cfg.samples > 0 else None
        # The state training starts from counts as healthy: a run that diverges before its first
        # record goes back there with lower learning rates.
        self.snapshot, self.snapshot_step = clone_state(t.state_dict()), t.state.step
        path = run.dir / "events.jsonl"
        if path.exists():  # resuming: drop events from steps that will be trained again
            from ..utils import atomic_write_text
            keep = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= t.state.step]
            atomic_write_text(path, "".join(line + "\n" for line in keep))

    def _on_log(self, run, record: dict) -> Optional[dict]:
        t = run.trainer
        sig = self._signals(run, record)
        for k in ("diversity", "energy", "modes", "modes_hq", "entropy", "grad_g_rel"):
            if k in sig and math.isfinite(sig[k]):
                record[f"health/{k}"] = round(sig[k], 5)
        new = self.monitor.observe(sig)
        for ev in new:
            ev.action = self._act(run, ev)
            self._emit(run, ev)
        if not any(e.kind == "diverged" for e in new) and self.snapshot_step != t.state.step:
            self.snapshot = clone_state(t.state_dict())
            self.snapshot_step = t.state.step
        if self.noise_sigma > 0 and t.total_steps:
            self.noise_sigma = self.cfg.instance_noise * max(0.0, 1 - t.state.step / t.total_steps)
            record["health/instance_noise"] = round(self.noise_sigma, 5)
        record["health"] = ",".join(sorted(self.monitor.active)) or "ok"
        if new:
            record["health"] = ",".join(sorted({e.kind for e in new} | self.monitor.active))
            record["events"] = [{"kind": e.kind, "message": e.message, "action": e.action} for e in new]
        return None

    def on_end(self, run) -> None:
        counts = {k: sum(e.kind == k for e in self.events) for k in KINDS}
        summary = {"status": self._status(run), "events": counts, "rollbacks": self.rollbacks,
                   "lr_scale": self.lr_scale, "stop_reason": run.stop_reason,
                   "final_step": run.trainer.state.step, "active": sorted(self.monitor.active),
                   "monitor_seconds": round(self.seconds, 3), "train_seconds": round(run.trainer.state.seconds, 3),
                   "feature_space": self.probe.space if self.probe is not None else None,
                   "thresholds": asdict(self.cfg)}
        from ..utils import atomic_write_text
        atomic_write_text(run.dir / "health.json", json.dumps(summary, indent=2) + "\n")
        found = [f"{k} ×{n}" for k, n in counts.items() if n]
        line = f"health: {summary['status']}" + (f" ({', '.join(found)})" if found else "")
        if self.rollbacks:
            line += f"; {self.rollbacks} rollback(s), learning rates now ×{self.lr_scale:g}"
        print(line + f" — details in {run.dir / 'events.jsonl'}" if found else line, file=sys.stderr, flush=True)

    # -- helpers ------------------------------------------------------------------------------
    def _signals(self, run, record: dict) -> dict:
        t = run.trainer
        sig = {"step": record["step"]}
        for k in ("d_loss", "g_loss", "acc_real", "acc_fake", "d_fake"):
            if k in record:
                sig[k] = record[k]
        if "grad/G" in record:
            sig["grad_g"] = record["grad/G"]
            sig["grad_g_layers"] = {k[len("grad/G/"):]: v for k, v in record.items() if k.startswith("grad/G/")}
        if "grad/D" in record:
            sig["grad_d"] = record["grad/D"]
        bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
        # The networks the G and D phases train (G_AB and G_BA together), as one norm each.
        norm_g, norm_d = (math.sqrt(sum(n * n for n in weight_norms(*[t.nets[k] for p in t.phases
                                                                      if p.name == side for k in p.nets])))
                          for side in ("G", "D"))
        bad += [f"{name}'s weights" for name, n in (("G", norm_g), ("D", norm_d)) if not math.isfinite(n)]
        if "grad_g" in sig and math.isfinite(norm_g):
            sig["grad_g_rel"] = sig["grad_g"] / max(norm_g, 1e-12)
        sig["nonfinite"] = bad
        if self.probe is not None and not bad:
            sig.update(self.probe.measure())
            if not math.isfinite(sig["diversity"]):
                bad.append("G's samples")
                del sig["diversity"], sig["energy"]
        # Quality improvement: the evaluator's best step if one scores the run (None = it did not
        # evaluate at this record, which then neither counts as progress nor as stagnation),
        # else the energy distance.
        if t.state.best_step is not None:
            evaluated = t.state.best_step == t.state.step or "eval_seconds" in record
            sig["improved"] = (t.state.best_step == t.state.step) if evaluated else None
        elif "energy" in sig:
            e = sig["energy"]
            sig["improved"] = self.best_energy is None or e < self.best_energy - self.cfg.min_delta * max(abs(self.best_energy), 1e-3)
            if self.best_energy is None or e < self.best_energy:
                self.best_energy = e
        return sig

    def _act(self, run, ev: Event) -> Optional[str]:
        cfg, t = self.cfg, run.trainer
        if ev.kind == "diverged" and cfg.on_diverged != "warn":
            if cfg.on_diverged == "rollback" and self.rollbacks < cfg.max_rollbacks:
                self.rollbacks += 1
                self.lr_scale *= cfg.lr_factor
                run.request_rollback(self.snapshot, self.lr_scale)
                self.monitor.forget_after(self.snapshot_step)
                return (f"rolled back to step {self.snapshot_step}, learning rates ×{self.lr_scale:g} "
                        f"(rollback {self.rollbacks} of {cfg.max_rollbacks})")
            run.request_rollback(self.snapshot, self.lr_scale)
            why = (f"still diverging after {self.rollbacks} rollbacks" if cfg.on_diverged == "rollback"
                   else "diverged")
            run.request_stop(f"{why} (step {ev.step}: {ev.message}); kept the state of step {self.snapshot_step}")
            return f"stopped at the last healthy step {self.snapshot_step}"
        if ev.kind in ("d_lost", "converged") and cfg.on_converged == "stop":
            run.request_stop(f"{ev.kind}: {ev.message}")
            return "stopped early"
        if ev.kind == "vanishing_gradients":
            obj = t.objective
            if cfg.on_vanishing == "non-saturating" and obj.loss.name == "minimax":
                from ..losses import LOSSES
                obj.loss = LOSSES.get("non-saturating")
                return "switched G's loss from minimax to non-saturating"
            if cfg.on_vanishing == "instance-noise" and self.noise_sigma == 0:
                self.noise_sigma = cfg.instance_noise
                inner = obj.augment
                # Instance noise (Sønderby et al. 2017; Arjovsky & Bottou 2017): Gaussian noise on
                # every input of D, real and fake, annealed to 0 by the end of the run.
                obj.augment = lambda x: inner(x) + self.noise_sigma * torch.randn_like(x)
                return f"added instance noise σ={cfg.instance_noise:g}, annealed to 0"
        return None

    def _emit(self, run, ev: Event) -> None:
        self.events.append(ev)
        with open(run.dir / "events.jsonl", "a") as f:
            f.write(json.dumps(ev.to_dict(), default=float) + "\n")
        line = f"[health] step {ev.step}: {ev.kind}: {ev.message}" + (f" -> {ev.action}" if ev.action else "")
        if run.quiet:
            print(line, file=sys.stderr, flush=True)
        else:
            from tqdm.auto import tqdm
            tqdm.write(line, file=sys.stderr)

    def _status(self, run) -> str:
        if run.stop_reason is not None:
            last = self.events[-1].kind if self.events else "stopped"
            return last if last in ("converged", "d_lost") else "stopped: " + last
        if self.monitor.active:
            return ",".join(sorted(self.monitor.active))
        if self.rollbacks:
            return "recovered"
        return "healthy" if not self.events else "finished"


def health_callbacks(cfg) -> list:
    """The health callbacks a run with ``cfg`` gets (none when ``health.enabled`` is false)."""
    h = getattr(cfg, "health", None)
    return [HealthCallback(h)] if h is not None and h.enabled else []
