"""`refingerprint`: bring a catalogue's fingerprints to the current fingerprint version.

After a fingerprint change, stored files' old facts never match again. `catalog add` with the
landmark extractor replaces them for the files it is given; this re-reads every such file from
its stored path and replaces its fingerprint fact and postings, one transaction per file (a
crash leaves whole files only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from polymuse.errors import PolymuseError
from polymuse.recognition.extractor import fact_of
from polymuse.recognition.payload import NAME
from polymuse.store import Store, catalog
from polymuse.tools import audio, fingerprint

_STALE = (
    "SELECT a.object_id, a.file_path FROM audio_object a WHERE a.object_type = 'asset' "
    "AND EXISTS (SELECT 1 FROM feature_fact f WHERE f.object_id = a.object_id "
    "AND f.model_name = %(model)s) "
    "AND NOT EXISTS (SELECT 1 FROM feature_fact f WHERE f.object_id = a.object_id "
    "AND f.model_name = %(model)s AND f.model_version = %(version)s "
    "AND f.feature_set_name = %(fset)s) ORDER BY a.object_id"
)
_IDENTITY = {"model": NAME, "version": fingerprint.VERSION, "fset": fingerprint.FEATURE_SET}


@dataclass
class RefreshSummary:
    """Files whose fingerprints were replaced, and those that could not be read."""

    replaced: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def stale_assets(store: Store) -> list[tuple[int, str]]:
    """(asset id, path) of files fingerprinted by another version of the landmark extractor."""
    with store.connection("finding stale fingerprints") as conn:
        return [(int(a), str(p)) for a, p in conn.execute(_STALE, _IDENTITY).fetchall()]


def stale_note(store: Store) -> str | None:
    """One line for a catalogue holding files fingerprinted by another version (None if it
    holds none): they cannot be recognised until they are refingerprinted."""
    stale = stale_assets(store)
    if not stale:
        return None
    return (
        f"{len(stale)} catalogue file(s) carry fingerprints of another version and cannot be "
        "recognised until `polymuse catalog refingerprint` replaces them"
    )


def refingerprint(
    store: Store, *, on_progress: Callable[[int, int], None] | None = None
) -> RefreshSummary:
    """Replace stale fingerprint facts and postings with the current version's."""
    stale = stale_assets(store)
    summary = RefreshSummary()
    rate = fingerprint.ANALYSIS_RATE
    for done, (asset_id, path) in enumerate(stale, start=1):
        try:
            y = audio.load(audio.probe(path), sample_rate=rate, mono=True)
        except PolymuseError as exc:
            summary.failed.append((path, str(exc)))
        else:
            fact = fact_of(fingerprint.reference(y, rate))
            record = catalog.FactRecord(
                "fingerprint",
                NAME,
                fingerprint.VERSION,
                fingerprint.FEATURE_SET,
                value=fact.value,
                payload=fact.payload,
                hashes=np.asarray(fact.hashes, dtype=np.uint32).view(np.int32),
                offsets=np.asarray(fact.offsets, dtype=np.int32),
            )
            with store.transaction(f"replacing the fingerprint of {path}") as conn:
                catalog.replace_facts(conn, asset_id, [record])
            summary.replaced.append(path)
        if on_progress:
            on_progress(done, len(stale))
    return summary
