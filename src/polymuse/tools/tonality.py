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
from polymuse.tools.audio import spans
from polymuse.tools.framewise import in_chunks
from polymuse.tools.madmom_compat import import_madmom

KEY_MODEL = MODEL_CARDS["madmom-key"]
KEY_PROFILE_MODEL = MODEL_CARDS["key-profiles"]
CHORD_MODEL = MODEL_CARDS["madmom-chords"]
SAMPLE_RATE = 44100


def _samples(y: np.ndarray, sr: int) -> np.ndarray:
    """Checked mono 44.1 kHz audio as float32 (madmom's STFT caches a window scaled for the
    first signal's dtype, so every signal must have the same one)."""
    if sr != SAMPLE_RATE:
        raise ParameterError(f"madmom's tonal models need {SAMPLE_RATE} Hz audio, got {sr}")
    if np.ndim(y) != 1:
        raise ParameterError(f"madmom's tonal models need mono audio (1-d), got {np.shape(y)}")
    return np.asarray(y, dtype=np.float32)


def _signal(y: np.ndarray, sr: int) -> Any:
    madmom = import_madmom()
    return madmom.audio.signal.Signal(_samples(y, sr), sample_rate=sr, num_channels=1)


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


# Albrecht & Shanahan (2013) key profiles, C first: tone distributions of major/minor pieces.
MAJOR_PROFILE = np.array(
    [0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081]
)
MINOR_PROFILE = np.array(
    [0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052]
)
# Weight of the profile correlations (range -1..1) against the CNN's log-probabilities: a
# correlation lead of 0.1 counts like a factor e in the CNN's odds.
PROFILE_WEIGHT = 10.0


def profile_correlations(y: np.ndarray, *, sr: int, labels: list[str]) -> np.ndarray:
    """Pearson correlation of the piece's mean CQT chroma with each key's rotated profile.

    The chroma is summed over one-minute blocks, which bounds the CQT's memory on long files.
    """
    import librosa

    y22 = librosa.resample(y, orig_sr=sr, target_sr=22050, res_type="soxr_hq")
    total, frames = np.zeros(12), 0
    for start, end in spans(len(y22), 2048 * round(60 * 22050 / 2048), minimum=22050):
        chroma = librosa.feature.chroma_cqt(y=y22[start:end], sr=22050, hop_length=2048)
        total, frames = total + chroma.sum(axis=1), frames + chroma.shape[1]
    chroma = total / max(frames, 1)
    out = np.zeros(len(labels))
    for i, label in enumerate(labels):
        tonic, mode = label.split(" ")
        profile = MAJOR_PROFILE if mode == "major" else MINOR_PROFILE
        rotated = np.roll(profile, librosa.note_to_midi(f"{tonic}4") % 12)
        out[i] = 0.0 if not chroma.any() else np.corrcoef(rotated, chroma)[0, 1]
    return out


def estimate_key(y: np.ndarray, *, sr: int, alternatives: int = 3) -> KeyEstimate:
    """Global key of mono 44.1 kHz audio: label, confidence and the next best keys.

    Two estimators vote: madmom's CNN (trained on popular and electronic music) and key-profile
    correlation of the chroma (strong on tonal art music, where the CNN confuses a key with its
    dominant). Their log-linear combination is renormalised into the confidence.

    Raises:
        ParameterError: `y` is not 1-d audio at 44.1 kHz, or `alternatives` is negative.
    """
    if alternatives < 0:
        raise ParameterError(f"alternatives must be 0 or more, got {alternatives}")
    signal = _signal(y, sr)
    from madmom.features.key import KEY_LABELS

    cnn = np.asarray(_key_processor()(signal), dtype=np.float64).reshape(-1)
    profile = profile_correlations(y, sr=sr, labels=KEY_LABELS)
    logits = np.log(cnn + 1e-9) + PROFILE_WEIGHT * np.nan_to_num(profile)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
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
    samples = _samples(y, sr)
    features, crf = _chord_processors()
    # the chord CNN sees a few frames around each one, so one-minute chunks are exact
    segments = crf(in_chunks(features, samples, fps=10, chunk_s=60.0, context_s=5.0))
    return [
        TimedLabel(start=round(float(s), 3), end=round(float(e), 3), label=str(lab))
        for s, e, lab in segments
    ]
