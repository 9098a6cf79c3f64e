"""Compound meter: 6/8 read as 3/4 is regrouped, 3/4 stays, the beat's subdivision is found."""

from __future__ import annotations

import numpy as np
import pytest
from music21 import corpus as m21

from polymuse.tools import audio, corpus, meter, rhythm, synth

EIGHTH = 0.2  # seconds


def _envelope(accents: list[float], bars: int = 12) -> np.ndarray:
    """Onset envelope at meter.FPS with one impulse per eighth, weighted by `accents` per bar."""
    envelope = np.zeros(int((bars + 1) * len(accents) * EIGHTH * meter.FPS))
    for i in range(bars * len(accents)):
        envelope[round(i * EIGHTH * meter.FPS)] = accents[i % len(accents)]
    return envelope


QUARTERS = np.arange(0, 12 * 6 * EIGHTH, 2 * EIGHTH)  # 3/4 beats: every second eighth


def test_six_eight_read_as_three_four_is_regrouped() -> None:
    envelope = _envelope([1.0, 0.2, 0.2, 0.8, 0.2, 0.2])  # accents on eighths 0 and 3
    phase = meter.compound_phase(envelope, QUARTERS)
    assert phase == 0
    downbeat_activation = np.zeros_like(envelope)
    downbeat_activation[:: round(6 * EIGHTH * meter.FPS)] = 1.0
    beats, positions = meter.regroup_compound(QUARTERS, phase, downbeat_activation)
    assert np.allclose(np.diff(beats), 3 * EIGHTH)
    assert beats[0] == 0.0 and positions[:4].tolist() == [1, 2, 1, 2]


def test_three_four_stays() -> None:
    envelope = _envelope([1.0, 0.2, 0.7, 0.2, 0.7, 0.2])  # accents on the quarters
    assert meter.compound_phase(envelope, QUARTERS) is None


@pytest.mark.parametrize(("per_beat", "expected"), [(3, 3), (2, 2)])
def test_subdivision(per_beat: int, expected: int) -> None:
    beat = 0.6
    accents = [1.0] + [0.4] * (per_beat - 1)
    envelope = np.zeros(int(20 * beat * meter.FPS))
    for i in range(19 * per_beat):
        envelope[round(i * beat / per_beat * meter.FPS)] = accents[i % per_beat]
    assert meter.subdivision(envelope, np.arange(0, 19 * beat, beat)) == expected


def _render(tmp_path, score, bpm: float, name: str) -> np.ndarray:
    mid, wav = tmp_path / f"{name}.mid", tmp_path / f"{name}.wav"
    synth.write_midi(
        score, mid, bpm=bpm, programs=[73] * len(score.parts), drums=True, max_seconds=20
    )
    synth.render_midi(mid, wav, sample_rate=rhythm.SAMPLE_RATE)
    return audio.load(audio.probe(wav), sample_rate=rhythm.SAMPLE_RATE)


def test_rendered_jig_is_tracked_at_the_dotted_quarter(tmp_path) -> None:
    """A jig at 90 dotted quarters a minute, where the DBN alone reads 3/4 at 135."""
    score = corpus.load_tune("ryansMammoth/LittlePeggysJig.abc")
    result = rhythm.track_rhythm(_render(tmp_path, score, 90.0, "jig"), sr=rhythm.SAMPLE_RATE)
    assert result.tempo_bpm == pytest.approx(90.0, rel=0.04)
    assert result.time_signature in ("6/8", "12/8")


def test_rendered_three_four_chorale_stays_simple(tmp_path) -> None:
    score = m21.parse("bach/bwv269")
    assert score.recurse().getElementsByClass("TimeSignature")[0].ratioString == "3/4"
    result = rhythm.track_rhythm(_render(tmp_path, score, 135.0, "chorale"), sr=rhythm.SAMPLE_RATE)
    assert result.tempo_bpm == pytest.approx(135.0, rel=0.04)
    assert result.time_signature == "3/4"
