"""The semantic lane's rules: fusing with the exact lane, and fitting its threshold.

The lane against a real catalogue is tested in `tests/db/test_semantic_lane.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polymuse.errors import ParameterError
from polymuse.recognition import (
    THRESHOLDS,
    Recognition,
    SemanticCandidate,
    SemanticOpinion,
    SongMatch,
    fit_threshold,
    fuse,
)
from polymuse.recognition.semantic import load_thresholds, threshold_for


def exact_match(song_id: int) -> SongMatch:
    return SongMatch(
        song_id=song_id,
        asset_id=10 * song_id,
        title=f"Song {song_id}",
        confidence=0.9,
        score=40,
        reference_offset_s=12.0,
        query_start_s=0.0,
        query_end_s=5.0,
        reference_start_s=12.0,
        reference_end_s=17.0,
        tempo_ratio=1.0,
    )


def answer(status: str, *, match: int | None = None, runner_up: int | None = None) -> Recognition:
    return Recognition(
        status=status,
        match=exact_match(match) if match else None,
        alternatives=[exact_match(runner_up)] if runner_up else [],
        query_duration_s=10.0,
        triplets=100,
        probes=300,
        postings=50,
        decided_by="exact" if status == "match" else "none",
    )


def opinion(
    *similarities: float, first_song: int = 1, threshold: float | None = 0.9
) -> SemanticOpinion:
    candidates = [
        SemanticCandidate(
            song_id=first_song + i,
            asset_id=10 * (first_song + i),
            title=f"Song {first_song + i}",
            similarity=s,
            reference_start_s=20.0,
            reference_end_s=30.0,
            query_start_s=0.0,
            query_end_s=10.0,
        )
        for i, s in enumerate(similarities)
    ]
    return SemanticOpinion(model_name="semantic-debug", threshold=threshold, candidates=candidates)


def test_exact_lane_decides_and_keeps_the_second_opinion() -> None:
    fused = fuse(answer("match", match=1), opinion(0.97, 0.5))
    assert fused.decided_by == "exact" and fused.match.lane == "exact"
    assert fused.match.song_id == 1 and fused.semantic.agrees is True
    disagreeing = fuse(answer("match", match=2), opinion(0.99))
    assert disagreeing.decided_by == "exact" and disagreeing.match.song_id == 2
    assert disagreeing.semantic.agrees is False


def test_semantic_lane_decides_above_its_threshold() -> None:
    fused = fuse(answer("unknown", runner_up=3), opinion(0.95, 0.6, first_song=3))
    assert fused.status == "match" and fused.decided_by == "semantic"
    m = fused.match
    assert (m.lane, m.song_id, m.asset_id, m.similarity) == ("semantic", 3, 30, 0.95)
    assert m.reference_offset_s == 20.0 and (m.reference_start_s, m.reference_end_s) == (20, 30)
    assert m.tempo_ratio == 1.0 and m.score == 0 and m.peaks_found == 0
    assert 0.5 <= m.confidence <= 1.0
    assert fused.semantic.agrees is True  # with the exact lane's runner-up
    assert fused.alternatives[0].song_id == 3  # the exact lane's runners-up stay


@pytest.mark.parametrize("similarity", [0.0, 0.5, 0.8999])
def test_below_the_threshold_the_answer_stays_unknown(similarity: float) -> None:
    fused = fuse(answer("unknown", runner_up=5), opinion(similarity))
    assert fused.status == "unknown" and fused.match is None
    assert fused.decided_by == "none" and fused.semantic.agrees is False
    assert fused.semantic.candidates[0].similarity == similarity


def test_a_lane_without_a_fitted_threshold_only_advises() -> None:
    fused = fuse(answer("unknown", runner_up=1), opinion(1.0, threshold=None))
    assert fused.status == "unknown" and fused.decided_by == "none"
    assert fused.semantic.candidates[0].song_id == 1 and fused.semantic.agrees is True


def test_threshold_is_inclusive_and_confidence_grows_with_similarity() -> None:
    at = fuse(answer("unknown"), opinion(0.9)).match
    above = fuse(answer("unknown"), opinion(0.98)).match
    assert at.confidence == 0.5 and above.confidence > at.confidence
    assert fuse(answer("unknown"), opinion(0.9)).semantic.agrees is None


def test_silent_or_absent_lane_leaves_the_exact_answer() -> None:
    exact = answer("unknown", runner_up=2)
    assert fuse(exact, None) == exact
    silent = SemanticOpinion(model_name="semantic-musicnn", threshold=0.9, note="no vectors")
    fused = fuse(exact, silent)
    assert fused.status == "unknown" and fused.semantic.note == "no vectors"
    assert fused.semantic.agrees is None
    assert fuse(answer("match", match=1), silent).decided_by == "exact"


def test_fit_threshold_meets_the_false_positive_target() -> None:
    rng = np.random.default_rng(0)
    negatives = np.clip(rng.normal(0.6, 0.08, 4000), -1, 1)
    positives = np.clip(rng.normal(0.97, 0.02, 1000), -1, 1)
    sims = np.concatenate([negatives, positives])
    same = np.concatenate([np.zeros(4000, bool), np.ones(1000, bool)])
    fit = fit_threshold(sims, same, max_false_positive_rate=0.005)
    assert fit_threshold(sims, same, max_false_positive_rate=0.0).threshold > fit.threshold
    assert fit.negatives == 4000 and fit.positives == 1000
    assert fit.false_positive_rate <= 0.005
    assert np.mean(negatives >= fit.threshold) == fit.false_positive_rate
    # The lowest such threshold: one step (1e-4) lower lets in more than allowed.
    assert np.mean(negatives >= fit.threshold - 2e-4) > 0.005
    assert fit.true_positive_rate > 0.99


def test_fit_threshold_with_few_negatives_lands_just_above_the_highest() -> None:
    fit = fit_threshold([0.71, 0.93, 0.5, 0.99], [False, False, False, True])
    assert fit.threshold == pytest.approx(0.9301)
    assert fit.false_positive_rate == 0.0 and fit.true_positive_rate == 1.0


def test_fit_threshold_rejects_bad_input() -> None:
    with pytest.raises(ParameterError, match="negatives"):
        fit_threshold([0.9, 0.95], [True, True])
    with pytest.raises(ParameterError, match="as long"):
        fit_threshold([0.9, 0.95], [True])
    with pytest.raises(ParameterError, match="max_false_positive_rate"):
        fit_threshold([0.9], [False], max_false_positive_rate=1.0)


def test_shipped_thresholds_come_from_the_package_data() -> None:
    """musicnn's is fitted (`polymuse eval semantic-lane`); the debug encoder has none."""
    assert load_thresholds() == THRESHOLDS and set(THRESHOLDS) == {"musicnn"}
    assert 0.95 < threshold_for("musicnn") < 1.0
    assert threshold_for("debug") is None  # its lane only advises


def test_thresholds_file_absent_or_malformed(tmp_path: Path) -> None:
    assert load_thresholds(tmp_path / "absent.json") == {}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"musicnn": 0.98}))
    with pytest.raises(ParameterError, match="not a semantic-lane thresholds file"):
        load_thresholds(bad)
