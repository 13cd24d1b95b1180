"""Mel-cepstral distortion (MCD) between two utterances of the same text, frames aligned by DTW.

Stages, like the other metrics: audio -> :func:`mel_cepstra` (T, K) -> :func:`mcd_from_cepstra` -> dB.

* cepstra: c = DCT-II (orthonormal, ``scipy.fft.dct(norm="ortho")``) of the natural log of the mel
  power spectrum (librosa, settings :class:`CepstraSettings`), per frame; coefficients 1..K kept
  (K = 13), c0 — the frame's energy — left out as usual. Before the log the mel power is floored
  ``floor_db`` (60) dB below the utterance's loudest mel bin: bands that are empty in one utterance
  (an 8 kHz voice resampled to 16 kHz has nothing above 4 kHz) and hold Griffin-Lim's noise floor in
  the other would otherwise dominate the distance with differences no one hears (measured: flite
  words against their own spectrogram round trip 107-125 dB with an absolute 1e-10 floor, 8-10 dB
  with this one). A relative floor also makes the value independent of gain: loudness alone costs
  nothing.
* alignment: dynamic time warping on those cepstra (``librosa.sequence.dtw``, Euclidean frame
  distance, steps (1,1), (1,0), (0,1) with equal weights), so a slower or faster utterance of the same
  words is compared sound with sound. The cost is symmetric in its arguments.
* value: the mean over the aligned path of (10 / ln 10) · sqrt(2 · Σ_k (c_k − c'_k)²), in dB
  (Kubichek 1993's constant, as in voice-conversion papers).

This is MCD on mel-frequency cepstra from a mel filterbank (MFCC-like), not on the mel-generalised
cepstra of SPTK (``mcep``, all-pass warping α ≈ 0.42 at 16 kHz) that most papers report: absolute
values differ from theirs, so compare MCDs within gankit only. They are also on a larger scale: a
cepstrum of log *amplitude* c_m (log|H(ω)| = c0 + 2 Σ c_m cos ωm, SPTK's convention) appears here,
as the orthonormal DCT of log *power* over M bands, as about 2·sqrt(2M)·c_m (≈ 18 c_m for M = 40).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import librosa
import numpy as np
import scipy.fft
import torch

from ..errors import GankitError

MCD_CONST = 10.0 / math.log(10.0)  # dB per neper; with sqrt(2·Σ), Kubichek (1993)
AMIN = 1e-10  # mel power of digital silence, so an all-zero clip still has a finite log


@dataclass(frozen=True)
class CepstraSettings:
    """Analysis behind :func:`mel_cepstra`; defaults suit 16 kHz speech."""

    sample_rate: int = 16000   # Hz
    n_fft: int = 512           # FFT size, samples (32 ms at 16 kHz)
    hop: int = 80              # samples between frames (5 ms at 16 kHz, usual for MCD)
    win: int = 400             # Hann window, samples (25 ms)
    n_mels: int = 40           # mel bands (librosa Slaney mel scale and normalisation), 0..sample_rate/2
    n_ceps: int = 13           # K: coefficients c1..cK kept (c0 dropped)
    floor_db: float = 60.0     # mel power floored this many dB below the utterance's loudest mel bin
    trim_db: Optional[float] = 40.0  # drop leading/trailing frames more than this many dB below the
    #                                   utterance's peak (librosa.effects.trim) before analysis; None: keep


def mel_cepstra(audio, s: CepstraSettings = CepstraSettings()) -> np.ndarray:
    """Mono ``audio`` (T,) at ``s.sample_rate`` -> mel cepstra (frames, K), float64, c1..cK."""
    a = np.asarray(audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.isfinite(a).all():
        raise GankitError(f"audio of shape {a.shape}: give finite mono samples (T,), T >= 1")
    if not 1 <= s.n_ceps < s.n_mels:
        raise GankitError(f"n_ceps {s.n_ceps}: allowed 1..n_mels - 1 ({s.n_mels - 1})")
    if not s.floor_db > 0:
        raise GankitError(f"floor_db {s.floor_db}: give a positive number of dB")
    if s.trim_db is not None and np.any(a != 0):
        a, _ = librosa.effects.trim(a, top_db=s.trim_db, frame_length=s.win, hop_length=s.hop)
    mel = librosa.feature.melspectrogram(y=a, sr=s.sample_rate, n_fft=s.n_fft, hop_length=s.hop, win_length=s.win,
                                         window="hann", center=True, power=2.0, n_mels=s.n_mels,
                                         fmin=0.0, fmax=s.sample_rate / 2)  # (n_mels, frames)
    floor = max(float(mel.max()), AMIN) * 10.0 ** (-s.floor_db / 10.0)
    c = scipy.fft.dct(np.log(np.maximum(mel, floor)), type=2, norm="ortho", axis=0)  # (n_mels, frames)
    return c[1:s.n_ceps + 1].T.copy()


def frame_distortion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, K) and (N, K) paired frames -> (N,) MCD of each pair, dB."""
    return MCD_CONST * np.sqrt(2.0 * np.sum((a - b) ** 2, axis=-1))


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Ta, K), (Tb, K) -> the DTW path (L, 2) of frame index pairs (i into a, j into b), in time order."""
    _, wp = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    return wp[::-1].copy()


def mcd_from_cepstra(a, b, align: bool = True) -> float:
    """MCD in dB between cepstra ``a`` (Ta, K) and ``b`` (Tb, K): the mean frame distortion over the DTW
    path (``align=True``) or over frames paired in order (``align=False``, Ta == Tb required)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or 0 in a.shape or 0 in b.shape:
        raise GankitError(f"cepstra of shapes {a.shape} and {b.shape}: expected (frames, K) with the same K")
    if align:
        path = dtw_path(a, b)
        a, b = a[path[:, 0]], b[path[:, 1]]
    elif len(a) != len(b):
        raise GankitError(f"align=False needs as many frames on both sides, got {len(a)} and {len(b)}")
    return float(frame_distortion(a, b).mean())


def mcd(audio_a, audio_b, s: CepstraSettings = CepstraSettings()) -> float:
    """MCD in dB between two mono utterances at ``s.sample_rate`` (same text, e.g. converted speech
    against the real target speaker), frames aligned by DTW."""
    return mcd_from_cepstra(mel_cepstra(audio_a, s), mel_cepstra(audio_b, s))


def settings_dict(s: CepstraSettings = CepstraSettings()) -> dict:
    """The settings as a JSON-ready dict, to store beside an MCD value."""
    return dataclasses.asdict(s)
