"""`recognize`: which catalogue song this is (exact lane, then the semantic lane), and whether a
copy is stored."""

from __future__ import annotations

from langgraph.runtime import Runtime

from polymuse.recognition import RecognitionSection, service
from polymuse.recognition.refresh import stale_note
from polymuse.runtime import Context
from polymuse.state import AnalysisState
from polymuse.store import Store, open_store
from polymuse.tools import chromaprint, fingerprint


def recognize(state: AnalysisState, runtime: Runtime[Context]) -> dict:
    """Identify the file against the catalogue; Chromaprint it for duplicate detection.

    The exact lane answers; when it does not recognise the mix and the separator wrote an
    instrumental stem, the stem is asked too and may confirm the mix's best candidate
    (`service.confirm_on_stem`). Then the semantic lane gives its opinion when the catalogue
    holds window embeddings of the configured encoder (`service.second_opinion`). Uses the context's
    store when it has one (`Context.store`), else opens the configured catalogue for this run.
    A Chromaprint failure is recorded and the identification kept, and so are catalogue files
    whose fingerprints another version made (they cannot match; `refresh.stale_note`).
    """
    path = state["source"].path
    rate = fingerprint.ANALYSIS_RATE
    y = runtime.context.audio.load(path, sample_rate=rate, mono=True)
    shared: Store | None = getattr(runtime.context, "store", None)
    store = shared or open_store(runtime.context.settings, max_size=1)
    try:
        recognizer = service.recognizer_for(store)
        exact, starts = service.identify_file(recognizer, y, rate)
        stems, decided_on = {}, "mix"
        instrumental = _stem(state, "instrumental")
        if exact.status != "match" and instrumental is not None:
            stem = runtime.context.audio.load(instrumental, sample_rate=rate, mono=True)
            stems["instrumental"] = service.confirm_on_stem(recognizer, exact, stem, rate)
            if stems["instrumental"].status == "match":
                exact, decided_on = stems["instrumental"], "instrumental"
        answer = service.second_opinion(
            exact,
            service.semantic_lane(runtime.context.settings, store),
            lambda sr: runtime.context.audio.load(path, sample_rate=sr, mono=True),
            duration_s=len(y) / rate,
        )
        section = RecognitionSection(
            recognition=answer, excerpts=starts, stems=stems, decided_on=decided_on
        )
        if note := stale_note(store):
            section.errors["fingerprints"] = note
        try:
            section.chromaprint = service.chromaprint_info(store, y, rate)
        except chromaprint.ChromaprintError as exc:
            section.errors["chromaprint"] = str(exc)
    finally:
        if shared is None:
            store.close()
    return {"recognition": section}


def _stem(state: AnalysisState, name: str) -> str | None:
    """The path of a stem the `separate` node wrote, if it ran and wrote it."""
    separation = state.get("separation")
    stems = separation.stems if separation is not None else []
    return next((s.path for s in stems if s.name == name), None)
