"""Export a trained generator: one ONNX file, or a self-contained model folder.

* ``onnx``: the sampling network (the EMA copy when the run keeps one, BatchNorm and dropout in
  eval mode, spectral norm folded into the weights) as an ONNX graph with a dynamic batch axis.
  Generation: inputs ``z`` (N, z_dim) float32 [and ``y`` (N,) int64 for conditional models] ->
  ``x`` (N, C, H, W) in [-1, 1] (or (N, D) for vector data). Translation: ``x`` (N, C, H, W) in
  [-1, 1] -> ``y`` (N, C', H', W') in [-1, 1], the task's own output (:meth:`gankit.tasks.Task.output`:
  an inpainter's known pixels kept, a colouriser's L*a*b* -> RGB, the clamp). Anomaly detectors are
  refused (their output is a score: ``gankit score``). The file's ``metadata_props`` name the inputs, outputs,
  shapes and value ranges and where the weights came from (:func:`onnx_metadata`). Before the file
  is written, onnxruntime runs it on the same inputs as PyTorch at two batch sizes; a max absolute
  difference above :data:`TOLERANCE` fails the export. A style generator's graph holds its
  *constant* per-layer noise maps (metadata ``gankit.noise``: ``const``), so it equals
  ``G(z, y, noise_mode="const")`` — not ``gankit sample``, which draws fresh seeded noise per layer
  and so differs in fine detail; the check compares against the former.
* ``folder``: ``config.json`` (the run's resolved config and what rebuilding the networks needs),
  ``model.safetensors`` (every network of the objective, the EMA weights where the run keeps them)
  and ``README.md`` (a model card). ``gankit.load(folder)`` rebuilds the model from it without the
  run folder; nothing in it is pickled or executed. It is written whole (a hidden sibling folder,
  renamed into place) and ``config.json`` records the SHA-256 of the weights, which loading verifies.
"""
from __future__ import annotations

import copy
import datetime
import io
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .errors import CheckpointError, GankitError, option
from .provenance import current as provenance_record, read_onnx_metadata, to_json
from .model_folder import (CARD_FILE, CONFIG_FILE, FILES, FOLDER_FORMAT, WEIGHTS_FILE, check_plugins, is_model_folder,
                           read_folder_config, untrusted_plugins)
from .utils import atomic_write_bytes, atomic_write_text, replace_folder, sha256_file

FORMATS = ("onnx", "folder")
#: The largest max |ONNX - PyTorch| an export accepts (fp32 outputs in [-1, 1]: ~1000 ulps at 1).
TOLERANCE = 1e-4
#: Batch sizes of the check: the traced size and another one (the batch axis must be dynamic).
CHECK_BATCHES = (8, 3)
OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
#: How an exported style generator makes its per-layer noise: the graph holds no random op, so it uses
#: the fixed maps saved with the weights (gankit.nets.stylegan.NoiseInput.noise_const).
STYLE_NOISE = "const"
NOISE_MEANING = {
    "const": "per-layer noise is the generator's fixed maps (G(z, y, noise_mode='const')), the same for every "
             "sample; gankit sample draws fresh seeded noise per layer, so its images differ in fine detail",
    "none": "the network draws no noise of its own: its output is a function of its inputs, as in gankit",
}


def noise_mode(net: nn.Module) -> str:
    """``const`` for a style generator (exported with its constant noise maps), else ``none``."""
    return STYLE_NOISE if callable(getattr(net, "truncate", None)) else "none"


@dataclass
class Source:
    """A loaded model and where it came from."""

    model: object                      # gankit.api.GAN
    name: str                          # the run's name (its folder name)
    checkpoint: str                    # the checkpoint file read (or the model folder)
    sha256: str                        # SHA-256 of that checkpoint file's bytes
    which: str                         # latest | best
    fid: Optional[dict] = None         # the best FID a model folder carries (see best_fid)


@dataclass
class ExportResult:
    """What an export wrote; ``str()`` is the line the CLI prints."""

    format: str
    path: Path
    max_abs_error: Optional[float] = None          # onnx: the largest |ONNX - PyTorch| measured
    errors: Dict[int, float] = field(default_factory=dict)  # onnx: batch size -> max |difference|
    noise: str = "none"                            # onnx: const (a style G's fixed noise maps) | none
    files: List[str] = field(default_factory=list)  # folder: the files written

    def __str__(self) -> str:
        if self.format == "onnx":
            sizes = ", ".join(f"batch {n}: {e:.2e}" for n, e in self.errors.items())
            against = "PyTorch" if self.noise == "none" else f"PyTorch with noise_mode={self.noise!r}"
            line = (f"wrote {self.path} (onnxruntime vs {against}: max |difference| {self.max_abs_error:.2e} "
                    f"<= {TOLERANCE:g}; {sizes})")
            if self.noise != "none":
                line += (f"\nnoise: {self.noise}, the generator's fixed noise maps; gankit sample draws random "
                         "per-layer noise, so its images differ in fine detail (metadata gankit.noise)")
            return line
        return f"wrote {self.path}/ ({', '.join(self.files)}); load it with gankit.load({str(self.path)!r})"


def export(run_dir: str | Path, fmt: str, out: str | Path, which: str = "latest",
           direction: Optional[str] = None, exporter: str = "torchscript", trust_plugins: bool = False) -> ExportResult:
    """Export the sampling generator of ``run_dir`` (a run folder or an exported model folder) as
    ``fmt`` (``onnx`` or ``folder``) to ``out``; the function behind ``gankit export``.
    ``which``: the run's ``latest`` or ``best`` checkpoint. ``direction``: for CycleGAN's ONNX
    export, ``AtoB`` (the default, the model's first task) or ``BtoA``. ``exporter``: see
    :func:`onnx_bytes`. ``trust_plugins``: import the ``plugins`` a model folder's config names
    (they run code; refused otherwise, see :func:`gankit.model_folder.check_plugins`)."""
    if fmt not in FORMATS:
        raise GankitError(f"{option('--format', fmt, param='fmt')}: unknown export format; choose one of: "
                          f"{', '.join(FORMATS)}")
    if exporter not in EXPORTERS:
        raise GankitError(f"{option('--exporter', exporter)}: choose one of: {', '.join(EXPORTERS)}")
    src = load_source(run_dir, which, trust_plugins)
    if fmt == "onnx":
        return export_onnx(src, Path(out), direction, exporter)
    if direction is not None:
        raise GankitError(f"{option('--direction')} applies to {option('--format', 'onnx', param='fmt')}; a model "
                          "folder keeps every direction")
    return export_folder(src, Path(out))


# -- the source ---------------------------------------------------------------------------------

def load_source(run_dir: str | Path, which: str = "latest", trust_plugins: bool = False) -> Source:
    """The model of a run folder's ``which`` checkpoint (sampling weights), on the CPU, with the
    SHA-256 of the checkpoint file it came from. A model folder holds one checkpoint's weights:
    ``which`` must be ``latest`` (the default) or the one it was exported from."""
    from .api import load
    from .checkpoint import BEST, LATEST, load_latest
    from .config import import_plugins

    path = Path(run_dir).expanduser()
    if not path.exists():
        raise GankitError(f"{path}: no such run folder; give a folder `gankit train` wrote")
    if path.is_dir() and is_model_folder(path):
        meta = read_folder_config(path)
        src = meta.get("source", {})
        if which not in ("latest", src.get("which")):
            raise GankitError(f"{option('--checkpoint', which, param='which')}: {path} is a model folder; it holds "
                              f"one set of weights (its run's {src.get('which', 'latest')} checkpoint, step "
                              f"{meta.get('step')}); drop {option('--checkpoint', which, param='which')}")
        check_plugins(path, meta, trust_plugins)
        import_plugins(untrusted_plugins(meta))  # trusted by the caller (check_plugins refused otherwise)
        return Source(load(path, device="cpu"), src.get("run", path.name),
                      src.get("checkpoint", str(path)), src.get("checkpoint_sha256", ""), src.get("which", which),
                      meta.get("best_fid"))
    if not path.is_dir():
        raise GankitError(f"{path}: not a folder; give a run folder (or an exported model folder)")
    if which not in ("latest", "best"):
        raise GankitError(f"{option('--checkpoint', which, param='which')}: choose latest or best")
    if which == "latest":
        if not (path / LATEST).exists() and not (path / "checkpoints" / "previous.safetensors").exists():
            raise CheckpointError(f"{path / LATEST}: no checkpoint there; is {path} a run folder "
                                  "`gankit train` wrote (and has it reached its first checkpoint)?")
        found = load_latest(path)  # the previous checkpoint (with a warning) when the latest is damaged
        ckpt = found[1]
    else:
        ckpt = path / BEST
        if not ckpt.exists():
            raise CheckpointError(f"{ckpt}: no best checkpoint yet (one is written at evaluations and when the run "
                                  f"ends); use {option('--checkpoint', 'latest', param='which')}")
    model = load(ckpt, device="cpu")
    return Source(model, path.resolve().name, ckpt.relative_to(path).as_posix(), sha256_file(ckpt), which)


# -- ONNX ---------------------------------------------------------------------------------------

class _Output(nn.Module):
    """The graph: the task's own output step (:meth:`gankit.tasks.Task.output`: the network, its
    composition with the input — an inpainter's known pixels, a colouriser's L*a*b* -> RGB — and the
    final clamp) with the ONNX inputs as positional arguments, in ``names`` order."""

    def __init__(self, net: nn.Module, task, names: List[str]):
        super().__init__()
        self.net, self.task, self.names = net, task, list(names)

    def forward(self, *args: Tensor) -> Tensor:
        return self.task.output(self.net, dict(zip(self.names, args)))


def export_task(task, net: nn.Module):
    """``task`` as the graph runs it: a style generator with its constant per-layer noise
    (:data:`STYLE_NOISE`; the graph holds no random op, so the file is deterministic)."""
    from .tasks import GenerationTask

    if isinstance(task, GenerationTask) and noise_mode(net) != "none":
        return task.truncated(1.0, None, net, noise_mode=STYLE_NOISE)
    return task


def spec_task(spec: "Spec"):
    """The task of a bare network exported with ``spec`` (no model around it): G(z[, y]) for
    generation, G(x) composed by ``spec.compose`` for translation."""
    from .tasks import GenerationTask, TranslationTask

    if spec.task == "generation":
        y = [i for i in spec.inputs if i["name"] == "y"]
        return GenerationTask(int(spec.inputs[0]["shape"][1]), int(y[0]["num_classes"]) if y else 0)
    return TranslationTask(compose=spec.compose)


def frozen_copy(net: nn.Module) -> nn.Module:
    """A CPU fp32 copy of ``net`` in eval mode with parametrisations (spectral norm) folded into
    plain weights: in eval mode spectral norm divides by a fixed σ, so the output is unchanged and
    the graph holds ordinary convolutions."""
    from torch.nn.utils import parametrize

    net = copy.deepcopy(net).cpu().float().to(memory_format=torch.contiguous_format).eval()
    for m in list(net.modules()):
        if parametrize.is_parametrized(m):
            # Not parametrize.remove_parametrizations: it deletes the property from the generated
            # class, which the copy shares with the original module (and breaks the original).
            with torch.no_grad():
                values = {name: getattr(m, name).detach().clone() for name in m.parametrizations}
            del m._modules["parametrizations"]
            m.__class__ = type(m).__bases__[0]  # parametrize's class derives from the module's own
            for name, value in values.items():
                m.register_parameter(name, nn.Parameter(value))
    return net.requires_grad_(False)


@dataclass
class Spec:
    """The graph's interface: input and output names, shapes (``"N"`` the batch axis), dtypes and
    value ranges, and how to draw example inputs."""

    task: str                          # generation | translation
    inputs: List[dict]
    outputs: List[dict]
    compose: str = "none"              # translation: how the output joins the input (gankit.tasks.COMPOSE)

    def example(self, n: int, seed: int) -> Dict[str, Tensor]:
        """Inputs for a batch of ``n`` as the task feeds them: z ~ N(0, I), classes 0..K-1 cycling,
        images uniform in [-1, 1]; an inpainter's input (``keep-known``) is such an image with a hole
        set to 0 and the 0/1 hole mask as its last channel (rectangles, strokes and borders)."""
        g = torch.Generator().manual_seed(seed)
        out = {}
        for spec in self.inputs:
            shape = [n] + [int(d) for d in spec["shape"][1:]]
            if spec["name"] == "y":
                out["y"] = torch.arange(n, dtype=torch.int64) % int(spec["num_classes"])
            elif spec["name"] == "z":
                out["z"] = torch.randn(*shape, generator=g)
            elif self.compose == "keep-known":
                from .data.masks import draw_masks
                from .data.restoration import with_hole

                image = torch.rand(n, shape[1] - 1, *shape[2:], generator=g) * 2 - 1
                out[spec["name"]] = with_hole(image, draw_masks(("rect", "stroke", "border"), n, *shape[2:], g))
            else:
                out[spec["name"]] = torch.rand(*shape, generator=g) * 2 - 1
        return out


def _image_range(shape) -> str:
    return "[-1, 1] (uint8 pixel = round((v + 1) * 127.5))" if len(shape) == 3 else "the data's coordinates"


#: What a composed translator's input is (metadata gankit.inputs' "range"), by compose rule.
INPUT_MEANING = {
    "keep-known": "channels 0..C-2: the image in [-1, 1] with the hole set to 0; channel C-1: the hole mask, "
                  "1 on the pixels to fill, 0 on the known pixels (exactly 0 or 1)",
    "lab": "lightness L* in model scale L/50 - 1, in [-1, 1] (L* in [0, 100])",
}
#: What a composed translator's output is.
OUTPUT_MEANING = {
    "keep-known": "[-1, 1] (uint8 pixel = round((v + 1) * 127.5)); the known pixels (mask 0) are the input's, "
                  "bit for bit; the hole is the network's",
    "lab": "RGB in [-1, 1] (uint8 pixel = round((v + 1) * 127.5)): the input's L* with the predicted a*, b*, "
           "converted from CIE L*a*b* (D65) to sRGB",
}


def generation_spec(z_dim: int, num_classes: int, sample_shape: Tuple[int, ...]) -> Spec:
    inputs = [{"name": "z", "dtype": "float32", "shape": ["N", z_dim], "range": "z ~ N(0, I), standard normal"}]
    if num_classes:
        inputs.append({"name": "y", "dtype": "int64", "shape": ["N"], "range": f"class 0..{num_classes - 1}",
                       "num_classes": num_classes})
    outputs = [{"name": "x", "dtype": "float32", "shape": ["N", *sample_shape], "range": _image_range(sample_shape)}]
    return Spec("generation", inputs, outputs)


def translation_spec(in_shape: Tuple[int, ...], out_shape: Tuple[int, ...], compose: str = "none") -> Spec:
    return Spec("translation",
                [{"name": "x", "dtype": "float32", "shape": ["N", *in_shape],
                  "range": INPUT_MEANING.get(compose, _image_range(in_shape))}],
                [{"name": "y", "dtype": "float32", "shape": ["N", *out_shape],
                  "range": OUTPUT_MEANING.get(compose, _image_range(out_shape))}], compose)


def onnx_bytes(net: nn.Module, spec: Spec, exporter: str = "torchscript", task=None) -> bytes:
    """The ONNX graph of ``task``'s outputs (:meth:`gankit.tasks.Task.output`; None: :func:`spec_task`)
    made by ``net`` (already a :func:`frozen_copy`), with ``spec``'s names and a dynamic batch axis.
    ``exporter``: ``torchscript`` (``torch.onnx.export(dynamo=False)``, fast, opset 17) or ``dynamo``
    (``torch.export``; needs onnxscript)."""
    names = [i["name"] for i in spec.inputs]
    module = _Output(net, export_task(task or spec_task(spec), net), names).eval()
    example = spec.example(CHECK_BATCHES[0], seed=0)
    args = tuple(example[k] for k in names)
    out_names = [o["name"] for o in spec.outputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracer notices
        if exporter == "torchscript":
            buf = io.BytesIO()
            torch.onnx.export(module, args, buf, dynamo=False, input_names=names, output_names=out_names,
                              dynamic_axes={k: {0: "N"} for k in names + out_names}, opset_version=OPSET,
                              do_constant_folding=True)
            return buf.getvalue()
        if exporter == "dynamo":
            import logging

            from torch.export import Dim

            logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notices

            batch = Dim("N", min=1)
            program = torch.onnx.export(module, args, dynamo=True, input_names=names, output_names=out_names,
                                        dynamic_shapes=(tuple({0: batch} for _ in names),),  # forward(*args)
                                        verbose=False)
            return program.model_proto.SerializeToString()
    raise GankitError(f"exporter {exporter!r}: choose torchscript or dynamo")


def check_onnx(data: bytes, net: nn.Module, spec: Spec, batches=CHECK_BATCHES, seed: int = 0,
               task=None) -> Dict[int, float]:
    """Max |onnxruntime − PyTorch| of the ONNX model ``data`` against ``task``'s outputs made by ``net``
    (:meth:`gankit.tasks.Task.output`, composed and clamped as gankit makes them; None:
    :func:`spec_task`) on the same inputs, per batch size (:meth:`Spec.example`: z ~ N(0, I), classes
    cycling, images uniform in [-1, 1], an inpainter's with a 0/1 mask and its hole zeroed). A style
    generator runs with its constant noise (``noise_mode="const"``, see :func:`noise_mode`), not the
    random noise of ``gankit sample``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    names = [i["name"] for i in spec.inputs]
    reference = _Output(net, export_task(task or spec_task(spec), net), names)
    was_training = net.training
    net.eval()
    errors = {}
    try:
        for i, n in enumerate(batches):
            inputs = spec.example(n, seed + i)
            got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
            with torch.no_grad():
                want = reference(*(inputs[k] for k in names)).float().numpy()
            expected = (n, *[int(d) for d in spec.outputs[0]["shape"][1:]])
            if got.shape != expected:
                cause = ("the graph's batch axis is not dynamic" if got.shape[0] != n else
                         "the graph's output is not the task's (channels or size differ)")
                raise GankitError(f"ONNX export: onnxruntime returned shape {got.shape} for a batch of {n}, "
                                  f"expected {expected}; {cause}")
            if not np.isfinite(want).all():
                raise GankitError(f"ONNX export: the network's own outputs hold NaN or inf on the check's inputs "
                                  f"(its weights: {_non_finite(net)} non-finite values); nothing to export: "
                                  "export a healthy checkpoint")
            errors[n] = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
    finally:
        net.train(was_training)
    return errors


def _non_finite(net: nn.Module) -> int:
    return sum(int((~torch.isfinite(t)).sum()) for t in net.state_dict().values() if t.is_floating_point())


def onnx_metadata(src: Source, spec: Spec, direction: Optional[str], net_name: str,
                  exporter: str = "torchscript") -> Dict[str, str]:
    """The ``metadata_props`` of an exported file: strings (JSON where structured)."""
    from .version import __version__

    model = src.model
    ema = bool(model.cfg.train.ema) and net_name in model.objective.ema
    noise = noise_mode(model.nets[net_name])
    return {
        "gankit.version": __version__,
        "gankit.task": spec.task,
        "gankit.inputs": json.dumps(spec.inputs),
        "gankit.outputs": json.dumps(spec.outputs),
        "gankit.num_classes": str(model.num_classes),
        "gankit.z_dim": str(model.cfg.model.z_dim if spec.task == "generation" else 0),
        "gankit.direction": direction or "",
        "gankit.network": net_name,
        "gankit.ema": str(ema).lower(),
        "gankit.objective": model.cfg.loss.objective,
        "gankit.arch": model.cfg.model.arch,
        "gankit.dataset": model.cfg.data.name,
        "gankit.run": src.name,
        "gankit.step": str(model.step),
        "gankit.checkpoint": src.which,
        "gankit.checkpoint_sha256": src.sha256,
        "gankit.exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gankit.exporter": exporter,
        "gankit.tolerance": f"{TOLERANCE:g}",
        "gankit.noise": noise,
        "gankit.noise_meaning": NOISE_MEANING[noise],
        # the record `gankit inspect` prints for a PNG, NPZ or WAV: the command and date with the run's facts
        "gankit.provenance": to_json({**provenance_record(), "made_by": "gankit export", "run": src.name,
                                      "checkpoint": src.which, "checkpoint_sha256": src.sha256,
                                      "step": model.step}),
    }


def export_onnx(src: Source, out: Path, direction: Optional[str] = None, exporter: str = "torchscript",
                tolerance: float = TOLERANCE) -> ExportResult:
    """Write the sampling network of ``src`` as ``out`` (.onnx) after checking it with onnxruntime."""
    import onnx

    from .api import check_replaceable

    model = src.model
    if out.suffix != ".onnx":
        raise GankitError(f"{option('-o', out, param='out')}: an ONNX file name ends in .onnx")
    if out.is_dir():
        raise GankitError(f"{option('-o', out, param='out')}: a folder is there; give a file name ending in .onnx")
    check_replaceable(out)  # an existing file is replaced only when gankit wrote it (its gankit.provenance)
    if model.task.name == "reconstruction":
        raise GankitError(f"ONNX export: {model.cfg.loss.objective} is an anomaly detector: its output is a score, "
                          "not an image; score images with gankit score RUN IMAGES... (a model folder, "
                          f"{option('--format', 'folder', param='fmt')}, keeps it whole)")
    if model.task.name == "translation":
        tasks = model.objective.tasks()
        name = direction or next(iter(tasks))
        if name not in tasks:
            raise GankitError(f"{option('--direction', name)}: this model translates {', '.join(tasks)}")
        task = tasks[name]
        in_shape = model.info.sample_shape if task.source == "A" else model.info.target_shape
        out_shape = model.info.target_shape if task.source == "A" else model.info.sample_shape
        spec = translation_spec(tuple(in_shape), tuple(out_shape), task.compose.name)
        direction = name if len(tasks) > 1 else None
    else:
        if direction is not None:
            raise GankitError(f"{option('--direction', direction)}: this is a {model.task.name} model; it has one "
                              "direction")
        task = model.task
        spec = generation_spec(model.cfg.model.z_dim, model.num_classes, tuple(model.info.sample_shape))
    net_name = task.net
    net = frozen_copy(model.nets[net_name])
    try:
        data = onnx_bytes(net, spec, exporter, task)
    except GankitError:
        raise
    except Exception as e:  # an operator the exporter cannot express: one line, what to try
        raise GankitError(f"ONNX export of {model.cfg.model.arch} ({net_name}) failed: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    proto = onnx.load_from_string(data)
    meta = onnx_metadata(src, spec, direction, net_name, exporter)
    onnx.helper.set_model_props(proto, meta)
    proto.doc_string = (f"gankit {spec.task} network {net_name} of run {src.name} (step {model.step}); "
                        "inputs and outputs: see metadata gankit.inputs / gankit.outputs")
    data = proto.SerializeToString()
    errors = check_onnx(data, model.nets[net_name], spec, task=task)  # against the network, not the folded copy
    worst = max(errors.values())
    if not worst <= tolerance:  # also catches NaN
        raise GankitError(f"ONNX export: onnxruntime and PyTorch differ by {worst:.3g} (> {tolerance:g}) on the same "
                          f"inputs; {out} not written")
    atomic_write_bytes(out, data)
    return ExportResult("onnx", out, worst, errors, noise=meta["gankit.noise"])


# -- model folder -------------------------------------------------------------------------------

def best_fid(run_dir: Optional[Path]) -> Optional[dict]:
    """The lowest FID a run folder records with its evaluation card: from ``eval.json``
    (``gankit eval``) and ``eval_cards.json`` (the last evaluation during training); None if neither
    has one. Returns ``{"value", "card", "file", "step"}``."""
    if run_dir is None:
        return None
    found = []
    for fname in ("eval.json", "eval_cards.json"):
        p = Path(run_dir) / fname
        if not p.is_file():
            continue
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        source = doc.get("source") or {}
        step = doc.get("step", source.get("step"))
        for r in doc.get("results", []):  # generation: a list of values with their cards
            if r.get("name") == "fid" and isinstance(r.get("value"), (int, float)):
                found.append({"value": float(r["value"]), "card": r.get("card", {}), "file": fname, "step": step,
                              "checkpoint": source.get("checkpoint")})
        protocol = doc.get("protocol")
        if isinstance(protocol, dict):  # translation (gankit.metrics.translation): {direction: {metric: value}}
            for direction, scores in doc.items():
                if isinstance(scores, dict) and isinstance(scores.get("fid"), (int, float)):
                    found.append({"value": float(scores["fid"]), "file": fname, "checkpoint": protocol.get("checkpoint"),
                                  "card": {"direction": direction, "scores": scores, "protocol": protocol}})
    return min(found, key=lambda r: r["value"]) if found else None


def model_card(src: Source, meta: dict, fid: Optional[dict]) -> str:
    """README.md of a model folder: front matter for the Hugging Face Hub, then what it is, how to
    load it, how it was trained and evaluated."""
    from .metrics.card import card_id, describe

    model = src.model
    cfg = model.cfg
    task = model.task.name
    image = model.info.kind == "image"
    # The Hub has no pipeline for class-conditional generation or anomaly scores: "other", with tags.
    pipeline = {"translation": "image-to-image"}.get(task, "unconditional-image-generation"
                                                     if task == "generation" and image and not model.num_classes
                                                     else "other")
    extra_tags = (["class-conditional"] if task == "generation" and model.num_classes else []) + (
        ["anomaly-detection"] if task == "reconstruction" else [])
    shape = "×".join(str(d) for d in model.info.sample_shape)
    tags = dict.fromkeys(['gan', 'gankit', *extra_tags, cfg.loss.objective, cfg.model.arch])
    lines = ["---", "library_name: gankit", f"pipeline_tag: {pipeline}", f"tags: [{', '.join(tags)}]", "---", "",
             f"# {src.name}", ""]
    name = Path(meta["path"]).name
    if task == "translation":
        dirs = ", ".join(model.directions())
        what = (f"An image-to-image translator ({cfg.loss.objective}, `{cfg.model.arch}` networks) trained on "
                f"`{cfg.data.name}`: input images {shape} in [-1, 1] → outputs "
                f"{'×'.join(str(d) for d in model.info.target_shape)}; directions: {dirs}.")
    elif task == "reconstruction":
        what = (f"An anomaly detector ({cfg.loss.objective} objective, `{cfg.model.arch}` networks) trained on "
                f"`{cfg.data.name}`: it reconstructs images {shape} in [-1, 1] of the normal data and scores an "
                "image by how badly it does (higher = more anomalous). It does not generate images from noise.")
    else:
        cond = f", conditioned on {model.num_classes} classes" if model.num_classes else ""
        what = (f"A generator ({cfg.loss.objective} objective, `{cfg.model.arch}` networks{cond}) trained on "
                f"`{cfg.data.name}`: {cfg.model.z_dim}-dimensional noise z ~ N(0, I) → samples of shape {shape}"
                + (" in [-1, 1]." if model.info.kind == "image" else "."))
    ema = [n for n in model.objective.ema if cfg.train.ema]
    lines += [what, "",
              f"- trained for **{model.step:,} generator steps** (`{cfg.name}` recipe, seed {cfg.seed}, "
              f"batch {cfg.train.batch_size})",
              f"- {_overrides_line(cfg)}",
              f"- weights: {', '.join(meta['networks'])}" + (f" (EMA weights for {', '.join(ema)}, decay "
                                                               f"{cfg.train.ema})" if ema else ""),
              f"- exported from the `{src.which}` checkpoint (SHA-256 `{src.sha256}`) with gankit "
              f"{meta['gankit']} on {meta['exported']}", "",
              "## Use", "", "```python", "import gankit", "", f'model = gankit.load("{name}")']
    if task == "translation":
        lines += ["y = model.translate(x)  # x: (N, C, H, W) float32 in [-1, 1]"]
    elif task == "reconstruction":
        lines += ["x_hat = model.translate(x)  # x: (N, C, H, W) float32 in [-1, 1] -> its reconstruction"]
    else:
        lines += ["x, y = model.sample(16, seed=0)  # x: (16, *sample_shape); y: labels or None"]
    lines += ["```", "", "```bash",
              {"translation": f"gankit translate {name} inputs/ -o out/",
               "reconstruction": f"gankit score {name} images/   # anomaly scores"}.get(
                  task, f"gankit sample {name} -n 64 -o samples.png")]
    if task != "reconstruction":  # an anomaly score is not a graph's output: no ONNX export for these
        lines += [f"gankit export {name} --format onnx -o model.onnx"]
    lines += ["```", "", "## Evaluation", ""]
    if fid is None:
        lines += ["Not evaluated: the run folder held no FID (`gankit eval RUN_DIR` writes one)."]
    else:
        at = fid.get("step")
        step = f" at step {at:,}" if isinstance(at, int) else " at a step the file does not record"
        if fid.get("checkpoint"):
            step += f" of the `{fid['checkpoint']}` checkpoint"
        if at == model.step:
            whose = f"the weights of step {at:,}, these ones"
        else:
            whose = (f"**not a score of these weights** (step {model.step:,}), which were not evaluated; "
                     "evaluate them to compare")
        lines += [f"Best FID recorded for the run: **{fid['value']:.4g}**{step} (from `{fid['file']}`): {whose}. "
                  "Compare it only with numbers of the same card:", "", "```"]
        card = fid["card"]
        if "protocol" in card:  # a translation run's eval.json: the direction's scores and the protocol
            lines += [f"direction     {card['direction']}"]
            lines += [f"{k:<13} {v:.4g}" if isinstance(v, float) else f"{k:<13} {v}" for k, v in card["scores"].items()]
            lines += [f"{k:<13} {v}" for k, v in card["protocol"].items()]
        else:
            lines += [describe(card) if card.get("metric") else f"card {card_id(card)}"]
        lines += ["```"]
    lines += ["", "## Files", "", "| file | |", "| --- | --- |",
              f"| `{CONFIG_FILE}` | the resolved training config and the data facts that rebuild the networks |",
              f"| `{WEIGHTS_FILE}` | the weights, one tensor per `NETWORK.parameter` |",
              f"| `{CARD_FILE}` | this card |", ""]
    return "\n".join(lines)


def _overrides_line(cfg, most: int = 12) -> str:
    """The settings where ``cfg`` differs from its shipped recipe (the run's --set overrides, as they
    resolve), as ``key=value``; config.json holds the whole resolved config."""
    from .config import load_config

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict) and v:
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    try:
        recipe = flat(load_config(cfg.name).to_dict())
    except Exception:  # noqa: BLE001  (not a shipped recipe: a user's YAML, a dict)
        return f"settings: `{CONFIG_FILE}` holds the resolved config (`{cfg.name}` is not a shipped recipe)"
    mine = flat(cfg.to_dict())
    diff = [f"`{k}={json.dumps(v)}`" for k, v in mine.items() if recipe.get(k, object()) != v]
    if not diff:
        return f"settings: the `{cfg.name}` recipe as shipped (`{CONFIG_FILE}` holds the resolved config)"
    more = f" and {len(diff) - most} more" if len(diff) > most else ""
    return (f"settings that differ from the `{cfg.name}` recipe: {', '.join(diff[:most])}{more} "
            f"(`{CONFIG_FILE}` holds the resolved config)")


def export_folder(src: Source, out: Path) -> ExportResult:
    """Write ``config.json``, ``model.safetensors`` and ``README.md`` into the folder ``out``, as a whole:
    into a new hidden sibling first, then renamed into place (:func:`gankit.utils.replace_folder`), so a killed
    export leaves the folder that was there (or none) or the new one, never a mix. An existing ``out``
    is replaced only when it is a gankit model folder holding nothing but its files as gankit wrote
    them (a card edited since, or a file of the user's, is refused, named)."""
    import hashlib

    from safetensors.torch import save as safetensors_save

    from .version import __version__

    model = src.model
    if out.exists() and not out.is_dir():
        raise GankitError(f"{option('-o', out, param='out')}: a file is there; give a folder name")
    if out.is_dir() and any(out.iterdir()):
        _check_replaceable_folder(out)
    tensors = {}
    for name, net in model.nets.items():
        for k, v in net.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().cpu().contiguous().clone()
    meta = {
        "format": FOLDER_FORMAT,
        "gankit": __version__,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "path": str(out),
        "task": model.task.name,
        "networks": list(model.nets),
        "step": model.step,
        "source": {"run": src.name, "checkpoint": src.checkpoint, "which": src.which,
                   "checkpoint_sha256": src.sha256},
        "data": model.data,
        "config": model.cfg.to_dict(),
    }
    fid = best_fid(model.run_dir) if src.fid is None else src.fid
    if fid is not None:
        meta["best_fid"] = fid
    card = model_card(src, meta, fid)
    del meta["path"]  # where it was written is not part of the model
    weights = safetensors_save(tensors, metadata={"format": FOLDER_FORMAT})
    # what gankit.load verifies (the weights) and what a re-export may replace (the card as written)
    meta["files"] = {WEIGHTS_FILE: hashlib.sha256(weights).hexdigest(),
                     CARD_FILE: hashlib.sha256(card.encode("utf-8")).hexdigest()}
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    import secrets

    tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    tmp.mkdir()  # the umask's permissions, as out.mkdir would give
    try:
        atomic_write_bytes(tmp / WEIGHTS_FILE, weights)
        atomic_write_text(tmp / CARD_FILE, card)
        atomic_write_text(tmp / CONFIG_FILE, json.dumps(meta, indent=1) + "\n")
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult("folder", out, files=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE])


def _check_replaceable_folder(out: Path) -> None:
    """Refuse, in one line, to replace ``out`` unless it is a model folder of gankit's own files, the
    card as gankit wrote it (by the SHA-256 config.json records; older folders recorded none)."""
    if not is_model_folder(out):
        raise GankitError(f"{option('-o', out, param='out')}: the folder is not empty and is not a gankit model "
                          "folder; give a new folder")
    extra = sorted(p.name for p in out.iterdir() if p.name not in FILES)
    if extra:
        raise GankitError(f"{option('-o', out, param='out')}: this model folder also holds {', '.join(extra)}, "
                          "which gankit did not write; a re-export replaces the folder as a whole: move them "
                          "away or give a new folder")
    recorded = (read_folder_config(out).get("files") or {}).get(CARD_FILE)
    if recorded is not None and (out / CARD_FILE).is_file() and sha256_file(out / CARD_FILE) != recorded:
        raise GankitError(f"{option('-o', out, param='out')}: its {CARD_FILE} was edited since gankit wrote it; a "
                          "re-export would replace it: move it away or give a new folder")


__all__ = ["export", "export_onnx", "export_folder", "read_onnx_metadata", "TOLERANCE", "FORMATS"]
