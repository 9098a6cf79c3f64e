"""A format-neutral outline of a report (sections of text, tables and figures).

Markdown and HTML are two serialisations of the same outline, so they never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polymuse.melody_report import melody_section
from polymuse.recognition.models import RecognitionSection
from polymuse.render.summary import chord_name
from polymuse.report import AnalysisReport
from polymuse.semantic_report import semantic_section


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _t(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:05.2f}"


def _recognition(part: RecognitionSection) -> Section:
    """Which catalogue song this is, by which lane, the runners-up, and copies on file."""
    section = Section("Recognition")
    found = part.recognition
    if found is not None:
        hit = found.match
        section.paragraphs.append(
            f"{hit.title} by {hit.artist or 'unknown artist'}, from {_t(hit.reference_offset_s)} "
            f"in the reference, confidence {hit.confidence:.2f} (decided by the "
            f"{found.decided_by} lane)."
            if hit
            else "Not in the catalogue."
        )
        rows = [
            [
                m.title,
                m.lane,
                f"{m.confidence:.2f}",
                _t(m.reference_offset_s),
                str(m.score),
                f"{m.peaks_found}/{m.peaks_checked}",
                str(m.constellation_votes or ""),
            ]
            for m in ([hit] if hit else []) + found.alternatives
        ]
        if rows:
            headers = ["song", "lane", "confidence", "offset", "hashes", "peaks", "votes"]
            section.tables.append(Table(headers, rows))
        if (opinion := found.semantic) is not None:
            top = opinion.candidates[0] if opinion.candidates else None
            section.paragraphs.append(
                f"Semantic lane ({opinion.model_name}): {top.title}, similarity "
                f"{top.similarity:.3f}"
                + (
                    ""
                    if opinion.agrees is None
                    else f", {'agrees' if opinion.agrees else 'differs'}"
                )
                + "."
                if top
                else f"Semantic lane: {opinion.note or 'no opinion'}."
            )
    for name, answer in part.stems.items():
        best = answer.best
        section.paragraphs.append(
            f"The mix was not recognised; its {name} stem "
            + (
                f"confirmed {best.title} (confidence {best.confidence:.2f})."
                if answer.match
                else f"was not either (closest: {best.title if best else 'none'})."
            )
        )
    if part.excerpts:
        starts = ", ".join(_t(s) for s in part.excerpts)
        section.paragraphs.append(f"Looked up as excerpts starting at {starts}.")
    if part.chromaprint is not None and part.chromaprint.duplicate_title:
        section.paragraphs.append(
            f"Chromaprint: a near-identical file of {part.chromaprint.duplicate_title} is in "
            f"the catalogue (similarity {part.chromaprint.similarity:.2f})."
        )
    section.paragraphs += [f"{k}: {v}" for k, v in part.errors.items()]
    return section


def outline(report: AnalysisReport, figures: list[str]) -> list[Section]:
    """The sections of a report; `figures` names the plots that were drawn."""
    src, facts, f = report.source, report.facts, report.features
    sections = [Section("Summary", [report.summary])]
    if report.flags:
        sections[0].paragraphs.append("Flags: " + ", ".join(report.flags))
    sections.append(
        Section(
            "File",
            tables=[
                Table(
                    ["property", "value"],
                    [
                        ["path", src.path],
                        ["sha256", src.content_hash],
                        ["format", f"{src.container} / {src.codec} (decoded by {src.decoder})"],
                        ["duration", f"{src.duration_s:.2f} s"],
                        ["sample rate / channels", f"{src.sample_rate} Hz / {src.channels}"],
                        [
                            "peak / RMS",
                            f"{_fmt(facts.peak_dbfs, ' dBFS')} / {_fmt(facts.rms_dbfs, ' dBFS')}",
                        ],
                        [
                            "clipped samples",
                            f"{facts.clipped_samples} ({facts.clipping_ratio:.4%})",
                        ],
                    ],
                )
            ],
            figures=[n for n in ("waveform", "spectrogram") if n in figures],
        )
    )
    if f and f.rhythm:
        r = f.rhythm
        sections.append(
            Section(
                "Rhythm",
                [
                    f"Tempo {_fmt(r.tempo_bpm, ' BPM')}, {r.beats_per_bar or 'n/a'} beats per bar, "
                    f"{len(r.beats)} beats, {len(r.downbeats)} downbeats. "
                    f"First downbeat at {_fmt(r.downbeats[0] if r.downbeats else None, ' s', 2)}."
                ],
            )
        )
    if f and f.key:
        alt = ", ".join(f"{k} ({v:.2f})" for k, v in f.key.alternatives.items())
        sections.append(
            Section("Key", [f"{f.key.label}, confidence {f.key.confidence:.2f}. Next: {alt}."])
        )
    if f and f.chords:
        rows = [[_t(c.start), _t(c.end), chord_name(c.label), c.label] for c in f.chords]
        sections.append(
            Section(
                "Chords",
                [f"{len(f.chords)} chord segments."],
                [Table(["start", "end", "chord", "Harte"], rows)],
                [n for n in ("chroma",) if n in figures],
            )
        )
    if f and f.structure:
        rows = [[s.label, _t(s.start), _t(s.end), f"{s.end - s.start:.1f} s"] for s in f.structure]
        sections.append(
            Section(
                "Structure",
                ["Form: " + " ".join(s.label for s in f.structure)],
                [Table(["section", "start", "end", "length"], rows)],
                [n for n in ("structure",) if n in figures],
            )
        )
    if f and f.loudness:
        lo = f.loudness
        sections.append(
            Section(
                "Loudness",
                [
                    f"Integrated {_fmt(lo.integrated_lufs, ' LUFS')}, "
                    f"range {_fmt(lo.loudness_range_lu, ' LU')}, "
                    f"true peak {_fmt(lo.true_peak_dbtp, ' dBTP')}."
                ],
                figures=[n for n in ("loudness",) if n in figures],
            )
        )
    if f and f.errors:
        sections.append(
            Section(
                "Features not available",
                tables=[Table(["feature", "reason"], [[k, v] for k, v in f.errors.items()])],
            )
        )
    if report.recognition is not None:
        sections.append(_recognition(report.recognition))
    if (semantic := semantic_section(report)) is not None:
        sections.append(semantic)
    if (melody := melody_section(report, figures)) is not None:
        sections.append(melody)
    models = f.models if f else []
    if models:
        sections.append(
            Section(
                "Models",
                tables=[
                    Table(
                        ["model", "version", "source", "licence"],
                        [[m.name, m.version, m.source, m.licence] for m in models],
                    )
                ],
            )
        )
    sections.append(
        Section(
            "Nodes",
            tables=[
                Table(
                    ["node", "status", "seconds", "backend", "detail"],
                    [
                        [n.name, n.status, f"{n.seconds:.2f}", n.backend, n.detail]
                        for n in report.nodes
                    ],
                )
            ],
        )
    )
    return sections
