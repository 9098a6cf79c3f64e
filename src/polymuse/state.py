"""The graph state of one analysis."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from polymuse.melody_report import MelodySection
from polymuse.recognition.models import RecognitionSection
from polymuse.report import (
    AnalysisReport,
    BasicFacts,
    MusicFeatures,
    NodeRun,
    Separation,
    SourceInfo,
)
from polymuse.semantic_report import SemanticSection


class AnalysisInput(TypedDict):
    """What a caller hands the graph."""

    path: str
    """The audio file to analyse."""


class AnalysisState(AnalysisInput, total=False):
    """Everything the nodes of one analysis share; each node returns only its own keys."""

    source: SourceInfo
    """Decoded-file facts, set by `load`."""
    facts: BasicFacts
    """Level facts from the streaming pass in `load`."""
    features: MusicFeatures
    """Tempo, beats, key, chords, structure, loudness, set by `features`."""
    separation: Separation
    """Stem files, loudness and share of the mix, set by `separate`."""
    recognition: RecognitionSection
    """Catalogue match (song, offset, confidence) and Chromaprint, set by `recognize`."""
    melody: MelodySection
    """Lead-line f0, its notes and the mix's notes as MIDI, set by `melody`."""
    semantic: SemanticSection
    """Descriptor confidences per category with their evidence, set by `review`."""
    flags: Annotated[list[str], operator.add]
    """Conditions worth a reader's attention (silent, clipping, ...)."""
    runs: Annotated[list[NodeRun], operator.add]
    """One record per node that ran, failed or was skipped."""
    report: AnalysisReport
    """The assembled report, set by `report`."""
    report_dir: str
    """Folder the report files were written to."""
