"""Repository functions for the catalogue: songs, assets, windows, facts, sets, quarantine, runs.

This module holds the write side and what the ingest needs to resume; `queries` holds
listing, statistics and export.

Every function takes an open connection and runs in the caller's transaction; values travel
as `%(name)s` parameters, identifiers (the per-model vector tables) through `psycopg.sql`.
Bulk rows (postings, vectors) are loaded with binary `COPY`.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from polymuse.errors import StoreError
from polymuse.tools import chromaprint

FeatureType = Literal["fingerprint", "embedding", "descriptor"]
# Taken by each file's write transaction: makes "find the song, else create it" atomic across
# processes (same tags or same Chromaprint in two concurrent runs still give one song).
SONG_LOCK = int.from_bytes(b"pm-songs", "big")
HNSW_MAX_DIM = 2000  # pgvector's limit for an HNSW index on `vector`
HALFVEC_MAX_DIM = 4000  # ... and on `halfvec`, used through an expression index above that
WINDOW_MATCH_S = 0.01  # a stored window with start and end this close is the same window
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


@dataclass(frozen=True)
class SongInfo:
    """Song metadata from tags or the file name."""

    title: str
    artist: str | None = None
    album: str | None = None
    year: int | None = None
    external_ids: dict[str, str] = field(default_factory=dict)
    match_key: str | None = None
    source: Literal["tags", "path", "mixed", "manual"] = "path"


@dataclass(frozen=True)
class AssetRecord:
    """One decoded audio file, ready to be written."""

    path: str
    content_hash: str
    size: int
    mtime_ns: int
    duration_s: float
    sample_rate: int
    channels: int
    codec: str
    container: str
    tags: dict[str, Any]
    song: SongInfo
    windows: Sequence[tuple[int, float, float]]
    chromaprint: np.ndarray | None = None


@dataclass(frozen=True)
class FactRecord:
    """One feature of the asset (window None) or of one of its windows, with model identity."""

    feature_type: FeatureType
    model_name: str
    model_version: str
    feature_set_name: str
    window: int | None = None
    vector: np.ndarray | None = None
    value: str | None = None
    payload: dict[str, Any] | None = None
    hashes: np.ndarray | None = None
    offsets: np.ndarray | None = None

    @property
    def model(self) -> tuple[str, str, str]:
        """The model identity: (name, version, feature set)."""
        return (self.model_name, self.model_version, self.feature_set_name)


@dataclass(frozen=True)
class AddResult:
    """What `add_asset` did: added (with how the song was found) or found a duplicate."""

    status: Literal["added", "duplicate"]
    asset_id: int
    song_id: int
    matched_by: Literal["new", "tags", "chromaprint"] | None = None
    existing_path: str | None = None


@dataclass(frozen=True)
class FactsResult:
    """What `add_facts` did: models added, models the file had already, windows made."""

    song_id: int
    added: tuple[tuple[str, str, str], ...]
    present: tuple[tuple[str, str, str], ...]
    new_windows: int


@dataclass(frozen=True)
class KnownFile:
    """A path the catalogue has seen: stored as an asset or quarantined."""

    kind: Literal["asset", "quarantine"]
    size: int | None
    mtime_ns: int | None
    content_hash: str | None
    detail: str
    asset_id: int | None = None


# -- runs --------------------------------------------------------------------------------


def start_run(
    conn: psycopg.Connection,
    *,
    roots: Sequence[str],
    set_name: str | None,
    extractors: Sequence[dict[str, str]],
    options: dict[str, Any],
) -> int:
    """Record a new ingest run; first mark runs of dead processes on this host interrupted."""
    import psutil

    host = socket.gethostname()
    running = conn.execute(
        "SELECT run_id, pid FROM ingest_run WHERE status = 'running' AND host = %(host)s",
        {"host": host},
    ).fetchall()
    dead = [run_id for run_id, pid in running if not psutil.pid_exists(pid)]
    if dead:
        conn.execute(
            "UPDATE ingest_run SET status = 'interrupted', finished_at = now() "
            "WHERE run_id = ANY(%(ids)s)",
            {"ids": dead},
        )
    row = conn.execute(
        "INSERT INTO ingest_run (roots, set_name, extractors, options, host, pid) "
        "VALUES (%(roots)s, %(set)s, %(extractors)s, %(options)s, %(host)s, %(pid)s) "
        "RETURNING run_id",
        {
            "roots": list(roots),
            "set": set_name,
            "extractors": Jsonb(list(extractors)),
            "options": Jsonb(options),
            "host": host,
            "pid": os.getpid(),
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def finish_run(
    conn: psycopg.Connection,
    run_id: int,
    *,
    status: Literal["finished", "failed", "interrupted"],
    files_seen: int,
    added: int,
    skipped: int,
    quarantined: int,
    audio_seconds: float,
    notes: Sequence[str] = (),
) -> None:
    conn.execute(
        "UPDATE ingest_run SET status = %(status)s, finished_at = now(), "
        "files_seen = %(seen)s, added = %(added)s, skipped = %(skipped)s, "
        "quarantined = %(quarantined)s, audio_seconds = %(audio)s, notes = %(notes)s "
        "WHERE run_id = %(run)s",
        {
            "status": status,
            "seen": files_seen,
            "added": added,
            "skipped": skipped,
            "quarantined": quarantined,
            "audio": audio_seconds,
            "notes": list(notes),
            "run": run_id,
        },
    )


# -- resume ------------------------------------------------------------------------------


def known_files(conn: psycopg.Connection, paths: Sequence[str]) -> dict[str, KnownFile]:
    """Stored assets and quarantine records for these paths (assets win)."""
    found: dict[str, KnownFile] = {}
    rows = conn.execute(
        "SELECT file_path, file_size, file_mtime_ns, content_hash, reason FROM quarantine "
        "WHERE file_path = ANY(%(paths)s) ORDER BY last_seen",
        {"paths": list(paths)},
    ).fetchall()
    for path, size, mtime, digest, reason in rows:
        found[path] = KnownFile("quarantine", size, mtime, digest, reason)
    rows = conn.execute(
        "SELECT file_path, file_size, file_mtime_ns, content_hash, object_id FROM audio_object "
        "WHERE object_type = 'asset' AND file_path = ANY(%(paths)s)",
        {"paths": list(paths)},
    ).fetchall()
    for path, size, mtime, digest, asset_id in rows:
        found[path] = KnownFile("asset", size, mtime, digest, f"asset {asset_id}", int(asset_id))
    return found


def assets_by_hash(conn: psycopg.Connection, hashes: Sequence[str]) -> dict[str, tuple[int, str]]:
    """content hash -> (asset id, stored path) for the hashes already in the catalogue."""
    rows = conn.execute(
        "SELECT content_hash, object_id, file_path FROM audio_object "
        "WHERE object_type = 'asset' AND content_hash = ANY(%(hashes)s)",
        {"hashes": list(hashes)},
    ).fetchall()
    return {digest: (int(asset_id), path) for digest, asset_id, path in rows}


def missing_models(
    conn: psycopg.Connection, asset_ids: Sequence[int], models: Sequence[tuple[str, str, str]]
) -> dict[int, list[tuple[str, str, str]]]:
    """asset id -> the models (name, version, feature set) with no fact on it or its windows.

    Models keep the order of `models`; assets that have facts of every model are left out.
    """
    missing: dict[int, list[tuple[str, str, str]]] = {}
    for model in models:
        rows = conn.execute(
            "SELECT a FROM unnest(%(ids)s::bigint[]) AS a WHERE NOT EXISTS (SELECT 1 FROM "
            "feature_fact f WHERE f.object_id = a AND f.model_name = %(m)s "
            "AND f.model_version = %(v)s AND f.feature_set_name = %(f)s) "
            "AND NOT EXISTS (SELECT 1 FROM audio_object w JOIN feature_fact f USING (object_id) "
            "WHERE w.object_type = 'window' AND w.parent_object_id = a AND f.model_name = %(m)s "
            "AND f.model_version = %(v)s AND f.feature_set_name = %(f)s)",
            {"ids": list(asset_ids), "m": model[0], "v": model[1], "f": model[2]},
        ).fetchall()
        for (asset_id,) in rows:
            missing.setdefault(int(asset_id), []).append(model)
    return missing


def quarantined_hashes(conn: psycopg.Connection, hashes: Sequence[str]) -> dict[str, str]:
    """content hash -> reason, for hashes quarantined before."""
    rows = conn.execute(
        "SELECT content_hash, reason FROM quarantine WHERE content_hash = ANY(%(hashes)s) "
        "ORDER BY last_seen",
        {"hashes": list(hashes)},
    ).fetchall()
    return dict(rows)


def relocate_asset(
    conn: psycopg.Connection, asset_id: int, *, path: str, size: int, mtime_ns: int
) -> None:
    """Point an asset at the file's new location (it was moved or renamed)."""
    conn.execute(
        "UPDATE audio_object SET file_path = %(path)s, file_size = %(size)s, "
        "file_mtime_ns = %(mtime)s WHERE object_id = %(id)s AND object_type = 'asset'",
        {"path": path, "size": size, "mtime": mtime_ns, "id": asset_id},
    )


# -- writing one file --------------------------------------------------------------------


def add_asset(
    conn: psycopg.Connection,
    asset: AssetRecord,
    facts: Sequence[FactRecord],
    *,
    run_id: int | None = None,
    set_name: str | None = None,
    vector_tables: dict[tuple[str, str, str], str] | None = None,
) -> AddResult:
    """Write one file with its song, windows, facts, vectors and postings.

    Call inside a transaction: together with the caller's commit it makes the file
    all-or-nothing. `vector_tables` maps (model, version, feature set) to tables made by
    `ensure_vector_table`; embeddings of other models are refused.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%(key)s)", {"key": SONG_LOCK})
    existing = conn.execute(
        "SELECT object_id, entity_id, file_path FROM audio_object "
        "WHERE object_type = 'asset' AND content_hash = %(hash)s",
        {"hash": asset.content_hash},
    ).fetchone()
    if existing:
        return AddResult("duplicate", int(existing[0]), int(existing[1]), existing_path=existing[2])
    song_id, matched_by = _resolve_song(conn, asset)
    row = conn.execute(
        "INSERT INTO audio_object (object_type, entity_id, file_path, content_hash, file_size, "
        "file_mtime_ns, duration_s, sample_rate, channels, codec, container, tags, ingest_run_id) "
        "VALUES ('asset', %(song)s, %(path)s, %(hash)s, %(size)s, %(mtime)s, %(duration)s, "
        "%(rate)s, %(channels)s, %(codec)s, %(container)s, %(tags)s, %(run)s) "
        "RETURNING object_id",
        {
            "song": song_id,
            "path": asset.path,
            "hash": asset.content_hash,
            "size": asset.size,
            "mtime": asset.mtime_ns,
            "duration": asset.duration_s,
            "rate": asset.sample_rate,
            "channels": asset.channels,
            "codec": asset.codec,
            "container": asset.container,
            "tags": Jsonb(asset.tags),
            "run": run_id,
        },
    ).fetchone()
    assert row is not None
    asset_id = int(row[0])
    window_ids = _insert_windows(conn, asset_id, song_id, asset.windows, run_id)
    if asset.chromaprint is not None and len(asset.chromaprint):
        conn.execute(
            "INSERT INTO chromaprint (object_id, entity_id, duration_s, fingerprint) "
            "VALUES (%(id)s, %(song)s, %(duration)s, %(fp)s)",
            {
                "id": asset_id,
                "song": song_id,
                "duration": asset.duration_s,
                "fp": asset.chromaprint.tolist(),
            },
        )
    _insert_facts(conn, asset_id, song_id, window_ids, facts, run_id, vector_tables or {})
    if set_name:
        add_to_set(conn, set_name, [song_id])
    conn.execute("DELETE FROM quarantine WHERE file_path = %(path)s", {"path": asset.path})
    return AddResult("added", asset_id, song_id, matched_by)


class AssetRemoved(StoreError):
    """The stored asset a run meant to add facts to was removed meanwhile."""


def add_facts(
    conn: psycopg.Connection,
    asset_id: int,
    windows: Sequence[tuple[int, float, float]],
    facts: Sequence[FactRecord],
    *,
    run_id: int | None = None,
    vector_tables: dict[tuple[str, str, str], str] | None = None,
) -> FactsResult:
    """Add facts of models a stored file lacks to its asset and windows; nothing else changes.

    Call inside a transaction: with the caller's commit the file gets all of them or none.
    `windows` (index, start, end) are those the facts' `window` indexes: each is a stored
    window with the same span, or is added after the stored ones if a fact needs it. Facts of
    models the file has already (another run added them meanwhile) are left out. A whole-file
    fact without a vector replaces the file's facts of its model's other versions (an old
    fingerprint's postings would never match again; they go by cascade).
    """
    row = conn.execute(
        "SELECT entity_id FROM audio_object WHERE object_id = %(id)s AND object_type = 'asset' "
        "FOR UPDATE",
        {"id": asset_id},
    ).fetchone()
    if row is None:
        raise AssetRemoved(f"asset {asset_id} is not in the catalogue")
    song_id = int(row[0])
    models = list(dict.fromkeys(f.model for f in facts))
    lacking = missing_models(conn, [asset_id], models).get(asset_id, [])
    facts = [f for f in facts if f.model in lacking]
    superseded = {f.model_name for f in facts if f.window is None and f.vector is None}
    if superseded:
        conn.execute(
            "DELETE FROM feature_fact WHERE object_id = %(id)s AND model_name = ANY(%(models)s)",
            {"id": asset_id, "models": sorted(superseded)},
        )
    needed = {f.window for f in facts if f.window is not None}
    window_ids, made = _match_windows(conn, asset_id, song_id, windows, needed, run_id)
    _insert_facts(conn, asset_id, song_id, window_ids, facts, run_id, vector_tables or {})
    present = tuple(m for m in models if m not in lacking)
    return FactsResult(song_id, tuple(lacking), present, made)


def replace_facts(conn: psycopg.Connection, asset_id: int, facts: Sequence[FactRecord]) -> None:
    """Replace a stored file's whole-file facts of the models in `facts` (every version).

    Call inside a transaction. Postings of the replaced facts go by cascade.
    """
    if any(f.window is not None or f.feature_type == "embedding" for f in facts):
        raise StoreError("replace_facts takes whole-file facts without vectors only")
    row = conn.execute(
        "SELECT entity_id FROM audio_object WHERE object_id = %(id)s AND object_type = 'asset'",
        {"id": asset_id},
    ).fetchone()
    if row is None:
        raise StoreError(f"asset {asset_id} is not in the catalogue")
    conn.execute(
        "DELETE FROM feature_fact WHERE object_id = %(id)s AND model_name = ANY(%(models)s)",
        {"id": asset_id, "models": sorted({f.model_name for f in facts})},
    )
    _insert_facts(conn, asset_id, int(row[0]), {}, facts, None, {})


def _resolve_song(
    conn: psycopg.Connection, asset: AssetRecord
) -> tuple[int, Literal["new", "tags", "chromaprint"]]:
    song = asset.song
    found: int | None = None
    how: Literal["new", "tags", "chromaprint"] = "new"
    if song.match_key:
        row = conn.execute(
            "SELECT entity_id FROM media_entity WHERE entity_type = 'song' AND match_key = %(key)s",
            {"key": song.match_key},
        ).fetchone()
        found, how = (int(row[0]), "tags") if row else (None, "new")
    if found is None and asset.chromaprint is not None:
        found = _chromaprint_match(conn, asset.chromaprint, asset.duration_s)
        how = "chromaprint" if found is not None else "new"
    if found is not None:
        conn.execute(
            "UPDATE media_entity SET album = coalesce(album, %(album)s), "
            "year = coalesce(year, %(year)s), external_ids = %(ids)s || external_ids, "
            "updated_at = now() WHERE entity_id = %(id)s",
            {"album": song.album, "year": song.year, "ids": Jsonb(song.external_ids), "id": found},
        )
        return found, how
    row = conn.execute(
        "INSERT INTO media_entity (title, artist, album, year, external_ids, match_key, "
        "metadata_source) VALUES (%(title)s, %(artist)s, %(album)s, %(year)s, %(ids)s, "
        "%(key)s, %(source)s) "
        "ON CONFLICT (entity_type, match_key) WHERE match_key IS NOT NULL "
        "DO UPDATE SET updated_at = now() RETURNING entity_id",
        {
            "title": song.title,
            "artist": song.artist,
            "album": song.album,
            "year": song.year,
            "ids": Jsonb(song.external_ids),
            "key": song.match_key,
            "source": song.source,
        },
    ).fetchone()
    assert row is not None
    return int(row[0]), "new"


def _chromaprint_match(conn: psycopg.Connection, fp: np.ndarray, duration_s: float) -> int | None:
    """The song whose stored Chromaprint matches `fp` best, if any matches."""
    if len(fp) < chromaprint.MIN_ITEMS:
        return None
    probe = np.unique(fp)[:512]
    slack = max(7.0, 0.07 * duration_s)
    rows = conn.execute(
        "SELECT entity_id, fingerprint FROM chromaprint "
        "WHERE fingerprint && %(probe)s::integer[] AND duration_s BETWEEN %(lo)s AND %(hi)s "
        "LIMIT 50",
        {"probe": probe.tolist(), "lo": duration_s - slack, "hi": duration_s + slack},
    ).fetchall()
    best, best_score = None, chromaprint.MATCH_SIMILARITY
    for entity_id, stored in rows:
        score = chromaprint.similarity(fp, np.asarray(stored, dtype=np.int32))
        if score >= best_score:
            best, best_score = int(entity_id), score
    return best


def _insert_windows(
    conn: psycopg.Connection,
    asset_id: int,
    song_id: int,
    windows: Sequence[tuple[int, float, float]],
    run_id: int | None,
) -> dict[int, int]:
    if not windows:
        return {}
    index, start, end = (list(col) for col in zip(*windows, strict=True))
    rows = conn.execute(
        "INSERT INTO audio_object (object_type, entity_id, parent_object_id, window_index, "
        "start_s, end_s, ingest_run_id) "
        "SELECT 'window', %(song)s, %(asset)s, i, s, e, %(run)s "
        "FROM unnest(%(index)s::integer[], %(start)s::float8[], %(end)s::float8[]) AS w(i, s, e) "
        "RETURNING window_index, object_id",
        {
            "song": song_id,
            "asset": asset_id,
            "run": run_id,
            "index": index,
            "start": start,
            "end": end,
        },
    ).fetchall()
    return {int(i): int(object_id) for i, object_id in rows}


def _match_windows(
    conn: psycopg.Connection,
    asset_id: int,
    song_id: int,
    windows: Sequence[tuple[int, float, float]],
    needed: set[int],
    run_id: int | None,
) -> tuple[dict[int, int], int]:
    """Stored window id for each `needed` index of `windows`, adding the ones not stored.

    Returns the ids and how many windows were added (numbered after the stored ones).
    """
    stored = sorted(
        conn.execute(
            "SELECT start_s, end_s, object_id, window_index FROM audio_object "
            "WHERE object_type = 'window' AND parent_object_id = %(id)s",
            {"id": asset_id},
        ).fetchall()
    )
    starts = [s for s, *_ in stored]
    spans = {index: (start, end) for index, start, end in windows if index in needed}
    found: dict[int, int] = {}
    new: list[int] = []
    for index, (start, end) in sorted(spans.items()):
        j = bisect.bisect_left(starts, start - WINDOW_MATCH_S)
        while j < len(stored) and starts[j] <= start + WINDOW_MATCH_S:
            if abs(stored[j][1] - end) <= WINDOW_MATCH_S:
                found[index] = int(stored[j][2])
                break
            j += 1
        else:
            new.append(index)
    first = max((int(w[3]) for w in stored), default=-1) + 1
    made = _insert_windows(
        conn, asset_id, song_id, [(first + k, *spans[i]) for k, i in enumerate(new)], run_id
    )
    found.update({i: made[first + k] for k, i in enumerate(new)})
    return found, len(new)


def _insert_facts(
    conn: psycopg.Connection,
    asset_id: int,
    song_id: int,
    window_ids: dict[int, int],
    facts: Sequence[FactRecord],
    run_id: int | None,
    vector_tables: dict[tuple[str, str, str], str],
) -> None:
    if not facts:
        return
    objects, tables = [], []
    for fact in facts:
        if fact.window is not None and fact.window not in window_ids:
            raise StoreError(
                f"{fact.model_name}: fact for window {fact.window}, which does not exist"
            )
        objects.append(asset_id if fact.window is None else window_ids[fact.window])
        table = None
        if fact.feature_type == "embedding":
            key = (fact.model_name, fact.model_version, fact.feature_set_name)
            if key not in vector_tables:
                raise StoreError(f"no vector table for {key}; call ensure_vector_table first")
            table = vector_tables[key]
        tables.append(table)
    rows = conn.execute(
        "INSERT INTO feature_fact (object_id, feature_type, model_name, model_version, "
        "feature_set_name, fingerprint_value, embedding_dim, vector_table_name, posting_count, "
        "payload, ingest_run_id) "
        "SELECT o, t, m, v, f, val, d, tbl, n, p::jsonb, %(run)s FROM unnest("
        "%(object)s::bigint[], %(type)s::text[], %(model)s::text[], %(version)s::text[], "
        "%(fset)s::text[], %(value)s::text[], %(dim)s::integer[], %(table)s::text[], "
        "%(postings)s::integer[], %(payload)s::text[]) AS x(o, t, m, v, f, val, d, tbl, n, p) "
        "RETURNING fact_id, object_id, feature_type, model_name, model_version, feature_set_name",
        {
            "run": run_id,
            "object": objects,
            "type": [f.feature_type for f in facts],
            "model": [f.model_name for f in facts],
            "version": [f.model_version for f in facts],
            "fset": [f.feature_set_name for f in facts],
            "value": [f.value for f in facts],
            "dim": [None if f.vector is None else int(f.vector.shape[0]) for f in facts],
            "table": tables,
            "postings": [0 if f.hashes is None else len(f.hashes) for f in facts],
            "payload": [None if f.payload is None else json.dumps(f.payload) for f in facts],
        },
    ).fetchall()
    ids = {tuple(r[1:]): int(r[0]) for r in rows}
    fact_ids = [
        ids[(o, f.feature_type, f.model_name, f.model_version, f.feature_set_name)]
        for o, f in zip(objects, facts, strict=True)
    ]
    by_table: dict[str, list[tuple[int, int, np.ndarray]]] = {}
    postings = []
    for fact, fact_id, object_id, table in zip(facts, fact_ids, objects, tables, strict=True):
        if table is not None and fact.vector is not None:
            by_table.setdefault(table, []).append((fact_id, object_id, fact.vector))
        if fact.hashes is not None and fact.offsets is not None and len(fact.hashes):
            postings.append((fact_id, fact.hashes, fact.offsets))
    for table, vectors in by_table.items():
        with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL(
                    "COPY {} (fact_id, object_id, entity_id, embedding) FROM STDIN (FORMAT BINARY)"
                ).format(sql.Identifier(table))
            ) as copy,
        ):
            copy.set_types(["int8", "int8", "int8", "vector"])
            for fact_id, object_id, vector in vectors:
                copy.write_row((fact_id, object_id, song_id, np.asarray(vector, np.float32)))
    if postings:
        _copy_postings(conn, asset_id, postings)


def _copy_postings(
    conn: psycopg.Connection, asset_id: int, postings: Sequence[tuple[int, np.ndarray, np.ndarray]]
) -> None:
    """Binary COPY of (hash, asset, offset, fact) rows, built as one numpy buffer."""
    tuple_type = np.dtype(
        [
            ("n", ">i2"),
            ("l1", ">i4"),
            ("hash", ">i4"),
            ("l2", ">i4"),
            ("asset", ">i4"),
            ("l3", ">i4"),
            ("offset", ">i4"),
            ("l4", ">i4"),
            ("fact", ">i4"),
        ]
    )
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY fingerprint_posting (hash, asset_id, t_offset, fact_id) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.write(_PGCOPY_HEADER)
        for fact_id, hashes, offsets in postings:
            rows = np.zeros(len(hashes), dtype=tuple_type)
            rows["n"], rows["l1"], rows["l2"], rows["l3"], rows["l4"] = 4, 4, 4, 4, 4
            rows["hash"] = np.asarray(hashes, dtype=np.int64).astype(np.int32)
            rows["asset"] = asset_id
            rows["offset"] = offsets
            rows["fact"] = fact_id
            copy.write(rows.tobytes())
        copy.write(_PGCOPY_TRAILER)


# -- vector tables -----------------------------------------------------------------------


def vector_table_name(model_name: str, model_version: str, feature_set: str, dim: int) -> str:
    """`vec_<model>_<hash of the identity>_<dim>`, a valid identifier of at most 63 bytes."""
    slug = re.sub(r"[^a-z0-9]+", "_", model_name.lower()).strip("_")[:28] or "model"
    digest = hashlib.sha256(f"{model_name}\0{model_version}\0{feature_set}".encode()).hexdigest()
    return f"vec_{slug}_{digest[:8]}_{dim}"


def ensure_vector_table(
    conn: psycopg.Connection, model_name: str, model_version: str, feature_set: str, dim: int
) -> str:
    """Create (once) the table and HNSW index for one embedding model; return its name.

    Run in its own transaction (not a file's): creating is serialised by an advisory lock.
    """
    if not 0 < dim <= 16000:
        raise StoreError(f"{model_name}: embedding dimension {dim} is out of range (1..16000)")
    name = vector_table_name(model_name, model_version, feature_set, dim)
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%(name)s))", {"name": name})
    row = conn.execute(
        "SELECT table_name, dim FROM vector_table WHERE model_name = %(m)s "
        "AND model_version = %(v)s AND feature_set_name = %(f)s",
        {"m": model_name, "v": model_version, "f": feature_set},
    ).fetchone()
    if row is not None:
        if int(row[1]) != dim:
            raise StoreError(
                f"{model_name} {model_version} ({feature_set}) gives {dim}-d vectors but the "
                f"catalogue holds {row[1]}-d ones; a model that changes its output needs a new "
                "version"
            )
        return str(row[0])
    table = sql.Identifier(name)
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (fact_id bigint PRIMARY KEY REFERENCES feature_fact ON DELETE CASCADE,"
            " object_id bigint NOT NULL, entity_id bigint NOT NULL, embedding vector({}) NOT NULL)"
        ).format(table, sql.Literal(dim))
    )
    conn.execute(
        sql.SQL("CREATE INDEX {} ON {} (entity_id)").format(sql.Identifier(f"{name}_entity"), table)
    )
    index = sql.Identifier(f"{name}_hnsw")
    if dim <= HNSW_MAX_DIM:
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops)").format(
                index, table
            )
        )
    elif dim <= HALFVEC_MAX_DIM:
        conn.execute(
            sql.SQL(
                "CREATE INDEX {} ON {} USING hnsw ((embedding::halfvec({})) halfvec_cosine_ops)"
            ).format(index, table, sql.Literal(dim))
        )
    conn.execute(
        "INSERT INTO vector_table (table_name, model_name, model_version, feature_set_name, dim) "
        "VALUES (%(t)s, %(m)s, %(v)s, %(f)s, %(d)s)",
        {"t": name, "m": model_name, "v": model_version, "f": feature_set, "d": dim},
    )
    return name


# -- sets --------------------------------------------------------------------------------


def add_to_set(
    conn: psycopg.Connection,
    set_name: str,
    song_ids: Iterable[int],
    *,
    set_type: Literal["catalog", "split", "bucket", "playlist"] = "catalog",
) -> None:
    conn.execute(
        "INSERT INTO set_membership (set_type, set_name, member_type, entity_id) "
        "SELECT %(type)s, %(name)s, 'song', id FROM unnest(%(ids)s::bigint[]) AS id "
        "ON CONFLICT DO NOTHING",
        {"type": set_type, "name": set_name, "ids": list(song_ids)},
    )


def add_assets_to_set(conn: psycopg.Connection, set_name: str, asset_ids: Iterable[int]) -> None:
    """Put the songs of these assets in a catalogue set."""
    songs = conn.execute(
        "SELECT DISTINCT entity_id FROM audio_object WHERE object_id = ANY(%(ids)s::bigint[])",
        {"ids": list(asset_ids)},
    ).fetchall()
    add_to_set(conn, set_name, [song for (song,) in songs])


# -- quarantine --------------------------------------------------------------------------


def record_quarantine(
    conn: psycopg.Connection,
    *,
    path: str,
    content_hash: str | None,
    size: int | None,
    mtime_ns: int | None,
    stage: Literal["read", "decode", "extract", "write"],
    reason: str,
    run_id: int | None,
    moved_to: str | None = None,
) -> None:
    """Record (or refresh) a bad file; the catalogue itself is never touched."""
    conn.execute(
        "INSERT INTO quarantine (file_path, content_hash, file_size, file_mtime_ns, stage, "
        "reason, moved_to, run_id) VALUES (%(path)s, %(hash)s, %(size)s, %(mtime)s, %(stage)s, "
        "%(reason)s, %(moved)s, %(run)s) "
        "ON CONFLICT (file_path, content_hash) DO UPDATE SET stage = EXCLUDED.stage, "
        "reason = EXCLUDED.reason, file_size = EXCLUDED.file_size, "
        "file_mtime_ns = EXCLUDED.file_mtime_ns, moved_to = EXCLUDED.moved_to, "
        "run_id = EXCLUDED.run_id, attempts = quarantine.attempts + 1, last_seen = now()",
        {
            "path": path,
            "hash": content_hash,
            "size": size,
            "mtime": mtime_ns,
            "stage": stage,
            "reason": reason,
            "moved": moved_to,
            "run": run_id,
        },
    )


def clear_quarantine(conn: psycopg.Connection, paths: Sequence[str] | None = None) -> int:
    """Forget quarantine records (all, or those of `paths`) so the files are tried again."""
    if paths is None:
        cur = conn.execute("DELETE FROM quarantine")
    else:
        cur = conn.execute(
            "DELETE FROM quarantine WHERE file_path = ANY(%(paths)s)", {"paths": list(paths)}
        )
    return cur.rowcount


def remove_songs(conn: psycopg.Connection, song_ids: Sequence[int]) -> dict[str, int]:
    """Delete songs; assets, windows, facts, vectors and postings follow by cascade."""
    counts = _counts_for(conn, "o.entity_id = ANY(%(ids)s)", {"ids": list(song_ids)})
    cur = conn.execute(
        "DELETE FROM media_entity WHERE entity_id = ANY(%(ids)s)", {"ids": list(song_ids)}
    )
    counts["songs"] = cur.rowcount
    return counts


def remove_assets(conn: psycopg.Connection, asset_ids: Sequence[int]) -> dict[str, int]:
    """Delete files; a song left without files goes too."""
    ids = list(asset_ids)
    counts = _counts_for(
        conn, "(o.object_id = ANY(%(ids)s) OR o.parent_object_id = ANY(%(ids)s))", {"ids": ids}
    )
    songs = conn.execute(
        "DELETE FROM audio_object WHERE object_id = ANY(%(ids)s) AND object_type = 'asset' "
        "RETURNING entity_id",
        {"ids": ids},
    ).fetchall()
    cur = conn.execute(
        "DELETE FROM media_entity e WHERE e.entity_id = ANY(%(songs)s) AND NOT EXISTS "
        "(SELECT 1 FROM audio_object a WHERE a.entity_id = e.entity_id)",
        {"songs": [s[0] for s in songs]},
    )
    counts["songs"] = cur.rowcount
    return counts


def _counts_for(conn: psycopg.Connection, where: str, params: dict[str, Any]) -> dict[str, int]:
    """Assets, windows, facts and postings under the audio objects selected by `where`."""
    row = conn.execute(
        sql.SQL(
            "WITH objs AS (SELECT o.object_id, o.object_type FROM audio_object o WHERE {}) "
            "SELECT (SELECT count(*) FROM objs WHERE object_type = 'asset'), "
            "(SELECT count(*) FROM objs WHERE object_type = 'window'), "
            "(SELECT count(*) FROM feature_fact f JOIN objs USING (object_id)), "
            "(SELECT coalesce(sum(f.posting_count), 0) "
            "FROM feature_fact f JOIN objs USING (object_id))"
        ).format(sql.SQL(where)),
        params,
    ).fetchone()
    assets, windows, facts, postings = row if row else (0, 0, 0, 0)
    return {
        "assets": int(assets),
        "windows": int(windows),
        "facts": int(facts),
        "postings": int(postings),
    }
