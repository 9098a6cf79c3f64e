"""The catalogue store: PostgreSQL + pgvector, embedded by default, external via a DSN.

`open_store(settings)` gives a `Store`: the embedded server is started if needed (unless
`settings.dsn` names another server), pending migrations are applied, and a connection pool
that knows the `vector` type is opened. Both paths run the same code after the DSN is known.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from polymuse.settings import Settings
from polymuse.store import migrations
from polymuse.store.pool import connect, describe, mask_dsn, open_pool, translate_errors
from polymuse.store.server import EmbeddedServer

__all__ = ["EmbeddedServer", "Store", "mask_dsn", "open_store"]


@dataclass
class Store:
    """An open catalogue: the DSN it came from, its pool, and the embedded server if any."""

    dsn: str
    pool: ConnectionPool
    server: EmbeddedServer | None = None

    @property
    def where(self) -> str:
        """A password-free description of the server, for messages."""
        return describe(self.dsn)

    @property
    def embedded(self) -> bool:
        return self.server is not None

    @contextmanager
    def connection(self, doing: str = "catalogue query") -> Iterator[psycopg.Connection]:
        """A pooled connection; commits if the block ends cleanly; errors become StoreError."""
        with translate_errors(self.dsn, doing), self.pool.connection() as conn:
            yield conn

    @contextmanager
    def transaction(self, doing: str = "catalogue update") -> Iterator[psycopg.Connection]:
        """A pooled connection inside one transaction: all of the block or nothing."""
        with self.connection(doing) as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_dsn(settings: Settings) -> tuple[str, EmbeddedServer | None]:
    """The DSN to use: `settings.dsn`, else the embedded server's (started if needed)."""
    if settings.dsn:
        return settings.dsn, None
    server = EmbeddedServer(settings.home)
    return server.ensure_running(), server


def open_store(settings: Settings, *, max_size: int = 4, migrate: bool = True) -> Store:
    """Connect to the catalogue, migrating it first; close the result (or use `with`)."""
    dsn, server = resolve_dsn(settings)
    if migrate:
        with connect(dsn) as conn:
            migrations.migrate(conn)
    return Store(dsn, open_pool(dsn, max_size=max_size), server)
