"""Landmark fingerprints robust to noise, codecs, EQ, and +-8 % tempo, speed and pitch changes.

Pure numpy (scipy for the max filter, soxr for resampling); no database. Two roles:

- `reference(audio, sample_rate)`: sparse hashes with integer anchor frames, for the index.
- `query(audio, sample_rate)`: dense hashes plus every tolerance cell around them, with the
  fractional anchor frame of each, for look-ups (`query_spectrogram` when the caller already
  has the clip's spectrograms).

See `peaks` (the constellation) and `hashes` (the triplet hash and its invariances) for the
parameters and why they are what they are. Times are frames of `FRAME_S` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polymuse.tools.fingerprint import hashes as _hashes
from polymuse.tools.fingerprint.hashes import QUERY, REFERENCE, HashParams
from polymuse.tools.fingerprint.peaks import (
    ANALYSIS_RATE,
    BASS_FREQ_RADIUS,
    BASS_N_FFT,
    BASS_RATE,
    F_MIN,
    FRAME_S,
    N_FFT,
    Peaks,
    bass_bin_range,
    bass_spectrogram,
    bin_range,
    dominant,
    find_peaks,
    log_spectrogram,
    loud,
    prepare,
)

VERSION = "4"
"""Bump when hashes or stored peaks change: another version's postings do not match."""
FEATURE_SET = "triplet-8k-h128"
PITCH_STEPS = 16
"""Pitch resolution of stored peaks, steps per semitone."""

__all__ = [
    "ANALYSIS_RATE",
    "FEATURE_SET",
    "FRAME_S",
    "QUERY",
    "REFERENCE",
    "VERSION",
    "HashParams",
    "pack_peaks",
    "unpack_peaks",
    "QueryPrint",
    "ReferencePrint",
    "query",
    "query_spectrogram",
    "reference",
]


@dataclass(frozen=True)
class ReferencePrint:
    """What to store of a reference: one hash per triplet with its anchor frame, and the peaks
    (packed, see `pack_peaks`) that the verification aligns a candidate's query against."""

    hashes: np.ndarray
    """uint32."""
    offsets: np.ndarray
    """int32 anchor frames."""
    peaks: np.ndarray
    """uint32 packed peaks."""
    duration_s: float

    @property
    def per_second(self) -> float:
        return len(self.hashes) / self.duration_s if self.duration_s else 0.0


@dataclass(frozen=True)
class QueryPrint:
    """Look-up keys of a query: every probe cell, with the anchor frame of its triplet."""

    hashes: np.ndarray
    """uint32 probe cells (several per triplet)."""
    times: np.ndarray
    """float32 anchor frame of each probe."""
    owner: np.ndarray
    """int64 triplet each probe belongs to."""
    triplets: int
    duration_s: float
    peak_t: np.ndarray
    """float32 frames of the query's (dense) peaks, sorted."""
    peak_p: np.ndarray
    """float32 pitch of each peak, `PITCH_STEPS` per semitone above `F_MIN`."""
    strong: np.ndarray
    """bool per peak: also a peak over the reference's bigger neighbourhood."""


def reference(
    audio: np.ndarray, sample_rate: int, *, params: HashParams = REFERENCE
) -> ReferencePrint:
    """Reference hashes of a whole recording (mono or (channels, samples), any rate).

    The stored peaks are the query's (`QUERY`'s neighbourhood, and the bass band's) that are
    `loud`, about 27 a second, so a clean query shows every one the verification checks; the
    hashes pair the subset above the bass band that are maxima over the reference's bigger
    neighbourhood (`params`, about 17 a second).
    """
    y = prepare(audio, sample_rate)
    spec = log_spectrogram(y)
    stored = find_peaks(spec, time_radius=QUERY.time_radius, freq_radius=QUERY.freq_radius)
    stored = stored.where(loud(spec, stored, time_radius=params.time_radius))
    peaks = stored.where(
        dominant(spec, stored, time_radius=params.time_radius, freq_radius=params.freq_radius)
    )
    trip = _hashes.triplets(peaks, params)
    hashes = _hashes.reference_hashes(trip)
    offsets = np.rint(peaks.t[trip.anchor]).astype(np.int64)
    pairs = np.unique(np.stack([hashes.astype(np.int64), offsets]), axis=1)
    bass = bass_spectrogram(y)
    low = _bass_peaks(bass, QUERY)
    # Loud against both bands: a tune with no bass leaves only leakage and noise down there.
    low = low.where(loud(np.hstack([bass, spec]), low, time_radius=params.time_radius))
    t, pitch, _ = _merge(stored, low)
    return ReferencePrint(
        hashes=pairs[0].astype(np.uint32),
        offsets=pairs[1].astype(np.int32),
        peaks=pack_peaks(t, pitch),
        duration_s=len(y) / ANALYSIS_RATE,
    )


def query(audio: np.ndarray, sample_rate: int, *, params: HashParams = QUERY) -> QueryPrint:
    """Query probes of a clip (mono or (channels, samples), any rate)."""
    y = prepare(audio, sample_rate)
    return query_spectrogram(
        log_spectrogram(y), bass_spectrogram(y), len(y) / ANALYSIS_RATE, params=params
    )


def query_spectrogram(
    spec: np.ndarray,
    bass: np.ndarray,
    duration_s: float,
    *,
    params: HashParams = QUERY,
    maxima: np.ndarray | None = None,
) -> QueryPrint:
    """Query probes from a clip's `log_spectrogram` and `bass_spectrogram` (of `prepare`d
    audio) and its duration; `maxima`: `spec`'s `neighbourhood_max` over the peak
    neighbourhood of `params`, if already computed."""
    peaks = find_peaks(
        spec, time_radius=params.time_radius, freq_radius=params.freq_radius, maxima=maxima
    )
    strong = dominant(
        spec, peaks, time_radius=REFERENCE.time_radius, freq_radius=REFERENCE.freq_radius
    )
    trip = _hashes.triplets(peaks, params, dominant=strong)
    hashes, owner = _hashes.query_probes(trip, params)
    low = _bass_peaks(bass, params)
    peak_t, peak_p, order = _merge(peaks, low)
    return QueryPrint(
        hashes=hashes,
        times=peaks.t[trip.anchor][owner].astype(np.float32),
        owner=owner,
        triplets=len(trip),
        duration_s=duration_s,
        peak_t=peak_t,
        peak_p=peak_p.astype(np.float32),
        strong=np.concatenate([strong, np.zeros(len(low), dtype=bool)])[order],
    )


def _bass_peaks(bass: np.ndarray, params: HashParams) -> Peaks:
    return find_peaks(bass, time_radius=params.time_radius, freq_radius=BASS_FREQ_RADIUS, bass=True)


def _merge(peaks: Peaks, bass: Peaks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times and pitches of both sets sorted by time, and the order that sorts them."""
    t = np.concatenate([peaks.t, bass.t])
    order = np.argsort(t, kind="stable")
    return t[order], pitch_of(np.concatenate([peaks.f, bass.f]))[order], order


def pitch_of(hz: np.ndarray) -> np.ndarray:
    """Pitch in `PITCH_STEPS` per semitone above `F_MIN`."""
    return 12 * PITCH_STEPS * np.log2(np.asarray(hz, dtype=np.float64) / F_MIN)


def bin_of(pitch: np.ndarray) -> np.ndarray:
    """int64 column (nearest bin) of a pitch (`pitch_of`'s unit) in the bass band's and the
    main band's spectrograms side by side (`np.hstack([bass_spectrogram, log_spectrogram])`)."""
    hz = F_MIN * 2 ** (np.asarray(pitch, dtype=np.float64) / (12 * PITCH_STEPS))
    bass_lo, bass_hi = bass_bin_range()
    bass = np.rint(hz / (BASS_RATE / BASS_N_FFT)).astype(np.int64) - bass_lo
    main = np.rint(hz / (ANALYSIS_RATE / N_FFT)).astype(np.int64) - bin_range()[0]
    return np.where(hz < F_MIN, bass, main + bass_hi - bass_lo)


PITCH_BASE = 32 * PITCH_STEPS
"""Packed pitches start 32 semitones below `F_MIN` (20 Hz, under the bass band)."""


def pack_peaks(t: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """uint32 per peak: half frames in the high 21 bits (4.6 h), pitch in the low 11.

    Pitch is in 1/16 semitone above `F_MIN - PITCH_BASE` (128 semitones fit, past `F_MAX`);
    time to half a frame (8 ms). 4 bytes a peak, about 27 stored a second (`reference`): about
    390 kB per hour of audio.
    """
    half = np.clip(np.rint(np.asarray(t) * 2), 0, (1 << 21) - 1).astype(np.uint32)
    p = np.clip(np.rint(pitch) + PITCH_BASE, 0, (1 << 11) - 1).astype(np.uint32)
    return (half << np.uint32(11)) | p


def unpack_peaks(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames, pitch) float arrays from `pack_peaks` output."""
    packed = np.asarray(packed, dtype=np.uint32)
    t = (packed >> np.uint32(11)).astype(np.float32) / 2
    return t, (packed & np.uint32(2047)).astype(np.float32) - PITCH_BASE
