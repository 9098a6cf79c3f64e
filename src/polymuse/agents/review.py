"""`review DIR`: unattended ingest, analysis and review report of a folder; re-runs are no-ops.

Files whose content was reviewed before are left alone, so a second run over the same folder
does nothing. New content the recognizer identifies as a catalogue song (an excerpt, an edit,
another encoding) is reported as known; the rest is ingested through the catalogue pipeline
(corrupt files are quarantined, a killed run resumes), analysed with the analysis graph, and
summarised in `<output>/reviews/<timestamp>/` (review.json and review.md) with alerts and the
plan.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from polymuse.agents.plan import Action, metrics_from_store, propose
from polymuse.errors import PolymuseError
from polymuse.ingest import Extractor, IngestOptions, run_ingest
from polymuse.ingest.walk import walk
from polymuse.recognition import service
from polymuse.recognition.models import SongMatch
from polymuse.report import AnalysisReport
from polymuse.store import Store
from polymuse.tools import audio, fingerprint

log = logging.getLogger(__name__)
LOW_CONFIDENCE = 0.5


class ReviewFile(BaseModel):
    path: str
    outcome: str = Field(description="known | new | duplicate | failed")
    content_hash: str | None = None
    song_id: int | None = None
    report: str | None = None
    key: str | None = None
    key_confidence: float | None = None
    tempo_bpm: float | None = None
    detail: str = ""


class ReviewResult(BaseModel):
    review_id: int
    status: str = Field(description="finished | noop")
    folder: str
    out_dir: str | None = None
    files: list[ReviewFile] = Field(default_factory=list)
    alerts: list[str] = Field(default_factory=list)
    plan: list[Action] = Field(default_factory=list)
    changes: dict[str, int] = Field(default_factory=dict, description="since the last review")

    def of(self, outcome: str) -> list[ReviewFile]:
        return [f for f in self.files if f.outcome == outcome]

    @property
    def exit_code(self) -> int:
        """0: all well; 1: some files failed."""
        return 1 if self.of("failed") else 0


Analyser = Callable[[Path], tuple[Any, str]]


def _digest(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def review_folder(
    store: Store,
    folder: Path,
    *,
    output_dir: Path,
    analyse: Analyser | None = None,
    extractors: Sequence[Extractor] = (),
    jobs: int = 1,
) -> ReviewResult:
    """Review the new content under `folder`; see the module docstring.

    `extractors` run on ingested files, as in `catalog add`; recognising later copies of the
    new songs needs the landmark extractor (`polymuse-triplets`) among them.
    """
    entries, _ = walk([folder])
    hashes = {e.path: _digest(e.path) for e in entries}
    with store.connection("reading earlier reviews") as conn:
        seen = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT content_hash FROM review_file WHERE content_hash IS NOT NULL"
            ).fetchall()
        }
        seen_paths = {
            r[0] for r in conn.execute("SELECT DISTINCT file_path FROM review_file").fetchall()
        }
        row = conn.execute(
            "INSERT INTO review_run (folder) VALUES (%(f)s) RETURNING review_id",
            {"f": str(folder)},
        ).fetchone()
    review_id = int(row[0])
    todo = [
        e.path
        for e in entries
        if (hashes[e.path] not in seen if hashes[e.path] else e.path not in seen_paths)
    ]
    result = ReviewResult(review_id=review_id, status="noop", folder=str(folder))
    if not todo:
        _finish(store, result)
        return result
    with store.connection("counting songs") as conn:
        songs_before = conn.execute("SELECT count(*) FROM media_entity").fetchone()[0]
    recognised = _recognise(store, todo) if songs_before else {}
    for path, match in recognised.items():
        result.files.append(
            ReviewFile(
                path=path,
                outcome="known",
                content_hash=hashes[path],
                song_id=match.song_id,
                detail=f"recording of {match.title!r} (song {match.song_id}) from "
                f"{match.reference_start_s:.1f} s, confidence {match.confidence:.2f}",
            )
        )
    todo = [path for path in todo if path not in recognised]
    summary = run_ingest(store, todo, IngestOptions(extractors=extractors, jobs=jobs))
    first_of: dict[str, str] = {}
    reports: dict[str, Any] = {}
    # The copy that was stored is the original; later copies of its content are duplicates.
    ordered = sorted(summary.outcomes, key=lambda o: (o.status != "added", o.path))
    for outcome in ordered:
        digest = hashes.get(outcome.path)
        file = ReviewFile(path=outcome.path, outcome="known", content_hash=digest)
        if outcome.status == "quarantined" or (
            outcome.status == "skipped" and "quarantined" in outcome.reason
        ):
            file.outcome, file.detail = "failed", outcome.reason
        elif digest in first_of:
            file.outcome, file.detail = "duplicate", f"same content as {first_of[digest]}"
        elif outcome.status == "added" and outcome.song_id is not None:
            file.outcome, file.song_id = "new", outcome.song_id
        else:
            file.detail = outcome.reason
        if digest and file.outcome != "failed":
            first_of.setdefault(digest, outcome.path)
        new_report = _analyse(file, analyse) if file.outcome == "new" and analyse else None
        if new_report is not None:
            reports[file.path] = new_report
        result.files.append(file)
    with store.connection("counting songs") as conn:
        songs_after = conn.execute("SELECT count(*) FROM media_entity").fetchone()[0]
    result.status = "finished"
    result.changes = {
        "songs_added": int(songs_after - songs_before),
        "files_reviewed": len(result.files),
    }
    low = [
        f
        for f in result.files
        if f.key_confidence is not None and f.key_confidence < LOW_CONFIDENCE
    ]
    if failed := result.of("failed"):
        result.alerts.append(f"{len(failed)} file(s) failed and were quarantined")
    if new := result.of("new"):
        result.alerts.append(f"{len(new)} unknown song(s) were added to the catalogue")
    if low:
        result.alerts.append(f"{len(low)} low-confidence key estimate(s)")
    metrics = metrics_from_store(
        store,
        review_summary={
            "files": len(result.files),
            "unknown_files": [f.path for f in result.of("new")],
            "low_confidence": {"key": len(low)} if low else {},
        },
    )
    # The new songs were just added, so planning to add them again would be a loop.
    result.plan = [a for a in propose(metrics) if a.kind != "add_unknown_songs"]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-{review_id}"
    out = Path(output_dir) / "reviews" / stamp
    out.mkdir(parents=True, exist_ok=True)
    result.out_dir = str(out)
    (out / "review.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")
    (out / "review.md").write_text(to_markdown(result), encoding="utf-8")
    _finish(store, result, reports)
    return result


def _recognise(store: Store, paths: list[str]) -> dict[str, SongMatch]:
    """The files that are recordings of catalogue songs: excerpts, edits, other encodings.

    They are not ingested again. Files that cannot be decoded are left to the ingest, which
    quarantines them with the reason.
    """
    recognizer = service.recognizer_for(store)
    found = {}
    for path in paths:
        try:
            y = audio.load(audio.probe(path), sample_rate=fingerprint.ANALYSIS_RATE)
        except PolymuseError:
            continue
        answer, _ = service.identify_file(recognizer, y, fingerprint.ANALYSIS_RATE)
        if answer.match is not None and answer.status == "match":
            found[path] = answer.match
    return found


def _analyse(file: ReviewFile, analyse: Analyser) -> Any:
    """Analyse one new file into `file`; the report, or None when the analysis failed."""
    try:
        report, folder = analyse(Path(file.path))
    except Exception as exc:  # one bad analysis is recorded; the review goes on
        log.debug("analysis of %s failed", file.path, exc_info=True)
        file.detail = f"analysis failed: {type(exc).__name__}: {exc}"
        return None
    file.report = folder
    features = getattr(report, "features", None)
    if features and features.key:
        file.key, file.key_confidence = features.key.label, features.key.confidence
    if features and features.rhythm:
        file.tempo_bpm = features.rhythm.tempo_bpm
    return report


def _finish(store: Store, result: ReviewResult, reports: dict[str, Any] | None = None) -> None:
    """Record the review's files, index their reports for `ask`, and close the run."""
    with store.transaction("recording the review") as conn:
        for f in result.files:
            conn.execute(
                "INSERT INTO review_file (review_id, content_hash, file_path, outcome, "
                "entity_id, report_path, confidence, detail) VALUES (%(r)s, %(h)s, %(p)s, "
                "%(o)s, %(e)s, %(rep)s, %(c)s, %(d)s) ON CONFLICT DO NOTHING",
                {
                    "r": result.review_id,
                    "h": f.content_hash,
                    "p": f.path,
                    "o": f.outcome,
                    "e": f.song_id,
                    "rep": f.report,
                    "c": f.key_confidence,
                    "d": f.detail,
                },
            )
            if (report := (reports or {}).get(f.path)) is not None and f.report:
                _index_report(conn, f, report)
        conn.execute(
            "UPDATE review_run SET status = %(s)s, finished_at = now(), out_dir = %(o)s, "
            "summary = %(j)s WHERE review_id = %(r)s",
            {
                "s": result.status,
                "o": result.out_dir,
                "j": json.dumps({"alerts": result.alerts, "changes": result.changes}),
                "r": result.review_id,
            },
        )


def to_markdown(result: ReviewResult) -> str:
    """The review report: summary table, unknown songs, low confidence, failures, plan."""
    lines = [f"# Review of {result.folder}", "", "## Alerts", ""]
    lines += [f"- {a}" for a in result.alerts] or ["- none"]
    lines += [
        "",
        "## Summary",
        "",
        "| file | outcome | key | tempo | detail |",
        "|---|---|---|---|---|",
    ]
    for f in result.files:
        tempo = f"{f.tempo_bpm:.1f}" if f.tempo_bpm else ""
        lines.append(
            f"| {Path(f.path).name} | {f.outcome} | {f.key or ''} | {tempo} | {f.detail} |"
        )
    lines += ["", "## Unknown songs (added to the catalogue)", ""]
    lines += [f"- {f.path}" for f in result.of("new")] or ["- none"]
    lines += ["", "## Low-confidence results", ""]
    lines += [
        f"- {f.path}: key {f.key} ({f.key_confidence:.2f})"
        for f in result.files
        if f.key_confidence is not None and f.key_confidence < LOW_CONFIDENCE
    ] or ["- none"]
    lines += ["", "## Failures", ""]
    lines += [f"- {f.path}: {f.detail}" for f in result.of("failed")] or ["- none"]
    lines += ["", "## Changes since the last review", ""]
    lines += [f"- {k}: {v}" for k, v in result.changes.items()]
    lines += ["", "## Plan", ""]
    lines += [
        f"- **{a.kind}** — {a.reason}; effect: {a.expected_effect}; cost: {a.cost}"
        for a in result.plan
    ] or ["- nothing to do"]
    return "\n".join(lines) + "\n"


def _index_report(conn: Any, file: ReviewFile, report: AnalysisReport) -> None:
    """Upsert the report's headline facts into report_index (queried by `songs_by_key`)."""
    features = report.features
    key = features.key if features else None
    conn.execute(
        "INSERT INTO report_index (report_path, content_hash, entity_id, title, key_label, "
        "key_mode, tempo_bpm, duration_s) VALUES (%(p)s, %(h)s, %(e)s, %(t)s, %(k)s, %(m)s, "
        "%(b)s, %(d)s) ON CONFLICT (report_path) DO UPDATE SET content_hash = "
        "EXCLUDED.content_hash, entity_id = EXCLUDED.entity_id, title = EXCLUDED.title, "
        "key_label = EXCLUDED.key_label, key_mode = EXCLUDED.key_mode, tempo_bpm = "
        "EXCLUDED.tempo_bpm, duration_s = EXCLUDED.duration_s, indexed_at = now()",
        {
            "p": file.report,
            "h": report.source.content_hash,
            "e": file.song_id,
            "t": report.title,
            "k": key.label if key else None,
            "m": key.mode if key else None,
            "b": file.tempo_bpm,
            "d": report.source.duration_s,
        },
    )
