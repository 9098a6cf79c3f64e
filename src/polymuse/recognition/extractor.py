"""`LandmarkExtractor`: the ingest extractor that stores recognition fingerprints.

For each file: one `fingerprint` fact with the reference hashes as postings (hash, anchor
frame) and the packed reference peaks in its payload (`payload.payload`). Register it by
name in `ingest.extractors.EXTRACTORS` or give `catalog add -x
polymuse.recognition.extractor:LandmarkExtractor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from polymuse.ingest.extractors import Fact
from polymuse.recognition.payload import NAME, payload
from polymuse.tools import fingerprint

if TYPE_CHECKING:
    from polymuse.ingest.decode import IngestItem


class LandmarkExtractor:
    """Reference triplet hashes and peaks of each file (see `polymuse.tools.fingerprint`)."""

    name = NAME
    version = fingerprint.VERSION
    feature_set = fingerprint.FEATURE_SET
    sample_rate = fingerprint.ANALYSIS_RATE

    def extract_batch(self, items: Sequence[IngestItem]) -> list[list[Fact]]:
        rate = fingerprint.ANALYSIS_RATE
        return [[fact_of(fingerprint.reference(item.audio_at(rate), rate))] for item in items]


def fact_of(ref: fingerprint.ReferencePrint) -> Fact:
    """The `fingerprint` fact of one reference print."""
    return Fact(
        "fingerprint",
        None,
        value=f"{len(ref.hashes)} hashes",
        payload=payload(ref),
        hashes=ref.hashes,
        offsets=ref.offsets,
    )
