"""`polymuse eval separation`: SDR and SI-SDR of a separator on multitracks rendered from music21.

The test set: Bach chorales (four-part ones from music21's corpus) with the soprano on a voice
patch (General MIDI 53 "Voice Oohs" or 54 "Synth Voice") as `vocals`, the bass voice on a bass
patch as `bass`, alto and tenor on two other instruments as `other`, and the generated General
MIDI drum part of `synth.write_midi` as `drums`. One MIDI file is written per piece; each stem
is that file reduced to the stem's tracks, rendered alone through FluidSynth, so the stems share
the exact timing. Every stem is brought to the same RMS level (a seeded +-3 dB jitter apart, so
no stem is always the loudest) and the mixture is their sum, scaled as a whole to peak at
-1 dBFS: the stems sum to the mix exactly.

`--set looped` (`looped_set`): the same sopranos over the first two bars of their own bass,
other and drum stems, tiled, so the accompaniment repeats as loops, riffs and repeated chords
do in songs while the melody does not (chorales barely repeat): the material a repetition
model (REPET-SIM) is for.

Metrics, per stem, for the separator's estimate and for the mixture used as the estimate (the
baseline every stem starts from):

- SDR: BSS Eval's signal-to-distortion ratio for multichannel images, with the 512-tap
  time-invariant distortion filter, over the whole excerpt: `mir_eval.separation.
  bss_eval_images` (the global, one-window form of museval's BSS Eval v4 `bss_eval`).
- SI-SDR: scale-invariant SDR (Le Roux et al. 2019) on the zero-mean stereo signal.

Goals for `dsp` (issue 5): drums +6 dB, bass +3 dB, vocals +3 dB of SDR over the baseline.
Read SDR gains with SI-SDR beside them: an all-zero estimate scores 0 dB SDR, several dB
above the mixture baseline of a stem that is a quarter of the mix, so a timid estimate gains
SDR without capturing the stem; its SI-SDR (which rescales the estimate) stays low.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import soundfile as sf
import typer
from music21 import corpus
from music21.midi import base as midi
from pydantic import BaseModel, Field
from rich.table import Table

from polymuse.commands.common import load_settings
from polymuse.console import err, out
from polymuse.errors import ParameterError, UserError
from polymuse.settings import Settings
from polymuse.tools.separation import STEMS, build_separator
from polymuse.tools.synth import GroundTruth, find_soundfont, render_midi, write_midi

log = logging.getLogger(__name__)

CACHE_VERSION = 1
SAMPLE_RATE = 44100
TEMPO = (60.0, 96.0)  # quarter notes per minute
VOICE_PROGRAMS = (53, 54)  # Voice Oohs, Synth Voice
BASS_PROGRAMS = (32, 33, 34, 38)  # acoustic, finger, pick, synth bass 1
# Alto and tenor: pairs of General MIDI programs that are neither voices nor basses.
OTHER_PROGRAMS = ((40, 41), (71, 70), (68, 71), (0, 0), (19, 19), (24, 25), (48, 48), (73, 42))
LEVEL_JITTER_DB = 3.0
MIX_PEAK = 10 ** (-1 / 20)
# The MIDI tracks `write_midi` writes: conductor, soprano, alto, tenor, bass, drums.
STEM_TRACKS: dict[str, tuple[int, ...]] = {
    "vocals": (1,),
    "other": (2, 3),
    "bass": (4,),
    "drums": (5,),
}
GOALS_DB = {"drums": 6.0, "bass": 3.0, "vocals": 3.0}
TEST_SETS = ("chorales", "looped")
LOOP_BARS = 2  # the looped set's accompaniment: this many bars, repeated
LOOP_FADE_S = 0.01


class Multitrack(BaseModel):
    """One rendered piece: its stems, the mixture and where they came from."""

    piece_id: str
    source: str
    bpm: float
    programs: dict[str, list[int]] = Field(description="stem -> General MIDI programs")
    gains_db: dict[str, float] = Field(description="gain applied to each rendered stem")
    folder: Path
    truth: GroundTruth

    def stem_path(self, stem: str) -> Path:
        return self.folder / f"{stem}.wav"

    @property
    def mixture(self) -> Path:
        return self.folder / "mixture.wav"


class StemScore(BaseModel):
    """Metrics of one stem estimate, and of the mixture as the estimate."""

    sdr: float
    si_sdr: float
    baseline_sdr: float
    baseline_si_sdr: float

    @property
    def sdr_gain(self) -> float:
        return self.sdr - self.baseline_sdr


class PieceResult(BaseModel):
    piece_id: str
    source: str
    seconds: float = Field(description="separation time")
    duration: float = Field(description="audio length, s")
    stems: dict[str, StemScore]


class SeparationEvaluation(BaseModel):
    separator: str
    model: str
    test_set: str = Field("chorales", description="one of TEST_SETS")
    pieces: list[PieceResult]
    seconds: float

    def summary(self) -> dict[str, dict[str, float]]:
        """Median over pieces (as SiSEC reports) of each metric, per stem."""
        table: dict[str, dict[str, float]] = {}
        for stem in STEMS:
            rows = [p.stems[stem] for p in self.pieces if stem in p.stems]
            if not rows:
                continue

            def median(values: list[float]) -> float:
                return round(float(np.median(values)), 2)

            table[stem] = {
                "sdr": median([r.sdr for r in rows]),
                "baseline_sdr": median([r.baseline_sdr for r in rows]),
                "sdr_gain": median([r.sdr_gain for r in rows]),
                "si_sdr": median([r.si_sdr for r in rows]),
                "baseline_si_sdr": median([r.baseline_si_sdr for r in rows]),
                "si_sdr_gain": median([r.si_sdr - r.baseline_si_sdr for r in rows]),
                "goal_sdr_gain": GOALS_DB.get(stem, float("nan")),
            }
        return table

    def realtime_factor(self) -> float:
        """Seconds of audio separated per second of compute."""
        spent = sum(p.seconds for p in self.pieces)
        return round(sum(p.duration for p in self.pieces) / spent, 1) if spent else float("nan")


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB of `estimate` against `reference` (same shape, any channels)."""
    ref = np.asarray(reference, np.float64)
    est = np.asarray(estimate, np.float64)
    ref = ref - ref.mean(axis=-1, keepdims=True)
    est = est - est.mean(axis=-1, keepdims=True)
    ref, est = ref.ravel(), est.ravel()
    scale = np.dot(est, ref) / max(np.dot(ref, ref), 1e-20)
    target = scale * ref
    noise = est - target
    return float(
        10 * np.log10(max(np.dot(target, target), 1e-20) / max(np.dot(noise, noise), 1e-20))
    )


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """BSS Eval image SDR in dB over the whole excerpt, for one stem (channels, samples).

    For images, BSS Eval decomposes `estimate - reference` into spatial, interference and
    artifact errors that add up to it, so the SDR is the plain energy ratio
    |s|^2 / |s_hat - s|^2: the value `mir_eval.separation.bss_eval_images` (and museval's v4
    `bss_eval` with one window) returns, at a fraction of the cost (tested against mir_eval).
    """
    ref = np.asarray(reference, np.float64)
    err = np.asarray(estimate, np.float64) - ref
    return float(10 * np.log10(max(np.sum(ref**2), 1e-20) / max(np.sum(err**2), 1e-20)))


def multitrack_set(
    n: int,
    out_dir: Path | str,
    seed: int = 0,
    *,
    max_seconds: float = 30.0,
    soundfont: Path | str | None = None,
) -> list[Multitrack]:
    """Render (or reuse) `n` four-part chorales as stems plus their mixture.

    Args:
        n: Number of pieces, 1..371.
        out_dir: Cache folder; each piece is a sub-folder named by a hash of its recipe.
        seed: Seeds the choice of chorales, tempi, sounds and levels.
        max_seconds: Trim each chorale at the last bar line before this much music.
        soundfont: `.sf2` file; see `synth.find_soundfont` for the default.

    Returns:
        `n` multitracks.

    Raises:
        ParameterError: `n` is out of range, or too few chorales qualify.
        ModelUnavailableError: fluidsynth or a soundfont is missing.
    """
    if not 1 <= n <= 371:
        raise ParameterError(f"n={n} is outside 1..371")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    font = str(find_soundfont(soundfont))
    sources = list(dict.fromkeys(corpus.chorales.Iterator(returnType="filename")))
    random.Random(seed).shuffle(sources)
    pieces: list[Multitrack] = []
    skipped = 0
    for source in sources:
        if len(pieces) == n:
            break
        piece = _build(source, seed=seed, max_seconds=max_seconds, font=font, out_dir=out_dir)
        if piece is None:
            skipped += 1
        else:
            pieces.append(piece)
    log.info("separation set: %d pieces, %d chorales skipped", len(pieces), skipped)
    if len(pieces) < n:
        raise ParameterError(f"only {len(pieces)} of the n={n} chorales asked for qualify")
    return pieces


def _build(
    source: str, *, seed: int, max_seconds: float, font: str, out_dir: Path
) -> Multitrack | None:
    rng = random.Random(f"{seed}:{source}")
    alto, tenor = rng.choice(OTHER_PROGRAMS)
    recipe = {
        "version": CACHE_VERSION,
        "source": source,
        "bpm": round(rng.uniform(*TEMPO), 1),
        "programs": {
            "vocals": [rng.choice(VOICE_PROGRAMS)],
            "other": [alto, tenor],
            "bass": [rng.choice(BASS_PROGRAMS)],
            "drums": [0],
        },
        "gains_db": {s: round(rng.uniform(-LEVEL_JITTER_DB, LEVEL_JITTER_DB), 2) for s in STEMS},
        "max_seconds": max_seconds,
        "soundfont": font,
    }
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    folder = out_dir / f"{Path(source).stem.replace('.', '_')}-{digest}"
    record = folder / "piece.json"
    if record.is_file():
        cached = json.loads(record.read_text())
        return None if cached.get("skipped") else Multitrack.model_validate(cached)
    folder.mkdir(parents=True, exist_ok=True)
    piece_or_reason = _render(recipe, folder)
    if isinstance(piece_or_reason, str):
        record.write_text(json.dumps({"skipped": piece_or_reason}))
        return None
    record.write_text(piece_or_reason.model_dump_json(indent=1))
    return piece_or_reason


def _render(recipe: dict, folder: Path) -> Multitrack | str:
    """Render one recipe into `folder`; a string says why the chorale does not qualify."""
    try:
        score = corpus.parse(recipe["source"])
    except Exception as error:  # music21's parsers raise many types; skip the piece
        return f"unparsable: {error!r}"
    if len(score.parts) != 4:
        return f"{len(score.parts)} parts, not 4"
    programs = recipe["programs"]
    full = folder / "full.mid"
    try:
        truth = write_midi(
            score,
            full,
            bpm=recipe["bpm"],
            programs=[programs["vocals"][0], *programs["other"], programs["bass"][0]],
            drums=True,
            max_seconds=recipe["max_seconds"],
        )
    except ParameterError as error:
        return f"notation: {error}"
    if truth.end - truth.start < 10.0:
        return f"only {truth.end - truth.start:.1f} s of music"
    stems = {}
    for stem, tracks in STEM_TRACKS.items():
        stem_midi = folder / f"{stem}.mid"
        stem_midi.write_bytes(_select_tracks(full, tracks))
        rendered = folder / f".{stem}.rendered.wav"
        render_midi(stem_midi, rendered, sample_rate=SAMPLE_RATE, soundfont=recipe["soundfont"])
        y, _ = sf.read(rendered, dtype="float64", always_2d=True)
        rendered.unlink()
        stems[stem] = y.T
    length = max(y.shape[1] for y in stems.values())
    stems = {s: np.pad(y, ((0, 0), (0, length - y.shape[1]))) for s, y in stems.items()}
    reference_rms = np.mean([_rms(y) for y in stems.values()])
    for stem, y in stems.items():
        stems[stem] = (
            y * reference_rms / max(_rms(y), 1e-12) * 10 ** (recipe["gains_db"][stem] / 20)
        )
    _write_mix(folder, stems)
    return Multitrack(
        piece_id=folder.name,
        source=recipe["source"],
        bpm=recipe["bpm"],
        programs=programs,
        gains_db=recipe["gains_db"],
        folder=folder,
        truth=truth,
    )


def looped_set(
    n: int,
    out_dir: Path | str,
    seed: int = 0,
    *,
    bars: int = LOOP_BARS,
    max_seconds: float = 30.0,
    soundfont: Path | str | None = None,
) -> list[Multitrack]:
    """The chorale set's soprano lines over a looped accompaniment: music that repeats.

    Per chorale of `multitrack_set(n, out_dir, seed, ...)`, the rendered bass, other and drum
    stems are cut to their first `bars` full bars (from the first downbeat, 10 ms fades at the
    cuts) and tiled under the whole soprano, each brought back to its stem's level in the
    chorale; the mixture is their sum, scaled to peak at -1 dBFS. The accompaniment then
    repeats exactly, as a loop does, while the melody does not. The ground truth keeps only
    the soprano part (the others no longer follow the score).

    Raises:
        ParameterError: `n` is out of range, too few chorales qualify, or `bars` < 1.
        ModelUnavailableError: fluidsynth or a soundfont is missing.
    """
    if bars < 1:
        raise ParameterError(f"bars={bars}: need at least one bar to loop")
    out_dir = Path(out_dir)
    looped = []
    for piece in multitrack_set(n, out_dir, seed, max_seconds=max_seconds, soundfont=soundfont):
        folder = out_dir / "looped" / f"{piece.piece_id}-{bars}bars-v{CACHE_VERSION}"
        record = folder / "piece.json"
        if not record.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            _loop(piece, bars, folder)
            truth = piece.truth.model_copy(update={"parts": piece.truth.parts[:1]})
            record.write_text(
                piece.model_copy(
                    update={"piece_id": folder.name, "folder": folder, "truth": truth}
                ).model_dump_json(indent=1)
            )
        looped.append(Multitrack.model_validate_json(record.read_text()))
    return looped


def _loop(piece: Multitrack, bars: int, folder: Path) -> None:
    """Write `piece`'s soprano over its first `bars` bars of accompaniment, looped."""
    _, stems = load_stems(piece)
    length = stems["vocals"].shape[1]
    downbeats = [d for d in piece.truth.downbeats if d >= piece.truth.start]
    if len(downbeats) < bars + 1:
        raise ParameterError(f"{piece.piece_id} has {len(downbeats)} downbeats, not {bars + 1}")
    first, last = (round(downbeats[i] * SAMPLE_RATE) for i in (0, bars))
    fade = np.sin(0.5 * np.pi * np.linspace(0.0, 1.0, round(LOOP_FADE_S * SAMPLE_RATE))) ** 2
    out = {"vocals": stems["vocals"].astype(np.float64)}
    for stem in STEMS:
        if stem == "vocals":
            continue
        segment = stems[stem][:, first:last].astype(np.float64)
        segment[:, : len(fade)] *= fade
        segment[:, segment.shape[1] - len(fade) :] *= fade[::-1]
        tiled = np.tile(segment, (1, -(-length // segment.shape[1])))[:, :length]
        out[stem] = tiled * _rms(stems[stem]) / max(_rms(tiled), 1e-12)
    _write_mix(folder, out)


def _write_mix(folder: Path, stems: dict[str, np.ndarray]) -> None:
    """Write the (channels, n) stems and their sum, scaled together to a -1 dBFS mix peak."""
    mixture = sum(stems.values())
    scale = MIX_PEAK / max(np.abs(mixture).max(), 1e-12)
    for stem, y in {**stems, "mixture": mixture}.items():
        sf.write(folder / f"{stem}.wav", (y * scale).T.astype(np.float32), SAMPLE_RATE, "FLOAT")


def _select_tracks(path: Path, tracks: tuple[int, ...]) -> bytes:
    """The MIDI file at `path` reduced to its conductor track and `tracks`."""
    full = midi.MidiFile()
    full.open(str(path))
    full.read()
    full.close()
    reduced = midi.MidiFile()
    reduced.format = 1
    reduced.ticksPerQuarterNote = full.ticksPerQuarterNote
    reduced.tracks = [full.tracks[0], *(full.tracks[i] for i in tracks)]
    return reduced.writestr()


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y))))


def load_stems(piece: Multitrack) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The mixture (channels, samples) and each reference stem, float32."""
    mixture, _ = sf.read(piece.mixture, dtype="float32", always_2d=True)
    stems = {}
    for stem in STEMS:
        y, _ = sf.read(piece.stem_path(stem), dtype="float32", always_2d=True)
        stems[stem] = y.T
    return mixture.T, stems


def evaluate_separation(
    *,
    separator: str = "dsp",
    pieces: int = 20,
    cache_dir: Path,
    settings: Settings | None = None,
    seed: int = 0,
    max_seconds: float = 30.0,
    test_set: str = "chorales",
    progress: Callable[[str], None] | None = None,
) -> SeparationEvaluation:
    """Render (or reuse) a test set and score `separator` against the baseline.

    Args:
        test_set: "chorales" (`multitrack_set`) or "looped" (`looped_set`: the same
            sopranos over a repeating accompaniment).

    Raises:
        ParameterError: `test_set` is unknown, or as `multitrack_set`.
    """
    if test_set not in TEST_SETS:
        raise ParameterError(f"unknown test set {test_set!r}; choose one of {', '.join(TEST_SETS)}")
    build_set = multitrack_set if test_set == "chorales" else looped_set
    started = time.perf_counter()
    notify = progress or (lambda message: None)
    sep = build_separator(separator, settings)
    results = []
    try:
        for piece in build_set(pieces, cache_dir, seed=seed, max_seconds=max_seconds):
            notify(piece.piece_id)
            mixture, references = load_stems(piece)
            t0 = time.perf_counter()
            estimates = sep.separate(mixture)
            spent = time.perf_counter() - t0
            scores = {
                stem: StemScore(
                    sdr=round(sdr(references[stem], estimates[stem]), 3),
                    si_sdr=round(si_sdr(references[stem], estimates[stem]), 3),
                    baseline_sdr=round(sdr(references[stem], mixture), 3),
                    baseline_si_sdr=round(si_sdr(references[stem], mixture), 3),
                )
                for stem in STEMS
            }
            results.append(
                PieceResult(
                    piece_id=piece.piece_id,
                    source=piece.source,
                    seconds=round(spent, 3),
                    duration=round(mixture.shape[1] / SAMPLE_RATE, 3),
                    stems=scores,
                )
            )
    finally:
        sep.close()
    return SeparationEvaluation(
        separator=separator,
        model=sep.model.name,
        test_set=test_set,
        pieces=results,
        seconds=round(time.perf_counter() - started, 1),
    )


def separation(
    separator: Annotated[
        str, typer.Option("--separator", "-s", help="Separator to evaluate.")
    ] = "dsp",
    pieces: Annotated[int, typer.Option("--pieces", "-n", help="Number of chorales.")] = 20,
    seconds: Annotated[float, typer.Option("--seconds", help="Music per chorale, s.")] = 30.0,
    seed: Annotated[int, typer.Option("--seed", help="Seeds pieces, tempi, sounds, levels.")] = 0,
    test_set: Annotated[
        str,
        typer.Option(
            "--set",
            help="chorales: four-part chorales; looped: their sopranos over two bars of "
            "their accompaniment, repeated.",
        ),
    ] = "chorales",
    json_out: Annotated[
        Path | None,
        typer.Option("--json-out", help="Full results [<output dir>/eval/separation.json]."),
    ] = None,
) -> None:
    """SDR and SI-SDR per stem on Bach chorales rendered as multitracks, against the mix."""
    if test_set not in TEST_SETS:
        raise UserError(f"--set {test_set!r} is unknown; choose one of {', '.join(TEST_SETS)}")
    settings = load_settings()
    cache = settings.cache_dir / "eval" / "separation"
    with err.status("rendering and separating") as status:
        evaluation = evaluate_separation(
            separator=separator,
            pieces=pieces,
            cache_dir=cache,
            settings=settings,
            seed=seed,
            max_seconds=seconds,
            test_set=test_set,
            progress=lambda piece: status.update(f"{separator}: {piece}"),
        )
    out.print(summary_table(evaluation))
    err.print(
        "note: an all-zero estimate scores 0 dB SDR; SI-SDR shows whether a gain is real.",
        highlight=False,
    )
    name = "separation.json" if test_set == "chorales" else f"separation-{test_set}.json"
    json_out = json_out or settings.output_dir / "eval" / name
    json_out.parent.mkdir(parents=True, exist_ok=True)
    payload = evaluation.model_dump(mode="json") | {
        "summary": evaluation.summary(),
        "realtime_factor": evaluation.realtime_factor(),
    }
    json_out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    err.print(f"results: {json_out}")


def summary_table(evaluation: SeparationEvaluation) -> Table:
    """Median SDR / SI-SDR per stem: estimate, mixture baseline, gain, goal."""
    pieces = "chorales," if evaluation.test_set == "chorales" else "chorales over a loop,"
    table = Table(
        title=(
            f"{evaluation.separator} ({evaluation.model}) on {len(evaluation.pieces)} {pieces} "
            f"medians; {evaluation.realtime_factor()}x real time"
        ),
        title_justify="left",
    )
    for col in ("stem", "SDR", "mix SDR", "gain", "goal", "SI-SDR", "mix SI-SDR", "gain"):
        table.add_column(col, justify="left" if col == "stem" else "right")
    for stem, row in evaluation.summary().items():
        goal = row["goal_sdr_gain"]
        met = "" if np.isnan(goal) else (" ok" if row["sdr_gain"] >= goal else " below")
        table.add_row(
            stem,
            f"{row['sdr']:.2f}",
            f"{row['baseline_sdr']:.2f}",
            f"{row['sdr_gain']:+.2f}",
            "" if np.isnan(goal) else f"+{goal:.0f}{met}",
            f"{row['si_sdr']:.2f}",
            f"{row['baseline_si_sdr']:.2f}",
            f"{row['si_sdr_gain']:+.2f}",
        )
    return table
