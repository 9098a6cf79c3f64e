"""Descriptor scoring: direct tags, borrowed tags, feature rules, joint space, calibration,
the text-embedding cache, and the distinct ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polymuse.errors import ParameterError
from polymuse.semantic_report import DescriptorScore, Evidence
from polymuse.tools.encoders.text import build_text_encoder
from polymuse.tools.semantics.bank import load_bank
from polymuse.tools.semantics.features import estimate_mode, texture_features
from polymuse.tools.semantics.scoring import (
    Calibration,
    DescriptorScorer,
    build_text_index,
    rank_categories,
)

TAGS = ("MTT:piano", "MTT:guitar", "MTT:strings", "MTT:violin", "MTT:drums", "MTT:choir")


@pytest.fixture(scope="module")
def bank():
    return load_bank()


def _scorer(bank, **kwargs) -> DescriptorScorer:
    return DescriptorScorer(bank, tags=TAGS, calibration=Calibration(), **kwargs)


def test_strongest_direct_tag_wins(bank) -> None:
    p = np.array([0.9, 0.2, 0.1, 0.1, 0.05, 0.02])
    scores = _scorer(bank).score(tag_probabilities=p)
    top = rank_categories(scores, top=3)["instruments"]
    assert top[0].id == "instruments.piano"
    assert top[0].confidence == pytest.approx(0.9, abs=1e-4)
    assert top[0].evidence[0].name == "MTT:piano" and top[0].evidence[0].kind == "tag"
    assert all(0 <= s.confidence <= 1 for s in scores)


def test_descriptors_without_evidence_are_left_out(bank) -> None:
    scores = _scorer(bank).score(tag_probabilities=np.full(len(TAGS), 0.5))
    ids = {s.id for s in scores}
    assert "instruments.piano" in ids
    assert "genre.jazz" not in ids  # MSD:jazz is not in this tag space, and no text index


def test_feature_rules(bank) -> None:
    scorer = _scorer(bank)
    fast = {s.id: s for s in scorer.score(features={"tempo_bpm": 160.0})}
    slow = {s.id: s for s in scorer.score(features={"tempo_bpm": 60.0})}
    assert fast["texture.fast"].confidence > 0.9 > slow["texture.fast"].confidence
    assert slow["texture.slow"].confidence > 0.85
    # Both rules of 'moderate tempo' must hold.
    assert fast["texture.moderate_tempo"].confidence < 0.1
    mid = {s.id: s for s in scorer.score(features={"tempo_bpm": 105.0})}
    assert mid["texture.moderate_tempo"].confidence > 0.8


def test_tags_and_features_combine_in_logit_space(bank) -> None:
    scorer = _scorer(bank)
    p = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.1])
    with_tags = {s.id: s for s in scorer.score(tag_probabilities=p, features={"percussive": 0.6})}
    drums = with_tags["instruments.drums"]
    assert {e.kind for e in drums.evidence} == {"tag", "feature"}
    assert drums.confidence > 0.9


def test_alpha_scores_lift_over_the_prior(bank) -> None:
    p = np.array([0.2, 0.2, 0.2, 0.2, 0.2, 0.2])
    priors = np.array([0.01, 0.3, 0.3, 0.3, 0.3, 0.3])
    plain = DescriptorScorer(bank, tags=TAGS, tag_priors=priors, calibration=Calibration())
    lifted = plain.with_calibration(Calibration(alpha=1.0))
    top_plain = rank_categories(plain.score(tag_probabilities=p))["instruments"][0]
    top_lifted = rank_categories(lifted.score(tag_probabilities=p))["instruments"][0]
    assert top_lifted.id == "instruments.piano"
    assert top_lifted.confidence > top_plain.confidence


def test_shape_errors(bank) -> None:
    with pytest.raises(ParameterError, match="tag_probabilities"):
        _scorer(bank).score(tag_probabilities=np.zeros(3))
    with pytest.raises(ParameterError, match="tag_priors"):
        DescriptorScorer(bank, tags=TAGS, tag_priors=np.zeros(2))


def test_text_index_is_cached_by_encoder_bank_and_tags(bank, tmp_path: Path) -> None:
    encoder = build_text_encoder("hashing")
    calls: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return encoder.encode(texts)

    first = build_text_index(bank, TAGS, encoder_name="hashing", encode=encode, cache_dir=tmp_path)
    again = build_text_index(bank, TAGS, encoder_name="hashing", encode=encode, cache_dir=tmp_path)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.descriptor_vectors, again.descriptor_vectors)
    build_text_index(bank, TAGS[:3], encoder_name="hashing", encode=encode, cache_dir=tmp_path)
    assert len(calls) == 2
    assert len(list(tmp_path.glob(f"hashing-{bank.digest}-*.npz"))) == 2


def test_borrowed_tags_for_descriptors_without_links(bank) -> None:
    """With a text index, a link-less descriptor borrows the tags whose names resemble it."""
    encoder = build_text_encoder("hashing")
    tags = (*TAGS, "MTT:organ sounds")
    index = build_text_index(bank, tags, encoder_name="hashing", encode=encoder.encode)
    scorer = DescriptorScorer(bank, tags=tags, index=index, calibration=Calibration())
    assert "instruments.organ" in scorer.borrowed
    assert "instruments.piano" not in scorer.borrowed  # has a direct link
    assert "texture.fast" not in scorer.borrowed  # has feature rules
    p = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.8])
    organ = {s.id: s for s in scorer.score(tag_probabilities=p)}["instruments.organ"]
    assert organ.evidence[0].kind == "text"
    assert "MTT:organ sounds" in {e.name for e in organ.evidence}


def test_joint_space_scores_by_cosine(bank) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(bank), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scorer = DescriptorScorer(bank, joint_vectors=vectors, calibration=Calibration())
    target = [i for i, d in enumerate(bank.descriptors) if d.id == "instruments.choir"][0]
    scores = scorer.score(audio_embedding=vectors[target])
    top = rank_categories(scores)["instruments"][0]
    assert top.id == "instruments.choir" and top.evidence[0].kind == "joint"


def test_distinct_ranking_folds_descriptors_on_the_same_tag() -> None:
    def score(id_: str, conf: float, tag: str) -> DescriptorScore:
        ev = Evidence(kind="tag", name=tag, value=conf, score=conf)
        return DescriptorScore(
            id=id_, label=id_, label_zh="", category="instruments", confidence=conf, evidence=[ev]
        )

    scores = [
        score("violin", 0.7, "MTT:violin"),
        score("quartet", 0.6, "MTT:violin"),
        score("strings", 0.5, "MTT:strings"),
        score("flute", 0.4, "MTT:flute"),
    ]
    assert [s.id for s in rank_categories(scores, top=3)["instruments"]] == [
        "violin",
        "strings",
        "flute",
    ]
    assert [s.id for s in rank_categories(scores, top=3, distinct=False)["instruments"]] == [
        "violin",
        "quartet",
        "strings",
    ]


def test_calibration_round_trip(tmp_path: Path) -> None:
    calibration = Calibration(name="test", alpha=0.25, platt={"tag": (2.0, -1.0)})
    path = tmp_path / "cal.json"
    path.write_text(calibration.to_json(fitted_on="nothing"))
    loaded = Calibration.load(path)
    assert loaded.alpha == 0.25 and loaded.platt["tag"] == (2.0, -1.0)
    assert loaded.platt["feature"] == Calibration().platt["feature"]
    assert loaded.confidence("tag", 0.5) == pytest.approx(0.5)
    path.write_text("{}")
    with pytest.raises(ParameterError, match="cal.json"):
        Calibration.load(path)


def test_packaged_calibration_loads() -> None:
    calibration = Calibration.load()
    assert set(calibration.platt) >= {"tag", "text", "feature", "joint"}


def test_texture_features_know_tempo_and_mode() -> None:
    from polymuse.tools.signals import synth_song

    sr = 16000
    y = synth_song(bpm=120.0, seconds=12.0, sr=sr).astype(np.float32)
    features = texture_features(y, sample_rate=sr)
    # Kick on 1 and 3 makes half tempo as plausible as the beat: allow octave errors (the
    # features node's tempo replaces this estimate when it ran).
    octaves = features["tempo_bpm"] / 120
    assert min(abs(octaves - r) for r in (0.5, 1.0, 2.0)) < 0.04
    assert features["mode"] > 0.5  # I-IV-V-I in C major
    assert 0 < features["percussive"] < 1 and features["density"] > 1
    hinted = texture_features(y, sample_rate=sr, tempo_bpm=99.0, key_mode="minor")
    assert hinted["tempo_bpm"] == 99.0 and hinted["mode"] == -1.0
    silent = texture_features(np.zeros(sr * 2, dtype=np.float32), sample_rate=sr)
    assert all(v is None for v in silent.values())


def test_estimate_mode_from_profiles() -> None:
    from polymuse.tools.semantics.features import MAJOR_PROFILE, MINOR_PROFILE

    assert estimate_mode(np.roll(MAJOR_PROFILE, 3)) > 0.5
    assert estimate_mode(np.roll(MINOR_PROFILE, 5)) < -0.5
    with pytest.raises(ParameterError):
        estimate_mode(np.ones(11))
