"""`Recognizer`: fingerprint a query, look it up, vote, and answer with a calibrated match.

The same code runs over any `HashIndex` that can also name its assets (`Catalogue`): the
in-memory index for tests and evaluation, the PostgreSQL postings for the CLI and the graph.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from polymuse.errors import ParameterError
from polymuse.recognition import constellation, matching
from polymuse.recognition.calibration import Calibration, Evidence, default_calibration
from polymuse.recognition.constellation import PeakTable
from polymuse.recognition.index import HashIndex, Hits, SongRef, join
from polymuse.recognition.listening import Listening, listen
from polymuse.recognition.models import Recognition, SongMatch, Timeline, TimelineSegment
from polymuse.report import ModelInfo
from polymuse.tools import fingerprint
from polymuse.tools.fingerprint import FRAME_S

MIN_SCORE = 2
"""Hash candidates with fewer hashes on their line are not worth verifying."""
HASH_CANDIDATES = 6
"""Best lines of the hash vote, all verified."""
CONSTELLATION = 10
"""Candidates the constellation search adds (`constellation`), all verified."""
SAME_LINE_S = 0.1
"""Seconds apart two lines of one asset may place a query's middle and still be one line."""
CONTENDER_SHARE = 0.5
"""Songs that found at least this share of the most peaks any song found are ranked by
confidence (`_rank`)."""
RUN_AGREE_S = 1.0
"""Seconds two windows' alignments of one song may disagree by and still be one segment."""
MODEL = ModelInfo(
    name="polymuse-triplets",
    version=fingerprint.VERSION,
    source="polymuse.tools.fingerprint (algorithm, no weights)",
    licence="MIT",
)


@dataclass
class Recognizer:
    """Identify clips against one catalogue.

    Attributes:
        catalogue: Where postings and song names come from.
        calibration: Score -> confidence model and acceptance threshold.
        alternatives: Runners-up reported with each answer.
    """

    catalogue: HashIndex
    calibration: Calibration = field(default_factory=default_calibration)
    alternatives: int = 3

    def identify(self, audio: np.ndarray, sample_rate: int) -> Recognition:
        """The catalogue song `audio` (any rate, mono or (channels, samples)) comes from."""
        started = time.perf_counter()
        return self.identify_listening(listen(audio, sample_rate), started=started)

    def identify_listening(self, heard: Listening, *, started: float | None = None) -> Recognition:
        """As `identify`, for a query already fingerprinted (`listening.listen`)."""
        started = time.perf_counter() if started is None else started
        query = heard.query
        postings = self.catalogue.postings(query.hashes)
        result = self._answer(heard, self._candidates(query, join(query.hashes, postings)))
        return result.model_copy(
            update={"postings": len(postings), "seconds": round(time.perf_counter() - started, 4)}
        )

    def timeline(
        self,
        audio: np.ndarray,
        sample_rate: int,
        *,
        window_s: float = 10.0,
        hop_s: float = 5.0,
    ) -> Timeline:
        """Songs along a long recording: windows voted one by one, then merged into segments.

        The recording is fingerprinted and looked up once; each window votes on its own hits.
        Consecutive accepted windows of one song whose reference offsets agree (the song plays
        on) become one segment, re-voted over its whole span for its score and confidence.
        """
        if window_s <= 0 or not 0 < hop_s <= window_s:
            raise ParameterError(
                f"need window_s > 0 and 0 < hop_s <= window_s, got {window_s}, {hop_s}"
            )
        started = time.perf_counter()
        heard = listen(audio, sample_rate)
        query = heard.query
        postings = self.catalogue.postings(query.hashes)
        hits = join(query.hashes, postings)
        times = query.times[hits.probe] * FRAME_S
        duration = query.duration_s
        starts = np.arange(0.0, max(duration - window_s, 0.0) + hop_s / 2, hop_s)
        accepted: list[tuple[float, float, SongMatch]] = []
        for start in starts:
            end = min(start + window_s, duration)
            answer = self._vote_span(heard, hits, times, start, end)
            if answer.status == "match" and answer.match is not None:
                accepted.append((start, end, answer.match))
        segments = [self._segment(heard, hits, times, run) for run in _runs(accepted, hop_s=hop_s)]
        return Timeline(
            duration_s=round(duration, 3),
            window_s=window_s,
            hop_s=hop_s,
            segments=[s for s in segments if s is not None],
            seconds=round(time.perf_counter() - started, 4),
        )

    @cached_property
    def stored_peaks(self) -> dict[int, np.ndarray] | None:
        """Every asset's packed reference peaks, read once (None: over `MAX_PEAKS`)."""
        return self.catalogue.all_peaks(constellation.MAX_PEAKS)

    @cached_property
    def peak_table(self) -> PeakTable | None:
        """`stored_peaks` as the constellation search reads them."""
        peaks = self.stored_peaks
        return None if peaks is None else PeakTable.build(peaks)

    # -- helpers ---------------------------------------------------------------------------

    def _candidates(
        self, query: fingerprint.QueryPrint, hits: Hits, *, start_s: float = 0.0
    ) -> list[matching.Candidate]:
        """The hash vote's candidates, then the constellation search's for lines the hashes
        did not propose (with their hash score on the proposed line) when the catalogue's peaks
        fit in memory. `hits` and `start_s`: a timeline window's.

        A song the hashes proposed on another line keeps the constellation's line too: the
        hashes may have voted for a repeat of the passage, or for a chance line."""
        candidates = matching.vote(query, hits, top=HASH_CANDIDATES)
        table = self.peak_table
        if table is None:
            return candidates
        proposed = [c for c in candidates if c.score >= MIN_SCORE]
        found = constellation.search(table, query, top=CONSTELLATION, start_s=start_s)
        return candidates + [
            replace(c, score=matching.line_score(query, hits, c))
            for c in found
            if not any(_same_line(c, p) for p in proposed)
        ]

    def _reference_peaks(self, ids: list[int]) -> dict[int, np.ndarray]:
        """Peaks to verify candidates against: from memory when read, else (and for assets
        added since) from the catalogue."""
        known = self.stored_peaks or {}
        found = {a: known[a] for a in ids if a in known}
        missing = [a for a in ids if a not in known]
        return found | (self.catalogue.peaks(missing) if missing else {})

    def _vote_span(
        self, heard: Listening, hits: Hits, times: np.ndarray, start: float, end: float
    ) -> Recognition:
        window = hits.where((times >= start) & (times < end))
        candidates = self._candidates(heard.query, window, start_s=start)
        return self._answer(heard, candidates, span_s=(start, end))

    def _segment(
        self,
        heard: Listening,
        hits: Hits,
        times: np.ndarray,
        run: list[tuple[float, float, SongMatch]],
    ) -> TimelineSegment | None:
        start, end = run[0][0], run[-1][1]
        answer = self._vote_span(heard, hits, times, start, end)
        match = answer.match
        if match is None or match.song_id != run[0][2].song_id:
            match = max((m for _, _, m in run), key=lambda m: m.confidence)
        return TimelineSegment(
            start_s=round(match.query_start_s, 3), end_s=round(match.query_end_s, 3), match=match
        )

    def _answer(
        self,
        heard: Listening,
        candidates: list[matching.Candidate],
        *,
        span_s: tuple[float, float] | None = None,
    ) -> Recognition:
        query = heard.query
        base = {
            "query_duration_s": round(query.duration_s, 3),
            "triplets": query.triplets,
            "probes": len(query.hashes),
            "postings": 0,
            "model_name": MODEL.name,
            "model_version": MODEL.version,
        }
        candidates = [c for c in candidates if c.score >= MIN_SCORE or c.votes]
        ids = [c.asset_id for c in candidates]
        songs = self.catalogue.describe(ids) if ids else {}
        peaks = self._reference_peaks(ids)
        checked = [
            matching.refine(c, peaks[c.asset_id], heard, span_s=span_s)
            for c in candidates
            if c.asset_id in songs and c.asset_id in peaks
        ]
        if not checked:
            return Recognition(status="unknown", **base)
        # One entry per song: its best-verified asset.
        best: dict[int, tuple[matching.Candidate, matching.Verification]] = {}
        for c, v in checked:
            song = songs[c.asset_id].song_id
            if song not in best or (v.found, c.score) > (best[song][1].found, best[song][0].score):
                best[song] = (c, v)
        ranked = sorted(best.values(), key=lambda cv: (-cv[1].found, -cv[0].score))
        seconds = span_s[1] - span_s[0] if span_s else query.duration_s
        matches = [
            _song_match(c, v, songs[c.asset_id], rival=_rival(ranked, i))
            for i, (c, v) in enumerate(ranked)
        ]
        sure = self.calibration.confidences([Evidence.of(m, seconds=seconds) for m in matches])
        matches = _rank(
            [
                m.model_copy(update={"confidence": round(float(p), 4)})
                for m, p in zip(matches, sure, strict=True)
            ]
        )
        top = matches[0]
        known = top.confidence >= self.calibration.for_clip(seconds).threshold
        return Recognition(
            status="match" if known else "unknown",
            match=top if known else None,
            alternatives=matches[int(known) : int(known) + self.alternatives],
            decided_by="exact" if known else "none",
            **base,
        )


def _same_line(a: matching.Candidate, b: matching.Candidate) -> bool:
    """Whether two candidates put the middle of `a`'s matched span at the same place of the
    same asset (within `SAME_LINE_S`)."""
    if a.asset_id != b.asset_id:
        return False
    middle = (a.query_start_s + a.query_end_s) / 2
    return abs(a.offset_s - b.offset_s + (a.ratio - b.ratio) * middle) <= SAME_LINE_S


def _rival(ranked: list[tuple[matching.Candidate, matching.Verification]], i: int) -> int:
    """Peaks found by the best song other than the `i`-th."""
    return ranked[1 if i == 0 else 0][1].found if len(ranked) > 1 else 0


def _rank(matches: list[SongMatch]) -> list[SongMatch]:
    """Contenders (`CONTENDER_SHARE`) by confidence, then the rest by peaks found.

    Under loud noise a dense look-alike shows more of its many peaks by chance than a sparse
    right song shows of its few, none of them absent: by confidence, the right song comes
    first for more clips. A song with far fewer peaks found is no contender, however sure its
    shallow, few-peak match looks.
    """
    most = max(m.peaks_found for m in matches)

    def key(m: SongMatch) -> tuple[bool, float, int, int]:
        contender = m.peaks_found >= CONTENDER_SHARE * most
        return (not contender, -m.confidence if contender else 0.0, -m.peaks_found, -m.score)

    return sorted(matches, key=key)


def _song_match(
    c: matching.Candidate, v: matching.Verification, ref: SongRef, *, rival: int
) -> SongMatch:
    """The reported match, its confidence still to be set."""
    return SongMatch(
        song_id=ref.song_id,
        asset_id=c.asset_id,
        title=ref.title,
        artist=ref.artist,
        confidence=0.0,
        score=c.score,
        reference_offset_s=round(c.offset_s, 3),
        query_start_s=round(c.query_start_s, 3),
        query_end_s=round(c.query_end_s, 3),
        reference_start_s=round(c.reference_start_s, 3),
        reference_end_s=round(c.reference_end_s, 3),
        tempo_ratio=round(c.ratio, 4),
        pitch_shift=round(v.pitch_shift, 3),
        peaks_checked=v.checked,
        peaks_found=v.found,
        rival_peaks_found=rival,
        precision=round(v.precision, 3),
        peaks_absent=v.absent,
        depth_db=round(v.depth_db, 2),
        steady_peaks=v.steady,
        steady_explained=v.steady_explained,
        peaks_raised=v.raised,
        constellation_votes=c.votes,
    )


def _runs(
    accepted: list[tuple[float, float, SongMatch]], *, hop_s: float
) -> list[list[tuple[float, float, SongMatch]]]:
    """Group consecutive accepted windows of one song that are adjacent or whose alignments
    agree. Adjacent windows of one song on different lines matched a repeated passage of it at
    its other place. Across rejected windows (a noisy stretch) the song must still be on its
    line: the last window's line puts the new window's matched start where the new window found
    it, within `RUN_AGREE_S`; only a song that played on is found there again.

    Lines are compared where the windows matched, not at the recording's start: there a tempo
    ratio off by 0.05 % (one window's fit) moves the offset by a second after half an hour.
    """
    runs: list[list[tuple[float, float, SongMatch]]] = []
    for item in accepted:
        start, _, match = item
        if runs:
            last_start, _, last = runs[-1][-1]
            adjacent = start - last_start <= hop_s * 1.01
            expected = last.reference_start_s + last.tempo_ratio * (
                match.query_start_s - last.query_start_s
            )
            agree = abs(match.reference_start_s - expected) <= RUN_AGREE_S
            if last.song_id == match.song_id and (adjacent or agree):
                runs[-1].append(item)
                continue
        runs.append([item])
    return runs
