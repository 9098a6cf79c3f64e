"""`polymuse identify CLIP... [--timeline]`: which catalogue song a clip is, and where in it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from polymuse.commands.common import load_settings
from polymuse.console import err, out
from polymuse.errors import PolymuseError
from polymuse.recognition import Recognition, Timeline, service
from polymuse.store import open_store
from polymuse.tools import audio, fingerprint


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
    as_json: bool = typer.Option(False, "--json", help="Print the answers as JSON."),
) -> None:
    """Identify clips against the catalogue (exact lane: landmark fingerprints)."""
    settings = load_settings(dsn=dsn)
    rate = fingerprint.ANALYSIS_RATE
    failures = 0
    answers: list[dict] = []
    with open_store(settings, max_size=1) as store:
        recognizer = service.recognizer_for(store)
        for clip in clips:
            try:
                y = audio.load(audio.probe(clip), sample_rate=rate, mono=True)
                if timeline:
                    found: Recognition | Timeline = recognizer.timeline(
                        y, rate, window_s=window, hop_s=max(min(hop, window), 0.5)
                    )
                else:
                    found = recognizer.identify(y, rate)
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
    if answer.match is None:
        best = answer.alternatives[0] if answer.alternatives else None
        hint = f" (closest: {best.title}, confidence {best.confidence:.2f})" if best else ""
        out.print(f"{clip.name}: [yellow]not in the catalogue[/yellow]{hint}", highlight=False)
        return
    m = answer.match
    table = Table(title=f"{clip.name}: {m.title}" + (f" - {m.artist}" if m.artist else ""))
    for column in ("field", "value"):
        table.add_column(column)
    table.add_row("confidence", f"{m.confidence:.3f}")
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
        f"{m.score} hashes, {m.peaks_found}/{m.peaks_checked} peaks found, {m.peaks_absent} absent",
    )
    table.add_row("song / asset", f"{m.song_id} / {m.asset_id}")
    table.add_row("time", f"{1000 * answer.seconds:.0f} ms")
    out.print(table)


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
