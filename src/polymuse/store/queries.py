"""Read-side queries of the catalogue: listing, showing, statistics, export, server facts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from polymuse.store import migrations


def recent_runs(conn: psycopg.Connection, *, limit: int = 5) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT run_id, started_at, finished_at, status, roots, added, skipped, quarantined, "
            "audio_seconds FROM ingest_run ORDER BY run_id DESC LIMIT %(limit)s",
            {"limit": limit},
        ).fetchall()


def vector_tables(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Registered vector tables with their model identity, dimension and row count."""
    with conn.cursor(row_factory=dict_row) as cur:
        tables = cur.execute(
            "SELECT table_name, model_name, model_version, feature_set_name, dim, metric "
            "FROM vector_table ORDER BY table_name"
        ).fetchall()
        for entry in tables:
            count = cur.execute(
                sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(entry["table_name"]))
            ).fetchone()
            entry["rows"] = int(count["n"]) if count else 0
    return tables


def list_quarantine(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT quarantine_id, file_path, content_hash, file_size, stage, reason, moved_to, "
            "attempts, first_seen, last_seen FROM quarantine ORDER BY file_path"
        ).fetchall()


_SONG_COLUMNS = sql.SQL(
    "e.entity_id AS song_id, e.title, e.artist, e.album, e.year, e.metadata_source, "
    "e.created_at, (SELECT count(*) FROM audio_object a WHERE a.entity_id = e.entity_id "
    "AND a.object_type = 'asset') AS assets, (SELECT coalesce(max(a.duration_s), 0) "
    "FROM audio_object a WHERE a.entity_id = e.entity_id AND a.object_type = 'asset') "
    "AS duration_s"
)


def list_songs(
    conn: psycopg.Connection,
    *,
    set_name: str | None = None,
    search: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Songs ordered by artist and title, optionally in one set or matching a text."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL(
                "SELECT {} FROM media_entity e "
                "WHERE (%(set)s::text IS NULL OR EXISTS (SELECT 1 FROM set_membership m "
                "WHERE m.entity_id = e.entity_id AND m.set_name = %(set)s)) "
                "AND (%(search)s::text IS NULL OR e.title ILIKE %(pattern)s "
                "OR e.artist ILIKE %(pattern)s OR e.album ILIKE %(pattern)s) "
                "ORDER BY lower(coalesce(e.artist, '')), lower(e.title), e.entity_id "
                "LIMIT %(limit)s OFFSET %(offset)s"
            ).format(_SONG_COLUMNS),
            {
                "set": set_name,
                "search": search,
                "pattern": f"%{search or ''}%",
                "limit": limit,
                "offset": offset,
            },
        ).fetchall()


def get_song(conn: psycopg.Connection, song_id: int) -> dict[str, Any] | None:
    """A song with its assets, per-model fact counts and sets; None when absent."""
    with conn.cursor(row_factory=dict_row) as cur:
        song = cur.execute(
            sql.SQL(
                "SELECT {}, e.external_ids FROM media_entity e WHERE e.entity_id = %(id)s"
            ).format(_SONG_COLUMNS),
            {"id": song_id},
        ).fetchone()
        if song is None:
            return None
        song["files"] = cur.execute(
            "SELECT a.object_id AS asset_id, a.file_path, a.content_hash, a.duration_s, "
            "a.sample_rate, a.channels, a.codec, a.container, a.file_size, "
            "(SELECT count(*) FROM audio_object w WHERE w.parent_object_id = a.object_id) "
            "AS windows FROM audio_object a WHERE a.entity_id = %(id)s "
            "AND a.object_type = 'asset' ORDER BY a.object_id",
            {"id": song_id},
        ).fetchall()
        song["facts"] = cur.execute(
            "SELECT f.feature_type, f.model_name, f.model_version, f.feature_set_name, "
            "count(*) AS facts, max(f.embedding_dim) AS dim, sum(f.posting_count) AS postings "
            "FROM feature_fact f JOIN audio_object o ON o.object_id = f.object_id "
            "WHERE o.entity_id = %(id)s GROUP BY 1, 2, 3, 4 ORDER BY 2, 3, 4",
            {"id": song_id},
        ).fetchall()
        song["sets"] = [
            f"{r['set_type']}:{r['set_name']}"
            for r in cur.execute(
                "SELECT set_type, set_name FROM set_membership WHERE entity_id = %(id)s "
                "ORDER BY 1, 2",
                {"id": song_id},
            ).fetchall()
        ]
    return song


def stats(conn: psycopg.Connection) -> dict[str, Any]:
    """Counts of everything, audio hours, per-model facts, database size."""
    with conn.cursor(row_factory=dict_row) as cur:
        totals = cur.execute(
            "SELECT (SELECT count(*) FROM media_entity) AS songs, "
            "(SELECT count(*) FROM audio_object WHERE object_type = 'asset') AS assets, "
            "(SELECT count(*) FROM audio_object WHERE object_type = 'window') AS windows, "
            "(SELECT count(*) FROM feature_fact) AS facts, "
            "(SELECT coalesce(sum(posting_count), 0) FROM feature_fact) AS postings, "
            "(SELECT count(*) FROM quarantine) AS quarantined, "
            "(SELECT count(DISTINCT set_name) FROM set_membership) AS sets, "
            "(SELECT coalesce(sum(duration_s), 0) FROM audio_object "
            "WHERE object_type = 'asset') AS audio_seconds, "
            "pg_database_size(current_database()) AS database_bytes"
        ).fetchone()
        assert totals is not None
        totals["models"] = cur.execute(
            "SELECT feature_type, model_name, model_version, feature_set_name, count(*) AS facts "
            "FROM feature_fact GROUP BY 1, 2, 3, 4 ORDER BY 2, 3, 4"
        ).fetchall()
    totals["vector_tables"] = vector_tables(conn)
    totals["runs"] = recent_runs(conn)
    return totals


def export_csv(conn: psycopg.Connection, out: IO[bytes]) -> None:
    """One CSV row per file with its song, streamed by `COPY ... TO STDOUT`."""
    query = (
        "COPY (SELECT e.entity_id AS song_id, e.title, e.artist, e.album, e.year, "
        "a.object_id AS asset_id, a.file_path, a.content_hash, a.duration_s, a.sample_rate, "
        "a.channels, a.codec, a.container, a.file_size, "
        "(SELECT string_agg(m.set_name, ';' ORDER BY m.set_name) FROM set_membership m "
        "WHERE m.entity_id = e.entity_id) AS sets "
        "FROM media_entity e JOIN audio_object a ON a.entity_id = e.entity_id "
        "AND a.object_type = 'asset' ORDER BY e.entity_id, a.object_id) "
        "TO STDOUT WITH (FORMAT csv, HEADER)"
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        for chunk in copy:
            out.write(bytes(chunk))


def export_songs(conn: psycopg.Connection) -> Iterator[dict[str, Any]]:
    """Every song as one JSON-ready dict with its files and sets (a server-side cursor)."""
    with conn.cursor("polymuse_export", row_factory=dict_row) as cur:
        cur.execute(
            "SELECT e.entity_id AS song_id, e.title, e.artist, e.album, e.year, e.external_ids, "
            "(SELECT coalesce(json_agg(json_build_object('asset_id', a.object_id, "
            "'path', a.file_path, 'content_hash', a.content_hash, 'duration_s', a.duration_s, "
            "'sample_rate', a.sample_rate, 'codec', a.codec, 'tags', a.tags) "
            "ORDER BY a.object_id), '[]') FROM audio_object a WHERE a.entity_id = e.entity_id "
            "AND a.object_type = 'asset') AS files, "
            "(SELECT coalesce(json_agg(m.set_type || ':' || m.set_name ORDER BY m.set_name), '[]') "
            "FROM set_membership m WHERE m.entity_id = e.entity_id) AS sets "
            "FROM media_entity e ORDER BY e.entity_id"
        )
        yield from cur


def server_info(conn: psycopg.Connection) -> dict[str, Any]:
    """Server version, pgvector version, schema version, database size and connections."""
    with conn.cursor(row_factory=dict_row) as cur:
        info = cur.execute(
            "SELECT current_setting('server_version') AS server_version, "
            "(SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector, "
            "current_database() AS database, "
            "pg_database_size(current_database()) AS database_bytes, "
            "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) "
            "AS connections"
        ).fetchone()
    assert info is not None
    info["schema_version"] = max(migrations.applied(conn), default=None)
    return info
