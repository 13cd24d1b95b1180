"""Round-trip error and timings of gankit.audio.spectrogram (one thread): the tables of docs/audio.md,
"Spectrograms as images, and back to sound".

    python benchmarks/audio_spectrogram.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import subprocess, tempfile, time
import numpy as np, librosa, soundfile as sf, torch
torch.set_num_threads(1)
from gankit.audio.spectrogram import SpecSettings, logmel, to_audio, to_uint8, from_uint8
from gankit.metrics.mcd import mcd
S, SR = SpecSettings(), 16000

def word(engine, text):
    with tempfile.TemporaryDirectory() as d:
        p = f"{d}/w.wav"
        cmd = ["espeak-ng", "-w", p, text] if engine == "espeak-ng" else ["flite", "-t", text, "-o", p]
        subprocess.run(cmd, check=True, capture_output=True)
        a, r = sf.read(p)
    a = librosa.resample(a, orig_sr=r, target_sr=SR)
    return (a / np.abs(a).max() * 0.9).astype(np.float32)

t = np.arange(SR) / SR
ph = 2 * np.pi * np.cumsum(150 + 100 * t) / SR
chirp = np.sin(np.pi * t) ** 2 * sum(np.sin(k * ph) / k for k in range(1, 6))
sigs = {"harmonic chirp 150-250 Hz": (chirp / np.abs(chirp).max() * 0.9).astype(np.float32)}
for e in ("espeak-ng", "flite"):
    for w in ("zero", "three", "seven", "nine"):
        sigs[f"{e} '{w}'"] = word(e, w)
print("| signal | frames | MAE float (dB) | MAE uint8 (dB) | MAE, bins above -20 dB (dB) | MCD vs original (dB) |")
print("|---|---|---|---|---|---|")
tot = []
for name, a in sigs.items():
    x = logmel(a, S); q = from_uint8(to_uint8(x))
    y = to_audio(x, S, n_iter=64, seed=0, length=len(a)); yq = to_audio(q, S, n_iter=64, seed=0, length=len(a))
    bx, bq = logmel(y, S), logmel(yq, S)
    act = x > 0.0  # above ref_db - 40 dB = -20 dB
    e, eq, ea = np.abs(bx - x).mean(), np.abs(bq - x).mean(), np.abs(bx - x)[act].mean()
    tot.append((e, eq))
    print(f"| {name} | {x.shape[1]} | {e:.4f} ({e*40:.2f}) | {eq:.4f} ({eq*40:.2f}) | {ea*40:.2f} | {mcd(a, y):.1f} |")
print("mean over words:", np.mean(tot[1:], 0), "uint8 quantisation alone: max", np.abs(from_uint8(to_uint8(logmel(sigs["espeak-ng 'seven'"], S))) - logmel(sigs["espeak-ng 'seven'"], S)).max())
one = np.pad(sigs["espeak-ng 'seven'"], (0, SR))[:SR]
x = logmel(one, S)
def tm(f, n=7):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return np.median(ts)
print(f"logmel, 1 s: {tm(lambda: logmel(one, S), 21)*1e3:.2f} ms")
for it in (16, 32, 64, 128):
    print(f"to_audio n_iter={it}, 1 s (126 frames): {tm(lambda: to_audio(x, S, n_iter=it))*1e3:.0f} ms")
es, fl = sigs["espeak-ng 'seven'"], sigs["flite 'seven'"]
print(f"mcd, two ~0.7 s words: {tm(lambda: mcd(es, fl))*1e3:.0f} ms")
print("espeak seven vs flite seven MCD", mcd(sigs["espeak-ng 'seven'"], sigs["flite 'seven'"]),
      "| seven vs three (espeak)", mcd(sigs["espeak-ng 'seven'"], sigs["espeak-ng 'three'"]),
      "| seven vs 0.8x stretched", mcd(sigs["espeak-ng 'seven'"], librosa.effects.time_stretch(sigs["espeak-ng 'seven'"], rate=0.8)))
