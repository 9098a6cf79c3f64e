"""`polymuse db start|stop|status`: the catalogue's PostgreSQL server."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from polymuse.commands.catalog import dsn_option
from polymuse.commands.common import load_settings
from polymuse.console import out
from polymuse.errors import StoreError, UserError
from polymuse.settings import Settings
from polymuse.store import EmbeddedServer, migrations, open_store, queries
from polymuse.store.pool import connect, describe

app = typer.Typer(
    help="The catalogue database: an embedded PostgreSQL under POLYMUSE_HOME, or --dsn.",
    no_args_is_help=True,
)
_SETTINGS_KEY = "polymuse.settings"


@app.callback()
def _options(ctx: typer.Context, dsn: str = dsn_option()) -> None:
    ctx.meta[_SETTINGS_KEY] = load_settings(dsn=dsn)


def _settings(ctx: typer.Context) -> Settings:
    found = ctx.meta.get(_SETTINGS_KEY)
    return found if isinstance(found, Settings) else load_settings()


@app.command("start")
def start(ctx: typer.Context) -> None:
    """Start the embedded server (if needed) and bring the schema up to date."""
    settings = _settings(ctx)
    server = None if settings.dsn else EmbeddedServer(settings.home)
    started = server.start() if server else False
    with open_store(settings, max_size=1) as store, store.connection() as conn:
        info = queries.server_info(conn)
    state = "started" if started else "already running" if server else "reachable"
    out.print(
        f"PostgreSQL {info['server_version']} {state} ({store.where}), pgvector "
        f"{info['pgvector']}, schema {info['schema_version']}"
    )


@app.command("stop")
def stop(ctx: typer.Context) -> None:
    """Stop the embedded server (open transactions roll back; committed data is kept)."""
    settings = _settings(ctx)
    if settings.dsn:
        raise UserError(
            f"the catalogue uses an external server ({describe(settings.dsn)}); "
            "it is not Poly-Muse's to stop"
        )
    server = EmbeddedServer(settings.home)
    out.print(
        f"stopped {server.data_dir}" if server.stop() else "the embedded server is not running"
    )


@app.command("status")
def status(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Where the catalogue lives and whether it answers; never starts anything."""
    settings = _settings(ctx)
    data: dict[str, object] = {}
    dsn = settings.dsn
    if dsn is None:
        state = EmbeddedServer(settings.home).status()
        data.update(
            mode="embedded",
            data_dir=str(state.data_dir),
            running=state.running,
            pid=state.pid,
            socket_dir=str(state.socket_dir or ""),
            detail=state.detail,
        )
        dsn = EmbeddedServer(settings.home).conninfo() if state.running else None
    else:
        data.update(mode="external", server=describe(dsn))
    if dsn is not None:
        try:
            with connect(dsn) as conn:
                data.update(queries.server_info(conn))
                data["pending_migrations"] = len(
                    [m for m in migrations.available() if m.version not in migrations.applied(conn)]
                )
            data["running"] = True
        except StoreError as exc:
            data.update(running=False, detail=str(exc))
    if as_json:
        out.print_json(json.dumps(data, default=str))
    else:
        table = Table(title="catalogue database", show_header=False, title_justify="left")
        for key, value in data.items():
            table.add_row(key, str(value))
        out.print(table)
    if not data.get("running"):
        raise typer.Exit(1)
