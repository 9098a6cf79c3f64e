"""A known piece for demos and tests: Pachelbel's Canon in D, written out and rendered.

The ground bass (D A B F# G D G A, one quarter note each) repeats under three violins that
play the same line in canon, each entering two bars after the one before, as in the original.
The line runs through variations of the real melody (the quarter-note opening, the eighth-note
arpeggios, the sixteenth-note runs, the dotted scale figure, the octave leaps) and all voices
meet on a final D major chord: 21 bars of 4/4, about 77 s at quarter = 66.
"""

from __future__ import annotations

from pathlib import Path

from music21 import converter, instrument, key, note, stream, tempo

from polymuse.tools.synth import GroundTruth, ground_truth, render_midi, write_midi

CANON_NAME = "卡农"
CANON_BPM = 66.0
# music21 tinyNotation: c = C4, c' = C5, c'# = C#5 (accidental after the octave marks),
# C = C3, CC = C2; 4 = quarter, 8 = eighth, 16 = sixteenth, 1 = whole.
GROUND_BASS = "D4 AA BB FF# GG DD GG AA"
VARIATIONS = (
    "f'#4 e' d' c'# b a b c'#",
    "d'4 c'# b a g f# g e",
    "d8 f# a g f# d f# e d B d a g b a g",
    "f#8 d e c'# d' f'# a' a b g a f# d d' d' c'#",
    "d'16 c'# d' d c# a e f# d d' c'# b c'# f'# a' b' g' f'# e' g' f'# e' d' c'# b a g f# e g f# e",
    "f'#8 g'16 a' f'#8 g'16 a' a b c'# d' e' f'# g' a' f'#8 d'16 e' f'#8 f#16 g a b a g a f# g a",
    "f'#8 f# e' e d' d c'# c# b B a A b B c'# c#",
    "d''8 d' c''# c'# b' b a' a g' g f'# f# g' g e' e",
    "f'#4 e' d' c'# b a b c'#",
)
FINAL_CHORD = ("d'1", "a1", "f#1", "DD1")  # violins I, II, III, cello


def canon_score() -> stream.Score:
    """Pachelbel's Canon in D as a four-part score: three violins and cello."""
    cycles = 1 + len(VARIATIONS)
    voices = []
    for violin in range(3):
        rests = " ".join(["r1 r1"] * (violin + 1))
        line = " ".join(VARIATIONS[: len(VARIATIONS) - violin])
        voices.append(f"{rests} {line} {FINAL_CHORD[violin]}")
    voices.append(f"{' '.join([GROUND_BASS] * cycles)} {FINAL_CHORD[3]}")
    names = ("Violin I", "Violin II", "Violin III", "Violoncello")
    sounds = (instrument.Violin, instrument.Violin, instrument.Violin, instrument.Violoncello)
    score = stream.Score()
    for name, sound, text in zip(names, sounds, voices, strict=True):
        part = converter.parse(f"tinyNotation: 4/4 {text}")
        part.partName = name
        first = part.getElementsByClass(stream.Measure).first()
        first.insert(0, key.Key("D"))
        part.insert(0, sound())
        score.insert(0, part)
    score.parts[0].getElementsByClass(stream.Measure).first().insert(
        0, tempo.MetronomeMark(number=CANON_BPM, referent=note.Note(type="quarter"))
    )
    return score


def canon_truth() -> GroundTruth:
    """Ground truth of the rendered Canon: D major, 4/4, quarter = 66, beats and notes."""
    return ground_truth(canon_score(), bpm=CANON_BPM)


def write_example(
    out_dir: Path | str,
    *,
    sample_rate: int = 44100,
    soundfont: Path | str | None = None,
) -> Path:
    """Write `卡农.mid`, `卡农.wav` and its ground truth `卡农.json` to `out_dir`.

    Args:
        out_dir: Folder to write to; created if missing.
        sample_rate: Audio sample rate in Hz.
        soundfont: `.sf2` file; see `synth.find_soundfont` for the default.

    Returns:
        Path of the WAV file.

    Raises:
        ModelUnavailableError: fluidsynth or a soundfont is missing.
    """
    out_dir = Path(out_dir)
    midi = out_dir / f"{CANON_NAME}.mid"
    truth = write_midi(canon_score(), midi, bpm=CANON_BPM)
    (out_dir / f"{CANON_NAME}.json").write_text(truth.model_dump_json(indent=1), encoding="utf-8")
    return render_midi(
        midi, out_dir / f"{CANON_NAME}.wav", sample_rate=sample_rate, soundfont=soundfont
    )
