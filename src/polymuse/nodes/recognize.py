"""`recognize`: which catalogue song this is (exact lane, then the semantic lane), and whether a
copy is stored."""

from __future__ import annotations

from langgraph.runtime import Runtime

from polymuse.recognition import RecognitionSection, service
from polymuse.runtime import Context
from polymuse.state import AnalysisState
from polymuse.store import Store, open_store
from polymuse.tools import chromaprint, fingerprint


def recognize(state: AnalysisState, runtime: Runtime[Context]) -> dict:
    """Identify the file against the catalogue; Chromaprint it for duplicate detection.

    The exact lane answers, then the semantic lane gives its opinion when the catalogue holds
    window embeddings of the configured encoder (`service.second_opinion`). Uses the context's
    store when it has one (`Context.store`), else opens the configured catalogue for this run.
    A Chromaprint failure is recorded and the identification kept.
    """
    path = state["source"].path
    rate = fingerprint.ANALYSIS_RATE
    y = runtime.context.audio.load(path, sample_rate=rate, mono=True)
    shared: Store | None = getattr(runtime.context, "store", None)
    store = shared or open_store(runtime.context.settings, max_size=1)
    try:
        exact, starts = service.identify_file(service.recognizer_for(store), y, rate)
        answer = service.second_opinion(
            exact,
            service.semantic_lane(runtime.context.settings, store),
            lambda sr: runtime.context.audio.load(path, sample_rate=sr, mono=True),
            duration_s=len(y) / rate,
        )
        section = RecognitionSection(recognition=answer, excerpts=starts)
        try:
            section.chromaprint = service.chromaprint_info(store, y, rate)
        except chromaprint.ChromaprintError as exc:
            section.errors["chromaprint"] = str(exc)
    finally:
        if shared is None:
            store.close()
    return {"recognition": section}
