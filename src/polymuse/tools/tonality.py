"""Key and chords with madmom's CNN key model and CNN chord features + CRF.

Both CNNs run through `madmom_torch` (same activations as madmom's numpy layers, many times
faster); processors are built once per process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from polymuse.errors import ParameterError
from polymuse.model_cards import MODEL_CARDS
from polymuse.report import KeyEstimate, TimedLabel
from polymuse.tools.madmom_compat import import_madmom

KEY_MODEL = MODEL_CARDS["madmom-key"]
CHORD_MODEL = MODEL_CARDS["madmom-chords"]
SAMPLE_RATE = 44100


def _signal(y: np.ndarray, sr: int) -> Any:
    if sr != SAMPLE_RATE:
        raise ParameterError(f"madmom's tonal models need {SAMPLE_RATE} Hz audio, got {sr}")
    if np.ndim(y) != 1:
        raise ParameterError(f"madmom's tonal models need mono audio (1-d), got {np.shape(y)}")
    madmom = import_madmom()
    # float32 always: madmom's STFT caches a window scaled for the first signal's dtype
    samples = np.asarray(y, dtype=np.float32)
    return madmom.audio.signal.Signal(samples, sample_rate=sr, num_channels=1)


@lru_cache(maxsize=1)
def _key_processor() -> Any:
    """CNNKeyRecognitionProcessor with its network in PyTorch."""
    import_madmom()
    from madmom.features.key import CNNKeyRecognitionProcessor

    from polymuse.tools.madmom_torch import accelerate

    return accelerate(CNNKeyRecognitionProcessor())


@lru_cache(maxsize=1)
def _chord_processors() -> tuple[Any, Any]:
    """CNNChordFeatureProcessor (network in PyTorch) and the CRF decoding its features."""
    import_madmom()
    from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor

    from polymuse.tools.madmom_torch import accelerate

    return accelerate(CNNChordFeatureProcessor()), CRFChordRecognitionProcessor()


def estimate_key(y: np.ndarray, *, sr: int, alternatives: int = 3) -> KeyEstimate:
    """Global key of mono 44.1 kHz audio: label, softmax confidence and the next best keys.

    Raises:
        ParameterError: `y` is not 1-d audio at 44.1 kHz, or `alternatives` is negative.
    """
    if alternatives < 0:
        raise ParameterError(f"alternatives must be 0 or more, got {alternatives}")
    signal = _signal(y, sr)
    from madmom.features.key import KEY_LABELS

    probs = np.asarray(_key_processor()(signal)).reshape(-1)
    order = np.argsort(probs)[::-1]
    runners_up = order[1 : 1 + alternatives]
    tonic, mode = KEY_LABELS[order[0]].split(" ")
    return KeyEstimate(
        label=KEY_LABELS[order[0]],
        tonic=tonic,
        mode=mode,
        confidence=round(float(probs[order[0]]), 4),
        alternatives={KEY_LABELS[i]: round(float(probs[i]), 4) for i in runners_up},
    )


def recognize_chords(y: np.ndarray, *, sr: int) -> list[TimedLabel]:
    """Major/minor chord segments (Harte labels, `N` for no chord) of mono 44.1 kHz audio.

    Raises:
        ParameterError: `y` is not 1-d audio at 44.1 kHz.
    """
    signal = _signal(y, sr)
    features, crf = _chord_processors()
    segments = crf(features(signal))
    return [
        TimedLabel(start=round(float(s), 3), end=round(float(e), 3), label=str(lab))
        for s, e, lab in segments
    ]
