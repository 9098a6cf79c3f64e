"""The report's melody section: f0 contour of the lead line, notes, MIDI files; outline and plot.

Like `semantic_report`, this module imports nothing from `polymuse.report`, so `report.py` can
import `MelodySection` for an `AnalysisReport.melody` field without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from polymuse.schema import Model, ModelInfo

if TYPE_CHECKING:
    from polymuse.render.document import Section

MELODY_SCHEMA_VERSION = "1.0"
PLOT_STEP = 0.02  # s between the contour points kept for the plot


class PitchStat(Model):
    hz: float
    note: str = Field(description="nearest note name, e.g. 'A4'")


class MelodySection(Model):
    """What the `melody` node found: the lead line's f0 and notes, and the mix's notes."""

    schema_version: str = MELODY_SCHEMA_VERSION
    backend: str = Field(description="crepe or pyin")
    model: ModelInfo
    input: Literal["vocals", "mix"] = Field(description="the vocal stem, or the mix without one")
    input_path: str
    hop_s: float = Field(description="step of `times`/`f0_hz` (downsampled for the plot)")
    times: list[float] = Field(default_factory=list)
    f0_hz: list[float | None] = Field(default_factory=list, description="None where unvoiced")
    voiced_ratio: float = Field(description="share of frames with a voiced f0")
    median: PitchStat | None = None
    low: PitchStat | None = Field(None, description="5th percentile of the voiced f0")
    high: PitchStat | None = Field(None, description="95th percentile of the voiced f0")
    note_count: int = Field(description="notes segmented from the contour")
    melody_midi: str | None = None
    transcription_model: ModelInfo | None = None
    transcription_note_count: int | None = Field(None, description="Basic Pitch notes of the mix")
    notes_midi: str | None = None
    seconds: float = 0.0
    errors: dict[str, str] = Field(default_factory=dict, description="step -> why it failed")


def pitch_stat(hz: float) -> PitchStat:
    import librosa

    return PitchStat(hz=round(float(hz), 2), note=librosa.hz_to_note(hz))


def melody_section(report: object, figures: list[str] | None = None) -> Section | None:
    """The report outline's 'Melody' section, or None without a melody section."""
    from polymuse.render.document import Section, Table

    melody: MelodySection | None = getattr(report, "melody", None)
    if melody is None:
        return None

    def stat(s: PitchStat | None) -> str:
        return "n/a" if s is None else f"{s.note} ({s.hz:.1f} Hz)"

    rows = [
        ["input", f"{melody.input}: {melody.input_path}"],
        ["f0 model", f"{melody.model.name} ({melody.model.version})"],
        ["voiced", f"{melody.voiced_ratio:.0%} of frames"],
        ["median pitch", stat(melody.median)],
        ["range (5th-95th percentile)", f"{stat(melody.low)} to {stat(melody.high)}"],
        ["melody notes", f"{melody.note_count} -> {melody.melody_midi or 'not written'}"],
    ]
    if melody.transcription_model is not None:
        rows.append(["note model", melody.transcription_model.name])
    if melody.transcription_note_count is not None:
        rows.append(
            [
                "notes of the mix",
                f"{melody.transcription_note_count} -> {melody.notes_midi or 'not written'}",
            ]
        )
    rows += [[f"error: {step}", why] for step, why in melody.errors.items()]
    shown = [n for n in ("melody",) if figures is None or n in figures]
    return Section("Melody", [], [Table(["property", "value"], rows)], shown)


def draw_melody(report: object) -> bytes | None:
    """PNG of the f0 contour on a note-name axis, or None without a voiced contour."""
    import matplotlib

    matplotlib.use("Agg")
    import librosa
    import matplotlib.pyplot as plt

    from polymuse.render.plots import WIDTH, _png

    melody: MelodySection | None = getattr(report, "melody", None)
    if melody is None or not melody.times:
        return None
    f0 = np.array([np.nan if v is None else v for v in melody.f0_hz], dtype=float)
    if not np.isfinite(f0).any():
        return None
    midi = librosa.hz_to_midi(f0)
    fig, ax = plt.subplots(figsize=(WIDTH, 2.8))
    ax.plot(melody.times, midi, color="#357", lw=1.2, label=f"f0 ({melody.backend})")
    if melody.median is not None:
        ax.axhline(
            librosa.hz_to_midi(melody.median.hz), color="#c22", ls="--", lw=0.8, label="median"
        )
    lo, hi = np.nanmin(midi), np.nanmax(midi)
    ticks = np.arange(np.floor(lo / 12) * 12, np.ceil(hi / 12) * 12 + 1, 12 if hi - lo > 24 else 2)
    ax.set_yticks(ticks, [librosa.midi_to_note(int(t)) for t in ticks])
    ax.set(
        title=f"Melody ({melody.input})",
        xlabel="time (s)",
        ylabel="pitch",
        ylim=(lo - 1, hi + 1),
    )
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)
