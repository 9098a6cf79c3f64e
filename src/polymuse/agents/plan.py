"""The planning agent: metrics in, typed actions out, each with reason, expected effect, cost.

The rules are explicit (see `RULES`) and deterministic. A chat model may reorder the proposed
actions or explain them, but can only choose among these typed actions. `apply_plan` runs a
small LangGraph graph whose approval step is an `interrupt`; `auto_approve` is `--yes`.
Every applied, declined or failed action is logged in `agent_action`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, Field

from polymuse.store import Store

ActionKind = Literal[
    "add_unknown_songs",
    "refingerprint",
    "rebuild_indexes",
    "collect_more_data",
    "retrain_calibration",
    "retry_quarantine",
]

MIN_FEEDBACK = 10
UNKNOWN_RATE_REFINGERPRINT = 0.5
WEAK_BUCKET_RECALL = 0.8
CHANGES_FOR_REINDEX = 50
QUARANTINE_ALERT = 1


class Metrics(BaseModel):
    """What the planner reads; every field has a neutral default."""

    files_reviewed: int = 0
    unknown_files: list[str] = Field(default_factory=list)
    quarantined: int = 0
    low_confidence: dict[str, int] = Field(default_factory=dict, description="descriptor -> n")
    feedback_unused: int = 0
    feedback_wrong: dict[str, int] = Field(default_factory=dict)
    songs_added_since_training: int = 0
    bucket_recall: dict[str, float] = Field(default_factory=dict, description="eval bucket")

    @property
    def unknown_rate(self) -> float:
        return len(self.unknown_files) / self.files_reviewed if self.files_reviewed else 0.0


class Action(BaseModel):
    """One proposed action."""

    kind: ActionKind
    reason: str
    expected_effect: str
    cost: str
    params: dict[str, Any] = Field(default_factory=dict)
    rule: str


def _unknown(m: Metrics) -> list[Action]:
    if not m.unknown_files:
        return []
    return [
        Action(
            kind="add_unknown_songs",
            rule="R1 unknown songs found",
            reason=f"{len(m.unknown_files)} reviewed file(s) matched no catalogue song",
            expected_effect="they are recognised in later reviews",
            cost=f"ingest of {len(m.unknown_files)} file(s)",
            params={"paths": m.unknown_files},
        )
    ]


def _refingerprint(m: Metrics) -> list[Action]:
    if m.files_reviewed < 4 or m.unknown_rate < UNKNOWN_RATE_REFINGERPRINT:
        return []
    return [
        Action(
            kind="refingerprint",
            rule="R2 unknown rate high",
            reason=f"unknown-song rate {m.unknown_rate:.0%} >= {UNKNOWN_RATE_REFINGERPRINT:.0%}",
            expected_effect="denser landmarks find more matches in degraded audio",
            cost="re-extracting fingerprints of the whole catalogue",
            params={"density": "high"},
        )
    ]


def _reindex(m: Metrics) -> list[Action]:
    if m.songs_added_since_training < CHANGES_FOR_REINDEX:
        return []
    return [
        Action(
            kind="rebuild_indexes",
            rule="R3 many catalogue changes",
            reason=f"{m.songs_added_since_training} songs added since the last rebuild",
            expected_effect="look-ups stay fast after bulk inserts",
            cost="REINDEX of the posting and vector indexes (minutes on large catalogues)",
        )
    ]


def _weak_buckets(m: Metrics) -> list[Action]:
    return [
        Action(
            kind="collect_more_data",
            rule="R4 weak evaluation bucket",
            reason=f"recall {recall:.2f} < {WEAK_BUCKET_RECALL} in bucket {bucket}",
            expected_effect=f"evaluation and calibration cover {bucket} better",
            cost="manual: find and ingest more songs of this kind",
            params={"bucket": bucket},
        )
        for bucket, recall in sorted(m.bucket_recall.items())
        if recall < WEAK_BUCKET_RECALL
    ]


def _retrain(m: Metrics) -> list[Action]:
    if m.feedback_unused < MIN_FEEDBACK:
        return []
    worst = sorted(m.feedback_wrong.items(), key=lambda kv: -kv[1])[:3]
    return [
        Action(
            kind="retrain_calibration",
            rule="R5 enough new feedback",
            reason=f"{m.feedback_unused} corrections not yet used"
            + (f"; most for {', '.join(d for d, _ in worst)}" if worst else ""),
            expected_effect="fewer wrong descriptors; promoted only if better on held-out data",
            cost="seconds (small head on stored embeddings)",
        )
    ]


def _quarantine(m: Metrics) -> list[Action]:
    if m.quarantined < QUARANTINE_ALERT:
        return []
    return [
        Action(
            kind="retry_quarantine",
            rule="R6 quarantined files",
            reason=f"{m.quarantined} file(s) are quarantined",
            expected_effect="files fixed since (re-encoded, completed) join the catalogue",
            cost="one ingest pass over the quarantined paths",
        )
    ]


RULES: list[Callable[[Metrics], list[Action]]] = [
    _unknown,
    _refingerprint,
    _reindex,
    _weak_buckets,
    _retrain,
    _quarantine,
]


def propose(metrics: Metrics) -> list[Action]:
    """The actions the rules call for, in rule order."""
    return [action for rule in RULES for action in rule(metrics)]


def reorder_with_llm(actions: list[Action], model: Any) -> list[Action]:
    """Let a chat model order the actions; anything but a permutation of them is ignored."""
    from polymuse.llm import translate_llm_errors

    listing = "\n".join(f"{i}: {a.kind} - {a.reason}" for i, a in enumerate(actions))
    with translate_llm_errors("ordering the plan"):
        reply = model.invoke(
            "Order these maintenance actions by priority. Reply with the indices only, as a "
            f"JSON list.\n{listing}"
        )
    try:
        order = json.loads(str(reply.content))
    except (TypeError, ValueError):
        return actions
    if sorted(order) != list(range(len(actions))):
        return actions
    return [actions[i] for i in order]


def metrics_from_store(store: Store, *, review_summary: dict | None = None) -> Metrics:
    """Catalogue-side metrics, plus the last review's unknown files when given."""
    with store.connection("reading planner metrics") as conn:
        quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        unused = conn.execute("SELECT count(*) FROM feedback WHERE used_by IS NULL").fetchone()[0]
        wrong = dict(
            conn.execute(
                "SELECT descriptor, count(*) FROM feedback WHERE verdict = 'wrong' "
                "AND used_by IS NULL GROUP BY 1"
            ).fetchall()
        )
        added = conn.execute(
            "SELECT count(*) FROM media_entity WHERE created_at > coalesce((SELECT max("
            "created_at) FROM model_registry), '-infinity')"
        ).fetchone()[0]
    summary = review_summary or {}
    return Metrics(
        files_reviewed=int(summary.get("files", 0)),
        unknown_files=list(summary.get("unknown_files", [])),
        low_confidence=dict(summary.get("low_confidence", {})),
        quarantined=int(quarantined),
        feedback_unused=int(unused),
        feedback_wrong={k: int(v) for k, v in wrong.items()},
        songs_added_since_training=int(added),
        bucket_recall=dict(summary.get("bucket_recall", {})),
    )


# -- applying -------------------------------------------------------------------------------

Executor = Callable[[Store, Action], dict[str, Any]]


def _exec_add_unknown(store: Store, action: Action) -> dict[str, Any]:
    from polymuse.ingest import IngestOptions, run_ingest

    summary = run_ingest(store, action.params["paths"], IngestOptions(jobs=1))
    return {"added": len(summary.added), "quarantined": len(summary.quarantined)}


def _exec_reindex(store: Store, action: Action) -> dict[str, Any]:
    with store.connection("rebuilding indexes") as conn:
        conn.execute("REINDEX TABLE fingerprint_posting")
    return {"reindexed": ["fingerprint_posting"]}


def _exec_retrain(store: Store, action: Action) -> dict[str, Any]:
    from polymuse.agents.retrain import examples_from_store, retrain, song_embedding

    examples = examples_from_store(store, lambda e: song_embedding(store, e))
    outcome = retrain(store, examples)
    with store.transaction("marking feedback used") as conn:
        conn.execute(
            "UPDATE feedback SET used_by = %(v)s WHERE used_by IS NULL", {"v": outcome.version}
        )
    return outcome.model_dump(mode="json") | {"summary": outcome.sentence()}


def _manual(store: Store, action: Action) -> dict[str, Any]:
    return {"manual": True, "todo": action.cost}


EXECUTORS: dict[str, Executor] = {
    "add_unknown_songs": _exec_add_unknown,
    "rebuild_indexes": _exec_reindex,
    "retrain_calibration": _exec_retrain,
    "refingerprint": _manual,
    "collect_more_data": _manual,
    "retry_quarantine": _manual,
}


class PlanState(TypedDict, total=False):
    """The apply graph's state."""

    actions: list[dict]
    """Proposed actions (Action dumps)."""
    approved: list[bool]
    """One decision per action, from the interrupt or `--yes`."""
    results: list[dict]
    """What each action did."""


def build_apply_graph(
    store: Store, *, auto_approve: bool, executors: dict[str, Executor] | None = None
):
    """approve (interrupt unless auto) -> execute; compile with a checkpointer."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    run = executors or EXECUTORS

    def approve(state: PlanState) -> dict:
        if auto_approve:
            return {"approved": [True] * len(state["actions"])}
        decisions = interrupt({"actions": state["actions"]})
        return {"approved": [bool(d) for d in decisions]}

    def execute(state: PlanState) -> dict:
        results = []
        for raw, ok in zip(state["actions"], state["approved"], strict=True):
            action = Action.model_validate(raw)
            status, result = "declined", {}
            if ok:
                try:
                    result, status = run[action.kind](store, action), "applied"
                except Exception as exc:  # one failing action is logged; the rest go on
                    result, status = {"error": f"{type(exc).__name__}: {exc}"}, "failed"
            log_action(store, action, status, result, "auto" if auto_approve else "user")
            results.append({"kind": action.kind, "status": status, "result": result})
        return {"results": results}

    graph = StateGraph(PlanState)
    graph.add_node("approve", approve)
    graph.add_node("execute", execute)
    graph.add_edge(START, "approve")
    graph.add_edge("approve", "execute")
    graph.add_edge("execute", END)
    return graph


def log_action(
    store: Store, action: Action, status: str, result: dict[str, Any], approved_by: str
) -> None:
    with store.transaction("logging a planner action") as conn:
        conn.execute(
            "INSERT INTO agent_action (kind, params, reason, status, approved_by, result) "
            "VALUES (%(k)s, %(p)s, %(r)s, %(s)s, %(a)s, %(res)s)",
            {
                "k": action.kind,
                "p": json.dumps(action.params),
                "r": action.reason,
                "s": status,
                "a": approved_by,
                "res": json.dumps(result, default=str),
            },
        )
