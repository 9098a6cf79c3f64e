"""`report`: assemble the `AnalysisReport` from the state and write the report folder."""

from __future__ import annotations

from datetime import UTC, datetime

from langgraph.runtime import Runtime

from polymuse import __version__
from polymuse.render.files import report_folder, write_report
from polymuse.render.summary import summarise
from polymuse.report import AnalysisReport, NodeRun
from polymuse.runtime import Context
from polymuse.semantic_report import write_embeddings
from polymuse.state import AnalysisState

PLOT_SAMPLE_RATE = 22050


def report(state: AnalysisState, runtime: Runtime[Context]) -> dict:
    """Validate the node outputs into a report, then write JSON, Markdown, HTML and JAMS."""
    from polymuse.nodes import NODES  # the registry imports this module

    rep = build_report(state, registered=list(NODES))
    folder = report_folder(runtime.context.settings.output_dir, rep.source)
    y = runtime.context.audio.load(state["source"].path, sample_rate=PLOT_SAMPLE_RATE)
    write_report(rep, folder, y, PLOT_SAMPLE_RATE)
    write_embeddings(folder, rep.semantic)
    return {"report": rep, "report_dir": str(folder)}


def build_report(state: AnalysisState, *, registered: list[str]) -> AnalysisReport:
    """The report of a finished run; registered nodes that did not run are listed as skipped."""
    runs = list(state.get("runs", []))
    done = {r.name for r in runs}
    flags = list(dict.fromkeys(state.get("flags", [])))
    why = "audio is silent" if "silent" in flags else "not selected"
    runs += [
        NodeRun(name=n, status="skipped", detail=why)
        for n in registered
        if n not in done and n not in ("load", "report")
    ]
    source, facts, features = state["source"], state["facts"], state.get("features")
    return AnalysisReport.model_validate(
        {
            "polymuse_version": __version__,
            "generated_at": datetime.now(UTC),
            "title": source.file_name,
            "summary": summarise(
                source,
                facts,
                features,
                state.get("semantic"),
                state.get("separation"),
                state.get("recognition"),
            ),
            "source": source,
            "facts": facts,
            "features": features,
            "separation": state.get("separation"),
            "semantic": state.get("semantic"),
            "melody": state.get("melody"),
            "recognition": state.get("recognition"),
            "flags": flags,
            "nodes": runs,
        }
    )
