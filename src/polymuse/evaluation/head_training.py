"""Train the instrument-family head (`tools.semantics.instrument_head`) on soundfont renders.

The training set is rendered with soundfonts other than FluidR3, the one `polymuse eval
tags` and the other evaluations use (`SOUNDFONTS`: TimGM6mb and the csound GM bank).
MuseScore General is left out, as it is built on FluidR3's samples, and so is the OPL-3 FM
font: with its synthetic timbres in the training set, the held-out accuracy on the sampled
fonts fell from 0.72-0.74 to 0.67-0.72. The scores are ones the evaluations never use:
Palestrina's polyphony (music21's `palestrina` corpus) and tunes from O'Neill's Music of
Ireland (`oneills1850`). Each piece gets a seeded family, a seeded General MIDI sound of that
family (several programs per family, `SOUNDS`), a seeded tempo and drums on every second
piece, and is rendered through every training soundfont, each at a seeded gain.

Training: multinomial logistic regression on the standardised per-window features. Its
regularisation C is chosen by cross-validation that holds out one soundfont and one half of
the scores at once (trained on the other soundfonts' renders of the other half), so neither
the sound nor the notes of a held-out render were seen; then the head is fitted on every
render. Seeded and deterministic.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from polymuse.errors import ModelUnavailableError, ParameterError
from polymuse.tools.semantics.instrument_head import CLASSES, InstrumentHead

CACHE_VERSION = 1
FEATURES_VERSION = 2
MAX_SECONDS = 30.0
SAMPLE_RATE = 22050
GAIN_DB = (-15.0, 0.0)
WINDOWS = 6
"""musicnn windows per training render, spread over it (about a second of encoding each)."""
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)

SOUNDFONTS: dict[str, dict[str, str]] = {
    "TimGM6mb": {
        "path": "/usr/share/sounds/sf2/TimGM6mb.sf2",
        "package": "timgm6mb-soundfont (Debian)",
        "licence": "GPL-2 (Tim Brechbill)",
    },
    "csound GM bank": {
        "path": "/usr/share/sounds/sf2/sf_GMbank.sf2",
        "package": "csound-soundfont (Debian)",
        "licence": "LGPL-2.1+ (Csound developers)",
    },
}

SOUNDS: dict[str, dict[str, tuple[int, ...]]] = {
    "piano": {"grand": (0,), "bright": (1,), "electric grand": (2,), "honky-tonk": (3,)},
    "strings": {
        "ensemble": (48,),
        "slow": (49,),
        "quartet": (40, 41, 42),
        "violins and cellos": (40, 42),
        "tremolo": (44,),
    },
    "guitar": {"nylon": (24,), "steel": (25,), "jazz": (26,), "clean electric": (27,)},
    "organ": {"church": (19,), "drawbar": (16,), "reed": (20,), "percussive": (17,)},
    "flute": {"flute": (73,), "piccolo": (72,), "recorder": (74,), "pan flute": (75,)},
    "choir": {"aahs": (52,), "oohs": (53,), "synth voice": (54,)},
    "brass": {
        "section": (61,),
        "quartet": (56, 56, 57, 58),
        "horns": (60,),
        "trombones": (57,),
        "trumpets and tuba": (56, 58),
    },
    "harpsichord": {"harpsichord": (6,)},
    "other": {
        "accordion": (21,),
        "vibraphone": (11,),
        "marimba": (12,),
        "alto sax": (65,),
        "clarinet": (71,),
        "oboe": (68,),
        "bassoon": (70,),
        "square lead": (80,),
        "saw lead": (81,),
        "warm pad": (89,),
        "harp": (46,),
        "banjo": (105,),
        "harmonica": (22,),
    },
}
"""Class -> General MIDI sound sets (one program for all parts, or top, inner..., bass)."""

POLYPHONIC_ONLY = frozenset({"strings", "organ", "choir", "brass"})
"""Families rendered from polyphony only (as ensembles); the others take tunes 40 % of the
time."""


class TrainingPiece(BaseModel):
    """One render of the training set: a score, its class and sound, through one soundfont."""

    piece_id: str
    source: str
    label: str
    sound: str
    programs: list[int]
    drums: bool
    bpm: float
    soundfont: str
    gain_db: float
    audio: Path


def training_fonts() -> dict[str, Path]:
    """The training soundfonts that are installed.

    Raises:
        ModelUnavailableError: None of them is.
    """
    found = {name: Path(f["path"]) for name, f in SOUNDFONTS.items() if Path(f["path"]).is_file()}
    if not found:
        packages = ", ".join(f["package"] for f in SOUNDFONTS.values())
        raise ModelUnavailableError(f"no training soundfont installed; install {packages}")
    return found


def training_set(
    per_class: int,
    out_dir: Path,
    seed: int = 0,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[TrainingPiece]:
    """Render `per_class` pieces per class through every training soundfont (cached).

    The draw is seeded; it is the same for the same `seed` and set of installed soundfonts.

    Raises:
        ParameterError: `per_class` out of range or too few scores qualified.
        ModelUnavailableError: fluidsynth or every training soundfont is missing.
    """
    from music21 import corpus as m21corpus

    if not 1 <= per_class <= 200:
        raise ParameterError(f"per_class={per_class} is outside 1..200")
    fonts = training_fonts()
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    polyphony = sorted(f"palestrina/{p.name}" for p in m21corpus.getComposer("palestrina"))
    tunes = [
        f"oneills1850/{p.name}#{i}"
        for p in sorted(m21corpus.getComposer("oneills1850"))
        for i in range(_opus_size(f"oneills1850/{p.name}"))
    ]
    rng.shuffle(polyphony)
    rng.shuffle(tunes)
    pools = {"polyphony": iter(polyphony), "tune": iter(tunes)}
    pieces: list[TrainingPiece] = []
    for label, sounds in SOUNDS.items():
        made = attempts = 0
        while made < per_class:
            attempts += 1
            if attempts > per_class * 6:
                raise ParameterError(f"only {made} {label} pieces of {per_class} qualify")
            tune = label not in POLYPHONIC_ONLY and rng.random() < 0.4
            source = next(pools["tune" if tune else "polyphony"], None)
            if source is None:
                raise ParameterError(f"ran out of scores for the {label} pieces")
            sound = rng.choice(sorted(sounds))
            recipe = {
                "version": CACHE_VERSION,
                "source": source,
                "label": label,
                "sound": sound,
                "programs": list(sounds[sound]),
                "drums": made % 2 == 1,
                "bpm": round(rng.uniform(80, 140) if tune else rng.uniform(60, 110), 1),
            }
            gains = {name: round(rng.uniform(*GAIN_DB), 1) for name in fonts}
            rendered = _render(recipe, fonts, gains, out_dir)
            if rendered is None:
                continue
            pieces += rendered
            made += 1
            if progress:
                progress(f"rendered {len(pieces)} training pieces ({label})")
    return pieces


@functools.lru_cache(maxsize=64)
def _opus(source: str):
    from music21 import corpus as m21corpus
    from music21 import stream

    parsed = m21corpus.parse(source)
    return list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]


def _opus_size(source: str) -> int:
    from music21 import corpus as m21corpus

    path = m21corpus.getWork(source)
    return Path(str(path)).read_text(encoding="utf-8", errors="replace").count("\nX:")


def _load(source: str):
    from music21 import corpus as m21corpus
    from music21.exceptions21 import Music21Exception

    if "#" not in source:
        return m21corpus.parse(source)
    name, index = source.split("#")
    score = _opus(name)[int(index)]
    try:
        return score.expandRepeats()
    except Music21Exception:
        return score


def _render(
    recipe: dict, fonts: dict[str, Path], gains: dict[str, float], out_dir: Path
) -> list[TrainingPiece] | None:
    from polymuse.tools import synth

    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    stem = f"{Path(recipe['source'].replace('#', '_')).stem}-{recipe['label']}-{digest}"
    record, mid = out_dir / f"{stem}.json", out_dir / f"{stem}.mid"
    if record.is_file() and json.loads(record.read_text()).get("skipped"):
        return None
    try:
        if not mid.is_file():
            score = _load(recipe["source"])
            n = len(score.parts)
            programs = recipe["programs"]
            if len(programs) == 1:
                per_part = programs * n
            else:
                top, *inner, bass = programs
                middle = (inner or [top]) * n
                per_part = ([top, *middle[: n - 2], bass] if n > 1 else [top])[:n]
            truth = synth.write_midi(
                score,
                mid,
                bpm=recipe["bpm"],
                programs=per_part,
                drums=recipe["drums"],
                max_seconds=MAX_SECONDS,
            )
            if truth.end - truth.start < 10:
                raise ParameterError("shorter than 10 s")
        out = []
        for name, font in fonts.items():
            font_slug = name.split()[0].lower()
            wav = out_dir / f"{stem}-{font_slug}.wav"
            if not wav.is_file():
                synth.render_midi(mid, wav, sample_rate=SAMPLE_RATE, soundfont=font)
            out.append(
                TrainingPiece(
                    piece_id=f"{stem}-{font_slug}",
                    source=recipe["source"],
                    label=recipe["label"],
                    sound=recipe["sound"],
                    programs=recipe["programs"],
                    drums=recipe["drums"],
                    bpm=recipe["bpm"],
                    soundfont=name,
                    gain_db=gains[name],
                    audio=wav,
                )
            )
    except Exception as exc:  # music21 raises many types for odd scores; skip the piece
        mid.unlink(missing_ok=True)
        record.write_text(json.dumps({"skipped": f"{type(exc).__name__}: {exc}"}))
        return None
    record.write_text(json.dumps({"recipe": recipe}))
    return out


def piece_features(piece: TrainingPiece, encoder, cache_dir: Path) -> np.ndarray:
    """Per-window head features of one render at its training gain (cached)."""
    from polymuse.tools import audio
    from polymuse.tools.semantics.instrument_head import (
        SAMPLE_RATE,
        head_features,
        window_segments,
    )

    if encoder.sample_rate != SAMPLE_RATE:
        raise ParameterError(f"the head's timbre statistics need {SAMPLE_RATE} Hz audio")
    path = (
        cache_dir
        / f"{piece.piece_id}-g{piece.gain_db:g}-{encoder.name}-w{WINDOWS}-v{FEATURES_VERSION}.npy"
    )
    if path.is_file():
        return np.load(path)
    y = audio.load(audio.probe(str(piece.audio)), sample_rate=encoder.sample_rate, mono=True)
    y = np.clip(y * 10 ** (piece.gain_db / 20), -1.0, 1.0).astype(np.float32)
    encoding = encoder.encode(y, sample_rate=encoder.sample_rate, max_windows=WINDOWS)
    segments = window_segments(
        y, encoding.window_times, encoding.window_seconds, sample_rate=encoder.sample_rate
    )
    features = head_features(encoding.window_embeddings, segments).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, features)
    return features


class HeadTraining(BaseModel):
    """What training found: cross-validated accuracy per C and held-out soundfont."""

    c: float
    cross_validation: dict[str, dict[str, float]]
    pieces: int
    windows: int


def train_head(
    *,
    per_class: int = 24,
    cache_dir: Path,
    seed: int = 0,
    write: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[InstrumentHead, HeadTraining]:
    """Render, extract features, choose C by leave-one-soundfont-out CV, fit, optionally write."""
    from polymuse.tools.encoders.audio import build_audio_encoder

    pieces = training_set(per_class, cache_dir / "head-renders", seed, progress=progress)
    encoder = build_audio_encoder("musicnn")
    halves_of = _halves(pieces)
    rows, labels, fonts, owners, halves = [], [], [], [], []
    for i, piece in enumerate(pieces):
        features = piece_features(piece, encoder, cache_dir / "head-features")
        rows.append(features)
        labels += [CLASSES.index(piece.label)] * len(features)
        fonts += [piece.soundfont] * len(features)
        owners += [i] * len(features)
        halves += [halves_of[piece.source]] * len(features)
        if progress and i % 20 == 0:
            progress(f"features {i + 1}/{len(pieces)}")
    x = np.concatenate(rows).astype(np.float64)
    y, font, owner, half = np.array(labels), np.array(fonts), np.array(owners), np.array(halves)
    cv: dict[str, dict[str, float]] = {}
    for c in C_GRID:
        scores = {}
        for held in sorted(set(fonts)):
            folds = []
            for h in (0, 1):
                train, test = (font != held) & (half != h), (font == held) & (half == h)
                if not train.any() or not test.any():
                    continue
                model = _fit(x[train], y[train], c, seed)
                folds.append(_piece_accuracy(model, x[test], y[test], owner[test]))
            if folds:
                scores[held] = float(np.mean(folds))
        scores["mean"] = float(np.mean(list(scores.values())))
        cv[f"{c:g}"] = {k: round(v, 4) for k, v in scores.items()}
        if progress:
            progress(f"C={c:g}: held-out soundfont piece accuracy {scores['mean']:.3f}")
    best = max(C_GRID, key=lambda c: cv[f"{c:g}"]["mean"])
    model = _fit(x, y, best, seed)
    used = sorted(set(fonts))
    head = InstrumentHead(
        encoder=encoder.name,
        classes=CLASSES,
        mean=model["mean"],
        scale=model["scale"],
        weights=model["weights"],
        bias=model["bias"],
        provenance={
            "date": datetime.now(UTC).date().isoformat(),
            "trainer": "polymuse.evaluation.head_training (polymuse eval tags --train-head)",
            "seed": seed,
            "per_class": per_class,
            "renders": len(pieces),
            "windows": len(x),
            "soundfonts": [{"name": n, **SOUNDFONTS[n]} for n in used],
            "pieces": "music21 palestrina (polyphony) and oneills1850 (tunes), disjoint from "
            "the Bach chorales and Ryan's Mammoth tunes the evaluations render",
            "sounds": {label: sorted(s) for label, s in SOUNDS.items()},
            "c": best,
            "cross_validation": cv,
        },
    )
    if write is not None:
        write.write_text(head.to_json() + "\n", encoding="utf-8")
    report = HeadTraining(c=best, cross_validation=cv, pieces=len(pieces), windows=len(x))
    return head, report


def _halves(pieces: list[TrainingPiece]) -> dict[str, int]:
    """Source -> cross-validation half: each class's scores, in hash order, alternate."""
    by_label: dict[str, set[str]] = {}
    for piece in pieces:
        by_label.setdefault(piece.label, set()).add(piece.source)
    return {
        source: i % 2
        for sources in by_label.values()
        for i, source in enumerate(
            sorted(sources, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
        )
    }


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int) -> dict[str, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model.fit((x - mean) / scale, y)
    weights = np.zeros((len(CLASSES), x.shape[1]))
    bias = np.full(len(CLASSES), -30.0)
    weights[model.classes_] = model.coef_
    bias[model.classes_] = model.intercept_
    return {"mean": mean, "scale": scale, "weights": weights, "bias": bias}


def _piece_accuracy(
    model: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, owner: np.ndarray
) -> float:
    logits = ((x - model["mean"]) / model["scale"]) @ model["weights"].T + model["bias"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    hits = [
        int(np.argmax(p[owner == o].mean(axis=0)) == y[owner == o][0]) for o in np.unique(owner)
    ]
    return float(np.mean(hits))
