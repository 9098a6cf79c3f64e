"""What the recognizer hears of a query: its probes, where it is clearly quiet or clearly
raised, and which of its peaks are steady tones.

A reference peak a query does not show is either hidden (noise, reverberation or a codec put
energy over it: the query is loud there) or absent (the query is quiet there: it plays other
notes). Only absence speaks against a match, and it separates look-alikes (another piece in the
same key and rhythm) from degraded true matches far better than the share of peaks found,
which noise lowers for both. `Listening.depth` is what the verification reads it from.

A look-alike also leaves some of the query's own notes unexplained, but so does noise: speech
and crowd noise add strong peaks no reference explains. Those glide in pitch or die away within
a few frames, while a held note keeps its partial in place, so the verification measures how
many of the query's *steady* strong peaks the reference explains (`Listening.steady`).

Noise masks a true match's notes but seldom wipes them out: where a note sounds, the query mostly
stands above its usual level in that frequency band, even under loud noise; where a look-alike
has a note the query lacks, it mostly does not. `Listening.lift` holds that rise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from polymuse.tools import fingerprint
from polymuse.tools.fingerprint import QUERY, QueryPrint
from polymuse.tools.fingerprint.peaks import (
    BASS_FREQ_RADIUS,
    bass_spectrogram,
    log_spectrogram,
    neighbourhood_max,
    prepare,
)

STEADY_FRAMES = 4
"""A steady peak stays a spectral peak this many frames (64 ms) either side ..."""
STEADY_DB = 10.0
"""... within one bin and this many dB of its level."""


@dataclass(frozen=True)
class Listening:
    """A query's fingerprint, its depth map and its steady peaks."""

    query: QueryPrint
    depth: np.ndarray
    """float32 (frames, bins of both bands, see `fingerprint.bin_of`): dB below the query's
    local maximum (the query's own peak neighbourhood), the least within one frame and bin, so
    a peak and its surroundings read 0."""
    steady: np.ndarray
    """bool per query peak (`query.peak_t` order): a steady tone, not a glide or a burst."""
    lift: np.ndarray
    """float32 (frames, bins of both bands): dB the query stands above its median level in
    that bin over the whole query, the most within one frame and bin."""


def listen(audio: np.ndarray, sample_rate: int) -> Listening:
    """Fingerprint a query (mono or (channels, samples), any rate) and map its quiet spots."""
    y = prepare(audio, sample_rate)
    spec, bass = log_spectrogram(y), bass_spectrogram(y)
    maxima = [
        neighbourhood_max(s, time_radius=QUERY.time_radius, freq_radius=radius)
        for s, radius in ((bass, BASS_FREQ_RADIUS), (spec, QUERY.freq_radius))
    ]
    both = np.hstack([bass, spec])
    depth = ndimage.minimum_filter(np.hstack(maxima) - both, size=3, mode="nearest")
    lift = ndimage.maximum_filter(both - np.median(both, axis=0), size=3, mode="nearest")
    query = fingerprint.query_spectrogram(
        spec, bass, len(y) / fingerprint.ANALYSIS_RATE, maxima=maxima[1]
    )
    return Listening(query, depth, steady_peaks(both, query), lift.astype(np.float32))


def steady_peaks(spec: np.ndarray, query: QueryPrint) -> np.ndarray:
    """Which of the query's peaks hold (`spec`: both bands side by side): a spectral peak
    (within one bin) at `STEADY_DB` or less below the peak's level in every frame
    `STEADY_FRAMES` either side."""
    frames, bins = spec.shape
    if not len(query.peak_t) or bins < 3:
        return np.zeros(len(query.peak_t), dtype=bool)
    t = np.clip(np.rint(query.peak_t).astype(np.int64), 0, frames - 1)
    f = np.clip(fingerprint.bin_of(query.peak_p), 1, bins - 2)
    crest = np.zeros(spec.shape, dtype=bool)
    crest[:, 1:-1] = (spec[:, 1:-1] >= spec[:, :-2]) & (spec[:, 1:-1] >= spec[:, 2:])
    crest = ndimage.maximum_filter(crest, size=(1, 3))
    level = spec[t, f]
    steady = np.ones(len(t), dtype=bool)
    for dt in range(-STEADY_FRAMES, STEADY_FRAMES + 1):
        near = np.clip(t + dt, 0, frames - 1)
        steady &= crest[near, f] & (spec[near, f] >= level - STEADY_DB)
    return steady
