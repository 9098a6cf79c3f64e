"""Text-to-music search and similarity over rows of descriptor confidences and embeddings.

The functions take plain rows (`SearchItem`), so the same ranking serves report folders and
the catalogue. A text query is mapped onto the descriptor bank (`plan_query`): phrases that
name a descriptor in English or Chinese match exactly; any English words left over are
compared with the descriptors' text embeddings. A song's score is the weighted mean of its
confidences for the matched descriptors, and each hit says which descriptors carried it.
With a joint audio-text encoder (CLAP, CLaMP 3, MuQ-MuLan) the query's own embedding is also
compared with the songs' audio embeddings, and the two scores are averaged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field

from polymuse.errors import UserError
from polymuse.schema import Model
from polymuse.tools.semantics.bank import DescriptorBank

log = logging.getLogger(__name__)

TEXT_MATCHES = 3
TEXT_MIN_SIMILARITY = 0.45
_CJK = re.compile(r"[\u3400-\u9fff]")
_STOPWORDS = """
a an the and or with without of for in on to by from music song songs track tracks some
something like sound sounds sounding that is are very more less
的 了 和 与 及 有 很 些 一些 一首 首 音乐 歌 歌曲 曲子 风格 感觉 带 点
"""
STOPWORDS = frozenset(_STOPWORDS.split())
NEGATION = re.compile(r"\b(no|not|without|non)\b|无|没有|不")
"""Sentence embeddings barely tell "vocals" from "no vocals", so descriptors that negate
('no vocals') are matched by meaning only when the query negates too (by phrase, always)."""


class PlannedMatch(Model):
    descriptor_id: str
    label: str
    label_zh: str
    weight: float
    via: str = Field(description="'phrase' (named in the query) or 'text' (similar meaning)")
    phrase: str = ""


class QueryPlan(Model):
    """How a query was read: matched descriptors with weights, and what was left over."""

    query: str
    matches: list[PlannedMatch]
    unmatched: str = ""


class MatchedDescriptor(Model):
    descriptor_id: str
    label: str
    confidence: float


class SearchHit(Model):
    key: str
    title: str
    score: float
    matched: list[MatchedDescriptor] = Field(default_factory=list)
    location: str = ""


@dataclass
class SearchItem:
    """One song as search sees it."""

    key: str
    title: str
    scores: dict[str, float]
    """Descriptor id -> confidence."""
    embedding: np.ndarray | None = None
    encoder: str = ""
    location: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def plan_query(
    query: str,
    bank: DescriptorBank,
    *,
    encode: Callable[[list[str]], np.ndarray] | None = None,
    descriptor_vectors: np.ndarray | None = None,
    multilingual: bool = False,
) -> QueryPlan:
    """Map a query onto descriptors.

    Args:
        query: Free text, English or Chinese ("calm solo piano", "安静的钢琴独奏").
        bank: The descriptor bank.
        encode: Text encoder for the words no phrase matched; None to match phrases only.
        descriptor_vectors: The bank's descriptor embeddings from the same encoder, bank
            order (see `scoring.TextIndex.descriptor_vectors`).
        multilingual: Whether `encode` understands Chinese; otherwise Chinese leftovers are
            not embedded.

    Raises:
        UserError: The query is empty, or nothing in it could be matched.
    """
    if not query.strip():
        raise UserError("the search query is empty")
    found, rest = bank.match(query)
    matches = [
        PlannedMatch(
            descriptor_id=m.descriptor_id,
            label=bank.by_id[m.descriptor_id].label.en,
            label_zh=bank.by_id[m.descriptor_id].label.zh,
            weight=1.0,
            via="phrase",
            phrase=m.phrase,
        )
        for m in found
    ]
    words = [w for w in rest.split() if w.casefold() not in STOPWORDS]
    leftover = " ".join(words)
    embeddable = leftover and (multilingual or not _CJK.search(leftover))
    if embeddable and encode is not None and descriptor_vectors is not None:
        sims = descriptor_vectors @ np.asarray(encode([leftover]), dtype=np.float32)[0]
        order = np.argsort(-sims)
        taken = {m.descriptor_id for m in matches}
        threshold = TEXT_MIN_SIMILARITY if matches else -1.0
        negated_query = bool(NEGATION.search(leftover))
        order = [i for i in order if negated_query or not _negated(bank.descriptors[int(i)])]
        for i in order[:TEXT_MATCHES]:
            d = bank.descriptors[int(i)]
            if sims[i] < threshold or d.id in taken:
                continue
            matches.append(
                PlannedMatch(
                    descriptor_id=d.id,
                    label=d.label.en,
                    label_zh=d.label.zh,
                    weight=round(float(max(sims[i], 0.05)), 4),
                    via="text",
                    phrase=leftover,
                )
            )
        leftover = ""
    if not matches:
        raise UserError(
            f"nothing in {query!r} matches a descriptor; try words such as 'piano', 'calm', "
            "'choir', 'rock' (or 钢琴, 安静, 合唱, 摇滚)"
        )
    return QueryPlan(query=query, matches=matches, unmatched=leftover)


def _negated(descriptor) -> bool:
    return bool(NEGATION.match(descriptor.label.en) or NEGATION.match(descriptor.label.zh))


def rank_text(
    plan: QueryPlan,
    items: Sequence[SearchItem],
    *,
    limit: int = 10,
    query_embedding: np.ndarray | None = None,
    encoder: str = "",
) -> list[SearchHit]:
    """Rank songs by the plan's descriptors (and, for a joint encoder, the query embedding).

    Songs lacking a matched descriptor count it as 0. With `query_embedding`, songs encoded by
    `encoder` also get the cosine between it and their embedding, rescaled to 0..1, averaged
    with the descriptor score.
    """
    total = sum(m.weight for m in plan.matches)
    hits = []
    for item in items:
        matched = [
            MatchedDescriptor(
                descriptor_id=m.descriptor_id,
                label=m.label,
                confidence=round(item.scores.get(m.descriptor_id, 0.0), 4),
            )
            for m in plan.matches
        ]
        score = sum(m.weight * item.scores.get(m.descriptor_id, 0.0) for m in plan.matches) / max(
            total, 1e-9
        )
        if (
            query_embedding is not None
            and item.embedding is not None
            and item.encoder == encoder
            and item.embedding.shape == query_embedding.shape
        ):
            score = (score + (1 + float(_cosine(item.embedding, query_embedding))) / 2) / 2
        hits.append(
            SearchHit(
                key=item.key,
                title=item.title,
                score=round(score, 4),
                matched=sorted(matched, key=lambda m: -m.confidence),
                location=item.location,
            )
        )
    hits.sort(key=lambda h: (-h.score, h.title))
    return hits[:limit]


def rank_similar(
    query: np.ndarray,
    items: Sequence[SearchItem],
    *,
    limit: int = 10,
    exclude: str | None = None,
    encoder: str = "",
) -> list[SearchHit]:
    """Songs whose embedding is closest (cosine) to `query`, from the same encoder.

    Args:
        query: Embedding of the reference song.
        items: Candidates; those without an embedding of the same encoder and size are skipped.
        limit: Number of hits.
        exclude: Key of the reference song itself.
        encoder: Encoder name the query embedding came from ('' accepts any).
    """
    hits = []
    for item in items:
        if item.key == exclude or item.embedding is None:
            continue
        if (encoder and item.encoder != encoder) or item.embedding.shape != query.shape:
            continue
        hits.append(
            SearchHit(
                key=item.key,
                title=item.title,
                score=round(float(_cosine(item.embedding, query)), 4),
                location=item.location,
            )
        )
    hits.sort(key=lambda h: (-h.score, h.title))
    return hits[:limit]


def shared_descriptors(a: SearchItem, b: SearchItem, *, top: int = 3) -> list[str]:
    """Descriptors both songs hold confidently: why two songs are similar, in words."""
    common = set(a.scores) & set(b.scores)
    ranked = sorted(common, key=lambda d: -min(a.scores[d], b.scores[d]))
    return ranked[:top]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else 0.0


def items_from_reports(root: Path | str) -> list[SearchItem]:
    """Songs analysed into report folders under `root` (`*/report.json` with a semantic section).

    The song embedding comes from `embeddings.npz` in the folder, else from the cache file the
    section names. Folders without a semantic section are skipped; an unreadable report is
    logged and skipped, so one bad folder does not stop a search.
    """
    import json

    items = []
    for report_json in sorted(Path(root).glob("*/report.json")):
        folder = report_json.parent
        try:
            report = json.loads(report_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("skipping %s: %s", report_json, exc)
            continue
        semantic = report.get("semantic")
        if not semantic:
            continue
        embedding, encoder = None, semantic.get("encoder", {}).get("name", "")
        for candidate in (folder / "embeddings.npz", semantic.get("embeddings_path")):
            if candidate and Path(candidate).is_file():
                try:
                    with np.load(candidate) as data:
                        embedding = data["embedding"].astype(np.float32)
                        encoder = str(data["encoder"])
                    break
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("unreadable embeddings %s: %s", candidate, exc)
        source = report.get("source", {})
        items.append(
            SearchItem(
                key=str(source.get("content_hash") or folder.name),
                title=str(report.get("title") or folder.name),
                scores={k: float(v) for k, v in semantic.get("scores", {}).items()},
                embedding=embedding,
                encoder=encoder,
                location=str(folder),
            )
        )
    return items
