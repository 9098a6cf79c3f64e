"""`polymuse example`: render the bundled demo song (Pachelbel's Canon) offline."""

from __future__ import annotations

from pathlib import Path

import typer

from polymuse.console import out


def example(
    output: Path = typer.Option(Path("."), "--output", "-o", help="Folder to write 卡农.wav into."),
) -> None:
    """Write 卡农.wav: Pachelbel's Canon in D from music21 through FluidSynth (public domain)."""
    from polymuse.tools.example import write_example

    path = write_example(output)
    out.print(f"wrote {path}  (next: polymuse analyze {path})")
