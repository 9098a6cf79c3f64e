"""`polymuse catalog add|list|show|remove|stats|export|quarantine`: your music in PostgreSQL."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from polymuse.commands.common import load_settings, split_names
from polymuse.console import err, out
from polymuse.errors import UserError
from polymuse.settings import Settings
from polymuse.store import Store, catalog, open_store, queries

app = typer.Typer(
    help="Your music catalogue (PostgreSQL + pgvector): add folders, list, show, remove, export.",
    no_args_is_help=True,
)
_SETTINGS_KEY = "polymuse.settings"


def dsn_option() -> Any:
    return typer.Option(
        None,
        "--dsn",
        show_default=False,
        help="External PostgreSQL (15+, pgvector) DSN; default: the embedded server "
        "(env POLYMUSE_DSN).",
    )


@app.callback()
def _options(ctx: typer.Context, dsn: str = dsn_option()) -> None:
    ctx.meta[_SETTINGS_KEY] = load_settings(dsn=dsn)


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the group callback built (with `--dsn` applied)."""
    found = ctx.meta.get(_SETTINGS_KEY)
    return found if isinstance(found, Settings) else load_settings()


@app.command("add")
def add(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Folders (searched recursively) and files."),
    set_name: str = typer.Option(None, "--set", "-s", help="Put the songs in this catalogue set."),
    extractors: list[str] = typer.Option(
        None,
        "--extractor",
        "-x",
        help="Feature extractors, repeated or comma-separated [spectral-stats, polymuse-triplets]; "
        "'none' for Chromaprint only. Stored files lacking an extractor's features get them.",
    ),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, help="Decoder processes [all cores]."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Files per extractor batch."),
    window: float = typer.Option(10.0, "--window", min=0.5, help="Window length, seconds."),
    hop: float = typer.Option(5.0, "--hop", min=0.1, help="Window hop, seconds."),
    quarantine_dir: Path = typer.Option(
        None, "--quarantine-dir", help="Move bad files here (default: only record them)."
    ),
    retry_quarantined: bool = typer.Option(
        False, "--retry-quarantined", help="Try files quarantined by earlier runs again."
    ),
    no_chromaprint: bool = typer.Option(
        False, "--no-chromaprint", help="Skip Chromaprint (files join songs by tags only)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Add audio files to the catalogue; bad files are quarantined, stored ones skipped.

    A stored file without the features of an extractor asked for (e.g. `-x semantic` on a
    catalogue built with the defaults) is updated instead: only the missing extractors run.
    """
    from polymuse.ingest import DEFAULT_EXTRACTORS, IngestOptions, build_extractor, run_ingest

    settings = settings_of(ctx)
    names = split_names(extractors) or DEFAULT_EXTRACTORS
    built = [build_extractor(n, settings=settings) for n in names if n != "none"]
    options = IngestOptions(
        set_name=set_name,
        extractors=built,
        batch_size=batch_size,
        window_s=window,
        hop_s=hop,
        chromaprint=not no_chromaprint,
        quarantine_dir=quarantine_dir,
        retry_quarantined=retry_quarantined,
        **({"jobs": jobs} if jobs else {}),
    )
    with open_store(settings) as store, _IngestProgress(disable=as_json) as progress:
        try:
            summary = run_ingest(store, paths, options, on_progress=progress.update)
        except KeyboardInterrupt:
            err.print(
                "[yellow]interrupted[/]: files written so far are complete; "
                "run the same command again to finish"
            )
            raise typer.Exit(130) from None
    if as_json:
        out.print_json(json.dumps(_summary_dict(summary), default=str))
    else:
        _print_summary(summary)
    if summary.quarantined or summary.failed:
        raise typer.Exit(1)


@app.command("list")
def list_songs(
    ctx: typer.Context,
    set_name: str = typer.Option(None, "--set", "-s", help="Only songs in this set."),
    search: str = typer.Option(None, "--search", "-q", help="Text in title, artist or album."),
    limit: int = typer.Option(100, "--limit", "-n", min=1, help="At most this many songs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List songs by artist and title."""
    with _store(ctx) as store, store.connection() as conn:
        songs = queries.list_songs(conn, set_name=set_name, search=search, limit=limit)
    if as_json:
        out.print_json(json.dumps(songs, default=str))
        return
    table = Table(title=f"{len(songs)} songs", title_justify="left")
    for col in ("id", "artist", "title", "album", "length", "files"):
        table.add_column(col, justify="right" if col in ("id", "length", "files") else "left")
    for s in songs:
        table.add_row(
            str(s["song_id"]),
            s["artist"] or "",
            s["title"],
            s["album"] or "",
            _clock(s["duration_s"]),
            str(s["assets"]),
        )
    out.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    song: str = typer.Argument(..., help="Song id, or text found in its title/artist."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one song: its files, windows, features per model and sets."""
    with _store(ctx) as store, store.connection() as conn:
        found = queries.get_song(conn, _song_id(conn, song))
    if found is None:
        raise UserError(f"no song {song}; see `polymuse catalog list`")
    if as_json:
        out.print_json(json.dumps(found, default=str))
        return
    head = Table(title=f"song {found['song_id']}", show_header=False, title_justify="left")
    for key in ("title", "artist", "album", "year", "metadata_source"):
        head.add_row(key, str(found[key] or ""))
    head.add_row("sets", ", ".join(found["sets"]) or "-")
    if found["external_ids"]:
        head.add_row("ids", json.dumps(found["external_ids"]))
    out.print(head)
    files = Table(title="files", title_justify="left")
    for col in ("asset", "path", "length", "format", "rate", "windows", "sha256"):
        files.add_column(col)
    for f in found["files"]:
        files.add_row(
            str(f["asset_id"]),
            f["file_path"],
            _clock(f["duration_s"]),
            f"{f['container']}/{f['codec']}",
            str(f["sample_rate"]),
            str(f["windows"]),
            f["content_hash"][:12],
        )
    out.print(files)
    facts = Table(title="features", title_justify="left")
    for col in ("type", "model", "version", "feature set", "facts", "dim", "postings"):
        facts.add_column(col)
    for f in found["facts"]:
        facts.add_row(
            f["feature_type"],
            f["model_name"],
            f["model_version"],
            f["feature_set_name"],
            str(f["facts"]),
            str(f["dim"] or ""),
            str(f["postings"] or ""),
        )
    out.print(facts)


@app.command("remove")
def remove(
    ctx: typer.Context,
    ids: list[int] = typer.Argument(..., help="Song ids (asset ids with --asset)."),
    asset: bool = typer.Option(False, "--asset", help="Remove single files, not whole songs."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Remove songs (or files) with their windows, features, vectors and postings."""
    what = "files" if asset else "songs"
    if not yes and not typer.confirm(f"Remove {what} {', '.join(map(str, ids))}?"):
        raise typer.Exit(1)
    with _store(ctx) as store, store.transaction("removing from the catalogue") as conn:
        counts = (catalog.remove_assets if asset else catalog.remove_songs)(conn, ids)
    if counts["songs"] == 0 and counts["assets"] == 0:
        raise UserError(f"no {what} with id {', '.join(map(str, ids))}")
    out.print(
        f"removed {counts['songs']} songs, {counts['assets']} files, {counts['windows']} windows, "
        f"{counts['facts']} features, {counts['postings']} postings"
    )


@app.command("stats")
def stats(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Counts, audio hours, features per model, vector tables and recent runs."""
    from polymuse.recognition import service
    from polymuse.recognition.refresh import stale_assets

    with _store(ctx) as store:
        with store.connection() as conn:
            data = queries.stats(conn)
        data["stale_fingerprints"] = len(stale_assets(store))
        lane = service.semantic_lane(settings_of(ctx), store)
        data["semantic_lane"] = lane.unavailable or (
            f"ready ({lane.model_name}, threshold {lane.threshold})"
        )
    if as_json:
        out.print_json(json.dumps(data, default=str))
        return
    table = Table(title=f"catalogue on {store.where}", show_header=False, title_justify="left")
    for key in ("songs", "assets", "windows", "facts", "postings", "sets", "quarantined"):
        table.add_row(key, f"{data[key]:,}")
    table.add_row("audio", f"{data['audio_seconds'] / 3600:.2f} h")
    table.add_row("database", f"{data['database_bytes'] / 2**20:.1f} MiB")
    table.add_row("semantic lane", data["semantic_lane"])
    out.print(table)
    if data["models"]:
        models = Table(title="features", title_justify="left")
        for col in ("type", "model", "version", "feature set", "facts"):
            models.add_column(col)
        for m in data["models"]:
            models.add_row(
                m["feature_type"],
                m["model_name"],
                m["model_version"],
                m["feature_set_name"],
                f"{m['facts']:,}",
            )
        out.print(models)
    if data["vector_tables"]:
        vectors = Table(title="vector tables (HNSW, cosine)", title_justify="left")
        for col in ("table", "model", "dim", "rows"):
            vectors.add_column(col)
        for v in data["vector_tables"]:
            vectors.add_row(
                v["table_name"],
                f"{v['model_name']} {v['model_version']}",
                str(v["dim"]),
                f"{v['rows']:,}",
            )
        out.print(vectors)
    if data["runs"]:
        runs = Table(title="recent ingest runs", title_justify="left")
        for col in ("run", "started", "status", "added", "skipped", "quarantined"):
            runs.add_column(col)
        for r in data["runs"]:
            runs.add_row(
                str(r["run_id"]),
                f"{r['started_at']:%Y-%m-%d %H:%M}",
                r["status"],
                str(r["added"]),
                str(r["skipped"]),
                str(r["quarantined"]),
            )
        out.print(runs)
    if data["stale_fingerprints"]:
        err.print(
            f"[yellow]{data['stale_fingerprints']} files have fingerprints of an older version "
            "and cannot be recognised[/]: run `polymuse catalog refingerprint`"
        )


@app.command("export")
def export(
    ctx: typer.Context,
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl (one song a line) or csv."),
    output: Path = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
) -> None:
    """Export songs and their files (csv: one row per file; jsonl: one song per line)."""
    if fmt not in ("jsonl", "csv"):
        raise UserError(f"--format must be jsonl or csv, not {fmt!r}")
    target = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115 - closed below
    try:
        with _store(ctx) as store, store.connection("exporting") as conn:
            if fmt == "csv":
                queries.export_csv(conn, target)
            else:
                for song in queries.export_songs(conn):
                    target.write(json.dumps(song, default=str, ensure_ascii=False).encode() + b"\n")
    finally:
        if output:
            target.close()
        else:
            target.flush()


@app.command("quarantine")
def quarantine(
    ctx: typer.Context,
    clear: bool = typer.Option(False, "--clear", help="Forget all records (files are retried)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List files that could not be added, with the reason; --clear forgets them."""
    with _store(ctx) as store, store.transaction("reading the quarantine") as conn:
        if clear:
            out.print(f"forgot {catalog.clear_quarantine(conn)} quarantine records")
            return
        rows = queries.list_quarantine(conn)
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    table = Table(title=f"{len(rows)} quarantined files", title_justify="left")
    for col in ("path", "stage", "reason", "seen", "moved to"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["file_path"], r["stage"], r["reason"], f"{r['attempts']}×", r["moved_to"] or ""
        )
    out.print(table)


@app.command("refingerprint")
def refingerprint(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Re-fingerprint stored files whose fingerprints an older version made (they no longer
    match); files that cannot be read are listed and kept."""
    from polymuse.recognition.refresh import refingerprint as run

    with _store(ctx) as store, _IngestProgress(disable=as_json) as progress:
        summary = run(store, on_progress=progress.count("refingerprinting"))
    if as_json:
        out.print_json(json.dumps({"replaced": summary.replaced, "failed": summary.failed}))
    else:
        out.print(f"re-fingerprinted {len(summary.replaced)} files")
        for path, reason in summary.failed:
            err.print(f"[red]error:[/red] {path}: {reason}", highlight=False, soft_wrap=True)
    if summary.failed:
        raise typer.Exit(1)


# -- helpers ---------------------------------------------------------------------------------


def _store(ctx: typer.Context) -> Store:
    return open_store(settings_of(ctx), max_size=2)


def _song_id(conn: Any, song: str) -> int:
    if song.isdigit():
        return int(song)
    matches = queries.list_songs(conn, search=song, limit=10)
    if len(matches) == 1:
        return int(matches[0]["song_id"])
    if not matches:
        raise UserError(f"no song matches {song!r}; see `polymuse catalog list`")
    names = "; ".join(f"{m['song_id']}: {m['artist'] or '?'} - {m['title']}" for m in matches)
    raise UserError(f"{song!r} matches several songs ({names}); give the id")


class _IngestProgress:
    """Rich progress on stderr: files, throughput (files/s, × real time) and ETA."""

    def __init__(self, *, disable: bool) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err,
            disable=disable or not err.is_terminal,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _IngestProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def count(self, label: str) -> Callable[[int, int], None]:
        """A (done, total) callback for work counted in files."""

        def update(done: int, total: int) -> None:
            if label not in self.tasks:
                self.tasks[label] = self.progress.add_task(label, total=total, rate="")
            self.progress.update(self.tasks[label], completed=done, total=total)

        return update

    def update(self, event: Any) -> None:
        label = {"hash": "hashing", "ingest": "ingesting"}[event.stage]
        if event.stage not in self.tasks:
            self.tasks[event.stage] = self.progress.add_task(label, total=event.total, rate="")
        task = self.tasks[event.stage]
        elapsed = self.progress.tasks[task].elapsed or 0.0
        rate = ""
        if event.stage == "ingest" and elapsed > 0:
            audio = event.summary.audio_s
            rate = f"{event.done / elapsed:.1f} files/s, {audio / elapsed:.0f}× real time"
        self.progress.update(task, completed=event.done, total=event.total, rate=rate)


def _reason_kind(reason: str) -> str:
    for prefix in ("already stored", "same content as", "quarantined before"):
        if reason.startswith(prefix):
            return prefix
    return reason.split(" (")[0]


def _print_summary(summary: Any) -> None:
    added, skipped, bad = summary.added, summary.skipped, summary.quarantined
    updated, failed = summary.updated, summary.failed
    elapsed = max(summary.elapsed_s, 1e-9)
    out.print(
        f"[bold]{len(added)} added[/], {len(skipped)} skipped, "
        f"[{'red' if bad else 'green'}]{len(bad)} quarantined[/]"
        + (f", [bold]{len(updated)} updated[/]" if updated else "")
        + (f", [red]{len(failed)} failed[/]" if failed else "")
        + f" of {summary.files_seen} audio files in {elapsed:.1f} s (run {summary.run_id})"
        + (f"; {summary.ignored} other files ignored" if summary.ignored else "")
    )
    if added:
        out.print(
            f"  {len(added) / elapsed * 60:.0f} songs/min, "
            f"{summary.audio_s / elapsed:.0f}× real time ({summary.audio_s / 60:.1f} min of audio)"
        )
        joined = Counter(o.reason for o in added)
        out.print("  " + ", ".join(f"{why}: {n}" for why, n in sorted(joined.items())))
    if updated:
        kinds = Counter(o.reason.split("; ")[0] for o in updated)
        out.print("  updated: " + ", ".join(f"{kind}: {n}" for kind, n in kinds.most_common()))
    if skipped:
        kinds = Counter(_reason_kind(o.reason) for o in skipped)
        out.print("  skipped: " + ", ".join(f"{kind}: {n}" for kind, n in kinds.most_common()))
    for title, outcomes in (
        ("quarantined (not in the catalogue)", bad),
        ("not updated (stored files, left as they were)", failed),
    ):
        if outcomes:
            table = Table(title=title, title_justify="left")
            table.add_column("file", overflow="fold")
            table.add_column("reason", overflow="fold")
            for o in outcomes:
                table.add_row(o.path, o.reason)
            out.print(table)
    for note in summary.notes:
        out.print(f"[yellow]note:[/] {note}")


def _summary_dict(summary: Any) -> dict[str, Any]:
    return {
        "run_id": summary.run_id,
        "files_seen": summary.files_seen,
        "ignored": summary.ignored,
        "elapsed_s": summary.elapsed_s,
        "audio_s": summary.audio_s,
        "notes": summary.notes,
        "added": [vars(o) for o in summary.added],
        "updated": [vars(o) for o in summary.updated],
        "skipped": [vars(o) for o in summary.skipped],
        "quarantined": [vars(o) for o in summary.quarantined],
        "failed": [vars(o) for o in summary.failed],
    }


def _clock(seconds: float | None) -> str:
    s = int(round(seconds or 0))
    return f"{s // 60}:{s % 60:02d}"
