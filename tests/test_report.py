"""The report: schema round trip, renderers and the JAMS export."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import jams
import pytest

from polymuse.recognition.models import (
    Recognition,
    RecognitionSection,
    SemanticOpinion,
    SongMatch,
)
from polymuse.render.document import outline
from polymuse.render.files import slug
from polymuse.render.html import to_html
from polymuse.render.jams_export import to_jams
from polymuse.render.markdown import to_markdown
from polymuse.report import (
    AnalysisReport,
    BasicFacts,
    KeyEstimate,
    Loudness,
    MusicFeatures,
    NodeRun,
    Rhythm,
    SourceInfo,
    TimedLabel,
)


@pytest.fixture
def report() -> AnalysisReport:
    return AnalysisReport(
        polymuse_version="0",
        generated_at=datetime(2026, 1, 1, tzinfo=UTC),
        title="卡农.wav",
        summary="A test.",
        source=SourceInfo(
            path="/x/卡农.wav",
            file_name="卡农.wav",
            content_hash="ab" * 32,
            size_bytes=10,
            container="wav",
            codec="pcm_16",
            decoder="soundfile",
            sample_rate=44100,
            channels=2,
            frames=441000,
            duration_s=10.0,
        ),
        facts=BasicFacts(
            peak_dbfs=-1.0,
            rms_dbfs=-20.0,
            clipped_samples=0,
            clipping_ratio=0.0,
            dc_offset=0.0,
            silent=False,
        ),
        features=MusicFeatures(
            rhythm=Rhythm(
                tempo_bpm=120.0,
                time_signature="4/4",
                beats_per_bar=4,
                beats=[0.5, 1.0, 1.5, 2.0],
                beat_positions=[1, 2, 3, 4],
                downbeats=[0.5],
            ),
            key=KeyEstimate(label="D major", tonic="D", mode="major", confidence=0.9),
            chords=[
                TimedLabel(start=0, end=2, label="D:maj"),
                TimedLabel(start=2, end=10, label="B:min"),
            ],
            structure=[
                TimedLabel(start=0, end=5, label="A"),
                TimedLabel(start=5, end=10, label="A'"),
            ],
            loudness=Loudness(integrated_lufs=-14.0, loudness_range_lu=5.0, true_peak_dbtp=-1.0),
        ),
        nodes=[NodeRun(name="load", status="ok", seconds=0.1)],
    )


def test_json_round_trip(report: AnalysisReport) -> None:
    again = AnalysisReport.model_validate_json(report.model_dump_json())
    assert again == report


def test_schema_is_versioned_and_strict(report: AnalysisReport) -> None:
    schema = AnalysisReport.model_json_schema()
    assert "schema_version" in schema["properties"]
    data = json.loads(report.model_dump_json())
    data["unexpected"] = 1
    with pytest.raises(ValueError):
        AnalysisReport.model_validate(data)


def test_markdown_and_html_say_the_same(report: AnalysisReport) -> None:
    sections = outline(report, ["waveform"])
    md = to_markdown(report.title, sections)
    html = unescape(to_html(report.title, sections, {"waveform": b"\x89PNG"}))
    for text in ("D major", "Bm", "A'", "-14.0 LUFS", "120.0 BPM"):
        assert text in md and text in html
    assert "data:image/png;base64," in html and "![waveform](plots/waveform.png)" in md


def test_recognition_section_names_the_song_and_the_lane(report: AnalysisReport) -> None:
    match = SongMatch(
        song_id=3,
        asset_id=5,
        title="Canon",
        artist="Pachelbel",
        confidence=0.97,
        score=0,
        reference_offset_s=61.5,
        query_start_s=0.0,
        query_end_s=5.0,
        reference_start_s=61.5,
        reference_end_s=66.5,
        tempo_ratio=1.0,
        peaks_checked=40,
        peaks_found=31,
        constellation_votes=28,
    )
    found = Recognition(
        status="match",
        match=match,
        decided_by="exact",
        query_duration_s=5.0,
        triplets=10,
        probes=100,
        postings=50,
        semantic=SemanticOpinion(model_name="semantic-musicnn", threshold=None, note="no vectors"),
    )
    report = report.model_copy(update={"recognition": RecognitionSection(recognition=found)})
    md = to_markdown(report.title, outline(report, []))
    assert "Canon by Pachelbel, from 1:01.50 in the reference, confidence 0.97" in md
    assert "decided by the exact lane" in md and "| Canon | exact | 0.97 |" in md
    assert "Semantic lane: no vectors." in md


def test_jams_export_validates(report: AnalysisReport) -> None:
    doc = to_jams(report)
    namespaces = {a.namespace for a in doc.annotations}
    assert namespaces == {"beat", "tempo", "key_mode", "chord", "segment_open"}
    again = jams.JAMS.loads(doc.dumps())
    assert again.search(namespace="key_mode")[0].data[0].value == "D:major"


def test_slug_keeps_chinese_and_drops_separators() -> None:
    assert slug("卡农.mp3") == "卡农"
    assert slug("My Song (live)!.flac") == "my-song-live"


def test_published_schema_is_current() -> None:
    """docs/report.schema.json is what `polymuse report schema` prints; regenerate it if not."""
    published = Path(__file__).parents[1] / "docs" / "report.schema.json"
    assert json.loads(published.read_text(encoding="utf-8")) == AnalysisReport.model_json_schema()
