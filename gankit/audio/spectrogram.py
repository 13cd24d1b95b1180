"""Log-mel spectrograms as images, and their inversion back to sound by Griffin-Lim.

A spectrogram here is float32 ``(n_mels, frames)`` in [-1, 1]: row 0 is the lowest mel band, column
0 the first frame. The chain, with every number in :class:`SpecSettings`:

    audio (T,) at sample_rate
      -> |STFT|^power        (n_fft, hop, win-sample Hann window, centred frames: 1 + T // hop of them)
      -> mel filterbank       (librosa's Slaney mel scale and area normalisation, fmin..fmax)
      -> dB = 10·log10(max(mel, amin))            relative to a FIXED reference, not the utterance's
      -> clip to [ref_db - top_db, ref_db]        maximum, so a quiet word stays quiet
      -> linear map to [-1, 1]                    (-1: the floor, silence; +1: ref_db)

Inversion: [-1, 1] -> dB -> mel power -> STFT magnitude (librosa's non-negative least squares through
the filterbank) -> Griffin-Lim (librosa, fast variant with momentum 0.99, ``n_iter`` iterations) from a
seeded random phase, so the same spectrogram and seed always give the same samples.

Datasets keep spectrograms as images: uint8 ``(N, 1, n_mels, frames)``, 0..255 mapping [-1, 1]
linearly with gankit's image mapping (``x / 127.5 - 1``), so a quantisation step is top_db / 255 dB
(0.31 dB for 80 dB). Frequency runs along height, time along width.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional

import librosa
import numpy as np
import torch

from ..errors import ConfigError, GankitError

SILENCE = -1.0  # the value of the dB floor in [-1, 1]: what padding fills with


@dataclass(frozen=True)
class SpecSettings:
    """How audio becomes a log-mel spectrogram. Defaults suit 1-second spoken words at 16 kHz on a CPU:
    64 mel bands x 128 frames (8 ms hop) is 1.02 s, small enough for a GAN of image size 64 x 128."""

    sample_rate: int = 16000   # Hz of the audio given to logmel (gankit.audio.corpus.load_wav resamples)
    n_fft: int = 512           # FFT size, samples (32 ms at 16 kHz; 257 frequency bins, 31.25 Hz apart)
    hop: int = 128             # samples between frames (8 ms at 16 kHz)
    win: int = 512             # Hann window length, samples (<= n_fft; zero-padded to n_fft)
    n_mels: int = 64           # mel bands (image height)
    fmin: float = 0.0          # Hz, lowest mel band edge
    fmax: float = 8000.0       # Hz, highest band edge (<= sample_rate / 2)
    power: float = 2.0         # 2: mel of |STFT|², so 10·log10 is dB; 1: of |STFT| (then half-dB units)
    amin: float = 1e-10        # floor of the mel value before the log (digital silence -> -100 dB)
    ref_db: float = 20.0       # dB mapped to +1, fixed. Words peak-normalised to 0.9 (as the corpus
    #                            stores them) peak at 8.0..16.8 dB in their loudest mel bin (32 espeak-ng
    #                            and flite words, 5 voices, measured): 20 dB clips none and leaves 3..12 dB
    #                            of headroom. A full-scale 250 Hz / 1 kHz / 3 kHz sine reads 24 / 24 / 19.
    top_db: float = 80.0       # dB range kept below ref_db; ref_db - top_db (-60 dB) maps to -1
    frames: int = 128          # frames of a fixed-length crop / padded word (image width)

    def __post_init__(self):
        ints = {f.name for f in dataclasses.fields(self) if f.type in ("int", int)}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (f.name in ints and not isinstance(v, int)):
                kind = "an integer" if f.name in ints else "a number"
                raise ConfigError(f"spectrogram.{f.name}: invalid value {v!r}; allowed: {kind}")
        for name in ("sample_rate", "n_fft", "hop", "win", "n_mels", "amin", "top_db", "frames"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"spectrogram.{name}: invalid value {getattr(self, name)!r}; allowed: > 0")
        if self.win > self.n_fft:
            raise ConfigError(f"spectrogram.win: {self.win} is longer than n_fft ({self.n_fft}); allowed: <= n_fft")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"spectrogram.fmax: need 0 <= fmin ({self.fmin}) < fmax ({self.fmax}) <= "
                              f"sample_rate / 2 ({self.sample_rate / 2})")
        if self.power not in (1.0, 2.0):
            raise ConfigError(f"spectrogram.power: invalid value {self.power!r}; allowed: 1 or 2")

    @property
    def floor_db(self) -> float:
        """dB of the floor, mapped to -1."""
        return self.ref_db - self.top_db

    @property
    def step_db(self) -> float:
        """dB between two uint8 levels of a stored spectrogram."""
        return self.top_db / 255.0

    def seconds(self, frames: Optional[int] = None) -> float:
        """Duration covered by ``frames`` centred frames (default ``self.frames``)."""
        return ((self.frames if frames is None else frames) - 1) * self.hop / self.sample_rate

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]], where: str = "spectrogram") -> "SpecSettings":
        """Settings from a JSON/YAML mapping; missing keys take the defaults, an unknown key fails."""
        d = dict(d or {})
        names = [f.name for f in dataclasses.fields(cls)]
        for k in d:
            if k not in names:
                raise ConfigError(f"{where}.{k}: unknown key; allowed: {', '.join(names)}")
        floats = {f.name for f in dataclasses.fields(cls) if f.type in ("float", float)}
        # JSON writes 0.0 as 0.0, but a hand-written YAML may say `fmin: 0`: an int is a valid float
        d = {k: float(v) if k in floats and isinstance(v, int) and not isinstance(v, bool) else v for k, v in d.items()}
        return cls(**d)


def _mel_kwargs(s: SpecSettings) -> Dict[str, Any]:
    return dict(sr=s.sample_rate, n_fft=s.n_fft, n_mels=s.n_mels, fmin=s.fmin, fmax=s.fmax, htk=False, norm="slaney")


def _stft_kwargs(s: SpecSettings) -> Dict[str, Any]:
    return dict(hop_length=s.hop, win_length=s.win, window="hann", center=True)


def n_frames(n_samples: int, s: SpecSettings) -> int:
    """Frames :func:`logmel` makes of ``n_samples`` samples (centred frames)."""
    return 1 + int(n_samples) // s.hop


def _audio(audio) -> np.ndarray:
    a = np.asarray(audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio)
    if a.ndim != 1 or a.size == 0:
        raise GankitError(f"audio of shape {a.shape}: give mono samples (T,), T >= 1")
    if not np.isfinite(a).all():
        raise GankitError("audio contains NaN or infinite samples")
    return a.astype(np.float32, copy=False)


def mel_power(audio, s: SpecSettings = SpecSettings()) -> np.ndarray:
    """Mel spectrogram ``(n_mels, frames)`` of mono ``audio`` (T,) at ``s.sample_rate``, float32,
    in units of |STFT|^power (before the log)."""
    spec = np.abs(librosa.stft(_audio(audio), n_fft=s.n_fft, **_stft_kwargs(s))) ** s.power
    return (librosa.filters.mel(**_mel_kwargs(s)) @ spec).astype(np.float32)


def db_to_unit(db, s: SpecSettings = SpecSettings()) -> np.ndarray:
    """dB -> [-1, 1] (clipped to [ref_db - top_db, ref_db] first)."""
    db = np.clip(np.asarray(db, np.float32), s.floor_db, s.ref_db)
    return ((db - s.floor_db) * (2.0 / s.top_db) - 1.0).astype(np.float32)


def unit_to_db(spec, s: SpecSettings = SpecSettings()) -> np.ndarray:
    """[-1, 1] -> dB (values outside [-1, 1] are clipped)."""
    u = np.clip(np.asarray(spec, np.float32), -1.0, 1.0)
    return ((u + 1.0) * (s.top_db / 2.0) + s.floor_db).astype(np.float32)


def logmel(audio, s: SpecSettings = SpecSettings()) -> np.ndarray:
    """Mono ``audio`` (T,) at ``s.sample_rate`` -> float32 ``(n_mels, 1 + T // hop)`` in [-1, 1]."""
    db = 10.0 * np.log10(np.maximum(mel_power(audio, s), s.amin))
    return db_to_unit(db, s)


def to_audio(spec, s: SpecSettings = SpecSettings(), n_iter: int = 64, seed: int = 0,
             length: Optional[int] = None) -> np.ndarray:
    """Spectrogram ``(n_mels, frames)`` in [-1, 1] -> float32 audio (T,) by Griffin-Lim.

    ``n_iter``: Griffin-Lim iterations (librosa's fast variant, momentum 0.99); ``seed``: the random
    initial phase (same spectrogram and seed -> same samples); ``length``: samples wanted (default
    ``(frames - 1) * hop``, what a centred analysis of that many frames covers).
    """
    spec = _spec2d(spec, s)
    if not (isinstance(n_iter, int) and n_iter >= 1):
        raise GankitError(f"n_iter {n_iter!r}: give a positive number of Griffin-Lim iterations")
    mel = np.power(10.0, unit_to_db(spec, s).astype(np.float64) / 10.0)  # back to |STFT|^power units
    kw = {k: v for k, v in _mel_kwargs(s).items() if k != "n_mels"}  # librosa reads n_mels off the shape
    mag = librosa.feature.inverse.mel_to_stft(mel, power=s.power, **kw)  # (1 + n_fft // 2, frames)
    length = (spec.shape[1] - 1) * s.hop if length is None else int(length)
    y = librosa.griffinlim(mag, n_iter=n_iter, n_fft=s.n_fft, length=length, init="random",
                           random_state=np.random.default_rng(seed), momentum=0.99, **_stft_kwargs(s))
    return y.astype(np.float32)


def _spec2d(spec, s: SpecSettings) -> np.ndarray:
    x = np.asarray(spec.detach().cpu().numpy() if isinstance(spec, torch.Tensor) else spec, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != s.n_mels or x.shape[1] < 1:
        raise GankitError(f"spectrogram of shape {x.shape}: expected (n_mels={s.n_mels}, frames)")
    return x


# -- batches: (N, 1, n_mels, frames), as datasets and networks hold them ----------------------------
def logmel_batch(audios, s: SpecSettings = SpecSettings(), frames: Optional[int] = None,
                 mode: str = "pad") -> torch.Tensor:
    """A list of mono clips -> float32 tensor ``(N, 1, n_mels, frames)`` in [-1, 1], each fitted to
    ``frames`` (default ``s.frames``) by :func:`fit_frames` (centred; ``mode`` as there)."""
    frames = s.frames if frames is None else frames
    out = [fit_frames(logmel(a, s), frames, mode=mode) for a in audios]
    return torch.from_numpy(np.stack(out)[:, None]) if out else torch.zeros(0, 1, s.n_mels, frames)


def to_audio_batch(specs, s: SpecSettings = SpecSettings(), n_iter: int = 64, seed: int = 0) -> np.ndarray:
    """``(N, 1, n_mels, frames)`` in [-1, 1] (tensor or array) -> float32 audio ``(N, (frames - 1) * hop)``;
    item i uses phase seed ``seed + i``."""
    x = np.asarray(specs.detach().cpu().numpy() if isinstance(specs, torch.Tensor) else specs, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 1:
        raise GankitError(f"spectrograms of shape {x.shape}: expected (N, 1, n_mels, frames)")
    out = [to_audio(x[i, 0], s, n_iter=n_iter, seed=seed + i) for i in range(len(x))]
    return np.stack(out) if out else np.zeros((0, (x.shape[3] - 1) * s.hop), np.float32)


# -- storage as uint8 images --------------------------------------------------------------------------
def to_uint8(spec):
    """[-1, 1] -> uint8 0..255 (clipped, rounded), the mapping of gankit's images; array or tensor."""
    if isinstance(spec, torch.Tensor):
        return ((spec.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.round((np.clip(np.asarray(spec, np.float32), -1, 1) + 1) * 127.5).astype(np.uint8)


def from_uint8(img):
    """uint8 0..255 -> float32 [-1, 1] (``x / 127.5 - 1``, as batches hand images to networks)."""
    if isinstance(img, torch.Tensor):
        return img.float() / 127.5 - 1.0
    return (np.asarray(img).astype(np.float32) / 127.5 - 1.0).astype(np.float32)


# -- fixed lengths and chunks -------------------------------------------------------------------------
def fit_frames(spec, frames: int, mode: str = "pad", offset: Optional[int] = None,
               seed: Optional[int] = None) -> np.ndarray:
    """``(n_mels, T)`` -> ``(n_mels, frames)``.

    A word shorter than ``frames`` is centred in silence (-1) in either mode. A longer one:
    ``mode="pad"`` (whole words) refuses it — raise ``frames`` or crop; ``mode="crop"`` keeps
    ``frames`` columns from ``offset`` (given), or from an offset drawn with ``seed``, or centred
    when neither is given.
    """
    x = np.asarray(spec, np.float32)
    if x.ndim != 2:
        raise GankitError(f"spectrogram of shape {x.shape}: expected (n_mels, frames)")
    if mode not in ("pad", "crop"):
        raise GankitError(f"fit_frames mode {mode!r}: give pad or crop")
    if not (isinstance(frames, (int, np.integer)) and frames > 0):
        raise GankitError(f"frames {frames!r}: give a positive integer")
    t = x.shape[1]
    if t <= frames:
        left = (frames - t) // 2
        out = np.full((x.shape[0], frames), SILENCE, np.float32)
        out[:, left:left + t] = x
        return out
    if mode == "pad":
        raise GankitError(f"a word of {t} frames does not fit in frames={frames}: raise frames, "
                          f"or crop (mode='crop')")
    if offset is None:
        offset = (t - frames) // 2 if seed is None else int(np.random.default_rng(seed).integers(0, t - frames + 1))
    if not 0 <= offset <= t - frames:
        raise GankitError(f"crop offset {offset}: allowed 0..{t - frames} for {t} frames into {frames}")
    return x[:, offset:offset + frames].copy()


def n_chunks(total_frames: int, frames: int, hop: int) -> int:
    """Chunks :func:`chunks` makes: enough windows of ``frames``, ``hop`` apart, to cover every frame."""
    return 1 if total_frames <= frames else 1 + math.ceil((total_frames - frames) / hop)


def chunks(spec, frames: int, hop: int) -> np.ndarray:
    """``(n_mels, T)`` -> ``(n, n_mels, frames)``: windows starting at 0, hop, 2·hop, ...; the last one
    padded with silence (-1) past the end. ``0 < hop <= frames``; overlapping chunks (hop < frames) let
    :func:`overlap_add` cross-fade the seams after each chunk is converted separately."""
    x = np.asarray(spec, np.float32)
    if x.ndim != 2:
        raise GankitError(f"spectrogram of shape {x.shape}: expected (n_mels, frames)")
    if not 0 < hop <= frames:
        raise GankitError(f"chunk hop {hop}: allowed 1..frames ({frames})")
    n = n_chunks(x.shape[1], frames, hop)
    padded = np.full((x.shape[0], (n - 1) * hop + frames), SILENCE, np.float32)
    padded[:, :x.shape[1]] = x
    return np.stack([padded[:, i * hop:i * hop + frames] for i in range(n)])


def crossfade_weights(frames: int, hop: int) -> np.ndarray:
    """(frames,) weights of one chunk in :func:`overlap_add`: a linear ramp over the ``frames - hop``
    overlapping columns at each end, 1 between. Strictly positive, so every frame is covered."""
    overlap = frames - hop
    w = np.ones(frames, np.float64)
    if overlap > 0:
        ramp = (np.arange(overlap) + 0.5) / overlap
        w[:overlap] = np.minimum(w[:overlap], ramp)
        w[frames - overlap:] = np.minimum(w[frames - overlap:], ramp[::-1])
    return w


def overlap_add(parts, total_frames: int, hop: int) -> np.ndarray:
    """``(n, n_mels, frames)`` chunks made ``hop`` apart by :func:`chunks` -> ``(n_mels, total_frames)``:
    each frame is the weighted mean of the chunks covering it (:func:`crossfade_weights`), so unchanged
    chunks give back their input exactly and changed ones blend linearly across each overlap."""
    c = np.asarray(parts, np.float64)
    if c.ndim != 3:
        raise GankitError(f"chunks of shape {c.shape}: expected (n, n_mels, frames)")
    n, mels, frames = c.shape
    if n != n_chunks(total_frames, frames, hop):
        raise GankitError(f"{n} chunks of {frames} frames, hop {hop}, do not make {total_frames} frames "
                          f"(expected {n_chunks(total_frames, frames, hop)})")
    w = crossfade_weights(frames, hop)
    out = np.zeros((mels, (n - 1) * hop + frames))
    norm = np.zeros(out.shape[1])
    for i in range(n):
        out[:, i * hop:i * hop + frames] += c[i] * w
        norm[i * hop:i * hop + frames] += w
    return (out / norm)[:, :total_frames].astype(np.float32)
