"""JAMS export of the time annotations, so other MIR tools can read them."""

from __future__ import annotations

import jams

from polymuse import __version__
from polymuse.report import AnalysisReport


def to_jams(report: AnalysisReport) -> jams.JAMS:
    """Beats, downbeat positions, tempo, key, chords and segments as a validated JAMS object."""
    duration = report.source.duration_s
    doc = jams.JAMS()
    doc.file_metadata.duration = duration
    doc.file_metadata.title = report.title
    doc.file_metadata.identifiers = {"sha256": report.source.content_hash}
    f = report.features

    def annotation(namespace: str, tool: str) -> jams.Annotation:
        ann = jams.Annotation(namespace=namespace, duration=duration)
        ann.annotation_metadata.annotation_tools = tool
        ann.annotation_metadata.version = f"polymuse {__version__}"
        doc.annotations.append(ann)
        return ann

    if f and f.rhythm and f.rhythm.beats:
        beats = annotation("beat", "madmom downbeat RNN + DBN")
        for t, pos in zip(f.rhythm.beats, f.rhythm.beat_positions, strict=True):
            beats.append(time=t, duration=0.0, value=pos)
        if f.rhythm.tempo_bpm:
            annotation("tempo", "median inter-beat interval").append(
                time=0.0, duration=duration, value=f.rhythm.tempo_bpm, confidence=1.0
            )
    if f and f.key:
        annotation("key_mode", "madmom CNN key").append(
            time=0.0,
            duration=duration,
            value=f"{f.key.tonic}:{f.key.mode}",
            confidence=f.key.confidence,
        )
    if f and f.chords:
        chords = annotation("chord", "madmom CNN chord features + CRF")
        for seg in f.chords:
            chords.append(time=seg.start, duration=seg.end - seg.start, value=seg.label)
    if f and f.structure:
        segments = annotation("segment_open", "Laplacian segmentation")
        for seg in f.structure:
            segments.append(time=seg.start, duration=seg.end - seg.start, value=seg.label)
    doc.validate()
    return doc
