"""`polymuse eval recognition`: accuracy, rejection, speed and size of recognition, vs audfprint.

Catalogue: Bach chorales (`tools.corpus.key_set`: organ and string sounds) and fiddle tunes on
24 melodic sounds without the shared generated drum part (`catalogue.tune_set`), rendered from
the music21 corpus at 22.05 kHz. A piece that shares any passage of `PASSAGE_EVENTS` onsets
(same pitches, same rhythm) with an earlier one is dropped (a chorale melody harmonised twice,
a stock cadence, a tune filed under two names), so a query has one right answer and "out of
catalogue" means music the catalogue does not hold. A seeded split gives the catalogue and the
held-out songs.

Queries: for every seed, condition (`distortions.default_conditions`) and duration, `per_cell`
clips from catalogue songs, the segment strategy cycling through `distortions.STRATEGIES`;
plus out-of-catalogue clips from held-out songs under every condition. Each query goes through
our `Recognizer` (in-memory index; the PostgreSQL path is timed on a subset and checked to give
the same answers) and, when available, through audfprint on the same audio.

Calibration: with `calibrate=True`, the queries of `calibration_seeds` extra seeds (with
`CALIBRATION_UNKNOWN` times more out-of-catalogue clips in all, since the threshold sits in
their tail) fit the confidence model and pick the acceptance threshold (the lowest keeping
their out-of-catalogue false positives at or under `fp_target`, below the 0.5 % goal for
margin), for clips of `SHORT_SECONDS` or more and for shorter ones apart (a length band the
run has no clips of keeps the package's model); the evaluation seeds are then scored with it.
The fit is written to `polymuse/data/recognition_calibration.json` only when asked
(`save_calibration`).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from pydantic import BaseModel, Field

from polymuse.errors import ParameterError
from polymuse.evaluation import distortions
from polymuse.evaluation.audfprint_peer import PeerRun, find_python, run_audfprint
from polymuse.evaluation.catalogue import tune_set
from polymuse.evaluation.distortions import Condition, SongProfile
from polymuse.recognition import MemoryIndex, Recognition, Recognizer, SongRef, calibration
from polymuse.recognition.calibration import SHORT_SECONDS, Calibration, Evidence
from polymuse.recognition.recognizer import CONSTELLATION, HASH_CANDIDATES
from polymuse.tools import corpus, fingerprint

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
DURATIONS = (1.0, 2.0, 3.0, 5.0, 10.0)
"""Query lengths, s: 1 and 2 s fit and test the short-clip model (`SHORT_SECONDS`)."""
REPORTED = HASH_CANDIDATES + CONSTELLATION
"""Songs each evaluation answer reports: every verified one, so top-5 counts five."""
PASSAGE_EVENTS = 8
TRANSPOSITION = 1
"""Semitones a shared passage may be transposed by and still make two pieces one (`_distinct`)."""
CALIBRATION_UNKNOWN = 10
"""The threshold is a far tail of these clips' confidences: with 1320 of them (3x) it sat at
0.976, above the evaluation seeds' own 0.3 % point (0.87), and with 2640 (6x) at 0.866 where
the seeds' point was 0.70; more clips pin that tail down. Split over the calibration seeds."""
CALIBRATION_SEEDS = 3
"""Seeds the model is fitted on. On the v14 run's rows, fitting on its one calibration seed
plus two evaluation seeds and scoring the third, instead of on the calibration seed alone, took
babble 0 dB 3 s from 84.4 to 91.1 % at the same out-of-catalogue false positives (0.43 %)."""
REPEAT_SIMILARITY = 0.9
"""Spectrogram correlation above which two spans of a song are the same music (a repeat)."""
GOALS = {
    "clean 5 s top-1": (">=", 0.995),
    "babble 0 dB 3 s top-1": (">=", 0.85),
    "speed -5 % 5 s top-1": (">=", 0.90),
    "speed +5 % 5 s top-1": (">=", 0.90),
    "pitch -1 st 5 s top-1": (">=", 0.90),
    "pitch +1 st 5 s top-1": (">=", 0.90),
    "out-of-catalogue false positives": ("<=", 0.005),
    "PostgreSQL p50, 5 s clip (s)": ("<=", 0.100),
    "fingerprinting (x real time, 1 core)": (">=", 100.0),
    "index size (MB per hour, PostgreSQL)": ("<=", 5.0),
}


class CellResult(BaseModel):
    """One (condition, duration) cell, or one strategy row."""

    condition: str
    duration_s: float
    strategy: str = "all"
    queries: int
    top1: float = Field(description="Accepted and right")
    top1_ranked: float = Field(description="Ranked first, whatever the confidence")
    top5: float
    rejected: float = Field(description="Answered 'unknown'")
    wrong: float = Field(description="Accepted and wrong")
    offset_error_p95_s: float | None = None
    offset_within_50ms: float | None = Field(
        None, description="Right answers whose offset is within 50 ms (or on a repeat)"
    )
    latency_p50_s: float
    latency_p95_s: float
    audfprint_top1: float | None = None
    audfprint_top5: float | None = None
    audfprint_latency_p50_s: float | None = None
    top1_at_peer_fp: float | None = Field(
        None, description="Top-1 at the threshold that accepts as many unknowns as audfprint"
    )


class UnknownResult(BaseModel):
    duration_s: float
    queries: int
    false_positive_rate: float
    audfprint_false_positive_rate: float | None = None


class QueryRow(BaseModel):
    """One query's evidence and answers, for re-fitting the calibration without a re-run."""

    qid: str
    seed: int
    condition: str
    duration_s: float
    strategy: str
    song: int | None
    answered: int | None
    found: int | None
    second_found: int | None
    fraction: float | None
    score: int | None
    precision: float | None
    absence: float | None
    depth_db: float | None = None
    steady: int | None = None
    steady_explained: int | None = None
    raised: float | None = None
    pitch_shift: float | None = None
    tempo_ratio: float | None = None
    confidence: float | None
    accepted: bool | None = None
    """Confidence over the threshold of the clip's model (`Calibration.for_clip`)."""
    seconds: float
    offset_error_s: float | None
    audfprint: int | None = None


class RecognitionEvaluation(BaseModel):
    """Everything one `eval recognition` run measured."""

    schema_version: str = "1.0"
    catalogue_songs: int
    held_out_songs: int
    catalogue_hours: float
    seeds: list[int]
    per_cell: int
    babble_source: str
    fingerprint_version: str
    calibration: dict
    cells: list[CellResult]
    strategies: list[CellResult]
    unknown: list[UnknownResult]
    fingerprint_x_realtime: float
    index_mb_per_hour_compact: float
    reference_hashes_per_s: float
    postgres: dict = Field(default_factory=dict)
    audfprint: dict = Field(default_factory=dict)
    acceptance: dict[str, dict] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    peer_operating_point: dict = Field(default_factory=dict)
    queries: list[QueryRow] = Field(default_factory=list, exclude=True)
    calibration_queries: list[QueryRow] = Field(default_factory=list, exclude=True)
    """The fitting seed's rows, judged by the fitted model: what a refit reads."""


def match_peer_operating_point(result: RecognitionEvaluation) -> None:
    """Fill `top1_at_peer_fp`: our top-1 with the threshold lowered until we accept as large a
    share of the out-of-catalogue clips as audfprint answers (its false-positive rate, over
    all of them), so both are compared at one false-positive rate. What a clip's own model
    accepts stays accepted. Needs the query rows."""
    unknown = [q for q in result.queries if q.song is None]
    if not unknown or all(q.audfprint is None for q in result.queries if q.song is not None):
        return
    peer_fp = sum(q.audfprint is not None for q in unknown) / len(unknown)
    more = int(np.floor(peer_fp * len(unknown))) - sum(bool(q.accepted) for q in unknown)
    rest = np.sort([q.confidence or 0.0 for q in unknown if not q.accepted])[::-1]
    if more < 0:  # our own thresholds already accept more: lower none
        threshold = 2.0
    elif more < len(rest):
        threshold = float(rest[more]) + 1e-6
    else:
        threshold = 0.0

    def accepted(q: QueryRow) -> bool:
        return bool(q.accepted) or (q.confidence or 0.0) >= threshold

    for cell in result.cells:
        rows = [
            q
            for q in result.queries
            if q.song is not None
            and q.condition == cell.condition
            and q.duration_s == cell.duration_s
        ]
        right = sum(q.answered == q.song and accepted(q) for q in rows)
        cell.top1_at_peer_fp = round(right / max(len(rows), 1), 4)
    ours_fp = sum(accepted(q) for q in unknown) / len(unknown)
    result.peer_operating_point = {
        "audfprint_false_positive_rate": round(peer_fp, 4),
        "our_false_positive_rate": round(ours_fp, 4),
        "threshold": round(threshold, 6),
    }


@dataclass(frozen=True)
class Song:
    ident: int
    piece: corpus.Piece

    @property
    def path(self) -> Path:
        return self.piece.audio

    @property
    def title(self) -> str:
        return f"{self.piece.source} ({self.piece.sound})"


@dataclass(frozen=True)
class Query:
    qid: str
    source: int
    """The song the clip is cut from."""
    song: int | None
    """The right answer: `source`, or None when it is out of the catalogue."""
    condition: Condition
    duration_s: float
    strategy: str
    seed: int
    start_s: float


@dataclass
class Outcome:
    query: Query
    answer: Recognition
    seconds: float
    offset_error_s: float | None = None
    """For a right answer: |answered - true| offset, or 0 when the answer points at a repeat
    of the same music (tunes play their repeats written out)."""


# -- data --------------------------------------------------------------------------------


def build_songs(
    cache_dir: Path, *, catalogue: int, held_out: int, seed: int = 0
) -> tuple[list[Song], list[Song], list[str]]:
    """Render (or reuse) chorales and tunes; keep pieces sharing no passage; split.

    Tunes are rendered in rounds of 100 more until enough distinct pieces are found.
    """
    wanted = catalogue + held_out
    chorales = corpus.key_set(
        min(260, wanted // 2), cache_dir / "chorales", seed=0, sample_rate=SAMPLE_RATE
    )
    count = wanted - len(chorales)
    while True:
        tunes = tune_set(count, cache_dir / "solo-tunes", seed=0, sample_rate=SAMPLE_RATE)
        pieces, repeats = _distinct([*chorales, *tunes])
        if len(pieces) >= wanted or count >= 1000:
            break
        count = min(1000, count + 100)
    if len(pieces) < wanted:
        raise ValueError(f"only {len(pieces)} distinct pieces for {wanted} songs")
    order = np.random.default_rng(seed).permutation(len(pieces))
    pieces = [pieces[i] for i in order]
    songs = [Song(i, p) for i, p in enumerate(pieces[:wanted])]
    notes = [f"{repeats} rendered pieces dropped for sharing a passage with another"]
    return songs[:catalogue], songs[catalogue:], notes


def _distinct(pieces: Sequence[corpus.Piece]) -> tuple[list[corpus.Piece], int]:
    """Pieces sharing no `PASSAGE_EVENTS`-onset passage with an earlier one, even transposed by
    up to `TRANSPOSITION` semitones, and how many not."""
    seen: set[tuple] = set()
    kept, dropped = [], 0
    shifts = range(-TRANSPOSITION, TRANSPOSITION + 1)
    for piece in pieces:
        if any(_passages(piece, shift) & seen for shift in shifts):
            dropped += 1
            continue
        seen |= _passages(piece)
        kept.append(piece)
    return kept, dropped


def _passages(piece: corpus.Piece, shift: int = 0) -> set[tuple]:
    """Every run of `PASSAGE_EVENTS` onsets: sounding pitches (+ `shift` semitones) and
    inter-onset time in beats.

    Two pieces sharing one (a stock cadence in the same key, a tune filed twice) sound the
    same there, whatever the tempo, so a query cut from it has no single right answer. Nor
    has one whose passage is another's a semitone away (the same chorale tune harmonised in
    a neighbouring key): the recognizer must find ±1 semitone pitch shifts, so to it that is
    a pitch-shifted copy.
    """
    onsets: dict[float, set[int]] = {}
    for part in piece.truth.parts:
        for note in part.notes:
            onsets.setdefault(round(note.onset, 4), set()).add(note.pitch + shift)
    times = sorted(onsets)
    beat = 60.0 / piece.truth.bpm
    events = [
        (frozenset(onsets[t]), round((times[i + 1] - t) / beat * 12))
        for i, t in enumerate(times[:-1])
    ]
    n = PASSAGE_EVENTS
    return {tuple(events[i : i + n]) for i in range(len(events) - n + 1)}


def _read(path: Path) -> np.ndarray:
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    return soxr.resample(y, sr, SAMPLE_RATE).astype(np.float32) if sr != SAMPLE_RATE else y


# -- queries -----------------------------------------------------------------------------


def plan_queries(
    songs: Sequence[Song],
    profiles: dict[int, SongProfile],
    *,
    conditions: Sequence[Condition],
    durations: Sequence[float],
    per_cell: int,
    seed: int,
    known: bool,
) -> list[Query]:
    """`per_cell` queries per (condition, duration), strategies in turn, seeded."""
    rng = np.random.default_rng([seed, int(known)])
    queries = []
    for condition, duration in itertools.product(conditions, durations):
        for k in range(per_cell):
            song = songs[int(rng.integers(len(songs)))]
            strategy = distortions.STRATEGIES[k % len(distortions.STRATEGIES)]
            span = duration * condition.ratio
            start = distortions.choose_start(profiles[song.ident], span, strategy, rng)
            tag = "k" if known else "u"
            queries.append(
                Query(
                    f"{tag}{seed}-{len(queries)}",
                    song.ident,
                    song.ident if known else None,
                    condition,
                    duration,
                    strategy,
                    seed,
                    start,
                )
            )
    return queries


def render_query(query: Query, audio: np.ndarray, babble: np.ndarray) -> np.ndarray:
    """The query's clip: its span of the source song, distorted (seeded by the query id)."""
    number = int(query.qid.split("-")[1])
    rng = np.random.default_rng([query.seed, number, int(query.song is None)])
    span = query.duration_s * query.condition.ratio
    start = int(query.start_s * SAMPLE_RATE)
    clip = audio[start : start + int(span * SAMPLE_RATE)]
    return distortions.distort(clip, SAMPLE_RATE, query.condition, rng, babble=babble)


# -- scoring -----------------------------------------------------------------------------


def evidence_of(answer: Recognition) -> tuple[Evidence | None, int | None, list[int]]:
    """(evidence of the best candidate, its song, ranked songs) from an answer."""
    ranked = ([answer.match] if answer.match else []) + list(answer.alternatives)
    if not ranked:
        return None, None, []
    best = ranked[0]
    evidence = Evidence.of(best, seconds=answer.query_duration_s)
    return evidence, best.song_id, [m.song_id for m in ranked]


def fit_calibration(
    outcomes: Sequence[Outcome], *, fp_target: float, fallback: Calibration | None = None
) -> tuple[Calibration, dict[str, float]]:
    """Fit the monotone logistic model on known and unknown outcomes and pick its threshold,
    for clips of `SHORT_SECONDS` or more and, apart, for shorter ones (`Calibration.short`).
    A length band without outcomes keeps `fallback`'s model for it (none: no short model)."""
    long = [o for o in outcomes if o.query.duration_s >= SHORT_SECONDS]
    short = [o for o in outcomes if o.query.duration_s < SHORT_SECONDS]
    if not long and fallback is None:
        raise ParameterError(f"calibration needs clips of at least {SHORT_SECONDS} s")
    main = _fit_band(long, fp_target) if long else replace(fallback, short=None)
    short_model = _fit_band(short, fp_target) if short else fallback and fallback.short
    model = replace(main, short=short_model)
    info = {"threshold": model.threshold, "queries": len(outcomes)}
    if short_model is not None:
        info["short_threshold"] = short_model.threshold
    return model, info


def _fit_band(outcomes: Sequence[Outcome], fp_target: float) -> Calibration:
    rows, labels, unknown = [], [], []
    for o in outcomes:
        evidence, song, _ = evidence_of(o.answer)
        if evidence is None:
            continue
        rows.append(evidence)
        labels.append(int(o.query.song is not None and song == o.query.song))
        unknown.append(o.query.song is None)
    model = calibration.fit(rows, np.asarray(labels))
    conf = model.confidences(rows)
    unknown_conf = np.sort(conf[np.asarray(unknown)])[::-1]
    allowed = int(np.floor(fp_target * max(sum(unknown), 1)))
    threshold = 0.5
    if len(unknown_conf) > allowed:
        threshold = max(0.5, float(unknown_conf[allowed]) + 1e-6)
    return replace(
        model,
        threshold=round(threshold, 6),
        fingerprint_version=fingerprint.VERSION,
        fitted_on={"queries": len(rows), "unknown": int(sum(unknown)), "fp_target": fp_target},
    )


def _cell(
    rows: Sequence[Outcome],
    model: Calibration,
    peer: PeerRun | None,
    *,
    condition: str,
    duration: float,
    strategy: str = "all",
) -> CellResult:
    top1 = top1_ranked = top5 = rejected = wrong = 0
    errors, latency = [], []
    peer_top1 = peer_top5 = 0
    peer_latency = []
    for o in rows:
        evidence, song, ranked = evidence_of(o.answer)
        accepted = evidence is not None and model.accepts(evidence)
        right = song == o.query.song
        top1 += accepted and right
        top1_ranked += right
        top5 += o.query.song in ranked[:5]
        rejected += not accepted
        wrong += accepted and not right
        latency.append(o.seconds)
        if right and o.offset_error_s is not None:
            errors.append(o.offset_error_s)
        if peer is not None and o.query.qid in peer.answers:
            answer = peer.answers[o.query.qid]
            peer_top1 += answer.best == o.query.song
            peer_top5 += o.query.song in [r[0] for r in answer.ranked[:5]]
            peer_latency.append(answer.seconds)
    n = max(len(rows), 1)
    return CellResult(
        condition=condition,
        duration_s=duration,
        strategy=strategy,
        queries=len(rows),
        top1=round(top1 / n, 4),
        top1_ranked=round(top1_ranked / n, 4),
        top5=round(top5 / n, 4),
        rejected=round(rejected / n, 4),
        wrong=round(wrong / n, 4),
        offset_error_p95_s=round(float(np.percentile(errors, 95)), 4) if errors else None,
        offset_within_50ms=round(float(np.mean(np.asarray(errors) <= 0.05)), 4) if errors else None,
        latency_p50_s=round(float(np.percentile(latency, 50)), 4) if latency else 0.0,
        latency_p95_s=round(float(np.percentile(latency, 95)), 4) if latency else 0.0,
        audfprint_top1=round(peer_top1 / n, 4) if peer_latency else None,
        audfprint_top5=round(peer_top5 / n, 4) if peer_latency else None,
        audfprint_latency_p50_s=round(float(np.median(peer_latency)), 4) if peer_latency else None,
    )


def _offset_error(query: Query, answer: Recognition, audio: np.ndarray) -> float | None:
    """|answered - true| offset of a right answer; 0 when both spans hold the same music."""
    best = answer.best
    if best is None or best.song_id != query.song:
        return None
    error = abs(best.reference_offset_s - query.start_s)
    if error <= 0.05:
        return error
    span = int(query.duration_s * query.condition.ratio * SAMPLE_RATE)
    a = audio[int(query.start_s * SAMPLE_RATE) :][:span]
    b = audio[max(0, int(best.reference_offset_s * SAMPLE_RATE)) :][:span]
    n = min(len(a), len(b))
    if n < 2048:
        return error
    sa, sb = (np.log1p(np.abs(_frames(x[:n]))) for x in (a, b))
    same = float(np.corrcoef(sa.ravel(), sb.ravel())[0, 1]) > REPEAT_SIMILARITY
    return 0.0 if same else error


def _frames(y: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(y, 2048)[::512]
    return np.fft.rfft(frames * np.hanning(2048), axis=1)


# -- the run -----------------------------------------------------------------------------


def evaluate_recognition(
    *,
    cache_dir: Path,
    catalogue: int = 500,
    held_out: int = 100,
    seeds: Sequence[int] = (0, 1, 2),
    per_cell: int = 30,
    unknown_per_cell: int = 10,
    durations: Sequence[float] = DURATIONS,
    conditions: Sequence[Condition] | None = None,
    calibrate: bool = True,
    calibration_seeds: int = CALIBRATION_SEEDS,
    fp_target: float = 0.003,
    audfprint_python: str | None = None,
    postgres: bool = True,
    postgres_queries: int = 200,
    progress: Callable[[str], None] | None = None,
) -> tuple[RecognitionEvaluation, Calibration]:
    """Run the benchmark; see the module docstring. Returns the result and the calibration."""
    started = time.perf_counter()
    notify = progress or (lambda message: None)
    conditions = list(conditions or distortions.default_conditions())
    notify("rendering the catalogue")
    songs, held, notes = build_songs(cache_dir, catalogue=catalogue, held_out=held_out)
    babble, babble_source = distortions.babble_track(cache_dir, SAMPLE_RATE)

    notify("fingerprinting the catalogue")
    index = MemoryIndex()
    profiles: dict[int, SongProfile] = {}
    fp_seconds = audio_seconds = 0.0
    for song in [*songs, *held]:
        y = _read(song.path)
        profiles[song.ident] = SongProfile.of(y, SAMPLE_RATE, song.piece.truth.beats)
        if song in held:
            continue
        t0 = time.perf_counter()
        ref = fingerprint.reference(y, SAMPLE_RATE)
        fp_seconds += time.perf_counter() - t0
        audio_seconds += ref.duration_s
        index.add(song.ident, ref, song=SongRef(song.ident, song.title))
    hours = audio_seconds / 3600

    pool = {s.ident: s for s in [*songs, *held]}

    def run(
        queries: Sequence[Query],
        model: Calibration,
        label: str,
        sink: Callable[[Query, np.ndarray], None] | None = None,
    ) -> list[Outcome]:
        recognizer = Recognizer(index, calibration=model.without_threshold(), alternatives=REPORTED)
        outcomes = []
        by_song: dict[int, list[Query]] = defaultdict(list)
        for q in queries:
            by_song[q.source].append(q)
        for i, (ident, group) in enumerate(by_song.items()):
            if i % 25 == 0:
                notify(f"{label}: song {i + 1}/{len(by_song)}")
            y = _read(pool[ident].path)
            for q in group:
                clip = render_query(q, y, babble)
                t0 = time.perf_counter()
                answer = recognizer.identify(clip, SAMPLE_RATE)
                outcome = Outcome(q, answer, time.perf_counter() - t0)
                outcome.offset_error_s = _offset_error(q, answer, y)
                outcomes.append(outcome)
                if sink is not None:
                    sink(q, clip)
        return outcomes

    model = calibration.default_calibration()
    fit_info: dict = {"source": "package"}
    cal: list[Outcome] = []
    if calibrate:
        first = 1000 + max(seeds, default=0)
        cal_seeds = range(first, first + calibration_seeds)
        unknown = -(-unknown_per_cell * CALIBRATION_UNKNOWN // calibration_seeds)
        for cal_seed in cal_seeds:
            cal += run(
                _plan(songs, held, profiles, conditions, durations, per_cell, unknown, cal_seed),
                model,
                f"calibration seed {cal_seed}",
            )
        model, fit_info = fit_calibration(cal, fp_target=fp_target, fallback=model)
        fit_info["source"] = f"fitted on seeds {', '.join(map(str, cal_seeds))}"

    peer_python = find_python(audfprint_python)
    tmp = tempfile.TemporaryDirectory(prefix="polymuse-eval-")
    peer_queries: list[tuple[str, Path]] = []

    def keep_for_peer(q: Query, clip: np.ndarray) -> None:
        path = Path(tmp.name) / f"{q.qid}.wav"
        sf.write(path, soxr.resample(clip, SAMPLE_RATE, 11025), 11025, subtype="PCM_16")
        peer_queries.append((q.qid, path))

    outcomes: list[Outcome] = []
    for seed in seeds:
        queries = _plan(
            songs, held, profiles, conditions, durations, per_cell, unknown_per_cell, seed
        )
        outcomes += run(queries, model, f"seed {seed}", keep_for_peer if peer_python else None)
    peer = None
    peer_info: dict = {"available": bool(peer_python)}
    if peer_python:
        notify(f"audfprint: {len(peer_queries)} queries")
        refs = [(s.ident, s.path) for s in songs]
        peer = run_audfprint(peer_python, refs, peer_queries, Path(tmp.name) / "afp")
        peer_info.update(
            python=peer_python,
            ingest_x_realtime=round(audio_seconds / peer.ingest_s, 1),
            hashes_per_s=round(peer.hashes / audio_seconds, 2),
        )
    else:
        notes.append("audfprint not importable: no peer baseline (give --audfprint-python)")
    tmp.cleanup()

    known = [o for o in outcomes if o.query.song is not None]
    cells = []
    for condition, duration in itertools.product(conditions, durations):
        rows = [
            o for o in known if o.query.condition == condition and o.query.duration_s == duration
        ]
        cells.append(_cell(rows, model, peer, condition=condition.name, duration=duration))
    strategy_rows = []
    for strategy, duration in itertools.product(distortions.STRATEGIES, durations):
        rows = [o for o in known if o.query.strategy == strategy and o.query.duration_s == duration]
        strategy_rows.append(
            _cell(rows, model, peer, condition="all", duration=duration, strategy=strategy)
        )
    unknown_rows = []
    for duration in durations:
        rows = [o for o in outcomes if o.query.song is None and o.query.duration_s == duration]
        accepted = sum(
            1 for o in rows if (e := evidence_of(o.answer)[0]) is not None and model.accepts(e)
        )
        peer_fp = None
        if peer is not None:
            peer_fp = sum(
                peer.answers[o.query.qid].best is not None
                for o in rows
                if o.query.qid in peer.answers
            ) / max(len(rows), 1)
        unknown_rows.append(
            UnknownResult(
                duration_s=duration,
                queries=len(rows),
                false_positive_rate=round(accepted / max(len(rows), 1), 4),
                audfprint_false_positive_rate=None if peer_fp is None else round(peer_fp, 4),
            )
        )

    pg_info: dict = {}
    if postgres:
        notify("PostgreSQL: ingest and timing")
        pg_info = _postgres_check(cache_dir, songs, known, model, babble, postgres_queries)

    result = RecognitionEvaluation(
        catalogue_songs=len(songs),
        held_out_songs=len(held),
        catalogue_hours=round(hours, 3),
        seeds=list(seeds),
        per_cell=per_cell,
        babble_source=babble_source,
        fingerprint_version=fingerprint.VERSION,
        calibration={**json.loads(model.to_json()), **fit_info},
        cells=cells,
        strategies=strategy_rows,
        unknown=unknown_rows,
        fingerprint_x_realtime=round(audio_seconds / fp_seconds, 1),
        index_mb_per_hour_compact=round(index.nbytes / 1e6 / hours, 3),
        reference_hashes_per_s=round(len(index) / audio_seconds, 2),
        postgres=pg_info,
        audfprint=peer_info,
        notes=notes,
        seconds=round(time.perf_counter() - started, 1),
    )
    result.acceptance = acceptance(result)
    result.queries = [_row(o, model, peer) for o in outcomes]
    result.calibration_queries = [_row(o, model, None) for o in cal]
    match_peer_operating_point(result)
    return result, model


def _row(o: Outcome, model: Calibration, peer: PeerRun | None) -> QueryRow:
    evidence, song, _ = evidence_of(o.answer)
    q = o.query
    answer = peer.answers.get(q.qid) if peer is not None else None
    return QueryRow(
        qid=q.qid,
        seed=q.seed,
        condition=q.condition.name,
        duration_s=q.duration_s,
        strategy=q.strategy,
        song=q.song,
        answered=song,
        found=evidence.found if evidence else None,
        second_found=evidence.second_found if evidence else None,
        fraction=round(evidence.fraction, 4) if evidence else None,
        score=evidence.score if evidence else None,
        precision=round(evidence.precision, 4) if evidence else None,
        absence=round(evidence.absence, 4) if evidence else None,
        depth_db=round(evidence.depth_db, 2) if evidence else None,
        steady=evidence.steady if evidence else None,
        steady_explained=evidence.steady_explained if evidence else None,
        raised=round(evidence.raised, 4) if evidence else None,
        pitch_shift=evidence.pitch_shift if evidence else None,
        tempo_ratio=evidence.tempo_ratio if evidence else None,
        confidence=round(model.confidence(evidence), 5) if evidence else None,
        accepted=model.accepts(evidence) if evidence else None,
        seconds=round(o.seconds, 4),
        offset_error_s=o.offset_error_s,
        audfprint=answer.best if answer is not None else None,
    )


def _plan(songs, held, profiles, conditions, durations, per_cell, unknown_per_cell, seed):
    known = plan_queries(
        songs,
        profiles,
        conditions=conditions,
        durations=durations,
        per_cell=per_cell,
        seed=seed,
        known=True,
    )
    unknown = plan_queries(
        held,
        profiles,
        conditions=conditions,
        durations=durations,
        per_cell=unknown_per_cell,
        seed=seed,
        known=False,
    )
    return known + unknown


def _postgres_check(
    cache_dir: Path,
    songs: Sequence[Song],
    known: Sequence[Outcome],
    model: Calibration,
    babble: np.ndarray,
    count: int,
) -> dict:
    """Ingest the catalogue into an embedded server of its own; time 5 s queries against it.

    The server lives under `cache_dir/pg-home-v<fingerprint version>` (re-runs skip the files it
    already holds; a new version starts a new catalogue) and is stopped at the end.
    """
    from polymuse.ingest.pipeline import IngestOptions, run_ingest
    from polymuse.recognition.extractor import LandmarkExtractor
    from polymuse.recognition.postgres import PostgresIndex
    from polymuse.settings import Settings
    from polymuse.store import open_store

    settings = Settings(home=cache_dir / f"pg-home-v{fingerprint.VERSION}", dsn=None)
    with open_store(settings) as store:
        t0 = time.perf_counter()
        summary = run_ingest(
            store,
            [s.path for s in songs],
            IngestOptions(extractors=[LandmarkExtractor()], jobs=1, chromaprint=False),
        )
        ingest_s = time.perf_counter() - t0
        with store.connection("analysing the postings") as conn:
            conn.execute("ANALYZE fingerprint_posting")
            conn.execute("ANALYZE feature_fact")
            rows = conn.execute(
                "SELECT object_id, file_path FROM audio_object WHERE object_type = 'asset'"
            ).fetchall()
        by_path = {str(s.path): s.ident for s in songs}
        ident_of = {int(a): by_path.get(p) for a, p in rows}
        pg = PostgresIndex(store)
        recognizer = Recognizer(pg, calibration=model)
        pool = {s.ident: s for s in songs}
        picked = [o for o in known if o.query.duration_s == 5.0][:count]
        latency, same = [], 0
        for o in picked:
            clip = render_query(o.query, _read(pool[o.query.source].path), babble)
            t1 = time.perf_counter()
            answer = recognizer.identify(clip, SAMPLE_RATE)
            latency.append(time.perf_counter() - t1)
            ours = answer.best
            memory = evidence_of(o.answer)[1]
            same += (ident_of.get(ours.asset_id) if ours else None) == memory
        stats = pg.stats()
        where = store.where
    if store.server is not None:
        store.server.stop()  # the benchmark's own server, in its own home
    return {
        "server": where,
        "ingest_added": len(summary.added),
        "ingest_skipped": len(summary.skipped),
        "ingest_x_realtime": round(summary.audio_s / ingest_s, 1) if summary.audio_s else None,
        "queries": len(picked),
        "latency_p50_s": round(float(np.percentile(latency, 50)), 4) if latency else None,
        "latency_p95_s": round(float(np.percentile(latency, 95)), 4) if latency else None,
        "same_answer_as_memory": round(same / max(len(picked), 1), 4),
        **stats,
    }


def acceptance(result: RecognitionEvaluation) -> dict[str, dict]:
    """The issue's acceptance figures, each with its goal and whether it is met."""

    def cell(condition: str, duration: float) -> float | None:
        for c in result.cells:
            if c.condition == condition and c.duration_s == duration and c.queries:
                return c.top1
        return None

    unknown = [u for u in result.unknown if u.queries]
    fp = (
        sum(u.false_positive_rate * u.queries for u in unknown) / sum(u.queries for u in unknown)
        if unknown
        else None
    )
    values = {
        "clean 5 s top-1": cell("clean", 5.0),
        "babble 0 dB 3 s top-1": cell("babble 0 dB", 3.0),
        "speed -5 % 5 s top-1": cell("speed -5 %", 5.0),
        "speed +5 % 5 s top-1": cell("speed +5 %", 5.0),
        "pitch -1 st 5 s top-1": cell("pitch -1 st", 5.0),
        "pitch +1 st 5 s top-1": cell("pitch +1 st", 5.0),
        "out-of-catalogue false positives": fp,
        "PostgreSQL p50, 5 s clip (s)": result.postgres.get("latency_p50_s"),
        "fingerprinting (x real time, 1 core)": result.fingerprint_x_realtime,
        "index size (MB per hour, PostgreSQL)": result.postgres.get("mb_per_hour"),
    }
    out = {}
    for name, (op, goal) in GOALS.items():
        value = values.get(name)
        ok = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out[name] = {
            "value": None if value is None else round(value, 4),
            "goal": f"{op} {goal:g}",
            "ok": ok,
        }
    return out


def write_reports(result: RecognitionEvaluation, folder: Path) -> tuple[Path, Path]:
    """`recognition.json`, `recognition.md`, and one row per query in `recognition_queries.csv`
    (and per fitting query in `recognition_calibration_queries.csv`)."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "recognition.json"
    json_path.write_text(result.model_dump_json(indent=2), encoding="utf-8")
    md_path = folder / "recognition.md"
    md_path.write_text(markdown(result), encoding="utf-8")
    for name, rows in (
        ("recognition_queries.csv", result.queries),
        ("recognition_calibration_queries.csv", result.calibration_queries),
    ):
        if rows:
            with open(folder / name, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(QueryRow.model_fields))
                writer.writeheader()
                writer.writerows(row.model_dump() for row in rows)
    return json_path, md_path


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _ratio(ours: float | None, peer: float | None) -> str:
    if ours is None or peer is None:
        return "-"
    return "inf" if peer == 0 and ours > 0 else ("1.00" if peer == ours else f"{ours / peer:.2f}")


def markdown(result: RecognitionEvaluation) -> str:
    r = result
    lines = [
        "# Recognition benchmark",
        "",
        f"{r.catalogue_songs} catalogue songs ({r.catalogue_hours:.2f} h, music21 chorales and "
        f"fiddle tunes rendered through FluidSynth), {r.held_out_songs} held-out songs for "
        f"out-of-catalogue queries; seeds {r.seeds}, {r.per_cell} queries per cell and seed; "
        f"babble from {r.babble_source}; fingerprint version {r.fingerprint_version}; "
        f"{r.seconds:.0f} s.",
        "",
        "## Acceptance",
        "",
        "| figure | value | goal | met |",
        "| --- | --- | --- | --- |",
    ]
    for name, a in r.acceptance.items():
        met = {True: "yes", False: "**no**", None: "-"}[a["ok"]]
        lines.append(
            f"| {name} | {a['value'] if a['value'] is not None else '-'} | {a['goal']} | {met} |"
        )
    lines += [
        "",
        "## Top-1 by condition and duration (%, ours / audfprint / ratio)",
        "",
        "Top-1 counts an answer only when it is accepted (confidence over the threshold) and "
        "right; `ranked` ignores the threshold; audfprint answers when >= 5 hashes align. "
        "`at peer FP` is our top-1 at the lower threshold that accepts as many "
        "out-of-catalogue clips as audfprint answers "
        f"({json.dumps(r.peer_operating_point) if r.peer_operating_point else 'no peer'}), "
        "and `ratio @FP` compares the two there.",
        "",
        "| condition | s | n | top-1 | ranked | top-5 | rejected | wrong | audfprint | ratio "
        "| at peer FP | ratio @FP | offset p95 (s) | offset <= 50 ms | p50 (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]
    for c in r.cells:
        lines.append(
            f"| {c.condition} | {c.duration_s:g} | {c.queries} | {_pct(c.top1)} | "
            f"{_pct(c.top1_ranked)} | {_pct(c.top5)} | {_pct(c.rejected)} | {_pct(c.wrong)} | "
            f"{_pct(c.audfprint_top1)} | {_ratio(c.top1, c.audfprint_top1)} | "
            f"{_pct(c.top1_at_peer_fp)} | "
            f"{_ratio(c.top1_at_peer_fp, c.audfprint_top1)} | "
            f"{c.offset_error_p95_s if c.offset_error_p95_s is not None else '-'} | "
            f"{_pct(c.offset_within_50ms)} | {1000 * c.latency_p50_s:.0f} |"
        )
    lines += [
        "",
        "## Segment strategies (all conditions, top-1 %, ours / audfprint)",
        "",
        "| strategy | s | n | top-1 | audfprint |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in r.strategies:
        lines.append(
            f"| {c.strategy} | {c.duration_s:g} | {c.queries} | {_pct(c.top1)} | "
            f"{_pct(c.audfprint_top1)} |"
        )
    lines += [
        "",
        "## Out-of-catalogue queries (false-positive rate %)",
        "",
        "| s | n | ours | audfprint |",
        "| --- | --- | --- | --- |",
    ]
    for u in r.unknown:
        lines.append(
            f"| {u.duration_s:g} | {u.queries} | {_pct(u.false_positive_rate)} | "
            f"{_pct(u.audfprint_false_positive_rate)} |"
        )
    lines += [
        "",
        "## Speed and size",
        "",
        f"- fingerprinting: {r.fingerprint_x_realtime:g}x real time on one core "
        f"({r.reference_hashes_per_s:g} reference hashes/s)",
        f"- compact index (8 B a posting, 4 B a stored peak): {r.index_mb_per_hour_compact:g} "
        "MB per hour",
        f"- PostgreSQL: {json.dumps(r.postgres)}",
        f"- audfprint: {json.dumps(r.audfprint)}",
        f"- calibration: {json.dumps(r.calibration)}",
    ]
    if r.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in r.notes]]
    return "\n".join(lines) + "\n"
