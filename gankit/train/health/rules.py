"""Training health, the diagnoses: rules that turn a window of signals into events.

From the last ``health.window`` records (signals: :mod:`.signals`) :class:`HealthMonitor`
diagnoses (thresholds are ``health.*`` keys):

=====================  ==========================================================================
``diverged``           a NaN/Inf loss, gradient norm or weight, or a loss whose magnitude exceeds
                       ``explode_factor`` × its median over the previous window (at least 1).
``mode_collapse``      over the whole window, diversity < ``collapse_diversity``, or the mode
                       histogram entropy ratio < ``collapse_entropy`` while at least half of the
                       samples look like data (``on_data``: near a mode, or a confident class).
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
:class:`Event` with step, evidence and advice; :mod:`.policy` writes it to ``events.jsonl``, to
the record's ``events`` list and to the progress bar, and acts on it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional


# Mode hopping (mixtures): over the whole window the samples sit at few modes (nearest-mode entropy
# under HOP_ENTROPY of the data's) and their mean moves more than HOP_SHIFT × the data's mean pairwise
# distance per record on average. The numbers behind both: :meth:`HealthMonitor._few_modes`.
HOP_ENTROPY = 0.75
HOP_SHIFT = 0.25

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


# -- diagnosis ----------------------------------------------------------------------------------
def _finite(v) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


def _mean(xs) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _median(values) -> float:
    return statistics.median(values) if values else float("nan")


class HealthMonitor:
    """Turns a stream of signal dicts (one per log record) into :class:`Event` s.

    Pure bookkeeping: no tensors, so each rule can be tested on hand-made records. A signal
    dict holds ``step`` and any of ``d_loss``, ``g_loss``, ``acc_real``, ``acc_fake``,
    ``grad_g``, ``grad_d``, ``diversity``, ``entropy``, ``modes``, ``energy``, ``improved``
    (bool: the quality score got better at this record), ``critic`` (bool: the run trains a D;
    absent = yes) and ``nonfinite`` (list of names).
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
        elif "improved" in sig and sig["improved"] is False:
            self.stale += 1          # no improvement (None: not judged at this record; absent: no quality
            #                          score at all, so "converged" or "D lost" cannot be told: never said)
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

    def state_dict(self) -> dict:
        """What the diagnoses depend on: the recent records (a rollback needs one before the window),
        the conditions active now, the records since quality improved and the gradient peak."""
        return {"history": self.history[-2 * self.cfg.window:], "active": sorted(self.active),
                "stale": self.stale, "grad_peak": self.grad_peak}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])
        self.active = set(state["active"])
        self.stale = int(state["stale"])
        self.grad_peak = float(state["grad_peak"])

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
        # The histogram says how samples that look like data spread over the modes: it judges only
        # when at least half of them do (an untrained or wandering G is not collapsed; it is elsewhere).
        low_ent = (len(ent) == len(window) and all(e < cfg.collapse_entropy for e in ent)
                   and all(s.get("on_data", 1.0) >= 0.5 for s in window))
        # Mixtures: every sample at its nearest mode, however far. The textbook collapse sits between
        # the modes (on_data 0-0.44), where the histogram above holds nothing, and hops between probes.
        few, hopping = self._few_modes(window)
        if not (low_div or low_ent or few or hopping):
            return None
        last = window[-1]
        ev = {"diversity": round(last["diversity"], 4), "diversity_threshold": cfg.collapse_diversity}
        parts = [f"generated samples are {last['diversity']:.0%} as spread out as real ones"]
        if "entropy" in last:
            ev.update(entropy_ratio=round(last["entropy"], 4), entropy_threshold=cfg.collapse_entropy,
                      modes_visited=last.get("modes"), modes_covered=last.get("modes_hq"))
            parts.append(f"histogram entropy {last['entropy']:.0%} of the data's"
                         + (f", {last['modes']:.0%} of modes visited" if "modes" in last else ""))
        if few or hopping:
            shifts = [s["mean_shift"] for s in window if "mean_shift" in s]
            ev.update(entropy_all=round(last["entropy_all"], 4), hopping=hopping,
                      mean_shift=round(_mean(shifts), 4) if shifts else None, hop_shift_threshold=HOP_SHIFT,
                      hop_entropy_threshold=HOP_ENTROPY)
            parts.append(f"at their nearest modes, entropy {last['entropy_all']:.0%} of the data's")
            if hopping:
                parts.append(f"mode hopping: their mean moves {_mean(shifts):.0%} of the data's spread per record")
        return Event("mode_collapse", last["step"], "; ".join(parts) + f" for {len(window)} records",
                     ev, ADVICE["mode_collapse"])

    def _few_modes(self, window: List[dict]):
        """(collapsed, hopping) from the nearest-mode entropy of all samples (``entropy_all``, mixtures
        only) and the move of the samples' mean between records (``mean_shift``). Measured (seed 0,
        256 probe samples): gan-ring8 without R1, collapsed at steps 100-700, entropy_all 0.00-0.08 and
        mean_shift 0.36-1.50; gan-grid25's streak at 100-700, entropy_all 0.20-0.50 and mean_shift
        0.24-1.21; once spread over the data (those runs from step 1,000, gan-ring8, r1-ema-*),
        entropy_all >= 0.93 and mean_shift <= 0.17 (0.42 once, as the ring run spread out)."""
        if not all("entropy_all" in s for s in window):
            return False, False
        spread = [s["entropy_all"] for s in window]
        shifts = [s["mean_shift"] for s in window if "mean_shift" in s]
        few = all(e < self.cfg.collapse_entropy for e in spread)
        hopping = (len(shifts) >= len(window) - 1 and all(e < HOP_ENTROPY for e in spread)
                   and _mean(shifts) > HOP_SHIFT)
        return few, hopping

    def _vanishing(self, window: List[dict]) -> Optional[Event]:
        cfg = self.cfg
        # "D starves G" needs a D: a model trained by a reconstruction loss alone (SRResNet, a VAE, an
        # L1-only translator) has small gradients near its optimum, which is not this disease
        if not all("grad_g" in s and s.get("critic", True) for s in window):
            return None
        if _mean([s.get("acc_real", 1.0) for s in window]) < 0.5:
            return None  # D calls the reals fake too: it is not winning, it is not telling anything (d_lost's case)
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
            # Oscillation: mean jump between consecutive records relative to the loss's size (+0.1 so
            # that a loss decaying towards 0 is not called oscillating), times the fraction of jumps
            # that reverse the one before: a loss that only falls (or rises) does not oscillate.
            steps = [b - a for a, b in zip(vals, vals[1:])]
            flips = sum(a * b < 0 for a, b in zip(steps, steps[1:])) / max(len(steps) - 1, 1)
            osc[key] = flips * sum(abs(d) for d in steps) / len(steps) / (abs(med) + 0.1)
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
