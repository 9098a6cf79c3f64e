"""Chromaprint whole-file fingerprints through `fpcalc`, and their similarity.

Chromaprint (AcoustID's fingerprint) identifies a recording across encodings: a FLAC and an MP3
of the same master give nearly the same bit patterns. The catalogue uses it to attach several
files of one song to one `media_entity` when their tags do not say so. `fpcalc` comes from
Debian's `libchromaprint-tools`; without it, callers fall back to tags only.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess

import numpy as np

from polymuse.errors import ParameterError

LENGTH_S = 120
ITEMS_PER_S = 11025 / 1365  # Chromaprint's item rate (algorithm 2): one per 1365 samples at 11 kHz
MIN_ITEMS = 40  # about 5 s: shorter fingerprints say too little to join songs
MATCH_SIMILARITY = 0.8  # fraction of equal bits; unrelated audio scores about 0.5


class ChromaprintError(Exception):
    """`fpcalc` failed on one input."""


@functools.cache
def fpcalc_version() -> str | None:
    """`fpcalc`'s version string, or None when it is not installed."""
    exe = shutil.which("fpcalc")
    if exe is None:
        return None
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, check=False)
    words = out.stdout.split()
    return words[2] if len(words) > 2 and words[0] == "fpcalc" else "unknown"


def fingerprint(audio: np.ndarray, *, sample_rate: int, length_s: int = LENGTH_S) -> np.ndarray:
    """Raw Chromaprint (signed 32-bit items) of mono float audio, piped to `fpcalc`.

    Raises:
        ParameterError: audio is not 1-D or the rate is not positive.
        ChromaprintError: fpcalc is missing or produced no fingerprint.
    """
    if audio.ndim != 1 or sample_rate <= 0:
        raise ParameterError(
            f"need mono audio and a positive rate, got {audio.shape} @ {sample_rate}"
        )
    exe = shutil.which("fpcalc")
    if exe is None:
        raise ChromaprintError("fpcalc is not installed (Debian package libchromaprint-tools)")
    pcm = (np.clip(audio[: length_s * sample_rate], -1.0, 1.0) * 32767).astype("<i2").tobytes()
    cmd = [
        exe,
        "-raw",
        "-signed",
        "-json",
        "-length",
        str(length_s),
        "-format",
        "s16le",
        "-rate",
        str(sample_rate),
        "-channels",
        "1",
        "-",
    ]
    # fpcalc reports the end of a pipe as a decoding error (exit 3) after printing the result,
    # so the output decides, not the exit code.
    out = subprocess.run(cmd, input=pcm, capture_output=True, check=False, timeout=120)
    try:
        items = json.loads(out.stdout or b"{}").get("fingerprint") or []
    except json.JSONDecodeError:
        items = []
    if not items:
        message = out.stderr.decode(errors="replace").strip().splitlines()
        raise ChromaprintError(
            f"fpcalc gave no fingerprint ({message[0] if message else 'no output'})"
        )
    return np.asarray(items, dtype=np.int32)


def similarity(
    a: np.ndarray, b: np.ndarray, *, max_shift: int = 40, min_overlap: int = 30
) -> float:
    """Best fraction of equal bits over alignments shifted by up to `max_shift` items."""
    x = np.ascontiguousarray(a, dtype=np.int32).view(np.uint32)
    y = np.ascontiguousarray(b, dtype=np.int32).view(np.uint32)
    best = 0.0
    for shift in range(-max_shift, max_shift + 1):
        xs, ys = (x[shift:], y) if shift >= 0 else (x, y[-shift:])
        n = min(len(xs), len(ys))
        if n < min_overlap:
            continue
        differing = int(np.bitwise_count(np.bitwise_xor(xs[:n], ys[:n])).sum())
        best = max(best, 1.0 - differing / (32.0 * n))
    return best
