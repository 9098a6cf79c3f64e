"""`polymuse catalog ...` end to end through typer's CliRunner, against a test database."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polymuse.commands.catalog import app

pytestmark = pytest.mark.db


@pytest.fixture
def cli(db_dsn: str):
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(app, ["--dsn", db_dsn, *args])
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    return invoke


def test_catalog_commands(cli, make_song, tmp_path: Path) -> None:
    make_song("Alpha - First.wav", seed=1)
    make_song("Beta - Second.flac", seed=2)
    (tmp_path / "music" / "broken.mp3").write_bytes(b"ID3" + b"\0" * 100)
    (tmp_path / "music" / "cover.jpg").write_bytes(b"\xff\xd8")

    added = cli(
        "add",
        str(tmp_path / "music"),
        "--set",
        "demo",
        "-x",
        "debug",
        "-j",
        "1",
        "--json",
        ok=False,
    )
    assert added.exit_code == 1  # one file quarantined
    summary = json.loads(added.output)
    assert len(summary["added"]) == 2 and summary["ignored"] == 1
    assert [Path(q["path"]).name for q in summary["quarantined"]] == ["broken.mp3"]

    again = cli("add", str(tmp_path / "music"), "-x", "debug")
    assert "0 added, 3 skipped, 0 quarantined" in again.output

    songs = json.loads(cli("list", "--json").output)
    assert [(s["artist"], s["title"]) for s in songs] == [("Alpha", "First"), ("Beta", "Second")]
    assert [
        s["title"] for s in json.loads(cli("list", "--set", "demo", "-q", "beta", "--json").output)
    ] == ["Second"]

    shown = json.loads(cli("show", "alpha", "--json").output)
    assert shown["sets"] == ["catalog:demo"] and len(shown["files"]) == 1
    assert {f["model_name"] for f in shown["facts"]} >= {"debug"}
    assert "features" in cli("show", str(shown["song_id"])).output

    stats = json.loads(cli("stats", "--json").output)
    assert stats["songs"] == 2 and stats["quarantined"] == 1 and stats["sets"] == 1

    rows = list(csv.DictReader(io.StringIO(cli("export", "--format", "csv").output)))
    assert {r["title"] for r in rows} == {"First", "Second"} and rows[0]["sets"] == "demo"
    lines = cli("export").output.strip().splitlines()
    assert {json.loads(line)["title"] for line in lines} == {"First", "Second"}

    quarantined = json.loads(cli("quarantine", "--json").output)
    assert quarantined[0]["file_path"].endswith("broken.mp3") and quarantined[0]["reason"]

    removed = cli("remove", str(shown["song_id"]), "--yes")
    assert "removed 1 songs, 1 files" in removed.output
    assert [s["title"] for s in json.loads(cli("list", "--json").output)] == ["Second"]
    missing = cli("remove", "99999", "--yes", ok=False)
    assert missing.exit_code != 0 and "no songs with id 99999" in str(missing.exception)

    assert "forgot 1" in cli("quarantine", "--clear").output
    retried = cli("add", str(tmp_path / "music"), "-x", "debug", ok=False)
    assert "1 quarantined" in retried.output  # forgotten, so tried (and refused) again


def test_unknown_extractor_lists_the_registered_ones(cli, make_song, tmp_path: Path) -> None:
    make_song("a.wav", seed=3)
    result = cli("add", str(tmp_path / "music"), "-x", "nope", ok=False)
    assert "spectral-stats" in str(result.exception) and "debug" in str(result.exception)
