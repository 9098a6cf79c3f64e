"""`features`: tempo, beats, downbeats, key, chords, structure and loudness of the mix."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langgraph.runtime import Runtime

from polymuse.model_cards import MODEL_CARDS
from polymuse.report import ModelInfo, MusicFeatures
from polymuse.runtime import Context
from polymuse.state import AnalysisState
from polymuse.tools import audio, loudness, rhythm, structure, tonality

log = logging.getLogger(__name__)

LOUDNESS_MODEL = MODEL_CARDS["bs1770-loudness"]


def features(state: AnalysisState, runtime: Runtime[Context]) -> dict:
    """Run each feature extractor; one that fails is recorded and the others go on."""
    path = state["source"].path
    sr = rhythm.SAMPLE_RATE
    y = runtime.context.audio.load(path, sample_rate=sr, mono=True)
    result = MusicFeatures()
    errors: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], Any], model: ModelInfo) -> Any:
        try:
            value = fn()
        except Exception as exc:  # one extractor's failure must not lose the others
            log.debug("feature %s failed", name, exc_info=True)
            errors[name] = f"{type(exc).__name__}: {exc}"
            return None
        result.models.append(model)
        return value

    def rhythm_then_structure() -> None:
        result.rhythm = attempt("rhythm", lambda: rhythm.track_rhythm(y, sr=sr), rhythm.MODEL)
        beats = result.rhythm.beats if result.rhythm else None
        result.structure = attempt(
            "structure", lambda: structure.segment_structure(y, sr=sr, beats=beats), structure.MODEL
        )

    def tonal_and_loudness() -> None:
        result.key = attempt("key", lambda: tonality.estimate_key(y, sr=sr), tonality.KEY_MODEL)
        if result.key:
            result.models.append(tonality.KEY_PROFILE_MODEL)
        result.chords = attempt(
            "chords", lambda: tonality.recognize_chords(y, sr=sr), tonality.CHORD_MODEL
        )
        source = runtime.context.audio.probe(path)
        result.loudness = attempt(
            "loudness",
            lambda: loudness.measure_loudness(audio.stream(source), sr=source.sample_rate),
            LOUDNESS_MODEL,
        )

    # Beat decoding holds the GIL most of its time; the tonal models and loudness mostly don't,
    # so two threads keep both cores busy.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(rhythm_then_structure), pool.submit(tonal_and_loudness)]:
            future.result()
    result.errors = errors
    return {"features": result}
