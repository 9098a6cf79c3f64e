"""The demo piece: Pachelbel's Canon in D, its score, ground truth and rendering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from music21 import key, stream

from polymuse.tools.example import (
    CANON_BPM,
    CANON_NAME,
    canon_score,
    canon_truth,
    write_example,
)
from polymuse.tools.synth import GroundTruth, notated_key


@pytest.fixture(scope="module")
def score() -> stream.Score:
    return canon_score()


def test_score_is_the_canon_in_d(score: stream.Score) -> None:
    assert [p.partName for p in score.parts] == [
        "Violin I",
        "Violin II",
        "Violin III",
        "Violoncello",
    ]
    assert all(p.highestTime == 21 * 4 for p in score.parts), "a variation is not two bars long"
    assert score.recurse().getElementsByClass(key.KeySignature).first().sharps == 2
    assert notated_key(score).key == "D major"
    bass = [n.pitch.name for n in score.parts[3].flatten().notes[:8]]
    assert bass == ["D", "A", "B", "F#", "G", "D", "G", "A"]


def test_violins_play_in_canon_two_bars_apart(score: stream.Score) -> None:
    lines = [
        [(n.offset, n.pitch.midi) for n in part.flatten().notes[:-1]] for part in score.parts[:3]
    ]
    for leader, follower in zip(lines, lines[1:], strict=False):
        assert follower == [(offset + 8, pitch) for offset, pitch in leader[: len(follower)]]


def test_truth_is_d_major_in_4_4_at_66() -> None:
    truth = canon_truth()
    assert (truth.key, truth.time_signature, truth.beats_per_bar) == ("D major", "4/4", 4)
    assert truth.bpm == pytest.approx(CANON_BPM, rel=1e-5)
    assert 60 <= truth.end - truth.start <= 90
    assert len(truth.downbeats) == 21 and len(truth.beats) == 84


def test_write_example_renders_deterministically(tmp_path: Path) -> None:
    wav = write_example(tmp_path / "first")
    assert wav.name == f"{CANON_NAME}.wav"
    assert (tmp_path / "first" / f"{CANON_NAME}.mid").is_file()
    truth = GroundTruth.model_validate_json(
        (tmp_path / "first" / f"{CANON_NAME}.json").read_text(encoding="utf-8")
    )
    assert truth == canon_truth()
    y, sr = sf.read(wav)
    assert truth.end < len(y) / sr < truth.end + 5
    assert np.sqrt(np.mean(y[int(truth.start * sr) : int(truth.end * sr)] ** 2)) > 0.01
    assert write_example(tmp_path / "second").read_bytes() == wav.read_bytes()
