"""A training run end to end: run folder, loop, logging, samples, checkpoints, resume.

Run folder layout::

    config.yaml              the resolved config (what actually ran)
    metrics.jsonl            one JSON record per logged step
    samples/step_NNNNNN.png  grids from fixed noise (scatter plots for 1D/2D data)
    checkpoints/latest.safetensors, checkpoints/best.safetensors
    curves.png               losses and D accuracy
    tb/                      TensorBoard event files
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterable, List, Optional


from ..config import Config, load_config, save_config
from ..errors import ConfigError, GankitError
from ..viz import plot_curves, save_samples_figure
from ..checkpoint import load_checkpoint, save_checkpoint
from .callback import Callback
from .loop import Trainer

LATEST = "checkpoints/latest.safetensors"
BEST = "checkpoints/best.safetensors"


class Run:
    """Owns a run folder and drives a :class:`Trainer` through it."""

    def __init__(self, cfg: Config, run_dir: Path, quiet: bool = False, callbacks: Iterable[Callback] = ()):
        self.cfg, self.dir, self.quiet = cfg, Path(run_dir), quiet
        self.trainer = Trainer(cfg)
        self.callbacks: List[Callback] = list(callbacks)
        self.records: List[dict] = []
        self._tb = None
        self.stop_reason: Optional[str] = None   # set by request_stop(): the run ends after this log step
        self._rollback: Optional[tuple] = None   # set by request_rollback(): (state, lr_scale)

    # -- files ----------------------------------------------------------------------------------
    def data_meta(self) -> dict:
        d, info = self.trainer.data, self.trainer.info
        meta = {"name": d.name, "kind": info.kind, "sample_shape": list(info.sample_shape),
                "num_classes": info.num_classes}
        if info.target_shape is not None:
            meta["target_shape"] = list(info.target_shape)
        if getattr(d, "modes", None) is not None:
            meta["modes"] = d.modes.cpu().tolist()
            meta["mode_std"] = d.mode_std
        return meta

    def save(self, which: str = LATEST) -> Path:
        state = self.trainer.state_dict()
        state["config"] = self.cfg.to_dict()
        state["data"] = self.data_meta()
        state["precision"] = self.trainer.precision
        state["objective_name"] = self.cfg.loss.objective
        path = self.dir / which
        save_checkpoint(path, state)
        return path

    def write_record(self, record: dict) -> None:
        self.records.append(record)
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step",):
                    self._tb.add_scalar(k, v, record["step"])

    def write_samples(self, name: str) -> Path:
        t = self.trainer
        out = t.fixed_samples()
        x = out["output"]
        path = self.dir / "samples" / f"{name}.png"
        real = t.data.x[:2000].cpu() if t.info.kind == "vector" else None
        save_samples_figure(x, path, real=real, modes=getattr(t.data, "modes", None), title=f"{self.cfg.name} {name}",
                            inputs=out.get("input"), targets=out.get("target"))
        if self._tb is not None and x.ndim == 4:
            from ..viz.grids import image_grid, translation_columns
            if "input" in out:
                tiles, k = translation_columns(out["input"], x, out.get("target"))
                self._tb.add_image("samples", image_grid(tiles, nrow=4 * k), t.state.step, dataformats="HWC")
            else:
                self._tb.add_image("samples", image_grid(x), t.state.step, dataformats="HWC")
        return path

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: the run still has metrics.jsonl
            return
        self._tb = SummaryWriter(log_dir=str(self.dir / "tb"), flush_secs=30)

    # -- requests from callbacks (applied by the loop after the current log step) --------------
    def request_stop(self, reason: str) -> None:
        """End the run after this log step (early stop); latest and best checkpoints are saved as usual."""
        self.stop_reason = reason

    def request_rollback(self, state: dict, lr_scale: float = 1.0) -> None:
        """Go back to ``state`` (a :meth:`Trainer.state_dict`) after this log step, learning rates at
        ``lr_scale`` × the configured ones; metrics.jsonl loses the records after that step."""
        self._rollback = (state, lr_scale)

    def _apply_rollback(self) -> None:
        state, lr_scale = self._rollback
        self._rollback = None
        self.trainer.rollback(state, lr_scale)
        self.trainer.sync_from_main()  # torchrun: every rank continues from rank 0's rolled-back state
        step = self.trainer.state.step
        _truncate_metrics(self.dir, step)
        self.records = [r for r in self.records if r["step"] <= step]

    # -- the run --------------------------------------------------------------------------------
    def fit(self) -> "Run":
        t, cfg = self.trainer, self.cfg
        if not t.dist.is_main:
            return self._follow()
        self.dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.dir / "config.yaml")
        self._open_tensorboard()
        for cb in self.callbacks:
            cb.on_start(self)
        t.dist.broadcast_json(t.grad_norms)  # torchrun: the other ranks measure what rank 0's callbacks asked for
        if t.state.step == 0:
            self.write_samples("step_000000")
        bar = None
        if not self.quiet:
            from tqdm.auto import tqdm
            bar = tqdm(total=t.total_steps, initial=t.state.step, desc=cfg.name, unit="step",
                       dynamic_ncols=True, file=sys.stderr)
        log_every = cfg.train.log_every
        last_log = time.monotonic()
        try:
            while not t.done():
                tic = time.monotonic()
                t.train_step()
                t.state.seconds += time.monotonic() - tic
                step = t.state.step
                if bar is not None:
                    bar.update(1)
                final = t.done()
                if step % log_every == 0 or final:
                    now = time.monotonic()
                    record = {"step": step, "epoch": round(t.epoch, 4), "seconds": round(t.state.seconds, 3),
                              "lr_mult": round(t.lr_mult, 6)}  # learning rates / configured ones (schedule × rollbacks)
                    record.update({k: round(v, 6) for k, v in t.pop_stats().items()})
                    record["steps_per_s"] = round(log_every / max(now - last_log, 1e-9), 3) if not final else None
                    last_log = now
                    for cb in self.callbacks:
                        out = cb.on_log(self, record) or {}
                        if "score" in out and (t.state.best_score is None or out["score"] < t.state.best_score):
                            t.state.best_score, t.state.best_step = out["score"], step
                            self.save(BEST)
                    self.write_record(record)
                    if bar is not None:
                        post = {k: f"{record[k]:.3f}" for k in ("d_loss", "g_loss", "acc_real", "acc_fake") if k in record}
                        if "health" in record:
                            post["health"] = record["health"]
                        bar.set_postfix(post, refresh=False)
                    else:
                        print(json.dumps(record), file=sys.stderr, flush=True)
                    # torchrun: what the callbacks decided goes to the other ranks (see _follow).
                    t.dist.broadcast_json({"rollback": self._rollback is not None, "stop": self.stop_reason})
                if step % t.sample_every == 0 or final:
                    self.write_samples(f"step_{step:06d}")
                rolled_back = self._rollback is not None
                if rolled_back:
                    self._apply_rollback()
                    if bar is not None:
                        bar.n = t.state.step
                if self.stop_reason is not None:
                    if not self.latest_samples.exists():
                        self.write_samples(f"step_{t.state.step:06d}")
                    break
                if step % cfg.train.checkpoint_every == 0 and not final and not rolled_back:
                    self.save(LATEST)
        finally:
            if bar is not None:
                bar.close()
        if self.stop_reason is not None:
            print(f"{cfg.name}: stopped at step {t.state.step}: {self.stop_reason}", file=sys.stderr, flush=True)
        self.save(LATEST)
        if not (self.dir / BEST).exists():
            self.save(BEST)  # without an evaluator, the best known checkpoint is the last one
        self.finish()
        t.dist.close()  # torchrun: the other ranks have waited for the files above
        return self

    def _follow(self) -> "Run":
        """Ranks > 0 under torchrun: train in step with rank 0, write nothing, and obey what rank 0's
        callbacks decide. Every collective here matches one in :meth:`fit` on rank 0."""
        t = self.trainer
        t.grad_norms = t.dist.broadcast_json(None)
        while not t.done():
            t.train_step()
            final = t.done()
            if t.state.step % self.cfg.train.log_every == 0 or final:
                t.pop_stats()
                control = t.dist.broadcast_json(None)
                if control["rollback"]:
                    t.sync_from_main()
                if control["stop"] is not None:
                    self.stop_reason = control["stop"]
                    break
        t.dist.close()
        return self

    def finish(self) -> None:
        records = read_metrics(self.dir)
        if records:
            plot_curves(records, self.dir / "curves.png")
        for cb in self.callbacks:
            cb.on_end(self)
        if self._tb is not None:
            self._tb.close()

    @property
    def latest_samples(self) -> Path:
        return self.dir / "samples" / f"step_{self.trainer.state.step:06d}.png"


def read_metrics(run_dir: Path) -> List[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _default_out(cfg: Config) -> Path:
    base = Path("runs") / cfg.name
    path, i = base, 2
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    return path


def train(recipe: str | Path | dict | Config = "dcgan-fashion-mnist", overrides: Optional[List[str]] = None,
          out: Optional[str | Path] = None, quiet: bool = False, resume: Optional[str | Path] = None,
          callbacks: Iterable[Callback] = ()) -> Run:
    """Train a GAN and return the finished :class:`Run` (its folder is ``run.dir``).

    ``recipe`` is a shipped recipe name, a YAML path, a dict or a Config; ``overrides`` are
    ``"key=value"`` strings as on the command line. ``resume`` continues the run folder
    from its latest checkpoint; ``overrides`` may then change only ``train.*`` keys
    (typically a longer ``train.steps``).
    """
    from .callbacks import default_callbacks

    overrides = list(overrides or [])
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").exists():
            raise GankitError(f"{run_dir}: not a gankit run folder (no config.yaml); give the folder `gankit train` wrote")
        for o in overrides:
            if not o.split("=", 1)[0].strip().startswith("train."):
                raise ConfigError(f"--set {o}: only train.* keys can change when resuming")
        cfg = load_config(run_dir / "config.yaml", overrides)
        state = load_checkpoint(run_dir / LATEST)
        run = Run(cfg, run_dir, quiet, list(callbacks) + default_callbacks(cfg))
        run.trainer.load_state_dict(state)
        if run.trainer.dist.is_main:
            _truncate_metrics(run_dir, run.trainer.state.step)
        return run.fit()
    cfg = recipe if isinstance(recipe, Config) else load_config(recipe, overrides)
    if isinstance(recipe, Config) and overrides:
        from ..config import apply_overrides
        cfg = apply_overrides(cfg, overrides)
    run_dir = Path(out) if out is not None else _default_out(cfg)
    if (run_dir / LATEST).exists():
        raise GankitError(f"{run_dir}: already holds a trained run; resume it with `gankit train --resume {run_dir}` "
                          "or choose another --out")
    run = Run(cfg, run_dir, quiet, list(callbacks) + default_callbacks(cfg))
    return run.fit()


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop records written after the checkpoint we resume from (they will be written again)."""
    path = run_dir / "metrics.jsonl"
    if path.exists():
        from ..utils import atomic_write_text
        keep = [json.dumps(r) for r in read_metrics(run_dir) if r["step"] <= step]
        atomic_write_text(path, "".join(line + "\n" for line in keep))
