"""The analysis report: a versioned pydantic model and its sections."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from polymuse.melody_report import MelodySection
from polymuse.recognition.models import RecognitionSection
from polymuse.schema import Model, ModelInfo
from polymuse.semantic_report import SemanticSection

SCHEMA_VERSION = "1.0"


class NodeRun(Model):
    """What one graph node did: status, time, backend and why it failed or was skipped."""

    name: str
    status: Literal["ok", "failed", "skipped"]
    seconds: float = 0.0
    backend: str = ""
    detail: str = ""


class SourceInfo(Model):
    """The analysed file."""

    path: str
    file_name: str
    content_hash: str = Field(description="sha256 of the file bytes")
    size_bytes: int
    container: str
    codec: str
    decoder: str
    sample_rate: int
    channels: int
    frames: int
    duration_s: float


class BasicFacts(Model):
    """Level facts over all channels, from a streaming pass."""

    peak_dbfs: float | None
    rms_dbfs: float | None
    clipped_samples: int
    clipping_ratio: float
    dc_offset: float
    silent: bool


class Rhythm(Model):
    tempo_bpm: float | None
    time_signature: str | None = Field(None, description="e.g. 4/4, 3/4, 6/8")
    beats_per_bar: int | None
    beats: list[float] = Field(default_factory=list, description="beat times, s")
    beat_positions: list[int] = Field(default_factory=list, description="1 = downbeat")
    downbeats: list[float] = Field(default_factory=list, description="downbeat times, s")


class KeyEstimate(Model):
    label: str = Field(description="e.g. 'D major'")
    tonic: str
    mode: Literal["major", "minor"]
    confidence: float
    alternatives: dict[str, float] = Field(default_factory=dict, description="next best keys")


class TimedLabel(Model):
    start: float
    end: float
    label: str


class Loudness(Model):
    integrated_lufs: float | None
    loudness_range_lu: float | None
    true_peak_dbtp: float | None
    short_term_times: list[float] = Field(default_factory=list)
    short_term_lufs: list[float | None] = Field(default_factory=list)


class MusicFeatures(Model):
    rhythm: Rhythm | None = None
    key: KeyEstimate | None = None
    chords: list[TimedLabel] | None = None
    structure: list[TimedLabel] | None = None
    loudness: Loudness | None = None
    models: list[ModelInfo] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict, description="feature -> why it failed")


class StemInfo(Model):
    """One written stem."""

    name: str = Field(description="vocals, drums, bass, other or instrumental")
    path: str
    loudness_lufs: float | None = Field(description="integrated loudness; None when silent")
    true_peak_dbtp: float | None = None
    energy_share: float = Field(description="stem energy / sum of the four stems' energies")
    clipped_samples: int = Field(0, description="samples beyond full scale, clipped when written")
    produced_by: str = Field("", description="the backend that produced this stem")


class Separation(Model):
    """What the `separate` node wrote, with which backend and model."""

    backend: str
    model: ModelInfo
    sample_rate: int
    folder: str
    stems: list[StemInfo]
    cached: bool = Field(False, description="stems reused from the content-hash cache")
    seconds: float = Field(0.0, description="separation time (0 when cached)")
    notes: list[str] = Field(
        default_factory=list, description="fallbacks taken: smaller chunks, CPU, derived stems"
    )


class AnalysisReport(Model):
    """Everything one `analyze` run found out about one song."""

    schema_version: str = SCHEMA_VERSION
    polymuse_version: str
    generated_at: datetime
    title: str
    summary: str
    source: SourceInfo
    facts: BasicFacts
    features: MusicFeatures | None = None
    separation: Separation | None = None
    semantic: SemanticSection | None = None
    melody: MelodySection | None = None
    recognition: RecognitionSection | None = None
    flags: list[str] = Field(default_factory=list, description="e.g. silent, clipping")
    nodes: list[NodeRun] = Field(default_factory=list)
