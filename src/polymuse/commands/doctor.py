"""`polymuse doctor`: what is installed and usable, and every model's source and licence."""

from __future__ import annotations

import typer
from rich.table import Table

from polymuse.commands.common import load_settings
from polymuse.console import out
from polymuse.diagnostics import all_checks
from polymuse.model_cards import MODEL_CARDS
from polymuse.tools.semantics.instrument_head import head_card


def doctor() -> None:
    """Check packages, tools and backends; list models with source and licence."""
    checks = all_checks(load_settings())
    table = Table(title="Poly-Muse doctor", title_justify="left")
    for col in ("component", "status", "detail"):
        table.add_column(col)
    for check in checks:
        table.add_row(
            check.component, "[green]ok[/]" if check.ok else "[red]missing[/]", check.detail
        )
    out.print(table)
    models = Table(title="Models", title_justify="left")
    for col in ("model", "version", "source", "licence"):
        models.add_column(col)
    for card in [*MODEL_CARDS.values(), head_card()]:
        models.add_row(card.name, card.version, card.source, card.licence)
    out.print(models)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
