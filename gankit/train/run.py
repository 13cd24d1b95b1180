"""A training run end to end: run folder, loop, logging, samples, checkpoints, resume, signals.

Run folder layout::

    config.yaml              the resolved config (what actually ran)
    metrics.jsonl            one JSON record per logged step
    samples/step_NNNNNN.png  grids from fixed noise (scatter plots for 1D/2D data)
    checkpoints/latest.safetensors, previous.safetensors, best.safetensors
    curves.png               losses and D accuracy
    tb/                      TensorBoard event files

A run can be killed at any moment and continued with ``gankit train --resume RUN_DIR`` (or the
command that started it plus ``--resume``): checkpoints are written every
``train.checkpoint_every`` steps or ``train.checkpoint_minutes`` minutes, whichever comes first,
and at the first record; SIGINT and SIGTERM finish the step, write one and exit 130 / 143.
Resuming drops whatever was logged after the checkpoint (records, events, sample grids,
TensorBoard steps), so those files read as one uninterrupted run.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, List, Optional

import torch

from .. import faults
from ..config import Config, apply_overrides, from_dict, load_config, save_config, validate
from ..errors import ConfigError, DataError, GankitError, Interrupted, option
from ..viz import plot_curves, save_samples_figure
from ..provenance import training_context
from ..checkpoint import BEST, LATEST, load_latest, save_checkpoint, save_latest
from ..utils import TMP_GLOB, atomic_write_text, read_jsonl, truncate_jsonl
from .callback import Callback
from ..runlock import LOCK, run_lock as _run_lock
from .distributed import is_main_process
from .loop import Trainer

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What runtime.json's history records of each start (a segment of the run's steps).
RUNTIME_HISTORY_KEYS = ("world_size", "device", "device_name", "precision", "cuda_graphs", "torch")


def after_event_files(tb_dir: Path) -> None:
    """Wait, if need be, until the clock's second is past every TensorBoard event file's in ``tb_dir``.
    A writer's purge (of a resumed or rolled-back stretch) acts on the files that sort before its own,
    and files are sorted by name: "events.out.tfevents.<second>.<host>.<pid>.<n>", with the writer
    count n unpadded, so in the same second writer 10 sorts before writer 9 and its purge would miss
    that file's steps. A later second sorts after, whatever n is (rollbacks are rare: at most 1 s each)."""
    latest = 0
    for f in tb_dir.glob("events.out.tfevents.*"):
        field = f.name.split(".")[3]
        if field.isdigit():
            latest = max(latest, int(field))
    while int(time.time()) <= latest:
        time.sleep(max(0.01, latest + 1 - time.time()))


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
        self.resumed = False                     # continues a checkpoint (set by load_state_dict)
        self.finished = False                    # the budget is spent (or a callback stopped the run)
        self.checkpoint_seconds = 0.0            # wall time spent writing latest checkpoints in this process
        self.was_finished = False                # resumed a finished run: nothing was trained
        self.went_on: Optional[str] = None       # resumed past this early stop, as its user asked

    def __fspath__(self) -> str:  # a Run stands for its folder: gankit.load(run), train(resume=run), Path(run)
        return str(self.dir)

    # -- files ----------------------------------------------------------------------------------
    def data_meta(self) -> dict:
        d, info = self.trainer.data, self.trainer.info
        meta = {"name": d.name, "kind": info.kind, "sample_shape": list(info.sample_shape),
                "num_classes": info.num_classes}
        if info.target_shape is not None:
            meta["target_shape"] = list(info.target_shape)
        if info.compose != "none":
            meta["compose"] = info.compose
        if "restoration" in getattr(d, "info", {}):  # the degradation: translate and eval redo it
            meta["restoration"] = d.info["restoration"]
        if getattr(d, "modes", None) is not None:
            meta["modes"] = d.modes.cpu().tolist()
            meta["mode_std"] = d.mode_std
        if "audio" in getattr(d, "info", {}):  # spectrogram settings, speakers, class names: samples become sound
            meta["audio"] = d.info["audio"]
        if getattr(d, "info", {}).get("classes"):  # a folder's sub-folders: `gankit sample --class dogs`
            meta["classes"] = list(d.info["classes"])
        # samples per index space (unpaired data: per domain): a resume checks the data still holds as many
        meta["sizes"] = {k: s.n for k, s in self.trainer.samplers.items()}
        return meta

    def state_dict(self) -> dict:
        """The trainer's state plus what rebuilding and continuing the run needs."""
        state = self.trainer.state_dict()
        state["config"] = self.cfg.to_dict()
        state["data"] = self.data_meta()
        state["precision"] = self.trainer.precision
        state["objective_name"] = self.cfg.loss.objective
        state["callbacks"] = {cb.key: cb.state_dict() for cb in self.callbacks if cb.key}
        state["run"] = {"finished": self.finished, "stop_reason": self.stop_reason}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)
        stored = state.get("callbacks", {})  # absent before callbacks kept state
        for cb in self.callbacks:
            if cb.key and cb.key in stored:
                cb.load_state_dict(stored[cb.key])
        run = state.get("run", {})
        self.finished, self.stop_reason = bool(run.get("finished", False)), run.get("stop_reason")
        self.resumed = True
        self.records = [r for r in read_metrics(self.dir) if r["step"] <= self.trainer.state.step]  # the history

    def save(self, which: str = LATEST) -> Path:
        """Write a checkpoint: ``LATEST`` keeps the one before as ``PREVIOUS``; ``BEST`` is overwritten."""
        tic = time.perf_counter()
        if which == LATEST:
            path = save_latest(self.dir, self.state_dict())
            self.checkpoint_seconds += time.perf_counter() - tic
            self._last_checkpoint, self._has_latest = time.monotonic(), True
            return path
        path = self.dir / which
        save_checkpoint(path, self.state_dict())
        return path

    def write_record(self, record: dict) -> None:
        for k, v in record.items():  # a numpy scalar or a 0-d tensor a callback added: its number
            if getattr(v, "ndim", None) == 0 and hasattr(v, "item"):
                record[k] = v.item()
        try:
            line = json.dumps(record)
        except TypeError:
            bad = next(k for k, v in record.items() if not _jsonable(v))
            raise GankitError(f"metrics record key {bad!r}: {type(record[bad]).__name__} is not a number, string, "
                              "list or dict; a callback must put plain values in a record") from None
        self.records.append(record)
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(line + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step",):
                    self._tb.add_scalar(k, v, record["step"])

    def write_samples(self, name: str) -> Path:
        t = self.trainer
        out = t.fixed_samples()
        if "audio" in getattr(t.data, "info", {}):  # spectrograms: shown with the low frequencies at the bottom
            out = {k: v.flip(2) if torch.is_tensor(v) and v.ndim == 4 else v for k, v in out.items()}
        x = out["output"]
        path = self.dir / "samples" / f"{name}.png"
        real = t.data.x[:2000].cpu() if t.info.kind == "vector" else None
        with training_context(self):  # provenance in the PNG's text chunks
            save_samples_figure(x, path, real=real, modes=getattr(t.data, "modes", None),
                                title=f"{self.cfg.name} {name}", inputs=out.get("input"), targets=out.get("target"))
        if self._tb is not None and x.ndim == 4:
            from ..viz.grids import image_grid, translation_columns
            if "input" in out:
                tiles, k = translation_columns(out["input"], x, out.get("target"))
                self._tb.add_image("samples", image_grid(tiles, nrow=4 * k), t.state.step, dataformats="HWC")
            else:
                self._tb.add_image("samples", image_grid(x), t.state.step, dataformats="HWC")
        return path

    def _open_tensorboard(self, purge: Optional[int] = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: the run still has metrics.jsonl
            return
        # Resumed (or rolled back): TensorBoard discards the old files' steps from ``purge`` on (they are
        # trained again).
        if purge is None and self.resumed:
            purge = self.trainer.state.step + 1
        if purge is not None:
            after_event_files(self.dir / "tb")
        self._tb = SummaryWriter(log_dir=str(self.dir / "tb"), flush_secs=30, purge_step=purge)

    def _drop_after(self, step: int) -> None:
        """Resuming (or rolled back) at ``step``: remove what was written after it (records, grids) and the temporary
        files of writes a crash cut short, so the folder reads as one uninterrupted run."""
        truncate_jsonl(self.dir / "metrics.jsonl", step)
        for png in (self.dir / "samples").glob("step_*.png"):
            if png.stem[5:].isdigit() and int(png.stem[5:]) > step:
                png.unlink()
        for tmp in self.dir.rglob(TMP_GLOB):
            tmp.unlink()

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
        # The folder reads as if the rolled-back stretch never happened, as after a resume: its records,
        # grids (the last one would show the diverged G), TensorBoard scalars and callbacks' files go.
        self._drop_after(step)
        self.records = [r for r in self.records if r["step"] <= step]
        if self._tb is not None:
            self._tb.close()
            self._open_tensorboard(purge=step + 1)
        for cb in self.callbacks:
            cb.on_rollback(self, step)

    # -- signals ----------------------------------------------------------------------------------
    @contextmanager
    def _stop_on_signals(self):
        """While training, SIGINT and SIGTERM ask the trainer to stop after the current step (the
        run then writes a checkpoint and raises :class:`Interrupted`); the same signal again exits at
        once, which is safe because every file is written atomically. Python allows handlers only
        in the main thread; elsewhere signals keep their default behaviour."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        t = self.trainer

        def handler(signum, frame):
            name = signal.Signals(signum).name
            if t.stop_requested is not None:
                print(f"{name} again: exiting now; the last checkpoint is kept", file=sys.stderr, flush=True)
                raise SystemExit(128 + signum)
            t.stop_requested = name
            if t.dist.is_main:
                print(f"\n{name}: finishing this step and writing a checkpoint (send it again to quit at once)",
                      file=sys.stderr, flush=True)

        before = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            for s, h in before.items():
                signal.signal(s, h)

    def _interrupted(self) -> Interrupted:
        t = self.trainer
        name = t.stop_requested or "SIGTERM"  # another rank's signal under torchrun
        return Interrupted(f"{name} at step {t.state.step}: checkpoint written to {self.dir / LATEST}; "
                           f"continue with: gankit train --resume {self.dir}", getattr(signal, name))

    # -- the run --------------------------------------------------------------------------------
    def fit(self) -> "Run":
        with self._stop_on_signals():
            if not self.trainer.dist.is_main:
                return self._follow()
            return self._fit()

    def _write_runtime(self) -> None:
        """Where and how this process trains (device, precision, CUDA graphs and why) in
        runtime.json, and in one line on stderr unless quiet. ``history`` keeps one segment per start
        ({from_step, world_size, device, ...}): a resume drops the segments of the steps it trains
        again, as it drops their records, so the list tells how the run's steps were trained."""
        t = self.trainer
        info = t.runtime_info()
        history = []
        if self.resumed:
            try:
                history = json.loads((self.dir / "runtime.json").read_text()).get("history") or []
            except (OSError, ValueError, AttributeError):
                history = []  # missing or unreadable (or written before histories): earlier segments unknown
            history = [h for h in history if isinstance(h, dict) and h.get("from_step", 0) < t.state.step]
        history.append({"from_step": t.state.step, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        **{k: info[k] for k in RUNTIME_HISTORY_KEYS}})
        info["history"] = history
        atomic_write_text(self.dir / "runtime.json", json.dumps(info, indent=1) + "\n")
        self._runtime = info
        if t.graphs is not None:
            t.graphs.on_stop.append(self._graphs_stopped)
        if not self.quiet:
            graphs = "on" if info["cuda_graphs"] else f"off ({info['cuda_graphs_off']})"
            print(f"{self.cfg.name}: {info['device_name']}, precision {info['precision']} ({info['precision_reason']}), "
                  f"CUDA graphs {graphs}", file=sys.stderr, flush=True)

    def _graphs_stopped(self, reason: str) -> None:
        """CUDA graphs went off mid-run (a step that waits for the GPU, a health remedy):
        runtime.json says so from now on (written atomically), and this start's history segment
        names the first step trained eagerly (``cuda_graphs_off_from``)."""
        info = self._runtime
        info["cuda_graphs"], info["cuda_graphs_off"] = False, reason
        info["history"][-1].update(cuda_graphs=False, cuda_graphs_off_from=self.trainer.state.step)
        atomic_write_text(self.dir / "runtime.json", json.dumps(info, indent=1) + "\n")

    def _plan(self) -> str:
        """One line before training: from which step, for how long, where the grids go."""
        t, tr = self.trainer, self.cfg.train
        left = []
        if tr.minutes is not None:
            minutes = max(tr.minutes - t.state.seconds / 60, 0.0)
            left.append(f"{minutes:.3g} minutes of training steps" + (f" (of {tr.minutes:g})" if self.resumed else ""))
        if t.total_steps is not None:
            left.append(f"{t.total_steps - t.state.step} steps" + (f" (to step {t.total_steps})" if self.resumed else ""))
        budget = " or ".join(left) + (", whichever ends first" if len(left) > 1 else "")
        start = f"continuing from step {t.state.step}" if self.resumed else "training"
        return f"{self.cfg.name}: {start}: {budget}; sample grids go to {self.dir / 'samples'}"

    def _clock_due(self) -> bool:
        """train.checkpoint_minutes have passed since the last checkpoint (rank 0's clock)."""
        minutes = self.cfg.train.checkpoint_minutes
        return minutes is not None and time.monotonic() - self._last_checkpoint >= minutes * 60

    def _checkpoint_due(self, step: int, logged: bool) -> bool:
        """Whether to write ``latest`` after ``step``. Under torchrun every rank must know (each sends
        rank 0 its unsent statistics, :meth:`Trainer.gather_pending`): the step count, rank 0's word at
        a record (see :meth:`_follow`), and its clock agreed at the start of the step (every 10th step,
        or every step with train.minutes, so a checkpoint by time may come up to 9 steps late)."""
        if step % self.cfg.train.checkpoint_every == 0:
            return True
        if logged and not self._has_latest:
            return True  # the first record: a run is never long without a checkpoint
        return self.trainer.checkpoint_agreed if self.trainer.dist.enabled else self._clock_due()

    def _save_latest(self) -> None:
        """``latest``, with every rank's statistics since the last record (all ranks call this together)."""
        self.trainer.gather_pending()
        self.save(LATEST)

    def _fit(self) -> "Run":
        t, cfg = self.trainer, self.cfg
        self.dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.dir / "config.yaml")
        self._write_runtime()
        if not self.quiet:
            print(self._plan(), file=sys.stderr, flush=True)
        if self.resumed:
            self._drop_after(t.state.step)
        self._open_tensorboard()
        for cb in self.callbacks:
            cb.on_start(self)
        t.dist.broadcast_json(t.grad_norms)  # torchrun: the other ranks measure what rank 0's callbacks asked for
        if t.state.step == 0:
            self.write_samples("step_000000")
        bar = None
        if not self.quiet:
            from tqdm.auto import tqdm
            # On a terminal the bar redraws 10 times a second; into a file or pipe (a batch job's log) every
            # 30 s, so a 12-minute run leaves ~24 updates there rather than 7,000.
            bar = tqdm(total=t.total_steps, initial=t.state.step, desc=cfg.name, unit="step",
                       dynamic_ncols=True, file=sys.stderr, mininterval=0.1 if sys.stderr.isatty() else 30)
        log_every = cfg.train.log_every
        last_log = self._last_checkpoint = time.monotonic()
        self._has_latest = (self.dir / LATEST).exists()
        try:
            while not t.done():
                tic = time.monotonic()
                t.checkpoint_requested = t.dist.enabled and self._clock_due()  # torchrun: agreed in train_step
                t.train_step()
                t.state.seconds += time.monotonic() - tic
                faults.reached("step")
                step = t.state.step
                if bar is not None:
                    bar.update(1)
                final = t.done()
                logged = step % log_every == 0 or final
                if logged:
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
                    # torchrun: what the callbacks decided goes to the other ranks (see _follow), and
                    # whether a checkpoint follows (they send their statistics for it).
                    t.dist.broadcast_json({"rollback": self._rollback is not None, "stop": self.stop_reason,
                                           "checkpoint": self._checkpoint_due(step, logged)})
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
                if t.stopping and not final:
                    self._save_latest()
                    self._close_logs()
                    t.dist.close()  # torchrun: the other ranks wait for this checkpoint, then all leave
                    raise self._interrupted()
                if not final and not rolled_back and self._checkpoint_due(step, logged):
                    self._save_latest()
        finally:
            if bar is not None:
                bar.close()
        if self.stop_reason is not None:
            print(f"{cfg.name}: stopped at step {t.state.step}: {self.stop_reason}", file=sys.stderr, flush=True)
        self.finished = True
        self.save(LATEST)
        if not (self.dir / BEST).exists():
            self.save(BEST)  # without an evaluator, the best known checkpoint is the last one
        self.finish()
        t.dist.close()  # torchrun: the other ranks have waited for the files above
        if not self.quiet:
            print(f"{cfg.name}: done; next: gankit eval {self.dir} (FID and more), gankit report {self.dir} "
                  "(an HTML page of the run)", file=sys.stderr, flush=True)
        return self

    def _follow(self) -> "Run":
        """Ranks > 0 under torchrun: train in step with rank 0, write nothing, and obey what rank 0's
        callbacks decide. Every collective here matches one in :meth:`_fit` on rank 0."""
        t = self.trainer
        t.grad_norms = t.dist.broadcast_json(None)
        while not t.done():
            t.train_step()
            step, final = t.state.step, t.done()
            rolled_back = False
            # A checkpoint follows this step: rank 0's word at a record, else the rule it follows
            # (Run._checkpoint_due) from what every rank knows.
            due = step % self.cfg.train.checkpoint_every == 0 or t.checkpoint_agreed
            if step % self.cfg.train.log_every == 0 or final:
                t.pop_stats()
                control = t.dist.broadcast_json(None)
                due = control["checkpoint"]
                if control["rollback"]:
                    t.sync_from_main()
                    rolled_back = True
                if control["stop"] is not None:
                    self.stop_reason = control["stop"]
                    break
            if t.stopping and not final:  # every rank agreed on this step at its start (Trainer.train_step)
                t.gather_pending()  # for rank 0's checkpoint
                t.dist.close()
                raise self._interrupted()
            if due and not final and not rolled_back:
                t.gather_pending()
        t.dist.close()
        return self

    def _close_logs(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def finish(self) -> None:
        records = read_metrics(self.dir)
        if records:
            with training_context(self):
                plot_curves(records, self.dir / "curves.png")
        for cb in self.callbacks:
            cb.on_end(self)
        self._close_logs()

    @property
    def latest_samples(self) -> Path:
        return self.dir / "samples" / f"step_{self.trainer.state.step:06d}.png"


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def read_metrics(run_dir: Path) -> List[dict]:
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def _default_out(cfg: Config) -> Path:
    """``runs/NAME``, or the first free ``runs/NAME-2``, ``-3``, ... (said at once: a 12-minute job
    should not end before its user learns where it went)."""
    base = Path("runs") / cfg.name
    path, i = base, 2
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    if path != base and is_main_process():
        print(f"note: {base} already holds a run; this one goes to {path} (gankit train {cfg.name} --resume "
              f"continues {base} instead)", file=sys.stderr, flush=True)
    return path


def train(recipe: str | Path | dict | Config | None = "dcgan-fashion-mnist", overrides: Optional[List[str]] = None,
          out: Optional[str | Path] = None, quiet: bool = False, resume: str | Path | bool | None = None,
          callbacks: Iterable[Callback] = ()) -> Run:
    """Train a GAN and return the finished :class:`Run` (its folder is ``run.dir``).

    ``recipe`` is a shipped recipe name, a YAML path, a dict or a Config; ``overrides`` are
    ``"key=value"`` strings as on the command line.

    ``resume=RUN_DIR`` continues that run folder from its latest checkpoint (the previous one if
    the latest is damaged; from its config.yaml if it has none yet); ``overrides`` may then change
    only ``train.*`` keys (typically a longer ``train.steps``). A finished run is left as it is.
    ``resume=True`` with a recipe continues ``out`` (default ``runs/NAME``) if it holds this
    recipe's run and starts it otherwise: the same call (or command) restarts a killed job.

    SIGINT or SIGTERM during training writes a checkpoint and raises :class:`~gankit.errors.Interrupted`.

    ``train.threads`` sets torch's thread count for the run only: the process's count before is
    restored when it ends, also on an error or an interrupt (a notebook's later work is unchanged).
    """
    before = torch.get_num_threads()
    try:
        return _train(recipe, overrides, out, quiet, resume, callbacks)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _train(recipe, overrides, out, quiet, resume, callbacks) -> Run:
    overrides = [overrides] if isinstance(overrides, str) else list(overrides or [])  # one "key=value" alone
    if resume is True:
        if recipe is None:
            raise GankitError("resume=True continues the run of a recipe: give the recipe too, or resume=RUN_DIR")
        cfg = _absolute_root(_recipe_config(recipe, overrides))
        run_dir = Path(out) if out is not None else Path("runs") / cfg.name
        with run_lock(run_dir):
            if not (run_dir / "config.yaml").exists():
                return _new_run(cfg, run_dir, quiet, callbacks)
            _check_same_run(run_dir, cfg)
            # train.* may differ, from the recipe file as from --set: what differs from the run's config.yaml
            # is applied as --set train.* would be (and said), never dropped
            return _resume(run_dir, _train_changes(run_dir, cfg), quiet, callbacks)
    if resume is not None:
        with run_lock(Path(resume), create=False):
            return _resume(Path(resume), overrides, quiet, callbacks)
    cfg = _absolute_root(_recipe_config(recipe, overrides))
    run_dir = Path(out) if out is not None else _default_out(cfg)
    with run_lock(run_dir):
        if (run_dir / "config.yaml").exists():
            raise GankitError(f"{run_dir}: already holds a run; continue it with `gankit train --resume {run_dir}` "
                              "or choose another --out")
        return _new_run(cfg, run_dir, quiet, callbacks)


def _new_run(cfg: Config, run_dir: Path, quiet: bool, callbacks: Iterable[Callback]) -> Run:
    """Train a new run into ``run_dir``, which must be new or empty: a run folder's restart clears
    what runs write there, so a folder of the user's own files is refused rather than mixed in."""
    from .callbacks import default_callbacks

    own = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK) if run_dir.is_dir() else []
    if own:
        shown = ", ".join(own[:3]) + (", ..." if len(own) > 3 else "")
        raise GankitError(f"{run_dir}: not empty ({shown}) and not a gankit run; choose a new or empty "
                          f"{option('--out')}")
    return Run(cfg, run_dir, quiet, default_callbacks(cfg) + list(callbacks)).fit()


def run_lock(run_dir: Path, create: bool = True):
    """:func:`gankit.runlock.run_lock`, held by the job's main process (rank 0 alone under torchrun,
    for the whole job; a lone process whatever RANK says)."""
    return _run_lock(run_dir, create, hold=is_main_process())


def _absolute_root(cfg: Config) -> Config:
    """``cfg`` with a relative ``data.root`` made absolute (and ``~`` expanded), as a new run records it:
    resumed, sampled or scored from another folder, the run still reads the data it was trained on."""
    root = cfg.data.root
    if root is None or Path(root).expanduser().is_absolute() and not str(root).startswith("~"):
        return cfg
    return cfg.replace(**{"data.root": str(Path(root).expanduser().resolve())})


def _recipe_config(recipe, overrides: List[str]) -> Config:
    cfg = recipe if isinstance(recipe, Config) else load_config(recipe, overrides)
    if isinstance(recipe, Config) and overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg


def _check_same_run(run_dir: Path, cfg: Config) -> None:
    """Refuse to continue a folder that holds another model (only train.* may differ)."""
    try:
        saved = _absolute_root(load_config(run_dir / "config.yaml")).to_dict()  # a root saved relative, as before
    except ConfigError:
        return  # unreadable: resuming takes the config stored in the checkpoint and says so
    new = cfg.to_dict()

    def diff(a, b, prefix=""):  # the model, its loss and data first: what a reader needs to hear about
        keys = sorted(set(a) | set(b))
        if not prefix:
            first = ("model", "loss", "data")
            keys = [k for k in first if k in keys] + [k for k in keys if k not in first]
        for k in keys:
            key = f"{prefix}{k}"
            if key in ("train", "description"):
                continue
            if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                found = diff(a[k], b[k], key + ".")
                if found:
                    return found
            elif a.get(k) != b.get(k):
                return key, a.get(k), b.get(k)
        return None

    found = diff(saved, new)
    if found:
        key, old, now = found
        raise GankitError(f"{run_dir}: holds a run with {key}={old!r}, not {now!r}; choose another {option('--out')} "
                          "for this config, or continue that run with `gankit train --resume " + str(run_dir) + "`")


def _train_changes(run_dir: Path, cfg: Config) -> List[str]:
    """The ``train.*`` settings of ``cfg`` (a recipe file with its ``--set``) that differ from the run's
    config.yaml, as ``--set`` overrides; said in one line on stderr. None when config.yaml is unreadable
    (resuming then says so and takes the checkpoint's config)."""
    try:
        saved = load_config(run_dir / "config.yaml").to_dict()["train"]
    except ConfigError:
        return []
    new = cfg.to_dict()["train"]
    changes = []

    def diff(a, b, prefix):
        for k in b:
            if isinstance(a.get(k), dict) and isinstance(b[k], dict) and set(a[k]) <= set(b[k]):
                diff(a[k], b[k], f"{prefix}{k}.")
            elif a.get(k) != b[k]:
                changes.append((f"{prefix}{k}", a.get(k), b[k]))

    diff(saved, new, "train.")
    if changes and is_main_process():  # also when quiet: a change of settings is never silent
        said = ", ".join(f"{k} {_short(old)} -> {_short(now)}" for k, old, now in changes)
        print(f"{run_dir}: train settings differ from its config.yaml; applied as --set would: {said}",
              file=sys.stderr, flush=True)
    return [f"{k}={json.dumps(now)}" for k, _, now in changes]


def _short(value) -> str:
    return "null" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _resume(run_dir: Path, overrides: List[str], quiet: bool, callbacks: Iterable[Callback]) -> Run:
    from .callbacks import default_callbacks

    if not run_dir.is_dir() or not (run_dir / "config.yaml").exists() and not (run_dir / LATEST).exists():
        raise GankitError(f"{run_dir}: not a gankit run folder (no config.yaml); give the folder `gankit train` wrote")
    for o in overrides:
        if not o.split("=", 1)[0].strip().startswith("train."):
            raise ConfigError(f"--set {o}: only train.* keys can change when resuming")
    found = load_latest(run_dir)  # the previous checkpoint when the latest is damaged; None if there is none yet
    try:
        cfg = load_config(run_dir / "config.yaml")
    except (ConfigError, OSError) as e:
        if found is None:
            raise GankitError(f"{run_dir / 'config.yaml'}: unreadable ({e}) and the run has no checkpoint to take "
                              "its config from; start the run again") from None
        cfg = validate(from_dict(Config, found[0]["config"]))
        print(f"warning: {run_dir / 'config.yaml'} is unreadable ({e}); using the config stored in {found[1]} "
              "(config.yaml is written again)", file=sys.stderr)
    cfg = apply_overrides(cfg, overrides)
    run = Run(cfg, run_dir, quiet, default_callbacks(cfg) + list(callbacks))
    if found is None:
        if run.trainer.dist.is_main:
            print(f"{run_dir}: no checkpoint yet; starting again from its config.yaml", file=sys.stderr, flush=True)
            _clear_outputs(run_dir)
        return run.fit()
    state, path = found
    changed = data_change(state.get("data") or {}, run.data_meta(), _saved_sizes(state))
    if changed:  # before anything is restored: the networks, class indices and sampler are of the data then
        run.trainer.dist.close()
        raise DataError(f"{run_dir}: the training data ({cfg.data.root or cfg.data.name}) changed since {path.name} "
                        f"was written: {changed}; restore the data as it was, or start a new run (another "
                        f"{option('--out')}); {option('--set', param='overrides')} cannot change a run's data")
    latest = run_dir / LATEST
    if path != latest and latest.exists() and run.trainer.dist.is_main:
        # Kept for inspection, out of the way: the next checkpoint would otherwise push it onto `previous`.
        os.replace(latest, latest.with_suffix(".damaged"))
    run.load_state_dict(state)
    t = run.trainer
    if run.finished and (not overrides or t.done()):
        if t.dist.is_main:
            if run.stop_reason and not t.done():  # stopped early by a callback (the health monitor)
                what = f"stopped early at step {t.state.step} ({run.stop_reason}); to go on anyway"
                longer = (f"train.steps={t.total_steps}" if t.total_steps is not None
                          else f"train.minutes={cfg.train.minutes:g}")
            else:
                what = f"finished at step {t.state.step}; to train it longer"
                longer = (f"train.steps={2 * t.state.step}" if cfg.train.minutes is None
                          else f"train.minutes={2 * cfg.train.minutes:g}")
            dropped = f" ({', '.join('--set ' + o for o in overrides)} not applied: nothing is trained)" if overrides else ""
            print(f"{run_dir}: this run has {what}: gankit train --resume {run_dir} --set {longer}{dropped}",
                  file=sys.stderr, flush=True)
        t.dist.close()
        run.was_finished = True
        return run
    run.went_on = run.stop_reason  # going on past an early stop, when asked to
    run.finished, run.stop_reason = False, None
    written = state["trainer"].get("world_size")  # absent from older checkpoints
    if written is not None and written != t.dist.world_size and t.dist.is_main:
        print(f"note: {path.name} was written by {written} process{'es' if written > 1 else ''} and resumes on "
              f"{t.dist.world_size}: the ranks' own random streams (augmentation, dropout, gradient-penalty mixing, "
              f"fake labels) cannot continue as they were, so such a recipe does not follow the "
              f"{written}-process run exactly from here", file=sys.stderr, flush=True)
    return run.fit()


def _saved_sizes(state: dict) -> dict:
    """Samples per index space of the data a checkpoint was trained on: its data description's, or for a
    checkpoint written before that recorded them, the length of each sampler's saved permutation."""
    sizes = (state.get("data") or {}).get("sizes")
    if sizes is not None:
        return sizes
    samplers = state.get("samplers") or ({"x": state["sampler"]} if "sampler" in state else {})  # v1: one sampler
    return {k: len(s["perm"]) for k, s in samplers.items()}


def data_change(then: dict, now: dict, sizes_then: dict) -> Optional[str]:
    """What differs between the data description a checkpoint saved (``then``, :meth:`Run.data_meta`) and
    the data loaded now, in words ("classes then cats, dogs, owls, now aardvarks, cats, dogs (owls gone,
    aardvarks new)"; "100 images then, 50 now"), or None when nothing it records changed. ``sizes_then``:
    samples per index space then (:func:`_saved_sizes`); a description without classes or shapes (an
    older checkpoint) is compared on what it has."""
    said = []
    names_then, names_now = then.get("classes"), now.get("classes")
    if names_then is not None and names_now is not None and names_then != names_now:
        gone = [c for c in names_then if c not in names_now]
        new = [c for c in names_now if c not in names_then]
        how = ", ".join(p for p in (", ".join(gone) + " gone" if gone else "", ", ".join(new) + " new" if new else "")
                        if p) or "the same names in another order"
        said.append(f"classes then {', '.join(map(str, names_then))}, now {', '.join(map(str, names_now))} ({how})")
    elif then.get("num_classes") is not None and then.get("num_classes") != now.get("num_classes"):
        said.append(f"{then['num_classes']} classes then, {now.get('num_classes')} now")
    for key, what in (("sample_shape", "samples"), ("target_shape", "targets")):
        if then.get(key) is not None and list(then[key]) != list(now.get(key) or []):
            said.append(f"{what} of shape {'x'.join(map(str, then[key]))} then, "
                        f"{'x'.join(map(str, now.get(key) or [])) or 'none'} now")
    unit = "images" if now.get("kind") == "image" else "samples"
    sizes_now = now.get("sizes") or {}
    for k, n in sizes_then.items():
        if k in sizes_now and int(n) != sizes_now[k]:
            where = f" in {k}" if len(sizes_now) > 1 else ""
            said.append(f"{int(n):,} {unit}{where} then, {sizes_now[k]:,} now")
    return "; ".join(said) or None


def _clear_outputs(run_dir: Path) -> None:
    """A restart from config.yaml: remove what the killed attempt logged (it is all made again)."""
    import shutil

    for name in ("metrics.jsonl", "events.jsonl", "health.json", "eval_cards.json", "curves.png"):
        (run_dir / name).unlink(missing_ok=True)
    for folder in ("samples", "tb", "checkpoints"):
        shutil.rmtree(run_dir / folder, ignore_errors=True)
    for tmp in run_dir.rglob(TMP_GLOB):
        tmp.unlink()
