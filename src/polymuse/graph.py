"""The analysis graph: wires the registered nodes; routing functions decide the path."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from polymuse.errors import PolymuseError, UserError
from polymuse.nodes import NODES, NodeFn, NodeSpec
from polymuse.report import NodeRun
from polymuse.runtime import Context
from polymuse.state import AnalysisInput, AnalysisState

log = logging.getLogger(__name__)


def select_nodes(
    *, only: Iterable[str] | None = None, skip: Iterable[str] | None = None
) -> list[str]:
    """Registry order, restricted by `only`/`skip`; required nodes always stay."""
    only, skip = list(only or []), list(skip or [])
    unknown = [n for n in [*only, *skip] if n not in NODES]
    if unknown:
        raise UserError(f"unknown node(s) {', '.join(unknown)}; valid: {', '.join(NODES)}")
    required = [n for n, spec in NODES.items() if spec.required]
    if bad := [n for n in skip if n in required]:
        raise UserError(f"cannot skip required node(s) {', '.join(bad)}")
    return [n for n in NODES if n in required or ((not only or n in only) and n not in skip)]


def _dependencies(name: str, selected: list[str]) -> list[str]:
    """The selected nodes `name` waits for; through unselected ones to their own parents."""
    deps: list[str] = []
    for dep in NODES[name].after:
        for d in [dep] if dep in selected else _dependencies(dep, selected):
            if d not in deps:
                deps.append(d)
    return deps


def route_after_load(state: AnalysisState) -> Literal["analyse", "report"]:
    """Silent audio has nothing to analyse: go straight to the report, which says so."""
    return "report" if "silent" in state.get("flags", []) else "analyse"


def instrument(spec: NodeSpec) -> NodeFn:
    """Time the node, record its run, and isolate failures of optional nodes."""

    def node(state: AnalysisState, runtime: Runtime[Context]) -> dict:
        started = time.perf_counter()
        backend = spec.backend(runtime.context.settings)
        try:
            update = spec.run(state, runtime)
        except Exception as exc:
            if spec.required:
                raise
            log.debug("node %s failed", spec.name, exc_info=True)
            reason = str(exc) if isinstance(exc, PolymuseError) else f"{type(exc).__name__}: {exc}"
            run = NodeRun(
                name=spec.name,
                status="failed",
                seconds=round(time.perf_counter() - started, 3),
                backend=backend,
                detail=reason,
            )
            return {"runs": [run]}
        run = NodeRun(
            name=spec.name,
            status="ok",
            seconds=round(time.perf_counter() - started, 3),
            backend=backend,
        )
        return {**update, "runs": [*update.get("runs", []), run]}

    node.__name__ = spec.name
    return node


def build_graph(
    *, only: Iterable[str] | None = None, skip: Iterable[str] | None = None
) -> StateGraph:
    """The uncompiled analysis graph over the selected nodes; compile it in the caller."""
    selected = select_nodes(only=only, skip=skip)
    graph = StateGraph(AnalysisState, context_schema=Context, input_schema=AnalysisInput)
    for name in selected:
        graph.add_node(name, instrument(NODES[name]))
    graph.add_edge(START, "load")
    middle = [n for n in selected if n not in ("load", "report")]
    first = [n for n in middle if _dependencies(n, selected) == ["load"]]

    def after_load(state: AnalysisState) -> list[str]:
        """Fan out to every node that needs only the audio, or go straight to the report."""
        return first if first and route_after_load(state) == "analyse" else ["report"]

    graph.add_conditional_edges("load", after_load, [*first, "report"])
    for name in middle:
        deps = _dependencies(name, selected)
        if deps != ["load"]:
            graph.add_edge(deps if len(deps) > 1 else deps[0], name)
    sinks = [n for n in middle if not any(n in _dependencies(m, selected) for m in middle)]
    if sinks:
        graph.add_edge(sinks, "report")
    graph.add_edge("report", END)
    return graph
