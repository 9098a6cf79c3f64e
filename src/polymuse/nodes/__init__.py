"""The node registry: every analysis step the graph can run, with its dependencies.

Adding a node is one module in this package and one `NodeSpec` line below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph.runtime import Runtime

from polymuse.nodes.features import features
from polymuse.nodes.load import load
from polymuse.nodes.melody import melody
from polymuse.nodes.recognize import recognize
from polymuse.nodes.report import report
from polymuse.nodes.review import review
from polymuse.nodes.separate import separate
from polymuse.recognition.recognizer import MODEL as RECOGNIZER
from polymuse.runtime import Context
from polymuse.settings import Settings
from polymuse.state import AnalysisState

NodeFn = Callable[[AnalysisState, Runtime[Context]], dict[str, Any]]


@dataclass(frozen=True)
class NodeSpec:
    """One node: its function, the nodes whose output it needs, and how it is described."""

    name: str
    run: NodeFn
    summary: str
    after: tuple[str, ...] = ()
    required: bool = False
    backend: Callable[[Settings], str] = lambda settings: ""


NODES: dict[str, NodeSpec] = {
    spec.name: spec
    for spec in (
        NodeSpec("load", load, "decode, validate, hash, level scan", required=True),
        NodeSpec("features", features, "tempo, beats, key, chords, structure, loudness", ("load",)),
        NodeSpec(
            "recognize",
            recognize,
            "catalogue song, offset and confidence (landmark triplets; the instrumental stem "
            "when the mix is not recognised) + Chromaprint",
            ("separate",),
            backend=lambda s: f"{RECOGNIZER.name} v{RECOGNIZER.version}",
        ),
        NodeSpec(
            "separate",
            separate,
            "stems: vocals, drums, bass, other, instrumental",
            ("load",),
            backend=lambda s: s.separator,
        ),
        NodeSpec(
            "review",
            review,
            "descriptors: mood, genre, instruments, texture (mix and stems)",
            ("separate",),
            backend=lambda s: s.audio_encoder,
        ),
        NodeSpec(
            "melody",
            melody,
            "melody f0 + MIDI of the vocal stem (or the mix); notes of the mix",
            ("separate",),
            backend=lambda s: "crepe-tiny + basic-pitch",
        ),
        NodeSpec("report", report, "JSON, Markdown, HTML, JAMS under reports/", required=True),
    )
}
