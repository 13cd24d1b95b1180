"""Speech as data: log-mel spectrograms of whole spoken words, held like images (docs/audio.md).

Registered sources (``data.root`` a corpus made by ``gankit data make spoken-digits DIR``, or any
folder of WAV files with one sub-folder per speaker; ``null`` = the default corpus in gankit's cache,
built there from the speech synthesisers the first time it is asked for, about a minute):

``spoken-digits``  generation: one spectrogram per utterance, labelled by its digit (or speaker).
``voices``         unpaired translation between two speakers' utterances (voice conversion), the
                   digit of each utterance kept as a label for scoring only.

A spectrogram is stored as uint8 (N, 1, n_mels, frames) — the linear image mapping of its [-1, 1]
dB scale, :mod:`gankit.audio.spectrogram` — so every image tool (grids, FID on the domain classifier,
the health monitor, export) works on it unchanged; batches hand it to networks as float32 in
[-1, 1]. Each word is centred in ``frames`` columns of silence (a longer one is cut to its centre).

``data.options`` (unknown keys fail):

``spectrogram``  :class:`~gankit.audio.spectrogram.SpecSettings` overrides ({} = its defaults: 16 kHz,
                 64 mel bands x 128 frames of 8 ms).
``label``        spoken-digits: what ``y`` is, ``digit`` (default) or ``speaker``.
``speakers``     spoken-digits: the speakers to keep (default all); voices: exactly two, [A, B]
                 (default: the corpus's first two flite voices, CMU ARCTIC's slt and rms).

Split: held-out takes — in a made corpus take % 5 == 4 (every speaker says every digit in both
splits); in a user folder, a fixed hash of each file's path puts one in five into the test split.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..utils import atomic_write_bytes, cache_dir
from .base import DATASET_OPTIONS, DATASETS, Dataset
from .translation import TranslationDataset, _direction, _finish

SPEECH_DATASETS = ("spoken-digits", "voices")   # the datasets of this module (their runs' samples are sound)
TEST_EVERY = 5          # one take (or file) in five is held out for the test split
CACHE_VERSION = 1       # bump when the way spectrograms are computed changes


@dataclass(frozen=True)
class AudioOptions:
    """``data.options`` of the audio datasets (see the module docstring)."""

    spectrogram: dict = None
    label: str = "digit"
    speakers: Optional[Tuple[str, ...]] = None

    @classmethod
    def parse(cls, options: dict, name: str) -> "AudioOptions":
        from ..audio.spectrogram import SpecSettings

        known = [f.name for f in fields(cls)]
        for k in options:
            if k not in known:
                raise ConfigError(f"data.options.{k}: unknown key for {name}; allowed: {', '.join(known)}")
        label = options.get("label", "digit")
        if label not in ("digit", "speaker"):
            raise ConfigError(f"data.options.label: invalid value {label!r}; allowed: digit, speaker")
        if name == "voices" and "label" in options:
            raise ConfigError("data.options.label: voices data has no label to choose (its labels are the digits, "
                              "for scoring); remove the key")
        sp = options.get("speakers")
        if sp is not None and (not isinstance(sp, (list, tuple)) or not all(isinstance(s, str) for s in sp) or not sp):
            raise ConfigError(f"data.options.speakers: invalid value {sp!r}; allowed: a list of speaker names")
        if name == "voices" and sp is not None and (len(sp) != 2 or sp[0] == sp[1]):
            raise ConfigError(f"data.options.speakers: voices converts speaker A into speaker B: give two different "
                              f"names, got {sp!r}")
        spec = SpecSettings.from_dict(options.get("spectrogram"), where="data.options.spectrogram")
        return cls(spec.to_dict(), label, tuple(sp) if sp is not None else None)

    @property
    def settings(self):
        from ..audio.spectrogram import SpecSettings

        return SpecSettings.from_dict(self.spectrogram)


def check_options(name: str, options: dict) -> None:
    """Config-time check of ``data.options`` for an audio dataset (no files read)."""
    AudioOptions.parse(options, name)


DATASET_OPTIONS["spoken-digits"] = DATASET_OPTIONS["voices"] = check_options


def default_root() -> Path:
    """The default corpus: ``<cache>/data/spoken-digits`` (made on first use)."""
    return cache_dir() / "data" / "spoken-digits"


def _root(cfg) -> Path:
    if cfg.root is not None:
        root = Path(cfg.root).expanduser()
        if not root.is_dir():
            raise DataError(f"data.root: {root} is not a folder; make a corpus there with "
                            f"`gankit data make spoken-digits {root}`, or point it at a folder of WAV files "
                            "(one sub-folder per speaker)")
        return root
    root = default_root()
    if not (root / "manifest.csv").exists():
        from ..audio.corpus import make_corpus

        print(f"making the default spoken-digit corpus at {root} (once)", file=sys.stderr, flush=True)
        tic = time.monotonic()
        make_corpus(root)
        print(f"made it in {time.monotonic() - tic:.0f} s", file=sys.stderr, flush=True)
    return root


def _is_test(u, root: Path) -> bool:
    if getattr(u, "take", None) is not None and (root / "manifest.csv").exists():
        return int(u.take) % TEST_EVERY == TEST_EVERY - 1
    rel = str(Path(u.path).resolve().relative_to(root.resolve())) if Path(u.path).is_absolute() else str(u.path)
    return int(hashlib.sha256(rel.encode()).hexdigest(), 16) % TEST_EVERY == 0


@dataclass
class Utterances:
    """Spectrograms of one split of a corpus with what is known of each."""

    x: torch.Tensor            # uint8 (N, 1, n_mels, frames)
    digit: torch.Tensor        # int64 (N,) the text's label (a digit 0-9 in a made corpus; a user
                               # folder: the sub-folder's index, the same as its speaker or class)
    speaker: torch.Tensor      # int64 (N,) index into speakers
    speakers: List[str]        # every speaker of the corpus, sorted (indices stable across splits)
    texts: List[str]           # the name of each label, by label: the text said, or the sub-folder's name
    paths: List[str]
    takes: List[int]
    content_labels: bool = True  # False for a user folder: nothing says what each file says, so no
                                 # digit label and no parallel (digit, take) pairs across speakers


def load_utterances(root: Path, split: str, settings) -> Utterances:
    """Spectrograms of every utterance of ``split`` under ``root`` (cached in gankit's cache by the
    corpus's file list, sizes and times and the settings; recomputed when any of them changes)."""
    from ..audio.corpus import read_corpus

    if split not in ("train", "test"):
        raise DataError(f"audio data has the splits train and test, not {split!r}")
    utts = read_corpus(root, sample_rate=settings.sample_rate)
    content_labels = (root / "manifest.csv").is_file()   # a made corpus; else a user folder
    speakers = sorted({u.speaker for u in utts})
    texts = {}
    for u in utts:  # a user folder's label is its sub-folder (speaker or class), named as the folder
        texts.setdefault(int(u.label), u.text if content_labels else u.speaker)
    chosen = [u for u in utts if _is_test(u, root) == (split == "test")]
    if not chosen:
        raise DataError(f"data.root: {root} has no utterances for the {split} split "
                        f"(one take or file in {TEST_EVERY} is held out for testing): add more files")
    x = _cached_spectrograms(cache_dir() / "audio" / f"{_cache_key(root, chosen, settings)}.safetensors",
                             [u.path for u in chosen], settings)
    return Utterances(x, torch.tensor([int(u.label) for u in chosen], dtype=torch.int64),
                      torch.tensor([speakers.index(u.speaker) for u in chosen], dtype=torch.int64),
                      speakers, [texts.get(k, str(k)) for k in range(max(texts) + 1)],
                      [str(u.path) for u in chosen], [int(u.take) for u in chosen], content_labels)


def _cached_spectrograms(path: Path, paths, settings) -> torch.Tensor:
    """uint8 (N, 1, n_mels, frames) of ``paths``, from the safetensors cache file ``path`` when it is
    there and readable, else computed and written there atomically."""
    from safetensors.torch import load_file, save

    if path.exists():
        try:
            x = load_file(str(path))["x"]
            if x.dtype == torch.uint8 and x.shape == (len(paths), 1, settings.n_mels, settings.frames):
                return x
        except Exception:  # a damaged cache file is computed again
            pass
    x = torch.from_numpy(_spectrograms(paths, settings))
    atomic_write_bytes(path, save({"x": x}))
    return x


def _cache_key(root: Path, utts, settings) -> str:
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "settings": settings.to_dict()}, sort_keys=True).encode())
    for u in utts:
        st = Path(u.path).stat()
        h.update(f"{u.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _spectrograms(paths, settings) -> np.ndarray:
    """uint8 (N, 1, n_mels, frames): each file's log-mel, its centre ``frames`` columns kept, padded."""
    from ..audio.corpus import load_wav
    from ..audio.spectrogram import fit_frames, logmel, to_uint8

    out = np.empty((len(paths), 1, settings.n_mels, settings.frames), np.uint8)
    for i, p in enumerate(paths):
        spec = logmel(load_wav(p, settings.sample_rate), settings)
        out[i, 0] = to_uint8(fit_frames(spec, settings.frames, mode="crop"))
    return out


def _audio_info(opts: AudioOptions, u: Utterances, classes: List[str]) -> dict:
    return {"audio": {"spectrogram": opts.spectrogram, "speakers": u.speakers, "classes": classes}}


def _load(cfg, name: str, split: str) -> Tuple[AudioOptions, Utterances]:
    """The options and the utterances of ``split`` of an audio dataset's config."""
    opts = AudioOptions.parse(cfg.options, name)
    if cfg.resolution is not None or cfg.channels not in (None, 1):
        raise ConfigError("data.resolution / data.channels: a spectrogram's size is set by "
                          "data.options.spectrogram (n_mels high, frames wide, one channel); remove them")
    root = _root(cfg)
    u = load_utterances(root, split, opts.settings)
    for s in opts.speakers or ():
        if s not in u.speakers:
            raise ConfigError(f"data.options.speakers: {s!r} is not a speaker of {root}; "
                              f"it has {', '.join(u.speakers)}")
    return opts, u


@DATASETS.register("spoken-digits")
def spoken_digits(cfg, split: str = "train", seed: int = 0) -> Dataset:
    opts, u = _load(cfg, "spoken-digits", split)
    keep = torch.ones(len(u.x), dtype=torch.bool)
    if opts.speakers is not None:
        keep = torch.isin(u.speaker, torch.tensor([u.speakers.index(s) for s in opts.speakers]))
    if opts.label == "speaker":
        y, classes = u.speaker, u.speakers
    else:
        y, classes = u.digit, u.texts
    return Dataset("spoken-digits", u.x[keep], y[keep], "image", num_classes=len(classes),
                   info=_audio_info(opts, u, list(classes)))


@DATASETS.register("voices")
def voices(cfg, split: str = "train", seed: int = 0) -> TranslationDataset:
    opts, u = _load(cfg, "voices", split)
    pair = opts.speakers or _default_pair(u.speakers)
    a, b = (u.speaker == u.speakers.index(s) for s in pair)
    n = cfg.limit
    # A user folder's "digit" is the speaker's folder index, not what is said: no labels to score content by.
    labelled = u.content_labels
    ds = TranslationDataset("voices", u.x[a][:n], u.x[b][:n], paired=False,
                            a_labels=u.digit[a][:n] if labelled else None,
                            b_labels=u.digit[b][:n] if labelled else None,
                            label_classes=len(u.texts) if labelled else 0,
                            info=_audio_info(opts, u, list(u.texts) if labelled else []))
    ds.info["audio"]["pair"] = list(pair)   # [A, B] before data.direction is applied
    # each side's utterances in order, (path, digit, take): scoring pairs a conversion with the target
    # speaker saying the same digit in the same take (gankit/metrics/audio.py); never used in training.
    # A user folder's items are (path, None, None): no content labels, no parallel pairs.
    ds.info["utterances"] = {s: [(p, int(d), t) if labelled else (p, None, None)
                                 for p, d, t, m in zip(u.paths, u.digit, u.takes, side) if m][:n]
                             for s, side in zip(pair, (a, b))}
    return _finish(ds, _direction(cfg))


def _default_pair(speakers: List[str]) -> Tuple[str, str]:
    for pair in (("flite-slt", "flite-rms"), ("flite-rms", "flite-slt")):
        if all(s in speakers for s in pair):
            return pair
    if len(speakers) < 2:
        raise DataError(f"voices needs two speakers; the corpus has {len(speakers)}")
    return speakers[0], speakers[1]
