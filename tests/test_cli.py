"""The command line end to end, in a subprocess as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def polymuse(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "polymuse", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def analysed(song_wav: Path, tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("cli")
    return polymuse("analyze", str(song_wav), cwd=cwd), cwd


def test_analyze_writes_every_report_file(analysed) -> None:
    result, cwd = analysed
    assert result.returncode == 0, result.stderr
    [folder] = (cwd / "reports").iterdir()
    assert folder.name.startswith("synth-song-")
    names = {p.name for p in folder.iterdir()}
    assert {"report.json", "report.md", "report.html", "annotations.jams", "plots"} <= names
    report = json.loads((folder / "report.json").read_text())
    assert report["features"]["key"]["label"] == "C major"
    assert abs(report["features"]["rhythm"]["tempo_bpm"] - 120) < 2.4
    assert {p.name for p in (folder / "plots").iterdir()} >= {
        "waveform.png",
        "spectrogram.png",
        "chroma.png",
        "structure.png",
        "loudness.png",
    }
    assert "C major" in result.stdout


def test_report_show_reads_it_back(analysed) -> None:
    _, cwd = analysed
    [folder] = (cwd / "reports").iterdir()
    result = polymuse("report", "show", str(folder), cwd=cwd)
    assert result.returncode == 0 and "C major" in result.stdout


def test_report_schema(tmp_path: Path) -> None:
    result = polymuse("report", "schema", "-o", str(tmp_path / "s.json"), cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads((tmp_path / "s.json").read_text())["title"] == "AnalysisReport"


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.wav", "no such file"),
        (b"", "empty.wav", "empty file"),
        (b"hello, not audio", "text.wav", "not a readable audio file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, content, name, message) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = polymuse("analyze", str(path), cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0]
    assert not (tmp_path / "reports").exists()


def test_batch_goes_on_after_a_bad_file(tmp_path: Path, song_wav: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    result = polymuse("analyze", str(bad), str(song_wav), "--only", "load", cwd=tmp_path)
    assert result.returncode == 1
    assert "bad.wav" in result.stderr
    assert len(list((tmp_path / "reports").iterdir())) == 1


def test_unknown_node_is_a_usage_error(tmp_path: Path, song_wav: Path) -> None:
    result = polymuse("analyze", str(song_wav), "--only", "telepathy", cwd=tmp_path)
    assert result.returncode == 2 and "valid: load" in result.stderr


def test_doctor_lists_models_with_licences(tmp_path: Path) -> None:
    result = polymuse("doctor", cwd=tmp_path)
    assert "CC BY-NC-SA" in result.stdout and "madmom-key" in result.stdout
