"""`polymuse eval recognition`: the recognition benchmark, beside audfprint (mounted by `eval`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from polymuse.commands.common import load_settings
from polymuse.console import err, out


def recognition(
    catalogue: int = typer.Option(500, "--catalogue", min=10, help="Catalogue songs."),
    held_out: int = typer.Option(100, "--held-out", min=5, help="Out-of-catalogue songs."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Query seeds, comma-separated."),
    per_cell: int = typer.Option(30, "--per-cell", min=1, help="Queries per cell and seed."),
    unknown_per_cell: int = typer.Option(
        10, "--unknown-per-cell", min=0, help="Out-of-catalogue queries per cell and seed."
    ),
    durations: str = typer.Option("1,2,3,5,10", "--durations", help="Query lengths, s."),
    conditions: str = typer.Option(
        None, "--conditions", help="Condition names, comma-separated [all; see the report]."
    ),
    calibrate: bool = typer.Option(
        True, "--calibrate/--no-calibrate", help="Fit the confidence model on extra seeds."
    ),
    calibration_seeds: int = typer.Option(
        3, "--calibration-seeds", min=1, help="Extra seeds the confidence model is fitted on."
    ),
    save_calibration: bool = typer.Option(
        False, "--save-calibration", help="Write the fit into the package data."
    ),
    audfprint_python: str = typer.Option(
        None, "--audfprint-python", help="A Python that imports audfprint2 (peer baseline)."
    ),
    postgres: bool = typer.Option(
        True, "--postgres/--no-postgres", help="Also ingest into PostgreSQL and time look-ups."
    ),
    cache: Path = typer.Option(
        None, "--cache", help="Render cache [POLYMUSE_HOME/eval/recognition]."
    ),
    output: Path = typer.Option(Path("reports/eval"), "--output", "-o"),
) -> None:
    """Top-1/top-5 by condition and duration, unknown rejection, speed, size, vs audfprint."""
    from importlib import resources

    from polymuse.evaluation import recognition as bench
    from polymuse.evaluation.distortions import condition_named
    from polymuse.recognition import calibration

    settings = load_settings()
    with err.status("recognition benchmark...") as status:
        result, model = bench.evaluate_recognition(
            cache_dir=cache or settings.home / "eval" / "recognition",
            catalogue=catalogue,
            held_out=held_out,
            seeds=[int(s) for s in seeds.split(",") if s.strip()],
            per_cell=per_cell,
            unknown_per_cell=unknown_per_cell,
            durations=[float(d) for d in durations.split(",") if d.strip()],
            conditions=[condition_named(c.strip()) for c in conditions.split(",") if c.strip()]
            if conditions
            else None,
            calibrate=calibrate,
            calibration_seeds=calibration_seeds,
            audfprint_python=audfprint_python,
            postgres=postgres,
            progress=lambda message: status.update(message),
        )
    table = Table(title=f"Recognition ({result.catalogue_songs} songs, {result.seconds:.0f} s)")
    for col in ("figure", "value", "goal", "met"):
        table.add_column(col)
    for name, a in result.acceptance.items():
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[a["ok"]]
        table.add_row(name, "-" if a["value"] is None else f"{a['value']:g}", a["goal"], met)
    out.print(table)
    json_path, md_path = bench.write_reports(result, output)
    out.print(f"tables: {md_path}  data: {json_path}")
    if save_calibration and calibrate:
        target = resources.files("polymuse").joinpath("data", calibration.CALIBRATION_FILE)
        out.print(f"calibration: {calibration.save(model, Path(str(target)))}")
