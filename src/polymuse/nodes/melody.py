"""`melody`: f0 contour and notes of the vocal stem (or the mix), notes of the mix, as MIDI."""

from __future__ import annotations

import logging
import time

import numpy as np
from langgraph.runtime import Runtime

from polymuse.errors import ModelUnavailableError
from polymuse.melody_report import PLOT_STEP, MelodySection, pitch_stat
from polymuse.model_cards import MODEL_CARDS
from polymuse.render.files import report_folder
from polymuse.report import Separation
from polymuse.runtime import Context
from polymuse.schema import ModelInfo
from polymuse.state import AnalysisState
from polymuse.tools import melody as mel
from polymuse.tools import transcription

log = logging.getLogger(__name__)

HOP_S = 0.02  # half the compute of 10 ms; RPA 0.006 lower on rendered soprano lines
VOCALS = "vocals"


def vocal_stem(separation: Separation | None) -> str | None:
    """Path of the separated vocal stem, or None when there is none or it is silent."""
    if separation is None:
        return None
    for stem in separation.stems:
        if stem.name == VOCALS and stem.loudness_lufs is not None:
            return stem.path
    return None


def melody(state: AnalysisState, runtime: Runtime[Context]) -> dict:
    """Track the lead line's f0, segment and export its notes; transcribe the mix's notes."""
    started = time.perf_counter()
    settings = runtime.context.settings
    source = state["source"]
    folder = report_folder(settings.output_dir, source) / "midi"
    stem = vocal_stem(state.get("separation"))
    path = stem or source.path
    errors: dict[str, str] = {}

    y = runtime.context.audio.load(path, sample_rate=mel.CREPE_SR, mono=True)
    # CREPE follows one voice; on a full mix the harmonic-salience tracker finds the tune
    backend = mel.DEFAULT_BACKEND if stem else "salience"
    try:
        contour = mel.estimate_f0(y, sr=mel.CREPE_SR, backend=backend, hop_s=HOP_S)
    except ModelUnavailableError as error:
        errors[backend] = f"{error}; fell back to pyin"
        backend = "pyin"
        contour = mel.estimate_f0(y, sr=mel.CREPE_SR, backend=backend, hop_s=HOP_S)
    notes = mel.snap_onsets(mel.contour_notes(contour), mel.onset_times(y, sr=mel.CREPE_SR))
    melody_midi = mel.write_midi(notes, folder / "melody.mid", program=mel.VOICE_PROGRAM)

    transcription_model = None
    note_count = notes_midi = None
    try:
        mix = runtime.context.audio.load(
            source.path, sample_rate=transcription.SAMPLE_RATE, mono=True
        )
        mix_notes = transcription.transcribe(mix, sr=transcription.SAMPLE_RATE)
        notes_midi = str(mel.write_midi(mix_notes, folder / "notes.mid"))
        note_count = len(mix_notes)
        transcription_model = ModelInfo(**MODEL_CARDS["basic-pitch"].model_dump())
    except ModelUnavailableError as error:  # the melody stands without the transcription
        log.debug("transcription failed", exc_info=True)
        errors["transcription"] = str(error)

    voiced = contour.f0[contour.voiced]
    step = max(1, round(PLOT_STEP / HOP_S))
    return {
        "melody": MelodySection(
            backend=backend,
            model=ModelInfo(**mel.model_info(backend).model_dump()),
            input="vocals" if stem else "mix",
            input_path=path,
            hop_s=HOP_S * step,
            times=[round(float(t), 3) for t in contour.times[::step]],
            f0_hz=[None if np.isnan(f) else round(float(f), 2) for f in contour.f0[::step]],
            voiced_ratio=round(float(contour.voiced.mean()) if len(contour.f0) else 0.0, 4),
            median=pitch_stat(np.median(voiced)) if voiced.size else None,
            low=pitch_stat(np.percentile(voiced, 5)) if voiced.size else None,
            high=pitch_stat(np.percentile(voiced, 95)) if voiced.size else None,
            note_count=len(notes),
            melody_midi=str(melody_midi),
            transcription_model=transcription_model,
            transcription_note_count=note_count,
            notes_midi=notes_midi,
            seconds=round(time.perf_counter() - started, 2),
            errors=errors,
        )
    }
