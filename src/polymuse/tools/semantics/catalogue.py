"""The semantic reviewer in the catalogue: an ingest extractor, and the reads search needs.

`SemanticExtractor` plugs into the ingest (`polymuse.ingest.extractors`) as
`polymuse.tools.semantics.catalogue:SemanticExtractor`. For each file it stores:

- an `embedding` fact for the whole file (mean over all its 3 s patches, unit length) and one
  for each ingest window (mean of the patches centred in it), in the model's pgvector table;
- a `descriptor` fact whose payload holds every descriptor's confidence, the bank hash and
  the calibration, so text search needs no audio.

`catalogue_items` reads those rows back as `SearchItem`s; `nearest_songs` asks pgvector's
HNSW index for the songs closest to an embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from polymuse.tools.encoders.audio import unit
from polymuse.tools.semantics.features import texture_features
from polymuse.tools.semantics.reviewer import FEATURE_RATE, SemanticReviewer
from polymuse.tools.semantics.search import SearchItem

if TYPE_CHECKING:
    from polymuse.ingest.decode import IngestItem
    from polymuse.ingest.extractors import Fact
    from polymuse.store import Store

FEATURE_SET = "semantic-v1"


class SemanticExtractor:
    """Song and window embeddings plus descriptor confidences, for the catalogue."""

    feature_set = FEATURE_SET

    def __init__(self, reviewer: SemanticReviewer) -> None:
        self.reviewer = reviewer
        self.name = f"semantic-{reviewer.encoder.name}"
        self.version = f"{reviewer.encoder.model_info.version} | bank {reviewer.bank.digest}"
        self.sample_rate: int | None = reviewer.encoder.sample_rate

    @classmethod
    def from_settings(cls, settings: object) -> SemanticExtractor:
        return cls(SemanticReviewer.from_settings(settings))

    def extract_batch(self, items: Sequence[IngestItem]) -> list[list[Fact]]:
        from polymuse.ingest.extractors import Fact

        out = []
        for item in items:
            rev = self.reviewer
            encoding = rev.encoder.encode(
                item.audio_at(rev.encoder.sample_rate),
                sample_rate=rev.encoder.sample_rate,
                max_windows=None,
            )
            tags = encoding
            if rev.tagger is not rev.encoder:
                tags = rev.tagger.encode(
                    item.audio_at(rev.tagger.sample_rate),
                    sample_rate=rev.tagger.sample_rate,
                    max_windows=None,
                )
            features = texture_features(item.audio_at(FEATURE_RATE), sample_rate=FEATURE_RATE)
            scores = rev.scorer.score(
                tag_probabilities=None
                if tags.tag_probabilities is None
                else tags.tag_probabilities.mean(axis=0),
                features=features,
                audio_embedding=tags.embedding if rev.tagger.joint_text else None,
            )
            facts = [Fact("embedding", None, encoding.embedding)]
            for window in item.windows:
                inside = (encoding.window_times >= window.start_s) & (
                    encoding.window_times < window.end_s
                )
                if inside.any():
                    vector = unit(encoding.window_embeddings[inside].mean(axis=0))
                    facts.append(Fact("embedding", window.index, vector))
            facts.append(
                Fact(
                    "descriptor",
                    None,
                    payload={
                        "scores": {s.id: round(s.confidence, 4) for s in scores},
                        "bank_hash": rev.bank.digest,
                        "calibration": rev.scorer.calibration.name,
                        "features": {k: v for k, v in features.items() if v is not None},
                    },
                )
            )
            out.append(facts)
        return out


def catalogue_items(store: Store, *, model_name: str) -> list[SearchItem]:
    """Every song with semantic facts from `model_name`: its descriptor confidences and its
    song-level embedding (the first asset's, when a song has several files)."""
    with store.connection("reading semantic facts") as conn:
        rows = conn.execute(
            "SELECT e.entity_id, e.title, e.artist, a.file_path, f.payload "
            "FROM feature_fact f JOIN audio_object a ON a.object_id = f.object_id "
            "JOIN media_entity e ON e.entity_id = a.entity_id "
            "WHERE f.feature_type = 'descriptor' AND f.model_name = %(m)s "
            "ORDER BY e.entity_id, a.object_id",
            {"m": model_name},
        ).fetchall()
        vectors = _song_vectors(conn, model_name)
    items: dict[int, SearchItem] = {}
    for entity_id, title, artist, path, payload in rows:
        if entity_id in items:
            continue
        items[entity_id] = SearchItem(
            key=str(entity_id),
            title=f"{artist} - {title}" if artist else title,
            scores={k: float(v) for k, v in (payload or {}).get("scores", {}).items()},
            embedding=vectors.get(entity_id),
            encoder=model_name.removeprefix("semantic-"),
            location=path or "",
        )
    return list(items.values())


def nearest_songs(
    store: Store, embedding: np.ndarray, *, model_name: str, limit: int = 10
) -> list[tuple[int, float]]:
    """(song id, cosine similarity) of the songs nearest `embedding`, by the HNSW index."""
    from psycopg import sql

    with store.connection("similarity search") as conn:
        table = _vector_table(conn, model_name, len(embedding))
        if table is None:
            return []
        rows = conn.execute(
            sql.SQL(
                "SELECT v.entity_id, 1 - (v.embedding <=> %(q)s) AS similarity FROM {} v "
                "JOIN feature_fact f ON f.fact_id = v.fact_id "
                "JOIN audio_object a ON a.object_id = f.object_id "
                "WHERE a.object_type = 'asset' "
                "ORDER BY v.embedding <=> %(q)s LIMIT %(k)s"
            ).format(sql.Identifier(table)),
            {"q": np.asarray(embedding, dtype=np.float32), "k": limit * 2},
        ).fetchall()
    best: dict[int, float] = {}
    for entity_id, similarity in rows:
        best.setdefault(int(entity_id), float(similarity))
    return sorted(best.items(), key=lambda kv: -kv[1])[:limit]


def _vector_table(conn: Any, model_name: str, dim: int | None = None) -> str | None:
    row = conn.execute(
        "SELECT table_name FROM vector_table WHERE model_name = %(m)s "
        "AND (%(d)s::integer IS NULL OR dim = %(d)s::integer) ORDER BY created_at DESC LIMIT 1",
        {"m": model_name, "d": dim},
    ).fetchone()
    return str(row[0]) if row else None


def _song_vectors(conn: Any, model_name: str) -> dict[int, np.ndarray]:
    from psycopg import sql

    table = _vector_table(conn, model_name)
    if table is None:
        return {}
    rows = conn.execute(
        sql.SQL(
            "SELECT DISTINCT ON (v.entity_id) v.entity_id, v.embedding FROM {} v "
            "JOIN audio_object a ON a.object_id = v.object_id WHERE a.object_type = 'asset' "
            "ORDER BY v.entity_id, v.object_id"
        ).format(sql.Identifier(table))
    ).fetchall()
    return {int(e): _array(v) for e, v in rows}


def _array(vector: Any) -> np.ndarray:
    """pgvector's `Vector` (or a plain sequence) as float32."""
    values = vector.to_numpy() if hasattr(vector, "to_numpy") else vector
    return np.asarray(values, dtype=np.float32)
