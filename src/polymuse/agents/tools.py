"""Read-only tools over stored reports and the catalogue: plain functions, plus LangChain tools.

Every tool returns `Fact`s: a value together with where it came from (report path and field,
a time range, or the name and parameters of a catalogue query). Answers are written only from
these facts, so every statement can be traced. Catalogue queries are a fixed set of named,
parametrised statements run in a read-only transaction under the `polymuse_reader` role; no
SQL text from a user or a model ever reaches the database.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, Field, ValidationError

from polymuse.errors import StoreError, UserError
from polymuse.report import AnalysisReport, TimedLabel

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from polymuse.store import Store

READER_ROLE = "polymuse_reader"


class ToolError(UserError):
    """A tool was asked for something that does not exist (unknown song, field, query)."""


class Fact(BaseModel):
    """One statement with its source; `value` is exactly what the source holds."""

    song: str | None = None
    field: str = Field(description="dotted report field, or the catalogue query's name")
    value: Any = None
    report: str | None = Field(None, description="report folder the value was read from")
    time_range: tuple[float, float] | None = None
    query: str | None = Field(None, description="catalogue query name and parameters")

    def cite(self) -> str:
        """A short source note: `report/path: field [t0-t1 s]` or `catalogue: query(...)`."""
        if self.query:
            return f"catalogue query {self.query}"
        where = f"{self.report}: {self.field}"
        if self.time_range:
            where += f" [{self.time_range[0]:.1f}-{self.time_range[1]:.1f} s]"
        return where


@dataclass(frozen=True)
class SongEntry:
    """One stored report and where it lives."""

    report: AnalysisReport
    path: str

    @property
    def title(self) -> str:
        return Path(self.report.title).stem


class ReportLibrary:
    """The analysed songs: every `report.json` under a folder (or given directly)."""

    def __init__(self, entries: Iterable[SongEntry] = ()) -> None:
        self.entries = sorted(entries, key=lambda e: (e.title.lower(), e.path))

    @classmethod
    def from_folder(cls, root: Path) -> ReportLibrary:
        """Load every valid report under `root`; invalid or foreign JSON files are skipped."""
        entries = []
        for file in sorted(Path(root).rglob("report.json")):
            try:
                report = AnalysisReport.model_validate_json(file.read_text(encoding="utf-8"))
            except (ValidationError, OSError, UnicodeDecodeError):
                continue
            entries.append(SongEntry(report, str(file.parent)))
        return cls(entries)

    def titles(self) -> list[str]:
        return [e.title for e in self.entries]

    def get(self, title: str) -> SongEntry:
        """The song with this title (exact, then normalised, then fuzzy), or ToolError."""
        found = find_song(self, title)
        if found is None:
            raise ToolError(f"no analysed song matches {title!r}; known: {len(self.entries)}")
        return found


# -- field access ---------------------------------------------------------------------------

FIELDS: dict[str, str] = {
    "key": "features.key.label",
    "key_confidence": "features.key.confidence",
    "mode": "features.key.mode",
    "tonic": "features.key.tonic",
    "tempo": "features.rhythm.tempo_bpm",
    "time_signature": "features.rhythm.time_signature",
    "beats_per_bar": "features.rhythm.beats_per_bar",
    "chords": "features.chords",
    "structure": "features.structure",
    "loudness": "features.loudness.integrated_lufs",
    "instruments": "semantic.categories.instruments",
    "mood": "semantic.categories.mood",
    "genre": "semantic.categories.genre",
    "texture": "semantic.categories.texture",
    "duration": "source.duration_s",
    "file": "source.path",
    "summary": "summary",
}


def resolve(report: AnalysisReport, dotted: str) -> Any:
    """The value at a dotted path (`features.key.label`); None where any step is missing."""
    value: Any = report
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    return value


def normalise(text: str) -> str:
    """Case-, width- and punctuation-folded text for matching titles."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\W_]+", " ", text).strip()


def find_song(library: ReportLibrary, name: str, *, cutoff: float = 0.75) -> SongEntry | None:
    """The song whose title best matches `name` (fuzzy), or None below `cutoff`."""
    wanted = normalise(name)
    by_norm = {normalise(e.title): e for e in library.entries}
    if wanted in by_norm:
        return by_norm[wanted]
    best = difflib.get_close_matches(wanted, list(by_norm), n=1, cutoff=cutoff)
    return by_norm[best[0]] if best else None


def songs_in_text(library: ReportLibrary, text: str, *, cutoff: float = 0.84) -> list[SongEntry]:
    """Songs named in a free text, in order of appearance (fuzzy over same-length spans)."""
    norm = normalise(text)
    found: list[tuple[int, int, SongEntry]] = []
    taken: list[tuple[int, int]] = []
    for entry in sorted(library.entries, key=lambda e: -len(e.title)):
        title = normalise(entry.title)
        if not title:
            continue
        pos = norm.find(title)
        span = (pos, pos + len(title)) if pos >= 0 else _fuzzy_span(norm, title, cutoff)
        if span and not any(span[0] < b and a < span[1] for a, b in taken):
            taken.append(span)
            found.append((span[0], span[1], entry))
    return [e for _, _, e in sorted(found, key=lambda f: f[0])]


def _fuzzy_span(text: str, title: str, cutoff: float) -> tuple[int, int] | None:
    """The span of `text` most similar to `title` (word windows, or characters for CJK)."""
    if len(title) < 4:
        return None
    best, best_span = cutoff, None
    n = len(title)
    for size in (n - 1, n, n + 1):
        for start in range(0, max(0, len(text) - size) + 1):
            if start and text[start - 1] != " " and " " in title:
                continue
            window = text[start : start + size]
            ratio = difflib.SequenceMatcher(None, window, title).ratio()
            if ratio > best:
                best, best_span = ratio, (start, start + size)
    return best_span


# -- report tools ---------------------------------------------------------------------------


def list_reports(library: ReportLibrary) -> list[Fact]:
    """One fact per analysed song: its title and report folder."""
    return [
        Fact(song=e.title, field="title", value=e.title, report=e.path) for e in library.entries
    ]


def search_reports(library: ReportLibrary, text: str) -> list[Fact]:
    """Songs whose title or file name contain `text` or resemble it."""
    wanted = normalise(text)
    hits = [e for e in library.entries if wanted and wanted in normalise(e.report.source.path)]
    fuzzy = find_song(library, text, cutoff=0.6)
    if fuzzy and fuzzy not in hits:
        hits.append(fuzzy)
    return [Fact(song=e.title, field="title", value=e.title, report=e.path) for e in hits]


def read_field(library: ReportLibrary, song: str, field: str) -> Fact:
    """A report field by short name (`key`, `tempo`, ...) or dotted path; value None if absent."""
    entry = library.get(song)
    dotted = FIELDS.get(field, field)
    if dotted.split(".")[0] not in AnalysisReport.model_fields:
        raise ToolError(f"unknown report field {field!r}; short names: {', '.join(FIELDS)}")
    value = resolve(entry.report, dotted)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    return Fact(song=entry.title, field=dotted, value=value, report=entry.path)


def songs_where(
    library: ReportLibrary,
    *,
    mode: str | None = None,
    tonic: str | None = None,
    tempo_min: float | None = None,
    tempo_max: float | None = None,
    time_signature: str | None = None,
    descriptor: str | None = None,
) -> list[Fact]:
    """Songs meeting every given condition; each match returns the facts that decide it.

    Songs without the needed field never match (their value is not in the data)."""
    facts: list[Fact] = []
    for entry in library.entries:
        rep, found = entry.report, []
        key = resolve(rep, "features.key")
        if mode or tonic:
            if key is None or (mode and key.mode != mode):
                continue
            if tonic and normalise(key.tonic) != normalise(tonic):
                continue
            found.append(("features.key.label", key.label))
        if tempo_min is not None or tempo_max is not None:
            bpm = resolve(rep, "features.rhythm.tempo_bpm")
            if bpm is None or (tempo_min is not None and bpm <= tempo_min):
                continue
            if tempo_max is not None and bpm >= tempo_max:
                continue
            found.append(("features.rhythm.tempo_bpm", bpm))
        if time_signature:
            sig = resolve(rep, "features.rhythm.time_signature")
            if sig != time_signature:
                continue
            found.append(("features.rhythm.time_signature", sig))
        if descriptor:
            score = descriptor_score(rep, descriptor)
            if score is None or score < 0.5:
                continue
            found.append((f"semantic.scores.{descriptor}", score))
        facts += [
            Fact(song=entry.title, field=f, value=v, report=entry.path) for f, v in found
        ] or [Fact(song=entry.title, field="title", value=entry.title, report=entry.path)]
    return facts


def descriptor_score(report: AnalysisReport, descriptor: str) -> float | None:
    """A descriptor's confidence from the report's semantic section, if the report has one."""
    semantic = getattr(report, "semantic", None)
    scores = getattr(semantic, "scores", None) or {}
    return scores.get(descriptor)


def extreme(library: ReportLibrary, field: str, *, highest: bool) -> Fact | None:
    """The song with the highest (or lowest) numeric `field` among those that have it."""
    dotted = FIELDS.get(field, field)
    have = [(resolve(e.report, dotted), e) for e in library.entries]
    have = [(v, e) for v, e in have if isinstance(v, int | float)]
    if not have:
        return None
    value, entry = (max if highest else min)(have, key=lambda p: p[0])
    return Fact(song=entry.title, field=dotted, value=value, report=entry.path)


def section(library: ReportLibrary, song: str, label: str) -> list[Fact]:
    """Every section of the song with this label (`chorus`...), first one first."""
    entry = library.get(song)
    parts = resolve(entry.report, "features.structure") or []
    return [
        Fact(
            song=entry.title,
            field=f"features.structure[{i}]",
            value=s.label,
            report=entry.path,
            time_range=(s.start, s.end),
        )
        for i, s in enumerate(parts)
        if normalise(s.label).startswith(normalise(label))
    ]


def evidence(library: ReportLibrary, song: str, start: float, end: float) -> list[Fact]:
    """Sections and chords overlapping [start, end) seconds, each with its own time range."""
    if end <= start:
        raise ToolError(f"empty time range {start}-{end} s")
    entry = library.get(song)
    facts = []
    for name in ("structure", "chords"):
        labels: list[TimedLabel] = resolve(entry.report, f"features.{name}") or []
        facts += [
            Fact(
                song=entry.title,
                field=f"features.{name}[{i}]",
                value=lab.label,
                report=entry.path,
                time_range=(lab.start, lab.end),
            )
            for i, lab in enumerate(labels)
            if lab.start < end and lab.end > start
        ]
    return facts


def compare(library: ReportLibrary, first: str, second: str) -> list[Fact]:
    """Key, tempo, time signature, loudness and duration of two songs, side by side."""
    facts = []
    for song in (first, second):
        for field in ("key", "tempo", "time_signature", "loudness", "duration"):
            fact = read_field(library, song, field)
            if fact.value is not None:
                facts.append(fact)
    return facts


# -- catalogue queries ----------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueQuery:
    """A named, parametrised read-only statement; parameters are checked before it runs."""

    name: str
    doc: str
    sql: str
    params: dict[str, type]


CATALOGUE_QUERIES: dict[str, CatalogueQuery] = {
    q.name: q
    for q in (
        CatalogueQuery(
            "song_count",
            "number of songs and files",
            "SELECT (SELECT count(*) FROM "
            "media_entity) AS songs, (SELECT count(*) FROM audio_object WHERE object_type = "
            "'asset') AS files",
            {},
        ),
        CatalogueQuery(
            "songs_by_title",
            "songs whose title or artist contains a text",
            "SELECT entity_id AS song_id, title, artist FROM media_entity WHERE title ILIKE "
            "'%%' || %(text)s || '%%' OR artist ILIKE '%%' || %(text)s || '%%' ORDER BY title "
            "LIMIT %(limit)s",
            {"text": str, "limit": int},
        ),
        CatalogueQuery(
            "quarantine_count",
            "files refused by ingest, per stage",
            "SELECT stage, count(*) AS files FROM quarantine GROUP BY stage ORDER BY stage",
            {},
        ),
        CatalogueQuery(
            "sets",
            "catalogue sets and their sizes",
            "SELECT set_type, set_name, count(*) AS members FROM set_membership "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            {},
        ),
        CatalogueQuery(
            "feedback_by_descriptor",
            "user corrections per descriptor",
            "SELECT descriptor, verdict, count(*) AS n FROM feedback GROUP BY 1, 2 ORDER BY 1, 2",
            {},
        ),
        CatalogueQuery(
            "songs_by_key",
            "indexed reports in a mode (major/minor), optionally a tempo range",
            "SELECT title, key_label, tempo_bpm, report_path FROM report_index WHERE "
            "(%(mode)s::text IS NULL OR key_mode = %(mode)s) AND (%(tempo_min)s::float8 IS NULL "
            "OR tempo_bpm > %(tempo_min)s) AND (%(tempo_max)s::float8 IS NULL OR tempo_bpm < "
            "%(tempo_max)s) ORDER BY title LIMIT %(limit)s",
            {"mode": str, "tempo_min": float, "tempo_max": float, "limit": int},
        ),
    )
}


def run_catalogue_query(store: Store, name: str, **params: Any) -> list[Fact]:
    """Run a named query with checked parameters, read-only; one fact per row."""
    query = CATALOGUE_QUERIES.get(name)
    if query is None:
        raise ToolError(f"unknown catalogue query {name!r}; valid: {', '.join(CATALOGUE_QUERIES)}")
    if unknown := set(params) - set(query.params):
        raise ToolError(f"query {name} takes no parameter(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, kind in query.params.items():
        raw = params.get(key, 50 if key == "limit" else None)
        try:
            values[key] = None if raw is None else kind(raw)
        except (TypeError, ValueError):
            raise ToolError(f"query {name}: {key} must be {kind.__name__}, got {raw!r}") from None
    if "limit" in values:
        values["limit"] = max(1, min(500, values["limit"]))
    rows = read_only(store, query.sql, values, doing=f"catalogue query {name}")
    label = f"{name}({', '.join(f'{k}={v!r}' for k, v in values.items() if v is not None)})"
    return [Fact(field=name, value=_jsonable(row), query=label) for row in rows]


def read_only(store: Store, statement: str, params: dict[str, Any], *, doing: str) -> list[dict]:
    """Run one of this module's statements in a READ ONLY transaction as the reader role."""
    with store.connection(doing) as conn, conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        if _has_reader_role(conn):
            conn.execute(f"SET LOCAL ROLE {READER_ROLE}")
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(statement, params).fetchall()  # type: ignore[arg-type]
        except psycopg.errors.UndefinedTable as exc:
            raise StoreError(f"{doing}: {exc}; run `polymuse db migrate`") from None


def _has_reader_role(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = %(r)s",
        {"r": READER_ROLE},
    ).fetchone()
    return bool(row and row[0])


def _jsonable(row: dict) -> dict:
    return json.loads(json.dumps(row, default=str))


# -- LangChain wrappers ---------------------------------------------------------------------


def facts_json(facts: Sequence[Fact]) -> str:
    """Tool output for a model: facts with their sources, as JSON."""
    return json.dumps(
        [f.model_dump(mode="json", exclude_none=True) | {"source": f.cite()} for f in facts],
        ensure_ascii=False,
    )


def langchain_tools(library: ReportLibrary, store: Store | None = None) -> list[BaseTool]:
    """The same tools for a tool-calling model; each returns facts as JSON with sources."""
    from langchain_core.tools import StructuredTool

    def t_list_reports() -> str:
        """List every analysed song with its report folder."""
        return facts_json(list_reports(library))

    def t_read_field(song: str, field: str) -> str:
        """Read one report field of a song: key, tempo, time_signature, chords, structure,
        loudness, duration, or a dotted path."""
        return facts_json([read_field(library, song, field)])

    def t_songs_where(
        mode: str | None = None,
        tonic: str | None = None,
        tempo_min: float | None = None,
        tempo_max: float | None = None,
        time_signature: str | None = None,
    ) -> str:
        """Songs whose reports meet all given conditions (mode major/minor, tempo range...)."""
        return facts_json(
            songs_where(
                library,
                mode=mode,
                tonic=tonic,
                tempo_min=tempo_min,
                tempo_max=tempo_max,
                time_signature=time_signature,
            )
        )

    def t_section(song: str, label: str) -> str:
        """Where sections with this label (chorus, verse...) of a song start and end."""
        return facts_json(section(library, song, label))

    def t_evidence(song: str, start: float, end: float) -> str:
        """Sections and chords of a song between start and end seconds."""
        return facts_json(evidence(library, song, start, end))

    def t_compare(first: str, second: str) -> str:
        """Key, tempo, metre, loudness and duration of two songs."""
        return facts_json(compare(library, first, second))

    tools = [
        StructuredTool.from_function(t_list_reports, name="list_reports"),
        StructuredTool.from_function(t_read_field, name="read_report_field"),
        StructuredTool.from_function(t_songs_where, name="songs_where"),
        StructuredTool.from_function(t_section, name="section"),
        StructuredTool.from_function(t_evidence, name="evidence"),
        StructuredTool.from_function(t_compare, name="compare_songs"),
    ]
    if store is not None:

        def t_catalogue(name: str, text: str | None = None, limit: int | None = None) -> str:
            """Run a named read-only catalogue query: song_count, songs_by_title,
            quarantine_count, sets, feedback_by_descriptor."""
            params = {k: v for k, v in {"text": text, "limit": limit}.items() if v is not None}
            return facts_json(run_catalogue_query(store, name, **params))

        tools.append(StructuredTool.from_function(t_catalogue, name="catalogue_query"))
    return tools
