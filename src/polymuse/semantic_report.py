"""The semantic section of the report: descriptor confidences per category, with evidence.

This module imports nothing from `polymuse.report`, so `report.py` can import
`SemanticSection` for its `semantic` field without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from polymuse.schema import Model, ModelInfo

if TYPE_CHECKING:
    from pathlib import Path

    from polymuse.render.document import Section

SEMANTIC_SCHEMA_VERSION = "1.0"
EvidenceKind = Literal["tag", "text", "feature", "joint", "head"]


class Evidence(Model):
    """One input behind a descriptor's confidence.

    - `tag`: a tagger output linked to the descriptor in the bank; `value` is its mean
      probability, `weight` the link's weight.
    - `text`: a tagger output chosen by text similarity between the descriptor and the tag
      name; `weight` is the similarity.
    - `feature`: an audio feature and the bank's rule on it; `value` in the feature's unit.
    - `joint`: cosine between the audio embedding and the descriptor's text embedding in a
      joint audio-text model (CLAP, CLaMP 3, MuQ-MuLan).
    `score` is the evidence in logit units before calibration.
    """

    kind: EvidenceKind
    name: str
    value: float
    weight: float | None = None
    score: float


class DescriptorScore(Model):
    id: str
    label: str
    label_zh: str
    category: str
    confidence: float = Field(ge=0, le=1, description="calibrated probability")
    evidence: list[Evidence] = Field(default_factory=list)


class StemSemantics(Model):
    """Descriptors of one separated stem, restricted to those the bank marks for it."""

    stem: str
    present: bool = Field(description="the stem is louder than -50 dBFS RMS")
    rms_dbfs: float | None = None
    windows: int = 0
    features: dict[str, float | None] = Field(default_factory=dict)
    descriptors: list[DescriptorScore] = Field(default_factory=list)
    error: str | None = None


class SemanticSection(Model):
    """What the semantic reviewer found: top descriptors per category, for the mix and stems."""

    schema_version: str = SEMANTIC_SCHEMA_VERSION
    encoder: ModelInfo
    tagger: ModelInfo | None = Field(
        None, description="where tag evidence came from, if not encoder"
    )
    text_encoder: ModelInfo | None = None
    bank_version: int
    bank_hash: str
    calibration: str = Field(description="name of the calibration that mapped scores")
    windows: int = Field(description="analysed windows of the mix")
    window_seconds: float
    features: dict[str, float | None] = Field(default_factory=dict)
    categories: dict[str, list[DescriptorScore]] = Field(
        default_factory=dict, description="category -> top descriptors, best first"
    )
    scores: dict[str, float] = Field(
        default_factory=dict, description="every scored descriptor id -> confidence"
    )
    top_tags: dict[str, float] = Field(
        default_factory=dict, description="strongest tagger outputs, mean over windows"
    )
    stems: list[StemSemantics] = Field(default_factory=list)
    embeddings_path: str | None = Field(
        None, description="npz with the window and song embeddings (cache copy)"
    )
    notes: list[str] = Field(default_factory=list, description="degraded evidence, and why")
    seconds: float = 0.0


EMBEDDINGS_FILE = "embeddings.npz"


def write_embeddings(folder: Path | str, semantic: SemanticSection | None) -> Path | None:
    """Copy the review's embeddings file into a report folder as `embeddings.npz`.

    The report node calls this after writing report.json, so search and similarity can read
    a report folder on its own. Nothing happens when there is no semantic section or its
    cache file is gone.
    """
    import os
    import shutil
    from pathlib import Path

    if semantic is None or not semantic.embeddings_path:
        return None
    source = Path(semantic.embeddings_path)
    if not source.is_file():
        return None
    target = Path(folder) / EMBEDDINGS_FILE
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def semantic_section(report: object) -> Section | None:
    """The report outline's 'Semantics' section, or None without a semantic section."""
    from polymuse.render.document import Section, Table

    semantic: SemanticSection | None = getattr(report, "semantic", None)
    if semantic is None:
        return None
    rows = []
    for category, scores in semantic.categories.items():
        for rank, d in enumerate(scores[:5], 1):
            rows.append(
                [
                    category if rank == 1 else "",
                    f"{d.label} ({d.label_zh})",
                    f"{d.confidence:.2f}",
                    _evidence_text(d),
                ]
            )
    paragraphs = [
        f"Encoder {semantic.encoder.name} ({semantic.encoder.version}); "
        f"{semantic.windows} windows of {semantic.window_seconds:.1f} s; "
        f"descriptor bank v{semantic.bank_version} ({semantic.bank_hash}); "
        f"calibration: {semantic.calibration}."
    ]
    if semantic.tagger is not None:
        paragraphs.append(f"Tag evidence from {semantic.tagger.name}.")
    tables = [Table(["category", "descriptor", "confidence", "evidence"], rows)]
    feats = {k: v for k, v in semantic.features.items() if v is not None}
    if feats:
        tables.append(Table(["feature", "value"], [[k, f"{v:.3g}"] for k, v in feats.items()]))
    if semantic.stems:
        stem_rows = []
        for stem in semantic.stems:
            if stem.error:
                stem_rows.append([stem.stem, "error", stem.error])
                continue
            top = ", ".join(f"{d.label} {d.confidence:.2f}" for d in stem.descriptors[:4])
            stem_rows.append([stem.stem, "present" if stem.present else "silent", top])
        tables.append(Table(["stem", "status", "top descriptors"], stem_rows))
    return Section("Semantics", paragraphs, tables)


def _evidence_text(d: DescriptorScore) -> str:
    parts = []
    for e in sorted(d.evidence, key=lambda e: -e.score)[:3]:
        if e.kind == "feature":
            parts.append(f"{e.name}={e.value:.3g}")
        elif e.kind == "text":
            parts.append(f"~{e.name} {e.value:.2f} (sim {e.weight:.2f})")
        elif e.kind == "joint":
            parts.append(f"audio-text cos {e.value:.2f}")
        else:
            parts.append(f"{e.name} {e.value:.2f}")
    return "; ".join(parts)
