"""`review`: the semantic reviewer: descriptor confidences per category, for the mix and stems."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from langgraph.runtime import Runtime

from polymuse.runtime import Context
from polymuse.state import AnalysisState
from polymuse.tools.semantics.reviewer import Hints, SemanticReviewer

SKIPPED_STEMS = frozenset({"instrumental"})


def review(state: AnalysisState, runtime: Runtime[Context]) -> dict:
    """Score the descriptor bank on the mix (and on each stem when a separator ran)."""
    settings = runtime.context.settings
    reviewer = SemanticReviewer.from_settings(settings)
    source = state["source"]
    cache = runtime.context.audio

    def load(path: str | None, sample_rate: int) -> np.ndarray:
        return cache.load(path or source.path, sample_rate=sample_rate, mono=True)

    section = reviewer.review(
        load,
        content_hash=source.content_hash,
        hints=_hints(state.get("features")),
        stems=stem_paths(state.get("separation") or state.get("stems")),  # type: ignore[arg-type]
    )
    return {"semantic": section}


def _hints(features: object) -> Hints:
    """Tempo, key mode and loudness from the features node, when it ran first."""
    if features is None:
        return Hints()
    rhythm = getattr(features, "rhythm", None)
    key = getattr(features, "key", None)
    loudness = getattr(features, "loudness", None)
    return Hints(
        tempo_bpm=getattr(rhythm, "tempo_bpm", None),
        key_mode=getattr(key, "mode", None),
        loudness_lufs=getattr(loudness, "integrated_lufs", None),
    )


def stem_paths(stems: object) -> dict[str, str]:
    """Stem name -> audio file from whatever the separator put in the state.

    Accepts the `separate` node's `Separation` (its `stems`: objects with `name` and `path`),
    a mapping of names to paths (or to objects with a `path`), or an object whose `stems` or
    `paths` attribute is either. The derived `instrumental` stem (mix minus vocals) is left
    out: it says nothing the mix and the vocals do not. Anything else means no stems.
    """
    if stems is None:
        return {}
    for attribute in ("stems", "paths"):
        inner = getattr(stems, attribute, None)
        if isinstance(inner, Mapping | list | tuple):
            stems = inner
            break
    if isinstance(stems, list | tuple):
        stems = {getattr(s, "name", None): s for s in stems}
    if not isinstance(stems, Mapping):
        return {}
    out = {}
    for name, value in stems.items():
        path = getattr(value, "path", value)
        if isinstance(name, str) and name not in SKIPPED_STEMS and isinstance(path, str | Path):
            out[name] = str(path)
    return out
