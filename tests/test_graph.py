"""The analysis graph: node selection, routing, failure isolation, checkpointing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from polymuse.errors import AudioLoadError, UserError
from polymuse.graph import build_graph, select_nodes
from polymuse.nodes import NODES, NodeSpec
from polymuse.report import MusicFeatures
from polymuse.runtime import Context
from polymuse.settings import Settings


def run(path: Path, tmp_path: Path, **selection) -> dict:
    graph = build_graph(**selection).compile(checkpointer=InMemorySaver())
    return graph.invoke(
        {"path": str(path)},
        context=Context(settings=Settings(output_dir=tmp_path / "reports")),
        config={"configurable": {"thread_id": "t"}},
    )


@pytest.fixture
def fast_features(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the (slow, model-heavy) features node by one that records it ran."""
    calls: list[str] = []

    def features(state, runtime) -> dict:
        calls.append(state["source"].file_name)
        return {"features": MusicFeatures()}

    monkeypatch.setitem(NODES, "features", NodeSpec("features", features, "fake", ("load",)))
    return calls


def test_selection_keeps_required_nodes_and_registry_order() -> None:
    assert select_nodes() == list(NODES)
    assert select_nodes(only=["features"]) == ["load", "features", "report"]
    assert "features" not in select_nodes(skip=["features"])


@pytest.mark.parametrize(
    ("only", "skip", "message"),
    [(["nope"], None, "unknown node"), (None, ["load"], "cannot skip required")],
)
def test_bad_selection_is_a_user_error(only, skip, message: str) -> None:
    with pytest.raises(UserError, match=message):
        select_nodes(only=only, skip=skip)


def test_skipped_node_does_not_run_and_is_reported(song_wav, tmp_path, fast_features) -> None:
    out = run(song_wav, tmp_path, skip=["features"])
    assert fast_features == []
    runs = {r.name: r for r in out["report"].nodes}
    assert runs["features"].status == "skipped" and runs["features"].detail == "not selected"
    assert Path(out["report_dir"], "report.json").is_file()


def test_failing_optional_node_is_isolated(song_wav, tmp_path, monkeypatch) -> None:
    def broken(state, runtime) -> dict:
        raise RuntimeError("model exploded")

    monkeypatch.setitem(NODES, "features", NodeSpec("features", broken, "broken", ("load",)))
    out = run(song_wav, tmp_path)
    runs = {r.name: r for r in out["report"].nodes}
    assert runs["features"].status == "failed"
    assert "model exploded" in runs["features"].detail
    assert runs["load"].status == "ok"
    assert Path(out["report_dir"], "report.html").is_file()


def test_silent_audio_routes_straight_to_report(write_audio, tmp_path, fast_features) -> None:
    path = write_audio("silence.wav", np.zeros(44100 * 3, np.float32))
    out = run(path, tmp_path)
    assert fast_features == []
    report = out["report"]
    assert report.facts.silent and "silent" in report.flags
    assert {r.name: r.detail for r in report.nodes}["features"] == "audio is silent"
    assert "silent" in report.summary


def test_short_audio_is_rejected(write_audio, tmp_path, fast_features) -> None:
    path = write_audio("blip.wav", np.ones(22050, np.float32) * 0.1)
    with pytest.raises(AudioLoadError, match="at least 1 s"):
        run(path, tmp_path)


def test_node_timing_recorded(song_wav, tmp_path, fast_features) -> None:
    out = run(song_wav, tmp_path)
    assert fast_features == [song_wav.name]
    assert all(r.seconds >= 0 for r in out["runs"])
    assert [r.name for r in out["runs"]][0] == "load"
