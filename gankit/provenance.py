"""Where a file gankit wrote came from: provenance metadata in every PNG, NPZ, WAV and ONNX export.

One place builds the record (:func:`current`); the writers only ask for it in their format:

* PNG: an iTXt chunk ``gankit`` holding the record as JSON, plus the standard keywords ``Software``
  and ``Creation Time`` (Pillow's :class:`PngInfo` via :func:`png_info`, matplotlib's
  ``savefig(metadata=...)`` via :func:`png_text`);
* NPZ: a field ``provenance``, a 0-d unicode array holding the JSON (read without pickle);
* WAV: a ``LIST``/``INFO`` chunk: ``ICMT`` the JSON, ``ISFT`` the software, ``ICRD`` the date
  (:func:`gankit.audio_io.write_wav`);
* ONNX (``gankit export``): the ``metadata_props`` key ``gankit.provenance`` holding the JSON.

The API functions and the training run say what is being written with the context manager
:func:`context` (run name, checkpoint, seed, ...); writers need no extra parameters. A write outside
any context still carries gankit's version, the date and ``made_by: null``.
"""
from __future__ import annotations

import contextvars
import functools
import json
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

from .errors import GankitError
from .riff import read_wav_info
from .utils import sha256_file

PNG_KEY = "gankit"          # the PNG text keyword holding the JSON record
NPZ_KEY = "provenance"      # the NPZ field holding the JSON record
# Fields in the order `gankit inspect` prints them; context fields not listed follow.
FIELDS = ("gankit", "made_by", "command", "run", "recipe", "checkpoint", "checkpoint_sha256", "step", "seed",
          "truncation", "label", "direction", "rejection", "watermark", "grid", "date", "note")

_CONTEXT: contextvars.ContextVar[Dict[str, Any]] = contextvars.ContextVar("gankit_provenance", default={})


def _resolve(fields: Dict[str, Any]) -> Dict[str, Any]:
    fields = dict(fields)
    ckpt = fields.pop("checkpoint", None)
    if ckpt is not None:
        fields["checkpoint"] = Path(ckpt).name
        fields["checkpoint_sha256"] = sha256_file(ckpt) if Path(ckpt).is_file() else None
    return fields


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Within the block, files gankit writes carry ``fields`` (merged over any outer context).
    Typical fields: ``made_by`` (the API function or command), ``run``, ``recipe``, ``checkpoint``
    (a path: its name and SHA-256 are recorded), ``step``, ``seed``, ``truncation``, ``note``."""
    token = _CONTEXT.set({**_CONTEXT.get(), **_resolve(fields)})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def scoped(fn: Callable) -> Callable:
    """Decorator: ``fn`` runs in a copy of the current context, so what :func:`update` sets inside it
    holds for the files it writes and ends when it returns (an API function's alternative to
    wrapping its body in :func:`context`)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return contextvars.copy_context().run(fn, *args, **kwargs)
    return wrapper


def update(**fields: Any) -> None:
    """Add ``fields`` to the provenance of files written from here to the end of the enclosing
    :func:`scoped` function (see :func:`context` for the fields)."""
    _CONTEXT.set({**_CONTEXT.get(), **_resolve(fields)})


def update_from_model(model, made_by: str, **fields: Any) -> None:
    """:func:`update` with what a loaded :class:`gankit.GAN` tells: run folder name, recipe, the
    checkpoint file it was loaded from (name and SHA-256) and its step."""
    run_dir = getattr(model, "run_dir", None)
    update(made_by=made_by, run=Path(run_dir).name if run_dir else None, recipe=model.cfg.name,
           checkpoint=getattr(model, "checkpoint_path", None), step=model.step, **fields)


def training_context(run):
    """:func:`context` for files a training run writes (a :class:`gankit.train.run.Run`): there is no
    checkpoint of what they show yet, so the step is given instead."""
    step = run.trainer.state.step
    return context(made_by="gankit.train", run=Path(run.dir).name, recipe=run.cfg.name, step=step,
                   seed=run.cfg.seed, note=f"written during training at step {step}: no checkpoint of "
                                           "this state yet (checkpoint_sha256 null); seed is the run's seed")


def _command() -> Optional[str]:
    """The gankit command line when this process is the CLI (``gankit ...`` or ``python -m gankit ...``)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is None or not (argv0.name == "gankit" or argv0.parts[-2:] == ("gankit", "__main__.py")):
        return None
    import shlex

    return shlex.join(["gankit", *sys.argv[1:]])


def current() -> Dict[str, Any]:
    """The provenance record of a file written now: gankit's version, the context's fields, the date
    (UTC, ISO 8601, seconds). Fields the context does not give are null."""
    from .version import __version__

    ctx = _CONTEXT.get()
    record: Dict[str, Any] = {"gankit": __version__, "made_by": None, "command": _command(), "run": None,
                              "checkpoint": None, "checkpoint_sha256": None, "seed": None, "truncation": None}
    record.update(ctx)
    record["date"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return record


def to_json(record: Optional[Dict[str, Any]] = None) -> str:
    return json.dumps(current() if record is None else record, sort_keys=False, default=str)


# -- writers' side ----------------------------------------------------------------------------------
def png_text(record: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """PNG text chunks (keyword -> text) for ``record`` (default: :func:`current`); matplotlib's
    ``savefig(..., metadata=png_text())`` takes it as is."""
    record = current() if record is None else record
    return {PNG_KEY: to_json(record), "Software": f"gankit {record['gankit']}", "Creation Time": record["date"]}


def png_info(record: Optional[Dict[str, Any]] = None):
    """A Pillow :class:`~PIL.PngImagePlugin.PngInfo` with :func:`png_text`'s chunks
    (``Image.save(..., pnginfo=png_info())``); the JSON goes in an iTXt chunk (UTF-8)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in png_text(record).items():
        if key == PNG_KEY:
            info.add_itxt(key, value)
        else:
            info.add_text(key, value)
    return info


def npz_field(record: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``{"provenance": 0-d unicode array}`` to pass to ``np.savez`` beside the data arrays."""
    import numpy as np

    return {NPZ_KEY: np.array(to_json(record))}


# -- readers' side ----------------------------------------------------------------------------------
def read_provenance(path: str | Path) -> Dict[str, Any]:
    """The provenance record gankit stored in a PNG, NPZ, WAV or ONNX file. Raises GankitError (one line)
    when the file is missing, of another type, or carries no gankit metadata."""
    path = Path(path)
    if not path.is_file():
        raise GankitError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(12)
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            text = _png_text(path)
        elif head.startswith(b"PK"):
            text = _npz_text(path)
        elif head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            text = read_wav_info(path).get("ICMT")
        elif path.suffix.lower() == ".onnx":  # a protobuf: no magic bytes to tell it by
            text = read_onnx_metadata(path).get("gankit.provenance")
        else:
            raise GankitError(f"{path}: not a PNG, NPZ, WAV or ONNX file; gankit stores provenance only in those")
    except GankitError:
        raise
    except Exception as e:  # a damaged file of the right type
        raise GankitError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    if text is None:
        raise GankitError(f"{path}: no gankit provenance metadata in this file (not written by gankit, "
                          "or its metadata was stripped)")
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or "gankit" not in record:
        raise GankitError(f"{path}: its gankit metadata is not a valid provenance record")
    return record


def read_onnx_metadata(path: str | Path) -> Dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict (``gankit export`` writes ``gankit.*`` keys)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def _png_text(path: Path) -> Optional[str]:
    from PIL import Image

    with Image.open(path) as img:
        img.load()  # text chunks after the image data are read only then
        return getattr(img, "text", {}).get(PNG_KEY)


def _npz_text(path: Path) -> Optional[str]:
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        if NPZ_KEY not in z.files:
            return None
        return str(z[NPZ_KEY][()])


def format_provenance(record: Dict[str, Any]) -> str:
    """One ``key: value`` line per field (null as ``-``), in :data:`FIELDS` order."""
    keys = [k for k in FIELDS if k in record] + [k for k in record if k not in FIELDS]
    width = max(len(k) for k in keys)
    lines = []
    for k in keys:
        v = record[k]
        v = "-" if v is None else (json.dumps(v) if isinstance(v, (dict, list, bool)) else v)
        lines.append(f"{k:<{width}}  {v}")
    return "\n".join(lines)
