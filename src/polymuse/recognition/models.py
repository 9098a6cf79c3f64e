"""Pydantic results of recognition: a match, the semantic lane's opinion, a whole answer, a
timeline, the report section.

Self-contained (pydantic only), so `polymuse.report` can import the section without a cycle.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from polymuse.schema import Model

SCHEMA_VERSION = "1.5"


class SongMatch(Model):
    """A catalogue song a query matched, where, and how sure we are."""

    song_id: int
    asset_id: int
    title: str
    artist: str | None = None
    confidence: float = Field(description="Calibrated probability that this match is right")
    score: int = Field(description="Distinct reference hashes on the matched time line")
    reference_offset_s: float = Field(
        description="Where the query's first sample lies in the reference recording, s"
    )
    query_start_s: float = Field(description="Matched span in the query, s")
    query_end_s: float
    reference_start_s: float = Field(description="Matched span in the reference, s")
    reference_end_s: float
    tempo_ratio: float = Field(description="Reference time per query time (1.05: query 5 % fast)")
    pitch_shift: float = Field(0.0, description="Semitones, query relative to reference")
    peaks_checked: int = Field(0, description="Reference peaks under the matched span")
    peaks_found: int = Field(0, description="... that the query shows too")
    rival_peaks_found: int = Field(
        0, description="Most reference peaks the best candidate of any other song found"
    )
    precision: float = Field(0.0, description="Share of the query's strong peaks it explains")
    peaks_absent: int = Field(
        0, description="Reference peaks under the span where the query is quiet (other notes)"
    )
    depth_db: float = Field(
        0.0, description="Mean dB the query lies below its local maximum at the checked peaks"
    )
    steady_peaks: int = Field(0, description="The query's strong peaks that are held notes")
    steady_explained: int = Field(0, description="... that the reference explains")
    peaks_raised: int = Field(
        0, description="Checked reference peaks where the query stands above its usual level"
    )
    constellation_votes: int = Field(
        0,
        description="Query peaks on the line when the constellation search proposed this song "
        "(0: its hashes did)",
    )
    lane: Literal["exact", "semantic"] = "exact"
    similarity: float | None = Field(
        None, description="Cosine similarity of the embeddings (semantic lane only)"
    )


class SemanticCandidate(Model):
    """A catalogue song with a window embedding close to the query's (the semantic lane)."""

    song_id: int
    asset_id: int
    title: str
    artist: str | None = None
    similarity: float = Field(description="Cosine similarity of the closest pair of windows")
    reference_start_s: float = Field(description="The closest reference window, s")
    reference_end_s: float
    query_start_s: float = Field(description="The query window it was closest to, s")
    query_end_s: float


class SemanticOpinion(Model):
    """What the semantic lane made of a query, whether or not it decided the answer."""

    model_name: str = Field(description="Catalogue model of the window embeddings searched")
    model_version: str = ""
    threshold: float | None = Field(
        description="Similarity the lane decides at (None: not fitted for this encoder, it "
        "only advises)"
    )
    candidates: list[SemanticCandidate] = Field(
        default_factory=list, description="One per song, most similar first"
    )
    agrees: bool | None = Field(
        None,
        description="Whether its top song is the exact lane's (match, else best runner-up); "
        "None when either lane has no song",
    )
    note: str = Field("", description="Why the lane gave no opinion (unavailable, failed)")
    seconds: float = 0.0


class Recognition(Model):
    """The answer for one query: a match or `unknown`, with the runners-up."""

    schema_version: str = SCHEMA_VERSION
    status: Literal["match", "unknown"]
    match: SongMatch | None = None
    alternatives: list[SongMatch] = Field(default_factory=list)
    query_duration_s: float
    triplets: int = Field(description="Query hash triplets")
    probes: int = Field(description="Hash cells looked up")
    postings: int = Field(description="Stored postings returned by the index")
    seconds: float = Field(0.0, description="Fingerprint + look-up + vote time")
    decided_by: Literal["exact", "semantic", "none"] = "none"
    model_name: str = Field("", description="Fingerprint model that answered")
    model_version: str = ""
    semantic: SemanticOpinion | None = Field(
        None, description="The semantic lane's opinion (None: the lane was not asked)"
    )

    @property
    def best(self) -> SongMatch | None:
        """The match, or when the answer is `unknown` the closest song (None: no candidate)."""
        return self.match or (self.alternatives[0] if self.alternatives else None)


class TimelineSegment(Model):
    """A stretch of a long recording that plays one catalogue song."""

    start_s: float = Field(description="In the recording, s")
    end_s: float
    match: SongMatch


class Timeline(Model):
    """Every catalogue song found along a long recording, in order."""

    schema_version: str = SCHEMA_VERSION
    duration_s: float
    window_s: float
    hop_s: float
    segments: list[TimelineSegment] = Field(default_factory=list)
    seconds: float = 0.0


class ChromaprintInfo(Model):
    """The file's Chromaprint, and the catalogue song holding a near-identical file, if any."""

    fpcalc_version: str
    items: int
    duplicate_song_id: int | None = None
    duplicate_title: str | None = None
    similarity: float | None = Field(None, description="Share of equal bits (unrelated: ~0.5)")


class RecognitionSection(Model):
    """What the `recognize` node adds to an analysis report."""

    schema_version: str = SCHEMA_VERSION
    recognition: Recognition | None = None
    excerpts: list[float] = Field(
        default_factory=list, description="Starts (s) of the excerpts identified in a long file"
    )
    stems: dict[str, Recognition] = Field(
        default_factory=dict,
        description="Answers for stems, asked when the mix was not recognised "
        "(`service.confirm_on_stem`)",
    )
    decided_on: str = Field("mix", description="The audio whose answer `recognition` is")
    chromaprint: ChromaprintInfo | None = None
    errors: dict[str, str] = Field(default_factory=dict, description="part -> why it failed")
