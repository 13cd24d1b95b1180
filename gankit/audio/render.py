"""Spectrograms a model made, turned into what people use: WAV files and a picture.

Used by ``gankit sample RUN -o FOLDER/`` (generation), ``gankit translate RUN in.wav`` (voice
conversion) and the report's audio players. A run's ``data.audio`` entry (the spectrogram settings,
speakers and class names its dataset had, :mod:`gankit.data.audio`) says how to invert them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from .spectrogram import SpecSettings, to_audio_batch

GRIFFIN_LIM_ITERS = 64   # default Griffin-Lim iterations for written samples (docs/audio.md)


def settings_of(audio_meta: dict) -> SpecSettings:
    """The :class:`SpecSettings` of a run's ``data.audio`` entry."""
    return SpecSettings.from_dict(audio_meta["spectrogram"], where="data.audio.spectrogram")


def for_display(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, n_mels, frames) -> the same, flipped so that low frequencies are at the bottom."""
    return torch.flip(x, dims=[2])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "x"


def write_samples(x: torch.Tensor, labels: Optional[torch.Tensor], audio_meta: dict, out_dir: Path,
                  n_iter: int = GRIFFIN_LIM_ITERS, seed: int = 0) -> List[Path]:
    """Write each spectrogram of ``x`` (N, 1, n_mels, frames) in [-1, 1] as a WAV (Griffin-Lim,
    ``n_iter`` iterations, phase seed ``seed + i``) named ``<i>_<class>.wav``, and all of them as
    ``spectrograms.png`` (low frequencies at the bottom); returns the WAV paths."""
    from ..audio_io import write_wav
    from ..viz.grids import save_image_grid

    s = settings_of(audio_meta)
    classes: Sequence[str] = audio_meta.get("classes") or []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    waves = to_audio_batch(x, s, n_iter=n_iter, seed=seed)
    paths = []
    width = len(str(max(len(x) - 1, 0)))
    for i, w in enumerate(waves):
        name = f"{i:0{width}d}"
        if labels is not None:
            k = int(labels[i])
            name += "_" + _slug(classes[k] if k < len(classes) else k)
        paths.append(write_wav(out_dir / f"{name}.wav", w, s.sample_rate))
    save_image_grid(for_display(x), out_dir / "spectrograms.png", nrow=int(np.ceil(np.sqrt(len(x)))))
    return paths


def convert(translate, audio: np.ndarray, s: SpecSettings, n_iter: int = GRIFFIN_LIM_ITERS, seed: int = 0,
            batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert a whole utterance chunk by chunk: its log-mel cut into ``s.frames``-wide chunks half a
    chunk apart (:func:`~gankit.audio.spectrogram.chunks`), each translated by ``translate`` ((n, 1,
    n_mels, frames) in [-1, 1] -> the same), cross-faded back together
    (:func:`~gankit.audio.spectrogram.overlap_add`) and inverted by Griffin-Lim to exactly
    ``len(audio)`` samples. Returns (audio out, spectrogram in, spectrogram out)."""
    from .spectrogram import chunks, logmel, overlap_add, to_audio

    n = len(audio)
    if n < s.n_fft:  # a few milliseconds: padded with silence to one STFT window, cut back to n at the end
        audio = np.pad(audio, (0, s.n_fft - n))
    spec = logmel(audio, s)                        # (n_mels, T), T = 1 + len(audio) // hop
    hop = max(1, s.frames // 2)
    parts = torch.from_numpy(chunks(spec, s.frames, hop)).unsqueeze(1)   # (n, 1, n_mels, frames)
    out = torch.cat([translate(parts[i:i + batch_size]) for i in range(0, len(parts), batch_size)])
    converted = overlap_add(out[:, 0].float().numpy(), spec.shape[1], hop)
    return to_audio(converted, s, n_iter=n_iter, seed=seed, length=len(audio))[:n], spec, converted


def _audio_tag(audio: np.ndarray, sample_rate: int, label: str) -> str:
    import base64
    import html

    from ..audio_io import wav_bytes

    uri = "data:audio/wav;base64," + base64.b64encode(wav_bytes(audio, sample_rate)).decode("ascii")
    return f'<audio controls preload="auto" src="{uri}" title="{html.escape(label)}"></audio>'


def _spec_img(x: torch.Tensor, label: str) -> str:
    import base64
    import html

    from ..viz.grids import image_grid, png_bytes

    png = png_bytes(image_grid(for_display(x[None]), nrow=1, padding=0), scale=2)
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{html.escape(label)}">'


def listen_section(model, sources: Optional[torch.Tensor] = None, per_class: int = 1, max_items: int = 10,
                   n_iter: int = GRIFFIN_LIM_ITERS, seed: int = 0) -> Optional[tuple[str, str]]:
    """("Listen", HTML) for the report of a speech run (a loaded :class:`gankit.GAN`), or None for
    other runs: each sample's spectrogram beside an ``<audio>`` player of it (a WAV data URI), so the
    page stays one file. Generation: ``per_class`` samples of each class (at most ``max_items``);
    voice conversion: ``sources`` (N, 1, n_mels, frames), held-out utterances of the source speaker
    (the first ``max_items``), before and after."""
    import html

    meta = model.data.get("audio")
    if meta is None:
        return None
    s = settings_of(meta)
    classes = meta.get("classes") or []
    rows = []
    if model.task.name == "generation":
        k = model.num_classes
        labels = torch.arange(k).repeat_interleave(per_class)[:max_items] if k else None
        n = len(labels) if labels is not None else max_items
        x, y = model.sample(n, seed=seed, labels=labels)
        waves = to_audio_batch(x, s, n_iter=n_iter, seed=seed)
        for i in range(n):
            name = classes[int(y[i])] if y is not None and int(y[i]) < len(classes) else f"sample {i}"
            rows.append(f"<tr><td>{html.escape(str(name))}</td><td>{_spec_img(x[i], name)}</td>"
                        f"<td>{_audio_tag(waves[i], s.sample_rate, name)}</td></tr>")
        head = "<tr><th>asked for</th><th>spectrogram</th><th>listen</th></tr>"
        intro = "Samples of each class, inverted to sound by Griffin-Lim"
    else:
        if sources is None:
            raise ValueError("a voice-conversion run's listen section needs the source utterances")
        direction = model.directions()[0]
        x = sources[:max_items]
        out = model.translate(x, direction)
        before = to_audio_batch(x, s, n_iter=n_iter, seed=seed)
        after = to_audio_batch(out, s, n_iter=n_iter, seed=seed)
        pair = meta.get("pair") or ["A", "B"]
        for i in range(len(x)):
            rows.append(f"<tr><td>{_spec_img(x[i], 'source')}</td>"
                        f"<td>{_audio_tag(before[i], s.sample_rate, 'source')}</td>"
                        f"<td>{_spec_img(out[i], 'converted')}</td>"
                        f"<td>{_audio_tag(after[i], s.sample_rate, 'converted')}</td></tr>")
        head = (f"<tr><th colspan=2>{html.escape(str(pair[0]))} (held out)</th>"
                f"<th colspan=2>converted to {html.escape(str(pair[1]))} ({direction})</th></tr>")
        intro = "Held-out utterances of the source speaker and their conversions, inverted to sound by Griffin-Lim"
    body = (f'<p class="muted">{intro} ({n_iter} iterations; {s.sample_rate} Hz; low frequencies at the bottom '
            f'of each spectrogram).</p><table class="listen">{head}{"".join(rows)}</table>')
    return "Listen", body
