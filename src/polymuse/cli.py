"""The `polymuse` command line: mounts one typer app per command group, maps errors to exits."""

from __future__ import annotations

import logging
import sys

import typer

from polymuse.commands import (
    agents,
    analyze,
    catalog,
    db,
    doctor,
    evaluate,
    example,
    identify,
    report,
    search,
    separate,
)
from polymuse.console import err
from polymuse.errors import PolymuseError, UserError

EXIT_OK, EXIT_SOME_FAILED, EXIT_FATAL = 0, 1, 2

app = typer.Typer(
    name="polymuse",
    help="Agent-orchestrated music analysis: hand it a song, learn everything about it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("analyze")(analyze.analyze)
app.command("doctor")(doctor.doctor)
app.command("example")(example.example)
app.command("separate")(separate.separate)
app.command("identify")(identify.identify)
app.command("search")(search.search)
app.command("ask")(agents.ask)
app.command("chat")(agents.chat)
app.command("review")(agents.review)
app.command("plan")(agents.plan)
app.command("feedback")(agents.feedback)
app.command("similar")(search.similar)
app.add_typer(report.app, name="report")
app.add_typer(catalog.app, name="catalog")
app.add_typer(db.app, name="db")
app.add_typer(evaluate.app, name="eval")

_verbose = False


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs and tracebacks."),
) -> None:
    global _verbose
    _verbose = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Entry point: known errors become one line on stderr and exit code 2."""
    try:
        app()
    except PolymuseError as exc:
        if _verbose:
            err.print_exception()
        prefix = "usage error" if isinstance(exc, UserError) else "error"
        err.print(f"[red]{prefix}:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_FATAL)
    except Exception as exc:
        if _verbose:
            raise
        err.print(
            f"[red]internal error:[/red] {type(exc).__name__}: {exc} (run with -v for details)",
            highlight=False,
        )
        sys.exit(EXIT_FATAL)
