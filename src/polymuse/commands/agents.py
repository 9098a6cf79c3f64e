"""`polymuse ask|chat|review|plan|feedback`: the assistant, unattended reviews and the planner."""

from __future__ import annotations

import uuid
from pathlib import Path

import typer

from polymuse.commands.common import load_settings
from polymuse.console import out
from polymuse.errors import UserError


def _library(settings, report: Path | None):
    from polymuse.agents.tools import ReportLibrary, SongEntry
    from polymuse.commands.report import read_report

    library = ReportLibrary.from_folder(settings.output_dir)
    if report is None:
        return library, None
    rep, folder = read_report(report)
    entry = SongEntry(rep, str(folder))
    if all(e.path != entry.path for e in library.entries):
        library = ReportLibrary([*library.entries, entry])
    return library, entry


def _answer(question: str, settings, library, song, context: list[str]):
    from polymuse.agents.ask import Responder, answer_with_llm
    from polymuse.llm import build_chat_model

    model = build_chat_model(settings)
    if model is not None:
        return answer_with_llm(question, model, library)
    return Responder(library).answer(question, song=song, context=context)


def ask(
    question: str = typer.Argument(..., help="A question in English or Chinese."),
    report: Path = typer.Option(None, "--report", help="Ask about this report folder."),
    output: Path = typer.Option(None, "--output", "-o", help="Report folder root [reports/]."),
) -> None:
    """Answer a question from the analysed songs, citing the facts used."""
    settings = load_settings(output=output)
    library, song = _library(settings, report)
    out.print(_answer(question, settings, library, song, []).render(), highlight=False)


def chat(
    thread: str = typer.Option(None, "--thread", help="Resume this conversation."),
    output: Path = typer.Option(None, "--output", "-o", help="Report folder root [reports/]."),
) -> None:
    """A multi-turn conversation; turns are stored in PostgreSQL (resume with --thread)."""
    import psycopg
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.graph import START, MessagesState, StateGraph
    from psycopg.rows import dict_row

    from polymuse.store import open_store

    settings = load_settings(output=output)
    library, _ = _library(settings, None)
    thread = thread or uuid.uuid4().hex[:12]

    def respond(state: MessagesState) -> dict:
        question = str(state["messages"][-1].content)
        earlier = [str(m.content) for m in state["messages"][:-1] if isinstance(m, AIMessage)]
        titles = [e.title for e in library.entries]
        mentioned = [t for text in earlier for t in titles if t in text]
        answer = _answer(question, settings, library, None, mentioned)
        return {"messages": [AIMessage(answer.render())]}

    graph = StateGraph(MessagesState)
    graph.add_node("respond", respond)
    graph.add_edge(START, "respond")
    with (
        open_store(settings) as store,
        psycopg.connect(
            store.dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row
        ) as conn,
    ):
        saver = PostgresSaver(conn)
        saver.setup()
        app = graph.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": thread}}
        out.print(f"thread {thread} (resume with --thread {thread}); empty line ends")
        while True:
            try:
                question = typer.prompt("you", default="", show_default=False).strip()
            except typer.Abort:  # end of input (Ctrl-D or a closed pipe) ends the chat too
                break
            if not question:
                break
            result = app.invoke({"messages": [HumanMessage(question)]}, config)
            out.print(str(result["messages"][-1].content), highlight=False)


def review(
    folder: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder to review."),
    output: Path = typer.Option(None, "--output", "-o", help="Report folder root [reports/]."),
    no_analysis: bool = typer.Option(False, "--no-analysis", help="Ingest and report only."),
) -> None:
    """Review new files unattended: ingest, analyse, report, plan. Exit 1 if files failed."""
    from polymuse.agents.review import review_folder
    from polymuse.commands.analyze import run_analysis
    from polymuse.graph import build_graph, select_nodes
    from polymuse.ingest import DEFAULT_EXTRACTORS, build_extractor
    from polymuse.store import open_store

    settings = load_settings(output=output)
    graph = build_graph().compile()
    nodes = select_nodes()

    def analyse(path: Path):
        return run_analysis(graph, path, settings, nodes, quiet=True)

    with open_store(settings) as store:
        result = review_folder(
            store,
            folder,
            output_dir=settings.output_dir,
            analyse=None if no_analysis else analyse,
            extractors=[build_extractor(n, settings=settings) for n in DEFAULT_EXTRACTORS],
        )
    if result.status == "noop":
        out.print("nothing new to review")
        return
    for alert in result.alerts:
        out.print(f"alert: {alert}", highlight=False)
    out.print(f"review written to {result.out_dir}")
    raise typer.Exit(result.exit_code)


def plan(
    apply: bool = typer.Option(False, "--apply", help="Run the approved actions."),
    yes: bool = typer.Option(False, "--yes", help="Approve every action (automation)."),
) -> None:
    """Propose maintenance actions from the metrics; --apply runs the approved ones."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from polymuse.agents.plan import build_apply_graph, metrics_from_store, propose
    from polymuse.store import open_store

    settings = load_settings()
    with open_store(settings) as store:
        actions = propose(metrics_from_store(store))
        if not actions:
            out.print("nothing to do")
            return
        for i, a in enumerate(actions, 1):
            out.print(
                f"{i}. {a.kind} [{a.rule}]: {a.reason}; "
                f"effect: {a.expected_effect}; cost: {a.cost}",
                highlight=False,
            )
        if not apply:
            return
        graph = build_apply_graph(store, auto_approve=yes).compile(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        result = graph.invoke({"actions": [a.model_dump() for a in actions]}, config)
        if "__interrupt__" in result:
            decisions = [typer.confirm(f"apply {a.kind}?", default=False) for a in actions]
            result = graph.invoke(Command(resume=decisions), config)
        for r in result["results"]:
            out.print(f"{r['kind']}: {r['status']} {r['result']}", highlight=False)


def feedback(
    song: str = typer.Argument(..., help="Song title (or catalogue song id)."),
    descriptor: str = typer.Option(..., "--descriptor", help="Descriptor id or label."),
    wrong: bool = typer.Option(False, "--wrong", help="The descriptor does not apply."),
    right: bool = typer.Option(False, "--right", help="The descriptor applies."),
    note: str = typer.Option("", "--note"),
) -> None:
    """Store a correction; retraining uses it (`polymuse plan --apply`)."""
    from polymuse.store import open_store

    if wrong == right:
        raise UserError("give exactly one of --wrong or --right")
    settings = load_settings()
    with open_store(settings) as store, store.transaction("storing feedback") as conn:
        row = conn.execute(
            "SELECT entity_id FROM media_entity WHERE entity_id::text = %(s)s "
            "OR lower(title) = lower(%(s)s) ORDER BY entity_id LIMIT 1",
            {"s": song},
        ).fetchone()
        conn.execute(
            "INSERT INTO feedback (song, entity_id, descriptor, verdict, note) "
            "VALUES (%(s)s, %(e)s, %(d)s, %(v)s, %(n)s)",
            {
                "s": song,
                "e": row[0] if row else None,
                "d": descriptor,
                "v": "wrong" if wrong else "right",
                "n": note,
            },
        )
    where = f"song {row[0]}" if row else "no catalogue song matched; kept by title"
    out.print(f"feedback stored ({where})")
