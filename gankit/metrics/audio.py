"""Scores of speech models (docs/audio.md): classifiers trained on real spectrograms judge what a
model made, as the domain networks judge images.

* the **digit classifier** — the domain network of ``spoken-digits`` (labels: the digit said); it is
  also the feature network for FID/KID and ``class_acc`` (the intended digit recognised);
* the **speaker classifier** — the same network trained on the same spectrograms with the speaker
  as the label (``data.options.label: speaker``);
* ``voices`` (metric): the effective number of speakers among samples, exp(entropy) of the speaker
  classifier's mean posterior, beside the same number for the real reference utterances — a model
  that speaks in one voice scores 1, one that spreads over all K speakers evenly scores K;
* :func:`score_conversion` (voice conversion A -> B): the fraction of converted utterances the speaker
  classifier gives to B, the fraction whose digit the digit classifier still recognises, and the
  mel-cepstral distortion (:mod:`gankit.metrics.mcd`) against B saying the same digit in the same take,
  beside that of the unconverted source (both through the same Griffin-Lim inversion).
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from .base import register_metric

AUDIO_DATASET = "spoken-digits"


def classifier_cfg(data_cfg, label: str):
    """The ``spoken-digits`` data a classifier of ``label`` (digit | speaker) is trained on: the same
    corpus (``data.root``) and spectrogram settings as ``data_cfg``."""
    from ..config import DataConfig

    spectrogram = dict((getattr(data_cfg, "options", None) or {}).get("spectrogram") or {})
    options = {"spectrogram": spectrogram} if spectrogram else {}
    if label == "speaker":
        options["label"] = "speaker"
    return DataConfig(name=AUDIO_DATASET, root=data_cfg.root, options=options)


def classifier(data_cfg, label: str):
    """The cached :class:`~gankit.metrics.domain_net.DomainFeatures` for ``label`` (trained on first use)."""
    from .domain_net import DomainFeatures

    return DomainFeatures.for_dataset(classifier_cfg(data_cfg, label))


def effective_number(logits: torch.Tensor) -> float:
    """exp(entropy) of the mean softmax of ``logits`` (N, K): between 1 and K."""
    p = torch.softmax(logits.double(), dim=1).mean(0)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum()
    return float(torch.exp(h))


@register_metric("voices", ("speakers", "speakers_real"), kinds=("image",), uses_features=False)
def _voices_metric(ctx):
    if ctx.data_cfg.name != AUDIO_DATASET:
        raise ValueError(f"voices scores speech: it needs {AUDIO_DATASET} data, not {ctx.data_cfg.name!r}")
    net = classifier(ctx.data_cfg, "speaker")
    return {"speakers": effective_number(net(ctx.fake).logits),
            "speakers_real": effective_number(net(ctx.real).logits), "warnings": net.warnings}


def score_conversion(outputs: torch.Tensor, inputs: torch.Tensor, source, target, speakers_of_corpus, data_cfg,
                     n_iter: int = 64, mcd_max: Optional[int] = 100) -> Dict[str, float]:
    """Scores of voice conversion ``source`` -> ``target`` speaker.

    ``outputs``/``inputs``: (N, 1, n_mels, frames) in [-1, 1], converted and source spectrograms;
    ``source``/``target``: dicts ``{"speaker": name, "items": [(path, digit, take), ...]}`` — the
    inputs' items in order, and every utterance of the target speaker in the split;
    ``speakers_of_corpus``: every speaker of the corpus, sorted (the speaker classifier's classes). ``mcd_max``: at
    most this many pairs for the MCD (Griffin-Lim costs ~0.1 s an utterance; None = all).

    Items with digit None (a user's folder of WAVs) have no content labels: only the speaker scores
    are computed. What is left out, and why, is returned as the string ``"not_computed"`` (never NaN);
    ``"warnings"``: a list, one line per classifier whose held-out accuracy is near chance.
    """
    from ..audio.spectrogram import SpecSettings, to_audio
    from .mcd import CepstraSettings, mcd

    speakers = classifier(data_cfg, "speaker")
    out: Dict[str, float] = {"n": int(len(outputs))}
    spk = speakers(outputs).logits.argmax(1)
    target_index = speakers_of_corpus.index(target["speaker"])  # the speaker classifier's class of B
    out["target_speaker"] = float((spk == target_index).double().mean())
    out["target_speaker_input"] = float((speakers(inputs).logits.argmax(1) == target_index).double().mean())
    out["warnings"] = list(speakers.warnings)   # a judge near chance on held-out words (domain_net.chance_warning)
    if any(d is None for _, d, _ in source["items"]):
        # A user's own folder: nothing says what each file says, so there is neither a digit to keep nor
        # a target utterance of the same words to measure the distortion against.
        out["not_computed"] = (f"digit_kept, mcd: {data_cfg.root} is a folder of WAVs, which has no content labels "
                               "(what each file says) and so no parallel pairs; build a corpus with gankit data "
                               "make spoken-digits to score them")
        return out
    digits = classifier(data_cfg, "digit")
    out["warnings"] += digits.warnings
    labels = torch.tensor([d for _, d, _ in source["items"]])
    out["digit_kept"] = float((digits(outputs).logits.argmax(1) == labels).double().mean())
    out["digit_input"] = float((digits(inputs).logits.argmax(1) == labels).double().mean())
    s = SpecSettings.from_dict((getattr(data_cfg, "options", None) or {}).get("spectrogram"))
    cs = CepstraSettings(sample_rate=s.sample_rate)
    by_key = {(d, t): p for p, d, t in target["items"]}
    pairs = [(i, by_key[(d, t)]) for i, (_, d, t) in enumerate(source["items"]) if (d, t) in by_key]
    pairs = pairs[:mcd_max] if mcd_max is not None else pairs
    if not pairs:
        out["not_computed"] = (f"mcd: no utterance of {target['speaker']} says the same digit in the same take as "
                               f"a scored input of {source['speaker']} (no parallel pairs)")
        return out
    conv, src = [], []
    for i, path in pairs:
        ref = to_audio(_ref_spec(path, s), s, n_iter=n_iter, seed=i)
        conv.append(mcd(to_audio(outputs[i, 0], s, n_iter=n_iter, seed=i), ref, cs))
        src.append(mcd(to_audio(inputs[i, 0], s, n_iter=n_iter, seed=i), ref, cs))
    out["n_mcd"] = len(pairs)
    out["mcd"] = float(np.mean(conv))
    out["mcd_input"] = float(np.mean(src))
    return out


def _ref_spec(path, s):
    """The target utterance's spectrogram as the dataset holds it (quantised, fitted to the frames)."""
    from ..audio.corpus import load_wav
    from ..audio.spectrogram import fit_frames, from_uint8, logmel, to_uint8

    return from_uint8(to_uint8(fit_frames(logmel(load_wav(path, s.sample_rate), s), s.frames, mode="crop")))
