"""A spoken-digit corpus made offline with the speech synthesisers Debian ships, and any folder of WAVs.

:func:`make_corpus` runs ``espeak-ng`` and ``flite`` (by argument list, never a shell) once per
speaker, text and take, jitters each take's pitch, speaking rate and a little white noise from a
seeded stream of its own, and writes 16 kHz mono 16-bit WAVs::

    OUT_DIR/<speaker>/<speaker>_<text>_<take:02d>.wav
    OUT_DIR/manifest.csv    path,speaker,text,label,take,engine,voice,pitch,rate,snr_db,seconds
    OUT_DIR/corpus.json     settings, seed, counts, tool versions

:func:`read_corpus` lists such a corpus from its manifest, or a user folder of WAVs (one sub-folder
per speaker or class); :func:`load_wav` reads one file as float32 mono at the rate asked for.
docs/audio.md describes the voices, the jitter ranges and the measured size and time.
"""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..errors import GankitError

SAMPLE_RATE = 16000                     # Hz, every file the builder writes
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Two engines' voices: flite's slt (US female), rms (US male) and awb (Scottish male) are the CMU
# ARCTIC speakers of voice-conversion papers; kal16 is flite's diphone voice; espeak-ng's formant
# voices with its variants (+f2, +m3, +f4) add accents and female/male timbres.
SPEAKERS = ("flite-slt", "flite-rms", "flite-awb", "flite-kal16",
            "espeak-en-us", "espeak-en-us+f2", "espeak-en-gb+m3", "espeak-en-gb-scotland+f4")
TAKES = 30                              # takes per speaker and text in the default corpus (2,400 files)
MANIFEST = "manifest.csv"
COLUMNS = ("path", "speaker", "text", "label", "take", "engine", "voice", "pitch", "rate", "snr_db", "seconds")

# Jitter ranges, each drawn uniformly per take.
PITCH_SEMITONES = (-2.0, 2.0)           # pitch offset from the voice's own, in semitones
RATE = (0.85, 1.15)                     # speaking-rate factor (1 = the voice's default; > 1 faster)
SNR_DB = (25.0, 45.0)                   # white noise, signal-to-noise ratio over the trimmed speech
TOP_DB = 40.0                           # trim: leading/trailing audio this far below the peak goes
PEAK = 0.9                              # peak amplitude after normalisation (-0.9 dBFS)

ESPEAK_PITCH_PER_SEMITONE = 6.5         # espeak-ng -p units (0-99, 50 default) per semitone: measured
ESPEAK_WPM = 175                        # espeak-ng's default -s (words per minute)
# flite voices whose mean F0 `int_f0_target_mean` moves (Hz: their default, measured with pYIN);
# other flite voices (rms ignores the setting) are pitch-shifted by resampling ("tape speed") with
# duration_stretch compensating, so the rate jitter still holds.
FLITE_F0_MEAN = {"slt": 172.0, "awb": 129.0, "kal16": 88.0}
INSTALL = {"espeak-ng": "espeak-ng", "flite": "flite"}
SYNTH_TIMEOUT_S = 60


@dataclass(frozen=True)
class Utterance:
    """One recording: ``path`` absolute; ``label`` the digit (0-9) of a digit text, else the text's
    index in the corpus (a user folder: the sub-folder's index, sorted by name); ``take`` counts
    from 0. ``load()`` reads it at ``sample_rate`` (Hz)."""

    path: Path
    speaker: str
    text: str
    label: int
    take: int
    sample_rate: int = SAMPLE_RATE

    def load(self) -> np.ndarray:
        return load_wav(self.path, self.sample_rate)


# ----------------------------------------------------------------------------------- reading

def load_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A sound file (anything libsndfile reads: WAV, FLAC, ...) as float32 mono (T,) in [-1, 1] at
    ``sample_rate`` Hz: channels averaged, another rate resampled (soxr, high quality).
    A missing, corrupt or empty file raises one GankitError line naming it."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise GankitError(f"{path}: no such file")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, channels)
    except Exception as e:  # libsndfile's errors come as several exception types
        reason = str(e).splitlines()[-1] if str(e) else type(e).__name__
        raise GankitError(f"{path}: not a readable sound file ({reason}); re-export it as a WAV "
                          "or remove it") from None
    if audio.shape[0] == 0:
        raise GankitError(f"{path}: holds no samples; re-export it or remove it")
    mono = audio.mean(axis=1)
    if rate != sample_rate:
        mono = _resample(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def read_corpus(root: str | Path, sample_rate: int = SAMPLE_RATE) -> List[Utterance]:
    """The utterances under ``root``: from ``root/manifest.csv`` when present (a corpus
    :func:`make_corpus` wrote), otherwise a user folder with one sub-folder per speaker or class
    holding WAV files (searched recursively; the sub-folder's name is the speaker, the file's stem
    the text, the label the sub-folder's index in sorted order). Hidden files are skipped. An empty
    folder, a manifest row naming a missing file, or a file that is not a WAV raise one GankitError
    line. Audio is not read here: ``Utterance.load()`` reads it at ``sample_rate``."""
    root = Path(root)
    if not root.is_dir():
        raise GankitError(f"{root}: no such folder; give a corpus folder (gankit data make spoken-digits "
                          f"{root}) or a folder of WAVs with one sub-folder per speaker or class")
    if (root / MANIFEST).is_file():
        return _read_manifest(root, sample_rate)
    return _read_folder(root, sample_rate)


def _read_manifest(root: Path, sample_rate: int) -> List[Utterance]:
    manifest = root / MANIFEST
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"path", "speaker", "text", "label", "take"}
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise GankitError(f"{manifest}: no column(s) {', '.join(sorted(missing))}; it needs "
                              f"{', '.join(COLUMNS)} (rebuild it with gankit data make spoken-digits)")
        out = []
        for line, row in enumerate(reader, start=2):
            path = root / row["path"]
            if not path.is_file():
                raise GankitError(f"{manifest} line {line}: {row['path']} is missing; rebuild the corpus "
                                  "or remove the row")
            try:
                label, take = int(row["label"]), int(row["take"])
            except ValueError:
                raise GankitError(f"{manifest} line {line}: label {row['label']!r} and take {row['take']!r} "
                                  "must be integers") from None
            out.append(Utterance(path.resolve(), row["speaker"], row["text"], label, take, sample_rate))
    if not out:
        raise GankitError(f"{manifest}: no rows; rebuild the corpus with gankit data make spoken-digits")
    return out


# The one list of sound files gankit takes from a folder (a corpus folder, gankit translate's inputs):
# what libsndfile >= 1.1 reads (load_wav), so a folder takes what one file given by name does.
SOUND_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
SOUND_KINDS = "WAV, FLAC, OGG, Opus, MP3 or AIFF"  # SOUND_SUFFIXES in words, for messages


def _read_folder(root: Path, sample_rate: int) -> List[Utterance]:
    visible = [p for p in root.iterdir() if not p.name.startswith(".")]  # hidden files (._x.wav of macOS) skipped
    classes = sorted(p for p in visible if p.is_dir())
    loose = sorted(p for p in visible if p.is_file() and p.suffix.lower() in SOUND_SUFFIXES)
    if loose:
        raise GankitError(f"{loose[0]}: a sound file directly in {root}; put each file in a sub-folder named by "
                          "its speaker or class")
    out: List[Utterance] = []
    for label, folder in enumerate(classes):
        for path in sorted(folder.rglob("*")):
            if path.is_dir() or any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            if path.suffix.lower() not in SOUND_SUFFIXES:
                raise GankitError(f"{path}: not a {SOUND_KINDS} file; convert it or move it out of {root}")
            out.append(Utterance(path.resolve(), folder.name, path.stem, label, 0, sample_rate))
    if not out:
        raise GankitError(f"{root}: no {SOUND_KINDS} files; give a folder with one sub-folder of them per speaker or "
                          "class, or build a corpus with gankit data make spoken-digits")
    return out


# ----------------------------------------------------------------------------------- building

@dataclass(frozen=True)
class Take:
    """One file to make and the jitter drawn for it (``pitch`` in semitones, ``rate`` a factor)."""

    speaker: str
    text: str
    label: int
    take: int
    pitch: float
    rate: float
    snr_db: float

    @property
    def path(self) -> str:  # relative to the corpus folder
        return f"{self.speaker}/{self.speaker}_{slug(self.text)}_{self.take:02d}.wav"


def slug(text: str) -> str:
    """``text`` as a file-name part: lower case, runs of anything but letters and digits -> '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def parse_speaker(speaker: str) -> Tuple[str, str]:
    """``flite-slt`` -> (``flite``, ``slt``); ``espeak-en-us+f2`` -> (``espeak-ng``, ``en-us+f2``)."""
    for prefix, engine in (("espeak-", "espeak-ng"), ("flite-", "flite")):
        if speaker.startswith(prefix) and len(speaker) > len(prefix):
            voice = speaker[len(prefix):]
            if not re.fullmatch(r"[A-Za-z0-9_+\-]+", voice):
                break
            return engine, voice
    raise GankitError(f"speaker {speaker!r}: give espeak-<voice>[+<variant>] (espeak-en-us+f2; "
                      "espeak-ng --voices=en lists them) or flite-<voice> (flite-slt; flite -lv lists them)")


def normalise_texts(texts: Sequence[str]) -> Tuple[str, ...]:
    """Digits given as "7" become "seven"; other texts are kept (stripped)."""
    out = []
    for t in texts:
        t = str(t).strip()
        if not t or t.startswith("-"):
            raise GankitError(f"texts: {t!r}: give words such as zero one two or short sentences (not empty, "
                              "not starting with '-')")
        out.append(DIGITS[int(t)] if t.isdigit() and len(t) == 1 else t)
    if len(set(out)) != len(out):
        raise GankitError(f"texts: {', '.join(out)} repeats a text; give each once")
    if len({slug(t) for t in out}) != len(out):
        raise GankitError(f"texts: {', '.join(out)}: two texts give the same file name; make them differ "
                          "in letters or digits")
    return tuple(out)


def labels_of(texts: Sequence[str]) -> Dict[str, int]:
    """The digit (0-9) of each text when every text is a digit word, else each text's index."""
    if all(t.lower() in DIGITS for t in texts):
        return {t: DIGITS.index(t.lower()) for t in texts}
    return {t: i for i, t in enumerate(texts)}


def plan(speakers: Sequence[str], texts: Sequence[str], takes: int, seed: int) -> List[Take]:
    """The takes to make, each with its jitter drawn from a stream seeded by (seed, speaker, text,
    take): a file does not change when other speakers, texts or takes are added."""
    labels = labels_of(texts)
    out = []
    for speaker in speakers:
        for text in texts:
            for take in range(takes):
                rng = np.random.default_rng([seed, zlib.crc32(speaker.encode()), zlib.crc32(text.encode()), take])
                out.append(Take(speaker, text, labels[text], take, pitch=float(rng.uniform(*PITCH_SEMITONES)),
                                rate=float(rng.uniform(*RATE)), snr_db=float(rng.uniform(*SNR_DB))))
    return out


def _noise_seed(seed: int, t: Take) -> List[int]:  # the stream of a take's white noise
    return [seed, zlib.crc32(t.speaker.encode()), zlib.crc32(t.text.encode()), t.take, 1]


def _require(engine: str) -> str:
    exe = shutil.which(engine)
    if exe is None:
        raise GankitError(f"{engine} not found: install it with `apt-get install {INSTALL[engine]}` "
                          "(or run `bash scripts/setup.sh`)")
    return exe


def _run(argv: List[str]) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=SYNTH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise GankitError(f"{argv[0]} took over {SYNTH_TIMEOUT_S} s: {' '.join(argv)}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GankitError(f"{Path(argv[0]).name} failed ({err[-1] if err else f'exit {proc.returncode}'}): "
                          f"{' '.join(argv[1:])}")
    return proc


def flite_voices(exe: str) -> List[str]:
    """The voices compiled into flite (``flite -lv``); flite silently falls back to kal on others."""
    out = _run([exe, "-lv"]).stdout.decode("utf-8", "replace")
    return out.split(":", 1)[-1].split()


def espeak_variants(exe: str) -> List[str]:
    """The variants espeak-ng knows (``--voices=variant``, the names after ``!v/``); it silently ignores others."""
    return re.findall(r"!v/(\S+)", _run([exe, "--voices=variant"]).stdout.decode("utf-8", "replace"))


def tool_version(exe: str) -> str:
    proc = subprocess.run([exe, "--version"], capture_output=True, timeout=SYNTH_TIMEOUT_S)  # flite exits 1
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip().splitlines()
    return next((l.strip() for l in out if "version" in l.lower() or "espeak" in l.lower()), out[0] if out else "?")


def _synthesise(t: Take, engine: str, voice: str, exe: str, workdir: Path) -> np.ndarray:
    """The take as float32 mono at SAMPLE_RATE, with its pitch and rate, before trimming and noise."""
    wav = workdir / f"{slug(t.speaker)}_{slug(t.text)}_{t.take}.wav"
    tape = 1.0  # the resampling factor of a tape-speed pitch shift (1 = none)
    if engine == "espeak-ng":
        pitch = int(np.clip(round(50 + ESPEAK_PITCH_PER_SEMITONE * t.pitch), 0, 99))
        argv = [exe, "-v", voice, "-p", str(pitch), "-s", str(round(ESPEAK_WPM * t.rate)), "-w", str(wav), t.text]
    else:
        stretch = 1.0 / t.rate
        argv = [exe, "-voice", voice]
        if voice in FLITE_F0_MEAN:
            argv += ["--setf", f"int_f0_target_mean={FLITE_F0_MEAN[voice] * 2 ** (t.pitch / 12):.3f}"]
        else:
            tape = 2 ** (t.pitch / 12)
            stretch *= tape  # played `tape` times faster afterwards: synthesise that much slower
        argv += ["--setf", f"duration_stretch={stretch:.4f}", "-t", t.text, "-o", str(wav)]
    _run(argv)
    try:
        audio = load_wav(wav, SAMPLE_RATE)
    finally:
        wav.unlink(missing_ok=True)
    if tape != 1.0:  # read at SAMPLE_RATE / tape, i.e. resampled so it plays `tape` times faster
        audio = _resample(audio, SAMPLE_RATE, SAMPLE_RATE / tape)
    return audio


def _resample(audio: np.ndarray, rate: float, target: float) -> np.ndarray:
    import soxr

    return soxr.resample(audio.astype(np.float32), rate, target, quality="HQ").astype(np.float32)


def finish(audio: np.ndarray, snr_db: float, rng: np.random.Generator, name: str = "audio") -> np.ndarray:
    """Trim leading/trailing audio more than TOP_DB below the peak, add white noise at ``snr_db``
    over the trimmed speech's power, peak-normalise to PEAK."""
    import librosa

    speech, _ = librosa.effects.trim(audio, top_db=TOP_DB, frame_length=512, hop_length=128)
    if speech.size == 0 or not np.any(speech):
        raise GankitError(f"{name}: the synthesiser gave silence; check the text and voice")
    power = float(np.mean(speech.astype(np.float64) ** 2))
    noisy = speech + rng.standard_normal(speech.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return (noisy * (PEAK / np.max(np.abs(noisy)))).astype(np.float32)


def _check_out_dir(out_dir: Path, settings: dict, seed: int) -> None:
    """A corpus is made into a new or empty folder, or made again over the same corpus (same speakers,
    texts, takes and seed: the same files); anything else there would be mixed with it or orphaned."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    try:
        old = json.loads((out_dir / "corpus.json").read_text())
    except (OSError, ValueError):
        raise GankitError(f"{out_dir}: not empty and not a corpus gankit made; give a new or empty folder") from None
    same = old.get("seed") == seed and all(old.get("settings", {}).get(k) == v for k, v in settings.items())
    if not same:
        raise GankitError(f"{out_dir}: holds a corpus of other settings ({old.get('counts', {}).get('files', '?')} "
                          "files); give a new folder, or delete this one to replace it")


def make_corpus(out_dir: str | Path, speakers: Sequence[str] = SPEAKERS, texts: Sequence[str] = DIGITS,
                takes: int = TAKES, seed: int = 0, jobs: int = 1, progress=None) -> dict:
    """Synthesise every (speaker, text, take) into ``out_dir`` (see the module docstring for the
    layout) and return the summary also written to ``corpus.json``. ``speakers``: names like
    ``flite-slt`` or ``espeak-en-us+f2``; ``texts``: words or short sentences ("7" means "seven");
    ``jobs``: synthesiser processes at once. The same seed gives the same audio, sample for sample,
    whatever ``jobs``. ``progress(done, total)``, when given, is called after each file."""
    from .. import provenance
    from ..audio_io import write_wav
    from ..utils import atomic_write_text

    t0 = time.perf_counter()
    speakers = list(dict.fromkeys(speakers))
    if not speakers:
        raise GankitError("speakers: none given; give e.g. flite-slt espeak-en-us+f2")
    texts = normalise_texts(texts)
    if not isinstance(takes, int) or takes < 1:
        raise GankitError(f"takes {takes!r}: give a positive integer")
    if not isinstance(jobs, int) or jobs < 1:
        raise GankitError(f"jobs {jobs!r}: give a positive integer")
    voices = {s: parse_speaker(s) for s in speakers}
    exes = {engine: _require(engine) for engine, _ in voices.values()}
    if "flite" in exes:
        known = flite_voices(exes["flite"])
        for s, (engine, voice) in voices.items():
            if engine == "flite" and voice not in known:
                raise GankitError(f"speaker {s!r}: flite has no voice {voice!r}; it has {', '.join(known)}")
    if "espeak-ng" in exes:
        variants = espeak_variants(exes["espeak-ng"])
        for s, (engine, voice) in voices.items():
            if engine != "espeak-ng":
                continue
            base, _, variant = voice.partition("+")
            if subprocess.run([exes[engine], "-q", "-v", base, "x"], capture_output=True,
                              timeout=SYNTH_TIMEOUT_S).returncode:
                raise GankitError(f"speaker {s!r}: espeak-ng has no voice {base!r}; espeak-ng --voices=en lists them")
            if variant and variant not in variants:
                raise GankitError(f"speaker {s!r}: espeak-ng has no variant {variant!r}; espeak-ng --voices=variant "
                                  "lists them (the name after !v/)")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, {"speakers": speakers, "texts": list(texts), "takes": takes}, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = plan(speakers, texts, takes, seed)

    rows: List[dict] = [{} for _ in todo]
    done, lock = [0], threading.Lock()

    with tempfile.TemporaryDirectory(prefix="gankit-synth-") as tmp:
        def make(i: int) -> None:
            t = todo[i]
            engine, voice = voices[t.speaker]
            audio = _synthesise(t, engine, voice, exes[engine], Path(tmp))
            audio = finish(audio, t.snr_db, np.random.default_rng(_noise_seed(seed, t)), name=t.path)
            # entered here, in the thread that writes: pool threads do not inherit the caller's context
            with provenance.context(made_by="gankit.audio.make_corpus", seed=seed):
                write_wav(out_dir / t.path, audio, SAMPLE_RATE)
            rows[i] = {"path": t.path, "speaker": t.speaker, "text": t.text, "label": t.label, "take": t.take,
                       "engine": engine, "voice": voice, "pitch": f"{t.pitch:.3f}", "rate": f"{t.rate:.3f}",
                       "snr_db": f"{t.snr_db:.2f}", "seconds": f"{audio.size / SAMPLE_RATE:.4f}"}
            with lock:
                done[0] += 1
                if progress is not None:
                    progress(done[0], len(todo))

        if jobs == 1:
            for i in range(len(todo)):
                make(i)
        else:
            with ThreadPoolExecutor(jobs) as pool:  # the work is in subprocesses and soxr: threads suffice
                list(pool.map(make, range(len(todo))))

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / MANIFEST, buf.getvalue())
    seconds = sum(float(r["seconds"]) for r in rows)
    summary = {
        "kind": "gankit-spoken-corpus-v1",
        "seed": seed,
        "settings": {"speakers": speakers, "texts": list(texts), "takes": takes, "sample_rate": SAMPLE_RATE,
                     "pitch_semitones": list(PITCH_SEMITONES), "rate": list(RATE), "snr_db": list(SNR_DB),
                     "trim_top_db": TOP_DB, "peak": PEAK, "labels": labels_of(texts)},
        "counts": {"files": len(rows), "speakers": len(speakers), "texts": len(texts),
                   "seconds": round(seconds, 3),
                   "bytes": sum((out_dir / r["path"]).stat().st_size for r in rows)},
        "tools": {engine: tool_version(exe) for engine, exe in sorted(exes.items())},
        "build_seconds": round(time.perf_counter() - t0, 3),
        "jobs": jobs,
    }
    atomic_write_text(out_dir / "corpus.json", json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = ["DIGITS", "SPEAKERS", "SAMPLE_RATE", "Utterance", "Take", "make_corpus", "read_corpus", "load_wav",
           "plan", "parse_speaker"]
