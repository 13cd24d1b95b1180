"""RIFF ``LIST``/``INFO`` chunks: the metadata fields of WAV files (the RIFF spec's registered IDs:
``ISFT`` software, ``ICRD`` creation date, ``ICMT`` comment, ...). Written by
:mod:`gankit.audio_io`, read by :mod:`gankit.provenance`.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict

from .errors import GankitError


def info_chunk(fields: Dict[str, str]) -> bytes:
    """A ``LIST`` chunk of type ``INFO`` holding ``fields`` ({four-letter id: text}), UTF-8, NUL-terminated."""
    body = b"INFO"
    for key, text in fields.items():
        data = text.encode("utf-8") + b"\0"  # INFO strings are NUL-terminated
        body += key.encode("ascii") + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    return b"LIST" + struct.pack("<I", len(body)) + body


def read_wav_info(path: str | Path) -> Dict[str, str]:
    """The INFO sub-chunks of a RIFF/WAVE file as ``{id: text}`` ({} when it has none)."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise GankitError(f"{path}: not a RIFF/WAVE file")
    out: Dict[str, str] = {}
    pos, end = 12, min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    while pos + 8 <= end:
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"LIST" and body[:4] == b"INFO":
            q = 4
            while q + 8 <= len(body):
                sid, ssize = body[q:q + 4].decode("ascii", "replace"), struct.unpack("<I", body[q + 4:q + 8])[0]
                out[sid] = body[q + 8:q + 8 + ssize].rstrip(b"\0").decode("utf-8", "replace")
                q += 8 + ssize + (ssize % 2)
        pos += 8 + size + (size % 2)
    return out
