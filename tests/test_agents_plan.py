"""The planner's rules: each metric pattern gives exactly its typed action."""

from __future__ import annotations

import numpy as np
import pytest

from polymuse.agents.plan import MIN_FEEDBACK, Action, Metrics, propose, reorder_with_llm
from polymuse.agents.retrain import Example, evaluate, split, train_head


@pytest.mark.parametrize(
    ("metrics", "kinds"),
    [
        (Metrics(), []),
        (Metrics(files_reviewed=10, unknown_files=["a.wav"]), ["add_unknown_songs"]),
        (
            Metrics(files_reviewed=4, unknown_files=list("abc")),
            ["add_unknown_songs", "refingerprint"],
        ),
        (Metrics(songs_added_since_training=60), ["rebuild_indexes"]),
        (Metrics(bucket_recall={"noisy": 0.5, "clean": 0.99}), ["collect_more_data"]),
        (Metrics(feedback_unused=MIN_FEEDBACK - 1), []),
        (
            Metrics(feedback_unused=MIN_FEEDBACK, feedback_wrong={"jazz": 7}),
            ["retrain_calibration"],
        ),
        (Metrics(quarantined=3), ["retry_quarantine"]),
    ],
)
def test_rules(metrics: Metrics, kinds: list[str]) -> None:
    actions = propose(metrics)
    assert [a.kind for a in actions] == kinds
    assert all(a.reason and a.expected_effect and a.cost and a.rule for a in actions)


def test_llm_may_only_reorder() -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    actions = propose(
        Metrics(quarantined=1, feedback_unused=20, unknown_files=["x"], files_reviewed=9)
    )
    model = GenericFakeChatModel(messages=iter([AIMessage("[2, 0, 1]"), AIMessage("[0, 0, 5]")]))
    assert [a.kind for a in reorder_with_llm(actions, model)] == [
        actions[2].kind,
        actions[0].kind,
        actions[1].kind,
    ]
    assert reorder_with_llm(actions, model) == actions  # not a permutation: ignored
    assert all(isinstance(a, Action) for a in actions)


def _examples(n: int, seed: int, *, flip: bool = False) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.standard_normal(8)
        label = int(x[0] > 0) ^ int(flip)
        out.append(Example(x, "genre.jazz", label))
    return out


def test_head_learns_a_separable_descriptor() -> None:
    train, test = split(_examples(120, 0))
    assert evaluate(train_head(train), test)["balanced_accuracy"] > 0.9
    assert evaluate(None, test)["balanced_accuracy"] == 0.5


def test_goal_selects_only_the_needed_nodes() -> None:
    from polymuse.agents.goal import plan_goal
    from polymuse.nodes import NODES

    assert plan_goal("just the key and the chords of the chorus").nodes == [
        "load",
        "features",
        "report",
    ]
    assert plan_goal("只要调和和弦").nodes == ["load", "features", "report"]
    assert plan_goal("tell me everything").nodes == list(NODES)
