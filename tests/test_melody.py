"""Melody (CREPE port, pYIN), note segmentation, MIDI, Basic Pitch, the melody node and eval."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from polymuse.errors import ModelUnavailableError, ParameterError
from polymuse.evaluation.melody import melody_score, note_score, reference_f0
from polymuse.melody_report import MelodySection, draw_melody, melody_section
from polymuse.nodes.load import load
from polymuse.nodes.melody import melody
from polymuse.runtime import Context
from polymuse.settings import Settings
from polymuse.state import AnalysisState
from polymuse.tools import melody as mel
from polymuse.tools import transcription
from polymuse.tools.synth import NoteEvent

SR = 16000


def harmonic(f0: np.ndarray, sr: int, amps=(0.3, 0.15, 0.08)) -> np.ndarray:
    """A harmonic tone following the instantaneous frequency `f0` (Hz per sample)."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    return sum(a * np.sin((k + 1) * phase) for k, a in enumerate(amps)).astype(np.float32)


def cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1200 * np.abs(np.log2(a / b))


@pytest.fixture(scope="module")
def vibrato() -> tuple[np.ndarray, np.ndarray]:
    """2 s of A4 with 5.5 Hz, +-30 cent vibrato, then 1 s of silence."""
    t = np.arange(3 * SR) / SR
    f = 440 * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    y = harmonic(f, SR)
    y[2 * SR :] = 0
    return y, f


@pytest.mark.parametrize("backend", ["crepe", "pyin"])
def test_vibrato_is_tracked_within_20_cents_and_silence_is_unvoiced(vibrato, backend) -> None:
    y, f = vibrato
    contour = mel.estimate_f0(y, sr=SR, backend=backend)
    truth = np.interp(contour.times, np.arange(len(f)) / SR, f)
    tone = (contour.times > 0.1) & (contour.times < 1.9)
    silence = contour.times > 2.15
    assert contour.voiced[tone].mean() > 0.95
    assert np.percentile(cents(contour.f0[tone], truth[tone]), 95) < 20
    assert not contour.voiced[silence].any()


@pytest.mark.parametrize("backend", ["crepe", "pyin"])
def test_glide_is_tracked_within_20_cents(backend) -> None:
    t = np.arange(2 * SR) / SR
    f = 220 * 2 ** (t / 2)  # one octave up in 2 s
    contour = mel.estimate_f0(harmonic(f, SR), sr=SR, backend=backend)
    inside = (contour.times > 0.15) & (contour.times < 1.85)
    truth = np.interp(contour.times, t, f)
    assert np.median(cents(contour.f0[inside], truth[inside])) < 20


def test_salience_follows_the_high_line_of_a_polyphonic_mix() -> None:
    n = 4 * SR
    line = np.repeat([440.0, 493.88, 554.37, 587.33], SR)
    chord = sum(harmonic(np.full(n, f), SR) for f in (110.0, 138.59, 164.81))
    contour = mel.estimate_f0(chord + harmonic(line, SR), sr=SR, backend="salience")
    truth = np.interp(contour.times, np.arange(n) / SR, line)
    steady = (contour.times % 1.0 > 0.1) & (contour.times % 1.0 < 0.9)
    assert contour.voiced[steady].mean() > 0.95
    assert np.mean(cents(contour.f0[steady], truth[steady]) < 50) > 0.95


def test_crepe_port_loads_the_shipped_weights() -> None:
    for capacity in ("tiny", "full"):
        state = torch.load(mel.crepe_weights(capacity), map_location="cpu", weights_only=True)
        model = mel.load_crepe(capacity)
        assert set(model.state_dict()) == set(state)
        assert model.classifier.out_features == mel.CREPE_BINS


def test_crepe_loader_round_trips_a_random_checkpoint_and_rejects_a_mismatch(tmp_path) -> None:
    torch.manual_seed(0)
    model = mel.Crepe("tiny").eval()
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    frames = torch.randn(3, mel.CREPE_WINDOW)
    with torch.inference_mode():
        assert torch.equal(mel.load_crepe("tiny", path)(frames), model(frames))
    with pytest.raises(ModelUnavailableError, match="tiny.pth"):
        mel.load_crepe("full", path)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ParameterError, match="valid: crepe, pyin"):
        mel.estimate_f0(np.zeros(SR), sr=SR, backend="yin")
    with pytest.raises(ParameterError, match="mono"):
        mel.estimate_f0(np.zeros((2, SR)), sr=SR)


def test_notes_are_segmented_and_round_trip_through_midi(tmp_path) -> None:
    pitches = [60, 64, 67, 72]
    f = np.concatenate([np.full(SR // 2, 440 * 2 ** ((p - 69) / 12)) for p in pitches])
    y = np.concatenate([harmonic(f, SR), np.zeros(SR // 4, np.float32)])
    contour = mel.estimate_f0(y, sr=SR)
    notes = mel.contour_notes(contour)
    assert [n.pitch for n in notes] == pitches
    assert all(abs(n.onset - 0.5 * i) < 0.05 for i, n in enumerate(notes))
    path = mel.write_midi(notes, tmp_path / "midi" / "melody.mid", program=mel.VOICE_PROGRAM)
    back = mel.read_midi_notes(path)
    assert [n.pitch for n in back] == pitches
    assert np.allclose([n.onset for n in back], [n.onset for n in notes], atol=0.002)
    assert np.allclose([n.offset for n in back], [n.offset for n in notes], atol=0.002)


def test_onsets_snap_back_to_detected_onsets_and_trim_the_previous_note() -> None:
    notes = [mel.Note(0.1, 0.6, 60), mel.Note(0.6, 1.0, 62), mel.Note(1.5, 2.0, 64)]
    snapped = mel.snap_onsets(notes, np.array([0.02, 0.52, 1.2]))
    assert [(n.onset, n.offset) for n in snapped] == [(0.02, 0.52), (0.52, 1.0), (1.5, 2.0)]
    assert [n.pitch for n in snapped] == [60, 62, 64]


def test_basic_pitch_finds_the_notes_of_a_triad_sequence() -> None:
    sr = transcription.SAMPLE_RATE
    chords = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)]
    seconds = 0.75
    n = int(seconds * sr)
    envelope = np.minimum(1, np.arange(n) / (0.01 * sr)) * np.exp(-np.arange(n) / sr)
    y = np.concatenate(
        [
            sum(harmonic(np.full(n, 440 * 2 ** ((p - 69) / 12)), sr) for p in chord) * envelope
            for chord in chords
        ]
        + [np.zeros(sr // 2)]
    ).astype(np.float32)
    notes = transcription.transcribe(y * 0.5, sr=sr)
    reference = [
        NoteEvent(onset=i * seconds, offset=(i + 1) * seconds, pitch=p)
        for i, chord in enumerate(chords)
        for p in chord
    ]
    assert note_score(reference, notes).recall == 1.0
    # Basic Pitch also reports the strongest overtones (the 3rd harmonic of the fifth), weaker
    found = [
        n
        for n in notes
        if any(abs(n.onset - r.onset) < 0.05 and n.pitch == r.pitch for r in reference)
    ]
    extra = [n for n in notes if n not in found]
    assert len(extra) <= len(chords)
    assert max((n.velocity for n in extra), default=0) < min(n.velocity for n in found)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", output_dir=tmp_path / "reports")


class MelodyState(AnalysisState, total=False):
    melody: MelodySection


def _melody(state: MelodyState, runtime: Runtime[Context]) -> dict:
    """`melody` typed with this test's state, whose `melody` key AnalysisState lacks yet."""
    return melody(state, runtime)


def test_node_writes_midi_and_a_section_that_renders(song_wav: Path, settings) -> None:
    graph = StateGraph(MelodyState, context_schema=Context)
    graph.add_node("load", load)
    graph.add_node("melody", _melody)
    graph.add_edge(START, "load")
    graph.add_edge("load", "melody")
    graph.add_edge("melody", END)
    out = graph.compile().invoke({"path": str(song_wav)}, context=Context(settings=settings))
    section: MelodySection = out["melody"]
    assert section.input == "mix" and section.backend == "salience"  # a mix, no vocal stem
    assert section.voiced_ratio > 0.3 and section.note_count > 0
    assert section.transcription_note_count and section.transcription_note_count > 0
    assert Path(section.melody_midi).is_file() and Path(section.notes_midi).is_file()
    assert Path(section.melody_midi).parent.name == "midi"
    assert len(section.times) == len(section.f0_hz)
    assert MelodySection.model_validate_json(section.model_dump_json()) == section
    report = type("Report", (), {"melody": section})()
    png = draw_melody(report)
    assert png is not None and png.startswith(b"\x89PNG")
    rendered = melody_section(report, ["melody"])
    assert rendered is not None and rendered.figures == ["melody"]
    assert melody_section(type("Report", (), {"melody": None})()) is None


def test_eval_scores_are_perfect_for_the_truth() -> None:
    line = [NoteEvent(onset=0.5 + i, offset=1.5 + i, pitch=60 + 2 * i) for i in range(3)]
    times, f0 = reference_f0(line, 4.0)
    contour = mel.Contour(
        times=times, f0=np.where(f0 > 0, f0, np.nan), voicing=(f0 > 0) * 1.0, pitch=f0
    )
    score = melody_score(times, f0, contour)
    assert score.rpa == 1.0 and score.voicing_false_alarm == 0.0
    notes = [mel.Note(n.onset, n.offset, n.pitch) for n in line]
    assert note_score(line, notes).f_measure == 1.0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")
def test_crepe_meets_the_rpa_goal_on_a_rendered_soprano(tmp_path) -> None:
    from polymuse.evaluation.melody import GOAL_RPA, evaluate_melody

    evaluation = evaluate_melody(
        pieces=1,
        cache_dir=tmp_path / "set",
        backends=["crepe-tiny"],
        inputs=["soprano"],
        notes=True,
        max_seconds=15.0,
    )
    assert evaluation.summary()["soprano"]["crepe-tiny"]["rpa"] >= GOAL_RPA
    assert evaluation.note_summary()["no_drums"]["f_measure"] > 0.3
