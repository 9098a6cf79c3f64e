"""Catalogue ingest: walk folders, decode, extract features in batches, write atomically."""

from __future__ import annotations

from polymuse.ingest.decode import IngestItem, Window
from polymuse.ingest.extractors import (
    DEFAULT_EXTRACTORS,
    EXTRACTORS,
    Extractor,
    Fact,
    build_extractor,
)
from polymuse.ingest.pipeline import (
    FileOutcome,
    IngestOptions,
    IngestSummary,
    ProgressEvent,
    run_ingest,
)

__all__ = [
    "DEFAULT_EXTRACTORS",
    "EXTRACTORS",
    "Extractor",
    "Fact",
    "FileOutcome",
    "IngestItem",
    "IngestOptions",
    "IngestSummary",
    "ProgressEvent",
    "Window",
    "build_extractor",
    "run_ingest",
]
