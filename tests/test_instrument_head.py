"""The instrument-family head: timbre statistics, window cutting, loading, its evidence in the
descriptor scores, and the packaged head's provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polymuse.errors import ModelUnavailableError, ParameterError
from polymuse.tools.semantics.bank import load_bank
from polymuse.tools.semantics.instrument_head import (
    CLASSES,
    DESCRIPTOR_LINKS,
    SAMPLE_RATE,
    TIMBRE_DIM,
    InstrumentHead,
    timbre_statistics,
    window_segments,
)
from polymuse.tools.semantics.scoring import (
    HEAD_EVIDENCE,
    Calibration,
    DescriptorScorer,
    rank_categories,
)

RNG = np.random.default_rng(0)


def _tone(seconds: float, f0: float, *, harmonics: int, decay: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, harmonics + 1))
    return (y * np.exp(-decay * (t % 0.5))).astype(np.float32)


def test_timbre_statistics_ignore_gain_and_tell_timbres_apart() -> None:
    dull = _tone(3.0, 220, harmonics=1, decay=0.0)
    bright_plucked = _tone(3.0, 220, harmonics=12, decay=8.0)
    stats = timbre_statistics(np.stack([dull, 0.05 * dull, bright_plucked]))
    assert stats.shape == (3, TIMBRE_DIM)
    np.testing.assert_allclose(stats[0], stats[1], atol=1e-3)
    centroid = 2 * 19 + 2  # log2 centroid mean
    assert stats[2, centroid] > stats[0, centroid] + 0.5
    fall = 2 * 19 + 5  # mean fall of the level per frame: the plucked tone decays
    assert stats[2, fall] < stats[0, fall] - 0.1


def test_timbre_statistics_validate_input() -> None:
    with pytest.raises(ParameterError):
        timbre_statistics(np.zeros(4000, dtype=np.float32))
    silent = timbre_statistics(np.zeros((1, 4000), dtype=np.float32))
    assert not silent.any()


def test_window_segments_are_centred_and_zero_padded() -> None:
    y = np.arange(10 * SAMPLE_RATE, dtype=np.float32)
    segments = window_segments(y, np.array([0.5, 5.0]), 2.0, sample_rate=SAMPLE_RATE)
    assert segments.shape == (2, 2 * SAMPLE_RATE)
    assert segments[0, : SAMPLE_RATE // 2].sum() == 0  # before the start
    assert segments[0, SAMPLE_RATE // 2] == 0 and segments[0, -1] == 1.5 * SAMPLE_RATE - 1
    assert segments[1, 0] == 4 * SAMPLE_RATE


def _random_head(dim: int = 12) -> InstrumentHead:
    return InstrumentHead(
        encoder="debug",
        classes=CLASSES,
        mean=RNG.standard_normal(dim),
        scale=RNG.uniform(0.5, 2, dim),
        weights=RNG.standard_normal((len(CLASSES), dim)),
        bias=RNG.standard_normal(len(CLASSES)),
        provenance={"date": "2026-01-01", "soundfonts": [{"name": "test", "licence": "MIT"}]},
    )


def test_head_round_trip_and_probabilities(tmp_path: Path) -> None:
    head = _random_head()
    path = tmp_path / "head.json"
    path.write_text(head.to_json())
    loaded = InstrumentHead.load(path)
    x = RNG.standard_normal((5, 12))
    np.testing.assert_allclose(
        loaded.window_probabilities(x), head.window_probabilities(x), atol=1e-4
    )
    assert np.allclose(loaded.window_probabilities(x).sum(axis=1), 1)
    assert "test MIT" in loaded.model_info.licence
    with pytest.raises(ParameterError):
        loaded.window_probabilities(np.zeros((2, 3)))


def test_broken_head_file_is_model_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "head.json"
    path.write_text('{"encoder": "musicnn"}')
    with pytest.raises(ModelUnavailableError, match="train-head"):
        InstrumentHead.load(path)


def test_packaged_head_was_trained_on_other_soundfonts() -> None:
    head = InstrumentHead.load()
    assert head.encoder == "musicnn" and head.classes == CLASSES
    assert head.weights.shape == (len(CLASSES), 400 + TIMBRE_DIM)
    fonts = [f["name"] for f in head.provenance["soundfonts"]]
    assert fonts and not any("fluid" in f.lower() or "musescore" in f.lower() for f in fonts)
    assert all(f["licence"] for f in head.provenance["soundfonts"])
    assert head.provenance["date"] and "palestrina" in head.provenance["pieces"]


def test_head_links_name_bank_descriptors() -> None:
    ids = {d.id for d in load_bank().descriptors}
    assert set(DESCRIPTOR_LINKS) <= set(CLASSES)
    assert all(d in ids for links in DESCRIPTOR_LINKS.values() for d in links)


@pytest.fixture(scope="module")
def scorer() -> DescriptorScorer:
    return DescriptorScorer(load_bank(), tags=("MTT:piano",), calibration=Calibration())


def test_head_evidence_scores_the_family_descriptors(scorer: DescriptorScorer) -> None:
    organ = dict.fromkeys(CLASSES, 0.01) | {"organ": 0.92}
    scores = {
        s.id: s for s in scorer.score(tag_probabilities=np.array([0.1]), head_probabilities=organ)
    }
    evidence = scores["instruments.organ"].evidence
    assert [e.name for e in evidence] == [f"{HEAD_EVIDENCE}organ"]
    assert evidence[0].kind == "head"
    assert scores["instruments.organ"].confidence == pytest.approx(0.92, abs=1e-3)
    piano = scores["instruments.piano"]
    assert {e.kind for e in piano.evidence} == {"head", "tag"}
    top = rank_categories(list(scores.values()), top=3)["instruments"]
    assert top[0].id == "instruments.organ"


def test_without_head_the_scores_do_not_change(scorer: DescriptorScorer) -> None:
    scores = scorer.score(tag_probabilities=np.array([0.7]))
    assert all(e.name != f"{HEAD_EVIDENCE}piano" for s in scores for e in s.evidence)
    assert {s.id for s in scores} >= {"instruments.piano", "instruments.solo_piano"}


def test_reviewer_takes_the_head_evidence_for_its_encoder(tmp_path: Path) -> None:
    import soxr

    from polymuse.tools.semantics.reviewer import SemanticReviewer
    from polymuse.tools.signals import synth_song

    reviewer = SemanticReviewer.build(audio_spec="debug", text_spec="hashing")
    assert reviewer.head is None  # the packaged head belongs to musicnn
    reviewer.head = _random_head(16 + TIMBRE_DIM)
    song = synth_song()

    def load(path: str | None, sample_rate: int) -> np.ndarray:
        return soxr.resample(song, 44100, sample_rate).astype(np.float32)

    section = reviewer.review(load)
    head = [
        e
        for s in section.categories["instruments"]
        for e in s.evidence
        if e.name.startswith(HEAD_EVIDENCE)
    ]
    assert head and all(0 <= e.value <= 1 for e in head)
