"""What the recognizer hears of a query: its probes, and where the query is clearly quiet.

A reference peak a query does not show is either hidden (noise, reverberation or a codec put
energy over it: the query is loud there) or absent (the query is quiet there: it plays other
notes). Only absence speaks against a match, and it separates look-alikes (another piece in the
same key and rhythm) from degraded true matches far better than the share of peaks found,
which noise lowers for both. `Listening.depth` is what the verification reads it from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from polymuse.tools import fingerprint
from polymuse.tools.fingerprint import QUERY, QueryPrint
from polymuse.tools.fingerprint.peaks import log_spectrogram, prepare


@dataclass(frozen=True)
class Listening:
    """A query's fingerprint and its depth map."""

    query: QueryPrint
    depth: np.ndarray
    """float32 (frames, bins): dB below the query's local maximum (the query's own peak
    neighbourhood), the least within one frame and bin, so a peak and its surroundings read 0."""


def listen(audio: np.ndarray, sample_rate: int) -> Listening:
    """Fingerprint a query (mono or (channels, samples), any rate) and map its quiet spots."""
    y = prepare(audio, sample_rate)
    spec = log_spectrogram(y)
    size = (2 * QUERY.time_radius + 1, 2 * QUERY.freq_radius + 1)
    below = ndimage.maximum_filter(spec, size=size, mode="nearest") - spec
    depth = ndimage.minimum_filter(below, size=3, mode="nearest")
    return Listening(fingerprint.query_spectrogram(spec, len(y) / fingerprint.ANALYSIS_RATE), depth)
