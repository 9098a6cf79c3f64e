"""`polymuse separate`: write the stems of songs, without the rest of the analysis."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from polymuse.commands.common import each_file, load_settings
from polymuse.console import err, out
from polymuse.report import Separation, SourceInfo
from polymuse.tools import audio
from polymuse.tools.separation.stems import separate_file


def separate(
    files: list[Path] = typer.Argument(
        ..., help="Audio files (wav, flac, ogg, opus, mp3, m4a...)."
    ),
    separator: str = typer.Option(
        None, "--separator", "-s", help="dsp | bs_roformer | demucs | unittest [settings]."
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Report folder root [reports/]."),
    as_json: bool = typer.Option(False, "--json", help="Print the result JSON instead of a table."),
) -> None:
    """Split songs into vocals, drums, bass, other and instrumental WAVs (44.1 kHz).

    Stems go to <output>/<song>-<hash>/stems/, the folder `polymuse analyze` uses.
    """
    from polymuse.render.files import report_folder

    settings = load_settings(output=output, separator=separator)

    def separate_one(path: Path) -> Separation:
        source = audio.probe(path)
        digest = audio.content_hash(source.path)
        folder = report_folder(settings.output_dir, _source_info(source, digest)) / "stems"
        return separate_file(source.path, folder, settings=settings, content_hash=digest)

    for path, result in each_file(files, separate_one):
        if as_json:
            out.print_json(result.model_dump_json())
        else:
            print_stems(path, result)


def _source_info(source: audio.AudioProbe, digest: str) -> SourceInfo:
    return SourceInfo(
        path=str(source.path.resolve()),
        file_name=source.path.name,
        content_hash=digest,
        size_bytes=source.path.stat().st_size,
        container=source.container,
        codec=source.codec,
        decoder=source.decoder,
        sample_rate=source.sample_rate,
        channels=source.channels,
        frames=source.frames,
        duration_s=round(source.duration_s, 3),
    )


def print_stems(path: Path, result: Separation) -> None:
    """One row per stem: loudness, share of the mix, file."""
    how = "cached" if result.cached else f"{result.seconds:.1f} s"
    table = Table(title=f"{path.name}: {result.model.name} ({how})", title_justify="left")
    for col in ("stem", "LUFS", "share", "file"):
        table.add_column(col)
    for stem in result.stems:
        lufs = "silent" if stem.loudness_lufs is None else f"{stem.loudness_lufs:.1f}"
        share = "" if stem.name == "instrumental" else f"{100 * stem.energy_share:.1f} %"
        table.add_row(stem.name, lufs, share, stem.path)
    out.print(table)
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
