"""`polymuse search TEXT` (text -> music) and `polymuse similar SONG` (music -> music).

Both read the catalogue when it holds semantic facts for the configured audio encoder
(ingested with the `polymuse.tools.semantics.catalogue:SemanticExtractor` extractor), else
the report folders under the output directory (songs analysed with the `review` node).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import typer
from rich.table import Table

from polymuse.commands.common import load_settings
from polymuse.console import err, out
from polymuse.errors import PolymuseError, UserError
from polymuse.settings import Settings
from polymuse.tools.semantics import search as core
from polymuse.tools.semantics.bank import load_bank

log = logging.getLogger(__name__)

Source = Literal["auto", "catalogue", "reports"]
JOINT_ENCODERS = ("clap", "clamp3", "muq")
CATALOGUE = "the catalogue"


def search(
    text: str = typer.Argument(..., help='What to find, e.g. "calm solo piano" or "安静的钢琴".'),
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="Number of results."),
    source: str = typer.Option("auto", "--source", help="auto | catalogue | reports."),
    reports: Path = typer.Option(None, "--reports", help="Report folder root [output_dir]."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Rank analysed or catalogued songs by a text description."""
    settings = load_settings(output=reports)
    items, where = load_items(settings, _source(source))
    if not items:
        raise UserError(f"no songs with semantic results in {where}; run `polymuse analyze` first")
    plan = read_query(text, settings)
    query_embedding, encoder = joint_query(text, settings)
    hits = core.rank_text(
        plan, items, limit=limit, query_embedding=query_embedding, encoder=encoder
    )
    if as_json:
        out.print_json(
            data={
                "plan": plan.model_dump(),
                "source": where,
                "hits": [h.model_dump() for h in hits],
            }
        )
        return
    read = ", ".join(
        f"{m.label} ({m.label_zh})" + ("" if m.via == "phrase" else f" ~{m.weight:.2f}")
        for m in plan.matches
    )
    out.print(f"[bold]{text}[/] read as: {read}; searching {len(items)} songs in {where}")
    if plan.unmatched:
        out.print(f"[dim]not understood: {plan.unmatched}[/]")
    table = Table(show_header=True, header_style="bold")
    for col in ("#", "song", "score", "matched descriptors"):
        table.add_column(col)
    for rank, hit in enumerate(hits, 1):
        matched = ", ".join(f"{m.label} {m.confidence:.2f}" for m in hit.matched)
        table.add_row(str(rank), hit.title, f"{hit.score:.3f}", matched)
    out.print(table)


def similar(
    song: str = typer.Argument(..., help="An audio file, a report folder, or a catalogue song id."),
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="Number of results."),
    source: str = typer.Option("auto", "--source", help="auto | catalogue | reports."),
    reports: Path = typer.Option(None, "--reports", help="Report folder root [output_dir]."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Find the songs that sound most like SONG (cosine between audio embeddings)."""
    settings = load_settings(output=reports)
    items, where = load_items(settings, _source(source))
    reference = reference_item(song, settings, items)
    if reference.embedding is None:
        raise UserError(f"{song}: no audio embedding is stored for it; analyse it again")
    if where == CATALOGUE:
        hits = _nearest_in_catalogue(settings, reference, items, limit=limit)
    else:
        hits = core.rank_similar(
            reference.embedding,
            items,
            limit=limit,
            exclude=reference.key,
            encoder=reference.encoder,
        )
    by_key = {i.key: i for i in items}
    labels = {d.id: d.label.en for d in load_bank().descriptors}
    if as_json:
        out.print_json(
            data={
                "reference": reference.title,
                "source": where,
                "hits": [h.model_dump() for h in hits],
            }
        )
        return
    out.print(f"songs like [bold]{reference.title}[/] among {len(items)} in {where}")
    table = Table(show_header=True, header_style="bold")
    for col in ("#", "song", "similarity", "shared descriptors"):
        table.add_column(col)
    for rank, hit in enumerate(hits, 1):
        shared = core.shared_descriptors(reference, by_key[hit.key]) if hit.key in by_key else []
        table.add_row(
            str(rank), hit.title, f"{hit.score:.3f}", ", ".join(labels[d] for d in shared)
        )
    out.print(table)


def read_query(text: str, settings: Settings) -> core.QueryPlan:
    """Read the query against the descriptor bank, with the configured text encoder."""
    from polymuse.tools.encoders.text import build_text_encoder
    from polymuse.tools.semantics.scoring import build_text_index

    bank = load_bank()
    spec = settings.text_encoder
    device = settings.resolved_device()

    def encode(texts: list[str]) -> np.ndarray:
        return build_text_encoder(spec, settings=settings, device=device).encode(texts)

    try:
        index = build_text_index(
            bank,
            (),
            encoder_name=spec.replace(":", "_"),
            encode=encode,
            cache_dir=settings.cache_dir / "semantic",
        )
        multilingual = spec.startswith("sentence-transformer") or spec.startswith("hashing")
        return core.plan_query(
            text,
            bank,
            encode=encode,
            descriptor_vectors=index.descriptor_vectors,
            multilingual=multilingual,
        )
    except PolymuseError as exc:
        if isinstance(exc, UserError):
            raise
        err.print(f"[yellow]text encoder unavailable ({exc}); matching phrases only[/]")
        return core.plan_query(text, bank)


def joint_query(text: str, settings: Settings) -> tuple[np.ndarray | None, str]:
    """The query in a joint audio-text encoder's space, when one is configured."""
    name = settings.audio_encoder.partition(":")[0]
    if name not in JOINT_ENCODERS:
        return None, ""
    from polymuse.tools.encoders.audio import build_audio_encoder

    encoder = build_audio_encoder(
        settings.audio_encoder, settings=settings, device=settings.resolved_device()
    )
    if not encoder.joint_text:
        return None, ""
    return encoder.encode_text([text])[0], encoder.name


def load_items(settings: Settings, source: Source) -> tuple[list[core.SearchItem], str]:
    """Songs from the catalogue or the report folders, and a description of where."""
    reports_root = Path(settings.output_dir)
    if source in ("auto", "catalogue"):
        try:
            items = _catalogue(settings)
        except PolymuseError as exc:
            if source == "catalogue":
                raise
            log.info("catalogue unavailable for search: %s", exc)
            items = []
        if items or source == "catalogue":
            return items, CATALOGUE
    return core.items_from_reports(reports_root), f"reports under {reports_root}"


def reference_item(song: str, settings: Settings, items: list[core.SearchItem]) -> core.SearchItem:
    """The song to compare with: a known key, a report folder, or an audio file to encode."""
    by_key = {i.key: i for i in items}
    if song in by_key:
        return by_key[song]
    path = Path(song)
    if path.is_dir():
        found = core.items_from_reports(path.parent)
        match = [i for i in found if Path(i.location) == path]
        if not match:
            raise UserError(f"{path} holds no report with a semantic section")
        return match[0]
    if not path.is_file():
        raise UserError(f"{song} is neither a song in the list, a report folder nor a file")
    return _encode_file(path, settings)


def _encode_file(path: Path, settings: Settings) -> core.SearchItem:
    from polymuse.tools import audio
    from polymuse.tools.semantics.reviewer import SemanticReviewer

    reviewer = SemanticReviewer.from_settings(settings)
    probe = audio.probe(str(path))
    y = audio.load(probe, sample_rate=reviewer.encoder.sample_rate, mono=True)
    encoding, _ = reviewer.encode(
        reviewer.encoder,
        y,
        sample_rate=reviewer.encoder.sample_rate,
        max_windows=reviewer.max_windows,
    )
    return core.SearchItem(
        key=str(path.resolve()),
        title=path.name,
        scores={},
        embedding=encoding.embedding,
        encoder=reviewer.encoder.name,
        location=str(path),
    )


def _catalogue(settings: Settings) -> list[core.SearchItem]:
    from polymuse.store import open_store
    from polymuse.tools.semantics.catalogue import catalogue_items

    name = f"semantic-{settings.audio_encoder.partition(':')[0]}"
    with open_store(settings) as store:
        return catalogue_items(store, model_name=name)


def _nearest_in_catalogue(
    settings: Settings, reference: core.SearchItem, items: list[core.SearchItem], *, limit: int
) -> list[core.SearchHit]:
    """Ask pgvector's HNSW index for the nearest songs; keep those search knows."""
    from polymuse.store import open_store
    from polymuse.tools.semantics.catalogue import nearest_songs

    assert reference.embedding is not None
    by_key = {i.key: i for i in items}
    with open_store(settings) as store:
        nearest = nearest_songs(
            store,
            reference.embedding,
            model_name=f"semantic-{reference.encoder}",
            limit=limit + 1,
        )
    hits = [
        core.SearchHit(
            key=str(song),
            title=by_key[str(song)].title,
            score=round(sim, 4),
            location=by_key[str(song)].location,
        )
        for song, sim in nearest
        if str(song) in by_key and str(song) != reference.key
    ]
    return hits[:limit]


def _source(value: str) -> Source:
    if value not in ("auto", "catalogue", "reports"):
        raise UserError(f"unknown --source {value!r}; use auto, catalogue or reports")
    return value  # type: ignore[return-value]
