"""Frame-wise madmom processors over long audio, in chunks with context.

madmom's processors hold every spectrogram (and network state) of a signal at once, which
grows by hundreds of megabytes per minute of audio. `in_chunks` runs a processor over chunks
of `chunk_s` with `context_s` of audio on each side and keeps each chunk's middle. Chunks
start on frame hops, so the kept frames line up with a one-pass run: exactly equal for
networks with a finite receptive field (the chord CNN), within a few hundredths for
recurrent ones whose memory reaches past the context (the beat BLSTMs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from polymuse.tools.madmom_compat import import_madmom

SAMPLE_RATE = 44100


def in_chunks(
    process: Callable[[Any], np.ndarray],
    samples: np.ndarray,
    *,
    fps: int,
    chunk_s: float,
    context_s: float,
) -> np.ndarray:
    """`process` (madmom Signal -> frames x ...) over float32 mono 44.1 kHz `samples`."""
    madmom = import_madmom()
    hop = SAMPLE_RATE // fps
    frames = -(-len(samples) // hop)
    chunk, context = round(chunk_s * fps), round(context_s * fps)
    if frames <= chunk + 2 * context:
        return process(madmom.audio.signal.Signal(samples, sample_rate=SAMPLE_RATE))
    parts = []
    for start in range(0, frames, chunk):
        low, high = max(0, start - context), min(frames, start + chunk + context)
        signal = madmom.audio.signal.Signal(
            samples[low * hop : high * hop], sample_rate=SAMPLE_RATE
        )
        parts.append(process(signal)[start - low : start - low + min(chunk, frames - start)])
    return np.vstack(parts)
