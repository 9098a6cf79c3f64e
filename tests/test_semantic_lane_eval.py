"""The semantic-lane evaluation's core on synthetic audio, its threshold file and its command.

The full run on music21 renders with musicnn is `polymuse eval semantic-lane`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import signal
from typer.testing import CliRunner

from polymuse.cli import app
from polymuse.errors import ParameterError
from polymuse.evaluation import semantic_lane as lane_eval
from polymuse.evaluation.semantic_lane import Embedded, Query, Recipe
from polymuse.recognition.semantic import load_thresholds
from polymuse.tools.encoders.audio import DebugAudioEncoder, unit

SR = 16000
RECIPE = Recipe(starts=(7.3,), lengths=(10.0, 6.0), conditions=("clean", "gain", "white 20 dB"))


def band_noise(low: float, high: float, seed: int, seconds: float = 30.0) -> np.ndarray:
    """Noise in one band: pieces the debug encoder's band energies tell apart."""
    noise = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    sos = signal.butter(4, [low, high], btype="bandpass", fs=SR, output="sos")
    return (0.1 * signal.sosfilt(sos, noise)).astype(np.float32)


@pytest.fixture(scope="module")
def embedded() -> list[Embedded]:
    encoder = DebugAudioEncoder()
    bands = [(200, 800), (1000, 3000), (3500, 7000)]
    return [
        lane_eval.embed_piece(
            band_noise(lo, hi, seed), SR, encoder, RECIPE, np.random.default_rng(seed)
        )
        for seed, (lo, hi) in enumerate(bands)
    ]


def test_pieces_are_catalogued_in_ingest_windows_and_queried_per_condition(
    embedded: list[Embedded],
) -> None:
    for piece in embedded:
        assert list(piece.window_starts) == [0.0, 5.0, 10.0, 15.0, 20.0]
        assert np.allclose(np.linalg.norm(piece.windows, axis=1), 1.0, atol=1e-5)
        assert [(q.length_s, q.condition) for q in piece.queries] == [
            (length, c) for length in RECIPE.lengths for c in RECIPE.conditions
        ]


def test_distinct_pieces_fit_a_threshold_that_accepts_their_own_queries(
    embedded: list[Embedded],
) -> None:
    names, kinds = ["low", "mid", "high"], ["chorale", "chorale", "tune"]
    rows = lane_eval.score(embedded, names, kinds)
    assert len(rows) == 3 * 2 * 3
    assert all(r.own > r.other and r.other_piece != r.piece for r in rows)
    fit = lane_eval.fit(rows, fp_target=0.0)
    assert fit.false_positive_rate == 0.0 and fit.negatives == fit.positives == len(rows)
    assert fit.threshold > max(r.other for r in rows)
    cells = lane_eval.cells(rows, fit.threshold)
    assert [(c.condition, c.length_s, c.queries) for c in cells][:3] == [
        ("clean", 10.0, 3),
        ("gain", 10.0, 3),
        ("white 20 dB", 10.0, 3),
    ]
    clean = cells[0]
    assert (clean.accepted, clean.wrong, clean.ranked_first) == (1.0, 0.0, 1.0)


def test_score_takes_each_pieces_best_window_rounded_as_the_lane_reports() -> None:
    e = np.eye(3, dtype=np.float32)
    query = unit(np.array([1.0, 0.3, 0.0], np.float32))
    pieces = [
        Embedded(np.array([0.0, 5.0]), np.stack([e[2], e[0]]), [Query(1.0, 6.0, "clean", query)]),
        Embedded(np.array([0.0]), e[1][None], []),
    ]
    [row] = lane_eval.score(pieces, ["a", "b"], ["chorale", "tune"])
    assert (row.own, row.other, row.other_piece) == (round(float(query[0]), 4), 0.2873, "b")
    assert row.reference_start_s == 5.0
    with pytest.raises(ParameterError, match="2 pieces"):
        lane_eval.score(pieces[:1], ["a"], ["chorale"])
    wrong = lane_eval.cells([row.model_copy(update={"other": 0.99})], threshold=0.98)
    assert (wrong[0].accepted, wrong[0].wrong, wrong[0].ranked_first) == (0.0, 1.0, 0.0)


def test_saved_threshold_is_what_the_lane_loads(embedded: list[Embedded], tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"schema_version": 1, "encoders": {"other": {"threshold": 0.9}}}))
    rows = lane_eval.score(embedded, ["low", "mid", "high"], ["chorale"] * 3)
    fit = lane_eval.fit(rows, fp_target=0.0)
    result = lane_eval.SemanticLaneEvaluation(
        encoder="debug",
        encoder_version="test",
        date="2026-01-01",
        seed=0,
        pieces=["low", "mid", "high"],
        window_s=10.0,
        hop_s=5.0,
        catalogue_windows=15,
        conditions=list(RECIPE.conditions),
        starts_s=list(RECIPE.starts),
        lengths_s=list(RECIPE.lengths),
        fp_target=0.0,
        threshold=fit.threshold,
        false_positive_rate=fit.false_positive_rate,
        true_positive_rate=fit.true_positive_rate,
        positives=fit.positives,
        negatives=fit.negatives,
        shipped_threshold=None,
        cells=lane_eval.cells(rows, fit.threshold),
        rows=rows,
        seconds=1.0,
    )
    lane_eval.save_threshold(result, path, command="polymuse eval semantic-lane")
    assert load_thresholds(path) == {"debug": fit.threshold, "other": 0.9}
    entry = json.loads(path.read_text())["encoders"]["debug"]
    assert entry["pieces"] == 3 and entry["queries"] == 18 and entry["fp_target"] == 0.0
    json_path, md_path = lane_eval.write_reports(result, tmp_path / "eval")
    assert json.loads(json_path.read_text())["threshold"] == fit.threshold
    assert f"| {fit.threshold:g} |" in md_path.read_text()


def test_eval_command_is_registered() -> None:
    result = CliRunner().invoke(app, ["eval", "semantic-lane", "--help"])
    assert result.exit_code == 0, result.output
    assert "--save-threshold" in result.output and "--encoder" in result.output
