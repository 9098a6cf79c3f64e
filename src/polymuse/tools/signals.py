"""Generated test signals with exactly known musical truth (tempo, meter, key, chords)."""

from __future__ import annotations

import numpy as np

MAJOR_CADENCE = [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")]  # I IV V I


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def synth_song(
    *, bpm: float = 120.0, tonic: int = 60, seconds: float = 16.0, sr: int = 44100, seed: int = 0
) -> np.ndarray:
    """Kick on beats 1 and 3, snare on 2 and 4, over a I-IV-V-I cadence with one chord a bar."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = np.zeros(n)
    beat = 60.0 / bpm
    for i, t0 in enumerate(np.arange(0, seconds, beat)):
        start = int(t0 * sr)
        length = min(int(0.15 * sr), n - start)
        tt = np.arange(length) / sr
        if i % 2 == 0:
            hit = np.sin(2 * np.pi * (50 + 60 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 18)
        else:
            hit = 0.5 * rng.standard_normal(length) * np.exp(-tt * 25)
        y[start : start + length] += 0.8 * hit
    for b, t0 in enumerate(np.arange(0, seconds, 4 * beat)):
        root, quality = MAJOR_CADENCE[b % 4]
        third = 4 if quality == "maj" else 3
        start = int(t0 * sr)
        length = min(int(4 * beat * sr), n - start)
        tt = np.arange(length) / sr
        env = np.minimum(1, tt / 0.01) * np.exp(-tt * 0.8)
        for interval in (0, third, 7, 12):
            f = midi_hz(tonic + root + interval - 12 * (interval == 0))
            for h, a in ((1, 1.0), (2, 0.4), (3, 0.2)):
                y[start : start + length] += 0.08 * a * np.sin(2 * np.pi * f * h * tt) * env
    y += 0.002 * rng.standard_normal(n)
    return (0.9 * y / np.abs(y).max()).astype(np.float32)
