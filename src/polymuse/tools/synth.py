"""Render music21 scores to audio through General MIDI and FluidSynth, with exact ground truth.

The pipeline is score -> (metrical grid, note events) -> MIDI -> FluidSynth -> WAV. The MIDI
file is written from the same grid and note events as the ground truth, at one constant tempo,
so every time in a `GroundTruth` is exact to one MIDI tick (under 0.1 ms at any usual tempo).

Conventions:

- Time 0 is the first sample of the audio. The score starts `lead_in` seconds later.
- The beat is music21's: the denominator note in simple meters (quarter in 2/4, 3/4, 4/4; half
  in 2/2), the dotted note in compound ones (dotted quarter in 6/8, 9/8, 12/8).
- A short first measure is an anacrusis: its notes lead up to the first bar line, so beats
  start at the first grid beat at or after the first note and downbeats at bar lines.
- Measures split around a repeat sign (three beats, then one) continue the same bar. A measure
  that would cross a bar line of the meter makes the grid ambiguous and is rejected.
- FluidSynth's file renderer starts each MIDI event 64 to 128 samples late (it renders in
  64-sample blocks; measured over 30 clicks at 16, 22.05, 44.1 and 48 kHz: 96 samples on
  average, i.e. 2.2 ms at 44.1 kHz, 6 ms at 16 kHz). `render_midi` drops the first
  `FLUIDSYNTH_LATENCY` samples, leaving a +-32-sample jitter plus the preset's own attack:
  the first audible sample then lies 0.3 to 1.7 ms after the MIDI time on average.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from music21 import harmony, key, meter, note, stream
from music21.midi import base as midi
from music21.pitch import Pitch
from pydantic import BaseModel, ConfigDict, Field

from polymuse.errors import AudioLoadError, ModelUnavailableError, ParameterError

SOUNDFONT_ENV = "POLYMUSE_SOUNDFONT"
SOUNDFONT_LOCATIONS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),  # Debian/Ubuntu: fluid-soundfont-gm
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),  # Fedora, Arch
    Path("/usr/share/sounds/sf2/default-GM.sf2"),  # Debian alternatives link
    Path("/usr/share/soundfonts/default.sf2"),
)
DEFAULT_LEAD_IN = 0.5
FLUIDSYNTH_LATENCY = 96  # samples; measured at 16, 22.05, 44.1 and 48 kHz, see module docstring
SILENCE = 2**-12  # -72 dBFS: trailing audio below this is dropped
# 2**5 * 3**2 * 5 * 7: every usual tuplet and note value down to 1/64 lands on a tick.
TICKS_PER_QUARTER = 10080
DRUM_CHANNEL = 9  # channel 10, counted from 1
KICK, SNARE, CLOSED_HIHAT = 36, 38, 42
_MELODIC_CHANNELS = tuple(c for c in range(16) if c != DRUM_CHANNEL)


class NoteEvent(BaseModel):
    """One sounding note: onset and offset in seconds, MIDI pitch."""

    model_config = ConfigDict(frozen=True)

    onset: float
    offset: float
    pitch: int = Field(ge=0, le=127)


class PartNotes(BaseModel):
    """The notes one score part plays, and the General MIDI program it is rendered with."""

    name: str
    program: int = Field(ge=0, le=127)
    notes: list[NoteEvent]


class GroundTruth(BaseModel):
    """What a rendered score holds, read from the score at the rendering tempo.

    Times are seconds from the first sample of the audio.
    """

    schema_version: Literal[1] = 1
    time_signature: str = Field(description="As notated, e.g. '6/8'.")
    beats_per_bar: int
    beat_unit: float = Field(description="Quarter notes per beat: 1.0, 1.5 (dotted), 2.0 (half).")
    beat_division: int = Field(description="Subdivisions per beat: 2 simple, 3 compound.")
    bpm: float = Field(description="Beats per minute at the beat level, as written to the MIDI.")
    key: str | None = Field(description="'D major', 'Bb minor'; None when notation leaves it open.")
    start: float = Field(description="Where the score begins (the lead-in); a rest may follow.")
    end: float = Field(description="End of the music: its last bar line, or the trim point.")
    drums: bool = Field(False, description="Whether a generated drum part was rendered with it.")
    beats: list[float]
    downbeats: list[float]
    parts: list[PartNotes]


class KeyRuling(BaseModel):
    """The key the notation states, or why it does not state one."""

    key: str | None
    rule: str


@dataclass(frozen=True)
class _Grid:
    """The metrical lattice of a score, in quarter notes from its beginning."""

    signature: meter.TimeSignature
    anacrusis: Fraction  # how far into its bar the score begins
    end: Fraction

    @property
    def bar(self) -> Fraction:
        return _frac(self.signature.barDuration.quarterLength)

    @property
    def beat(self) -> Fraction:
        return _frac(self.signature.beatDuration.quarterLength)

    def positions(self, step: Fraction) -> list[Fraction]:
        """Times in [0, end) lying on multiples of `step` counted from the bar lines."""
        first = math.ceil(self.anacrusis / step)
        count = math.ceil((self.end + self.anacrusis) / step) - first
        return [(first + i) * step - self.anacrusis for i in range(count)]

    def beat_number(self, time: Fraction) -> Fraction:
        """1-based beat of the bar at `time` (fractional between beats)."""
        return ((self.anacrusis + time) % self.bar) / self.beat + 1


@dataclass(frozen=True)
class _Timing:
    """One constant tempo, with the lead-in rounded to whole ticks."""

    us_per_quarter: int
    lead_in_ticks: int

    def ticks(self, quarters: Fraction) -> int:
        return self.lead_in_ticks + round(quarters * TICKS_PER_QUARTER)

    def seconds(self, quarters: Fraction) -> float:
        """Time of a score position in the audio, to the microsecond."""
        return round(self.ticks(quarters) * self.us_per_quarter / (1e6 * TICKS_PER_QUARTER), 6)


@dataclass(frozen=True)
class _Voice:
    name: str
    program: int
    notes: list[tuple[Fraction, Fraction, int]]  # onset, offset (quarters), MIDI pitch


@dataclass(frozen=True)
class _Performance:
    grid: _Grid
    timing: _Timing
    voices: list[_Voice]


def find_soundfont(soundfont: Path | str | None = None) -> Path:
    """Locate a General MIDI soundfont.

    Args:
        soundfont: Explicit `.sf2` file. Without it, `$POLYMUSE_SOUNDFONT`, then the usual
            system locations (`SOUNDFONT_LOCATIONS`) are tried.

    Returns:
        Path of an existing soundfont file.

    Raises:
        ModelUnavailableError: The given file does not exist, or none was found.
    """
    explicit = soundfont if soundfont is not None else os.environ.get(SOUNDFONT_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ModelUnavailableError(f"soundfont {path} does not exist")
        return path
    for candidate in SOUNDFONT_LOCATIONS:
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(p) for p in SOUNDFONT_LOCATIONS)
    raise ModelUnavailableError(
        f"no General MIDI soundfont found (searched {searched}); install the Debian package "
        f"fluid-soundfont-gm or set {SOUNDFONT_ENV} to an .sf2 file"
    )


def render_midi(
    midi_path: Path | str,
    out_wav: Path | str,
    *,
    sample_rate: int = 44100,
    soundfont: Path | str | None = None,
    gain: float = 0.5,
) -> Path:
    """Render a MIDI file to a stereo 16-bit WAV with the `fluidsynth` command.

    Sample 0 of the output is MIDI time 0 (FluidSynth's latency is removed) and the output
    ends when the last voice falls below -72 dBFS.

    Args:
        midi_path: Standard MIDI file.
        out_wav: WAV file to write; its folder is created.
        sample_rate: Output sample rate in Hz.
        soundfont: `.sf2` file; see `find_soundfont` for the default.
        gain: FluidSynth master gain (its own default, 0.2, is quiet for one or two voices).

    Returns:
        `out_wav` as a Path.

    Raises:
        ParameterError: The MIDI file is missing or a parameter is out of range.
        ModelUnavailableError: fluidsynth or a soundfont is not installed.
        AudioLoadError: fluidsynth failed or wrote no audio.
    """
    midi_path, out_wav = Path(midi_path), Path(out_wav)
    if not midi_path.is_file():
        raise ParameterError(f"MIDI file {midi_path} does not exist")
    if not 8000 <= sample_rate <= 192000:
        raise ParameterError(f"sample_rate={sample_rate} Hz is outside 8000..192000")
    if not 0 < gain <= 10:
        raise ParameterError(f"gain={gain} is outside (0, 10]")
    executable = shutil.which("fluidsynth")
    if executable is None:
        raise ModelUnavailableError(
            "the fluidsynth command is not installed; install the Debian package fluidsynth"
        )
    font = find_soundfont(soundfont)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    partial = out_wav.with_name(f".{out_wav.stem}.partial.wav")
    command = [
        executable,
        *("-n", "-i", "-q", "-T", "wav"),
        *("-g", f"{gain:g}", "-r", str(sample_rate), "-F", str(partial)),
        str(font),
        str(midi_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not partial.is_file() or partial.stat().st_size <= 44:
        partial.unlink(missing_ok=True)
        said = (result.stderr or result.stdout).strip().splitlines()
        raise AudioLoadError(
            out_wav,
            f"fluidsynth exited with status {result.returncode} rendering {midi_path}"
            + (f": {said[-1]}" if said else ", writing no audio"),
        )
    audio, rate = sf.read(partial, dtype="int16", always_2d=True)
    partial.unlink()
    audible = np.flatnonzero(np.abs(audio).max(axis=1) > SILENCE * 32768)
    last = audible[-1] + 1 if audible.size else len(audio)
    sf.write(out_wav, audio[FLUIDSYNTH_LATENCY:last], rate, subtype="PCM_16")
    return out_wav


def notated_key(score: stream.Score) -> KeyRuling:
    """Read the key from the notation: the last key signature and the final sonority.

    The rule, for tonal music that ends on its tonic:

    - lowest final note on the tonic of the signature's major key -> major, unless the final
      sonority holds the minor third above it;
    - lowest final note on the tonic of the relative minor -> minor if the final third is
      minor or absent; if it is major (a Picardy third), minor only when the minor key's
      leading tone is written more often than that major third. Otherwise the piece may be in
      the minor key a fourth higher, written with a Dorian signature and ending on a half
      cadence (Bach's BWV 2.6 and 153.1 do this), and is undecided;
    - anything else (Phrygian endings on the dominant, modal signatures) -> undecided.

    Args:
        score: Parsed score.

    Returns:
        The key in mir_eval spelling ('D major', 'Bb minor') and the rule that decided it, or
        `key=None` and why not.
    """
    signatures = list(score.recurse().getElementsByClass(key.KeySignature))
    if not signatures:
        return KeyRuling(key=None, rule="no key signature")
    signature = key.KeySignature(signatures[-1].sharps)
    final = _final_sonority(score)
    if not final:
        return KeyRuling(key=None, rule="no notes")
    bass = min(final)
    classes = {p % 12 for p in final}
    major = signature.asKey("major").tonic
    minor = signature.asKey("minor").tonic
    if bass % 12 == major.pitchClass:
        if (bass + 3) % 12 in classes and (bass + 4) % 12 not in classes:
            return KeyRuling(key=None, rule=f"final chord on {_spell(major)} is minor")
        return KeyRuling(key=f"{_spell(major)} major", rule="final bass on the major tonic")
    if bass % 12 == minor.pitchClass:
        if (bass + 4) % 12 not in classes:
            return KeyRuling(
                key=f"{_spell(minor)} minor", rule="final bass on the relative minor tonic"
            )
        written = Counter(p.pitchClass for n in _sounding(score) for p in n.pitches)
        if written[(bass - 1) % 12] > written[(bass + 4) % 12]:
            return KeyRuling(
                key=f"{_spell(minor)} minor",
                rule="final bass on the relative minor tonic (Picardy third)",
            )
        return KeyRuling(
            key=None,
            rule="final major chord on the relative minor tonic, whose leading tone is rarer "
            "than the chord's third (half cadence or Picardy third)",
        )
    degree = (bass - major.pitchClass) % 12
    reason = {
        4: "final bass on the dominant of the relative minor (Phrygian ending)",
        7: "final bass on the dominant of the major key (Mixolydian ending)",
        2: "final bass on the second degree (Dorian signature)",
    }.get(degree, f"final bass {degree} semitones above the major tonic")
    return KeyRuling(key=None, rule=reason)


def ground_truth(
    score: stream.Score,
    *,
    bpm: float,
    programs: Sequence[int] | None = None,
    lead_in: float = DEFAULT_LEAD_IN,
    max_seconds: float | None = None,
) -> GroundTruth:
    """Read beats, downbeats, meter, tempo, key and note events from a score.

    Takes the same arguments as `write_midi` (which returns the same object), for callers that
    only need the truth. The key is `notated_key` of the whole score, even when trimmed.

    Args:
        score: Score with measures and one time signature.
        bpm: Tempo at the beat level (see the module docstring).
        programs: General MIDI program per part; default, each part's music21 instrument.
        lead_in: Silence before the music, in seconds.
        max_seconds: Trim the music at the last bar line before this many seconds of music.

    Returns:
        The ground truth, with times in seconds of the rendered audio.

    Raises:
        ParameterError: Invalid parameters, or a score whose bar lines do not follow its meter.
    """
    performance = _perform(
        score, bpm=bpm, programs=programs, lead_in=lead_in, max_seconds=max_seconds
    )
    return _truth(performance, key_=notated_key(score).key, drums=False)


def write_midi(
    score: stream.Score,
    out_mid: Path | str,
    *,
    bpm: float,
    programs: Sequence[int] | None = None,
    drums: bool = False,
    lead_in: float = DEFAULT_LEAD_IN,
    max_seconds: float | None = None,
) -> GroundTruth:
    """Write a score as a General MIDI file at one tempo, optionally with a drum part.

    Each part gets its own channel and program; the drum part (channel 10) plays a kick on
    each downbeat, a snare on the backbeats (beats 2 and 4; 2 and 3 in triple meters) and a
    closed hi-hat on each subdivision of the beat (eighths in 4/4, 6/8 and 9/8; quarters in
    2/2), from the first subdivision of the music to its end. Velocities follow the meter
    (downbeat > beat > offbeat); dynamics, articulations, ornaments and grace notes are
    ignored so the MIDI plays exactly the returned note events.

    Args:
        score: Score with measures and one time signature.
        out_mid: MIDI file to write; its folder is created.
        bpm: Tempo at the beat level.
        programs: General MIDI program per part; default, each part's music21 instrument.
        drums: Add the generated drum part.
        lead_in: Silence before the music, in seconds.
        max_seconds: Trim the music at the last bar line before this many seconds of music.

    Returns:
        The ground truth of the written file.

    Raises:
        ParameterError: Invalid parameters, more than 15 parts, or a score whose bar lines do
            not follow its meter.
    """
    performance = _perform(
        score, bpm=bpm, programs=programs, lead_in=lead_in, max_seconds=max_seconds
    )
    if len(performance.voices) > len(_MELODIC_CHANNELS):
        raise ParameterError(
            f"the score has {len(performance.voices)} parts; General MIDI has "
            f"{len(_MELODIC_CHANNELS)} melodic channels"
        )
    out_mid = Path(out_mid)
    out_mid.parent.mkdir(parents=True, exist_ok=True)
    out_mid.write_bytes(_midi_bytes(performance, drums=drums))
    return _truth(performance, key_=notated_key(score).key, drums=drums)


def _perform(
    score: stream.Score,
    *,
    bpm: float,
    programs: Sequence[int] | None,
    lead_in: float,
    max_seconds: float | None,
) -> _Performance:
    if not isinstance(score, stream.Score) or not score.parts:
        raise ParameterError(f"expected a music21 Score with parts, got {type(score).__name__}")
    if not 20 <= bpm <= 400:
        raise ParameterError(f"bpm={bpm} is outside 20..400")
    if not 0 <= lead_in <= 60:
        raise ParameterError(f"lead_in={lead_in} s is outside 0..60")
    if max_seconds is not None and max_seconds <= 0:
        raise ParameterError(f"max_seconds={max_seconds} must be positive")
    parts = list(score.parts)
    if programs is None:
        programs = [_instrument_program(part) for part in parts]
    elif len(programs) != len(parts) or not all(0 <= p <= 127 for p in programs):
        raise ParameterError(
            f"programs={list(programs)} must hold one General MIDI program (0..127) for each "
            f"of the {len(parts)} parts"
        )
    signature = _time_signature(score)
    quarter_bpm = bpm * signature.beatDuration.quarterLength
    us_per_quarter = round(60e6 / quarter_bpm)
    timing = _Timing(
        us_per_quarter=us_per_quarter,
        lead_in_ticks=round(lead_in * 1e6 / us_per_quarter * TICKS_PER_QUARTER),
    )
    max_quarters = (
        None
        if max_seconds is None
        else _frac(max_seconds * 1e6 / us_per_quarter).limit_denominator(TICKS_PER_QUARTER)
    )
    grid = _metrical_grid(score, signature, max_quarters=max_quarters)
    voices = [
        _Voice(
            name=part.partName or f"part {i + 1}",
            program=program,
            notes=_part_notes(part, end=grid.end),
        )
        for i, (part, program) in enumerate(zip(parts, programs, strict=True))
    ]
    return _Performance(grid=grid, timing=timing, voices=voices)


def _time_signature(score: stream.Score) -> meter.TimeSignature:
    signatures = list(score.parts[0].recurse().getElementsByClass(meter.TimeSignature))
    if not signatures:
        raise ParameterError("the score has no time signature")
    ratios = sorted({s.ratioString for s in signatures})
    if len(ratios) > 1:
        raise ParameterError(f"meter changes ({', '.join(ratios)}) are not supported")
    return signatures[0]


def _metrical_grid(
    score: stream.Score, signature: meter.TimeSignature, *, max_quarters: Fraction | None
) -> _Grid:
    """Lay the meter's lattice over the score and check its bar lines follow it."""
    bar = _frac(signature.barDuration.quarterLength)
    measures = list(score.parts[0].getElementsByClass(stream.Measure))
    if not measures:
        raise ParameterError("the score has no measures; build it with Measure objects")
    starts = [_frac(m.offset) for m in measures]
    end = _frac(score.highestTime)
    lengths = [b - a for a, b in zip(starts, [*starts[1:], end], strict=True)]
    first_phase = _frac(measures[0].paddingLeft) or (bar - lengths[0] if lengths[0] < bar else 0)
    anacrusis = (first_phase - starts[0]) % bar
    if max_quarters is not None and end > max_quarters:
        end = ((max_quarters + anacrusis) // bar) * bar - anacrusis
        if end <= 0:
            raise ParameterError(
                f"max_seconds is shorter than the first bar ({bar} quarters at this tempo)"
            )
    for measure, start, length in zip(measures, starts, lengths, strict=True):
        if start >= end:
            break
        phase = (anacrusis + start) % bar
        if phase + length > bar:
            raise ParameterError(
                f"measure {measure.number}{measure.numberSuffix or ''} holds {float(length):g} "
                f"quarters from {float(phase):g} into a {float(bar):g}-quarter bar: its bar "
                f"lines do not follow the {signature.ratioString} meter"
            )
    return _Grid(signature=signature, anacrusis=anacrusis, end=end)


def _part_notes(part: stream.Part, *, end: Fraction) -> list[tuple[Fraction, Fraction, int]]:
    """Sounding notes of a part up to `end`: ties merged, grace notes and chord symbols left out."""
    events: set[tuple[Fraction, Fraction, int]] = set()
    for element in _sounding(part.stripTies()):
        onset = _frac(element.offset)
        if onset >= end:
            continue
        offset = min(onset + _frac(element.duration.quarterLength), end)
        events.update((onset, offset, p.midi) for p in element.pitches)
    return sorted(events)


def _instrument_program(part: stream.Part) -> int:
    instrument = part.getInstrument(returnDefault=True)
    return instrument.midiProgram if instrument.midiProgram is not None else 0


def _sounding(part: stream.Stream) -> list[note.NotRest]:
    """Notes and chords of a stream, without grace notes and chord symbols."""
    return [
        n
        for n in part.flatten().notes
        if not isinstance(n, harmony.Harmony) and not n.duration.isGrace
    ]


def _final_sonority(score: stream.Score) -> list[int]:
    """MIDI pitches of the last note or chord of every part."""
    final: list[int] = []
    for part in score.parts:
        notes = _sounding(part)
        if notes:
            final.extend(p.midi for p in notes[-1].pitches)
    return final


def _spell(tonic: Pitch) -> str:
    return tonic.name.replace("-", "b")


def _truth(performance: _Performance, *, key_: str | None, drums: bool) -> GroundTruth:
    grid, timing = performance.grid, performance.timing
    signature = grid.signature
    seconds = timing.seconds
    return GroundTruth(
        time_signature=signature.ratioString,
        beats_per_bar=signature.beatCount,
        beat_unit=float(grid.beat),
        beat_division=signature.beatDivisionCount,
        bpm=round(60e6 / timing.us_per_quarter / float(grid.beat), 6),
        key=key_,
        start=seconds(Fraction(0)),
        end=seconds(grid.end),
        drums=drums,
        beats=[seconds(t) for t in grid.positions(grid.beat)],
        downbeats=[seconds(t) for t in grid.positions(grid.bar)],
        parts=[
            PartNotes(
                name=voice.name,
                program=voice.program,
                notes=[
                    NoteEvent(onset=seconds(on), offset=seconds(off), pitch=pitch)
                    for on, off, pitch in voice.notes
                ],
            )
            for voice in performance.voices
        ],
    )


def _velocity(grid: _Grid, time: Fraction) -> int:
    """Metrical accent: downbeats loudest, then beats, then everything between."""
    beat = grid.beat_number(time)
    if beat == 1:
        return 100
    return 88 if beat.denominator == 1 else 76


def _drum_notes(grid: _Grid) -> list[tuple[Fraction, Fraction, int, int]]:
    """Kick, snare and hi-hat hits on the grid: (onset, offset, GM drum key, velocity)."""
    step = grid.beat / grid.signature.beatDivisionCount
    beats_per_bar = grid.signature.beatCount
    backbeats = {2, 3} if beats_per_bar == 3 else set(range(2, beats_per_bar + 1, 2))
    hits = []
    for time in grid.positions(step):
        off = min(time + step, grid.end)
        beat = grid.beat_number(time)
        hits.append((time, off, CLOSED_HIHAT, 72 if beat.denominator == 1 else 56))
        if beat == 1:
            hits.append((time, off, KICK, 110))
        elif beat.denominator == 1 and int(beat) in backbeats:
            hits.append((time, off, SNARE, 96))
    return hits


def _midi_bytes(performance: _Performance, *, drums: bool) -> bytes:
    grid, timing = performance.grid, performance.timing
    conductor: list[tuple[int, int, midi.MidiEvent]] = [
        (0, 0, _meta(midi.MetaEvents.SET_TEMPO, midi.putNumber(timing.us_per_quarter, 3))),
        (0, 0, _meta(midi.MetaEvents.TIME_SIGNATURE, _time_signature_data(grid.signature))),
    ]
    tracks = [conductor]
    for voice, channel in zip(performance.voices, _MELODIC_CHANNELS, strict=False):
        events = [
            (0, 0, _meta(midi.MetaEvents.SEQUENCE_TRACK_NAME, voice.name.encode())),
            (0, 0, _program_change(channel, voice.program)),
        ]
        for onset, offset, pitch in voice.notes:
            events += _note(timing, channel, onset, offset, pitch, _velocity(grid, onset))
        tracks.append(events)
    if drums:
        events = [
            (0, 0, _meta(midi.MetaEvents.SEQUENCE_TRACK_NAME, b"Drums")),
            (0, 0, _program_change(DRUM_CHANNEL, 0)),
        ]
        for onset, offset, drum, velocity in _drum_notes(grid):
            events += _note(timing, DRUM_CHANNEL, onset, offset, drum, velocity)
        tracks.append(events)
    end_tick = timing.ticks(grid.end)
    midi_file = midi.MidiFile()
    midi_file.format = 1
    midi_file.ticksPerQuarterNote = TICKS_PER_QUARTER
    midi_file.tracks = [_track(i, events, end_tick) for i, events in enumerate(tracks)]
    return midi_file.writestr()


def _note(
    timing: _Timing, channel: int, onset: Fraction, offset: Fraction, pitch: int, velocity: int
) -> list[tuple[int, int, midi.MidiEvent]]:
    """A note-on and its note-off; offs sort before ons at the same tick so repeats sound."""
    on = midi.MidiEvent(type=midi.ChannelVoiceMessages.NOTE_ON, channel=channel + 1)
    on.pitch, on.velocity = pitch, velocity
    off = midi.MidiEvent(type=midi.ChannelVoiceMessages.NOTE_OFF, channel=channel + 1)
    off.pitch, off.velocity = pitch, 0
    return [(timing.ticks(onset), 1, on), (timing.ticks(offset), 0, off)]


def _meta(kind: midi.MetaEvents, data: bytes) -> midi.MidiEvent:
    event = midi.MidiEvent(type=kind)
    event.data = data
    return event


def _program_change(channel: int, program: int) -> midi.MidiEvent:
    event = midi.MidiEvent(type=midi.ChannelVoiceMessages.PROGRAM_CHANGE, channel=channel + 1)
    event.data = program
    return event


def _time_signature_data(signature: meter.TimeSignature) -> bytes:
    # numerator, log2 denominator, MIDI clocks per metronome click, 32nds per quarter
    clocks = round(24 * signature.beatDuration.quarterLength)
    return bytes([signature.numerator, int(math.log2(signature.denominator)), clocks, 8])


def _track(
    index: int, events: list[tuple[int, int, midi.MidiEvent]], end_tick: int
) -> midi.MidiTrack:
    track = midi.MidiTrack(index=index)
    now = 0
    for tick, _, event in sorted(events, key=lambda e: (e[0], e[1])):
        track.events += [midi.DeltaTime(track, time=tick - now), event]
        now = tick
    track.events += [
        midi.DeltaTime(track, time=max(end_tick - now, 0)),
        _meta(midi.MetaEvents.END_OF_TRACK, b""),
    ]
    track.updateEvents()
    return track


def _frac(value: float | Fraction) -> Fraction:
    """Exact quarter-note value: music21 offsets are floats on binary values, else Fractions."""
    return Fraction(value).limit_denominator(1 << 20)
