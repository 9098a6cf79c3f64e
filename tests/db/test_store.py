"""The store: embedded server lifecycle, migrations, external DSNs, password masking."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytest
from psycopg import conninfo, sql
from typer.testing import CliRunner

from polymuse.commands import catalog as catalog_cmd
from polymuse.commands import db as db_cmd
from polymuse.errors import StoreError
from polymuse.settings import Settings
from polymuse.store import EmbeddedServer, migrations, open_store
from polymuse.store.pool import connect, mask_dsn, scrub

pytestmark = pytest.mark.db

EXPECTED_TABLES = {
    "schema_migrations",
    "ingest_run",
    "media_entity",
    "audio_object",
    "feature_fact",
    "set_membership",
    "vector_table",
    "chromaprint",
    "fingerprint_posting",
    "quarantine",
}


def _tables(dsn: str) -> set[str]:
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_migrations_from_empty_then_rerun(empty_dsn: str) -> None:
    with connect(empty_dsn) as conn:
        applied = migrations.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in migrations.available()]
        assert migrations.migrate(conn) == []
        recorded = migrations.applied(conn)
        vector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert vector.fetchone() is not None
    assert set(recorded) == {m.version for m in migrations.available()}
    assert _tables(empty_dsn) >= EXPECTED_TABLES
    with connect(empty_dsn) as conn:
        lookups = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'fingerprint_posting' "
            "AND indexdef LIKE '%%(hash)%%'"
        ).fetchall()
    assert lookups  # a hash lookup index (0002, or a later migration's replacement)


def test_changed_migration_is_refused(db_dsn: str) -> None:
    with connect(db_dsn) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(StoreError, match="append-only"):
            migrations.migrate(conn)


def test_concurrent_migrations_apply_once(empty_dsn: str) -> None:
    results, errors = [], []

    def run() -> None:
        try:
            with connect(empty_dsn) as conn:
                results.append(len(migrations.migrate(conn)))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [0, 0, len(migrations.available())]


def test_embedded_server_is_shared(pg_server: EmbeddedServer) -> None:
    """A second handle on the same home finds the running server instead of starting one."""
    other = EmbeddedServer(pg_server.home)
    assert other.start() is False
    assert other.ensure_running() == pg_server.conninfo()
    status = other.status()
    assert status.running and status.pid and status.socket_dir is not None
    with open_store(Settings(home=pg_server.home)) as store:  # the default, embedded path
        assert store.embedded
        with store.connection() as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "polymuse"


def test_embedded_server_listens_on_a_socket_only(pg_server: EmbeddedServer) -> None:
    with connect(pg_server.conninfo("postgres")) as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()[0]
    assert listen == ""
    assert sockets


def test_crashed_server_and_stale_pid_are_recovered(
    server_home, caplog: pytest.LogCaptureFixture
) -> None:
    server = EmbeddedServer(server_home())
    dsn = server.ensure_running()
    with connect(dsn) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    pid = server.status().pid
    assert pid
    os.kill(pid, signal.SIGKILL)  # crash: postmaster.pid and the socket stay behind
    caplog.set_level(logging.WARNING, logger="polymuse.store.server")
    dsn = server.ensure_running()
    assert "without a clean shutdown" in caplog.text
    with connect(dsn) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)

    # A pid file naming a live process that is not PostgreSQL (pid reuse) is stale too.
    assert server.stop()
    (server.data_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{server.data_dir}\n")
    assert not server.status().running
    caplog.clear()
    with connect(server.ensure_running()) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    assert "without a clean shutdown" in caplog.text
    assert server.stop()
    assert server.stop() is False


def _uri(base_dsn: str, *, password: str) -> str:
    params = conninfo.conninfo_to_dict(base_dsn)
    return (
        f"postgresql://{params['user']}:{password}@/{params['dbname']}"
        f"?host={params['host']}&port={params['port']}"
    )


def test_external_dsn_code_path(
    pg_server: EmbeddedServer, empty_dsn: str, tmp_path: Path, make_song
) -> None:
    """A DSN (URI with a password) to a second database: migrated, ingested, listed."""
    from polymuse.ingest import IngestOptions, run_ingest
    from polymuse.ingest.extractors import DebugExtractor
    from polymuse.store import queries

    dsn = _uri(empty_dsn, password="not-used-by-trust-auth")
    song = make_song("Someone - Something.wav", seed=1)
    with open_store(Settings(home=tmp_path / "unused-home", dsn=dsn)) as store:
        assert not store.embedded
        assert "not-used" not in store.where
        summary = run_ingest(store, [song], IngestOptions(extractors=[DebugExtractor()], jobs=1))
        assert len(summary.added) == 1
        with store.connection() as conn:
            songs = queries.list_songs(conn)
    assert [(s["artist"], s["title"]) for s in songs] == [("Someone", "Something")]
    assert not (tmp_path / "unused-home" / "pg").exists()


def test_external_server_without_vector_rights_is_a_clear_error(
    pg_server: EmbeddedServer, db_dsn: str
) -> None:
    name = f"novec_{os.getpid()}"
    with connect(pg_server.conninfo("postgres")) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(name)
            )
        )
    try:
        params = conninfo.conninfo_to_dict(pg_server.conninfo(name))
        dsn = conninfo.make_conninfo(**{**params, "user": name})
        with pytest.raises(StoreError, match="may not create the pgvector extension"):
            open_store(Settings(dsn=dsn))
    finally:
        with connect(pg_server.conninfo("postgres")) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        (
            "postgresql://ann:s3cr%40t@db.example:5432/music",
            "postgresql://ann:***@db.example:5432/music",
        ),
        ("postgres://ann:pw@/music?host=/run/pg", "postgres://ann:***@/music?host=/run/pg"),
        (
            "postgresql://ann@db/music?sslmode=require&password=pw",
            "postgresql://ann@db/music?sslmode=require&password=***",
        ),
        ("host=db user=ann password=pw dbname=music", "host=db user=ann password=*** dbname=music"),
        ("host=db password='p w' dbname=music", "host=db password=*** dbname=music"),
        ("postgresql://db.example:5432/music", "postgresql://db.example:5432/music"),
    ],
)
def test_mask_dsn(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked


def test_passwords_never_reach_messages() -> None:
    dsn = "postgresql://ann:Sup3rS3cret@127.0.0.1:1/music"
    with pytest.raises(StoreError) as caught:
        open_store(Settings(dsn=dsn))
    assert "Sup3rS3cret" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
    assert "Sup3rS3cret" not in scrub(f"failed for {dsn} and Sup3rS3cret", dsn)
    for app, args in ((catalog_cmd.app, ["list"]), (db_cmd.app, ["status"])):
        result = CliRunner().invoke(app, ["--dsn", dsn, *args])
        assert result.exit_code != 0
        text = result.output + repr(result.exception)
        assert "Sup3rS3cret" not in text


def test_db_commands(
    pg_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch, db_dsn: str
) -> None:
    monkeypatch.setenv("POLYMUSE_HOME", str(pg_server.home))
    runner = CliRunner()
    result = runner.invoke(db_cmd.app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert '"mode": "embedded"' in result.output and '"running": true' in result.output
    result = runner.invoke(db_cmd.app, ["start"])
    assert result.exit_code == 0 and "already running" in result.output
    result = runner.invoke(db_cmd.app, ["--dsn", db_dsn, "status", "--json"])
    assert result.exit_code == 0 and '"mode": "external"' in result.output
    result = runner.invoke(db_cmd.app, ["--dsn", db_dsn, "stop"])
    assert result.exit_code != 0 and "external server" in str(result.exception)


def test_psycopg_errors_become_store_errors(store) -> None:
    with pytest.raises(StoreError, match="no_such_table"), store.connection() as conn:
        conn.execute("SELECT * FROM no_such_table")
