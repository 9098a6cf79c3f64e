"""`analyze --goal`: a request in plain words -> the graph nodes to run and the questions after.

Intent routing over the same rules as `ask`: what the request mentions decides which nodes the
graph needs; anything it cannot place runs the full graph rather than guess.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from polymuse.nodes import NODES

# What each topic needs from the graph (load and report always run).
NEEDS: dict[str, tuple[str, ...]] = {
    r"\bkey\b|调|\bchords?\b|和弦|\btempo\b|\bbpm\b|速度|\bbeats?\b|节拍|\bstructure\b|"
    r"\bchorus\b|\bverse\b|副歌|主歌|结构|\bloud|响度": ("features",),
    r"\bstems?\b|\bvocals?\b|\bdrums?\b|\bbass\b|分离|人声": ("separate",),
    r"\bidentify\b|\brecogni[sz]e\b|\bwhich song\b|识别": ("recognize",),
    r"\bmood\b|\bgenre\b|\binstrument|\bstyle\b|情绪|风格|乐器": ("review",),
}


class GoalPlan(BaseModel):
    """The nodes to run and the questions to answer from the report afterwards."""

    nodes: list[str]
    questions: list[str]


def plan_goal(goal: str) -> GoalPlan:
    """Nodes for a plain-words request; every registered node when nothing is recognised."""
    low = goal.lower()
    wanted = {n for pattern, nodes in NEEDS.items() if re.search(pattern, low) for n in nodes}
    wanted &= set(NODES)
    nodes = [n for n in NODES if n in wanted or NODES[n].required] if wanted else list(NODES)
    return GoalPlan(nodes=nodes, questions=[goal])
