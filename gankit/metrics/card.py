"""Evaluation cards: what a number was computed with, so incomparable numbers are never lined up.

A card records the metric and its protocol constants, the feature extractor and the SHA-256 of
its weights, the input preprocessing, the reference data (dataset, split, content hash), the
number of real and generated samples, the seed and the gankit version, and the generated samples'
``input``: their shape, how the extractor brought them to its own (resized 34 -> 28, RGB -> grey)
and which of them were scored (a seeded random subset of a larger file). Its ``id`` is a hash of
all of that; warnings (bad input, too few samples) are shown with the card but do not change it.
"""
from __future__ import annotations

import hashlib
import json
from typing import Dict, List, Optional, Sequence, Tuple

CARD_FIELDS = ("metric", "params", "features", "features_sha256", "preprocessing", "input", "reference",
               "n_real", "n_fake", "seed", "gankit")


def card_id(card: dict) -> str:
    """Short hash of everything on the card except its warnings."""
    core = {k: card.get(k) for k in CARD_FIELDS}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:10]


def differences(a: dict, b: dict) -> List[str]:
    """Names of the card fields that differ between ``a`` and ``b`` (empty: comparable)."""
    return [k for k in CARD_FIELDS if a.get(k) != b.get(k)]


def _field_lines(card: dict, fields) -> List[str]:
    lines = []
    for k in fields:
        v = card.get(k)
        if k == "features" and v:
            lines.append(f"features      {v} (weights sha256 {(card.get('features_sha256') or '-')[:16]})")
        elif k == "preprocessing" and v:
            lines.append(f"preprocessing {v}")
        elif k == "input" and v:
            fit = v.get("fit") or "x".join(str(d) for d in v.get("shape") or []) + " (as is)"
            sub = v.get("subset")
            lines.append(f"input         {fit}" + (f"; random {sub['n']} of {sub['of']} (seed {sub['seed']})"
                                                     if sub else ""))
        elif k == "reference" and v:
            lines.append(f"reference     {v.get('dataset')} split={v.get('split')} "
                         f"(data sha256 {str(v.get('sha256', ''))[:16]})")
        elif k in ("n_real", "n_fake", "seed", "gankit"):
            lines.append(f"{k:<13} {v}")
    return lines


_SHARED = ("features", "preprocessing", "input", "reference", "n_real", "n_fake", "seed", "gankit")


def describe(card: dict, skip=()) -> str:
    """A human-readable card; ``skip`` leaves out fields already printed for a group of cards."""
    head = f"card {card_id(card)}: {card['metric']}"
    if card.get("params"):
        head += " (" + ", ".join(f"{k}={v}" for k, v in card["params"].items()) + ")"
    lines = [head] + ["  " + line for line in _field_lines(card, [f for f in _SHARED if f not in skip])]
    lines += [f"  WARNING       {w}" for w in card.get("warnings", [])]
    return "\n".join(lines)


def describe_all(cards: List[dict], warned: Optional[Dict[str, Dict[str, List[str]]]] = None) -> str:
    """Cards grouped by protocol: cards that differ only in the metric (and its constants) share
    one block, e.g. ``cards 1a2b3c4d5e precision, 6f7a8b9c0d recall (k=3):`` then the fields.

    Warnings are not part of a card's id, so one card can stand for several sources with different
    warnings: ``warned`` maps a card id to ``{warning: [source labels]}`` and each warning is shown
    with the sources it belongs to (None: each card's own warnings, unlabelled)."""
    if not cards:
        return ""
    groups: Dict[str, List[dict]] = {}
    for c in cards:
        key = json.dumps([{k: c.get(k) for k in _SHARED + ("features_sha256",)}, c.get("params")], sort_keys=True)
        groups.setdefault(key, []).append(c)
    shared = [f for f in _SHARED if all(c.get(f) == cards[0].get(f) for c in cards)]
    if "features" in shared and any(c.get("features_sha256") != cards[0].get("features_sha256") for c in cards):
        shared.remove("features")
    if len(groups) == 1:
        shared = []
    out = []
    if shared:
        out.append("shared by all cards:")
        out += ["  " + line for line in _field_lines(cards[0], shared)]
    for members in groups.values():
        c = members[0]
        head = ("card " if len(members) == 1 else "cards ") + ", ".join(f"{card_id(m)} {m['metric']}" for m in members)
        if c.get("params"):
            head += " (" + ", ".join(f"{k}={v}" for k, v in c["params"].items()) + ")"
        out.append(head + ":")
        out += ["  " + line for line in _field_lines(c, [f for f in _SHARED if f not in shared])]
        out += [f"  WARNING       {w}" for w in _group_warnings(members, warned)]
    return "\n".join(out)


def _group_warnings(members: List[dict], warned) -> List[str]:
    """The warnings of a block of cards, once each; with ``warned``, each prefixed by its sources."""
    by_text: Dict[str, List[str]] = {}
    for m in members:
        if warned is None:
            for w in m.get("warnings", []):
                by_text.setdefault(w, [])
            continue
        for w, labels in warned.get(card_id(m), {}).items():
            have = by_text.setdefault(w, [])
            have += [lab for lab in labels if lab not in have]
    return [f"{', '.join(labels)}: {w}" if labels else w for w, labels in by_text.items()]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    if v != v:
        return "nan"
    return f"{v:.4f}" if abs(v) >= 0.01 or v == 0 else f"{v:.3e}"


def format_table(columns: Sequence[Tuple[str, List[dict]]]) -> str:
    """A table of results, one column per evaluated source.

    ``columns``: (label, results) with results as in ``eval.json`` (dicts with ``name``,
    ``value``, ``std``, ``card``). Numbers share a row only when their cards are identical;
    a metric whose sources used different cards gets one row per card, tagged with the card
    id, and a line saying what differs. With several sources each warning names the sources it
    came from (a warning is not part of the card id, so sources sharing a card may differ in it).
    """
    rows: Dict[Tuple[str, str], Dict[int, dict]] = {}
    cards: Dict[str, dict] = {}
    order: List[Tuple[str, str]] = []
    warned: Dict[str, Dict[str, List[str]]] = {}     # card id -> warning -> labels of the sources with it
    for j, (label, results) in enumerate(columns):
        for r in results:
            cid = card_id(r["card"])
            for w in r["card"].get("warnings", []):
                labels = warned.setdefault(cid, {}).setdefault(w, [])
                if len(columns) > 1 and label not in labels:
                    labels.append(label)
            key = (r["name"], cid)
            if key not in rows:
                rows[key] = {}
                order.append(key)
            rows[key][j] = r
            cards[cid] = r["card"]
    names = []
    for name, _ in order:
        if name not in names:
            names.append(name)
    header = ["metric"] + [label for label, _ in columns] + ["card"]
    table = []
    notes = []
    for name in names:
        keys = [k for k in order if k[0] == name]
        for key in keys:
            cells = []
            for j in range(len(columns)):
                r = rows[key].get(j)
                if r is None:
                    cells.append("")
                else:
                    s = _fmt(r["value"])
                    if r.get("std") is not None:
                        s += f" ± {_fmt(r['std'])}"
                    cells.append(s)
            table.append([name] + cells + [key[1]])
        if len(keys) > 1:
            diff = sorted({d for a in keys for b in keys if a < b for d in differences(cards[a[1]], cards[b[1]])})
            notes.append(f"{name}: rows with different cards are NOT comparable (they differ in: {', '.join(diff)})")
    widths = [max(len(str(row[i])) for row in [header] + table) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    out += notes
    out.append("")
    seen = []
    for key in order:
        if key[1] not in seen:
            seen.append(key[1])
    out.append(describe_all([cards[c] for c in seen], warned))
    return "\n".join(out)
