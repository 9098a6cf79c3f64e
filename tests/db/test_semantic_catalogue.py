"""The semantic extractor in a real catalogue: facts, pgvector similarity, search commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from polymuse.commands.search import search, similar
from polymuse.ingest import IngestOptions, run_ingest
from polymuse.tools.semantics.catalogue import SemanticExtractor, catalogue_items, nearest_songs
from polymuse.tools.semantics.reviewer import SemanticReviewer

pytestmark = pytest.mark.db


@pytest.fixture
def extractor(tmp_path: Path) -> SemanticExtractor:
    reviewer = SemanticReviewer.build(
        audio_spec="debug", text_spec="hashing", cache_dir=tmp_path / "cache"
    )
    return SemanticExtractor(reviewer)


def test_extractor_facts_and_nearest_songs(store, make_song, extractor) -> None:
    songs = [make_song(f"Artist - Song {i}.flac", seed=i, seconds=12.0) for i in range(3)]
    summary = run_ingest(
        store, [songs[0].parent], IngestOptions(extractors=[extractor], jobs=1, chromaprint=False)
    )
    assert len(summary.added) == 3
    items = catalogue_items(store, model_name=extractor.name)
    assert len(items) == 3
    for item in items:
        assert item.encoder == "debug" and item.embedding.shape == (16,)
        assert item.scores and all(0 <= v <= 1 for v in item.scores.values())
    with store.connection() as conn:
        windows = conn.execute(
            "SELECT count(*) FROM feature_fact f JOIN audio_object a USING (object_id) "
            "WHERE f.model_name = %(m)s AND a.object_type = 'window'",
            {"m": extractor.name},
        ).fetchone()[0]
    assert windows >= 3 * 2  # 12 s songs, 10 s windows every 5 s
    first = items[0]
    nearest = nearest_songs(store, first.embedding, model_name=extractor.name, limit=3)
    assert nearest[0] == (int(first.key), pytest.approx(1.0, abs=1e-5))
    assert len(nearest) == 3 and nearest[1][1] <= nearest[0][1]


def test_search_and_similar_commands_read_the_catalogue(
    store, settings, make_song, extractor, monkeypatch: pytest.MonkeyPatch
) -> None:
    songs = [make_song(f"Band - Track {i}.flac", seed=10 + i, seconds=8.0) for i in range(3)]
    run_ingest(
        store, [songs[0].parent], IngestOptions(extractors=[extractor], jobs=1, chromaprint=False)
    )
    monkeypatch.setenv("POLYMUSE_DSN", settings.dsn)
    monkeypatch.setenv("POLYMUSE_AUDIO_ENCODER", "debug")
    monkeypatch.setenv("POLYMUSE_TEXT_ENCODER", "hashing")
    app = typer.Typer()
    app.command("search")(search)
    app.command("similar")(similar)
    runner = CliRunner()
    found = runner.invoke(app, ["search", "loud rock", "--source", "catalogue", "--json"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.output)["hits"]
    assert len(hits) == 3 and hits[0]["score"] >= hits[-1]["score"]
    song_id = hits[0]["key"]
    alike = runner.invoke(app, ["similar", song_id, "--source", "catalogue", "--json"])
    assert alike.exit_code == 0, alike.output
    data = json.loads(alike.output)
    assert [h["key"] for h in data["hits"]] and song_id not in [h["key"] for h in data["hits"]]
    assert np.isfinite([h["score"] for h in data["hits"]]).all()
