"""The semantic lane of recognition: window embeddings in pgvector as a second opinion.

The catalogue's semantic extractor stores one embedding per ingest window (10 s every 5 s)
in the pgvector table of its model (`semantic-<encoder>`). `SemanticLane` embeds a query
with the same encoder, in windows of the same length, asks the HNSW index for the nearest
reference windows, and keeps the best window of each song. It is meant for what landmark
fingerprints miss (re-encodes, remasters, covers). `fuse` lets the exact lane decide when it
accepts, and the semantic lane only above a near-duplicate similarity fitted per encoder
(`THRESHOLDS`, read from package data; `fit_threshold`, run by `polymuse eval semantic-lane`);
how much that catches depends on the encoder.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from psycopg import sql

from polymuse.errors import ModelUnavailableError, ParameterError, PolymuseError
from polymuse.ingest.decode import Window, plan_windows
from polymuse.recognition.models import (
    Recognition,
    SemanticCandidate,
    SemanticOpinion,
    SongMatch,
)
from polymuse.tools.encoders.audio import (
    AudioEncoder,
    AudioEncoding,
    build_audio_encoder,
    spread,
    unit,
)

if TYPE_CHECKING:
    from polymuse.settings import Settings
    from polymuse.store import Store

LoadAudio = Callable[[int], np.ndarray]
"""Returns the query, mono float, at the sample rate asked (the encoder's)."""

THRESHOLDS_FILE = "semantic_lane_thresholds.json"
"""Package data: near-duplicate threshold per encoder, with how it was fitted."""
SIMILARITY_DECIMALS = 4
"""Digits the lane reports (and decides on) similarities with."""


def load_thresholds(path: Path | None = None) -> dict[str, float]:
    """Encoder -> threshold from a thresholds file (default: the package's; none if absent).

    Raises:
        ParameterError: The file is not a thresholds file.
    """
    entry = path or resources.files("polymuse").joinpath("data", THRESHOLDS_FILE)
    if not entry.is_file():
        return {}
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
        return {name: float(e["threshold"]) for name, e in data["encoders"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParameterError(
            f"{entry} is not a semantic-lane thresholds file ({exc!r}); "
            "regenerate it with `polymuse eval semantic-lane --save-threshold`"
        ) from exc


THRESHOLDS: dict[str, float] = load_thresholds()
"""Near-duplicate similarity per encoder; an encoder without one only advises, never decides.

Fitted by `polymuse eval semantic-lane --save-threshold` (`polymuse.evaluation.semantic_lane`,
whose report says what each accepts); the file keeps each fit's provenance. musicnn's, with no
false positive on its 828 queries of 24 renders, accepts most clean and re-encoded 10 s
excerpts but few after EQ, gain, reverb or noise: it catches re-encodes more than remasters.
"""


def threshold_for(encoder_name: str) -> float | None:
    """The shipped threshold of an encoder, or None: its lane only advises."""
    return THRESHOLDS.get(encoder_name)


EF_SEARCH = 200
"""HNSW candidate list per look-up: twice `NEIGHBOURS`, so the index returns all of them with
good recall (pgvector's default, 40, would cap the answer at 40 rows)."""
NEIGHBOURS = 100
"""Reference windows fetched per query window: enough to see a few songs past the first."""
MAX_QUERY_WINDOWS = 12
"""Query windows searched, spread over a long clip (pass `spans` for excerpts instead)."""


@dataclass(frozen=True)
class ThresholdFit:
    """A near-duplicate threshold and what it gives on the pairs it was fitted on."""

    threshold: float
    false_positive_rate: float
    true_positive_rate: float
    negatives: int
    positives: int


def fit_threshold(
    similarity: Sequence[float] | np.ndarray,
    same_song: Sequence[bool] | np.ndarray,
    *,
    max_false_positive_rate: float = 0.005,
) -> ThresholdFit:
    """The lowest similarity threshold whose false-positive rate stays within the target.

    Args:
        similarity: The lane's top similarity for each labelled query.
        same_song: Whether that top song is the query's own; False pairs are the negatives
            (queries out of the catalogue, or the best other song of one in it).
        max_false_positive_rate: Share of negatives allowed at or above the threshold. With
            fewer than 1 / rate negatives none is allowed: the threshold lands just above the
            highest negative, the most the data can support.

    Raises:
        ParameterError: Lengths differ, no negatives, or the rate is outside [0, 1).
    """
    sims = np.asarray(similarity, dtype=np.float64)
    same = np.asarray(same_song, dtype=bool)
    if sims.shape != same.shape or sims.ndim != 1:
        raise ParameterError(
            f"similarity and same_song must be 1-d and as long; got {sims.shape}, {same.shape}"
        )
    if not 0 <= max_false_positive_rate < 1:
        raise ParameterError(
            f"max_false_positive_rate must be in [0, 1), got {max_false_positive_rate}"
        )
    negatives = np.sort(sims[~same])[::-1]
    if len(negatives) == 0:
        raise ParameterError("fit_threshold needs negatives (pairs with same_song False)")
    allowed = math.floor(max_false_positive_rate * len(negatives) + 1e-9)
    # Just above the first negative that must be rejected, rounded up to 1e-4.
    threshold = min(math.floor(float(negatives[allowed]) * 1e4 + 1) / 1e4, 1.0)
    positives = sims[same]
    return ThresholdFit(
        threshold=threshold,
        false_positive_rate=float(np.mean(negatives >= threshold)),
        true_positive_rate=float(np.mean(positives >= threshold)) if len(positives) else 0.0,
        negatives=len(negatives),
        positives=len(positives),
    )


def fuse(exact: Recognition, opinion: SemanticOpinion | None) -> Recognition:
    """One answer from both lanes.

    The exact lane decides when it accepts; the semantic opinion is kept beside it. Else the
    semantic lane's top song decides when its similarity reaches the opinion's threshold (an
    opinion without one only advises). Else the answer is unknown. `agrees` compares the
    semantic top song with the exact lane's match, or its best runner-up when it has none.
    """
    if opinion is None:
        return exact
    top = opinion.candidates[0] if opinion.candidates else None
    reference = exact.best
    agrees = None if top is None or reference is None else top.song_id == reference.song_id
    opinion = opinion.model_copy(update={"agrees": agrees})
    if exact.status == "match":
        return exact.model_copy(update={"decided_by": "exact", "semantic": opinion})
    if top is not None and opinion.threshold is not None and top.similarity >= opinion.threshold:
        return exact.model_copy(
            update={
                "status": "match",
                "match": semantic_match(top, threshold=opinion.threshold),
                "decided_by": "semantic",
                "semantic": opinion,
            }
        )
    return exact.model_copy(update={"decided_by": "none", "semantic": opinion})


def semantic_match(candidate: SemanticCandidate, *, threshold: float) -> SongMatch:
    """A semantic candidate as a `SongMatch`: window-level offsets, no landmark evidence.

    The confidence is not a calibrated probability but the similarity mapped linearly from
    the threshold (0.5, where the lane starts accepting) to 1 (identical embeddings).
    """
    span = max(1.0 - threshold, 1e-6)
    confidence = 0.5 + 0.5 * (candidate.similarity - threshold) / span
    return SongMatch(
        song_id=candidate.song_id,
        asset_id=candidate.asset_id,
        title=candidate.title,
        artist=candidate.artist,
        confidence=round(float(np.clip(confidence, 0.0, 1.0)), 4),
        score=0,
        reference_offset_s=max(candidate.reference_start_s - candidate.query_start_s, 0.0),
        query_start_s=candidate.query_start_s,
        query_end_s=candidate.query_end_s,
        reference_start_s=candidate.reference_start_s,
        reference_end_s=candidate.reference_end_s,
        tempo_ratio=1.0,
        lane="semantic",
        similarity=candidate.similarity,
    )


@dataclass(frozen=True)
class VectorTable:
    """A catalogue vector table holding window embeddings of the lane's model."""

    name: str
    model_version: str
    dim: int


class SemanticLane:
    """Nearest catalogue windows to a query, by the encoder the catalogue's windows came from.

    Build it with `open`: it reads which vector tables hold window embeddings of the
    configured encoder and loads the encoder only on the first search. When the catalogue
    has none, `unavailable` says why and `opinion` returns that note without searching.
    """

    def __init__(
        self,
        store: Store,
        *,
        model_name: str,
        tables: Sequence[VectorTable],
        window_s: float,
        build_encoder: Callable[[], AudioEncoder],
        threshold: float | None = None,
        unavailable: str | None = None,
    ) -> None:
        self.store = store
        self.model_name = model_name
        self.tables = list(tables)
        self.window_s = window_s
        self.threshold = threshold
        """Similarity at which the lane decides (None: it only advises)."""
        self.unavailable = unavailable
        """Why the lane cannot run (None: it can)."""
        self._build_encoder = build_encoder
        self._encoder: AudioEncoder | None = None

    @classmethod
    def open(
        cls, settings: Settings, store: Store, *, threshold: float | None = None
    ) -> SemanticLane:
        """The lane for the configured audio encoder (`settings.audio_encoder`), deciding at
        `threshold` (default: `threshold_for` the encoder, if it has one)."""
        spec = str(settings.audio_encoder or "musicnn")
        encoder_name = spec.partition(":")[0]
        model_name = f"semantic-{encoder_name}"

        def build() -> AudioEncoder:
            return build_audio_encoder(spec, settings=settings, device=settings.resolved_device())

        with store.connection("finding semantic window embeddings") as conn:
            rows = conn.execute(
                "SELECT table_name, model_version, dim FROM vector_table "
                "WHERE model_name = %(m)s ORDER BY created_at DESC",
                {"m": model_name},
            ).fetchall()
            tables, lengths = [], []
            for name, version, dim in rows:
                found = conn.execute(
                    sql.SQL(
                        "SELECT w.end_s - w.start_s FROM {} v "
                        "JOIN audio_object w ON w.object_id = v.object_id "
                        "WHERE w.object_type = 'window' LIMIT 200"
                    ).format(sql.Identifier(name))
                ).fetchall()
                if found:
                    tables.append(VectorTable(str(name), str(version), int(dim)))
                    lengths += [float(r[0]) for r in found]
        unavailable = None
        if not tables:
            unavailable = (
                f"the catalogue has no window embeddings of {model_name}: "
                "`catalog add -x semantic FILES` adds them (to stored files too); or set "
                "audio_encoder to the encoder the catalogue was built with"
            )
        return cls(
            store,
            model_name=model_name,
            tables=tables,
            window_s=float(np.median(lengths)) if lengths else 10.0,
            build_encoder=build,
            threshold=threshold_for(encoder_name) if threshold is None else threshold,
            unavailable=unavailable,
        )

    @property
    def encoder(self) -> AudioEncoder:
        """The encoder, loaded on first use; only tables of its version are searched.

        Raises:
            ModelUnavailableError: The encoder does not load, or the catalogue's vectors come
                from another version of it.
        """
        if self._encoder is None:
            encoder = self._build_encoder()
            version = encoder.model_info.version
            same = [
                t
                for t in self.tables
                if t.dim == encoder.embedding_dim
                and (t.model_version == version or t.model_version.startswith(f"{version} | "))
            ]
            if f"semantic-{encoder.name}" != self.model_name or not same:
                held = "; ".join(sorted({t.model_version for t in self.tables})) or "none"
                raise ModelUnavailableError(
                    f"the catalogue's {self.model_name} window embeddings come from {held}, "
                    f"not from the loaded {encoder.name} ({version}); re-ingest with it"
                )
            self.tables = same
            self._encoder = encoder
        return self._encoder

    def opinion(
        self, load: LoadAudio, *, spans: Sequence[tuple[float, float]] | None = None
    ) -> SemanticOpinion:
        """The lane's opinion of a query; a lane that cannot run says why in `note`."""
        started = time.perf_counter()
        opinion = SemanticOpinion(model_name=self.model_name, threshold=self.threshold)
        if self.unavailable:
            return opinion.model_copy(update={"note": self.unavailable})
        try:
            candidates = self.search(load, spans=spans)
        except PolymuseError as exc:
            return opinion.model_copy(update={"note": f"semantic lane failed: {exc}"})
        return opinion.model_copy(
            update={
                "model_version": self.tables[0].model_version,
                "candidates": candidates,
                "seconds": round(time.perf_counter() - started, 4),
            }
        )

    def search(
        self,
        load: LoadAudio,
        *,
        spans: Sequence[tuple[float, float]] | None = None,
        limit: int = 5,
    ) -> list[SemanticCandidate]:
        """The songs whose windows lie closest to the query's, one per song, best first.

        Args:
            load: The query at the rate asked.
            spans: (start, end) seconds of the query to embed, one window each (excerpts of a
                long file); default: the whole query in windows as long as the catalogue's.
            limit: Songs returned.

        Raises:
            ModelUnavailableError: See `encoder`.
            ParameterError: The query is too short for the encoder.
            StoreError: The look-up failed.
        """
        if self.unavailable:
            raise ModelUnavailableError(self.unavailable)
        encoder = self.encoder
        queries = query_windows(
            encoder, load(encoder.sample_rate), spans=spans, window_s=self.window_s
        )
        best: dict[int, SemanticCandidate] = {}
        with self.store.connection("semantic look-up") as conn:
            # Local to this transaction: the pooled connection keeps its default.
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %(ef)s, true)", {"ef": str(EF_SEARCH)}
            )
            for start, end, vector in queries:
                for table in self.tables:
                    rows = conn.execute(
                        sql.SQL(
                            "SELECT w.entity_id, w.parent_object_id, w.start_s, w.end_s, "
                            "1 - n.distance, e.title, e.artist FROM ("
                            "SELECT object_id, embedding <=> %(q)s AS distance FROM {} "
                            "ORDER BY embedding <=> %(q)s LIMIT %(k)s) n "
                            "JOIN audio_object w ON w.object_id = n.object_id "
                            "JOIN media_entity e ON e.entity_id = w.entity_id "
                            "WHERE w.object_type = 'window'"
                        ).format(sql.Identifier(table.name)),
                        {"q": vector, "k": NEIGHBOURS},
                    ).fetchall()
                    for song, asset, ref_start, ref_end, similarity, title, artist in rows:
                        similarity = round(float(similarity), SIMILARITY_DECIMALS)
                        if song in best and best[song].similarity >= similarity:
                            continue
                        best[song] = SemanticCandidate(
                            song_id=int(song),
                            asset_id=int(asset),
                            title=str(title),
                            artist=artist,
                            similarity=similarity,
                            reference_start_s=float(ref_start),
                            reference_end_s=float(ref_end),
                            query_start_s=round(start, 3),
                            query_end_s=round(end, 3),
                        )
        return sorted(best.values(), key=lambda c: -c.similarity)[:limit]


def query_windows(
    encoder: AudioEncoder,
    y: np.ndarray,
    *,
    spans: Sequence[tuple[float, float]] | None,
    window_s: float,
) -> list[tuple[float, float, np.ndarray]]:
    """(start, end, unit vector) of each query window, pooled as the catalogue's are.

    Args:
        encoder: The lane's encoder.
        y: The query, mono, at the encoder's rate.
        spans: (start, end) seconds embedded one window each; None: the whole query in
            `window_s` windows at half-window hops (at most `MAX_QUERY_WINDOWS`, spread).
        window_s: The catalogue's window length.
    """
    rate = encoder.sample_rate
    duration = len(y) / rate
    if spans is not None:
        out = []
        for start, end in spans:
            start, end = max(start, 0.0), min(end, duration)
            encoding = encoder.encode(
                y[int(start * rate) : int(end * rate)], sample_rate=rate, max_windows=None
            )
            out.append((start, end, unit(encoding.window_embeddings.mean(axis=0))))
        return out
    encoding = encoder.encode(y, sample_rate=rate, max_windows=None)
    windows = plan_windows(duration, window_s=window_s, hop_s=window_s / 2)
    chosen = [windows[i] for i in spread(len(windows), MAX_QUERY_WINDOWS)]
    return [(w.start_s, w.end_s, vector) for w, vector in window_vectors(encoding, chosen)]


def window_vectors(
    encoding: AudioEncoding, windows: Sequence[Window]
) -> list[tuple[Window, np.ndarray]]:
    """Each window's unit vector, the mean of the encoder's patches centred in it, as the
    catalogue's semantic extractor stores them; a window without a patch is left out."""
    out = []
    for window in windows:
        inside = (encoding.window_times >= window.start_s) & (encoding.window_times < window.end_s)
        if inside.any():
            out.append((window, unit(encoding.window_embeddings[inside].mean(axis=0))))
    return out
