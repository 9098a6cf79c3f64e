"""The `review` node through a compiled graph, its report section, and its rendering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from polymuse.nodes.load import load
from polymuse.nodes.review import review, stem_paths
from polymuse.runtime import Context
from polymuse.semantic_report import SemanticSection, semantic_section, write_embeddings
from polymuse.settings import Settings
from polymuse.state import AnalysisState


class ReviewState(AnalysisState, total=False):
    semantic: SemanticSection
    stems: dict[str, str]


def _review(state: ReviewState, runtime: Runtime[Context]) -> dict:
    """`review` typed with this test's state: LangGraph hands a node only the keys of the
    state type it declares, and `stems` is not in AnalysisState yet."""
    return review(state, runtime)


def _graph():
    graph = StateGraph(ReviewState, context_schema=Context)
    graph.add_node("load", load)
    graph.add_node("review", _review)
    graph.add_edge(START, "load")
    graph.add_edge("load", "review")
    graph.add_edge("review", END)
    return graph.compile()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        audio_encoder="debug",
        text_encoder="hashing",
        device="cpu",
        output_dir=tmp_path / "reports",
    )


def test_review_node_scores_every_category(song_wav: Path, settings: Settings) -> None:
    out = _graph().invoke({"path": str(song_wav)}, context=Context(settings=settings))
    section = out["semantic"]
    assert set(section.categories) == {"mood", "genre", "instruments", "texture"}
    assert section.encoder.name == "debug" and section.text_encoder.name.startswith("hashing")
    assert section.windows == 16 and section.stems == []  # 16 s song, 1 s debug windows
    for scores in section.categories.values():
        assert scores == sorted(scores, key=lambda s: -s.confidence)
        assert all(s.evidence for s in scores)
    assert section.features["tempo_bpm"] > 0
    assert set(section.scores) >= {s.id for c in section.categories.values() for s in c}
    with np.load(section.embeddings_path) as data:
        assert data["embedding"].shape == (16,)
        assert len(data["descriptor_ids"]) == len(section.scores)
    SemanticSection.model_validate_json(section.model_dump_json())


def test_second_run_reads_the_encoding_cache(song_wav: Path, settings: Settings) -> None:
    graph = _graph()
    first = graph.invoke({"path": str(song_wav)}, context=Context(settings=settings))["semantic"]
    cache = Path(first.embeddings_path)
    stamp = cache.stat().st_mtime_ns
    second = graph.invoke({"path": str(song_wav)}, context=Context(settings=settings))["semantic"]
    assert second.scores == first.scores
    assert cache.stat().st_mtime_ns >= stamp


def test_stems_are_reviewed_and_a_bad_one_is_recorded(
    song_wav: Path, settings: Settings, tmp_path: Path
) -> None:
    y, sr = sf.read(song_wav)
    drums = tmp_path / "drums.wav"
    sf.write(drums, y[:, 0], sr)
    silent = tmp_path / "vocals.wav"
    sf.write(silent, np.zeros(sr * 4), sr)
    stems = {"drums": str(drums), "vocals": str(silent), "bass": str(tmp_path / "missing.wav")}
    out = _graph().invoke(
        {"path": str(song_wav), "stems": stems}, context=Context(settings=settings)
    )
    by_stem = {s.stem: s for s in out["semantic"].stems}
    assert by_stem["drums"].present and by_stem["drums"].descriptors
    assert {d.id for d in by_stem["drums"].descriptors} <= {
        "instruments.drums",
        "instruments.percussion",
        "instruments.drum_machine",
        "instruments.timpani",
    }
    assert not by_stem["vocals"].present and by_stem["vocals"].error is None
    assert by_stem["bass"].error


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {}),
        ({"vocals": "/a/v.wav"}, {"vocals": "/a/v.wav"}),
        ({"drums": Path("/a/d.wav")}, {"drums": "/a/d.wav"}),
        (type("Stems", (), {"paths": {"bass": "/b.wav"}})(), {"bass": "/b.wav"}),
        ({"other": type("Stem", (), {"path": "/o.wav"})()}, {"other": "/o.wav"}),
        ("not stems", {}),
        (
            type(
                "Separation",
                (),
                {
                    "stems": [
                        type("StemInfo", (), {"name": "vocals", "path": "/v.wav"})(),
                        type("StemInfo", (), {"name": "instrumental", "path": "/i.wav"})(),
                    ]
                },
            )(),
            {"vocals": "/v.wav"},
        ),
    ],
)
def test_stem_paths_accepts_what_a_separator_may_give(value, expected) -> None:
    assert stem_paths(value) == expected


def test_section_renders_and_embeddings_copy(
    song_wav: Path, settings: Settings, tmp_path: Path
) -> None:
    section = _graph().invoke({"path": str(song_wav)}, context=Context(settings=settings))[
        "semantic"
    ]
    report = type("Report", (), {"semantic": section})()
    rendered = semantic_section(report)
    assert rendered.title == "Semantics"
    rows = rendered.tables[0].rows
    assert rows[0][0] in {"mood", "genre", "instruments", "texture"} and len(rows) >= 8
    assert semantic_section(type("Report", (), {"semantic": None})()) is None
    folder = tmp_path / "report-folder"
    folder.mkdir()
    copied = write_embeddings(folder, section)
    assert copied == folder / "embeddings.npz" and copied.is_file()
    assert write_embeddings(folder, None) is None
