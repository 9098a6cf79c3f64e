"""How a reference fingerprint is stored beside its postings: model identity and payload.

The `fingerprint` fact's JSON payload carries the packed reference peaks (base64 of
little-endian uint32, see `fingerprint.pack_peaks`) that the verification reads back for its
top candidates, and the counts that size the index.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from polymuse.tools import fingerprint

NAME = "polymuse-triplets"


def payload(ref: fingerprint.ReferencePrint) -> dict[str, Any]:
    """The JSON stored with the fact."""
    return {
        "peaks": encode_peaks(ref.peaks),
        "peak_count": len(ref.peaks),
        "hash_count": len(ref.hashes),
        "duration_s": round(ref.duration_s, 3),
        "frame_s": fingerprint.FRAME_S,
    }


def encode_peaks(peaks: np.ndarray) -> str:
    return base64.b64encode(np.asarray(peaks, dtype="<u4").tobytes()).decode("ascii")


def decode_peaks(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u4").astype(np.uint32)
