"""Triplet hashes that survive tempo, speed and pitch changes, and their query-side probes.

A hash describes three peaks: an anchor A and two partners B, C that follow it in time (B first).
Its fields are chosen to be invariant to the transformations a query may have suffered:

| field | value | invariant to |
| --- | --- | --- |
| `b`, `c` | intervals A->B, A->C, whole semitones | pitch, speed (frequency *ratios*) |
| `tau` | (tB - tA) / (tC - tA), 16 bins | tempo, speed (a *ratio* of time spans) |
| `band` | A's frequency, 4-semitone bands | no: the query probes all bands +-7 % reach |
| `span` | log (tC - tA), 0.2 steps | no: the query probes all steps +-7 % reach |

The last two fields are coarse on purpose: they cost the query a few extra look-ups, and they
divide the number of stored postings a look-up returns by about 300, which keeps the voting
cheap in a large catalogue. Musical intervals lie on the semitone grid, so rounding them leaves
most values far from a bin edge; a pitch shift moves both peaks together and leaves them there.

Reference and query differ (after Sonnleitner & Widmer's quad fingerprints, TASLP 2016): the
reference keeps few peaks (a big max-filter neighbourhood) and pairs each anchor with its
`fan_out` strongest partners, so the index stays small; the query keeps more peaks (a smaller
neighbourhood holds every reference peak, even after a time or frequency scaling), pairs each
anchor with more partners over a zone widened by the scale tolerance, and looks up every
quantisation cell within its tolerance of each field. Clean reference triplets are therefore a
subset of the query's, and distortions have to remove a peak to lose a hash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polymuse.errors import ParameterError
from polymuse.tools.fingerprint.peaks import F_MAX, F_MIN, Peaks

MAX_INTERVAL = 18
"""Semitones: partners at most an octave and a half above or below the anchor."""
INTERVALS = 2 * MAX_INTERVAL + 1
TAU_BINS = 16
BAND_SEMITONES = 4.0
BANDS = int(np.ceil(12 * np.log2(F_MAX / F_MIN) / BAND_SEMITONES))
SPAN_STEP = 0.2
"""Natural-log step of the coarse span field (22 % per step)."""


@dataclass(frozen=True)
class HashParams:
    """How one role (reference or query) turns peaks into hashes.

    Attributes:
        time_radius: Peak neighbourhood half-width, frames (16 ms).
        freq_radius: Peak neighbourhood half-height, bins (7.8 Hz).
        fan_out: Strongest partners paired per anchor; gives fan_out * (fan_out - 1) / 2
            triplets per anchor.
        dt_min: Earliest partner after the anchor, frames.
        dt_max: Latest partner, frames.
        span_min: Shortest A->C span, frames: shorter spans make `tau` imprecise.
        scale_tolerance: Relative time/frequency scaling the probes cover (query only).
        interval_margin: Semitones of peak-frequency jitter the probes cover (query only).
        time_margin: Frames of peak-time jitter the probes cover (query only).
    """

    time_radius: int
    freq_radius: int
    fan_out: int
    dt_min: float = 4.0
    dt_max: float = 64.0
    span_min: float = 16.0
    scale_tolerance: float = 0.0
    interval_margin: float = 0.0
    time_margin: float = 0.0

    @property
    def span_bins(self) -> int:
        return int(np.ceil(np.log(self.dt_max / self.span_min) / SPAN_STEP)) + 1


# 33 x 33 cells (0.53 s x 250 Hz) leave about 17 loud peaks (`peaks.LOUD_DB`), so 17 hashes, a
# second of music: 4.4 MB an hour in PostgreSQL (about 64 bytes a posting with its hash index,
# plus 0.5 MB of stored peaks), inside the 5 MB budget. Density is what noise robustness is
# bought with: against 49 x 49 cells (9 a second) it lifts 3 s clips under 0 dB babble from 66
# to 79 % ranked first and 5 s reverberant clips from 92 to 98 %; three triplets per anchor
# instead of one, at the larger cells, cost more postings and gained less (71 %).
REFERENCE = HashParams(time_radius=16, freq_radius=16, fan_out=2)
QUERY = HashParams(
    time_radius=12,
    freq_radius=12,
    fan_out=6,
    scale_tolerance=0.07,
    interval_margin=0.15,
    time_margin=1.0,
)
SPAN_BINS = REFERENCE.span_bins
HASH_SPACE = BANDS * INTERVALS * INTERVALS * TAU_BINS * SPAN_BINS
"""Packed fields take the low 22 bits (2.6 million cells) ..."""
TAG = 0x5A
"""... and this version tag the top 8, so postings of other extractors or other versions that
share the catalogue's posting table practically never collide with ours."""


@dataclass(frozen=True)
class Triplets:
    """Anchor/partner index triples into a `Peaks`, with their continuous hash fields."""

    anchor: np.ndarray
    band: np.ndarray
    b: np.ndarray
    c: np.ndarray
    tau: np.ndarray
    log_span: np.ndarray
    span: np.ndarray

    def __len__(self) -> int:
        return len(self.anchor)


def triplets(peaks: Peaks, params: HashParams, *, dominant: np.ndarray | None = None) -> Triplets:
    """Every (anchor, B, C) the role's rules pair up, with continuous field values.

    Args:
        peaks: The role's peaks.
        params: The role's parameters.
        dominant: Query only: which peaks are also reference-style peaks. They are ranked
            before the others when partners are chosen, so the reference's two partners (its
            strongest dominant peaks) stay among the query's `fan_out` despite the extra,
            sometimes louder, peaks a smaller neighbourhood admits.
    """
    widen = 1.0 + params.scale_tolerance
    lo_dt, hi_dt = params.dt_min / widen, params.dt_max * widen
    t, f, level = peaks.t, peaks.f, peaks.level
    n = len(t)
    first = np.searchsorted(t, t + lo_dt, side="left")
    last = np.searchsorted(t, t + hi_dt, side="right")
    counts = last - first
    anchor = np.repeat(np.arange(n), counts)
    partner = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    partner += np.repeat(first, counts)
    interval = 12 * np.log2(f[partner] / f[anchor])
    keep = np.abs(interval) <= MAX_INTERVAL + 0.5
    anchor, partner = anchor[keep], partner[keep]
    # Rank partners of each anchor (dominant first, then by level); keep `fan_out`.
    first_rank = np.zeros(n, dtype=bool) if dominant is None else ~np.asarray(dominant)
    order = np.lexsort((-level[partner], first_rank[partner], anchor))
    anchor, partner = anchor[order], partner[order]
    group_start = np.searchsorted(anchor, anchor, side="left")
    rank = np.arange(len(anchor)) - group_start
    keep = rank < params.fan_out
    anchor, partner, rank = anchor[keep], partner[keep], rank[keep]
    table = np.full((n, params.fan_out), -1, dtype=np.int64)
    table[anchor, rank] = partner
    combos = [(i, j) for i in range(params.fan_out) for j in range(i + 1, params.fan_out)]
    a_list, p_list, q_list = [], [], []
    for i, j in combos:
        valid = table[:, j] >= 0
        a_list.append(np.flatnonzero(valid))
        p_list.append(table[valid, i])
        q_list.append(table[valid, j])
    a = np.concatenate(a_list) if a_list else np.zeros(0, np.int64)
    p = np.concatenate(p_list) if p_list else np.zeros(0, np.int64)
    q = np.concatenate(q_list) if q_list else np.zeros(0, np.int64)
    # B is the earlier partner (ties: the lower one), C the later.
    swap = (t[q] < t[p]) | ((t[q] == t[p]) & (f[q] < f[p]))
    b_idx, c_idx = np.where(swap, q, p), np.where(swap, p, q)
    span = t[c_idx] - t[a]
    keep = span >= params.span_min / widen
    a, b_idx, c_idx, span = a[keep], b_idx[keep], c_idx[keep], span[keep]
    return Triplets(
        anchor=a,
        band=12 * np.log2(f[a] / F_MIN) / BAND_SEMITONES,
        b=12 * np.log2(f[b_idx] / f[a]),
        c=12 * np.log2(f[c_idx] / f[a]),
        tau=(t[b_idx] - t[a]) / span,
        log_span=np.log(span / REFERENCE.span_min) / SPAN_STEP,
        span=span,
    )


def reference_hashes(trip: Triplets) -> np.ndarray:
    """One uint32 hash per triplet (exact cells, no probes)."""
    return _pack(
        _clip(np.floor(trip.band), BANDS),
        np.clip(np.rint(trip.b), -MAX_INTERVAL, MAX_INTERVAL) + MAX_INTERVAL,
        np.clip(np.rint(trip.c), -MAX_INTERVAL, MAX_INTERVAL) + MAX_INTERVAL,
        _clip(np.floor(trip.tau * TAU_BINS), TAU_BINS),
        _clip(np.floor(trip.log_span), SPAN_BINS),
    )


def query_probes(trip: Triplets, params: HashParams) -> tuple[np.ndarray, np.ndarray]:
    """Every hash cell within the query's tolerances of each triplet.

    Returns:
        (hashes uint32, triplet index of each hash).
    """
    if params.scale_tolerance < 0 or params.interval_margin < 0 or params.time_margin < 0:
        raise ParameterError("query tolerances must not be negative")
    pitch = 12 * np.log2(1 + params.scale_tolerance) / BAND_SEMITONES
    scale = np.log(1 + params.scale_tolerance) / SPAN_STEP
    jitter_tau = params.time_margin / np.maximum(trip.span, 1.0)
    jitter_span = np.log1p(params.time_margin / np.maximum(trip.span, 1.0)) / SPAN_STEP
    m = params.interval_margin
    ranges = [
        _cells(np.floor(trip.band - pitch), np.floor(trip.band + pitch), 0, BANDS),
        _cells(np.rint(trip.b - m), np.rint(trip.b + m), -MAX_INTERVAL, MAX_INTERVAL + 1),
        _cells(np.rint(trip.c - m), np.rint(trip.c + m), -MAX_INTERVAL, MAX_INTERVAL + 1),
        _cells(
            np.floor((trip.tau - jitter_tau) * TAU_BINS),
            np.floor((trip.tau + jitter_tau) * TAU_BINS),
            0,
            TAU_BINS,
        ),
        _cells(
            np.floor(trip.log_span - scale - jitter_span),
            np.floor(trip.log_span + scale + jitter_span),
            0,
            SPAN_BINS,
        ),
    ]
    counts = np.prod([hi - lo + 1 for lo, hi in ranges], axis=0)
    owner = np.repeat(np.arange(len(trip)), counts)
    digit_source = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    fields = []
    for lo, hi in ranges:
        width = (hi - lo + 1)[owner]
        fields.append(lo[owner] + digit_source % width)
        digit_source = digit_source // width
    band, b, c, tau, span = fields
    return _pack(band, b + MAX_INTERVAL, c + MAX_INTERVAL, tau, span), owner


def _cells(lo: np.ndarray, hi: np.ndarray, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer cell range [lo, hi] clipped to [low, high)."""
    lo = np.clip(lo, low, high - 1).astype(np.int64)
    hi = np.clip(hi, low, high - 1).astype(np.int64)
    return lo, np.maximum(hi, lo)


def _clip(values: np.ndarray, size: int) -> np.ndarray:
    return np.clip(values, 0, size - 1)


def _pack(band, b, c, tau, span) -> np.ndarray:
    packed = band.astype(np.int64)
    for value, size in ((b, INTERVALS), (c, INTERVALS), (tau, TAU_BINS), (span, SPAN_BINS)):
        packed = packed * size + value.astype(np.int64)
    return (packed | (TAG << 24)).astype(np.uint32)
