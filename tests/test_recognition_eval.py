"""The recognition evaluation: its calibration fit, and its comparison with audfprint at one
false-positive rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polymuse.evaluation import recognition as R
from polymuse.evaluation.distortions import Condition
from polymuse.recognition.models import Recognition, SongMatch
from polymuse.tools.synth import GroundTruth, NoteEvent, PartNotes


def _row(i: int, song: int | None, confidence: float, peer: int | None) -> R.QueryRow:
    return R.QueryRow(
        qid=str(i),
        seed=0,
        condition="reverb",
        duration_s=5.0,
        strategy="random",
        song=song,
        answered=7 if song is None else song,
        found=None,
        second_found=None,
        fraction=None,
        score=None,
        precision=None,
        absence=None,
        confidence=confidence,
        seconds=0.05,
        offset_error_s=None,
        audfprint=peer,
    )


def test_top1_at_the_peer_false_positive_rate() -> None:
    """audfprint answers 2 of 10 unknowns, so we may accept our 2 most confident unknowns."""
    unknown = [
        _row(i, None, c, 3 if i < 2 else None)
        for i, c in enumerate([0.9, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.0, 0.0])
    ]
    known = [_row(10 + i, 1, c, 1) for i, c in enumerate([0.95, 0.7, 0.55, 0.45])]
    cell = R.CellResult(
        condition="reverb",
        duration_s=5.0,
        queries=4,
        top1=0.25,
        top1_ranked=1.0,
        top5=1.0,
        rejected=0.75,
        wrong=0.0,
        latency_p50_s=0.05,
        latency_p95_s=0.05,
        audfprint_top1=1.0,
    )
    result = R.RecognitionEvaluation(
        catalogue_songs=1,
        held_out_songs=1,
        catalogue_hours=0.1,
        seeds=[0],
        per_cell=4,
        babble_source="test",
        fingerprint_version="2",
        calibration={"threshold": 0.93},
        cells=[cell],
        strategies=[],
        unknown=[],
        fingerprint_x_realtime=1.0,
        index_mb_per_hour_compact=1.0,
        reference_hashes_per_s=1.0,
    )
    result.queries = unknown + known
    R.match_peer_operating_point(result)
    assert result.peer_operating_point["audfprint_false_positive_rate"] == 0.2
    assert result.peer_operating_point["our_false_positive_rate"] == 0.2
    assert cell.top1_at_peer_fp == 0.75  # 0.95, 0.7 and 0.55 clear the 0.5 + 1e-6 threshold
    assert "at peer FP" in R.markdown(result)


def _piece(name: str, pitches: list[int], bpm: float = 100.0) -> R.corpus.Piece:
    beat = 60.0 / bpm
    notes = [
        NoteEvent(onset=i * beat, offset=(i + 1) * beat, pitch=p) for i, p in enumerate(pitches)
    ]
    truth = GroundTruth(
        time_signature="4/4",
        beats_per_bar=4,
        beat_unit=1.0,
        beat_division=2,
        bpm=bpm,
        key=None,
        start=0.0,
        end=len(pitches) * beat,
        beats=[],
        downbeats=[],
        parts=[PartNotes(name="s", program=0, notes=notes)],
    )
    return R.corpus.Piece(
        piece_id=name, source=name, sound="test", audio=Path("a"), midi=Path("m"), truth=truth
    )


def test_a_passage_a_semitone_away_makes_two_pieces_one() -> None:
    """A tune in a neighbouring key is a ±1 semitone copy to the recognizer; further is not."""
    tune = [60, 62, 64, 65, 67, 65, 64, 62, 60, 59]
    kept, dropped = R._distinct(
        [
            _piece("a", tune),
            _piece("a-up-1", [p + 1 for p in tune], bpm=90.0),
            _piece("a-up-3", [p + 3 for p in tune]),
        ]
    )
    assert [p.piece_id for p in kept] == ["a", "a-up-3"] and dropped == 1


def _outcome(
    i: int, song: int | None, answered: int, found: int, depth: float, seconds: float = 3.0
) -> R.Outcome:
    match = SongMatch(
        song_id=answered,
        asset_id=answered,
        title=str(answered),
        confidence=0.0,
        score=found // 2,
        reference_offset_s=0.0,
        query_start_s=0.0,
        query_end_s=3.0,
        reference_start_s=0.0,
        reference_end_s=3.0,
        tempo_ratio=1.0,
        peaks_checked=60,
        peaks_found=found,
        depth_db=depth,
        peaks_raised=found,
    )
    runner_up = match.model_copy(update={"song_id": 99, "peaks_found": 8})
    answer = Recognition(
        status="unknown",
        alternatives=[match, runner_up],
        query_duration_s=seconds,
        triplets=100,
        probes=100,
        postings=100,
    )
    condition = Condition("clean", "clean")
    query = R.Query(str(i), answered, song, condition, seconds, "random", 0, 0.0)
    return R.Outcome(query, answer, 0.05)


def test_fitted_calibration_keeps_unknowns_under_the_target() -> None:
    """The threshold admits at most `fp_target` of the fitting run's unknowns."""
    rng = np.random.default_rng(0)
    known = [_outcome(i, 1, 1, int(f), 1.0) for i, f in enumerate(rng.integers(12, 60, 300))]
    found, depth = rng.integers(5, 30, 400), rng.uniform(2, 15, 400)
    unknown = [_outcome(300 + i, None, 2, int(found[i]), float(depth[i])) for i in range(400)]
    model, info = R.fit_calibration(known + unknown, fp_target=0.01)
    assert model.knots and info["threshold"] == model.threshold >= 0.5
    evidence = [R.evidence_of(o.answer)[0] for o in unknown]
    assert np.sum(model.confidences(evidence) >= model.threshold) <= 4
    accepted = [R.evidence_of(o.answer)[0] for o in known]
    assert np.mean(model.confidences(accepted) >= model.threshold) > 0.5


def test_short_clips_get_a_model_and_threshold_of_their_own() -> None:
    """1 s look-alikes find as many peaks as 3 s right answers: fitted apart, each length band
    keeps its own unknowns under the target and still accepts its right answers. A run of
    short clips only refits the short model and keeps the main one it is given."""
    rng = np.random.default_rng(0)

    def band(seconds: float, start: int, known: tuple[int, int], unknown: tuple[int, int]):
        right = [
            _outcome(start + i, 1, 1, int(f), 1.0, seconds)
            for i, f in enumerate(rng.integers(*known, 300))
        ]
        found, depth = rng.integers(*unknown, 400), rng.uniform(0, 12, 400)
        wrong = [
            _outcome(start + 300 + i, None, 2, int(f), float(d), seconds)
            for i, (f, d) in enumerate(zip(found, depth, strict=True))
        ]
        return right, wrong

    long_right, long_wrong = band(3.0, 0, (15, 60), (3, 20))
    short_right, short_wrong = band(1.0, 1000, (25, 40), (10, 30))
    model, info = R.fit_calibration(
        long_right + long_wrong + short_right + short_wrong, fp_target=0.01
    )
    assert model.short is not None and info["short_threshold"] == model.short.threshold
    for right, wrong in ((long_right, long_wrong), (short_right, short_wrong)):
        assert sum(model.accepts(R.evidence_of(o.answer)[0]) for o in wrong) <= 4
        assert np.mean([model.accepts(R.evidence_of(o.answer)[0]) for o in right]) > 0.3
    alone = R.fit_calibration(long_right + long_wrong, fp_target=0.01)[0]
    assert sum(alone.accepts(R.evidence_of(o.answer)[0]) for o in short_wrong) > 20
    refit, _ = R.fit_calibration(short_right + short_wrong, fp_target=0.01, fallback=model)
    assert (refit.weights, refit.threshold) == (model.weights, model.threshold)
    assert refit.short is not None
    assert R.Calibration.from_json(model.to_json()) == model
