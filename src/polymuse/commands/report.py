"""`polymuse report show|schema`: read reports back."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError

from polymuse.commands.analyze import print_summary
from polymuse.console import out
from polymuse.errors import UserError
from polymuse.report import AnalysisReport

app = typer.Typer(help="Read analysis reports.", no_args_is_help=True)


def read_report(path: Path) -> tuple[AnalysisReport, Path]:
    """Load a report from its folder or its report.json."""
    file = path / "report.json" if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{path}: no report.json here; pass a report folder or its report.json")
    try:
        return AnalysisReport.model_validate_json(file.read_text(encoding="utf-8")), file.parent
    except ValidationError as exc:
        raise UserError(
            f"{file}: not a valid Poly-Muse report ({exc.error_count()} errors)"
        ) from exc


@app.command("show")
def show(path: Path = typer.Argument(..., help="A report folder or report.json.")) -> None:
    """Print a report's summary table in the terminal."""
    report, folder = read_report(path)
    print_summary(report, str(folder))


@app.command("schema")
def schema(
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file instead."),
) -> None:
    """Print (or write) the JSON Schema of report.json."""
    text = json.dumps(AnalysisReport.model_json_schema(), indent=2, ensure_ascii=False)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        out.print_json(text)
