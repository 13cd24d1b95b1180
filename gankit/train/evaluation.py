"""Evaluation during training: metrics every N steps, best checkpoint chosen by them.

With ``eval.every`` set, the run scores ``eval.n`` samples of its sampling generator (the EMA
copy when there is one) every that many G-steps and at the end, adds the values to the
metrics.jsonl record (``fid``, ``kid``, ``kid_std``, ...) and returns ``{"score": value}`` so
the run keeps ``checkpoints/best.safetensors`` at the lowest ``eval.score``. The feature
network and the real data's features are built once (and cached on disk); the noise and the
real subset are the same at every evaluation, so successive values differ only by the model.
The cards of the last evaluation are written to ``eval_cards.json`` in the run folder.
"""
from __future__ import annotations

import json
import sys
from typing import Optional

import torch

from ..metrics import METRICS
from ..metrics.evaluate import Samples, evaluate_samples, load_reference
from ..metrics.features import default_features, get_extractor
from ..utils import atomic_write_text
from .callback import Callback


class EvalCallback(Callback):
    key = "eval"

    def __init__(self, cfg):
        self.cfg = cfg
        self.ecfg = cfg.eval
        self.last_step: Optional[int] = None
        self.extractor = None
        self.reference = None

    def on_start(self, run) -> None:
        if self.last_step is None:  # a resumed run keeps the step of its last evaluation
            self.last_step = run.trainer.state.step
        log_every = self.cfg.train.log_every
        if self.ecfg.every % log_every:  # evaluations ride on log records: say when they really come
            print(f"note: eval.every={self.ecfg.every} is not a multiple of train.log_every={log_every}: the run "
                  f"evaluates on the first log record at least {self.ecfg.every} steps after the last evaluation "
                  f"(every {-(-self.ecfg.every // log_every) * log_every} steps); set eval.every to a multiple of "
                  f"{log_every} to silence this", file=sys.stderr, flush=True)

    def state_dict(self) -> dict:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict) -> None:
        self.last_step = state.get("last_step")

    def _setup(self):
        self.reference = load_reference(self.cfg.data, self.ecfg.split)
        if any(METRICS.get(m).uses_features for m in self.ecfg.metrics):
            name = self.ecfg.features or default_features(self.cfg.data, self.reference.kind)
            self.extractor = get_extractor(name, self.cfg.data)

    @torch.no_grad()
    def _sample(self, trainer):
        """``eval.n`` outputs of the sampling network on the same inputs every time, and their labels."""
        task = trainer.task
        inputs = task.seeded(self.ecfg.n, self.ecfg.seed)
        return task.generate(trainer.sampling_net(), inputs), inputs["y"]

    def on_log(self, run, record: dict) -> Optional[dict]:
        step = record["step"]
        if step - (self.last_step or 0) < self.ecfg.every and not run.trainer.done():
            return None
        self.last_step = step
        # Evaluation draws no numbers from the training RNG streams (a resumed run stays identical).
        with torch.random.fork_rng(devices=[]):
            if self.reference is None:
                self._setup()
            x, y = self._sample(run.trainer)
            samples = Samples(x, y, self.cfg.data, {"kind": "training", "step": step})
            result = evaluate_samples(samples, metrics=list(self.ecfg.metrics), split=self.ecfg.split,
                                      seed=self.ecfg.seed, n_real=self.ecfg.n, extractor=self.extractor,
                                      reference=self.reference,
                                      log=None if run.quiet else (lambda s: print(s, file=sys.stderr)))
        for k, v in result.scalars().items():
            record[k] = round(v, 6) if isinstance(v, float) else v
        record["eval_seconds"] = result.seconds.get("total")
        atomic_write_text(run.dir / "eval_cards.json",
                          json.dumps({"step": step, "results": result.results}, indent=1) + "\n")
        score = self.ecfg.score
        if score is not None and score in result.names() and result[score] is not None:
            return {"score": float(result[score])}
        return None


def eval_callbacks(cfg) -> list:
    """The evaluation callbacks a run with ``cfg`` gets: one :class:`EvalCallback` when ``eval.every`` is set."""
    ecfg = getattr(cfg, "eval", None)
    if ecfg is None or ecfg.every is None:
        return []
    return [EvalCallback(cfg)]
