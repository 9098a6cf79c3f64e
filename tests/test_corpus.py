"""Ground-truth rules (pickups, beat level, split bars, trimming, the notated key) and datasets."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from music21 import converter, corpus, meter, note, stream

from polymuse.errors import ParameterError
from polymuse.tools.corpus import (
    CHORALE_SOUNDS,
    CHORALE_TEMPO,
    TUNE_SOUNDS,
    TUNE_TEMPO,
    key_set,
    rhythm_set,
)
from polymuse.tools.synth import ground_truth, notated_key


def abc(meter_field: str, body: str) -> stream.Score:
    return converter.parse(f"X:1\nT:Test\nM:{meter_field}\nL:1/8\nK:G\n{body}\n", format="abc")


JIG = abc("6/8", "D|GAB cBA|BGE D2D|GAB cBA|BGG G2:|")  # one-eighth pickup
REEL = abc("C|", "D|G2BG dGBG|c2ec BGAF|G2BG dGBG|cAFA G3:|")  # one-eighth pickup, cut time
SLIP_JIG = abc("9/8", "GAB cBA BGE|GAB cBA G3|GAB cBA BGE|dcB AGF G3:|")
HORNPIPE = abc("2/4", "(3DEF|GABG|c2BA|GBdB|G2:|")  # a triplet pickup of one quarter


def test_pickup_starts_the_beats_at_the_first_beat() -> None:
    truth = ground_truth(JIG, bpm=120)
    period = 0.5
    assert truth.time_signature == "6/8"
    assert (truth.beats_per_bar, truth.beat_unit, truth.beat_division) == (2, 1.5, 3)
    assert truth.parts[0].notes[0].onset == pytest.approx(truth.start)
    # The pickup is one eighth: a third of a dotted-quarter beat before the first bar line.
    assert truth.beats[0] == pytest.approx(truth.start + period / 3, abs=1e-5)
    assert truth.downbeats[0] == pytest.approx(truth.beats[0])
    assert np.diff(truth.beats) == pytest.approx(period, abs=1e-5)
    assert np.diff(truth.downbeats) == pytest.approx(2 * period, abs=1e-5)
    # The last bar gives the pickup back: five eighths.
    assert truth.end == pytest.approx(truth.downbeats[-1] + 5 / 3 * period, abs=1e-5)


@pytest.mark.parametrize(
    ("score", "signature", "beat_unit", "beats_per_bar"),
    [
        (JIG, "6/8", 1.5, 2),
        (SLIP_JIG, "9/8", 1.5, 3),
        (REEL, "2/2", 2.0, 2),
        (HORNPIPE, "2/4", 1.0, 2),
    ],
)
def test_tempo_is_counted_at_the_beat_level(
    score: stream.Score, signature: str, beat_unit: float, beats_per_bar: int
) -> None:
    truth = ground_truth(score, bpm=100)
    assert truth.time_signature == signature
    assert (truth.beat_unit, truth.beats_per_bar) == (beat_unit, beats_per_bar)
    assert truth.bpm == pytest.approx(100, rel=1e-5)
    assert np.diff(truth.beats) == pytest.approx(0.6, abs=1e-5)
    assert len(truth.downbeats) * beats_per_bar <= len(truth.beats)


def test_triplet_pickup_lands_on_ticks() -> None:
    truth = ground_truth(HORNPIPE, bpm=90)
    onsets = [n.onset for n in truth.parts[0].notes[:4]]
    assert np.diff(onsets) == pytest.approx([60 / 90 / 3] * 3, abs=2e-6)
    assert truth.beats[0] == pytest.approx(truth.start) == pytest.approx(onsets[0])
    assert truth.downbeats[0] == pytest.approx(onsets[3])


def test_bars_split_around_a_repeat_continue_the_bar() -> None:
    """BWV 347 splits bar 4 into three beats before the repeat sign and one after it."""
    truth = ground_truth(corpus.parse("bach/bwv347"), bpm=80)
    assert truth.beats[0] == pytest.approx(truth.start)
    assert truth.downbeats[0] == pytest.approx(truth.start + 0.75)
    assert np.diff(truth.beats) == pytest.approx(0.75, abs=1e-5)
    assert np.diff(truth.downbeats) == pytest.approx(3.0, abs=1e-5)


def test_trim_cuts_at_a_bar_line() -> None:
    truth = ground_truth(corpus.parse("bach/bwv347"), bpm=80, max_seconds=10)
    assert truth.end - truth.start <= 10
    assert (truth.end - truth.downbeats[0]) % 3.0 == pytest.approx(0, abs=1e-5)
    assert truth.downbeats[-1] < truth.end and truth.beats[-1] < truth.end
    notes = [n for part in truth.parts for n in part.notes]
    assert max(n.onset for n in notes) < truth.end
    assert max(n.offset for n in notes) == pytest.approx(truth.end)


def measures(lengths: list[float], signatures: list[str]) -> stream.Score:
    part = stream.Part()
    for number, (length, signature) in enumerate(zip(lengths, signatures, strict=True)):
        measure = stream.Measure(number=number + 1)
        if signature:
            measure.append(meter.TimeSignature(signature))
        measure.append(note.Note("C4", quarterLength=length))
        part.append(measure)
    score = stream.Score()
    score.insert(0, part)
    return score


def test_short_first_measure_is_a_pickup_even_without_padding() -> None:
    truth = ground_truth(measures([1, 4, 4], ["4/4", "", ""]), bpm=120)
    assert truth.beats[0] == pytest.approx(truth.start)
    assert truth.downbeats == pytest.approx([truth.start + 0.5, truth.start + 2.5])


def test_a_bar_shortened_mid_piece_is_rejected() -> None:
    with pytest.raises(ParameterError, match="measure 3"):
        ground_truth(measures([4, 3, 4], ["4/4", "", ""]), bpm=90)


def test_meter_changes_are_rejected() -> None:
    with pytest.raises(ParameterError, match="meter changes"):
        ground_truth(measures([4, 3], ["4/4", "3/4"]), bpm=90)


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ("bach/bwv269", "G major"),
        ("bach/bwv347", "A major"),
        ("bach/bwv66.6", "F# minor"),  # Picardy third
        ("bach/bwv404", "A minor"),  # minor final chord
        ("bach/bwv38.6", None),  # Phrygian ending on the dominant of A minor
        ("bach/bwv153.1", None),  # major chord on E: Picardy in E minor or half cadence in A
        ("bach/bwv40.8", None),  # Dorian signature
        ("bach/bwv184.5", None),  # Mixolydian ending
    ],
)
def test_notated_key_of_known_chorales(source: str, key: str | None) -> None:
    assert notated_key(corpus.parse(source)).key == key


def test_key_set_is_seeded_and_cached(tmp_path: Path) -> None:
    pieces = key_set(2, tmp_path, seed=3, max_seconds=12)
    assert len({p.source for p in pieces}) == 2
    for piece in pieces:
        assert piece.truth.key is not None and piece.source.startswith("bach/")
        assert piece.sound in CHORALE_SOUNDS
        assert CHORALE_TEMPO[0] <= piece.truth.bpm <= CHORALE_TEMPO[1]
        assert sf.info(piece.audio).duration > piece.truth.end
    stamps = [p.audio.stat().st_mtime_ns for p in pieces]
    assert key_set(2, tmp_path, seed=3, max_seconds=12) == pieces
    assert [p.audio.stat().st_mtime_ns for p in pieces] == stamps


def test_rhythm_set_mixes_simple_and_compound_meters(tmp_path: Path) -> None:
    pieces = rhythm_set(2, tmp_path, seed=1, max_seconds=12)
    assert {p.truth.beat_division for p in pieces} == {2, 3}
    for piece in pieces:
        assert piece.source.startswith("ryansMammoth/") and piece.sound in TUNE_SOUNDS
        assert piece.truth.drums and TUNE_TEMPO[0] <= piece.truth.bpm <= TUNE_TEMPO[1]
        assert piece.midi.is_file() and piece.audio.is_file()


@pytest.mark.slow
def test_rendered_sets_line_up_with_their_truth(tmp_path: Path) -> None:
    """Full-length pieces: sound starts with the first note; drums give onsets on the beat."""
    for piece in key_set(4, tmp_path, seed=0) + rhythm_set(4, tmp_path, seed=0):
        truth = piece.truth
        first_note = min(n.onset for part in truth.parts for n in part.notes)
        y, sr = sf.read(piece.audio)
        audible = np.flatnonzero(np.abs(y).max(axis=1) > 1e-3)[0] / sr
        assert -0.001 < audible - first_note < 0.020, piece.source
        assert 10 <= truth.end - truth.start <= 45
        if truth.drums:
            onsets = librosa.onset.onset_detect(
                y=y.mean(axis=1), sr=sr, hop_length=128, units="time"
            )
            assert abs(onsets[0] - first_note) < 0.020, piece.source
