"""Training health, what the run does about a diagnosis: :class:`HealthCallback` and its policies.

On log steps the callback measures signals (:mod:`.signals`), feeds them to the
:class:`~.rules.HealthMonitor` (:mod:`.rules`) and applies the policies below. Each event goes
to ``events.jsonl``, to the record's ``events`` list and to the progress bar; the run's summary
goes to ``health.json``. The last healthy trainer state is kept in memory (a CPU copy) to roll
back to.

Policies: on ``diverged`` roll back to the last healthy log step, lower the learning rates by
``lr_factor`` and continue, at most ``max_rollbacks`` times, then stop there; on ``d_lost`` /
``converged`` stop (the best checkpoint is kept); on ``vanishing_gradients`` optionally switch a
minimax loss to the non-saturating one or add annealed instance noise to D's inputs.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict
from typing import List, Optional

import torch

from ..callback import Callback
from .rules import KINDS, Event, HealthMonitor
from ...utils import keep_first_records
from .signals import SampleProbe, weight_norms


def clone_state(obj):
    """A deep copy of a (nested) state dict with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: clone_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_state(v) for v in obj)
    return obj


# -- the callback --------------------------------------------------------------------------------
class HealthCallback(Callback):
    """Measures signals on log steps, feeds :class:`HealthMonitor`, applies the policies."""

    key = "health"

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
        self.noise_start: Optional[int] = None   # the step instance noise was added: it anneals from there
        self.remedies: List[str] = []             # remedies applied, in order (re-applied on resume)
        self.probe: Optional[SampleProbe] = None
        self._last_mean: Optional[list] = None     # the probe's last mean from a checkpoint, until the probe exists
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

    def state_dict(self) -> dict:
        """Everything the monitor's next decisions depend on, for checkpoints. The last healthy
        state to roll back to is not stored: after a resume it is the state resumed from."""
        state = {"monitor": self.monitor.state_dict(), "events": [e.to_dict() for e in self.events],
                 "rollbacks": self.rollbacks, "lr_scale": self.lr_scale, "best_energy": self.best_energy,
                 "noise_sigma": self.noise_sigma, "noise_start": self.noise_start, "remedies": list(self.remedies),
                 "seconds": self.seconds,
                 # the samples' mean at the last probe: the next record's mean_shift (mixtures) is measured from it
                 "probe_last_mean": (self.probe.last_mean.tolist() if self.probe is not None
                                     and self.probe.last_mean is not None else self._last_mean)}
        return json.loads(json.dumps(state, default=float))  # plain JSON values (evidence may hold numpy floats)

    def load_state_dict(self, state: dict) -> None:
        self.monitor.load_state_dict(state["monitor"])
        self.events = [Event(**e) for e in state["events"]]
        self.rollbacks, self.lr_scale = int(state["rollbacks"]), float(state["lr_scale"])
        self.best_energy, self.noise_sigma = state["best_energy"], float(state["noise_sigma"])
        self.noise_start = state.get("noise_start")  # None in checkpoints before it was kept: annealed from step 0
        self.remedies, self.seconds = list(state["remedies"]), float(state["seconds"])
        self._last_mean = state.get("probe_last_mean")  # None in checkpoints before it was kept
        if self.probe is not None:  # a rollback: the probe goes on from the state rolled back to
            self.probe.last_mean = None if self._last_mean is None else torch.tensor(self._last_mean)

    def _start(self, run) -> None:
        t = run.trainer
        if run.went_on:  # told to go on after a stop: a fresh rollback budget, at the learning rates reached
            self.rollbacks = 0
        t.grad_norms = self.cfg.grad_norms
        sigma = self.noise_sigma
        for remedy in self.remedies:  # resumed: the objective is built afresh, without them
            self._apply_remedy(t, remedy)
        self.noise_sigma = sigma
        self.probe = SampleProbe(t, self.cfg.samples, run.cfg.seed) if self.cfg.samples > 0 else None
        if self.probe is not None and self._last_mean is not None:  # resumed: mean_shift as if never stopped
            self.probe.last_mean = torch.tensor(self._last_mean)
        # The state training starts from counts as healthy: a run that diverges before its first
        # record goes back there with lower learning rates.
        self.snapshot, self.snapshot_step = clone_state(t.state_dict()), t.state.step
        # Resuming: the events that happened are those the checkpoint holds (in the order they were
        # emitted); what the killed process wrote after it is dropped from the file. Not by step: a
        # rollback's divergence, at a step later than the state it went back to, happened and stays.
        keep_first_records(run.dir / "events.jsonl", len(self.events))

    def _on_log(self, run, record: dict) -> Optional[dict]:
        t = run.trainer
        sig = self._signals(run, record)
        for k in ("diversity", "energy", "modes", "modes_hq", "entropy", "entropy_all", "on_data", "mean_shift",
                  "grad_g_rel"):
            if k in sig and math.isfinite(sig[k]):
                record[f"health/{k}"] = round(sig[k], 5)
        new = self.monitor.observe(sig)
        for ev in new:
            ev.action = self._act(run, ev)
            self._emit(run, ev)
        if not any(e.kind == "diverged" for e in new) and self.snapshot_step != t.state.step:
            self.snapshot = clone_state(t.state_dict())
            self.snapshot_step = t.state.step
        if self.noise_sigma > 0 and t.total_steps:  # linearly from its full σ where it was added to 0 at the end
            s0 = self.noise_start or 0
            left = max(t.total_steps - s0, 1)
            self.noise_sigma = self.cfg.instance_noise * max(0.0, 1 - (t.state.step - s0) / left)
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
        from ...utils import atomic_write_text
        atomic_write_text(run.dir / "health.json", json.dumps(summary, indent=2) + "\n")
        found = [f"{k} ×{n}" for k, n in counts.items() if n]
        line = f"health: {summary['status']}" + (f" ({', '.join(found)})" if found else "")
        if self.rollbacks:
            line += f"; {self.rollbacks} rollback(s), learning rates now ×{self.lr_scale:g}"
        if found or not run.quiet:  # quiet: only what needs a look
            print(line + f" — details in {run.dir / 'events.jsonl'}" if found else line, file=sys.stderr, flush=True)

    # -- helpers ------------------------------------------------------------------------------
    def _signals(self, run, record: dict) -> dict:
        t = run.trainer
        sig = {"step": record["step"], "critic": any(p.name == "D" for p in t.phases)}
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
        # Quality improvement: the evaluator's best step if it scores the run (None = it did not
        # evaluate at this record, which then neither counts as progress nor as stagnation),
        # else the energy distance. A score of a user's callback (which runs after this one)
        # chooses the best checkpoint only.
        ecfg = run.cfg.eval
        if "eval_seconds" in record and record.get(ecfg.score) is not None:
            sig["improved"] = t.state.best_step == t.state.step
        elif ecfg.every is not None and t.state.best_step is not None:
            sig["improved"] = None
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
                self._apply_remedy(t, "non-saturating")
                return "switched G's loss from minimax to non-saturating"
            if cfg.on_vanishing == "instance-noise" and self.noise_sigma == 0:
                self._apply_remedy(t, "instance-noise")
                return f"added instance noise σ={cfg.instance_noise:g}, annealed to 0"
        return None

    def _apply_remedy(self, t, remedy: str) -> None:
        obj = t.objective
        if remedy not in self.remedies:
            self.remedies.append(remedy)
        # The step the CUDA graphs captured no longer is the step to run (another loss; a noise
        # level the host anneals every step).
        t.stop_graphs(f"the health monitor applied {remedy}")
        if remedy == "non-saturating":
            from ...losses import LOSSES
            obj.loss = LOSSES.get("non-saturating")
        elif remedy == "instance-noise":
            if self.noise_start is None:  # added now (a resume re-applies it with the step it was added at)
                self.noise_start = t.state.step
            self.noise_sigma = self.cfg.instance_noise
            inner = obj.augment
            # Instance noise (Sønderby et al. 2017; Arjovsky & Bottou 2017): Gaussian noise on
            # every input of D, real and fake, annealed to 0 by the end of the run.
            obj.augment = lambda x: inner(x) + self.noise_sigma * torch.randn_like(x)

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
