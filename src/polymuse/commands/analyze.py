"""`polymuse analyze`: run the analysis graph over one or more songs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from polymuse.agents.ask import Responder
from polymuse.agents.goal import plan_goal
from polymuse.agents.tools import ReportLibrary, SongEntry
from polymuse.commands.common import each_file, load_settings, split_names
from polymuse.console import err, out
from polymuse.graph import build_graph, select_nodes
from polymuse.report import AnalysisReport
from polymuse.runtime import Context
from polymuse.settings import Settings


def analyze(
    files: list[Path] = typer.Argument(
        ..., help="Audio files (wav, flac, ogg, opus, mp3, m4a...)."
    ),
    only: list[str] = typer.Option(None, "--only", help="Run only these nodes (comma-separated)."),
    skip: list[str] = typer.Option(None, "--skip", help="Skip these nodes (comma-separated)."),
    output: Path = typer.Option(None, "--output", "-o", help="Report folder root [reports/]."),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON instead of a table."),
    goal: str = typer.Option(
        None, "--goal", help='Plain-words request, e.g. "just the key and the chords".'
    ),
) -> None:
    """Analyse songs; write reports/<song>-<hash>/ with report.json, .md, .html and .jams."""
    settings = load_settings(output=output)
    only_names, skip_names = split_names(only), split_names(skip)
    goal_plan = plan_goal(goal) if goal else None
    if goal_plan and not only_names:
        only_names = goal_plan.nodes
    graph = build_graph(only=only_names, skip=skip_names).compile()
    nodes = select_nodes(only=only_names, skip=skip_names)

    def analyse(path: Path) -> tuple[AnalysisReport, str]:
        return run_analysis(graph, path, settings, nodes, quiet=as_json)

    for _, (report, folder) in each_file(files, analyse):
        if as_json:
            out.print_json(report.model_dump_json())
        else:
            print_summary(report, folder)
        if goal_plan:
            entry = SongEntry(report, folder)
            answer = Responder(ReportLibrary([entry])).answer(goal, song=entry)
            out.print(answer.render(), highlight=False)


def run_analysis(
    graph, path: Path, settings: Settings, nodes: list[str], *, quiet: bool = False
) -> tuple[AnalysisReport, str]:
    """Stream the graph over one file with a progress display; return the report and folder."""
    context = Context(settings=settings)
    final: dict = {}
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    ) as progress:
        task = progress.add_task(f"{path.name}: load", total=len(nodes))
        for chunk in graph.stream({"path": str(path)}, context=context, stream_mode="updates"):
            for name, update in chunk.items():
                final.update(update or {})
                progress.update(task, advance=1, description=f"{path.name}: {name} done")
    return final["report"], final["report_dir"]


def print_summary(report: AnalysisReport, folder: str) -> None:
    """A short table of the headline facts and where the files are."""
    f = report.features
    table = Table(title=report.title, show_header=False, title_justify="left")
    table.add_row("summary", report.summary)
    if f and f.key:
        table.add_row("key", f"{f.key.label} ({f.key.confidence:.2f})")
    if f and f.rhythm and f.rhythm.tempo_bpm:
        table.add_row("tempo", f"{f.rhythm.tempo_bpm:.1f} BPM, {f.rhythm.beats_per_bar} beats/bar")
    if f and f.structure:
        table.add_row("form", " ".join(s.label for s in f.structure))
    if f and f.loudness and f.loudness.integrated_lufs is not None:
        table.add_row("loudness", f"{f.loudness.integrated_lufs:.1f} LUFS")
    for run in report.nodes:
        if run.status != "ok":
            table.add_row(f"node {run.name}", f"{run.status}: {run.detail}")
    table.add_row("report", f"{folder}/report.html")
    out.print(table)
