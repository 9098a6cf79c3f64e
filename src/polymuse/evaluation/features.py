"""`polymuse eval features`: key, tempo and beat accuracy on pieces rendered from music21.

Key: Bach chorales, truth = the notated key. Tempo, beats, downbeats, meter: fiddle tunes
over a generated General-MIDI drum part, truth = the score at the rendering tempo.
Metrics: MIREX weighted key score; tempo accuracy within 4 % (octave errors count as wrong);
beat and downbeat F-measure (mir_eval, 70 ms window, first 5 s trimmed as mir_eval does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import mir_eval
import numpy as np
from pydantic import BaseModel

from polymuse.tools import audio, corpus, rhythm, tonality

TEMPO_TOLERANCE = 0.04
METRICAL_LEVELS = (1 / 3, 1 / 2, 2 / 3, 1.0, 3 / 2, 2.0, 3.0)
GOALS = {"key_weighted": 0.80, "tempo_accuracy": 0.90, "beat_f": 0.85}


class KeyResult(BaseModel):
    piece_id: str
    truth: str
    estimate: str
    score: float


class RhythmResult(BaseModel):
    piece_id: str
    meter: str
    truth_bpm: float
    estimate_bpm: float | None
    tempo_ok: bool
    tempo_level_ok: bool = False  # right at some metrical level (x1/3, 1/2, 2/3, 3/2, 2, 3)
    beat_f: float
    downbeat_f: float
    meter_ok: bool


class FeatureEvaluation(BaseModel):
    keys: list[KeyResult]
    rhythms: list[RhythmResult]
    seconds: float

    def summary(self) -> dict[str, float]:
        r = self.rhythms
        compound = [x for x in r if x.meter in corpus.COMPOUND_METERS]
        return {
            "pieces": len(self.keys) + len(r),
            "key_weighted": _mean([k.score for k in self.keys]),
            "key_exact": _mean([k.truth == k.estimate for k in self.keys]),
            "tempo_accuracy": _mean([x.tempo_ok for x in r]),
            "tempo_accuracy_compound": _mean([x.tempo_ok for x in compound]),
            "tempo_accuracy_any_level": _mean([x.tempo_level_ok for x in r]),
            "beat_f": _mean([x.beat_f for x in r]),
            "downbeat_f": _mean([x.downbeat_f for x in r]),
            "meter_accuracy": _mean([x.meter_ok for x in r]),
        }


def _mean(values: list) -> float:
    return round(float(np.mean(values)), 4) if values else float("nan")


def _f_measure(truth: list[float], estimate: list[float]) -> float:
    ref = mir_eval.beat.trim_beats(np.asarray(truth))
    est = mir_eval.beat.trim_beats(np.asarray(estimate))
    return float(mir_eval.beat.f_measure(ref, est, f_measure_threshold=0.07))


def evaluate_features(
    *,
    key_pieces: int,
    rhythm_pieces: int,
    cache_dir: Path,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> FeatureEvaluation:
    """Render (or reuse) the two sets and score our extractors on them."""
    started = time.perf_counter()
    notify = progress or (lambda message: None)
    keys, rhythms = [], []
    for piece in corpus.key_set(key_pieces, cache_dir / "keys", seed=seed):
        notify(f"key {piece.piece_id}")
        y = audio.load(audio.probe(piece.audio), sample_rate=tonality.SAMPLE_RATE)
        estimate = tonality.estimate_key(y, sr=tonality.SAMPLE_RATE).label
        score = mir_eval.key.weighted_score(piece.truth.key, estimate)
        keys.append(
            KeyResult(
                piece_id=piece.piece_id, truth=piece.truth.key, estimate=estimate, score=score
            )
        )
    for piece in corpus.rhythm_set(rhythm_pieces, cache_dir / "rhythm", seed=seed):
        notify(f"rhythm {piece.piece_id}")
        truth = piece.truth
        y = audio.load(audio.probe(piece.audio), sample_rate=rhythm.SAMPLE_RATE)
        est = rhythm.track_rhythm(y, sr=rhythm.SAMPLE_RATE)
        ratio = (est.tempo_bpm or 0.0) / truth.bpm
        tempo_ok = abs(ratio - 1) <= TEMPO_TOLERANCE
        level_ok = any(abs(ratio / m - 1) <= TEMPO_TOLERANCE for m in METRICAL_LEVELS)
        rhythms.append(
            RhythmResult(
                piece_id=piece.piece_id,
                meter=truth.time_signature,
                truth_bpm=truth.bpm,
                estimate_bpm=est.tempo_bpm,
                tempo_ok=tempo_ok,
                tempo_level_ok=level_ok,
                beat_f=_f_measure(truth.beats, est.beats),
                downbeat_f=_f_measure(truth.downbeats, est.downbeats),
                meter_ok=est.beats_per_bar == truth.beats_per_bar,
            )
        )
    return FeatureEvaluation(
        keys=keys, rhythms=rhythms, seconds=round(time.perf_counter() - started, 1)
    )
