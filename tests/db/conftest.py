"""Database fixtures: one embedded PostgreSQL per test session, a fresh database per test.

Each test's database is a copy of a migrated template (`CREATE DATABASE ... TEMPLATE`, a
file copy, milliseconds), reached through its DSN: the same code path as an external server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg import sql

from polymuse.ingest.testdata import render_song, write_audio
from polymuse.settings import Settings
from polymuse.store import EmbeddedServer, Store, migrations, open_store
from polymuse.store.pool import connect

TEMPLATE = "polymuse_test_template"


@pytest.fixture(scope="session")
def server_home() -> Iterator[Callable[[], Path]]:
    """New folders for embedded servers, outside pytest's basetemp: pytest resets that
    folder's permissions at every session start, and as root the server runs as another user
    that must keep reaching its data while other pytest sessions start."""
    made: list[Path] = []

    def make() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="polymuse-test-pg-")))
        return made[-1]

    yield make
    for path in made:
        EmbeddedServer(path).stop()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(server_home: Callable[[], Path]) -> Iterator[EmbeddedServer]:
    # A throw-away cluster: durability settings off for speed (crash tests use their own).
    server = EmbeddedServer(
        server_home(),
        options={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
    )
    server.ensure_running()
    with connect(server.conninfo("postgres")) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    with connect(server.conninfo(TEMPLATE)) as conn:
        migrations.migrate(conn)
    yield server
    server.stop()


def create_database(server: EmbeddedServer, *, template: str | None = TEMPLATE) -> str:
    """A new database on the session server; its name."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template or "template1")
    )
    with connect(server.conninfo("postgres")) as conn:
        conn.execute(query)
    return name


def drop_database(server: EmbeddedServer, name: str) -> None:
    with connect(server.conninfo("postgres")) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYMUSE_DSN", raising=False)
    monkeypatch.setenv("POLYMUSE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def db_dsn(pg_server: EmbeddedServer) -> Iterator[str]:
    """DSN of a fresh, migrated database."""
    name = create_database(pg_server)
    yield pg_server.conninfo(name)
    drop_database(pg_server, name)


@pytest.fixture
def empty_dsn(pg_server: EmbeddedServer) -> Iterator[str]:
    """DSN of a fresh database with nothing in it (not even pgvector)."""
    name = create_database(pg_server, template=None)
    yield pg_server.conninfo(name)
    drop_database(pg_server, name)


@pytest.fixture
def settings(db_dsn: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", dsn=db_dsn)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with open_store(settings) as opened:
        yield opened


@pytest.fixture
def make_song(tmp_path: Path):
    """Write a distinct little song: make_song("a/Artist - Title.flac", seed=3, seconds=6)."""

    def make(relative: str, *, seed: int, seconds: float = 3.0, tags: dict | None = None) -> Path:
        path = tmp_path / "music" / relative
        return write_audio(path, render_song(seed, seconds=seconds), 22050, tags=tags)

    return make


def _counts(dsn: str) -> dict[str, int]:
    """Row counts of the catalogue tables (vector tables summed)."""
    with connect(dsn) as conn:
        result = {
            table: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()[0]
            for table in (
                "media_entity",
                "audio_object",
                "feature_fact",
                "set_membership",
                "chromaprint",
                "fingerprint_posting",
                "quarantine",
            )
        }
        result["assets"] = conn.execute(
            "SELECT count(*) FROM audio_object WHERE object_type = 'asset'"
        ).fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT table_name FROM vector_table").fetchall()]
        result["vectors"] = sum(
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
            for t in tables
        )
    return result


SLOW_EXTRACTOR = textwrap.dedent(
    """
    import time
    from polymuse.ingest.extractors import DebugExtractor

    class SlowDebug(DebugExtractor):
        def extract_batch(self, items):
            time.sleep(0.25)
            return super().extract_batch(items)
    """
)


def _cli_process(dsn: str, *args: str, plugin_dir: Path | None = None) -> subprocess.Popen:
    """`polymuse catalog --dsn DSN ARGS` in its own process group (for kill -9 tests)."""
    env = dict(os.environ)
    if plugin_dir is not None:
        (plugin_dir / "slow_extractor.py").write_text(SLOW_EXTRACTOR)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_dir), env.get("PYTHONPATH")]))
    code = "import sys; from polymuse.commands.catalog import app; app(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, "--dsn", dsn, *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, *, timeout: float = 60.0, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


@pytest.fixture
def table_counts():
    """counts(dsn) -> rows per catalogue table, plus `assets` and `vectors`."""
    return _counts


@pytest.fixture
def cli_process():
    """cli_process(dsn, *args, plugin_dir=None) -> Popen of `polymuse catalog`."""
    return _cli_process


@pytest.fixture
def wait_for():
    """wait_for(predicate, timeout=60) -> bool, polling every 20 ms."""
    return _wait_for
