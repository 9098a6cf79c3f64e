"""`polymuse eval tags`: instrument descriptors and text search on a labelled rendered set.

The set: music21 scores rendered through General MIDI and FluidSynth (`tools.synth`) with a
known instrument family for every part: piano, strings, guitar, organ, flute, choir, brass,
harpsichord; each piece with or without the generated drum part. Sources are Bach chorales
(four voices) and, for the solo-capable families, fiddle tunes from Ryan's Mammoth
Collection (one voice). Which pieces, sounds, tempi and drums: seeded.

Metrics, on the held-out split (pieces whose music21 source hashes to split "test"):

- `instrument_top3`: the family's descriptor (`FAMILIES[...].hits`) is among the three
  instrument descriptors the review ranks first (`scoring.rank_categories`). Goal >= 0.80.
- `search_mrr`: mean reciprocal rank of the first relevant piece for each query in
  `QUERIES` (English and Chinese), ranked by `tools.semantics.search`. Goal >= 0.70.
- `brier`: Brier score of the instrument descriptors' confidences against presence.

The instrument head: the packaged one, or with `--train-head` one trained first by
`head_training` (`--write-head` stores it as the packaged head).

Calibration: per-kind Platt scaling, the prior strength alpha and the instrument head's
weight (see `scoring`) are fitted on the other split ("fit") only, over every (piece,
instrument descriptor) pair labelled by presence; `--write-calibration` stores the result as
the packaged calibration. Nothing is tuned on the test split; the bank's links and rules were
written from the tag vocabularies, not from these renders, and the instrument head
(`instrument_head`) was trained on renders with other soundfonts and other scores
(`head_training`), so on these FluidR3 renders it is tested on sounds it never heard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from polymuse.errors import ParameterError
from polymuse.semantic_report import DescriptorScore
from polymuse.tools.semantics.bank import Descriptor
from polymuse.tools.semantics.instrument_head import InstrumentHead
from polymuse.tools.semantics.scoring import (
    TEMPERATURE,
    Calibration,
    DescriptorScorer,
    rank_categories,
)

log = logging.getLogger(__name__)

CACHE_VERSION = 1
OBSERVED_VERSION = 2
MAX_SECONDS = 30.0
GOALS = {"instrument_top3": 0.80, "search_mrr": 0.70}
ALPHAS = (0.0, 0.25, 0.5)
HEAD_WEIGHTS = (1.0, 2.0, 4.0)
FITTED_KINDS = ("tag", "text", "head")
"""Kinds whose Platt scaling is fitted here. Feature rules keep their hand-set logistic
(their instrument uses, drums and percussion, say little about tempo or brightness)."""


@dataclass(frozen=True)
class Family:
    """An instrument family: General-MIDI sound sets and the descriptors that name it."""

    sounds: dict[str, tuple[int, ...]]
    """Sound name -> programs (one for all parts, or top, inner..., bass)."""
    hits: frozenset[str]
    tunes: bool
    """Whether one-voice fiddle tunes are rendered with it too (else chorales only)."""


FAMILIES: dict[str, Family] = {
    "piano": Family(
        {"grand piano": (0,), "bright piano": (1,)},
        frozenset({"instruments.piano", "instruments.solo_piano"}),
        tunes=True,
    ),
    "strings": Family(
        {"string ensemble": (48,), "slow strings": (49,), "string quartet": (40, 41, 42)},
        frozenset(
            {
                "instruments.strings",
                "instruments.string_quartet",
                "instruments.violin",
                "instruments.viola",
                "instruments.cello",
                "instruments.double_bass",
            }
        ),
        tunes=False,
    ),
    "guitar": Family(
        {"nylon guitar": (24,), "steel guitar": (25,)},
        frozenset(
            {"instruments.guitar", "instruments.acoustic_guitar", "instruments.electric_guitar"}
        ),
        tunes=True,
    ),
    "organ": Family(
        {"church organ": (19,), "drawbar organ": (16,), "reed organ": (20,)},
        frozenset({"instruments.organ"}),
        tunes=False,
    ),
    "flute": Family(
        {"flute": (73,)},
        frozenset({"instruments.flute", "instruments.recorder", "instruments.woodwinds"}),
        tunes=True,
    ),
    "choir": Family(
        {"choir aahs": (52,), "voice oohs": (53,)},
        frozenset({"instruments.choir", "instruments.vocals"}),
        tunes=False,
    ),
    "brass": Family(
        {"brass section": (61,), "brass quartet": (56, 56, 57, 58), "french horns": (60,)},
        frozenset(
            {
                "instruments.brass",
                "instruments.trumpet",
                "instruments.trombone",
                "instruments.french_horn",
                "instruments.tuba",
            }
        ),
        tunes=False,
    ),
    "harpsichord": Family(
        {"harpsichord": (6,)},
        frozenset({"instruments.harpsichord"}),
        tunes=True,
    ),
}

QUERIES: dict[str, Callable[[LabelledPiece], bool]] = {}
"""Query -> which pieces are relevant (filled below, after `LabelledPiece`)."""


class LabelledPiece(BaseModel):
    piece_id: str
    source: str
    family: str
    sound: str
    programs: list[int]
    drums: bool
    bpm: float
    split: str = Field(description="'fit' or 'test', from a hash of the music21 source")
    audio: Path


QUERIES.update(
    {
        "solo piano": lambda p: p.family == "piano" and not p.drums,
        "string quartet": lambda p: p.family == "strings",
        "choir": lambda p: p.family == "choir",
        "church organ": lambda p: p.family == "organ",
        "brass section": lambda p: p.family == "brass",
        "flute": lambda p: p.family == "flute",
        "acoustic guitar": lambda p: p.family == "guitar",
        "harpsichord": lambda p: p.family == "harpsichord",
        "钢琴": lambda p: p.family == "piano",
        "合唱团": lambda p: p.family == "choir",
        "弦乐": lambda p: p.family == "strings",
        "drums": lambda p: p.drums,
    }
)


class PieceResult(BaseModel):
    piece_id: str
    family: str
    drums: bool
    split: str
    top3: list[str]
    hit: bool
    family_confidence: float
    seconds: float


class QueryResult(BaseModel):
    query: str
    split: str
    relevant: int
    first_relevant_rank: int | None
    reciprocal_rank: float
    top: list[str]


class TagEvaluation(BaseModel):
    calibration: dict
    pieces: list[PieceResult]
    queries: list[QueryResult]
    brier: float
    seconds: float

    def summary(self) -> dict[str, float]:
        test = [p for p in self.pieces if p.split == "test"]
        summary = {
            "pieces_test": len(test),
            "pieces_fit": len(self.pieces) - len(test),
            "instrument_top3": _mean([p.hit for p in test]),
            "instrument_top3_no_drums": _mean([p.hit for p in test if not p.drums]),
            "instrument_top3_drums": _mean([p.hit for p in test if p.drums]),
            "search_mrr": _mrr(self.queries, "test"),
            "instrument_top3_fit": _mean([p.hit for p in self.pieces if p.split == "fit"]),
            "search_mrr_fit": _mrr(self.queries, "fit"),
            "brier": self.brier,
            "seconds_per_piece": _mean([p.seconds for p in self.pieces]),
        }
        for family in FAMILIES:
            summary[f"top3_{family}"] = _mean([p.hit for p in test if p.family == family])
        return summary


def labelled_set(
    per_family: int,
    out_dir: Path | str,
    seed: int = 0,
    *,
    max_seconds: float = MAX_SECONDS,
    sample_rate: int = 22050,
    progress: Callable[[str], None] | None = None,
) -> list[LabelledPiece]:
    """Render `per_family` pieces for each family, half of them with drums (seeded).

    Renders are cached in `out_dir` by recipe, so a second call reads them back.

    Raises:
        ParameterError: `per_family` out of range, or too few scores qualified.
        ModelUnavailableError: fluidsynth or a soundfont is missing.
    """
    from music21 import corpus as m21corpus

    from polymuse.tools import corpus, synth

    if not 1 <= per_family <= 200:
        raise ParameterError(f"per_family={per_family} is outside 1..200")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    font = str(synth.find_soundfont())
    rng = random.Random(seed)
    chorales = list(dict.fromkeys(m21corpus.chorales.Iterator(returnType="filename")))
    tunes = sorted(
        f"ryansMammoth/{p.name}"
        for p in m21corpus.getComposer("ryansMammoth")
        if corpus.abc_meter(p) in corpus.SIMPLE_METERS
    )
    rng.shuffle(chorales)
    rng.shuffle(tunes)
    pools = {"chorale": iter(chorales), "tune": iter(tunes)}
    pieces: list[LabelledPiece] = []
    for family_name, family in FAMILIES.items():
        made = 0
        attempts = 0
        while made < per_family:
            attempts += 1
            if attempts > per_family * 6:
                raise ParameterError(f"only {made} {family_name} pieces of {per_family} qualify")
            kind = "tune" if family.tunes and rng.random() < 0.4 else "chorale"
            source = next(pools[kind], None)
            if source is None:
                raise ParameterError(f"ran out of {kind}s for the {family_name} pieces")
            sound = rng.choice(sorted(family.sounds))
            recipe = {
                "version": CACHE_VERSION,
                "source": source,
                "family": family_name,
                "sound": sound,
                "drums": made % 2 == 1,
                "bpm": round(
                    rng.uniform(70, 110) if kind == "chorale" else rng.uniform(80, 140), 1
                ),
                "max_seconds": max_seconds,
                "sample_rate": sample_rate,
                "soundfont": font,
            }
            piece = _render(recipe, family.sounds[sound], out_dir, font, synth, corpus)
            if piece is None:
                continue
            pieces.append(piece)
            made += 1
            if progress:
                progress(f"rendered {len(pieces)} pieces ({family_name})")
    return pieces


def _render(recipe: dict, sounds: tuple[int, ...], out_dir: Path, font: str, synth, corpus):
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    piece_id = f"{Path(recipe['source']).stem.replace('.', '_')}-{recipe['family']}-{digest}"
    record, wav, mid = (out_dir / f"{piece_id}{ext}" for ext in (".json", ".wav", ".mid"))
    if record.is_file():
        data = json.loads(record.read_text())
        if data.get("skipped"):
            return None
        if wav.is_file():
            return LabelledPiece.model_validate(data)
    from music21 import corpus as m21corpus

    try:
        score = m21corpus.parse(recipe["source"])
        if recipe["source"].startswith("ryansMammoth"):
            score = corpus.load_tune(recipe["source"])
        n = len(score.parts)
        if len(sounds) == 1:
            programs = [sounds[0]] * n
        else:
            top, *inner, bass = sounds
            middle = (inner or [top]) * n
            programs = ([top, *middle[: n - 2], bass] if n > 1 else [top])[:n]
        truth = synth.write_midi(
            score,
            mid,
            bpm=recipe["bpm"],
            programs=programs,
            drums=recipe["drums"],
            max_seconds=recipe["max_seconds"],
        )
        if truth.end - truth.start < 10:
            raise ParameterError("shorter than 10 s")
        synth.render_midi(mid, wav, sample_rate=recipe["sample_rate"], soundfont=font)
    except Exception as exc:  # music21 raises many types for odd scores; skip the piece
        record.write_text(json.dumps({"skipped": f"{type(exc).__name__}: {exc}"}))
        return None
    source_hash = int(hashlib.sha1(recipe["source"].encode()).hexdigest(), 16)
    piece = LabelledPiece(
        piece_id=piece_id,
        source=recipe["source"],
        family=recipe["family"],
        sound=recipe["sound"],
        programs=programs,
        drums=recipe["drums"],
        bpm=recipe["bpm"],
        split="fit" if source_hash % 2 == 0 else "test",
        audio=wav,
    )
    record.write_text(piece.model_dump_json())
    return piece


@dataclass
class _Observed:
    """What the encoder, feature extractor and head said about one piece (cached on disk)."""

    piece: LabelledPiece
    probabilities: np.ndarray
    features: dict[str, float | None]
    seconds: float
    head_features: np.ndarray
    """The instrument head's per-window input (empty without a head for this tagger)."""
    head: dict[str, float] | None = None

    def scores(
        self, scorer: DescriptorScorer, descriptors: Sequence[Descriptor] | None = None
    ) -> list[DescriptorScore]:
        """The piece's descriptor scores under `scorer` (all descriptors by default)."""
        return scorer.score(
            tag_probabilities=self.probabilities,
            features=self.features,
            head_probabilities=self.head,
            descriptors=descriptors,
        )


def observe(
    pieces: Sequence[LabelledPiece],
    reviewer,
    cache_dir: Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[_Observed]:
    """Pooled tag probabilities, texture features and head input of each piece (cached)."""
    from polymuse.tools import audio
    from polymuse.tools.semantics.features import texture_features
    from polymuse.tools.semantics.instrument_head import head_features, window_segments
    from polymuse.tools.semantics.reviewer import FEATURE_RATE

    cache_dir.mkdir(parents=True, exist_ok=True)
    tagger = reviewer.tagger
    out = []
    for i, piece in enumerate(pieces):
        name = f"{piece.piece_id}-{tagger.name}-w{reviewer.max_windows}-v{OBSERVED_VERSION}"
        path = cache_dir / f"{name}.npz"
        if path.is_file():
            with np.load(path) as data:
                cached = _Observed(
                    piece,
                    data["p"],
                    json.loads(str(data["features"])),
                    float(data["seconds"]),
                    data["head_features"],
                )
            if reviewer.head is None or cached.head_features.size:
                out.append(cached)
                continue
        started = time.perf_counter()
        probe = audio.probe(str(piece.audio))
        y = audio.load(probe, sample_rate=tagger.sample_rate, mono=True)
        encoding = tagger.encode(
            y, sample_rate=tagger.sample_rate, max_windows=reviewer.max_windows
        )
        y16 = audio.load(probe, sample_rate=FEATURE_RATE, mono=True)
        features = texture_features(y16, sample_rate=FEATURE_RATE)
        inputs = np.zeros((0, 0), dtype=np.float32)
        if reviewer.head is not None:
            segments = window_segments(
                y16, encoding.window_times, encoding.window_seconds, sample_rate=FEATURE_RATE
            )
            inputs = head_features(encoding.window_embeddings, segments)
        seconds = time.perf_counter() - started
        pooled = encoding.tag_probabilities.mean(axis=0)
        np.savez(
            path,
            p=pooled,
            features=np.array(json.dumps(features)),
            seconds=np.array(seconds),
            head_features=inputs,
        )
        out.append(_Observed(piece, pooled, features, seconds, inputs))
        if progress:
            progress(f"tagged {i + 1}/{len(pieces)}")
    return out


def fit_calibration(observed: Sequence[_Observed], scorer: DescriptorScorer) -> Calibration:
    """Fit alpha, per-kind Platt scaling and the head's weight on labelled (piece, instrument
    descriptor) pairs.

    For each alpha in `ALPHAS`, each kind's raw scores are fitted to presence by logistic
    regression; the alpha with the lowest log-loss over all pairs wins. Then the head's
    weight in the combination is the one of `HEAD_WEIGHTS` with the lowest log-loss of the
    combined confidences.
    """
    from sklearn.linear_model import LogisticRegression

    instruments = [d for d in scorer.bank.descriptors if d.category == "instruments"]
    best: tuple[float, Calibration] | None = None
    for alpha in ALPHAS:
        trial = scorer.with_calibration(Calibration(name="trial", alpha=alpha))
        by_kind: dict[str, tuple[list[float], list[int]]] = {}
        for obs in observed:
            truth = _present(obs.piece)
            for s in obs.scores(trial, instruments):
                for kind in FITTED_KINDS:
                    raw = _kind_score(s, kind)
                    if raw is not None:
                        xs, ys = by_kind.setdefault(kind, ([], []))
                        xs.append(raw)
                        ys.append(int(s.id in truth))
        platt = dict(Calibration().platt)
        loss = 0.0
        for kind, (xs, ys) in by_kind.items():
            if len(set(ys)) < 2:
                # No descriptor of this kind is present (or absent) in the set: it says
                # nothing about the kind, which keeps its default mapping.
                continue
            x = np.array(xs)[:, None]
            model = LogisticRegression(C=1.0).fit(x, ys)
            a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
            if a < 0:
                # Calibration must not invert the evidence: without a positive slope the
                # kind carries no signal here, so it maps to its base rate.
                rate = float(np.mean(ys))
                a, b = 0.0, float(np.log(rate / (1 - rate)))
            platt[kind] = (round(a, 4), round(b, 4))
            p = np.clip(1 / (1 + np.exp(-(a * x[:, 0] + b))), 1e-6, 1 - 1e-6)
            y = np.array(ys)
            loss -= float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
        calibration = Calibration(
            name=f"platt per kind, alpha {alpha}, fitted on the rendered 'fit' split "
            f"({len(observed)} pieces)",
            alpha=alpha,
            platt=platt,
        )
        if best is None or loss < best[0]:
            best = (loss, calibration)
    assert best is not None
    calibration = best[1]
    if not any(obs.head for obs in observed):
        return calibration
    losses = {}
    for weight in HEAD_WEIGHTS:
        trial = scorer.with_calibration(
            replace(calibration, weights={**calibration.weights, "head": weight})
        )
        losses[weight] = -sum(
            np.log(
                np.clip(
                    s.confidence if s.id in _present(obs.piece) else 1 - s.confidence, 1e-6, 1.0
                )
            )
            for obs in observed
            for s in obs.scores(trial, instruments)
        )
    weight = min(HEAD_WEIGHTS, key=lambda w: losses[w])
    return replace(
        calibration,
        name=f"{calibration.name}, head weight {weight:g}",
        weights={**calibration.weights, "head": weight},
    )


def evaluate_tags(
    *,
    per_family: int = 12,
    cache_dir: Path,
    seed: int = 0,
    settings: object = None,
    write_calibration: Path | None = None,
    head: InstrumentHead | None = None,
    progress: Callable[[str], None] | None = None,
) -> TagEvaluation:
    """Render, tag, fit the calibration on the fit split, and measure on the test split.

    `head` replaces the packaged instrument head (e.g. one just trained).
    """
    from polymuse.tools.semantics.reviewer import SemanticReviewer
    from polymuse.tools.semantics.search import SearchItem, plan_query, rank_text

    started = time.perf_counter()
    pieces = labelled_set(per_family, cache_dir / "tags", seed, progress=progress)
    reviewer = SemanticReviewer.build(
        audio_spec=str(getattr(settings, "audio_encoder", None) or "musicnn"),
        text_spec=str(getattr(settings, "text_encoder", None) or "minilm"),
        settings=settings,
        cache_dir=cache_dir / "semantic",
        calibration=Calibration(),
    )
    if head is not None:
        reviewer.head = head
    observed = observe(pieces, reviewer, cache_dir / "tags-observed", progress=progress)
    for obs in observed:
        if reviewer.head is not None and obs.head_features.size:
            p = reviewer.head.window_probabilities(obs.head_features).mean(axis=0)
            obs.head = {c: float(v) for c, v in zip(reviewer.head.classes, p, strict=True)}
    fit = [o for o in observed if o.piece.split == "fit"]
    calibration = fit_calibration(fit, reviewer.scorer)
    scorer = reviewer.scorer.with_calibration(calibration)
    results, sq_errors = [], []
    items: dict[str, list[SearchItem]] = {"fit": [], "test": []}
    for obs in observed:
        scores = obs.scores(scorer)
        ranked = rank_categories(scores, top=3).get("instruments", [])
        hits = FAMILIES[obs.piece.family].hits
        by_id = {s.id: s.confidence for s in scores}
        results.append(
            PieceResult(
                piece_id=obs.piece.piece_id,
                family=obs.piece.family,
                drums=obs.piece.drums,
                split=obs.piece.split,
                top3=[s.id for s in ranked],
                hit=any(s.id in hits for s in ranked),
                family_confidence=round(max((by_id.get(h, 0.0) for h in hits), default=0.0), 4),
                seconds=round(obs.seconds, 3),
            )
        )
        items[obs.piece.split].append(
            SearchItem(key=obs.piece.piece_id, title=obs.piece.piece_id, scores=by_id)
        )
        if obs.piece.split == "test":
            truth = _present(obs.piece)
            sq_errors += [
                (s.confidence - (s.id in truth)) ** 2 for s in scores if s.category == "instruments"
            ]
    index = reviewer.index
    by_piece = {o.piece.piece_id: o.piece for o in observed}
    queries = []
    for query, relevant in QUERIES.items():
        plan = plan_query(
            query,
            reviewer.bank,
            encode=reviewer.text_encode,
            descriptor_vectors=None if index is None else index.descriptor_vectors,
        )
        for split, pool in items.items():
            ranked_hits = rank_text(plan, pool, limit=len(pool))
            ranks = [i for i, h in enumerate(ranked_hits, 1) if relevant(by_piece[h.key])]
            first = ranks[0] if ranks else None
            queries.append(
                QueryResult(
                    query=query,
                    split=split,
                    relevant=sum(relevant(by_piece[i.key]) for i in pool),
                    first_relevant_rank=first,
                    reciprocal_rank=round(1 / first, 4) if first else 0.0,
                    top=[h.key for h in ranked_hits[:3]],
                )
            )
    if write_calibration is not None:
        summary_fit = {"pieces": len(fit), "pairs": "instrument descriptors x pieces"}
        write_calibration.write_text(calibration.to_json(fitted_on=summary_fit) + "\n")
    return TagEvaluation(
        calibration=json.loads(calibration.to_json()),
        pieces=results,
        queries=queries,
        brier=round(float(np.mean(sq_errors)) if sq_errors else 0.0, 4),
        seconds=round(time.perf_counter() - started, 1),
    )


def _present(piece: LabelledPiece) -> set[str]:
    """Descriptor ids that are true of a piece: its family's, and drums when it has them."""
    truth = set(FAMILIES[piece.family].hits)
    if piece.drums:
        truth |= {"instruments.drums", "instruments.percussion"}
    return truth


def _kind_score(score, kind: str) -> float | None:
    evidence = [e for e in score.evidence if e.kind == kind]
    if not evidence:
        return None
    items = [e.score for e in evidence]
    if kind in ("tag", "head"):
        return max(items)
    if kind == "feature":
        return min(items)
    weights = np.exp(np.array([e.weight for e in evidence]) / TEMPERATURE)
    return float(np.dot(weights / weights.sum(), items))


def _mrr(queries: Sequence[QueryResult], split: str) -> float:
    return _mean([q.reciprocal_rank for q in queries if q.split == split and q.relevant])


def _mean(values: Sequence) -> float:
    return round(float(np.mean(values)), 4) if len(values) else 0.0
