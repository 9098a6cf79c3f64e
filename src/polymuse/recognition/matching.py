"""Offset-consistent voting: which asset, at which offset and tempo ratio, a query's hits agree on.

A true match puts its hits on one line `t_ref = ratio * t_query + offset`; random hash collisions
scatter. For every candidate asset the hits vote in a (ratio, offset) histogram (a Hough
transform over a grid of tempo ratios within the hash tolerance, 2-frame offset bins, each bin
counted with its better neighbour). The winning line's inliers are counted as distinct
reference postings, so one stored hash matched by many query triplets counts once, and the line
is refitted on them by least squares for a precise offset. The runner-up line of the best
assets is kept too (`LINES`): a song repeats its passages, and the hashes of a noisy or
reverberant clip may favour the repeat, where fewer of the clip's other peaks are found.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from polymuse.recognition.index import Hits
from polymuse.recognition.listening import Listening
from polymuse.tools import fingerprint
from polymuse.tools.fingerprint import FRAME_S, QUERY, QueryPrint
from polymuse.tools.fingerprint.peaks import (
    ANALYSIS_RATE,
    BASS_N_FFT,
    BASS_RATE,
    HOP,
    N_FFT,
    bass_bin_range,
    bin_range,
)

OFFSET_BIN = 2.0
"""Frames (32 ms) per offset bin of the vote."""
INLIER_FRAMES = 2.5
"""A hit within this many frames of the line supports it."""
PRESELECT = 40
"""Assets with the most hits in one coarse offset bin: voted on in full."""
COARSE_BIN = 16.0
"""Frames (0.26 s): the narrowest coarse offset bin of the preselection."""
LINES = 2
"""Lines per asset returned for the best assets of the vote: the best, and the best one at
least `APART_FRAMES` away from it."""
APART_FRAMES = 16.0
"""Frames (0.26 s) between a runner-up line and the lines before it, at the query's start."""


@dataclass(frozen=True)
class Candidate:
    """One asset's best line through the query's hits."""

    asset_id: int
    score: int
    """Distinct reference postings on the line (the evidence)."""
    hits: int
    """All hits of this asset, on the line or not."""
    ratio: float
    """Reference time per query time: 1.05 when the query runs 5 % fast."""
    offset_s: float
    """Where the query's first sample lies in the reference, seconds (may be negative)."""
    query_start_s: float
    """First and last matched anchor in the query, seconds."""
    query_end_s: float
    votes: int = 0
    """Query peaks on the line when the constellation search proposed it (0: the hashes did)."""

    @property
    def reference_start_s(self) -> float:
        return self.offset_s + self.ratio * self.query_start_s

    @property
    def reference_end_s(self) -> float:
        return self.offset_s + self.ratio * self.query_end_s


def vote(
    query: QueryPrint,
    hits: Hits,
    *,
    tolerance: float = QUERY.scale_tolerance,
    top: int = 5,
) -> list[Candidate]:
    """The best line per asset, best first (at most `top`), then the runner-up lines of those
    assets (`LINES`).

    Args:
        query: The query's probes (times and triplet owners).
        hits: Probes joined with postings (`index.join`).
        tolerance: Largest relative tempo change searched.
        top: How many candidates to return.
    """
    if not len(hits):
        return []
    times = query.times[hits.probe].astype(np.float64)
    span = float(times.max() - times.min()) if len(times) else 0.0
    chosen = _preselect(hits, times, span * tolerance)
    # Ratio steps small enough that the far end of the query moves under one bin per step.
    step = min(0.005, OFFSET_BIN / max(span, 1.0))
    n_steps = int(np.ceil(np.log1p(tolerance) / step))
    ratios = np.exp(np.arange(-n_steps, n_steps + 1) * step)
    lines = []
    for asset in chosen:
        sel = hits.assets == asset
        found = _lines(
            int(asset),
            times[sel],
            hits.offsets[sel].astype(np.float64),
            hits.posting[sel],
            ratios,
            tolerance,
        )
        lines.append((next(found), found))
    lines.sort(key=lambda line: (-line[0].score, -line[0].hits, line[0].asset_id))
    best = lines[:top]
    return [c for c, _ in best] + [c for _, rest in best for c in itertools.islice(rest, LINES - 1)]


def line_score(query: QueryPrint, hits: Hits, candidate: Candidate) -> int:
    """Distinct reference postings of the candidate's asset on its line (its hash `score`)."""
    sel = hits.assets == candidate.asset_id
    expected = candidate.ratio * query.times[hits.probe[sel]] + candidate.offset_s / FRAME_S
    on_line = np.abs(hits.offsets[sel] - expected) <= INLIER_FRAMES
    return int(len(np.unique(hits.posting[sel][on_line])))


def _preselect(hits: Hits, times: np.ndarray, drift: float) -> np.ndarray:
    """The `PRESELECT` assets with the most hits in one coarse offset bin (and its neighbour).

    Bins are as wide as the offset can drift over the query at the largest tempo change, so
    a true match keeps its hits together while random hits of a popular asset spread out.
    """
    width = max(COARSE_BIN, drift)
    bins = np.floor((hits.offsets - times) / width).astype(np.int64)
    assets, asset_idx = np.unique(hits.assets, return_inverse=True)
    low = int(bins.min())
    span = int(bins.max()) - low + 2
    keys = asset_idx.astype(np.int64) * span + (bins - low)
    cells, counts = np.unique(keys, return_counts=True)
    # Add each cell's right neighbour (same asset) to it.
    neighbour = np.searchsorted(cells, cells + 1)
    has = (neighbour < len(cells)) & (cells[np.minimum(neighbour, len(cells) - 1)] == cells + 1)
    pair = counts + np.where(has, counts[np.minimum(neighbour, len(cells) - 1)], 0)
    best = np.zeros(len(assets), dtype=np.int64)
    np.maximum.at(best, cells // span, pair)
    return assets[np.argsort(-best, kind="stable")[:PRESELECT]]


def _lines(
    asset: int,
    tq: np.ndarray,
    tr: np.ndarray,
    posting: np.ndarray,
    ratios: np.ndarray,
    tolerance: float,
) -> Iterator[Candidate]:
    """The asset's lines, best first, each `APART_FRAMES` from those before it; after the
    first, only lines with two hits in their bin pair."""
    offsets = tr[None, :] - ratios[:, None] * tq[None, :]
    bins = np.floor(offsets / OFFSET_BIN).astype(np.int64)
    low = int(bins.min())
    width = int(bins.max()) - low + 3
    keys = (np.arange(len(ratios))[:, None] * width + (bins - low + 1)).ravel()
    hist = np.bincount(keys, minlength=len(ratios) * width).reshape(len(ratios), width)
    pair = hist[:, :-1] + hist[:, 1:]
    apart = int(np.ceil(APART_FRAMES / OFFSET_BIN))
    while True:
        r_idx, b_idx = np.unravel_index(int(np.argmax(pair)), pair.shape)
        column = bins[r_idx] - low + 1
        in_pair = (column >= b_idx) & (column <= b_idx + 1)
        ratio = float(ratios[r_idx])
        yield _line(asset, tq, tr, posting, offsets[r_idx], in_pair, ratio, tolerance)
        pair[:, max(b_idx - apart, 0) : b_idx + apart + 1] = 0
        if pair.max() < 2:
            return


def _line(
    asset: int,
    tq: np.ndarray,
    tr: np.ndarray,
    posting: np.ndarray,
    row: np.ndarray,
    window: np.ndarray,
    ratio: float,
    tolerance: float,
) -> Candidate:
    """The line at tempo `ratio` through the hits in `window` (offsets `row`), refitted on its
    inliers."""
    offset = float(np.median(row[window]))
    inliers = np.abs(row - offset) <= INLIER_FRAMES
    if inliers.sum() >= 4 and np.ptp(tq[inliers]) > 20:
        fit_ratio, fit_offset = np.polyfit(tq[inliers], tr[inliers], 1)
        if abs(np.log(fit_ratio)) <= np.log1p(tolerance) * 1.05:
            ratio, offset = float(fit_ratio), float(fit_offset)
            inliers = np.abs(tr - (ratio * tq + offset)) <= INLIER_FRAMES
    return Candidate(
        asset_id=asset,
        score=int(len(np.unique(posting[inliers]))),
        hits=len(tq),
        ratio=ratio,
        offset_s=offset * FRAME_S,
        query_start_s=float(tq[inliers].min()) * FRAME_S if inliers.any() else 0.0,
        query_end_s=float(tq[inliers].max()) * FRAME_S if inliers.any() else 0.0,
    )


VERIFY_FRAMES = 1.5
"""A reference peak is found when a query peak lies this close in time (frames) ..."""
VERIFY_SEMITONES = 0.2
"""... and this close in pitch, after the candidate's pitch shift."""
FIT_FRAMES = 20
"""Frames (0.32 s) matched peaks must span before a line is fitted through them."""
EDGE_FRAMES = 12
"""Reference peaks this close to the query's ends are not checked: the query lacks context."""
QUIET_DB = 20.0
"""A reference peak is absent from the query when the query lies this far below its local
maximum there (quiet, not masked by noise or reverberation; see `listening`)."""
DEPTH_CAP_DB = 30.0
"""Depths are capped here before averaging: deeper is just as absent."""
RAISED_DB = 3.0
"""A reference peak is raised in the query when the query's `Listening.lift` there is this
high: something sounds in that band at that moment."""


@dataclass(frozen=True)
class Verification:
    """How many of the reference's peaks under the query's span the query shows too."""

    checked: int
    found: int
    pitch_shift: float
    """Semitones, query relative to reference (speed and pitch changes both shift it)."""
    strong: int = 0
    """The query's strong peaks (reference-style) inside the reference's span ..."""
    explained: int = 0
    """... that a reference peak explains: a look-alike lacks the query's own notes."""
    absent: int = 0
    """Checked reference peaks where the query is quiet: notes the query does not play."""
    steady: int = 0
    """The `strong` peaks that are steady tones (`listening.steady_peaks`) ..."""
    steady_explained: int = 0
    """... that a reference peak explains: noise is seldom steady, a look-alike's notes are."""
    depth_db: float = 0.0
    """Mean dB (at most `DEPTH_CAP_DB`) the query lies below its local maximum at the checked
    reference peaks: near 0 when they are the query's peaks or sit beside them."""
    raised: int = 0
    """Checked reference peaks where the query stands `RAISED_DB` above its usual level in that
    band: a masked note still raises it, a note the query lacks does not."""
    line: tuple[float, float] | None = None
    """(ratio, offset in frames) fitted through the found peaks and the query peaks that found
    them (None: too few, or too close in time, to fit)."""

    @property
    def fraction(self) -> float:
        return self.found / self.checked if self.checked else 0.0

    @property
    def precision(self) -> float:
        return self.explained / self.strong if self.strong else 0.0

    @property
    def absence(self) -> float:
        return self.absent / self.checked if self.checked else 0.0

    @property
    def raised_share(self) -> float:
        return self.raised / self.checked if self.checked else 0.0


def verify(
    candidate: Candidate,
    reference_peaks: np.ndarray,
    heard: Listening,
    *,
    span_s: tuple[float, float] | None = None,
    tolerance: float = QUERY.scale_tolerance,
) -> Verification:
    """Align the reference's stored peaks with the query's along the candidate's line.

    Every reference peak the line maps inside the query is looked for among the query's peaks
    (within `VERIFY_FRAMES` and `VERIFY_SEMITONES`), for each pitch shift on a 1/16-semitone
    grid within the tolerance; the best shift counts. Random look-alikes share hashes but not
    the rest of the constellation, so this separates them from true matches far better than
    the hash count alone (after Sonnleitner & Widmer's verification step). Reference peaks
    that fall where the query's depth map (`Listening.depth`) reads more than `QUIET_DB` are
    counted as absent, and the map's mean over them is the match's `depth_db`; those where
    `Listening.lift` reads `RAISED_DB` or more are `raised`. Peaks the best
    shift moves out of the analysed band (`_band_pitch`), on either side, are left out of every
    count. `span_s` limits the check to a stretch of the query (a timeline window), in
    seconds.
    """
    query, depth = heard.query, heard.depth
    t_ref, p_ref = fingerprint.unpack_peaks(reference_peaks)
    ratio, offset = candidate.ratio, candidate.offset_s / FRAME_S
    expected = (t_ref - offset) / ratio
    last = query.duration_s / FRAME_S - N_FFT / HOP
    first = 0.0
    if span_s is not None:
        first, last = max(first, span_s[0] / FRAME_S), min(last, span_s[1] / FRAME_S)
    inside = np.flatnonzero((expected >= first + EDGE_FRAMES) & (expected <= last - EDGE_FRAMES))
    if not len(inside):
        return Verification(0, 0, 0.0)
    te = expected[inside]
    lo = np.searchsorted(query.peak_t, te - VERIFY_FRAMES, side="left")
    counts = np.searchsorted(query.peak_t, te + VERIFY_FRAMES, side="right") - lo
    ref = np.repeat(np.arange(len(inside)), counts)
    qry = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    qry += np.repeat(lo, counts)
    steps = fingerprint.PITCH_STEPS
    shift = query.peak_p[qry] - p_ref[inside][ref]
    search = 12 * np.log2(1 + tolerance) * steps
    close = VERIFY_SEMITONES * steps
    keep = np.abs(shift) <= search + close
    ref, qry, shift = ref[keep], qry[keep], shift[keep]
    centres = np.arange(-search, search + 1e-9, steps / 16)
    found = _found_per_shift(ref, shift, centres, close, len(inside))
    best = int(found.max()) if len(found) else 0
    best_shift = float(np.median(centres[found == best])) if best else 0.0
    if best:
        # Refine on the pairs near the best shift: the count is flat over a whole tolerance.
        for width in (close, close / 2):
            near = shift[np.abs(shift - best_shift) <= width]
            best_shift = float(np.median(near)) if len(near) else best_shift
    # A shifted query cannot show the reference peaks the shift moved out of the analysed band,
    # nor its own peaks the shift moved in: neither counts, so a shift does not read as misses.
    low, high = _band_pitch()
    audible = (p_ref[inside] + best_shift >= low) & (p_ref[inside] + best_shift <= high)
    on_line = np.abs(shift - best_shift) <= close
    pairs = on_line & audible[ref]
    best = len(np.unique(ref[pairs]))
    line = _fit_line(query.peak_t[qry[pairs]], t_ref[inside][ref[pairs]], tolerance)
    inside, te = inside[audible], te[audible]
    # The other way: the query's strong peaks, mapped into the reference.
    in_band = (query.peak_p - best_shift >= low) & (query.peak_p - best_shift <= high)
    strong = np.flatnonzero(
        query.strong
        & in_band
        & (query.peak_t >= first + EDGE_FRAMES)
        & (query.peak_t <= last - EDGE_FRAMES)
    )
    mapped = query.peak_t[strong] * ratio + offset
    order = np.argsort(t_ref, kind="stable")
    t_sorted, p_sorted = t_ref[order], p_ref[order]
    lo = np.searchsorted(t_sorted, mapped - VERIFY_FRAMES * ratio, side="left")
    counts = np.searchsorted(t_sorted, mapped + VERIFY_FRAMES * ratio, side="right") - lo
    own = np.repeat(np.arange(len(strong)), counts)
    other = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    other += np.repeat(lo, counts)
    diff = query.peak_p[strong][own] - p_sorted[other] - best_shift
    explained = np.zeros(len(strong), dtype=bool)
    explained[own[np.abs(diff) <= close]] = True
    steady = heard.steady[strong]
    # Where each checked reference peak lies in the query's spectrogram.
    cells_t = np.clip(np.rint(te).astype(np.int64), 0, depth.shape[0] - 1)
    cells_f = np.clip(fingerprint.bin_of(p_ref[inside] + best_shift), 0, depth.shape[1] - 1)
    below = depth[cells_t, cells_f]
    lift = heard.lift[cells_t, cells_f]
    return Verification(
        checked=len(inside),
        found=best,
        pitch_shift=best_shift / steps,
        strong=len(strong),
        explained=int(explained.sum()),
        absent=int(np.count_nonzero(below > QUIET_DB)),
        steady=int(steady.sum()),
        steady_explained=int((explained & steady).sum()),
        depth_db=float(np.minimum(below, DEPTH_CAP_DB).mean()) if len(below) else 0.0,
        raised=int(np.count_nonzero(lift >= RAISED_DB)),
        line=line,
    )


def refine(
    candidate: Candidate,
    reference_peaks: np.ndarray,
    heard: Listening,
    *,
    span_s: tuple[float, float] | None = None,
) -> tuple[Candidate, Verification]:
    """Verify the candidate, then again along the line its found peaks fit (`Verification.line`);
    the line that finds more wins. The vote's line rests on a few hashes and can be off in tempo
    by a percent or more (reverberation smears anchors, noise leaves few of them), which costs a
    3 s clip a third of its found peaks at its far end."""
    first = verify(candidate, reference_peaks, heard, span_s=span_s)
    if first.line is None:
        return candidate, first
    ratio, offset = first.line
    moved = replace(candidate, ratio=ratio, offset_s=offset * FRAME_S)
    second = verify(moved, reference_peaks, heard, span_s=span_s)
    return (moved, second) if second.found > first.found else (candidate, first)


def _fit_line(
    t_query: np.ndarray, t_ref: np.ndarray, tolerance: float
) -> tuple[float, float] | None:
    """Least-squares `t_ref = ratio * t_query + offset` through matched peaks, if they span at
    least `FIT_FRAMES` and the ratio lies within the tempo tolerance."""
    if len(t_query) < 4 or np.ptp(t_query) < FIT_FRAMES:
        return None
    ratio, offset = np.polyfit(t_query.astype(np.float64), t_ref.astype(np.float64), 1)
    if abs(np.log(ratio)) > np.log1p(tolerance):
        return None
    return float(ratio), float(offset)


def _found_per_shift(
    ref: np.ndarray, shift: np.ndarray, centres: np.ndarray, close: float, refs: int
) -> np.ndarray:
    """For each of the evenly spaced `centres`, how many distinct reference peaks (`ref`, of
    `refs`) have a pair whose `shift` lies within `close` of it."""
    step = float(centres[1] - centres[0]) if len(centres) > 1 else 1.0
    first = np.maximum(np.ceil((shift - close - centres[0]) / step).astype(np.int64), 0)
    last = np.minimum(
        np.floor((shift + close - centres[0]) / step).astype(np.int64), len(centres) - 1
    )
    ok = first <= last
    width = len(centres) + 1
    # Each pair covers a run of centres: +1 where it starts, -1 after it ends, summed per peak.
    cover = np.bincount(ref[ok] * width + first[ok], minlength=refs * width) - np.bincount(
        ref[ok] * width + last[ok] + 1, minlength=refs * width
    )
    return (np.cumsum(cover.reshape(refs, width), axis=1)[:, :-1] > 0).sum(axis=0)


def _band_pitch() -> tuple[float, float]:
    """Lowest and highest pitch (`PITCH_STEPS` per semitone) a peak can have: the centres of the
    outermost interior bins of the bass and the main spectrogram, widened by the half bin a
    parabola may move."""
    lo = (bass_bin_range()[0] + 0.5) * BASS_RATE / BASS_N_FFT
    hi = (bin_range()[1] - 1.5) * ANALYSIS_RATE / N_FFT
    low, high = fingerprint.pitch_of(np.array([lo, hi]))
    return float(low), float(high)
