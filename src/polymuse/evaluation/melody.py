"""`polymuse eval melody`: f0 accuracy of the melody backends and note F-measure of Basic Pitch.

The test set is `evaluation.separation.multitrack_set`: Bach chorales whose soprano, on a
voice patch, is rendered alone as the `vocals` stem. The melody reference is the soprano's
note events as an f0 series on a 10 ms grid (unvoiced between notes and outside the music).
Each backend is scored on three inputs: the solo soprano stem, the `vocals` stem a separator
(`dsp` by default) extracts from the mixture, and the mixture itself (soprano, alto, tenor,
bass and drums), with `mir_eval.melody` metrics: raw pitch accuracy (RPA, 50 cents), raw
chroma accuracy, voicing recall and false alarm, overall accuracy. An estimate's pitch in
frames it calls unvoiced is passed as a negative frequency, so RPA scores pitch alone. The
notes the `melody` node segments from the contour (onsets snapped to detected onsets) are
scored against the soprano's notes like the transcription below.

Note transcription is scored on the mixture and on the drum-less sum of the other stems
against all four voices' notes: `mir_eval.transcription` precision, recall and F-measure with
a 50 ms onset tolerance, offsets ignored (and, beside it, with the default 20 % offset rule).

Goal (issue 5): RPA >= 0.80 on the solo soprano stems.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import mir_eval
import numpy as np
import soundfile as sf
import typer
from pydantic import BaseModel, Field
from rich.table import Table

from polymuse.commands.common import load_settings
from polymuse.console import err, out
from polymuse.evaluation.separation import STEM_TRACKS, Multitrack, multitrack_set
from polymuse.settings import Settings
from polymuse.tools import melody as mel
from polymuse.tools import transcription
from polymuse.tools.synth import NoteEvent

GOAL_RPA = 0.80
GRID = 0.01
INPUTS = ("soprano", "separated", "mix")
DEFAULT_BACKENDS = ("crepe-tiny", "crepe-full", "pyin", "salience")


class MelodyScore(BaseModel):
    rpa: float
    rca: float
    voicing_recall: float
    voicing_false_alarm: float
    overall_accuracy: float
    note_f_measure: float = Field(description="notes segmented from the contour, onset 50 ms")
    seconds: float = Field(description="f0 estimation time")


class NoteScore(BaseModel):
    precision: float
    recall: float
    f_measure: float
    f_measure_offsets: float = Field(description="F-measure with the 20 % offset rule too")
    reference_notes: int
    estimated_notes: int
    seconds: float


class PieceResult(BaseModel):
    piece_id: str
    duration: float
    melody: dict[str, dict[str, MelodyScore]] = Field(description="input -> backend -> score")
    notes: dict[str, NoteScore] = Field(default_factory=dict, description="input -> score")


class MelodyEvaluation(BaseModel):
    separator: str
    backends: list[str]
    pieces: list[PieceResult]
    seconds: float

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Mean over pieces of each melody metric, input -> backend -> metric."""
        table: dict[str, dict[str, dict[str, float]]] = {}
        for source in INPUTS:
            for backend in self.backends:
                rows = [p.melody[source][backend] for p in self.pieces if source in p.melody]
                rows = [r for r in rows if r is not None]
                if rows:
                    table.setdefault(source, {})[backend] = {
                        key: round(float(np.mean([getattr(r, key) for r in rows])), 3)
                        for key in MelodyScore.model_fields
                    }
        return table

    def note_summary(self) -> dict[str, dict[str, float]]:
        """Mean note precision, recall, F-measure per input."""
        table: dict[str, dict[str, float]] = {}
        for source in ("mix", "no_drums"):
            rows = [p.notes[source] for p in self.pieces if source in p.notes]
            if rows:
                table[source] = {
                    key: round(float(np.mean([getattr(r, key) for r in rows])), 3)
                    for key in ("precision", "recall", "f_measure", "f_measure_offsets", "seconds")
                }
        return table

    def best_backend(self) -> str:
        """The backend with the highest mean RPA on the solo soprano stems."""
        soprano = self.summary().get("soprano", {})
        return max(soprano, key=lambda b: soprano[b]["rpa"]) if soprano else ""


def reference_f0(notes: Sequence[NoteEvent], end: float, *, step: float = GRID):
    """The notes of a monophonic line as (times, f0 Hz; 0 where no note sounds)."""
    times = np.arange(0.0, end, step)
    f0 = np.zeros_like(times)
    for n in notes:
        f0[(times >= n.onset) & (times < n.offset)] = mir_eval.util.midi_to_hz(n.pitch)
    return times, f0


def melody_score(
    ref_times: np.ndarray,
    ref_f0: np.ndarray,
    contour: mel.Contour,
    seconds: float = 0.0,
    note_f_measure: float = float("nan"),
) -> MelodyScore:
    """mir_eval melody metrics; unvoiced frames carry their pitch guess as a negative f0."""
    pitch = np.nan_to_num(contour.pitch, nan=0.0)
    est = np.where(contour.voiced, pitch, -np.abs(pitch))
    scores = mir_eval.melody.evaluate(ref_times, ref_f0, contour.times, est)
    return MelodyScore(
        rpa=round(scores["Raw Pitch Accuracy"], 4),
        rca=round(scores["Raw Chroma Accuracy"], 4),
        voicing_recall=round(scores["Voicing Recall"], 4),
        voicing_false_alarm=round(scores["Voicing False Alarm"], 4),
        overall_accuracy=round(scores["Overall Accuracy"], 4),
        note_f_measure=round(note_f_measure, 4),
        seconds=round(seconds, 3),
    )


def note_score(
    reference: Sequence[NoteEvent], estimate: Sequence[mel.Note], seconds: float = 0.0
) -> NoteScore:
    """mir_eval transcription scores with a 50 ms onset tolerance."""
    ref_iv = np.array([[n.onset, n.offset] for n in reference]).reshape(-1, 2)
    ref_hz = mir_eval.util.midi_to_hz(np.array([n.pitch for n in reference], float))
    est_iv = np.array([[n.onset, n.offset] for n in estimate]).reshape(-1, 2)
    est_hz = mir_eval.util.midi_to_hz(np.array([n.pitch for n in estimate], float))
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, ref_hz, est_iv, est_hz, onset_tolerance=0.05, offset_ratio=None
    )
    *_, f_off, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, ref_hz, est_iv, est_hz, onset_tolerance=0.05
    )
    return NoteScore(
        precision=round(p, 4),
        recall=round(r, 4),
        f_measure=round(f, 4),
        f_measure_offsets=round(f_off, 4),
        reference_notes=len(reference),
        estimated_notes=len(estimate),
        seconds=round(seconds, 3),
    )


def _mono(path: Path) -> tuple[np.ndarray, int]:
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    return y.mean(axis=1), sr


def _run_backend(name: str, y: np.ndarray, sr: int) -> tuple[mel.Contour, float]:
    backend, _, capacity = name.partition("-")
    started = time.perf_counter()
    contour = mel.estimate_f0(y, sr=sr, backend=backend, capacity=capacity or "tiny", hop_s=GRID)
    return contour, time.perf_counter() - started


def evaluate_melody(
    *,
    pieces: int = 10,
    cache_dir: Path,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    inputs: Sequence[str] = INPUTS,
    separator: str = "dsp",
    notes: bool = True,
    settings: Settings | None = None,
    seed: int = 0,
    max_seconds: float = 30.0,
    progress: Callable[[str], None] | None = None,
) -> MelodyEvaluation:
    """Render (or reuse) the multitrack set and score each melody backend and Basic Pitch."""
    from polymuse.tools.separation import build_separator

    started = time.perf_counter()
    notify = progress or (lambda message: None)
    sep = build_separator(separator, settings) if "separated" in inputs else None
    results = []
    try:
        for piece in multitrack_set(pieces, cache_dir, seed=seed, max_seconds=max_seconds):
            results.append(_evaluate_piece(piece, backends, inputs, sep, notes, notify))
    finally:
        if sep is not None:
            sep.close()
    return MelodyEvaluation(
        separator=separator,
        backends=list(backends),
        pieces=results,
        seconds=round(time.perf_counter() - started, 1),
    )


def _evaluate_piece(
    piece: Multitrack,
    backends: Sequence[str],
    inputs: Sequence[str],
    sep: object,
    notes: bool,
    notify: Callable[[str], None],
) -> PieceResult:
    soprano_part = piece.truth.parts[STEM_TRACKS["vocals"][0] - 1]
    mix, sr = _mono(piece.mixture)
    ref_times, ref_f0 = reference_f0(soprano_part.notes, len(mix) / sr)
    signals: dict[str, np.ndarray] = {}
    if "soprano" in inputs:
        signals["soprano"] = _mono(piece.stem_path("vocals"))[0]
    if "separated" in inputs and sep is not None:
        stereo, _ = sf.read(piece.mixture, dtype="float32", always_2d=True)
        signals["separated"] = np.asarray(sep.separate(stereo.T)["vocals"]).mean(axis=0)
    if "mix" in inputs:
        signals["mix"] = mix
    scores: dict[str, dict[str, MelodyScore]] = {}
    for source, y in signals.items():
        onsets = mel.onset_times(y, sr=sr)
        for backend in backends:
            notify(f"{piece.piece_id}: {backend} on {source}")
            contour, spent = _run_backend(backend, y, sr)
            segmented = mel.snap_onsets(mel.contour_notes(contour), onsets)
            f = note_score(soprano_part.notes, segmented).f_measure
            scores.setdefault(source, {})[backend] = melody_score(
                ref_times, ref_f0, contour, spent, f
            )
    note_scores: dict[str, NoteScore] = {}
    if notes:
        reference = [n for part in piece.truth.parts for n in part.notes]
        no_drums = sum(_mono(piece.stem_path(s))[0] for s in ("vocals", "other", "bass"))
        for source, y in (("mix", mix), ("no_drums", no_drums)):
            notify(f"{piece.piece_id}: Basic Pitch on {source}")
            t0 = time.perf_counter()
            estimate = transcription.transcribe(y, sr=sr)
            note_scores[source] = note_score(reference, estimate, time.perf_counter() - t0)
    return PieceResult(
        piece_id=piece.piece_id,
        duration=round(len(mix) / sr, 3),
        melody=scores,
        notes=note_scores,
    )


def melody(
    pieces: Annotated[int, typer.Option("--pieces", "-n", help="Number of chorales.")] = 10,
    backend: Annotated[
        list[str] | None,
        typer.Option(
            "--backend", "-b", help="crepe-tiny, crepe-full, pyin, salience (repeatable)."
        ),
    ] = None,
    separator: Annotated[
        str, typer.Option("--separator", "-s", help="Separator for the vocal stems.")
    ] = "dsp",
    seconds: Annotated[float, typer.Option("--seconds", help="Music per chorale, s.")] = 30.0,
    seed: Annotated[int, typer.Option("--seed", help="Seeds pieces, tempi, sounds, levels.")] = 0,
    no_notes: Annotated[
        bool, typer.Option("--no-notes", help="Skip the Basic Pitch transcription.")
    ] = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json-out", help="Full results [<output dir>/eval/melody.json]."),
    ] = None,
) -> None:
    """Melody RPA (soprano, separated vocals, mix) and note F-measure on rendered chorales."""
    settings = load_settings()
    with err.status("rendering and tracking") as status:
        evaluation = evaluate_melody(
            pieces=pieces,
            cache_dir=settings.cache_dir / "eval" / "separation",
            backends=backend or DEFAULT_BACKENDS,
            separator=separator,
            notes=not no_notes,
            settings=settings,
            seed=seed,
            max_seconds=seconds,
            progress=status.update,
        )
    for table in summary_tables(evaluation):
        out.print(table)
    json_out = json_out or settings.output_dir / "eval" / "melody.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    payload = evaluation.model_dump(mode="json") | {
        "summary": evaluation.summary(),
        "notes_summary": evaluation.note_summary(),
        "best_backend": evaluation.best_backend(),
    }
    json_out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    err.print(f"results: {json_out}")


def summary_tables(evaluation: MelodyEvaluation) -> list[Table]:
    """Mean melody metrics per input and backend; mean note scores per input."""
    table = Table(
        title=f"Melody on {len(evaluation.pieces)} chorales (means; goal RPA >= {GOAL_RPA})",
        title_justify="left",
    )
    for col in ("input", "backend", "RPA", "RCA", "VR", "VFA", "OA", "note F", "s/piece"):
        table.add_column(col, justify="left" if col in ("input", "backend") else "right")
    for source, rows in evaluation.summary().items():
        for backend, row in rows.items():
            met = " ok" if source == "soprano" and row["rpa"] >= GOAL_RPA else ""
            table.add_row(
                source,
                backend,
                f"{row['rpa']:.3f}{met}",
                f"{row['rca']:.3f}",
                f"{row['voicing_recall']:.3f}",
                f"{row['voicing_false_alarm']:.3f}",
                f"{row['overall_accuracy']:.3f}",
                f"{row['note_f_measure']:.3f}",
                f"{row['seconds']:.1f}",
            )
    tables = [table]
    if note_rows := evaluation.note_summary():
        notes = Table(title="Basic Pitch notes (onset 50 ms), means", title_justify="left")
        for col in ("input", "P", "R", "F", "F (offsets)", "s/piece"):
            notes.add_column(col, justify="left" if col == "input" else "right")
        for source, row in note_rows.items():
            notes.add_row(
                source,
                f"{row['precision']:.3f}",
                f"{row['recall']:.3f}",
                f"{row['f_measure']:.3f}",
                f"{row['f_measure_offsets']:.3f}",
                f"{row['seconds']:.1f}",
            )
        tables.append(notes)
    return tables
