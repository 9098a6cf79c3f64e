"""Agents against the real catalogue: retraining promotion/rollback, plan apply, queries."""

from __future__ import annotations

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from polymuse.agents.plan import Metrics, build_apply_graph, propose
from polymuse.agents.retrain import Example, current_head, registry, retrain, train_head
from polymuse.agents.tools import CATALOGUE_QUERIES, ToolError, run_catalogue_query

pytestmark = pytest.mark.db


def _examples(n: int, seed: int) -> list[Example]:
    rng = np.random.default_rng(seed)
    return [Example(x, "genre.jazz", int(x[0] > 0)) for x in rng.standard_normal((n, 8))]


def test_better_head_is_promoted_and_worse_one_rolled_back(store) -> None:
    first = retrain(store, _examples(100, 1))
    assert first.decision == "promoted" and first.version == 1

    def sabotaged(train):  # a retraining that makes things worse: labels inverted
        flipped = [Example(e.embedding, e.descriptor, 1 - e.label) for e in train]
        return train_head(flipped)

    second = retrain(store, _examples(100, 2), trainer=sabotaged)
    assert second.decision == "rolled_back"
    assert "rolled back" in second.sentence()
    version, head = current_head(store)
    assert version == 1 and head is not None
    statuses = {r["version"]: r["status"] for r in registry(store)}
    assert statuses == {1: "promoted", 2: "rolled_back"}


def test_catalogue_queries_are_named_and_read_only(store) -> None:
    facts = run_catalogue_query(store, "song_count")
    assert facts[0].value == {"songs": 0, "files": 0}
    assert facts[0].query.startswith("song_count")
    with pytest.raises(ToolError):
        run_catalogue_query(store, "DROP TABLE media_entity")
    with pytest.raises(ToolError):
        run_catalogue_query(store, "songs_by_title", sql="1; DROP TABLE x")
    assert "songs_by_key" in CATALOGUE_QUERIES
    assert run_catalogue_query(store, "songs_by_key", mode="minor") == []
    with store.connection() as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'polymuse_reader'").fetchone()


def test_apply_waits_for_approval_and_logs_each_action(store) -> None:
    actions = propose(Metrics(quarantined=2, songs_added_since_training=80))
    graph = build_apply_graph(store, auto_approve=False).compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "plan-1"}}
    first = graph.invoke({"actions": [a.model_dump() for a in actions]}, config)
    assert "__interrupt__" in first
    done = graph.invoke(Command(resume=[True, False]), config)
    assert [r["status"] for r in done["results"]] == ["applied", "declined"]
    with store.connection() as conn:
        logged = conn.execute("SELECT kind, status FROM agent_action ORDER BY action_id").fetchall()
    assert logged == [("rebuild_indexes", "applied"), ("retry_quarantine", "declined")]
