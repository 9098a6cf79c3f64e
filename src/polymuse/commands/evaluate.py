"""`polymuse eval ...`: accuracy benchmarks against exact ground truth."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from polymuse.commands.common import load_settings
from polymuse.console import err, out

app = typer.Typer(help="Measure accuracy against rendered ground truth.", no_args_is_help=True)


@app.command("features")
def features(
    key_pieces: int = typer.Option(40, "--key-pieces", help="Bach chorales for key."),
    rhythm_pieces: int = typer.Option(40, "--rhythm-pieces", help="Fiddle tunes for rhythm."),
    seed: int = typer.Option(0, "--seed"),
    cache: Path = typer.Option(None, "--cache", help="Render cache [POLYMUSE_HOME/eval]."),
    output: Path = typer.Option(Path("reports/eval"), "--output", "-o"),
) -> None:
    """Key (MIREX weighted), tempo (4 %), beat/downbeat F-measure on music21 renders."""
    from polymuse.evaluation.features import GOALS, evaluate_features

    settings = load_settings()
    with err.status("rendering and analysing...") as status:
        result = evaluate_features(
            key_pieces=key_pieces,
            rhythm_pieces=rhythm_pieces,
            cache_dir=cache or settings.home / "eval",
            seed=seed,
            progress=lambda message: status.update(message),
        )
    summary = result.summary()
    table = Table(title=f"Feature accuracy ({summary['pieces']} pieces, {result.seconds:.0f} s)")
    for col in ("metric", "value", "goal"):
        table.add_column(col)
    for name, value in summary.items():
        goal = GOALS.get(name)
        mark = "" if goal is None else (" [green]ok[/]" if value >= goal else " [red]below[/]")
        table.add_row(name, f"{value:g}", f"{goal:g}{mark}" if goal else "")
    out.print(table)
    output.mkdir(parents=True, exist_ok=True)
    (output / "features.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")
    out.print(f"per-piece results: {output / 'features.json'}")
