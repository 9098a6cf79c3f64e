"""A synthetic library of analysed songs with known facts, for the agent tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from polymuse.agents.tools import ReportLibrary, SongEntry
from polymuse.report import (
    AnalysisReport,
    BasicFacts,
    KeyEstimate,
    Loudness,
    MusicFeatures,
    Rhythm,
    SourceInfo,
    TimedLabel,
)

TITLES = [
    "Canon in D",
    "Autumn Leaves",
    "Blue Monday",
    "Take Five",
    "Clair de Lune",
    "Moon River",
    "Yesterday",
    "Hotel California",
    "Bolero",
    "Greensleeves",
    "Summertime",
    "Fur Elise",
    "Gymnopedie",
    "Nocturne",
    "Rainy Night",
    "Desert Wind",
    "Golden Hour",
    "Paper Boats",
    "Silver Lining",
    "Northern Lights",
    "Slow Burn",
    "City Pulse",
    "Harbour Lights",
    "Lantern Walk",
    "Velvet Sky",
    "茉莉花",
    "月亮代表我的心",
    "青花瓷",
    "小幸运",
    "夜曲",
    "稻香",
    "后来",
]
TONICS = ["C", "D", "E", "F", "G", "A", "B", "Bb", "Eb", "F#", "Ab"]
PROGRESSIONS = [
    ["C", "G", "Am", "F"],
    ["Dm", "G", "C", "Am"],
    ["Am", "F", "C", "G"],
    ["E", "A", "B", "E"],
]


def make_report(i: int, title: str) -> AnalysisReport:
    """Song `i`: facts derived from the index, some songs missing some features."""
    tonic = TONICS[i % len(TONICS)]
    mode = "minor" if i % 3 == 0 else "major"
    tempo = 60.0 + (i * 37) % 110
    sig = "3/4" if i % 5 == 0 else "4/4"
    duration = 120.0 + i * 7
    sections = [
        ("intro", 0.0, 12.0),
        ("verse", 12.0, 40.0),
        ("chorus", 40.0 + i % 4, 70.0),
        ("verse", 70.0, 95.0),
        ("chorus", 95.0, 115.0),
        ("outro", 115.0, duration),
    ]
    prog = PROGRESSIONS[i % len(PROGRESSIONS)]
    chords = [
        TimedLabel(start=t, end=t + 4.0, label=prog[(k + i) % 4])
        for k, t in enumerate(range(0, int(duration) - 4, 4))
    ]
    features = MusicFeatures(
        rhythm=Rhythm(tempo_bpm=tempo, time_signature=sig, beats_per_bar=int(sig[0])),
        key=KeyEstimate(label=f"{tonic} {mode}", tonic=tonic, mode=mode, confidence=0.8),
        chords=chords if i % 11 != 7 else None,
        structure=[TimedLabel(start=a, end=b, label=lab) for lab, a, b in sections]
        if i % 13 != 9
        else None,
        loudness=Loudness(
            integrated_lufs=-20.0 + (i % 9), loudness_range_lu=6.0, true_peak_dbtp=-1.0
        ),
    )
    if i == 4:  # a song whose key detection failed
        features.key = None
        features.errors["key"] = "no tonal content"
    digest = hashlib.sha256(title.encode()).hexdigest()
    return AnalysisReport(
        polymuse_version="0.1.0",
        generated_at=datetime(2025, 1, 1, tzinfo=UTC),
        title=f"{title}.wav",
        summary=f"{title}",
        source=SourceInfo(
            path=f"/music/{title}.wav",
            file_name=f"{title}.wav",
            content_hash=digest,
            size_bytes=1000,
            container="WAV",
            codec="PCM_16",
            decoder="soundfile",
            sample_rate=44100,
            channels=2,
            frames=int(duration * 44100),
            duration_s=duration,
        ),
        facts=BasicFacts(
            peak_dbfs=-1.0,
            rms_dbfs=-18.0,
            clipped_samples=0,
            clipping_ratio=0.0,
            dc_offset=0.0,
            silent=False,
        ),
        features=features,
    )


def library(root: Path | None = None) -> ReportLibrary:
    """All songs; written as report folders under `root` when given."""
    entries = []
    for i, title in enumerate(TITLES):
        report = make_report(i, title)
        path = f"reports/{title}-{report.source.content_hash[:8]}"
        if root is not None:
            folder = root / path
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "report.json").write_text(report.model_dump_json(), encoding="utf-8")
            path = str(folder)
        entries.append(SongEntry(report, path))
    return ReportLibrary(entries)
