"""Schema migrations: numbered, append-only SQL files in `polymuse/sql/`, recorded when applied.

Each migration runs in its own transaction and is recorded in `schema_migrations` with its
checksum. A session advisory lock makes concurrent `migrate` calls safe: the second waits, then
finds nothing left to do. An applied migration whose file has since changed is an error
(append-only: add a new file instead).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from polymuse.errors import StoreError
from polymuse.store.pool import describe, scrub

log = logging.getLogger(__name__)

# "polymuse" as a 64-bit advisory lock key.
MIGRATION_LOCK = int.from_bytes(b"polymuse", "big")
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """The migrations shipped with the package, in order."""
    found = []
    for entry in resources.files("polymuse").joinpath("sql").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migrations share a number in polymuse/sql: {versions}")
    return found


def applied(conn: psycopg.Connection) -> dict[int, str]:
    """Version -> checksum of the migrations recorded in this database ({} when none)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {int(v): c for v, c in rows}


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply pending migrations; return those applied now. `conn` must be in autocommit mode."""
    dsn = conn.info.dsn
    try:
        conn.execute("SELECT pg_advisory_lock(%(key)s)", {"key": MIGRATION_LOCK})
        try:
            return _migrate_locked(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%(key)s)", {"key": MIGRATION_LOCK})
    except psycopg.Error as exc:
        raise StoreError(
            f"migrating {describe(dsn)} failed: {scrub(str(exc).strip(), dsn)}"
        ) from None


def _migrate_locked(conn: psycopg.Connection) -> list[Migration]:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    done = applied(conn)
    known = available()
    for migration in known:
        if migration.version in done and done[migration.version] != migration.checksum:
            raise StoreError(
                f"migration {migration.version:04d}_{migration.name}.sql changed after it was "
                "applied; migrations are append-only, add a new numbered file instead"
            )
    newest = max((m.version for m in known), default=0)
    if done and max(done) > newest:
        log.warning(
            "the database has schema version %s, newer than this Poly-Muse knows (%s)",
            max(done),
            newest,
        )
    ensure_vector_extension(conn)
    pending = [m for m in known if m.version not in done]
    for migration in pending:
        with conn.transaction():
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) "
                "VALUES (%(version)s, %(name)s, %(checksum)s)",
                {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                },
            )
        log.info("applied migration %04d_%s", migration.version, migration.name)
    return pending


def ensure_vector_extension(conn: psycopg.Connection) -> None:
    """`CREATE EXTENSION IF NOT EXISTS vector`, with a clear error when it cannot be."""
    dsn = conn.info.dsn
    row = conn.execute(
        "SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    if row is None:
        raise StoreError(
            f"the PostgreSQL server {describe(dsn)} has no pgvector extension; install it "
            "(Debian/Ubuntu: postgresql-<major>-pgvector; see github.com/pgvector/pgvector), "
            "or unset POLYMUSE_DSN to use the embedded server, which includes it"
        )
    if row[0] is not None:
        return
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege:
        raise StoreError(
            f"the user of {describe(dsn)} may not create the pgvector extension; ask an "
            "administrator to run `CREATE EXTENSION vector;` in that database"
        ) from None
