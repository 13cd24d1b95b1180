"""Log-mel spectrograms: settings, shapes, fixed lengths and chunks, uint8 storage, and the
spectrogram -> Griffin-Lim -> spectrogram round trip within measured bounds."""
import json
import subprocess

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from gankit.audio.spectrogram import (SpecSettings, chunks, crossfade_weights, fit_frames, from_uint8, logmel,
                                      logmel_batch, n_chunks, n_frames, overlap_add, to_audio, to_audio_batch,
                                      to_uint8, unit_to_db)
from gankit.data.base import to_model_range
from gankit.errors import ConfigError, GankitError

S = SpecSettings()
SR = S.sample_rate


def harmonic_chirp(seconds=1.0, peak=0.9):
    """Five harmonics of a pitch gliding 150 -> 250 Hz under a sin² envelope, peak-normalised."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(150 + 100 * t / seconds) / SR
    a = np.sin(np.pi * t / seconds) ** 2 * sum(np.sin(k * phase) / k for k in range(1, 6))
    return (a / np.abs(a).max() * peak).astype(np.float32)


@pytest.fixture(scope="module")
def seven(tmp_path_factory):
    """espeak-ng saying "seven", at 16 kHz, peak 0.9 (as the corpus stores words)."""
    path = tmp_path_factory.mktemp("espeak") / "seven.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "seven"], check=True, capture_output=True)
    a, rate = sf.read(str(path), dtype="float32")
    a = librosa.resample(a, orig_sr=rate, target_sr=SR)
    return (a / np.abs(a).max() * 0.9).astype(np.float32)


def mae(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).mean())


# -- settings -----------------------------------------------------------------------------------------
def test_settings_round_trip_through_json_and_reject_unknown_keys():
    s = SpecSettings(n_mels=32, hop=256, fmax=4000.0)
    assert SpecSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert SpecSettings.from_dict({}) == S and SpecSettings.from_dict({"fmin": 0}) == S  # YAML int for a float
    with pytest.raises(ConfigError, match=r"spectrogram\.n_mel: unknown key; allowed: sample_rate"):
        SpecSettings.from_dict({"n_mel": 64})
    with pytest.raises(ConfigError, match=r"spectrogram\.hop: invalid value 0"):
        SpecSettings.from_dict({"hop": 0})
    with pytest.raises(ConfigError, match=r"spectrogram\.n_mels: invalid value 64\.0; allowed: an integer"):
        SpecSettings.from_dict({"n_mels": 64.0})
    with pytest.raises(ConfigError, match=r"spectrogram\.fmax"):
        SpecSettings(fmax=9000.0)
    with pytest.raises(ConfigError, match=r"spectrogram\.win"):
        SpecSettings(win=1024)
    assert S.seconds() == pytest.approx(127 * 128 / 16000) and S.step_db == pytest.approx(80 / 255)


# -- analysis -----------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")  # librosa, on clips shorter than a window
@pytest.mark.parametrize("n", [1, 127, 128, 8000, 16000, 16257])
def test_logmel_shape_range_and_frames(n):
    a = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    x = logmel(a, S)
    assert x.dtype == np.float32 and x.shape == (64, n_frames(n, S)) == (64, 1 + n // 128)
    assert -1 <= x.min() and x.max() <= 1


def test_fixed_reference_keeps_loudness():
    """dB are relative to ref_db, not the clip's maximum: 20 dB quieter reads 0.5 lower (80 dB = 2 units)
    wherever neither copy is clipped; digital silence is the floor, -1."""
    a = harmonic_chirp()
    loud, quiet = logmel(a, S), logmel(a * 0.1, S)
    keep = (quiet > -0.99) & (loud < 0.99)  # the chirp's loudest band, at 150-250 Hz, reaches ref_db
    assert keep.mean() > 0.3
    np.testing.assert_allclose(loud[keep] - quiet[keep], 0.5, atol=1e-4)
    assert (logmel(np.zeros(4000, np.float32), S) == -1).all()


def test_a_voice_fits_under_the_reference(seven):
    """A word peak-normalised to 0.9 stays below ref_db, using the range (measured loudest band of 32
    espeak-ng/flite words, 5 voices: 8.0..16.8 dB, i.e. 0.70..0.92 on [-1, 1])."""
    x = logmel(seven, S)
    assert 0.6 < x.max() < 1.0 and x.min() == -1


def test_logmel_refuses_bad_audio():
    with pytest.raises(GankitError, match=r"mono samples"):
        logmel(np.zeros((2, 100)), S)
    with pytest.raises(GankitError, match=r"NaN"):
        logmel(np.array([0.0, np.nan]), S)
    with pytest.raises(GankitError, match=r"expected \(n_mels=64, frames\)"):
        to_audio(np.zeros((32, 10)), S)


# -- round trips --------------------------------------------------------------------------------------
# Mean absolute error of logmel(to_audio(x)) against x, on the [-1, 1] scale (x 40 for dB), 64
# iterations, seed 0, measured: harmonic chirp 0.050 (2.0 dB), espeak-ng "seven" 0.025 (1.0 dB).
# Most of it is the mel -> linear-frequency inversion (least squares through the 64-band filterbank:
# 0.012 with the true phase), not Griffin-Lim (0.004 from the true |STFT|). Bounds: measured + ~40%.
# Measured against mismatched settings in to_audio: ref_db + 10 dB 0.28, power 1 0.16, hop 256 0.18.
ROUND_TRIP = {"chirp": 0.07, "seven": 0.035}


def _round_trip(a):
    x = logmel(a, S)
    return x, logmel(to_audio(x, S, n_iter=64, seed=0, length=len(a)), S)


def test_round_trip_synthetic():
    a = harmonic_chirp()
    x, back = _round_trip(a)
    assert mae(x, back) < ROUND_TRIP["chirp"]
    # fewer iterations do worse: the bound measures Griffin-Lim, not the analysis alone
    one = logmel(to_audio(x, S, n_iter=1, seed=0, length=len(a)), S)
    assert mae(x, one) > mae(x, back) + 0.01


def test_round_trip_espeak_word(seven):
    x, back = _round_trip(seven)
    assert mae(x, back) < ROUND_TRIP["seven"]
    active = x > -0.5  # within 40 dB of ref_db: the word itself, not its silence
    assert active.mean() > 0.1 and mae(x[active], back[active]) < 2 * ROUND_TRIP["seven"]


def test_quantised_round_trip_costs_little(seven):
    """uint8 storage: each value moves at most half a step (1/255 on [-1, 1], 0.16 dB for 80 dB);
    the round trip from the stored image is within 0.003 of the one from the float spectrogram
    (measured: 0.0262 vs 0.0250 on "seven")."""
    x = logmel(seven, S)
    img = to_uint8(x)
    q = from_uint8(img)
    assert img.dtype == np.uint8 and q.dtype == np.float32
    assert np.abs(q - x).max() <= 1 / 255 + 1e-6
    assert np.abs(unit_to_db(q, S) - unit_to_db(x, S)).max() <= S.step_db / 2 + 1e-4
    via_q = logmel(to_audio(q, S, length=len(seven)), S)
    via_x = logmel(to_audio(x, S, length=len(seven)), S)
    assert abs(mae(x, via_q) - mae(x, via_x)) < 0.003


def test_uint8_mapping_is_gankits_image_mapping():
    img = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    assert torch.equal(from_uint8(img), to_model_range(img.clone()))
    np.testing.assert_array_equal(from_uint8(img.numpy()), to_model_range(img.clone()).numpy())
    assert torch.equal(to_uint8(from_uint8(img)), img)
    np.testing.assert_array_equal(to_uint8(from_uint8(img.numpy())), img.numpy())
    assert to_uint8(np.array([-3.0, 3.0])).tolist() == [0, 255]


def test_griffin_lim_is_deterministic_under_its_seed():
    x = logmel(harmonic_chirp(0.3), S)
    a, b, c = (to_audio(x, S, n_iter=8, seed=k) for k in (3, 3, 4))
    assert a.dtype == np.float32 and a.shape == ((x.shape[1] - 1) * S.hop,)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_batches_have_image_shape():
    audios = [harmonic_chirp(s) for s in (0.4, 1.0, 0.7)]
    xb = logmel_batch(audios, S)
    assert xb.dtype == torch.float32 and xb.shape == (3, 1, 64, 128)
    np.testing.assert_array_equal(xb[0, 0].numpy(), fit_frames(logmel(audios[0], S), 128))
    y = to_audio_batch(xb[:2, :, :, :16], S, n_iter=4, seed=5)
    assert y.shape == (2, 15 * 128) and y.dtype == np.float32
    np.testing.assert_array_equal(y[1], to_audio(xb[1, 0, :, :16], S, n_iter=4, seed=6))
    with pytest.raises(GankitError, match=r"does not fit in frames=128"):
        logmel_batch([harmonic_chirp(1.2)], S)
    assert logmel_batch([harmonic_chirp(1.2)], S, mode="crop").shape == (1, 1, 64, 128)


# -- fixed lengths and chunks -------------------------------------------------------------------------
@pytest.mark.parametrize("t", [1, 50, 127, 128, 129, 300])
def test_fit_frames_shapes(t):
    x = np.linspace(-0.5, 0.5, 64 * t, dtype=np.float32).reshape(64, t)
    for mode in ("pad", "crop"):
        if t > 128 and mode == "pad":
            with pytest.raises(GankitError, match=f"a word of {t} frames does not fit in frames=128"):
                fit_frames(x, 128, mode)
            continue
        y = fit_frames(x, 128, mode)
        assert y.shape == (64, 128) and y.dtype == np.float32
        if t <= 128:  # centred in silence
            left = (128 - t) // 2
            np.testing.assert_array_equal(y[:, left:left + t], x)
            assert (y[:, :left] == -1).all() and (y[:, left + t:] == -1).all()
        else:  # centre crop
            np.testing.assert_array_equal(y, x[:, (t - 128) // 2:(t - 128) // 2 + 128])


def test_fit_frames_crop_offsets():
    x = np.tile(np.arange(300, dtype=np.float32), (4, 1))
    assert fit_frames(x, 100, "crop", offset=7)[0, 0] == 7
    assert fit_frames(x, 100, "crop", offset=200)[0, -1] == 299
    a, b = fit_frames(x, 100, "crop", seed=1), fit_frames(x, 100, "crop", seed=1)
    np.testing.assert_array_equal(a, b)
    starts = {fit_frames(x, 100, "crop", seed=k)[0, 0] for k in range(10)}
    assert len(starts) > 5 and all(0 <= s <= 200 for s in starts)
    with pytest.raises(GankitError, match=r"crop offset 201: allowed 0\.\.200"):
        fit_frames(x, 100, "crop", offset=201)
    with pytest.raises(GankitError, match=r"give pad or crop"):
        fit_frames(x, 100, "stretch")


@pytest.mark.parametrize("total,frames,hop", [(300, 128, 64), (128, 128, 64), (50, 128, 96), (1000, 128, 128),
                                              (129, 128, 1), (777, 64, 40)])
def test_chunks_then_overlap_add_gives_back_the_input(total, frames, hop):
    x = np.random.default_rng(total).uniform(-1, 1, (8, total)).astype(np.float32)
    c = chunks(x, frames, hop)
    assert c.shape == (n_chunks(total, frames, hop), 8, frames)
    np.testing.assert_allclose(overlap_add(c, total, hop), x, atol=1e-6)
    covered = (c.shape[0] - 1) * hop + frames
    assert covered >= total and covered - hop < total or c.shape[0] == 1


def test_overlap_add_cross_fades_changed_chunks():
    """Chunk i set to the constant i: across an overlap the result ramps linearly from i to i + 1."""
    frames, hop, total = 8, 4, 16
    c = chunks(np.zeros((1, total)), frames, hop) * 0 + np.arange(3, dtype=np.float32)[:, None, None]
    y = overlap_add(c, total, hop)[0]
    np.testing.assert_allclose(y[:4], 0)  # only the first chunk covers these frames
    np.testing.assert_allclose(y[12:], 2)  # only the last
    np.testing.assert_allclose(y[4:8], [0.125, 0.375, 0.625, 0.875], atol=1e-6)
    np.testing.assert_allclose(y[8:12], [1.125, 1.375, 1.625, 1.875], atol=1e-6)
    assert (crossfade_weights(frames, hop) > 0).all()
    with pytest.raises(GankitError, match=r"expected 3\)"):
        overlap_add(c[:2], total, hop)
