"""Compound meter on a tracked beat grid: regrouping 6/8 read as 3/4, and the beat's subdivision.

madmom's downbeat DBN only knows bars of simple beats, so a 6/8 piece comes out either at the
dotted-quarter beat (right tempo, bars of 4 beats) or as 3/4 at 1.5x the tempo, each "beat"
two eighths long. The two readings differ in where the accents fall within six eighths:
3/4 accents eighths 0, 2 and 4; 6/8 accents 0 and 3, so one mid-beat point (eighth 3) is
stronger than the tracked beats beside it. The test compares the two accent templates on the
onset strength folded over groups of three tracked beats, over the whole piece; a piece in
3/4 whose offbeats are consistently stronger than its beats is heard as 6/8 by listeners too.
"""

from __future__ import annotations

import librosa
import numpy as np
from scipy.stats import binomtest

from polymuse.tools.audio import spans

FPS = 100
PEAK_WINDOW_S = 0.03  # onsets are read as the envelope's maximum within +-30 ms of a grid point
BLOCK_S = 60.0  # onset envelope computed in blocks of this many seconds
SIGNIFICANCE = 0.001  # sign-test level for calling the beat's subdivision ternary


def onset_envelope(y: np.ndarray, *, sr: int) -> np.ndarray:
    """Spectral-flux onset strength of mono audio at `FPS` frames per second.

    Computed in blocks of `BLOCK_S` (a 60-minute spectrogram would take 3 GB); frame k of a
    block is centred on its sample k * hop, so the blocks join on the global frame grid.
    """
    hop, n_fft = round(sr / FPS), 2048
    size = round(BLOCK_S * FPS) * hop
    parts = []
    for start, end in spans(len(y), size, minimum=n_fft):
        envelope = librosa.onset.onset_strength(y=y[start:end], sr=sr, hop_length=hop, n_fft=n_fft)
        parts.append(envelope if end == len(y) else envelope[: size // hop])
    return np.concatenate(parts)


def strengths_at(envelope: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Onset strength at each time (local maximum within `PEAK_WINDOW_S`)."""
    width = round(PEAK_WINDOW_S * FPS)
    frames = np.clip(np.round(np.asarray(times) * FPS).astype(int), 0, len(envelope) - 1)
    return np.array([envelope[max(0, f - width) : f + width + 1].max() for f in frames])


def eighth_grid(beats: np.ndarray) -> np.ndarray:
    """Each tracked beat and the midpoint after it."""
    grid = np.empty(2 * (len(beats) - 1))
    grid[0::2] = beats[:-1]
    grid[1::2] = (beats[:-1] + beats[1:]) / 2
    return grid


def compound_phase(envelope: np.ndarray, beats: np.ndarray) -> int | None:
    """Where the dotted-quarter pulse starts (0..2, in eighths) if 3/4 beats read a 6/8 piece.

    Returns None when the simple 3/4 template fits the folded accents at least as well, or the
    piece is shorter than two groups of three beats.
    """
    grid = eighth_grid(beats)
    groups = len(grid) // 6
    if groups < 2:
        return None
    folded = strengths_at(envelope, grid[: groups * 6]).reshape(groups, 6).mean(axis=0)
    folded = folded / max(folded.max(), 1e-12)
    simple = folded[0::2].mean() - folded[1::2].mean()
    contrasts = [folded[[p, p + 3]].mean() - np.delete(folded, [p, p + 3]).mean() for p in range(3)]
    phase = int(np.argmax(contrasts))
    return phase if contrasts[phase] > simple else None


def regroup_compound(
    beats: np.ndarray, phase: int, downbeat_activation: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Dotted-quarter beats (every third eighth from `phase`) in bars of two, with positions.

    Which of the two beats starts the bar is the one with more downbeat activation (madmom's
    RNN output at `FPS`), summed over the piece.
    """
    new_beats = eighth_grid(beats)[phase::3]
    frames = np.clip(np.round(new_beats * FPS).astype(int), 0, len(downbeat_activation) - 1)
    activation = downbeat_activation[frames]
    first = int(activation[1::2].sum() > activation[0::2].sum())
    positions = (np.arange(len(new_beats)) - first) % 2 + 1
    return new_beats, positions


def subdivision(envelope: np.ndarray, beats: np.ndarray) -> int:
    """3 when onsets fall on the thirds of beats more than on their halves, else 2.

    Beat by beat, the mean strength at one and two thirds is compared with the strength at
    the half; three is chosen only when the thirds win significantly more often than chance
    (one-sided sign test), so beats with nothing between them stay simple.
    """
    if len(beats) < 3:
        return 2
    starts, intervals = beats[:-1], np.diff(beats)
    thirds = (
        strengths_at(envelope, starts + intervals / 3)
        + strengths_at(envelope, starts + 2 * intervals / 3)
    ) / 2
    halves = strengths_at(envelope, starts + intervals / 2)
    decided = thirds != halves
    if not decided.any():
        return 2
    wins = int(np.sum(thirds[decided] > halves[decided]))
    test = binomtest(wins, int(decided.sum()), 0.5, alternative="greater")
    return 3 if test.pvalue < SIGNIFICANCE else 2
