"""WAV files: 16-bit PCM with gankit's provenance in a RIFF ``LIST``/``INFO`` chunk.

INFO sub-chunks written (the RIFF spec's registered IDs, read by most audio tools):
``ISFT`` software (``gankit VERSION``), ``ICRD`` creation date (UTC ISO 8601), ``ICMT`` the full
provenance record as JSON (:mod:`gankit.provenance`).
"""
from __future__ import annotations

import io
import struct
import wave
from pathlib import Path
from typing import Dict

import numpy as np

from .errors import GankitError
from .utils import atomic_write_bytes


def _info_chunk(fields: Dict[str, str]) -> bytes:
    body = b"INFO"
    for key, text in fields.items():
        data = text.encode("utf-8") + b"\0"  # INFO strings are NUL-terminated
        body += key.encode("ascii") + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    return b"LIST" + struct.pack("<I", len(body)) + body


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """``audio``: (T,) or (T, channels) floats in [-1, 1] (clipped) -> WAV bytes, 16-bit PCM, with
    the provenance INFO chunk of :func:`gankit.provenance.current`."""
    from .provenance import current, to_json

    a = np.asarray(audio, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] < 1:
        raise GankitError(f"audio of shape {tuple(np.shape(audio))}: give (samples,) or (samples, channels)")
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise GankitError(f"sample rate {sample_rate!r}: give a positive integer (Hz)")
    pcm = np.round(np.clip(np.nan_to_num(a), -1.0, 1.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(a.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    data = buf.getvalue()
    record = current()
    info = _info_chunk({"ISFT": f"gankit {record['gankit']}", "ICRD": record["date"], "ICMT": to_json(record)})
    data += info
    return data[:4] + struct.pack("<I", len(data) - 8) + data[8:]  # RIFF size now includes the LIST chunk


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write ``audio`` (see :func:`wav_bytes`) to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, wav_bytes(audio, sample_rate))
    return path


def read_wav_info(path: str | Path) -> Dict[str, str]:
    """The INFO sub-chunks of a RIFF/WAVE file as ``{id: text}`` ({} when it has none)."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise GankitError(f"{path}: not a RIFF/WAVE file")
    out: Dict[str, str] = {}
    pos, end = 12, min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    while pos + 8 <= end:
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"LIST" and body[:4] == b"INFO":
            q = 4
            while q + 8 <= len(body):
                sid, ssize = body[q:q + 4].decode("ascii", "replace"), struct.unpack("<I", body[q + 4:q + 8])[0]
                out[sid] = body[q + 8:q + 8 + ssize].rstrip(b"\0").decode("utf-8", "replace")
                q += 8 + ssize + (ssize % 2)
        pos += 8 + size + (size % 2)
    return out


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(audio (T, channels) float32 in [-1, 1], sample rate) of a 16-bit PCM WAV file."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise GankitError(f"{path}: {8 * w.getsampwidth()}-bit samples; gankit reads 16-bit PCM")
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return (frames.reshape(-1, w.getnchannels()).astype(np.float32) / 32767), w.getframerate()
