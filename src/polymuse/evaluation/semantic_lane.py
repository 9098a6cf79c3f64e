"""`polymuse eval semantic-lane`: the semantic lane's near-duplicate threshold, per encoder.

Catalogue: `pieces` renders from the music21 corpus through FluidSynth (`tools.corpus`: half
Bach chorales on organ or strings, half fiddle tunes over drums, up to 40 s at 22.05 kHz),
each embedded as the ingest's `SemanticExtractor` stores it: one unit vector per window of the
ingest's default plan (10 s every 5 s), the mean of the encoder's patches centred in it
(`semantic.window_vectors`).

Queries: 10 and 6 s excerpts at 7.3 and 16.1 s (off the window grid), clean and under each
of `CONDITIONS` (`evaluation.distortions`), embedded by the lane's own code
(`semantic.query_windows`, one span per excerpt, as `identify` embeds excerpts). Each query
gives a positive, its best window of its own piece, and a negative, its best window among the
other pieces (as if its own were not catalogued); similarities are rounded as the lane
reports and decides on them. `fit_threshold` picks the threshold at the false-positive target
(default 0: just above the highest negative); `save_threshold` writes it with its provenance
into the package's `data/semantic_lane_thresholds.json`, which `recognition.semantic` reads.

The nearest windows come from an exact in-memory cosine search (numpy) over every catalogue
window, not from PostgreSQL: this measures the embeddings and the rule, not the HNSW index's
recall. Embeddings are cached per piece under `cache_dir/semantic-lane`, keyed by the
encoder's version and the query recipe, so a re-run that changes only the target reuses them.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
import soxr
import typer
from pydantic import BaseModel, Field
from rich.table import Table

from polymuse.commands.common import load_settings
from polymuse.console import err, out
from polymuse.errors import ParameterError
from polymuse.evaluation import distortions
from polymuse.ingest.decode import plan_windows
from polymuse.ingest.pipeline import IngestOptions
from polymuse.recognition import semantic
from polymuse.recognition.semantic import SIMILARITY_DECIMALS, ThresholdFit, fit_threshold
from polymuse.tools import audio, corpus
from polymuse.tools.encoders.audio import AudioEncoder, build_audio_encoder

CACHE_VERSION = 1
SAMPLE_RATE = 22050
MAX_SECONDS = 40.0
SEED = 5
"""The seed of the pieces and distortions the shipped musicnn fit used."""
STARTS = (7.3, 16.1)
LENGTHS = (10.0, 6.0)
CONDITIONS = (
    "clean",
    "mp3 64k",
    "opus 64k",
    "eq",
    "gain",
    "white 20 dB",
    "reverb",
    "speed +2 %",
    "white 10 dB",
)


@dataclass(frozen=True)
class Recipe:
    """Where queries are cut and what happens to them; catalogue windows."""

    starts: tuple[float, ...] = STARTS
    lengths: tuple[float, ...] = LENGTHS
    conditions: tuple[str, ...] = CONDITIONS
    window_s: float = IngestOptions.window_s
    hop_s: float = IngestOptions.hop_s


@dataclass(frozen=True)
class Query:
    start_s: float
    length_s: float
    condition: str
    vector: np.ndarray


@dataclass(frozen=True)
class Embedded:
    """One piece: its catalogue windows and its queries' vectors."""

    window_starts: np.ndarray
    windows: np.ndarray
    """Unit vectors, shape (n, dim)."""
    queries: list[Query]


class QueryRow(BaseModel):
    piece: str
    kind: str
    start_s: float
    length_s: float
    condition: str
    own: float = Field(description="Best similarity to a window of its own piece (positive)")
    other: float = Field(description="Best similarity to a window of another piece (negative)")
    other_piece: str
    reference_start_s: float = Field(description="Start of its own piece's best window")


class Cell(BaseModel):
    """What the threshold does to the queries of one condition and length."""

    condition: str
    length_s: float
    queries: int
    accepted: float = Field(description="Own piece ranked first and at the threshold")
    wrong: float = Field(description="Another piece ranked first and at the threshold")
    ranked_first: float = Field(description="Own piece ranked first, whatever the threshold")


class SemanticLaneEvaluation(BaseModel):
    schema_version: int = 1
    encoder: str
    encoder_version: str
    date: str
    seed: int
    pieces: list[str] = Field(description="music21 sources, catalogue order")
    window_s: float
    hop_s: float
    catalogue_windows: int
    conditions: list[str]
    starts_s: list[float]
    lengths_s: list[float]
    fp_target: float
    threshold: float
    false_positive_rate: float
    true_positive_rate: float
    positives: int
    negatives: int
    shipped_threshold: float | None = Field(description="The package's when this ran")
    cells: list[Cell]
    rows: list[QueryRow]
    seconds: float


def embed_piece(
    y: np.ndarray,
    sample_rate: int,
    encoder: AudioEncoder,
    recipe: Recipe,
    rng: np.random.Generator,
) -> Embedded:
    """Catalogue windows of a piece and its queries (each excerpt under each condition)."""
    rate = encoder.sample_rate
    duration = len(y) / sample_rate
    encoding = encoder.encode(_at(y, sample_rate, rate), sample_rate=rate, max_windows=None)
    plan = plan_windows(duration, window_s=recipe.window_s, hop_s=recipe.hop_s)
    windows = semantic.window_vectors(encoding, plan)
    queries = []
    for start in recipe.starts:
        for length in recipe.lengths:
            if start + length > duration:
                continue
            clip = y[int(start * sample_rate) : int((start + length) * sample_rate)]
            for name in recipe.conditions:
                condition = distortions.condition_named(name)
                q = _at(distortions.distort(clip, sample_rate, condition, rng), sample_rate, rate)
                [(_, _, vector)] = semantic.query_windows(
                    encoder, q, spans=[(0.0, len(q) / rate)], window_s=recipe.window_s
                )
                queries.append(Query(start, length, name, vector))
    return Embedded(
        window_starts=np.array([w.start_s for w, _ in windows]),
        windows=np.stack([v for _, v in windows]),
        queries=queries,
    )


def score(
    embedded: Sequence[Embedded], names: Sequence[str], kinds: Sequence[str]
) -> list[QueryRow]:
    """Each query's best window of its own piece and of the others, by exact cosine search."""
    if len(embedded) < 2:
        raise ParameterError(f"negatives need at least 2 pieces, got {len(embedded)}")
    windows = np.concatenate([e.windows for e in embedded])
    bounds = np.cumsum([0] + [len(e.windows) for e in embedded])
    rows = []
    for i, piece in enumerate(embedded):
        for query in piece.queries:
            sims = np.round((windows @ query.vector).astype(np.float64), SIMILARITY_DECIMALS)
            best = np.maximum.reduceat(sims, bounds[:-1])
            others = np.where(np.arange(len(best)) == i, -np.inf, best)
            other = int(np.argmax(others))
            own_window = int(np.argmax(sims[bounds[i] : bounds[i + 1]]))
            rows.append(
                QueryRow(
                    piece=names[i],
                    kind=kinds[i],
                    start_s=query.start_s,
                    length_s=query.length_s,
                    condition=query.condition,
                    own=float(best[i]),
                    other=float(best[other]),
                    other_piece=names[other],
                    reference_start_s=float(piece.window_starts[own_window]),
                )
            )
    return rows


def fit(rows: Sequence[QueryRow], fp_target: float) -> ThresholdFit:
    """`fit_threshold` on every query's positive and negative."""
    sims = [r.own for r in rows] + [r.other for r in rows]
    same = [True] * len(rows) + [False] * len(rows)
    return fit_threshold(sims, same, max_false_positive_rate=fp_target)


def cells(rows: Sequence[QueryRow], threshold: float) -> list[Cell]:
    """Acceptance per condition and query length, in the order the rows come."""
    groups: dict[tuple[str, float], list[QueryRow]] = {}
    for row in rows:
        groups.setdefault((row.condition, row.length_s), []).append(row)
    table = []
    for (condition, length), group in groups.items():
        first = np.array([r.own > r.other for r in group])
        top = np.array([max(r.own, r.other) >= threshold for r in group])
        table.append(
            Cell(
                condition=condition,
                length_s=length,
                queries=len(group),
                accepted=round(float(np.mean(first & top)), 4),
                wrong=round(float(np.mean(~first & top)), 4),
                ranked_first=round(float(np.mean(first)), 4),
            )
        )
    return table


def evaluate_semantic_lane(
    *,
    encoder: AudioEncoder,
    cache_dir: Path,
    pieces: int = 24,
    seed: int = SEED,
    fp_target: float = 0.0,
    recipe: Recipe = Recipe(),
    progress: Callable[[str], None] | None = None,
) -> SemanticLaneEvaluation:
    """Render (or reuse) the pieces, embed catalogue and queries (or reuse), fit, report."""
    if pieces < 2:
        raise ParameterError(f"the semantic-lane evaluation needs at least 2 pieces, got {pieces}")
    started = time.perf_counter()
    notify = progress or (lambda message: None)
    notify("rendering...")
    options = {"seed": seed, "sample_rate": SAMPLE_RATE, "max_seconds": MAX_SECONDS}
    chorales = corpus.key_set(pieces // 2, cache_dir / "chorales", **options)
    tunes = corpus.rhythm_set(pieces - pieces // 2, cache_dir / "tunes", **options)
    rendered = [*chorales, *tunes]
    embedded = []
    for k, piece in enumerate(rendered):
        notify(f"embedding {piece.piece_id} ({k + 1}/{len(rendered)})")
        embedded.append(_embedded(piece, encoder, recipe, seed, cache_dir / "semantic-lane"))
    kinds = ["chorale"] * len(chorales) + ["tune"] * len(tunes)
    rows = score(embedded, [p.piece_id for p in rendered], kinds)
    fitted = fit(rows, fp_target)
    return SemanticLaneEvaluation(
        encoder=encoder.name,
        encoder_version=encoder.model_info.version,
        date=datetime.now(UTC).date().isoformat(),
        seed=seed,
        pieces=[p.source for p in rendered],
        window_s=recipe.window_s,
        hop_s=recipe.hop_s,
        catalogue_windows=sum(len(e.windows) for e in embedded),
        conditions=list(recipe.conditions),
        starts_s=list(recipe.starts),
        lengths_s=list(recipe.lengths),
        fp_target=fp_target,
        threshold=fitted.threshold,
        false_positive_rate=fitted.false_positive_rate,
        true_positive_rate=round(fitted.true_positive_rate, 4),
        positives=fitted.positives,
        negatives=fitted.negatives,
        shipped_threshold=semantic.threshold_for(encoder.name),
        cells=cells(rows, fitted.threshold),
        rows=rows,
        seconds=round(time.perf_counter() - started, 1),
    )


def _embedded(
    piece: corpus.Piece, encoder: AudioEncoder, recipe: Recipe, seed: int, cache: Path
) -> Embedded:
    """`embed_piece`, cached by piece, encoder version, recipe and seed."""
    key = [CACHE_VERSION, piece.piece_id, encoder.name, encoder.model_info.version, seed]
    digest = hashlib.sha1(json.dumps([*key, asdict(recipe)]).encode()).hexdigest()[:12]
    path = cache / f"{piece.piece_id}-{encoder.name}-{digest}.npz"
    if path.is_file():
        with np.load(path) as data:
            queries = [
                Query(float(s), float(n), recipe.conditions[int(c)], v)
                for (s, n, c), v in zip(data["query_keys"], data["query_vectors"], strict=True)
            ]
            return Embedded(data["window_starts"], data["windows"], queries)
    y = audio.load(audio.probe(str(piece.audio)), sample_rate=SAMPLE_RATE, mono=True)
    # One stream per piece, so a cached piece leaves the others' distortions unchanged.
    rng = np.random.default_rng([seed, zlib.crc32(piece.piece_id.encode())])
    embedded = embed_piece(y, SAMPLE_RATE, encoder, recipe, rng)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        window_starts=embedded.window_starts,
        windows=embedded.windows,
        query_keys=np.array(
            [
                [q.start_s, q.length_s, recipe.conditions.index(q.condition)]
                for q in embedded.queries
            ]
        ).reshape(-1, 3),
        query_vectors=np.array([q.vector for q in embedded.queries]).reshape(
            len(embedded.queries), embedded.windows.shape[1]
        ),
    )
    return embedded


def _at(y: np.ndarray, sample_rate: int, rate: int) -> np.ndarray:
    """`y` at `rate`, resampled as the ingest and the lane's loader do (soxr HQ)."""
    if sample_rate == rate:
        return y
    return soxr.resample(y, sample_rate, rate, quality="HQ").astype(np.float32)


# -- reports -----------------------------------------------------------------------------


def save_threshold(result: SemanticLaneEvaluation, path: Path, *, command: str) -> Path:
    """Write `result`'s threshold and provenance as its encoder's entry of a thresholds file."""
    data = {"schema_version": 1, "encoders": {}}
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
    data["encoders"][result.encoder] = {
        "threshold": result.threshold,
        "encoder_version": result.encoder_version,
        "date": result.date,
        "pieces": len(result.pieces),
        "queries": len(result.rows),
        "conditions": result.conditions,
        "lengths_s": result.lengths_s,
        "fp_target": result.fp_target,
        "false_positive_rate": result.false_positive_rate,
        "true_positive_rate": result.true_positive_rate,
        "command": command,
    }
    data["encoders"] = dict(sorted(data["encoders"].items()))
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def write_reports(result: SemanticLaneEvaluation, folder: Path) -> tuple[Path, Path]:
    """`semantic_lane.json` (with every query) and `semantic_lane.md`."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "semantic_lane.json"
    json_path.write_text(result.model_dump_json(indent=2), encoding="utf-8")
    md_path = folder / "semantic_lane.md"
    md_path.write_text(markdown(result), encoding="utf-8")
    return json_path, md_path


def markdown(result: SemanticLaneEvaluation) -> str:
    r = result
    shipped = "none" if r.shipped_threshold is None else f"{r.shipped_threshold:g}"
    lines = [
        f"# Semantic lane: {r.encoder} near-duplicate threshold",
        "",
        f"{len(r.pieces)} pieces rendered from the music21 corpus (seed {r.seed}), "
        f"{r.catalogue_windows} catalogue windows ({r.window_s:g} s every {r.hop_s:g} s); "
        f"{len(r.rows)} queries ({', '.join(f'{n:g}' for n in r.lengths_s)} s excerpts at "
        f"{', '.join(f'{s:g}' for s in r.starts_s)} s); exact cosine search in memory; "
        f"{r.encoder_version}; {r.date}, {r.seconds:.0f} s.",
        "",
        "| threshold | false positives | true positives | negatives | positives | FP target "
        "| shipped |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {r.threshold:g} | {_pct(r.false_positive_rate)} | {_pct(r.true_positive_rate)} "
        f"| {r.negatives} | {r.positives} | {_pct(r.fp_target)} | {shipped} |",
        "",
        "## Acceptance by condition and length (%)",
        "",
        "`accepted`: own piece first and at the threshold; `wrong`: another piece first and at "
        "the threshold; `first`: own piece first, whatever the threshold.",
        "",
        "| condition | s | n | accepted | wrong | first |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in r.cells:
        lines.append(
            f"| {c.condition} | {c.length_s:g} | {c.queries} | {_pct(c.accepted)} "
            f"| {_pct(c.wrong)} | {_pct(c.ranked_first)} |"
        )
    lines += [
        "",
        "## Highest negatives",
        "",
        "| query piece | condition | s | start | other piece | similarity |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in sorted(r.rows, key=lambda row: -row.other)[:5]:
        lines.append(
            f"| {row.piece} | {row.condition} | {row.length_s:g} | {row.start_s:g} "
            f"| {row.other_piece} | {row.other:.4f} |"
        )
    return "\n".join(lines) + "\n"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def semantic_lane(
    pieces: Annotated[int, typer.Option("--pieces", "-n", min=2, help="Rendered pieces.")] = 24,
    encoder: Annotated[
        str | None,
        typer.Option("--encoder", help="Audio encoder (default: the audio_encoder setting)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds pieces and distortions.")] = SEED,
    fp_target: Annotated[
        float, typer.Option("--fp-target", min=0.0, max=0.99, help="False positives allowed.")
    ] = 0.0,
    save: Annotated[
        bool, typer.Option("--save-threshold", help="Write the fit into the package data.")
    ] = False,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Render cache [POLYMUSE_HOME/eval].")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("reports/eval"),
) -> None:
    """Fit the semantic lane's near-duplicate threshold on distorted music21 renders."""
    settings = load_settings()
    spec = encoder or settings.audio_encoder
    with err.status("semantic-lane evaluation...") as status:
        model = build_audio_encoder(spec, settings=settings, device=settings.resolved_device())
        result = evaluate_semantic_lane(
            encoder=model,
            cache_dir=cache or settings.home / "eval",
            pieces=pieces,
            seed=seed,
            fp_target=fp_target,
            progress=status.update,
        )
    table = Table(title=f"Semantic lane, {result.encoder} ({result.seconds:.0f} s)")
    for col in ("condition", "s", "n", "accepted %", "wrong %"):
        table.add_column(col)
    for c in result.cells:
        table.add_row(
            c.condition, f"{c.length_s:g}", str(c.queries), _pct(c.accepted), _pct(c.wrong)
        )
    out.print(table)
    out.print(
        f"threshold {result.threshold:g} (shipped: {result.shipped_threshold}), "
        f"false positives {_pct(result.false_positive_rate)} % of {result.negatives}, "
        f"true positives {_pct(result.true_positive_rate)} % of {result.positives}"
    )
    json_path, md_path = write_reports(result, output)
    out.print(f"tables: {md_path}  data: {json_path}")
    if save:
        target = Path(str(resources.files("polymuse").joinpath("data", semantic.THRESHOLDS_FILE)))
        command = (
            f"polymuse eval semantic-lane --pieces {pieces} --encoder {result.encoder} "
            f"--seed {seed} --fp-target {fp_target:g} --save-threshold"
        )
        out.print(f"threshold: {save_threshold(result, target, command=command)}")
