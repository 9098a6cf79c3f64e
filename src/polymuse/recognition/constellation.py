"""Constellation search: every stored reference peak votes, for clips the hashes miss.

A triplet hash needs all three of its peaks to survive in the query. Under loud noise (0 dB of
speech babble drowns about 40 % of a song's peaks) few triplets survive, and the right song may
collect no more hashes than a random one. Single peaks survive far more often. Here each peak
of the query is paired with every stored reference peak of the same pitch (within
`PITCH_TOLERANCE`), and the pair votes for the offset `t_ref - t_query`: the right song
piles its surviving peaks into one offset bin, random pairs spread over all of them (Wang's
scatter-plot diagonal, searched exhaustively). The winning bins become candidates for the same
verification and calibration as the hash candidates.

The search assumes the query plays at the reference's tempo and pitch (the triplet hashes cover
speed and pitch changes), and it holds every stored reference peak in memory: 12 bytes a peak
as searched here, about 1.1 MB per hour of audio, built once per recognizer, for catalogues up
to `MAX_PEAKS` peaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polymuse.recognition.matching import OFFSET_BIN, Candidate
from polymuse.tools import fingerprint
from polymuse.tools.fingerprint import FRAME_S, QueryPrint

GAP_FRAMES = 1024
"""Frames (16 s) between consecutive assets on the shared time axis, so a query up to
`MAX_QUERY_S` long cannot carry votes from one asset into the next."""
MAX_QUERY_S = 15.0
"""Only the first seconds of a longer query vote."""
PITCH_TOLERANCE = 0.1
"""Semitones between a query peak and the reference peaks it votes with. Half the
verification's tolerance: half the votes, and the same accuracy (0 dB babble, 3 s: 88.9 %
ranked first against 87.8 % at 0.2)."""
MAX_PEAKS = 5_000_000
"""Largest catalogue searched (about 50 hours of audio): votes grow with the catalogue. Larger
catalogues rely on the hashes alone."""


@dataclass(frozen=True)
class PeakTable:
    """Every stored reference peak, sorted by pitch, on one time axis across assets."""

    pitch: np.ndarray
    """float32, `fingerprint.PITCH_STEPS` per semitone, ascending."""
    time: np.ndarray
    """float64 frames on the shared axis (asset start + peak frame)."""
    starts: np.ndarray
    """float64 start of each asset on the shared axis, ascending."""
    assets: np.ndarray
    """int64 asset id of each start."""

    @classmethod
    def build(cls, peaks: dict[int, np.ndarray]) -> PeakTable:
        """From packed peaks per asset (`fingerprint.pack_peaks`)."""
        assets = np.array(sorted(peaks), dtype=np.int64)
        times, pitches, starts = [], [], []
        start = float(GAP_FRAMES)  # offsets stay positive
        for asset in assets:
            t, p = fingerprint.unpack_peaks(peaks[int(asset)])
            starts.append(start)
            times.append(start + t.astype(np.float64))
            pitches.append(p.astype(np.float32))
            start += (float(t.max()) if len(t) else 0.0) + GAP_FRAMES
        time = np.concatenate(times) if times else np.zeros(0)
        pitch = np.concatenate(pitches) if pitches else np.zeros(0, np.float32)
        order = np.argsort(pitch, kind="stable")
        return cls(pitch[order], time[order], np.asarray(starts, dtype=np.float64), assets)

    def __len__(self) -> int:
        return len(self.pitch)


def search(
    table: PeakTable, query: QueryPrint, *, top: int = 10, start_s: float = 0.0
) -> list[Candidate]:
    """The `top` assets whose best offset bin most query peaks agree on, best first.

    Only the query's peaks from `start_s` (a timeline window's start) to `MAX_QUERY_S` later
    vote, timed from `start_s` so their offsets stay within `GAP_FRAMES` of their asset. Each
    candidate's `votes` (and `hits`) count the votes in its best bin pair; its `score` (hashes
    on the line) is left for the caller (`matching.line_score`).
    """
    start = start_s / FRAME_S
    first = (query.peak_t >= start) & (query.peak_t < start + MAX_QUERY_S / FRAME_S)
    peak_t, peak_p = query.peak_t[first] - start, query.peak_p[first]
    if not len(table) or not len(peak_t):
        return []
    close = PITCH_TOLERANCE * fingerprint.PITCH_STEPS
    lo = np.searchsorted(table.pitch, peak_p - close, side="left")
    hi = np.searchsorted(table.pitch, peak_p + close, side="right")
    ends = np.cumsum(hi - lo)
    if not ends[-1]:
        return []
    # Each query peak's reference peaks are one slice of the table: subtract slice by slice.
    offset = np.empty(int(ends[-1]))
    for a, b, end, t in zip(lo.tolist(), hi.tolist(), ends.tolist(), peak_t.tolist(), strict=True):
        np.subtract(table.time[a:b], t, out=offset[end - (b - a) : end])
    bins = (offset * (1 / OFFSET_BIN)).astype(np.int64)  # offsets are positive: floor
    low = int(bins.min())
    bins -= low
    # Each bin counted with its right neighbour, as in `matching`'s vote.
    pair = np.bincount(bins)
    pair[:-1] += pair[1:]
    best = _largest(pair, 4 * top)
    marked = np.zeros(len(pair) + 2, dtype=bool)
    for shift in (-1, 0, 1, 2):
        marked[np.clip(best + shift, 0, len(marked) - 1)] = True
    near = np.flatnonzero(marked[bins])
    offset, bins = offset[near], bins[near]
    owner = np.searchsorted(ends, near, side="right")
    found: list[Candidate] = []
    for cell in best:
        if len(found) == top or pair[cell] == 0:
            break
        where = int(np.searchsorted(table.starts, (cell + low) * OFFSET_BIN, side="right")) - 1
        asset = int(table.assets[max(where, 0)])
        if any(c.asset_id == asset for c in found):
            continue
        centre = float(np.median(offset[(bins >= cell) & (bins <= cell + 1)]))
        tq = peak_t[owner[np.abs(offset - centre) <= OFFSET_BIN]]
        found.append(
            Candidate(
                asset_id=asset,
                score=0,
                hits=int(pair[cell]),
                ratio=1.0,
                offset_s=(centre - table.starts[max(where, 0)]) * FRAME_S - start_s,
                query_start_s=(float(tq.min()) + start) * FRAME_S,
                query_end_s=(float(tq.max()) + start) * FRAME_S,
                votes=int(pair[cell]),
            )
        )
    return found


def _largest(values: np.ndarray, count: int, *, block: int = 64) -> np.ndarray:
    """Indices of the `count` largest `values`, largest first: the winners lie in the blocks
    with the largest maxima, so only those blocks are sorted."""
    maxima = np.maximum.reduceat(values, np.arange(0, len(values), block))
    blocks = np.argsort(-maxima, kind="stable")[:count]
    cells = (blocks[:, None] * block + np.arange(block)).ravel()
    cells = np.sort(cells[cells < len(values)])
    return cells[np.argsort(-values[cells], kind="stable")[:count]]
