"""The recognition benchmark's catalogue: chorales plus fiddle tunes without the shared drum part.

`corpus.rhythm_set` renders every tune over the same generated drum part (same kit, same
pattern), which is right for beat tracking but wrong for recognition: any two tunes at nearly
the same tempo then share their whole percussion track, something real recordings of different
songs never do. `tune_set` renders the same tunes (Ryan's Mammoth Collection, repeats written
out) without drums, on one of `TUNE_PROGRAMS` (24 General MIDI melodic sounds) at a seeded
tempo, cached like `tools.corpus` (`<id>.wav`, `.mid`, `.json`, the id hashing the recipe).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from pathlib import Path

from music21 import corpus as m21corpus
from music21.exceptions21 import Music21Exception
from pydantic import BaseModel

from polymuse.errors import ParameterError
from polymuse.tools import synth
from polymuse.tools.corpus import Piece

CACHE_VERSION = 1
TUNE_TEMPO = (70.0, 160.0)
MIN_SECONDS = 12.0
TUNE_PROGRAMS: dict[str, int] = {
    "piano": 0,
    "bright piano": 1,
    "electric piano": 4,
    "harpsichord": 6,
    "vibraphone": 11,
    "marimba": 12,
    "drawbar organ": 16,
    "accordion": 21,
    "harmonica": 22,
    "nylon guitar": 24,
    "steel guitar": 25,
    "jazz guitar": 26,
    "clean guitar": 27,
    "violin": 40,
    "viola": 41,
    "cello": 42,
    "pizzicato strings": 45,
    "trumpet": 56,
    "alto sax": 65,
    "oboe": 68,
    "clarinet": 71,
    "flute": 73,
    "tin whistle": 78,
    "banjo": 105,
}


class _Record(BaseModel):
    cache_version: int = CACHE_VERSION
    piece: Piece | None = None
    skipped: str | None = None


def tune_set(
    n: int,
    out_dir: Path | str,
    seed: int = 0,
    *,
    max_seconds: float = 40.0,
    sample_rate: int = 22050,
) -> list[Piece]:
    """Render `n` distinct fiddle tunes without drums, seeded sound and tempo each.

    Raises:
        ParameterError: fewer than `n` tunes could be rendered.
        ModelUnavailableError: fluidsynth or a soundfont is missing.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(f"ryansMammoth/{p.name}" for p in m21corpus.getComposer("ryansMammoth"))
    random.Random(seed).shuffle(sources)
    font = str(synth.find_soundfont())
    pieces: list[Piece] = []
    for source in sources:
        if len(pieces) == n:
            break
        draw = random.Random(f"{seed}:{source}")
        sound = draw.choice(sorted(TUNE_PROGRAMS))
        bpm = round(draw.uniform(*TUNE_TEMPO), 1)
        recipe = [CACHE_VERSION, source, sound, bpm, max_seconds, sample_rate, font]
        digest = hashlib.sha1(json.dumps(recipe).encode()).hexdigest()[:10]
        piece_id = f"{Path(source).stem.replace('.', '_')}-{digest}"
        record = _build(out, piece_id, source, sound, bpm, max_seconds, sample_rate)
        if record.piece is not None:
            pieces.append(record.piece)
    if len(pieces) < n:
        raise ParameterError(f"tune_set: only {len(pieces)} of the n={n} tunes qualify")
    return pieces


def _build(
    out: Path, piece_id: str, source: str, sound: str, bpm: float, max_seconds: float, rate: int
) -> _Record:
    json_path, wav, mid = (out / f"{piece_id}{ext}" for ext in (".json", ".wav", ".mid"))
    if json_path.is_file():
        cached = _Record.model_validate_json(json_path.read_text())
        if cached.piece is None or wav.is_file():
            return cached
    try:
        score = m21corpus.parse(source)
        with contextlib.suppress(Music21Exception):  # malformed repeats: play as written
            score = score.expandRepeats()
        parts = max(len(score.parts), 1)
        truth = synth.write_midi(
            score,
            mid,
            bpm=bpm,
            programs=[TUNE_PROGRAMS[sound]] * parts,
            drums=False,
            max_seconds=max_seconds,
        )
    except (ParameterError, Music21Exception, ValueError, AttributeError) as exc:
        record = _Record(skipped=f"{type(exc).__name__}: {exc}")
        json_path.write_text(record.model_dump_json())
        return record
    if truth.end - truth.start < MIN_SECONDS:
        record = _Record(skipped=f"{truth.end - truth.start:.1f} s of music")
    else:
        synth.render_midi(mid, wav, sample_rate=rate)
        record = _Record(
            piece=Piece(
                piece_id=piece_id, source=source, sound=sound, audio=wav, midi=mid, truth=truth
            )
        )
    json_path.write_text(record.model_dump_json())
    return record
