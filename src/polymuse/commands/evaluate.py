"""`polymuse eval ...`: accuracy benchmarks against exact ground truth."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from polymuse.commands.common import load_settings
from polymuse.commands.eval_recognition import recognition
from polymuse.console import err, out
from polymuse.evaluation.melody import melody
from polymuse.evaluation.semantic_lane import semantic_lane
from polymuse.evaluation.separation import separation

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
    _print_goals(f"Feature accuracy ({result.seconds:.0f} s)", result.summary(), GOALS)
    _save(output / "features.json", result.model_dump_json(indent=2))


app.command("separation")(separation)
app.command("melody")(melody)
app.command("recognition")(recognition)
app.command("semantic-lane")(semantic_lane)


@app.command("tags")
def tags(
    per_family: int = typer.Option(14, "--per-family", help="Pieces per instrument family."),
    seed: int = typer.Option(0, "--seed"),
    cache: Path = typer.Option(None, "--cache", help="Render cache [POLYMUSE_HOME/eval]."),
    calibration: Path = typer.Option(
        None, "--write-calibration", help="Write the calibration fitted on the fit split here."
    ),
    train: bool = typer.Option(
        False, "--train-head", help="Train the instrument head first (other soundfonts)."
    ),
    head_per_class: int = typer.Option(20, "--head-per-class", help="Training pieces per class."),
    write_head: Path = typer.Option(
        None, "--write-head", help="Write the trained head here (with --train-head)."
    ),
    output: Path = typer.Option(Path("reports/eval"), "--output", "-o"),
) -> None:
    """Dominant instrument in the top 3 and text-search MRR on GM-instrument renders."""
    from polymuse.evaluation.tags import GOALS, evaluate_tags

    settings = load_settings()
    cache_dir = cache or settings.home / "eval"
    head = None
    if train:
        from polymuse.evaluation.head_training import train_head

        with err.status("training the instrument head...") as status:
            head, training = train_head(
                per_class=head_per_class,
                cache_dir=cache_dir,
                seed=seed,
                write=write_head,
                progress=lambda message: status.update(message),
            )
        _save(output / "instrument_head.json", training.model_dump_json(indent=2))
    with err.status("rendering and tagging...") as status:
        result = evaluate_tags(
            per_family=per_family,
            cache_dir=cache_dir,
            seed=seed,
            settings=settings,
            write_calibration=calibration,
            head=head,
            progress=lambda message: status.update(message),
        )
    _print_goals("Semantic accuracy (test split)", result.summary(), GOALS)
    _save(output / "tags.json", result.model_dump_json(indent=2))


def _print_goals(title: str, summary: dict[str, float], goals: dict[str, float]) -> None:
    table = Table(title=title)
    for col in ("metric", "value", "goal"):
        table.add_column(col)
    for name, value in summary.items():
        goal = goals.get(name)
        if goal is None or value != value:  # no goal, or nothing measured (nan)
            mark = ""
        else:
            mark = " [green]ok[/]" if value >= goal else " [red]below[/]"
        table.add_row(name, f"{value:g}", f"{goal:g}{mark}" if goal else "")
    out.print(table)


def _save(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    out.print(f"per-piece results: {path}")
