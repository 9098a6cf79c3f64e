"""Beats, downbeats, meter and tempo with madmom's RNN + DBN downbeat tracker.

The eight BLSTMs of the activation model run through `madmom_torch` (same activations as
madmom's numpy layers, about 10x faster); processors are built once per process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from polymuse.errors import ParameterError
from polymuse.model_cards import MODEL_CARDS
from polymuse.report import Rhythm
from polymuse.tools import meter
from polymuse.tools.framewise import in_chunks
from polymuse.tools.madmom_compat import import_madmom

MODEL = MODEL_CARDS["madmom-downbeats"]
SAMPLE_RATE = 44100
FPS = 100
WINDOW_S = 60.0
OVERLAP_S = 10.0
CHUNK_S = 120.0
CONTEXT_S = 15.0


@lru_cache(maxsize=1)
def _activation_processor() -> Any:
    """RNNDownBeatProcessor with its networks in PyTorch."""
    import_madmom()
    from madmom.features.downbeats import RNNDownBeatProcessor

    from polymuse.tools.madmom_torch import accelerate

    return accelerate(RNNDownBeatProcessor())


@lru_cache(maxsize=8)
def _tracker(beats_per_bar: tuple[int, ...], min_bpm: float, max_bpm: float) -> Any:
    import_madmom()
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor

    return DBNDownBeatTrackingProcessor(
        beats_per_bar=list(beats_per_bar), min_bpm=min_bpm, max_bpm=max_bpm, fps=FPS
    )


def track_rhythm(
    y: np.ndarray,
    *,
    sr: int,
    beats_per_bar: tuple[int, ...] = (3, 4),
    min_bpm: float = 55.0,
    max_bpm: float = 215.0,
) -> Rhythm:
    """Track beats and downbeats in mono audio at 44.1 kHz.

    The meter is whichever of `beats_per_bar` the DBN decodes best, then checked for compound
    time (`polymuse.tools.meter`): bars of three beats whose accents say 6/8 are regrouped into
    two dotted-quarter beats, and beats divided in three are written over an eighth (6/8, 9/8,
    12/8). Tempo is the median inter-beat interval.

    Raises:
        ParameterError: `y` is not 1-d audio at 44.1 kHz, or the meter or tempo range is invalid.
    """
    if sr != SAMPLE_RATE:
        raise ParameterError(f"madmom's rhythm models need {SAMPLE_RATE} Hz audio, got {sr}")
    if np.ndim(y) != 1:
        raise ParameterError(f"track_rhythm needs mono audio (1-d), got shape {np.shape(y)}")
    meters = tuple(int(b) for b in beats_per_bar)
    if not meters or min(meters) < 2:
        raise ParameterError(f"beats_per_bar must list meters of 2 or more, got {beats_per_bar}")
    if not 0 < min_bpm < max_bpm:
        raise ParameterError(f"need 0 < min_bpm < max_bpm, got {min_bpm} and {max_bpm}")
    # float32 always: madmom's STFT caches a window scaled for the first signal's dtype
    samples = np.asarray(y, dtype=np.float32)
    activations = activations_in_chunks(samples)
    tracker = _tracker(meters, float(min_bpm), float(max_bpm))
    decoded = decode_in_windows(activations, tracker)
    if len(decoded) < 2:
        return Rhythm(tempo_bpm=None, time_signature=None, beats_per_bar=None)
    beats, positions = decoded[:, 0], decoded[:, 1].astype(int)
    envelope = meter.onset_envelope(samples, sr=sr)
    phase = meter.compound_phase(envelope, beats) if positions.max() == 3 else None
    if phase is not None:
        beats, positions = meter.regroup_compound(beats, phase, activations[:, 1])
        division = 3
    else:
        division = meter.subdivision(envelope, beats)
    bar_length = int(positions.max())
    return Rhythm(
        tempo_bpm=round(float(60.0 / np.median(np.diff(beats))), 2),
        time_signature=f"{bar_length * 3}/8" if division == 3 else f"{bar_length}/4",
        beats_per_bar=bar_length,
        beats=[round(float(t), 3) for t in beats],
        beat_positions=positions.tolist(),
        downbeats=[round(float(t), 3) for t in beats[positions == 1]],
    )


def activations_in_chunks(
    samples: np.ndarray, *, chunk_s: float = CHUNK_S, context_s: float = CONTEXT_S
) -> np.ndarray:
    """Beat and downbeat activations (frames x 2 at `FPS`) of float32 mono audio at 44.1 kHz.

    In one pass the three spectrograms and the BLSTM states cost about 0.25 GB per minute of
    audio; chunks with context (`framewise.in_chunks`) bound it and leave the decoded beats
    unchanged.
    """
    return in_chunks(
        _activation_processor(), samples, fps=FPS, chunk_s=chunk_s, context_s=context_s
    )


def decode_in_windows(
    activations: np.ndarray,
    tracker: Any,
    *,
    window_s: float = WINDOW_S,
    overlap_s: float = OVERLAP_S,
) -> np.ndarray:
    """Run the DBN over overlapping windows; keep each window's beats up to mid-overlap.

    Viterbi keeps a back-pointer per frame and state (about 14,000 states for 3/4 and 4/4
    bars at 55-215 BPM), so memory grows with length: 1.4 GB for 4 minutes in one pass. Windows
    bound it; the DBN locks on within a few beats, which the overlap leaves it.
    """
    n = len(activations)
    window, overlap = round(window_s * FPS), round(overlap_s * FPS)
    if n == 0:
        return np.zeros((0, 2))
    if n <= window + overlap:
        return tracker(activations)
    parts, start = [], 0
    while True:
        end = min(n, start + window + overlap)
        part = tracker(activations[start:end])
        times = part[:, 0] + start / FPS
        low = (start + overlap / 2) / FPS if start else 0.0
        high = (end - overlap / 2) / FPS if end < n else np.inf
        keep = (times >= low) & (times < high)
        parts.append(np.c_[times[keep], part[keep, 1]])
        if end == n:
            return np.vstack(parts)
        start = end - overlap
