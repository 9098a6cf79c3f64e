"""Score every descriptor of the bank for one recording, with calibrated confidences.

Evidence, each in logit units (`s`), by kind:

- `tag`: the descriptor's direct links to tagger outputs. For tag t with mean probability p
  over windows, link weight w and the model's own prior pi_t (see `MusicnnEncoder`):
  s = logit(w * p) - alpha * logit(pi_t); a descriptor takes its strongest link. alpha = 0
  reads the probability as it is; alpha = 1 scores lift over the prior.
- `text`: descriptors with no direct link and no feature rule borrow the tags whose names
  are most similar to the descriptor's text (text-encoder cosine >= `MIN_SIMILARITY`, at
  most `TOP_TAGS`), weighted by a softmax over those similarities:
  s = sum_t softmax(sim / T)_t * s_t.
- `feature`: the bank's logistic rules on audio features (`features.py`): each rule gives
  +-(x - center) / scale; several rules must all hold (minimum).
- `joint`: for encoders with a joint audio-text space, the cosine between the recording's
  embedding and the descriptor's text embedding, standardised over its category.
- `head`: the instrument-family head's probability p for a class linked to the descriptor
  with weight w (`instrument_head.DESCRIPTOR_LINKS`): s = logit(w * p), the strongest link.
  Reported as evidence named 'instrument head: <class>'. Borrowed-tag evidence is only
  used for descriptors with neither direct tag nor head evidence.

Calibration maps each kind's s to a probability with its own Platt scaling,
c_k = sigmoid(a_k * s + b_k), and a descriptor with several kinds of evidence gets the
weighted mean of their logits. The packaged `data/semantic_calibration.json` was fitted by
`polymuse.evaluation.tags` on one split of the rendered labelled set and reported on the
other; without it, a = 1, b = 0 for direct evidence and a weaker mapping for borrowed tags.

The descriptor and tag-name text embeddings are cached on disk, keyed by the text encoder's
name, the bank's hash and the tag list's hash, so only a changed bank or model re-embeds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from polymuse.errors import ParameterError
from polymuse.semantic_report import DescriptorScore, Evidence
from polymuse.tools.semantics.bank import Descriptor, DescriptorBank
from polymuse.tools.semantics.instrument_head import DESCRIPTOR_LINKS

log = logging.getLogger(__name__)

TOP_TAGS = 3
MIN_SIMILARITY = 0.35
TEMPERATURE = 0.05
_EPS = 1e-4
CALIBRATION_FILE = "semantic_calibration.json"
HEAD_EVIDENCE = "instrument head: "
"""Name prefix of the instrument head's evidence."""


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class Calibration:
    """Per-kind Platt scaling (a, b), kind weights for combining, and the prior strength."""

    name: str = "default (uncalibrated)"
    alpha: float = 0.0
    platt: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "tag": (1.0, 0.0),
            "text": (0.5, -1.0),
            "feature": (1.0, 0.0),
            "joint": (1.0, -1.0),
            "head": (1.0, 0.0),
        }
    )
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "tag": 1.0,
            "text": 0.5,
            "feature": 1.0,
            "joint": 1.0,
            "head": 1.0,
        }
    )

    def confidence(self, kind: str, score: float) -> float:
        a, b = self.platt[kind]
        return float(sigmoid(a * score + b))

    @classmethod
    def load(cls, path: Path | str | None = None) -> Calibration:
        """Read a calibration JSON (default: the packaged one, or defaults if it is absent).

        Raises:
            ParameterError: The file exists but is malformed.
        """
        if path is None:
            packaged = Path(str(resources.files("polymuse") / "data" / CALIBRATION_FILE))
            if not packaged.is_file():
                return cls()
            path = packaged
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            default = cls()
            platt = dict(default.platt)
            platt.update({k: (float(v["a"]), float(v["b"])) for k, v in data["platt"].items()})
            weights = dict(default.weights)
            weights.update({k: float(v) for k, v in data.get("weights", {}).items()})
            return cls(
                name=str(data["name"]), alpha=float(data["alpha"]), platt=platt, weights=weights
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ParameterError(f"cannot read calibration {path}: {exc}") from exc

    def to_json(self, **extra: object) -> str:
        data = {
            "name": self.name,
            "alpha": self.alpha,
            "platt": {k: {"a": a, "b": b} for k, (a, b) in self.platt.items()},
            "weights": self.weights,
            **extra,
        }
        return json.dumps(data, indent=1, ensure_ascii=False)


@dataclass(frozen=True)
class TextIndex:
    """Text embeddings of the descriptors and of the tag names, from one text encoder."""

    encoder: str
    descriptor_ids: tuple[str, ...]
    descriptor_vectors: np.ndarray
    """Label, English aliases and description of each descriptor, averaged; unit rows."""
    tags: tuple[str, ...]
    tag_vectors: np.ndarray

    def similarities(self) -> np.ndarray:
        """Cosine between each descriptor and each tag name, (n_descriptors, n_tags)."""
        if not self.tags:
            return np.zeros((len(self.descriptor_ids), 0), dtype=np.float32)
        return self.descriptor_vectors @ self.tag_vectors.T


def tag_text(tag: str) -> str:
    """How a qualified tag name reads to a text encoder: 'MSD:Hip-Hop' -> 'hip-hop music'."""
    return f"{tag.split(':', 1)[-1].lower()} music"


def descriptor_texts(d: Descriptor) -> list[str]:
    return [f"{d.label.en} music", *(f"{a} music" for a in d.aliases.en), d.text]


def build_text_index(
    bank: DescriptorBank,
    tags: Sequence[str],
    *,
    encoder_name: str,
    encode: Callable[[list[str]], np.ndarray],
    cache_dir: Path | None = None,
) -> TextIndex:
    """Embed descriptors and tag names, or read them from the cache.

    Args:
        bank: The descriptor bank.
        tags: Qualified tag names of the tagger ('MTT:piano', ...), may be empty.
        encoder_name: The text encoder's name, part of the cache key.
        encode: Embeds a list of texts into unit rows; called only on a cache miss.
        cache_dir: Folder for `<encoder>-<bank hash>-<tags hash>.npz`; None for no cache.
    """
    tags = tuple(tags)
    tags_hash = hashlib.sha256("\n".join(tags).encode()).hexdigest()[:12]
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{_safe(encoder_name)}-{bank.digest}-{tags_hash}.npz"
        if path.is_file():
            try:
                with np.load(path) as data:
                    if tuple(data["descriptor_ids"]) == tuple(d.id for d in bank.descriptors):
                        return TextIndex(
                            encoder=encoder_name,
                            descriptor_ids=tuple(str(i) for i in data["descriptor_ids"]),
                            descriptor_vectors=data["descriptor_vectors"],
                            tags=tags,
                            tag_vectors=data["tag_vectors"],
                        )
            except (OSError, ValueError, KeyError):
                log.warning("text index cache %s is unreadable; rebuilding it", path)
    texts: list[str] = []
    spans: list[tuple[int, int]] = []
    for d in bank.descriptors:
        own = descriptor_texts(d)
        spans.append((len(texts), len(texts) + len(own)))
        texts.extend(own)
    vectors = np.asarray(encode(texts + [tag_text(t) for t in tags]), dtype=np.float32)
    descriptor_vectors = np.stack([vectors[a:b].mean(axis=0) for a, b in spans])
    descriptor_vectors /= np.linalg.norm(descriptor_vectors, axis=1, keepdims=True)
    index = TextIndex(
        encoder=encoder_name,
        descriptor_ids=tuple(d.id for d in bank.descriptors),
        descriptor_vectors=descriptor_vectors.astype(np.float32),
        tags=tags,
        tag_vectors=vectors[len(texts) :],
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(
            tmp,
            descriptor_ids=np.array(index.descriptor_ids),
            descriptor_vectors=index.descriptor_vectors,
            tag_vectors=index.tag_vectors,
        )
        tmp.replace(path)
    return index


class DescriptorScorer:
    """Scores the bank's descriptors from pooled tag probabilities, features and embeddings."""

    def __init__(
        self,
        bank: DescriptorBank,
        *,
        tags: Sequence[str] = (),
        tag_priors: np.ndarray | None = None,
        index: TextIndex | None = None,
        joint_vectors: np.ndarray | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        """
        Args:
            bank: The descriptor bank.
            tags: The tagger's qualified tag names; empty for no tag evidence.
            tag_priors: Each tag's prior probability (for `alpha`); None means 0.5 (no shift).
            index: Text embeddings of descriptors and these tags, for borrowed-tag evidence.
            joint_vectors: (n_descriptors, dim) descriptor embeddings in a joint audio-text
                space, in bank order; None without a joint encoder.
            calibration: Score-to-probability mapping; default `Calibration.load()`.
        """
        self.bank = bank
        self.tags = tuple(tags)
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        priors = np.full(len(self.tags), 0.5) if tag_priors is None else np.asarray(tag_priors)
        if priors.shape != (len(self.tags),):
            raise ParameterError(f"tag_priors must have shape ({len(self.tags)},)")
        self.calibration = calibration or Calibration.load()
        self.prior_logits = logit(priors)
        if joint_vectors is not None and joint_vectors.shape[0] != len(bank):
            raise ParameterError("joint_vectors must have one row per descriptor")
        self.joint_vectors = joint_vectors
        self.head_links: dict[str, list[tuple[str, float]]] = {}
        for family, links in DESCRIPTOR_LINKS.items():
            for descriptor_id, weight in links.items():
                self.head_links.setdefault(descriptor_id, []).append((family, weight))
        self.borrowed = self._borrowed_links(index) if index is not None and self.tags else {}

    def with_calibration(self, calibration: Calibration) -> DescriptorScorer:
        """The same scorer (links, priors, joint vectors) with another calibration."""
        other = copy.copy(self)
        other.calibration = calibration
        return other

    def _borrowed_links(self, index: TextIndex) -> dict[str, list[tuple[int, float]]]:
        if index.tags != self.tags:
            raise ParameterError("the text index was built for another tag list")
        sims = index.similarities()
        links: dict[str, list[tuple[int, float]]] = {}
        for row, d in enumerate(self.bank.descriptors):
            if d.features or any(link.key in self.tag_index for link in d.tags):
                continue
            order = np.argsort(-sims[row])[:TOP_TAGS]
            chosen = [
                (int(t), float(sims[row, t])) for t in order if sims[row, t] >= MIN_SIMILARITY
            ]
            if chosen:
                links[d.id] = chosen
        return links

    def score(
        self,
        *,
        tag_probabilities: np.ndarray | None = None,
        features: dict[str, float | None] | None = None,
        audio_embedding: np.ndarray | None = None,
        head_probabilities: Mapping[str, float] | None = None,
        descriptors: Sequence[Descriptor] | None = None,
    ) -> list[DescriptorScore]:
        """Confidence and evidence for each descriptor that has any evidence.

        Args:
            tag_probabilities: Mean tag probabilities over windows, shape (len(tags),).
            features: Audio feature values by name (None for unavailable).
            audio_embedding: The recording's unit embedding (joint encoders only).
            head_probabilities: The instrument head's class probabilities, or None.
            descriptors: Restrict to these; default, the whole bank.

        Returns:
            Scores in bank order; descriptors without evidence are left out.
        """
        if tag_probabilities is not None:
            tag_probabilities = np.asarray(tag_probabilities, dtype=np.float64)
            if tag_probabilities.shape != (len(self.tags),):
                raise ParameterError(
                    f"tag_probabilities must have shape ({len(self.tags)},), "
                    f"got {tag_probabilities.shape}"
                )
        tag_scores = (
            None
            if tag_probabilities is None
            else logit(tag_probabilities) - self.calibration.alpha * self.prior_logits
        )
        joint = self._joint_scores(audio_embedding)
        features = features or {}
        chosen = list(descriptors) if descriptors is not None else self.bank.descriptors
        out = []
        for d in chosen:
            evidence: list[Evidence] = []
            kinds: dict[str, float] = {}
            head = self._head(d, head_probabilities)
            if head:
                evidence += head
                kinds["head"] = max(e.score for e in head)
            if tag_probabilities is not None and tag_scores is not None:
                direct = self._direct(d, tag_probabilities)
                if direct:
                    evidence += direct
                    kinds["tag"] = max(e.score for e in direct)
                elif not head and d.id in self.borrowed:
                    borrowed = self._borrowed(d, tag_probabilities, tag_scores)
                    evidence += borrowed
                    weights = np.exp(np.array([e.weight for e in borrowed]) / TEMPERATURE)
                    weights /= weights.sum()
                    kinds["text"] = float(
                        sum(w * e.score for w, e in zip(weights, borrowed, strict=True))
                    )
            rules = [
                Evidence(
                    kind="feature",
                    name=r.feature,
                    value=float(features[r.feature]),
                    score=r.logit(float(features[r.feature])),
                )
                for r in d.features
                if features.get(r.feature) is not None
            ]
            if rules:
                evidence += rules
                kinds["feature"] = min(e.score for e in rules)
            if joint is not None and d.id in joint:
                cosine, z = joint[d.id]
                evidence.append(Evidence(kind="joint", name="audio-text", value=cosine, score=z))
                kinds["joint"] = z
            if not kinds:
                continue
            out.append(
                DescriptorScore(
                    id=d.id,
                    label=d.label.en,
                    label_zh=d.label.zh,
                    category=d.category,
                    confidence=round(self.combine(kinds), 6),
                    evidence=evidence,
                )
            )
        return out

    def combine(self, kinds: dict[str, float]) -> float:
        """Calibrate each kind's score and average the logits with the kind weights."""
        cal = self.calibration
        total = sum(cal.weights[k] for k in kinds)
        mixed = sum(cal.weights[k] * float(logit(cal.confidence(k, s))) for k, s in kinds.items())
        return float(sigmoid(mixed / total))

    def _direct(self, d: Descriptor, p: np.ndarray) -> list[Evidence]:
        out = []
        for link in d.tags:
            i = self.tag_index.get(link.key)
            if i is None:
                continue
            score = float(logit(link.weight * p[i]) - self.calibration.alpha * self.prior_logits[i])
            out.append(
                Evidence(
                    kind="tag", name=link.key, value=float(p[i]), weight=link.weight, score=score
                )
            )
        return out

    def _head(self, d: Descriptor, p: Mapping[str, float] | None) -> list[Evidence]:
        if p is None:
            return []
        return [
            Evidence(
                kind="head",
                name=f"{HEAD_EVIDENCE}{family}",
                value=float(p[family]),
                weight=weight,
                score=float(logit(weight * p[family])),
            )
            for family, weight in self.head_links.get(d.id, [])
            if family in p
        ]

    def _borrowed(self, d: Descriptor, p: np.ndarray, scores: np.ndarray) -> list[Evidence]:
        return [
            Evidence(
                kind="text",
                name=self.tags[t],
                value=float(p[t]),
                weight=round(sim, 4),
                score=float(scores[t]),
            )
            for t, sim in self.borrowed[d.id]
        ]

    def _joint_scores(self, embedding: np.ndarray | None) -> dict[str, tuple[float, float]] | None:
        if self.joint_vectors is None or embedding is None:
            return None
        cosines = self.joint_vectors @ np.asarray(embedding, dtype=np.float32)
        out: dict[str, tuple[float, float]] = {}
        categories = np.array([d.category for d in self.bank.descriptors])
        for category in set(categories):
            rows = np.flatnonzero(categories == category)
            values = cosines[rows]
            spread = float(values.std()) or 1.0
            for row, value in zip(rows, values, strict=True):
                z = (float(value) - float(values.mean())) / spread
                out[self.bank.descriptors[row].id] = (float(value), z)
        return out


def rank_categories(
    scores: Sequence[DescriptorScore], *, top: int = 5, distinct: bool = True
) -> dict[str, list[DescriptorScore]]:
    """The `top` most confident descriptors of each category, best first.

    With `distinct`, a descriptor whose strongest tag evidence is the same tagger output as
    that of a better-ranked descriptor of its category is left out: 'string quartet' resting
    on the same 'violin' output as 'violin' says nothing new, and would hide the next
    descriptor that does.
    """
    by_category: dict[str, list[DescriptorScore]] = {}
    for s in sorted(scores, key=lambda s: -s.confidence):
        items = by_category.setdefault(s.category, [])
        if len(items) >= top:
            continue
        primary = primary_tag(s)
        if distinct and primary is not None and any(primary_tag(o) == primary for o in items):
            continue
        items.append(s)
    return by_category


def primary_tag(score: DescriptorScore) -> str | None:
    """The tagger or head output behind a descriptor's strongest tag evidence, if any."""
    tagged = [e for e in score.evidence if e.kind in ("tag", "text", "head")]
    return max(tagged, key=lambda e: e.score).name if tagged else None


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
