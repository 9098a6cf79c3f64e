"""Recognition through the catalogue database: ingest with the landmark extractor, identify."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from polymuse.commands.identify import identify
from polymuse.ingest.extractors import DebugExtractor
from polymuse.ingest.pipeline import IngestOptions, run_ingest
from polymuse.ingest.testdata import render_song
from polymuse.recognition import MemoryIndex, Recognizer
from polymuse.recognition.extractor import LandmarkExtractor
from polymuse.recognition.listening import listen
from polymuse.recognition.postgres import PostgresIndex
from polymuse.tools import fingerprint

pytestmark = pytest.mark.db
SR = 22050


@pytest.fixture
def catalogue(store, make_song, tmp_path):
    """Four 20 s songs added with the landmark extractor (and the debug one beside it)."""
    for seed in range(1, 5):
        make_song(f"Band/Band - Song {seed}.wav", seed=seed, seconds=20.0)
    summary = run_ingest(
        store,
        [tmp_path / "music"],
        IngestOptions(
            extractors=[LandmarkExtractor(), DebugExtractor()], jobs=1, chromaprint=False
        ),
    )
    assert len(summary.added) == 4
    return store


def test_identify_against_postgres(catalogue) -> None:
    recognizer = Recognizer(PostgresIndex(catalogue))
    clip = render_song(3, seconds=20.0, sample_rate=SR)[int(6.5 * SR) : int(11.5 * SR)]
    answer = recognizer.identify(clip, SR)
    assert answer.status == "match"
    assert answer.match.title == "Song 3" and answer.match.artist == "Band"
    assert abs(answer.match.reference_offset_s - 6.5) <= 0.05
    assert answer.postings > 0 and answer.seconds < 2.0


def test_postgres_and_memory_give_the_same_answer(catalogue) -> None:
    pg = PostgresIndex(catalogue)
    memory = MemoryIndex()
    for seed in range(1, 5):
        memory.add(seed, fingerprint.reference(render_song(seed, seconds=20.0), SR))
    clip = render_song(2, seconds=20.0, sample_rate=SR)[3 * SR : 8 * SR]
    heard = listen(clip, SR)
    a = Recognizer(pg).identify_listening(heard).match
    b = Recognizer(memory).identify_listening(heard).match
    assert (a.score, a.peaks_found, a.reference_offset_s) == (
        b.score,
        b.peaks_found,
        b.reference_offset_s,
    )


def test_unknown_clip_is_rejected(catalogue) -> None:
    clip = render_song(9, seconds=10.0, sample_rate=SR)[2 * SR : 7 * SR]
    assert Recognizer(PostgresIndex(catalogue)).identify(clip, SR).status == "unknown"


def test_index_stats_report_size_per_hour(catalogue) -> None:
    stats = PostgresIndex(catalogue).stats()
    assert stats["assets"] == 4 and stats["postings"] > 100
    assert 0 < stats["mb_per_hour"] < 50
    assert abs(stats["audio_hours"] - 80 / 3600) < 1e-3


def test_identify_command(catalogue, settings, tmp_path) -> None:
    clip = tmp_path / "clip.flac"
    sf.write(clip, render_song(4, seconds=20.0, sample_rate=SR)[5 * SR : 10 * SR], SR)
    app = typer.Typer()
    app.command()(identify)
    result = CliRunner().invoke(app, [str(clip), "--dsn", settings.dsn, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["status"] == "match" and answer["match"]["title"] == "Song 4"
    noise = tmp_path / "noise.wav"
    sf.write(noise, np.random.default_rng(0).normal(0, 0.1, int(1.5 * SR)), SR)
    result = CliRunner().invoke(app, [str(noise), "--dsn", settings.dsn])
    assert "not in the catalogue, as far as 1.5 s can tell" in " ".join(result.output.split())
    long = tmp_path / "two.wav"
    a = render_song(1, seconds=20.0, sample_rate=SR)[2 * SR : 18 * SR]
    b = render_song(2, seconds=20.0, sample_rate=SR)[1 * SR : 17 * SR]
    sf.write(long, np.concatenate([a, b]), SR)
    result = CliRunner().invoke(app, [str(long), "--dsn", settings.dsn, "--timeline", "--json"])
    assert result.exit_code == 0, result.output
    segments = json.loads(result.output)["segments"]
    assert [s["match"]["title"] for s in segments] == ["Song 1", "Song 2"]


def test_recognize_node(catalogue, settings, tmp_path) -> None:
    from types import SimpleNamespace

    from polymuse.nodes.recognize import recognize
    from polymuse.report import SourceInfo
    from polymuse.runtime import Context

    path = tmp_path / "full.wav"
    sf.write(path, render_song(2, seconds=20.0, sample_rate=SR), SR)
    source = SourceInfo(
        path=str(path),
        file_name=path.name,
        content_hash="0" * 64,
        size_bytes=1,
        container="wav",
        codec="pcm_16",
        decoder="soundfile",
        sample_rate=SR,
        channels=1,
        frames=20 * SR,
        duration_s=20.0,
    )
    runtime = SimpleNamespace(context=Context(settings=settings))
    update = recognize({"path": str(path), "source": source}, runtime)
    section = update["recognition"]
    assert section.recognition.status == "match"
    assert section.recognition.match.title == "Song 2"
    assert abs(section.recognition.match.reference_offset_s) <= 0.05  # in the file's time
    assert len(section.excerpts) == 3  # over 12 s: three 10 s excerpts
    assert section.decided_on == "mix" and section.stems == {}


def _age_fingerprint(store, file_name: str) -> None:
    """Mark a stored file's fingerprint as made by an older version."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE feature_fact SET model_version = 'old' WHERE model_name = 'polymuse-triplets' "
            "AND object_id IN (SELECT object_id FROM audio_object WHERE file_path LIKE %(p)s)",
            {"p": f"%{file_name}"},
        )


def test_refingerprint_replaces_an_older_version(catalogue, settings, tmp_path) -> None:
    """Files fingerprinted by an older version are reported, re-read and match again; others
    are kept."""
    from polymuse.commands.catalog import app
    from polymuse.recognition.refresh import stale_assets

    _age_fingerprint(catalogue, "Song 2.wav")
    assert [p.rsplit("/", 1)[-1] for _, p in stale_assets(catalogue)] == ["Band - Song 2.wav"]
    clip = render_song(2, seconds=20.0, sample_rate=SR)[3 * SR : 8 * SR]
    assert Recognizer(PostgresIndex(catalogue)).identify(clip, SR).status == "unknown"
    stats = CliRunner().invoke(app, ["--dsn", settings.dsn, "stats", "--json"])
    assert json.loads(stats.output)["stale_fingerprints"] == 1
    path = tmp_path / "clip.wav"
    sf.write(path, clip, SR)
    ask = typer.Typer()
    ask.command()(identify)
    answer = CliRunner().invoke(ask, [str(path), "--dsn", settings.dsn])
    assert "1 catalogue file(s) carry fingerprints of another version" in answer.stderr
    result = CliRunner().invoke(app, ["--dsn", settings.dsn, "refingerprint", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["replaced"]) == 1
    assert stale_assets(catalogue) == []
    assert Recognizer(PostgresIndex(catalogue)).identify(clip, SR).match.title == "Song 2"
    with catalogue.connection() as conn:
        facts = conn.execute(
            "SELECT count(*) FROM feature_fact WHERE model_name = 'polymuse-triplets'"
        ).fetchone()[0]
        orphans = conn.execute(
            "SELECT count(*) FROM fingerprint_posting p WHERE NOT EXISTS "
            "(SELECT 1 FROM feature_fact f WHERE f.fact_id = p.fact_id)"
        ).fetchone()[0]
    assert (facts, orphans) == (4, 0)


def test_catalog_add_replaces_an_older_fingerprint(catalogue, tmp_path) -> None:
    """Adding a stored file again gives it the current fingerprint in place of an older one."""
    from polymuse.recognition.refresh import stale_assets

    _age_fingerprint(catalogue, "Song 2.wav")
    options = IngestOptions(extractors=[LandmarkExtractor()], jobs=1, chromaprint=False)
    summary = run_ingest(catalogue, [tmp_path / "music"], options)
    assert [o.path.rsplit("/", 1)[-1] for o in summary.updated] == ["Band - Song 2.wav"]
    assert len(summary.skipped) == 3 and stale_assets(catalogue) == []
    clip = render_song(2, seconds=20.0, sample_rate=SR)[3 * SR : 8 * SR]
    assert Recognizer(PostgresIndex(catalogue)).identify(clip, SR).match.title == "Song 2"
    with catalogue.connection() as conn:
        versions = conn.execute(
            "SELECT DISTINCT model_version FROM feature_fact WHERE model_name = 'polymuse-triplets'"
        ).fetchall()
        orphans = conn.execute(
            "SELECT count(*) FROM fingerprint_posting p WHERE NOT EXISTS "
            "(SELECT 1 FROM feature_fact f WHERE f.fact_id = p.fact_id)"
        ).fetchone()[0]
    assert (versions, orphans) == ([(fingerprint.VERSION,)], 0)
