"""Round-trip error and timings of gankit.audio.spectrogram (one thread): the tables of docs/audio.md,
"Spectrograms as images, and back to sound".

For a harmonic chirp and four words from each synthesiser (espeak-ng, flite) it prints the
log-mel round trip's error through Griffin-Lim (float and uint8 spectrograms) and the MCD of the
resynthesised audio, then timings. Every row's numbers go to ``--json`` (default
benchmarks/results/audio/spectrogram.json; ``--json ''`` writes none).

    python benchmarks/audio_spectrogram.py
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_JSON = Path("benchmarks/results/audio/spectrogram.json")


def word(engine, text, sr):
    """One spoken word from ``engine`` at ``sr`` Hz, peak 0.9."""
    import librosa
    import numpy as np
    import soundfile as sf

    with tempfile.TemporaryDirectory() as d:
        p = f"{d}/w.wav"
        cmd = ["espeak-ng", "-w", p, text] if engine == "espeak-ng" else ["flite", "-t", text, "-o", p]
        subprocess.run(cmd, check=True, capture_output=True)
        a, r = sf.read(p)
    a = librosa.resample(a, orig_sr=r, target_sr=sr)
    return (a / np.abs(a).max() * 0.9).astype(np.float32)


def tm(f, n=7):
    """Median seconds of ``n`` calls of ``f``."""
    import numpy as np

    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=str, default=str(DEFAULT_JSON),
                    help="write every row and timing here (default %(default)s; '' for none)")
    args = ap.parse_args(argv)

    import librosa
    import numpy as np
    import torch

    from gankit.audio.spectrogram import SpecSettings, from_uint8, logmel, to_audio, to_uint8
    from gankit.metrics.mcd import mcd

    torch.set_num_threads(1)
    S, SR = SpecSettings(), 16000
    t = np.arange(SR) / SR
    ph = 2 * np.pi * np.cumsum(150 + 100 * t) / SR
    chirp = np.sin(np.pi * t) ** 2 * sum(np.sin(k * ph) / k for k in range(1, 6))
    sigs = {"harmonic chirp 150-250 Hz": (chirp / np.abs(chirp).max() * 0.9).astype(np.float32)}
    for e in ("espeak-ng", "flite"):
        for w in ("zero", "three", "seven", "nine"):
            sigs[f"{e} '{w}'"] = word(e, w, SR)
    print("| signal | frames | MAE float (dB) | MAE uint8 (dB) | MAE, bins above -20 dB (dB) | MCD vs original (dB) |")
    print("|---|---|---|---|---|---|")
    rows, tot = [], []
    for name, a in sigs.items():
        x = logmel(a, S)
        q = from_uint8(to_uint8(x))
        y = to_audio(x, S, n_iter=64, seed=0, length=len(a))
        yq = to_audio(q, S, n_iter=64, seed=0, length=len(a))
        bx, bq = logmel(y, S), logmel(yq, S)
        act = x > 0.0  # above ref_db - 40 dB = -20 dB
        e, eq, ea = np.abs(bx - x).mean(), np.abs(bq - x).mean(), np.abs(bx - x)[act].mean()
        tot.append((e, eq))
        m = mcd(a, y)
        rows.append({"signal": name, "frames": int(x.shape[1]), "mae": float(e), "mae_uint8": float(eq),
                     "mae_active_db": float(ea * 40), "mcd_db": float(m)})
        print(f"| {name} | {x.shape[1]} | {e:.4f} ({e*40:.2f}) | {eq:.4f} ({eq*40:.2f}) | {ea*40:.2f} | {m:.1f} |")
    seven = sigs["espeak-ng 'seven'"]
    quant = float(np.abs(from_uint8(to_uint8(logmel(seven, S))) - logmel(seven, S)).max())
    print("mean over words:", np.mean(tot[1:], 0), "uint8 quantisation alone: max", quant)
    one = np.pad(seven, (0, SR))[:SR]
    x = logmel(one, S)
    timings = {"logmel_1s_ms": tm(lambda: logmel(one, S), 21) * 1e3}
    print(f"logmel, 1 s: {timings['logmel_1s_ms']:.2f} ms")
    for it in (16, 32, 64, 128):
        timings[f"to_audio_n_iter{it}_1s_ms"] = tm(lambda: to_audio(x, S, n_iter=it)) * 1e3
        print(f"to_audio n_iter={it}, 1 s (126 frames): {timings[f'to_audio_n_iter{it}_1s_ms']:.0f} ms")
    fl = sigs["flite 'seven'"]
    timings["mcd_two_words_ms"] = tm(lambda: mcd(seven, fl)) * 1e3
    print(f"mcd, two ~0.7 s words: {timings['mcd_two_words_ms']:.0f} ms")
    pairs = {"espeak seven vs flite seven": mcd(seven, fl),
             "seven vs three (espeak)": mcd(seven, sigs["espeak-ng 'three'"]),
             "seven vs 0.8x stretched": mcd(seven, librosa.effects.time_stretch(seven, rate=0.8))}
    print(" | ".join(f"{k} MCD {v}" for k, v in pairs.items()))
    if args.json:
        from gankit.utils import atomic_write_text

        mean = np.mean(tot[1:], 0)
        atomic_write_text(Path(args.json), json.dumps({
            "command": "python benchmarks/audio_spectrogram.py", "torch_threads": 1, "n_iter": 64,
            "load": __import__("os").getloadavg()[0],
            "rows": rows, "mean_over_words": {"mae": float(mean[0]), "mae_uint8": float(mean[1])},
            "uint8_quantisation_max": quant, "timings": timings,
            "mcd_pairs_db": {k: float(v) for k, v in pairs.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
