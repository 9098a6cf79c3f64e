"""Connections: a psycopg 3 pool that registers pgvector, and DSN masking for every message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pgvector.psycopg import register_vector
from psycopg import conninfo as pg_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from polymuse.errors import StoreError

MASK = "***"
_URI_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<pw>[^@/?#\s]*)(?=@)", re.I
)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&\s]*)", re.I)


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced by `***` (URI, key=value and ?password= forms)."""
    masked = _URI_PASSWORD.sub(lambda m: m["head"] + (MASK if m["pw"] else ""), dsn)
    masked = _KV_PASSWORD.sub(lambda m: m["head"] + MASK, masked)
    return _QUERY_PASSWORD.sub(lambda m: m["head"] + MASK, masked)


def scrub(text: str, dsn: str) -> str:
    """Any text (an error message) with the DSN's password removed, wherever it appears."""
    text = mask_dsn(text)
    try:
        password = pg_conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    if password:
        text = text.replace(str(password), MASK)
    return text


def describe(dsn: str) -> str:
    """A short, password-free name of the server: `user@host:port/db` or `user@/socket/db`."""
    try:
        params = pg_conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return mask_dsn(dsn)
    host = str(params.get("host") or "localhost")
    where = host if host.startswith("/") else f"{host}:{params.get('port') or 5432}"
    user = params.get("user")
    return f"{user + '@' if user else ''}{where}/{params.get('dbname') or user or ''}"


@contextmanager
def translate_errors(dsn: str, doing: str) -> Iterator[None]:
    """Turn psycopg errors into `StoreError`s that name the server but never its password."""
    try:
        yield
    except PoolTimeout as exc:
        raise StoreError(
            f"{doing}: no connection to {describe(dsn)} ({scrub(str(exc), dsn)}); "
            "is the server running and the DSN right?"
        ) from None
    except psycopg.Error as exc:
        raise StoreError(f"{doing} on {describe(dsn)}: {scrub(str(exc).strip(), dsn)}") from None


def connect(dsn: str, *, autocommit: bool = True) -> psycopg.Connection:
    """One plain connection (no pgvector types): for migrations and administration."""
    with translate_errors(dsn, "cannot connect"):
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=10)


def _configure(conn: psycopg.Connection) -> None:
    register_vector(conn)
    conn.commit()


def open_pool(dsn: str, *, min_size: int = 1, max_size: int = 4) -> ConnectionPool:
    """A pool whose connections know the `vector` type (run migrations first)."""
    pool = ConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        configure=_configure,
        open=False,
        name="polymuse",
        timeout=30,
        kwargs={"connect_timeout": 10},
    )
    with translate_errors(dsn, "cannot open the connection pool"):
        pool.open(wait=True, timeout=15)
    return pool
