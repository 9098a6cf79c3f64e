"""The semantic lane against a real catalogue: debug-encoder window embeddings in pgvector.

The catalogue has no landmark postings, so the exact lane answers unknown and the semantic
lane must find the song and the window on its own.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import soxr
import typer
from typer.testing import CliRunner

from polymuse.commands.identify import identify
from polymuse.ingest import IngestOptions, run_ingest
from polymuse.ingest.testdata import write_audio
from polymuse.recognition import Recognition, SemanticLane, fuse, semantic, service
from polymuse.settings import Settings
from polymuse.tools.semantics.catalogue import SemanticExtractor
from polymuse.tools.semantics.reviewer import SemanticReviewer

pytestmark = pytest.mark.db
SR = 22050


def song(title: str) -> np.ndarray:
    """20 s whose spectrum moves, so each window differs: a tone gliding up ("Rise"), or
    noise in a band sliding down ("Fall"), one band per second."""
    n = 20 * SR
    if title == "Rise":
        f = 200.0 * 30 ** (np.arange(n) / n)
        phase = 2 * np.pi * np.cumsum(f) / SR
        y = np.sin(phase) + 0.5 * np.sin(2 * phase)
    else:
        rng = np.random.default_rng(0)
        spectrum = np.fft.rfft(rng.standard_normal((20, SR)), axis=1)
        bins = np.arange(spectrum.shape[1])[None, :]
        centre = np.geomspace(7000, 300, 20)[:, None]
        spectrum *= np.abs(bins - centre) < centre / 4
        y = np.fft.irfft(spectrum, n=SR, axis=1).ravel()
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def excerpt(title: str, start: float, end: float) -> np.ndarray:
    return song(title)[int(start * SR) : int(end * SR)]


@pytest.fixture
def catalogue(store, tmp_path):
    """Two 20 s songs with debug window embeddings (10 s windows every 5 s), no postings."""
    reviewer = SemanticReviewer.build(
        audio_spec="debug", text_spec="hashing", cache_dir=tmp_path / "cache"
    )
    for title in ("Rise", "Fall"):
        write_audio(tmp_path / "music" / f"Band - {title}.wav", song(title), SR)
    summary = run_ingest(
        store,
        [tmp_path / "music"],
        IngestOptions(extractors=[SemanticExtractor(reviewer)], jobs=1, chromaprint=False),
    )
    assert len(summary.added) == 2
    return store


def debug(settings: Settings) -> Settings:
    return settings.model_copy(update={"audio_encoder": "debug"})


def test_lane_finds_the_song_and_the_window(catalogue, settings) -> None:
    lane = SemanticLane.open(debug(settings), catalogue, threshold=0.99)
    assert lane.unavailable is None and lane.window_s == 10.0
    clip = excerpt("Fall", 5.0, 15.0)
    found = lane.opinion(lambda sr: soxr.resample(clip, SR, sr))
    top, other = found.candidates
    assert (top.title, top.reference_start_s, top.reference_end_s) == ("Fall", 5.0, 15.0)
    assert top.similarity > 0.99 and other.title == "Rise" and other.similarity < 0.9
    assert found.model_name == "semantic-debug" and found.model_version.startswith("band")
    assert found.threshold == 0.99
    unknown = Recognition(status="unknown", query_duration_s=10.0, triplets=0, probes=0, postings=0)
    fused = fuse(unknown, found)
    assert fused.decided_by == "semantic" and fused.match.title == "Fall"
    assert fused.match.reference_offset_s == 5.0 and fused.match.lane == "semantic"


def test_excerpt_spans_search_each_excerpt(catalogue, settings) -> None:
    lane = service.semantic_lane(debug(settings), catalogue)
    assert lane.threshold is None  # nothing fitted for the debug encoder
    whole = song("Rise")
    found = lane.search(lambda sr: soxr.resample(whole, SR, sr), spans=[(10.0, 20.0)], limit=1)
    assert [(c.title, c.reference_start_s, c.query_start_s) for c in found] == [
        ("Rise", 10.0, 10.0)
    ]


def test_lane_without_vectors_of_the_encoder_says_why(catalogue, settings) -> None:
    lane = SemanticLane.open(settings, catalogue)  # musicnn: not in this catalogue
    assert "semantic-musicnn" in lane.unavailable
    found = lane.opinion(lambda sr: pytest.fail("an unavailable lane must not load audio"))
    assert found.note == lane.unavailable and found.candidates == []


def test_identify_command_says_which_lane_decided(
    catalogue, settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYMUSE_AUDIO_ENCODER", "debug")
    clip = tmp_path / "clip.wav"
    sf.write(clip, excerpt("Rise", 10.0, 20.0), SR)
    app = typer.Typer()
    app.command()(identify)
    runner = CliRunner()
    advice = runner.invoke(app, [str(clip), "--dsn", settings.dsn, "--json"])
    assert advice.exit_code == 0, advice.output
    answer = json.loads(advice.output)
    assert answer["status"] == "unknown" and answer["decided_by"] == "none"
    assert answer["semantic"]["candidates"][0]["title"] == "Rise"
    monkeypatch.setitem(semantic.THRESHOLDS, "debug", 0.99)
    both = runner.invoke(app, [str(clip), "--dsn", settings.dsn, "--json"])
    assert both.exit_code == 0, both.output
    answer = json.loads(both.output)
    assert answer["status"] == "match" and answer["decided_by"] == "semantic"
    assert answer["match"]["title"] == "Rise" and answer["match"]["lane"] == "semantic"
    assert answer["semantic"]["candidates"][0]["reference_start_s"] == 10.0
    exact = runner.invoke(app, [str(clip), "--dsn", settings.dsn, "--lane", "exact", "--json"])
    assert exact.exit_code == 0, exact.output
    assert json.loads(exact.output)["semantic"] is None
    table = runner.invoke(app, [str(clip), "--dsn", settings.dsn])
    assert table.exit_code == 0, table.output
    assert "decided by" in table.output and "semantic lane" in table.output
    assert "Rise" in table.output
