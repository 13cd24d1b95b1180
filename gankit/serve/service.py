"""What the page asks of a model, answered as PNG bytes: samples, a latent walk, a translation.

One model is loaded once and shared by every request thread. Its forward passes run one at a
time under a lock: PyTorch already spreads one forward over the CPU's cores, concurrent forwards
would only compete for them, and :meth:`gankit.tasks.Task.generate` switches the network's
train/eval mode around each call. Decoding uploads and encoding PNGs run outside the lock, so
they overlap with inference."""
from __future__ import annotations

import io
import math
import threading
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import provenance
from ..data.base import to_model_range, to_uint8
from ..errors import GankitError
from ..latent import slerp
from .plots import vector_plot
from .validate import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, BadRequest, Param, decode_image

MAX_SEED = 2**31 - 1
TRUNCATION = (0.0, 1.0)        # truncation ψ as gankit sample takes it (latent.PSI_RANGE; 0 only for a style G)
MAX_N_IMAGES = 64              # images drawn by one request
MAX_N_POINTS = 5000            # points of a 1D/2D model in one plot
WALK_BACKGROUND = 1000         # samples drawn behind a 1D/2D latent walk
WALK_PATH_POINTS = 64          # points on the drawn 1D/2D walk path

# Style mixing is gankit mix's (gankit.steer.mixing.style_mixing): a style generator (stylegan,
# stylegan2) has G.num_ws style inputs; crossover K takes indices < K from seed a, the rest from seed b.
# Any other generator answers /api/mix with 501 and the page hides its controls.


class ModelService:
    """A loaded :class:`gankit.api.GAN` behind the server's endpoints."""

    def __init__(self, model, name: str = "model"):
        self.model, self.name = model, name
        self.kind = model.info.kind                     # image | vector | translation
        self.lock = threading.Lock()
        modes = model.data.get("modes")
        self.modes = np.asarray(modes, dtype=np.float32) if modes is not None else None
        # Provenance of every PNG served (gankit.provenance): the checkpoint's SHA-256 is computed
        # once here, not per request; each response adds its seed, truncation, class and date.
        with provenance.context(made_by="gankit.serve", run=name, recipe=model.cfg.name,
                                checkpoint=getattr(model, "checkpoint_path", None), step=model.step):
            self._provenance = provenance.current()

    # ---- what the page may ask ------------------------------------------------------------
    @property
    def generation(self) -> bool:
        return self.model.task.name == "generation"

    @property
    def style_layers(self) -> int:
        """The style inputs a crossover can split (G.num_ws); 0 for a generator without styles."""
        from ..steer.mixing import is_style_generator

        G = self.model.G
        return int(G.num_ws) if self.generation and is_style_generator(G) else 0

    @property
    def max_n(self) -> int:
        return MAX_N_POINTS if self.kind == "vector" else MAX_N_IMAGES

    @property
    def default_n(self) -> int:
        return 1000 if self.kind == "vector" else 16

    def info(self) -> dict:
        """The facts and limits the page builds its controls from (GET /api/info)."""
        m = self.model
        return {
            "run": self.name, "objective": m.cfg.loss.objective, "task": m.task.name, "kind": self.kind,
            "step": m.step, "dataset": m.data.get("name"),
            "sample_shape": list(m.info.sample_shape),
            "target_shape": list(m.info.target_shape) if m.info.target_shape else None,
            "z_dim": m.cfg.model.z_dim if self.generation else None,
            "num_classes": m.num_classes,
            "class_names": m.class_names if m.num_classes else [],   # [] when unconditional or unnamed
            "directions": m.directions() if not self.generation else [],
            "style_layers": self.style_layers,
            "limits": {"seed": [0, MAX_SEED], "truncation": list(TRUNCATION), "n": [1, self.max_n],
                       "n_default": self.default_n,
                       "upload_bytes": MAX_UPLOAD_BYTES, "upload_pixels": MAX_UPLOAD_PIXELS},
        }

    def sample_spec(self) -> dict:
        self._need_generation("sample")
        return {"seed": Param("int", 0, MAX_SEED, 0), "class": Param("int", 0, None),
                "truncation": Param("float", *TRUNCATION), "n": Param("int", 1, self.max_n, self.default_n)}

    def walk_spec(self) -> dict:
        self._need_generation("walk")
        return {"a": Param("int", 0, MAX_SEED, 0), "b": Param("int", 0, MAX_SEED, 1), "t": Param("float", 0, 1, 0.0),
                "class": Param("int", 0, None), "truncation": Param("float", *TRUNCATION)}

    def mix_spec(self) -> dict:
        self._need_generation("mix styles")
        return {"a": Param("int", 0, MAX_SEED, 0), "b": Param("int", 0, MAX_SEED, 1),
                "crossover": Param("int", 0, None, 0), "class": Param("int", 0, None),
                "truncation": Param("float", *TRUNCATION)}

    def translate_spec(self) -> dict:
        return {"direction": Param("str", choices=tuple(self.model.directions()))} if not self.generation else {}

    # ---- endpoints ------------------------------------------------------------------------
    def sample(self, seed: int, label: Optional[int], truncation: Optional[float], n: int) -> bytes:
        """A grid of ``n`` images (or a plot of ``n`` points) seeded ``seed``; ``label`` None on a
        conditional model cycles through the classes. ``truncation``: ψ (None = 1, none). These are
        the samples ``gankit sample --seed SEED -n N [--truncation ψ]`` draws (:meth:`gankit.api.GAN.sample`)."""
        self._need_generation("sample")
        y = self._labels(n, label)
        self._task(truncation)                       # a bad ψ is a 400 before the lock is taken
        with self.lock:
            x, _ = self.model.sample(n, seed=seed, labels=y, truncation=_psi(truncation))
        meta = self._record(seed=seed, truncation=truncation, label=label)
        if self.kind == "vector":
            return vector_plot(x.numpy(), self.modes, title=f"{n} samples, seed {seed}" + _trunc(truncation),
                               metadata=provenance.png_text(meta))
        return _grid_png(x, meta)

    def walk(self, a: int, b: int, t: float, label: Optional[int], truncation: Optional[float]) -> bytes:
        """One image at ``t`` on the spherical path from seed ``a``'s code to seed ``b``'s (a 1D/2D
        model: the path drawn over samples, with the point at ``t`` marked)."""
        self._need_generation("walk")
        task = self._task(truncation)
        za, zb = task.seeded(1, a)["z"], task.seeded(1, b)["z"]     # seed a's first sample, seed b's
        label = 0 if label is None and self.model.num_classes else label
        meta = self._record(seed=a, truncation=truncation, label=label,
                            note=f"latent walk from seed {a} to seed {b} at t={t:g} (spherical)")
        if self.kind != "vector":
            return _grid_png(self._generate(task, slerp(za, zb, t), self._labels(1, label)), meta)
        ts = torch.linspace(0, 1, WALK_PATH_POINTS)
        path = torch.cat([slerp(za, zb, float(s)) for s in ts] + [slerp(za, zb, t)])
        background = task.seeded(WALK_BACKGROUND, a)["z"]
        z = torch.cat([background, path])
        x = self._generate(task, z, self._labels(len(z), label)).numpy()
        return vector_plot(x[:WALK_BACKGROUND], self.modes, path=x[WALK_BACKGROUND:-1], point=x[-1],
                           title=f"walk seed {a} → {b}, t = {t:.2f}" + _trunc(truncation),
                           metadata=provenance.png_text(meta))

    def mix(self, a: int, b: int, crossover: int, label: Optional[int], truncation: Optional[float]) -> bytes:
        """One style-mixing cell, as ``gankit mix`` makes them (:func:`gankit.steer.mixing.style_mixing`,
        constant noise): style indices < ``crossover`` from seed ``a``'s first sample, the rest from seed
        ``b``'s, every w truncated by ψ first. 501 for a generator without styles."""
        from ..steer.mixing import style_mixing

        self._need_generation("mix styles")
        layers = self.style_layers
        if not layers:
            raise BadRequest(f"{self.model.cfg.loss.objective} ({self.model.cfg.model.arch}) has no style layers: "
                             "style mixing needs a style generator (model.arch stylegan or stylegan2)", 501)
        if crossover > layers:
            raise BadRequest(f"crossover={crossover}: must be in [0, {layers}]")
        psi = self._task(truncation).psi
        za, zb = self.model.task.seeded(1, a)["z"], self.model.task.seeded(1, b)["z"]
        label = 0 if label is None and self.model.num_classes else label   # as the walk: class 0 unless asked
        y = self._labels(1, label)
        with self.lock:
            x = style_mixing(self.model.G, za, zb, crossover, y, y, psi=psi)["cells"][0]   # (1, C, H, W)
        return _grid_png(x, self._record(seed=a, truncation=truncation, label=label,
                                         note=f"style mix of seeds {a} and {b} at layer {crossover}"))

    def translate(self, data: bytes, direction: Optional[str] = None) -> bytes:
        """The uploaded image translated by the model: decoded and checked (validate.decode_image),
        converted to the model's channels, centre-cropped to its input's aspect ratio and resized to
        its input size with Pillow's bicubic filter (:func:`gankit.data.images.centre_crop`, what
        ``gankit translate``'s :func:`~gankit.data.images.prepare_image` does to a file), translated,
        returned as a PNG at the model's output size."""
        if self.generation:
            raise BadRequest(f"this is a {self.model.task.name} model: it takes no input image; use /api/sample")
        tasks = self.model.objective.tasks()
        name = direction or next(iter(tasks))
        shape = self.model.info.sample_shape if tasks[name].source == "A" else self.model.info.target_shape
        c, h, w = shape
        from ..data.images import centre_crop

        img = centre_crop(decode_image(data, "L" if c == 1 else "RGB"), (h, w), "BICUBIC")
        arr = np.asarray(img, dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        x = to_model_range(torch.from_numpy(arr.copy())).unsqueeze(0)     # (1, C, H, W) in [-1, 1]
        with self.lock:
            out = self.model.translate(x, name)
        return _grid_png(out, self._record(direction=name, note="translation of an uploaded image"))

    # ---- helpers --------------------------------------------------------------------------
    def _record(self, **fields) -> dict:
        """The provenance record of one response: the model's, this request's fields, now."""
        fresh = provenance.current()
        return {**self._provenance, **fields, "date": fresh["date"]}

    def _need_generation(self, what: str) -> None:
        if not self.generation:
            raise BadRequest(f"this is a {self.model.task.name} model: it cannot {what}; "
                             "upload an image to /api/translate")

    def _labels(self, n: int, label: Optional[int]) -> Optional[torch.Tensor]:
        k = self.model.num_classes
        if label is not None and not k:
            raise BadRequest("class: this model is not conditional; leave class out")
        if label is not None and label >= k:
            raise BadRequest(f"class={label}: must be in [0, {k - 1}]")
        return self.model.task.labels(n, label)

    def _task(self, truncation: Optional[float]):
        """The model's task truncated by ψ (None = 1) by gankit sample's rule (GenerationTask.truncated);
        a ψ this generator cannot take is a 400 naming the range."""
        try:
            return self.model.task.truncated(_psi(truncation), None, self.model.G)
        except GankitError as e:
            raise BadRequest(f"truncation={truncation:g}: {str(e).partition(': ')[2]}") from None

    def _generate(self, task, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        with self.lock:
            return task.generate(self.model.G, {"z": z, "y": y}, batch_size=500)


def _psi(truncation: Optional[float]) -> float:
    return 1.0 if truncation is None else float(truncation)


def _trunc(truncation: Optional[float]) -> str:
    return f", truncation ψ {truncation:g}" if truncation is not None else ""


def _grid_png(x: torch.Tensor, record: dict) -> bytes:
    """(N, C, H, W) in [-1, 1] -> PNG bytes carrying ``record`` (provenance): one image as it is,
    several as a near-square grid with 2 px between tiles."""
    from PIL import Image

    from ..viz.grids import image_grid

    nrow = max(1, math.ceil(math.sqrt(len(x))))
    array = to_uint8(x[0]).permute(1, 2, 0).numpy() if len(x) == 1 else image_grid(x, nrow=nrow)
    if len(x) > 1:
        record = {**record, "grid": {"images": len(x), "per_row": nrow, "tile": list(x.shape[2:]), "padding": 2,
                                     "scale": 1}}
    buf = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(
        buf, format="PNG", pnginfo=provenance.png_info(record))
    return buf.getvalue()


def run_name(run_dir) -> str:
    p = Path(run_dir).resolve()
    return p.name if p.is_dir() else p.parent.parent.name
