"""Evaluation sets rendered from music21's corpus, with ground truth read from the scores.

- `key_set`: Bach chorales (music21's 371 Riemenschneider chorales, 350 distinct files) on organ
  or string sounds, keyed by `synth.notated_key` from the key signature and the final
  sonority. The rule decides 272 of the 350 (170 major, 102 minor); it leaves out 34 with a
  Dorian signature, 23 Phrygian and 10 Mixolydian endings, 10 whose final major chord may be a
  half cadence rather than a Picardy third, and 1 other. 7 more change meter or have bar lines
  that do not follow the meter, which leaves 265 usable chorales.
- `rhythm_set`: fiddle tunes from Ryan's Mammoth Collection (1,059 single-tune ABC files: 2/4,
  4/4 reels and hornpipes; 6/8, 9/8, 12/8 jigs) with repeats written out, on a melodic
  General MIDI instrument over the generated drum part, half simple and half compound meters.
  About one tune in seven has a lone short bar mid-tune or a meter change; it is skipped when
  that falls inside the trimmed excerpt.

Each piece is cached in `out_dir` as `<id>.wav`, `<id>.mid` and `<id>.json`; the id hashes the
recipe (source, tempo, sounds, trim, sample rate, soundfont), so re-running with the same
arguments reads the JSON instead of parsing and rendering again. Skipped candidates are cached
the same way with their reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from music21 import corpus, stream
from music21.exceptions21 import Music21Exception
from pydantic import BaseModel

from polymuse.errors import ParameterError
from polymuse.tools.synth import (
    DEFAULT_LEAD_IN,
    GroundTruth,
    find_soundfont,
    notated_key,
    render_midi,
    write_midi,
)

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
CHORALE_TEMPO = (60.0, 96.0)  # quarter notes per minute
TUNE_TEMPO = (70.0, 160.0)  # beats per minute at the beat level
MIN_SECONDS = 10.0
# Top voice, inner voices, bass: General MIDI programs.
CHORALE_SOUNDS: dict[str, tuple[int, int, int]] = {
    "church organ": (19, 19, 19),
    "reed organ": (20, 20, 20),
    "drawbar organ": (16, 16, 16),
    "string ensemble": (48, 48, 48),
    "slow strings": (49, 49, 49),
    "string quartet": (40, 41, 42),
}
TUNE_SOUNDS: dict[str, int] = {
    "fiddle": 110,
    "violin": 40,
    "flute": 73,
    "piano": 0,
    "accordion": 21,
    "nylon guitar": 24,
    "steel guitar": 25,
    "banjo": 105,
    "clarinet": 71,
    "tin whistle": 78,
}
# ABC `M:` fields. Cut time (C|, 2/2) is left out of the rhythm set: its beat is the half note,
# which leaves the tempo level of a fast reel ambiguous; the beat is the quarter in simple meters.
SIMPLE_METERS = frozenset({"2/4", "4/4", "C"})
COMPOUND_METERS = frozenset({"6/8", "9/8", "12/8"})


class Piece(BaseModel):
    """One rendered piece of an evaluation set."""

    piece_id: str
    source: str  # music21 corpus path, e.g. "bach/bwv66.6"
    sound: str  # name of the General MIDI sound set it was rendered with
    audio: Path
    midi: Path
    truth: GroundTruth


class _Cached(BaseModel):
    """What building one candidate gave: a piece, or the reason it was skipped."""

    cache_version: Literal[1] = CACHE_VERSION
    piece: Piece | None = None
    category: str | None = None  # why it was skipped, in a word or two
    skipped: str | None = None  # why it was skipped, in full


class _Recipe(BaseModel):
    source: str
    sound: str
    programs: tuple[int, int, int] | int
    bpm: float
    drums: bool
    max_seconds: float
    sample_rate: int
    soundfont: str

    def piece_id(self) -> str:
        stem = Path(self.source).stem.replace(".", "_")
        digest = hashlib.sha1(
            json.dumps([CACHE_VERSION, self.model_dump(mode="json")]).encode()
        ).hexdigest()
        return f"{stem}-{digest[:10]}"


def key_set(
    n: int,
    out_dir: Path | str,
    seed: int = 0,
    *,
    max_seconds: float = 45.0,
    sample_rate: int = 44100,
    soundfont: Path | str | None = None,
) -> list[Piece]:
    """Render `n` Bach chorales with their notated key as ground truth.

    Chorales are drawn in a seeded order; each gets a seeded tempo (quarter = 60..96) and a
    seeded organ or string sound. Chorales whose key the notation does not decide are skipped.

    Args:
        n: Number of pieces.
        out_dir: Cache folder for audio, MIDI and ground truth.
        seed: Seeds the choice of chorales, tempi and sounds.
        max_seconds: Trim each chorale at the last bar line before this much music.
        sample_rate: Audio sample rate in Hz.
        soundfont: `.sf2` file; see `synth.find_soundfont` for the default.

    Returns:
        `n` pieces, each with `truth.key` set.

    Raises:
        ParameterError: `n` is out of range, or too few chorales qualified.
        ModelUnavailableError: fluidsynth or a soundfont is missing.
    """
    _check_options(n, max_seconds=max_seconds, sample_rate=sample_rate)
    sources = list(dict.fromkeys(corpus.chorales.Iterator(returnType="filename")))
    random.Random(seed).shuffle(sources)
    font = str(find_soundfont(soundfont))

    def recipe(source: str) -> _Recipe:
        draw = random.Random(f"{seed}:{source}")
        sound = draw.choice(sorted(CHORALE_SOUNDS))
        return _Recipe(
            source=source,
            sound=sound,
            programs=CHORALE_SOUNDS[sound],
            bpm=round(draw.uniform(*CHORALE_TEMPO), 1),
            drums=False,
            max_seconds=max_seconds,
            sample_rate=sample_rate,
            soundfont=font,
        )

    return _build_set(
        "key_set",
        n,
        [iter(sources)],
        recipe=recipe,
        load=corpus.parse,
        out_dir=Path(out_dir),
        need_key=True,
    )


def rhythm_set(
    n: int,
    out_dir: Path | str,
    seed: int = 0,
    *,
    max_seconds: float = 40.0,
    sample_rate: int = 44100,
    soundfont: Path | str | None = None,
) -> list[Piece]:
    """Render `n` fiddle tunes over a generated drum part, for beat and downbeat tracking.

    Tunes come from Ryan's Mammoth Collection in a seeded order, as many in simple meters (2/4,
    4/4) as in compound ones (6/8, 9/8, 12/8), each with a seeded tempo (70..160 at the
    beat level) and a seeded melodic sound. Repeats are written out before trimming.

    Args:
        n: Number of pieces.
        out_dir: Cache folder for audio, MIDI and ground truth.
        seed: Seeds the choice of tunes, tempi and sounds.
        max_seconds: Trim each tune at the last bar line before this much music.
        sample_rate: Audio sample rate in Hz.
        soundfont: `.sf2` file; see `synth.find_soundfont` for the default.

    Returns:
        `n` pieces with beats, downbeats, tempo and meter in `truth`.

    Raises:
        ParameterError: `n` is out of range, or too few tunes qualified.
        ModelUnavailableError: fluidsynth or a soundfont is missing.
    """
    _check_options(n, max_seconds=max_seconds, sample_rate=sample_rate)
    rng = random.Random(seed)
    pools: dict[bool, list[str]] = {False: [], True: []}
    for path in sorted(corpus.getComposer("ryansMammoth")):
        meter = abc_meter(path)
        if meter in SIMPLE_METERS or meter in COMPOUND_METERS:
            pools[meter in COMPOUND_METERS].append(f"ryansMammoth/{path.name}")
    for pool in pools.values():
        rng.shuffle(pool)
    font = str(find_soundfont(soundfont))

    def recipe(source: str) -> _Recipe:
        draw = random.Random(f"{seed}:{source}")
        sound = draw.choice(sorted(TUNE_SOUNDS))
        return _Recipe(
            source=source,
            sound=sound,
            programs=TUNE_SOUNDS[sound],
            bpm=round(draw.uniform(*TUNE_TEMPO), 1),
            drums=True,
            max_seconds=max_seconds,
            sample_rate=sample_rate,
            soundfont=font,
        )

    return _build_set(
        "rhythm_set",
        n,
        [iter(pools[False]), iter(pools[True])],
        recipe=recipe,
        load=load_tune,
        out_dir=Path(out_dir),
        need_key=False,
    )


def _check_options(n: int, *, max_seconds: float, sample_rate: int) -> None:
    """Reject bad options before they make every candidate fail (and be cached as skipped)."""
    if not 0 <= n <= 1000:
        raise ParameterError(f"n={n} is outside 0..1000")
    if max_seconds < MIN_SECONDS:
        raise ParameterError(f"max_seconds={max_seconds} is below {MIN_SECONDS}")
    if not 8000 <= sample_rate <= 192000:
        raise ParameterError(f"sample_rate={sample_rate} Hz is outside 8000..192000")


def _build_set(
    name: str,
    n: int,
    pools: list[Iterator[str]],
    *,
    recipe: Callable[[str], _Recipe],
    load: Callable[[str], stream.Score],
    out_dir: Path,
    need_key: bool,
) -> list[Piece]:
    """Take candidates from the pools in turn, from the pool with the fewest pieces so far."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pieces: list[Piece] = []
    taken = [0] * len(pools)
    open_pools = set(range(len(pools)))
    skipped: Counter[str] = Counter()
    while len(pieces) < n and open_pools:
        index = min(open_pools, key=lambda i: (taken[i], i))
        source = next(pools[index], None)
        if source is None:
            open_pools.discard(index)
            continue
        outcome = _build_piece(recipe(source), load=load, out_dir=out_dir, need_key=need_key)
        if outcome.piece is None:
            skipped[outcome.category or ""] += 1
            logger.debug("%s: skipped %s: %s", name, source, outcome.skipped)
            continue
        pieces.append(outcome.piece)
        taken[index] += 1
    logger.info("%s: %d pieces, skipped %s", name, len(pieces), dict(skipped))
    if len(pieces) < n:
        raise ParameterError(f"{name}: only {len(pieces)} of the n={n} pieces asked for qualify")
    return pieces


def _build_piece(
    recipe: _Recipe,
    *,
    load: Callable[[str], stream.Score],
    out_dir: Path,
    need_key: bool,
) -> _Cached:
    piece_id = recipe.piece_id()
    record = out_dir / f"{piece_id}.json"
    audio, midi = out_dir / f"{piece_id}.wav", out_dir / f"{piece_id}.mid"
    if record.is_file():
        cached = _Cached.model_validate_json(record.read_text())
        if cached.piece is None:
            return cached
        if audio.is_file() and midi.is_file():
            return _Cached(piece=cached.piece.model_copy(update={"audio": audio, "midi": midi}))
    cached = _render(recipe, piece_id, load=load, audio=audio, midi=midi, need_key=need_key)
    record.write_text(cached.model_dump_json())
    return cached


def _render(
    recipe: _Recipe,
    piece_id: str,
    *,
    load: Callable[[str], stream.Score],
    audio: Path,
    midi: Path,
    need_key: bool,
) -> _Cached:
    try:
        score = load(recipe.source)
    except Exception as error:  # music21's parsers raise many types; record and go on
        return _Cached(category="unparsable", skipped=f"music21 cannot parse it: {error!r}")
    if need_key and (ruling := notated_key(score)).key is None:
        return _Cached(category="key undecided", skipped=ruling.rule)
    parts = len(score.parts)
    if isinstance(recipe.programs, int):
        programs = [recipe.programs] * parts
    else:
        top, inner, bass = recipe.programs
        programs = [top, *[inner] * (parts - 2), bass] if parts > 1 else [top]
    try:
        truth = write_midi(
            score,
            midi,
            bpm=recipe.bpm,
            programs=programs,
            drums=recipe.drums,
            lead_in=DEFAULT_LEAD_IN,
            max_seconds=recipe.max_seconds,
        )
    except ParameterError as error:
        return _Cached(category="notation", skipped=str(error))
    if truth.end - truth.start < MIN_SECONDS:
        midi.unlink()
        return _Cached(category="too short", skipped=f"{truth.end - truth.start:.1f} s of music")
    render_midi(midi, audio, sample_rate=recipe.sample_rate, soundfont=recipe.soundfont)
    piece = Piece(
        piece_id=piece_id,
        source=recipe.source,
        sound=recipe.sound,
        audio=audio,
        midi=midi,
        truth=truth,
    )
    return _Cached(piece=piece)


def load_tune(source: str) -> stream.Score:
    """Parse a tune and write its repeats out; tunes with malformed repeats play as written."""
    score = corpus.parse(source)
    try:
        return score.expandRepeats()
    except Music21Exception:
        return score


def abc_meter(path: Path) -> str | None:
    """The `M:` field of an ABC file's header, without parsing the tune."""
    match = re.search(r"^M:\s*(\S+)", path.read_text(encoding="utf-8", errors="replace"), re.M)
    return match.group(1) if match else None
