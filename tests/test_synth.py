"""FluidSynth rendering: length, level, alignment with the ground truth, the drum part."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from music21 import instrument, meter, note, stream
from music21.midi import base as midi

from polymuse.errors import ModelUnavailableError, ParameterError
from polymuse.tools import synth
from polymuse.tools.synth import GroundTruth, find_soundfont, render_midi, write_midi

BPM = 100.0


def tiny_score(*, rests_only: bool = False) -> stream.Score:
    """A one-beat pickup and two bars of 4/4 on the piano (or the same length of rests)."""
    bars = [["G4"], ["C5", "E5", "G5", "E5"], ["D5", "B4", "C5", "C5"]]
    part = stream.Part()
    part.insert(0, instrument.Piano())
    for number, pitches in enumerate(bars):
        measure = stream.Measure(number=number)
        if number == 0:
            measure.append(meter.TimeSignature("4/4"))
            measure.paddingLeft = 3
        for name in pitches:
            measure.append(note.Rest() if rests_only else note.Note(name))
        part.append(measure)
    score = stream.Score()
    score.insert(0, part)
    return score


def read_midi_notes(path: Path) -> list[tuple[float, int, int]]:
    """(seconds, channel, key) of every note-on in a one-tempo MIDI file."""
    midi_file = midi.MidiFile()
    midi_file.open(str(path))
    midi_file.read()
    midi_file.close()
    us_per_quarter, found = 500_000, []
    for track in midi_file.tracks:
        ticks = 0
        for event in track.events:
            if isinstance(event, midi.DeltaTime):
                ticks += event.time
            elif event.type == midi.MetaEvents.SET_TEMPO:
                us_per_quarter = midi.getNumber(event.data, 3)[0]
            elif event.type == midi.ChannelVoiceMessages.NOTE_ON and event.velocity > 0:
                found.append((ticks, event.channel, event.pitch))
    per_tick = us_per_quarter / 1e6 / midi_file.ticksPerQuarterNote
    return sorted((ticks * per_tick, channel, key) for ticks, channel, key in found)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[GroundTruth, Path, Path]:
    folder = tmp_path_factory.mktemp("synth")
    truth = write_midi(tiny_score(), folder / "tiny.mid", bpm=BPM)
    return truth, folder / "tiny.mid", render_midi(folder / "tiny.mid", folder / "tiny.wav")


def test_rendered_length_and_level(rendered: tuple[GroundTruth, Path, Path]) -> None:
    truth, _, wav = rendered
    y, sr = sf.read(wav)
    assert sr == 44100 and y.ndim == 2
    assert truth.end < len(y) / sr < truth.end + 4.0
    lead_in = y[: int((truth.start - 0.01) * sr)]
    music = y[int(truth.start * sr) : int(truth.end * sr)]
    assert np.abs(lead_in).max() < 1e-3
    assert np.sqrt(np.mean(music**2)) > 0.01


def test_first_onset_within_20_ms(rendered: tuple[GroundTruth, Path, Path]) -> None:
    truth, _, wav = rendered
    y, sr = sf.read(wav)
    y = y.mean(axis=1)
    onsets = librosa.onset.onset_detect(y=y, sr=sr, hop_length=128, units="time")
    first_note = truth.parts[0].notes[0].onset
    assert first_note == pytest.approx(truth.start)
    assert abs(onsets[0] - first_note) < 0.020


def test_midi_plays_the_ground_truth(rendered: tuple[GroundTruth, Path, Path]) -> None:
    truth, mid, _ = rendered
    written = [(round(t, 5), key) for t, _, key in read_midi_notes(mid)]
    expected = [(round(n.onset, 5), n.pitch) for n in truth.parts[0].notes]
    assert written == expected


def test_pickup_grid_and_tempo(rendered: tuple[GroundTruth, Path, Path]) -> None:
    truth, _, _ = rendered
    period = 60 / BPM
    assert truth.time_signature == "4/4" and truth.beats_per_bar == 4 and truth.bpm == BPM
    assert truth.beats[0] == pytest.approx(truth.start)
    assert truth.downbeats == pytest.approx([truth.start + period, truth.start + 5 * period])
    assert np.diff(truth.beats) == pytest.approx(np.full(8, period))
    assert truth.end == pytest.approx(truth.start + 9 * period)


def test_drum_part_on_channel_10(tmp_path: Path) -> None:
    truth = write_midi(tiny_score(rests_only=True), tmp_path / "d.mid", bpm=BPM, drums=True)
    hits = read_midi_notes(tmp_path / "d.mid")
    assert truth.drums and {channel for _, channel, _ in hits} == {10}
    times = {key: [round(t, 5) for t, _, k in hits if k == key] for key in (36, 38, 42)}
    assert times[36] == [round(t, 5) for t in truth.downbeats]
    beat_numbers = [round((t - truth.downbeats[0]) * BPM / 60) % 4 + 1 for t in truth.beats]
    backbeats = [t for t, n in zip(truth.beats, beat_numbers, strict=True) if n in (2, 4)]
    assert times[38] == [round(t, 5) for t in backbeats]
    assert len(times[42]) == 2 * len(truth.beats)

    y, sr = sf.read(render_midi(tmp_path / "d.mid", tmp_path / "d.wav"))
    y = y.mean(axis=1)
    onsets = librosa.onset.onset_detect(y=y, sr=sr, hop_length=128, units="time")
    assert len(onsets) >= len(truth.beats)
    assert all(np.min(np.abs(np.array(times[42]) - t)) < 0.020 for t in onsets)


def test_rendering_is_deterministic(rendered: tuple[GroundTruth, Path, Path], tmp_path: Path):
    _, mid, wav = rendered
    again = render_midi(mid, tmp_path / "again.wav")
    assert again.read_bytes() == wav.read_bytes()


def test_missing_fluidsynth_names_the_package(
    rendered: tuple[GroundTruth, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(ModelUnavailableError, match="Debian package fluidsynth"):
        render_midi(rendered[1], tmp_path / "x.wav")


def test_soundfont_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(synth.SOUNDFONT_ENV, raising=False)
    monkeypatch.setattr(synth, "SOUNDFONT_LOCATIONS", (tmp_path / "absent.sf2",))
    with pytest.raises(ModelUnavailableError, match="fluid-soundfont-gm"):
        find_soundfont()
    font = tmp_path / "mine.sf2"
    font.write_bytes(b"RIFF")
    monkeypatch.setenv(synth.SOUNDFONT_ENV, str(font))
    assert find_soundfont() == font
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        find_soundfont(tmp_path / "other.sf2")


@pytest.mark.parametrize(
    "options",
    [
        {"bpm": 0},
        {"bpm": 90, "programs": [0, 0]},
        {"bpm": 90, "programs": [128]},
        {"bpm": 90, "lead_in": -1},
    ],
)
def test_invalid_parameters(options: dict, tmp_path: Path) -> None:
    with pytest.raises(ParameterError):
        write_midi(tiny_score(), tmp_path / "x.mid", **options)
