"""`polymuse identify CLIP... [--timeline] [--lane exact|both]`: which catalogue song a clip
is, and where in it."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from polymuse.commands.common import load_settings
from polymuse.console import err, out
from polymuse.errors import PolymuseError
from polymuse.recognition import Recognition, SemanticLane, SemanticOpinion, Timeline, service
from polymuse.recognition.calibration import SHORT_SECONDS
from polymuse.recognition.refresh import stale_note
from polymuse.store import open_store
from polymuse.tools import audio, fingerprint


class Lane(StrEnum):
    """Which recognition lanes `identify` asks."""

    exact = "exact"
    both = "both"


def identify(
    clips: list[Path] = typer.Argument(..., help="Audio clips (any format ffmpeg reads)."),
    timeline: bool = typer.Option(
        False, "--timeline", help="Long recording: list every catalogue song along it."
    ),
    window: float = typer.Option(10.0, "--window", min=1.0, help="Timeline window, seconds."),
    hop: float = typer.Option(5.0, "--hop", min=0.5, help="Timeline hop, seconds."),
    dsn: str = typer.Option(
        None, "--dsn", show_default=False, help="External PostgreSQL DSN [embedded server]."
    ),
    lane: Lane = typer.Option(
        Lane.both,
        "--lane",
        help="exact: landmark fingerprints only; both: also the semantic lane (window "
        "embeddings) when the catalogue has them. Not used with --timeline.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the answers as JSON."),
) -> None:
    """Identify clips against the catalogue: the exact lane (landmark fingerprints), then the
    semantic lane (window embeddings) as a second opinion and for near-duplicates. A clip
    longer than 12 s is looked up as three 10 s excerpts; the strongest answer counts."""
    settings = load_settings(dsn=dsn)
    rate = fingerprint.ANALYSIS_RATE
    failures = 0
    answers: list[dict] = []
    with open_store(settings, max_size=1) as store:
        recognizer = service.recognizer_for(store)
        if note := stale_note(store):
            err.print(f"[yellow]warning:[/yellow] {note}", highlight=False, soft_wrap=True)
        semantic: SemanticLane | None = None
        if lane is Lane.both and not timeline:
            semantic = service.semantic_lane(settings, store)
        for clip in clips:
            try:
                source = audio.probe(clip)
                y = audio.load(source, sample_rate=rate, mono=True)
                if timeline:
                    found: Recognition | Timeline = recognizer.timeline(
                        y, rate, window_s=window, hop_s=max(min(hop, window), 0.5)
                    )
                else:
                    found = service.second_opinion(
                        service.identify_file(recognizer, y, rate)[0],
                        semantic,
                        lambda sr, source=source: audio.load(source, sample_rate=sr, mono=True),
                        duration_s=len(y) / rate,
                    )
            except PolymuseError as exc:
                if len(clips) == 1:
                    raise
                err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
                failures += 1
                continue
            if as_json:
                answers.append({"clip": str(clip), **json.loads(found.model_dump_json())})
            elif isinstance(found, Timeline):
                _print_timeline(clip, found)
            else:
                _print_answer(clip, found)
    if as_json:
        out.print_json(json.dumps(answers if len(clips) > 1 else answers[0]))
    if failures:
        raise typer.Exit(1)


def _print_answer(clip: Path, answer: Recognition) -> None:
    opinion = answer.semantic
    if answer.match is None:
        best = answer.alternatives[0] if answer.alternatives else None
        hint = f" (closest: {best.title}, confidence {best.confidence:.2f})" if best else ""
        short = answer.query_duration_s < SHORT_SECONDS
        doubt = f", as far as {answer.query_duration_s:.1f} s can tell" if short else ""
        out.print(
            f"{clip.name}: [yellow]not in the catalogue[/yellow]{doubt}{hint}", highlight=False
        )
        if opinion is not None:
            out.print(f"  second opinion: {_opinion(opinion)}", highlight=False)
        return
    m = answer.match
    table = Table(title=f"{clip.name}: {m.title}" + (f" - {m.artist}" if m.artist else ""))
    for column in ("field", "value"):
        table.add_column(column)
    table.add_row("decided by", f"{answer.decided_by} lane")
    table.add_row("confidence", f"{m.confidence:.3f}")
    if m.lane == "semantic":
        table.add_row("similarity", f"{m.similarity:.3f}")
        table.add_row(
            "closest",
            f"{m.query_start_s:.1f}-{m.query_end_s:.1f} s of the clip ~ "
            f"{m.reference_start_s:.1f}-{m.reference_end_s:.1f} s of the reference",
        )
    else:
        table.add_row("starts at", f"{m.reference_offset_s:.2f} s of the reference")
        table.add_row(
            "matched",
            f"{m.query_start_s:.2f}-{m.query_end_s:.2f} s of the clip = "
            f"{m.reference_start_s:.2f}-{m.reference_end_s:.2f} s of the reference",
        )
        table.add_row("tempo ratio", f"{m.tempo_ratio:.3f}")
        table.add_row("pitch shift", f"{m.pitch_shift:+.2f} semitones")
        table.add_row(
            "evidence",
            f"{m.score} hashes, {m.peaks_found}/{m.peaks_checked} peaks found, "
            f"{m.peaks_absent} absent, {m.peaks_raised} raised, "
            f"{m.depth_db:.1f} dB below the clip's peaks, "
            f"{m.steady_explained}/{m.steady_peaks} of the clip's held notes explained",
        )
    if opinion is not None:
        table.add_row("semantic lane", _opinion(opinion))
    table.add_row("song / asset", f"{m.song_id} / {m.asset_id}")
    seconds = answer.seconds + (opinion.seconds if opinion else 0.0)
    table.add_row("time", f"{1000 * seconds:.0f} ms")
    out.print(table)


def _opinion(opinion: SemanticOpinion) -> str:
    """The semantic lane's opinion in a line."""
    if opinion.note:
        return f"semantic lane silent ({opinion.note})"
    if not opinion.candidates:
        return "semantic lane found no close window"
    top = opinion.candidates[0]
    verdict = {True: "agrees", False: "disagrees", None: "no exact song to compare"}
    accepts = "advises only" if opinion.threshold is None else f"accepts at {opinion.threshold}"
    return (
        f"{top.title} at {top.reference_start_s:.0f}-{top.reference_end_s:.0f} s, similarity "
        f"{top.similarity:.3f} ({accepts}); {verdict[opinion.agrees]}"
    )


def _print_timeline(clip: Path, found: Timeline) -> None:
    table = Table(title=f"{clip.name}: {len(found.segments)} segment(s), {found.duration_s:.0f} s")
    for column in ("from", "to", "song", "at (reference)", "confidence"):
        table.add_column(column)
    for seg in found.segments:
        m = seg.match
        table.add_row(
            f"{seg.start_s:.1f}",
            f"{seg.end_s:.1f}",
            m.title,
            f"{m.reference_start_s:.1f}-{m.reference_end_s:.1f}",
            f"{m.confidence:.2f}",
        )
    out.print(table)
