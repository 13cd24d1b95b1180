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

import numpy as np

from .errors import GankitError
from .provenance import current, to_json
from .riff import info_chunk, read_wav_info  # noqa: F401 (read_wav_info: part of this module's interface)
from .utils import atomic_write_bytes


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """``audio``: (T,) or (T, channels) floats in [-1, 1] -> WAV bytes, 16-bit PCM, with the
    provenance INFO chunk of :func:`gankit.provenance.current`. Audio peaking above 1 (Griffin-Lim's
    inversion of a loud spectrogram can) is scaled down as a whole to peak exactly 1, never clipped:
    clipping would square off every sample past the peak into audible distortion; NaN/inf become 0."""
    a = np.asarray(audio, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] < 1:
        raise GankitError(f"audio of shape {tuple(np.shape(audio))}: give (samples,) or (samples, channels)")
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise GankitError(f"sample rate {sample_rate!r}: give a positive integer (Hz)")
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak > 1.0:
        a = a / peak                       # peak-normalise: the waveform's shape kept, only its gain changes
    pcm = np.round(np.clip(a, -1.0, 1.0) * 32767).astype("<i2")   # the clip only absorbs rounding
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(a.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    data = buf.getvalue()
    record = current()
    info = info_chunk({"ISFT": f"gankit {record['gankit']}", "ICRD": record["date"], "ICMT": to_json(record)})
    data += info
    return data[:4] + struct.pack("<I", len(data) - 8) + data[8:]  # RIFF size now includes the LIST chunk


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write ``audio`` (see :func:`wav_bytes`) to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, wav_bytes(audio, sample_rate))
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(audio (T, channels) float32 in [-1, 1], sample rate) of a 16-bit PCM WAV file."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise GankitError(f"{path}: {8 * w.getsampwidth()}-bit samples; gankit reads 16-bit PCM")
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return (frames.reshape(-1, w.getnchannels()).astype(np.float32) / 32767), w.getframerate()
