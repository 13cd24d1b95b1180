"""Checks on everything a client sends: query parameters and uploaded images.

Each failure is a :class:`BadRequest` carrying the HTTP status and one line for the client."""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple
from urllib.parse import parse_qsl

from ..errors import GankitError

MAX_UPLOAD_BYTES = 4 * 1024 * 1024       # an uploaded image file, as sent
MAX_UPLOAD_PIXELS = 4096 * 4096          # its width × height, checked from the header before decoding
UPLOAD_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF")

_INT = re.compile(r"-?[0-9]+")     # ASCII digits only (str.isdigit would take "²", which int() refuses)
_FLOAT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
MAX_INT_DIGITS = 18                # longer is out of every range here, and int() is never asked to parse it
                                   # (Python refuses over 4,300 digits)


class BadRequest(GankitError):
    """A request the server refuses; ``status`` is the HTTP code (400, 404, 413, 415, …);
    ``headers``: extra response headers (a 405's ``Allow``)."""

    def __init__(self, message: str, status: int = 400, headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True)
class Param:
    """One query parameter: ``kind`` int | float | str; bounds inclusive; ``default`` None = optional
    and absent; ``choices`` for str."""

    kind: str
    lo: Optional[float] = None
    hi: Optional[float] = None
    default: object = None
    choices: Tuple[str, ...] = ()


def parse_query(query: str, spec: Dict[str, Param]) -> dict:
    """The query string parsed against ``spec``: unknown or repeated names, malformed numbers, NaN,
    infinities and values out of range are a BadRequest naming the parameter. An empty value means
    absent (the default)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, max_num_fields=len(spec) + 1)
    except ValueError:
        raise BadRequest(f"too many query parameters; this endpoint takes {', '.join(spec) or 'none'}") from None
    out, seen = {}, set()
    for name, raw in pairs:
        if name not in spec:
            raise BadRequest(f"unknown parameter {name[:40]!r}; this endpoint takes {', '.join(spec) or 'none'}")
        if name in seen:
            raise BadRequest(f"parameter {name!r} given twice")
        seen.add(name)
        if raw != "":
            out[name] = _value(name, raw, spec[name])
    for name, p in spec.items():
        out.setdefault(name, p.default)
    return out


def _value(name: str, raw: str, p: Param):
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    if p.kind == "str":
        if p.choices and raw not in p.choices:
            raise BadRequest(f"{name}={shown!r}: must be one of {', '.join(p.choices)}")
        return raw
    pattern = _INT if p.kind == "int" else _FLOAT
    if not pattern.fullmatch(raw):
        raise BadRequest(f"{name}={shown!r}: not {'an integer' if p.kind == 'int' else 'a number'}")
    if p.kind == "int" and len(raw.lstrip("-")) > MAX_INT_DIGITS:
        raise BadRequest(f"{name}={shown}: {_range(p)}")
    value = int(raw) if p.kind == "int" else float(raw)
    if not math.isfinite(value):
        raise BadRequest(f"{name}={shown!r}: not a finite number")
    if (p.lo is not None and value < p.lo) or (p.hi is not None and value > p.hi):
        raise BadRequest(f"{name}={shown}: {_range(p)}")
    return value


def _range(p: Param) -> str:
    """What a value of ``p`` must be: in [lo, hi], ≥ lo or ≤ hi (a missing bound is none)."""
    if p.lo is not None and p.hi is not None:
        return f"must be in [{_fmt(p.lo)}, {_fmt(p.hi)}]"
    return f"must be ≥ {_fmt(p.lo)}" if p.lo is not None else f"must be ≤ {_fmt(p.hi)}"


def _fmt(v) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def decode_image(data: bytes, mode: str):
    """Uploaded bytes -> a fully decoded Pillow image in ``mode`` ("L" or "RGB"), first frame of an
    animation. Checked in this order: not empty; a PNG/JPEG/BMP/WEBP/GIF by its content (never by
    the name or the Content-Type); width × height ≤ MAX_UPLOAD_PIXELS from the header, before any
    pixel is decoded (a small file can declare a huge image: a decompression bomb); ``verify`` for
    structural damage; then the decode itself."""
    from PIL import Image, UnidentifiedImageError

    from ..data.images import as_mode

    if not data:
        raise BadRequest("the request body is empty: send the image file's bytes", 400)
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as im:
            w, h = im.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise BadRequest(f"image is {w}×{h} pixels; the limit is {MAX_UPLOAD_PIXELS:,} pixels", 413)
            im.verify()
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as im:
            im.seek(0)
            im.load()
            return as_mode(im, mode)  # as gankit reads every image: upright, alpha over white
    except BadRequest:
        raise
    except Image.DecompressionBombError:  # Image.open refuses above 2 × MAX_IMAGE_PIXELS from the header
        raise BadRequest(f"image declares over {2 * Image.MAX_IMAGE_PIXELS:,} pixels in its header; "
                         f"the limit is {MAX_UPLOAD_PIXELS:,} pixels", 413) from None
    except UnidentifiedImageError:
        raise BadRequest(f"not an image this server reads: send a {', '.join(UPLOAD_FORMATS)} file", 415) from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as e:  # what Pillow raises on damaged files
        raise BadRequest(f"the image could not be decoded ({type(e).__name__}); is the file complete?", 415) from None
