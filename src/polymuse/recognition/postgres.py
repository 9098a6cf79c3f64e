"""`PostgresIndex`: the exact lane's look-ups against the catalogue's `fingerprint_posting`.

Postings are written by the ingest (`LandmarkExtractor` facts, binary `COPY`) and found here
through the catalogue's `(hash)` index (migration 0005). Only
assets fingerprinted with this model identity count: other extractors share the table. Hashes
are stored as signed int32 (the same 32 bits as our uint32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from psycopg.adapt import Dumper
from psycopg.postgres import types
from psycopg.pq import Format

from polymuse.recognition.index import Postings, SongRef
from polymuse.recognition.payload import NAME, decode_peaks
from polymuse.store import Store
from polymuse.tools import fingerprint

LOOKUP_BATCH = 50_000
"""Distinct hashes per look-up statement."""
_IDENTITY = {
    "model": NAME,
    "version": fingerprint.VERSION,
    "fset": fingerprint.FEATURE_SET,
}
_ASSETS = (
    "SELECT object_id FROM feature_fact WHERE feature_type = 'fingerprint' "
    "AND model_name = %(model)s AND model_version = %(version)s "
    "AND feature_set_name = %(fset)s"
)
# The hash look-up runs first, alone (a materialised CTE: one index probe per distinct query
# hash through the `(hash)` index, then the matching rows from the heap); its rows are then kept
# for the assets this fingerprint version was computed on. Our hashes carry a version tag in
# their top byte, so other extractors' postings on those assets practically never match.
_POSTINGS = (
    "WITH hits AS MATERIALIZED (SELECT p.hash, p.asset_id, p.t_offset "
    "FROM fingerprint_posting p WHERE p.hash = ANY(%(hashes)s::integer[])) "
    "SELECT coalesce(array_agg(h.hash), '{}'), coalesce(array_agg(h.asset_id), '{}'), "
    "coalesce(array_agg(h.t_offset), '{}') FROM hits h "
    "WHERE h.asset_id IN (" + _ASSETS + ")"
)


@dataclass(frozen=True)
class _Int4s:
    """int32 values to send as one `integer[]` parameter (`_Int4sDumper`)."""

    values: np.ndarray


class _Int4sDumper(Dumper):
    """`_Int4s` in PostgreSQL's binary array format, built by numpy: psycopg's own list dumper
    converts element by element (about 9 ms for a 5 s query's hashes)."""

    format = Format.BINARY
    oid = types["int4"].array_oid

    def dump(self, obj: _Int4s) -> bytes:
        n = len(obj.values)
        # ndim, no nulls, element type; then the dimension's length and lower bound.
        header = [1, 0, types["int4"].oid, n, 1] if n else [0, 0, types["int4"].oid]
        cells = np.empty((n, 2), dtype=">i4")
        cells[:, 0] = 4  # each element's byte length
        cells[:, 1] = obj.values
        return np.array(header, dtype=">i4").tobytes() + cells.tobytes()


class PostgresIndex:
    """A `HashIndex` over the catalogue database (use the store's pool; no state of its own)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def postings(self, hashes: np.ndarray) -> Postings:
        wanted = np.unique(np.asarray(hashes, dtype=np.uint32)).view(np.int32)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        with self.store.connection("looking up fingerprint hashes") as conn:
            conn.adapters.register_dumper(_Int4s, _Int4sDumper)
            # Long recordings are looked up in slices, each one index probe per hash.
            for start in range(0, max(len(wanted), 1), LOOKUP_BATCH):
                chunk = _Int4s(wanted[start : start + LOOKUP_BATCH])
                row = conn.execute(_POSTINGS, {"hashes": chunk, **_IDENTITY}, binary=True)
                found = row.fetchone()
                assert found is not None
                parts.append(
                    (
                        np.asarray(found[0], dtype=np.int32),
                        np.asarray(found[1], dtype=np.int64),
                        np.asarray(found[2], dtype=np.int32),
                    )
                )
        return Postings(
            np.concatenate([p[0] for p in parts]).view(np.uint32),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    def describe(self, asset_ids: list[int]) -> dict[int, SongRef]:
        with self.store.connection("naming matched songs") as conn:
            rows = conn.execute(
                "SELECT a.object_id, e.entity_id, e.title, e.artist FROM audio_object a "
                "JOIN media_entity e ON e.entity_id = a.entity_id "
                "WHERE a.object_id = ANY(%(ids)s) AND a.object_type = 'asset'",
                {"ids": [int(a) for a in asset_ids]},
            ).fetchall()
        return {int(a): SongRef(int(s), str(t), r) for a, s, t, r in rows}

    def peaks(self, asset_ids: list[int]) -> dict[int, np.ndarray]:
        with self.store.connection("reading reference peaks") as conn:
            rows = conn.execute(
                "SELECT object_id, payload->>'peaks' FROM feature_fact "
                "WHERE object_id = ANY(%(ids)s) AND feature_type = 'fingerprint' "
                "AND model_name = %(model)s AND model_version = %(version)s "
                "AND feature_set_name = %(fset)s",
                {"ids": [int(a) for a in asset_ids], **_IDENTITY},
            ).fetchall()
        return {int(a): decode_peaks(p) for a, p in rows if p}

    def all_peaks(self, limit: int) -> dict[int, np.ndarray] | None:
        where = (
            "FROM feature_fact WHERE feature_type = 'fingerprint' AND model_name = %(model)s "
            "AND model_version = %(version)s AND feature_set_name = %(fset)s"
        )
        with self.store.connection("reading every reference peak") as conn:
            total = conn.execute(
                "SELECT coalesce(sum((payload->>'peak_count')::bigint), 0) " + where, _IDENTITY
            ).fetchone()
            if total is None or total[0] > limit:
                return None
            rows = conn.execute("SELECT object_id, payload->>'peaks' " + where, _IDENTITY)
            return {int(a): decode_peaks(p) for a, p in rows.fetchall() if p}

    def stats(self) -> dict[str, float]:
        """Postings, audio hours and on-disk bytes of this fingerprint's share of the index."""
        with self.store.connection("sizing the fingerprint index") as conn:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(f.posting_count), 0), "
                "coalesce(sum((f.payload->>'duration_s')::float8), 0), "
                "coalesce(sum(pg_column_size(f.payload)), 0) FROM feature_fact f "
                "WHERE f.feature_type = 'fingerprint' AND f.model_name = %(model)s "
                "AND f.model_version = %(version)s AND f.feature_set_name = %(fset)s",
                _IDENTITY,
            ).fetchone()
            total = conn.execute("SELECT count(*) FROM fingerprint_posting").fetchone()
            sizes = conn.execute(
                "SELECT pg_table_size('fingerprint_posting'), "
                "pg_indexes_size('fingerprint_posting')"
            ).fetchone()
        assert row is not None and total is not None and sizes is not None
        assets, postings, seconds, payload_bytes = row
        share = postings / total[0] if total[0] else 0.0
        disk = share * (sizes[0] + sizes[1]) + payload_bytes
        hours = seconds / 3600
        return {
            "assets": int(assets),
            "postings": int(postings),
            "audio_hours": round(hours, 4),
            "posting_table_bytes": int(share * sizes[0]),
            "posting_index_bytes": int(share * sizes[1]),
            "peak_payload_bytes": int(payload_bytes),
            "mb_per_hour": round(disk / 1e6 / hours, 3) if hours else 0.0,
        }
