"""`polymuse chat` end to end: threads live in PostgreSQL and resume with --thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents_data import library

pytestmark = pytest.mark.db


def chat(dsn: str, thread: str, lines: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "polymuse", "chat", "--thread", thread],
        input=lines,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "POLYMUSE_DSN": dsn},
    )


def test_chat_remembers_the_song_across_sessions(db_dsn: str, tmp_path: Path) -> None:
    lib = library(tmp_path)
    title = lib.entries[0].title
    first = chat(db_dsn, "t1", f"What key is {title} in?\n", tmp_path)
    assert first.returncode == 0, first.stderr
    key = lib.entries[0].report.features.key.label
    assert key in first.stdout
    again = chat(db_dsn, "t1", "And its tempo?\n", tmp_path)
    assert again.returncode == 0, again.stderr
    assert "BPM" in again.stdout and title in again.stdout
    fresh = chat(db_dsn, "t2", "And its tempo?\n", tmp_path)
    assert title not in fresh.stdout
