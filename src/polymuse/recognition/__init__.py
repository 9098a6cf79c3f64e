"""Recognition: which catalogue song a clip comes from, where, and how sure we are.

`Recognizer` fingerprints a query and maps where it is quiet (`listening`), looks its probes up
in a `HashIndex` (in memory or the PostgreSQL postings), votes for an offset-consistent line per
asset (`matching`), verifies the best lines against stored peaks (found, hidden or absent), and
turns the evidence into a calibrated confidence (`calibration`). `SemanticLane` searches the
catalogue's window embeddings for a second opinion and near-duplicates; `fuse` says which
lane decides. Names are imported on first
use, so importing `polymuse.recognition.models` (as `polymuse.report` does) stays light and
cycle-free.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Calibration": "calibration",
    "default_calibration": "calibration",
    "HashIndex": "index",
    "MemoryIndex": "index",
    "Postings": "index",
    "SongRef": "index",
    "ChromaprintInfo": "models",
    "Recognition": "models",
    "RecognitionSection": "models",
    "SemanticCandidate": "models",
    "SemanticOpinion": "models",
    "SongMatch": "models",
    "Timeline": "models",
    "TimelineSegment": "models",
    "MODEL": "recognizer",
    "Recognizer": "recognizer",
    "SemanticLane": "semantic",
    "THRESHOLDS": "semantic",
    "ThresholdFit": "semantic",
    "fit_threshold": "semantic",
    "fuse": "semantic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
