"""Mel-cepstral distortion: cepstra against a hand-written DCT, the value against a hand computation,
DTW alignment (a time-stretched copy is near, another word far), symmetry."""
import math
import subprocess

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from gankit.audio.spectrogram import logmel, to_audio
from gankit.errors import GankitError
from gankit.metrics.mcd import (MCD_CONST, CepstraSettings, dtw_path, frame_distortion, mcd, mcd_from_cepstra,
                                mel_cepstra)

SR = 16000


def vowel(seconds=0.6, f0=140.0, formants=(700, 1200), seed=0):
    """A crude vowel: a pulse train at f0 through two resonances, faded in and out, peak 0.9."""
    n = int(seconds * SR)
    src = np.zeros(n)
    src[::int(SR / f0)] = 1.0
    src += 0.01 * np.random.default_rng(seed).standard_normal(n)
    y = src
    r = math.exp(-math.pi * 100 / SR)  # two-pole resonators, bandwidth 100 Hz
    for f in formants:
        y = scipy.signal.lfilter([1.0], [1.0, -2 * r * math.cos(2 * math.pi * f / SR), r * r], y)
    y *= np.hanning(n) ** 0.5
    return y / np.abs(y).max() * 0.9


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """espeak-ng saying "seven" and "three", at 16 kHz, peak 0.9."""
    out = {}
    for w in ("seven", "three"):
        path = tmp_path_factory.mktemp("espeak") / f"{w}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), w], check=True, capture_output=True)
        a, rate = sf.read(str(path))
        a = librosa.resample(a, orig_sr=rate, target_sr=SR)
        out[w] = a / np.abs(a).max() * 0.9
    return out


def test_identical_audio_has_zero_mcd():
    a = vowel()
    assert mcd(a, a) == 0.0
    c = mel_cepstra(a)
    assert mcd_from_cepstra(c, c) == 0.0 and mcd_from_cepstra(c, c, align=False) == 0.0


def test_value_against_a_hand_computation():
    """Two frames, K = 2, DTW keeps the diagonal (cost 1 + 2 against 4 for any other path)."""
    a = np.array([[0.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 1.0], [1.0, 3.0]])
    # frame 0: Σ (Δc)² = 1; frame 1: 0² + 2² = 4
    expected = (10 / math.log(10)) * (math.sqrt(2 * 1) + math.sqrt(2 * 4)) / 2
    assert MCD_CONST == pytest.approx(4.342944819, abs=1e-9)
    np.testing.assert_array_equal(dtw_path(a, b), [[0, 0], [1, 1]])
    assert mcd_from_cepstra(a, b) == pytest.approx(expected, rel=1e-12)
    assert mcd_from_cepstra(a, b, align=False) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(frame_distortion(a, b), MCD_CONST * np.sqrt([2.0, 8.0]))


def test_dtw_absorbs_a_repeated_frame():
    a = np.array([[0.0, 0.0], [1.0, 1.0], [3.0, -1.0]])
    b = a[[0, 1, 1, 1, 2]]  # the middle frame held three times as long
    assert mcd_from_cepstra(a, b) == 0.0
    with pytest.raises(GankitError, match=r"align=False needs as many frames"):
        mcd_from_cepstra(a, b, align=False)
    with pytest.raises(GankitError, match=r"same K"):
        mcd_from_cepstra(a, b[:, :1])


def test_cepstra_are_an_orthonormal_dct_of_the_log_mel_spectrum():
    """c1..cK against the DCT-II written out, c_k = sqrt(2/M) Σ_m ln S_m cos(π k (m + ½) / M), on the mel
    power of the same settings floored 60 dB below its maximum, without trimming."""
    s = CepstraSettings(trim_db=None)
    a = vowel(0.3)
    mel = librosa.feature.melspectrogram(y=a, sr=SR, n_fft=s.n_fft, hop_length=s.hop, win_length=s.win,
                                         n_mels=s.n_mels, power=2.0)  # (M, frames)
    m = np.arange(s.n_mels)
    k = np.arange(1, s.n_ceps + 1)[:, None]
    basis = math.sqrt(2 / s.n_mels) * np.cos(np.pi * k * (m + 0.5) / s.n_mels)  # (K, M)
    expected = (basis @ np.log(np.maximum(mel, mel.max() * 1e-6))).T  # (frames, K); floor 60 dB down
    c = mel_cepstra(a, s)
    assert c.shape == (1 + len(a) // s.hop, 13)
    np.testing.assert_allclose(c, expected, rtol=1e-9, atol=1e-9)


def test_loudness_alone_costs_nothing():
    """A gain scales the mel power, adding a constant to its log: only c0, which is left out, moves
    (the floor moves with the gain, being relative to the loudest bin)."""
    a = vowel()
    assert mcd(a, 0.25 * a) == pytest.approx(0.0, abs=1e-6)
    assert mcd(a, vowel(formants=(300, 2300))) > 10  # another vowel does cost


def test_time_stretch_is_near_and_another_word_far(words):
    """Measured (espeak-ng, default settings): "seven" against itself 0.8x slower 35 dB, against "three"
    109 dB. Without DTW the stretched copy could not even be compared frame by frame."""
    seven, three = words["seven"], words["three"]
    slower = librosa.effects.time_stretch(seven, rate=0.8)
    near, far = mcd(seven, slower), mcd(seven, three)
    assert 0 < near < 0.5 * far


def test_dtw_beats_a_linear_alignment_on_a_stretched_vowel_sequence():
    """Two vowels, the first held longer in the copy: DTW aligns vowel with vowel, a linear
    resampling of the frame indices does not."""
    a = np.concatenate([vowel(0.3, formants=(700, 1200)), vowel(0.3, formants=(300, 2300))])
    b = np.concatenate([vowel(0.6, formants=(700, 1200), seed=1), vowel(0.2, formants=(300, 2300), seed=1)])
    ca, cb = mel_cepstra(a), mel_cepstra(b)
    linear = np.round(np.linspace(0, len(cb) - 1, len(ca))).astype(int)
    assert mcd_from_cepstra(ca, cb) < 0.5 * mcd_from_cepstra(ca, cb[linear], align=False)


def test_spectrogram_round_trip_is_near_even_band_limited(words):
    """A word against its own log-mel -> Griffin-Lim round trip, full band and band-limited to 4 kHz (as
    flite's 8 kHz voices are): measured 13 and 14 dB, against another word 109. With a floor far below
    the utterance (floor_db=150) the empty 4-8 kHz bands, at Griffin-Lim's noise floor after the round
    trip, decide the value: 241 dB."""
    seven, three = words["seven"], words["three"]
    band = librosa.resample(librosa.resample(seven, orig_sr=SR, target_sr=8000), orig_sr=8000, target_sr=SR)
    far = mcd(seven, three)
    for a in (seven, band):
        back = to_audio(logmel(a.astype(np.float32)), n_iter=32, length=len(a))
        assert mcd(a, back) < 0.25 * far
    assert mcd(band, back, CepstraSettings(floor_db=150.0)) > far


def test_symmetric(words):
    a, b = words["seven"], librosa.effects.time_stretch(words["three"], rate=1.2)
    assert mcd(a, b) == pytest.approx(mcd(b, a), rel=1e-9)
    ca, cb = mel_cepstra(vowel()), mel_cepstra(vowel(0.5, formants=(500, 1500)))
    assert mcd_from_cepstra(ca, cb) == pytest.approx(mcd_from_cepstra(cb, ca), rel=1e-9)


def test_bad_input():
    with pytest.raises(GankitError, match=r"finite mono samples"):
        mel_cepstra(np.zeros((2, 10)))
    with pytest.raises(GankitError, match=r"n_ceps 40: allowed 1\.\.n_mels - 1 \(39\)"):
        mel_cepstra(vowel(0.1), CepstraSettings(n_ceps=40))
    with pytest.raises(GankitError, match=r"floor_db 0"):
        mel_cepstra(vowel(0.1), CepstraSettings(floor_db=0))
    assert np.isfinite(mcd(np.zeros(1600), vowel()))  # digital silence has a finite log
