"""Music features on generated songs whose tempo, meter, key and chords are known exactly."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest

from polymuse.tools import rhythm, tonality
from polymuse.tools.framewise import in_chunks
from polymuse.tools.signals import synth_song

SR = 44100

CASES = [(120.0, 60, "C"), (96.0, 62, "D"), (140.0, 57, "A")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{b:g}bpm-{k}" for b, _, k in CASES])
def case(request: pytest.FixtureRequest) -> tuple[float, str, np.ndarray]:
    bpm, tonic, name = request.param
    return bpm, name, synth_song(bpm=bpm, tonic=tonic, seconds=16.0)


def test_tempo_beats_and_meter(case) -> None:
    bpm, _, y = case
    result = rhythm.track_rhythm(y, sr=SR)
    assert result.tempo_bpm == pytest.approx(bpm, rel=0.02)
    assert result.beats_per_bar == 4 and result.time_signature == "4/4"
    truth = np.arange(0, 16.0, 60.0 / bpm)
    assert mir_eval.beat.f_measure(truth, np.array(result.beats), f_measure_threshold=0.07) > 0.9
    bars = truth[::4]
    assert mir_eval.beat.f_measure(bars, np.array(result.downbeats), f_measure_threshold=0.07) > 0.8


def test_key(case) -> None:
    _, name, y = case
    key = tonality.estimate_key(y, sr=SR)
    assert key.label == f"{name} major"
    assert 0.5 < key.confidence <= 1.0
    assert len(key.alternatives) == 3 and key.label not in key.alternatives


def test_chords_follow_the_cadence(case) -> None:
    bpm, name, y = case
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    tonic = names.index(name)
    expected = [names[(tonic + step) % 12] + ":maj" for step in (0, 5, 7, 0)]
    chords = tonality.recognize_chords(y, sr=SR)
    bar = 240.0 / bpm
    for i, label in enumerate(expected * 2):
        mid = (i + 0.5) * bar
        if mid >= 16.0:
            break
        found = next(c.label for c in chords if c.start <= mid < c.end)
        enharmonic = {"C#": "Db", "D#": "Eb", "F#": "Gb", "G#": "Ab", "A#": "Bb"}
        root = label.split(":")[0]
        assert found in (label, f"{enharmonic.get(root, root)}:maj"), (mid, chords)


def test_windowed_decoding_matches_one_pass(case) -> None:
    """The DBN decoded over short overlapping windows finds the same beats as in one pass."""
    bpm, _, y = case
    madmom = rhythm.import_madmom()
    signal = madmom.audio.signal.Signal(y, sample_rate=SR, num_channels=1)
    activations = rhythm._activation_processor()(signal)
    tracker = rhythm._tracker((3, 4), 55.0, 215.0)
    whole = tracker(activations)
    windowed = rhythm.decode_in_windows(activations, tracker, window_s=5.0, overlap_s=4.0)
    assert mir_eval.beat.f_measure(whole[:, 0], windowed[:, 0], f_measure_threshold=0.03) > 0.95
    assert np.all(np.diff(windowed[:, 0]) > 0)


def test_chunked_activations_track_the_same_beats() -> None:
    """Activations computed in chunks with context give the one-pass beats and bars."""
    y = synth_song(bpm=104.0, tonic=62, seconds=60.0)
    whole = rhythm.activations_in_chunks(y, chunk_s=100.0)
    chunked = rhythm.activations_in_chunks(y, chunk_s=15.0, context_s=10.0)
    assert chunked.shape == whole.shape and np.abs(chunked - whole).max() < 0.15
    tracker = rhythm._tracker((3, 4), 55.0, 215.0)
    one, parts = tracker(whole), tracker(chunked)
    assert len(one) == len(parts) and np.abs(one[:, 0] - parts[:, 0]).max() <= 0.02
    assert (one[:, 1] == parts[:, 1]).all()


def test_chunked_chord_features_equal_one_pass() -> None:
    y = synth_song(bpm=100.0, tonic=60, seconds=45.0)
    features, _ = tonality._chord_processors()
    whole = features(tonality._signal(y, SR))
    chunked = in_chunks(features, y, fps=10, chunk_s=12.0, context_s=5.0)
    assert chunked.shape == whole.shape and np.allclose(chunked, whole, atol=1e-5)
