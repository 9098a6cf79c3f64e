"""Instrument-family head: which family carries a recording, from musicnn and timbre statistics.

musicnn's 50+50 tags name piano, strings, guitar, flute, choir and harpsichord but no organ
and no brass, and its tags react to genre as much as to timbre. The head is a multinomial
logistic regression over nine classes (`CLASSES`: eight families and `other`, the GM sounds
of none of them) on, per 3 s musicnn window:

- the window's musicnn embedding (MTT + MSD penultimate layers, 400 values, as
  `MusicnnEncoder` gives them), and
- general timbre statistics of the same 3 s of audio (`timbre_statistics`): MFCC 1-19 mean
  and deviation, spectral flatness and centroid, and the level envelope's rises and falls.

A recording's class probabilities are the mean of its windows'. The weights, the feature
standardisation and the provenance (soundfonts and their licences, pieces, date, seed) are in
`data/instrument_head.json`, written by `polymuse.evaluation.head_training`; the head was
trained on renders with soundfonts other than the one `polymuse eval tags` uses, so that
evaluation measures how it carries over to unseen sounds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from polymuse.errors import ModelUnavailableError, ParameterError
from polymuse.schema import ModelInfo

HEAD_FILE = "instrument_head.json"
CLASSES = (
    "piano",
    "strings",
    "guitar",
    "organ",
    "flute",
    "choir",
    "brass",
    "harpsichord",
    "other",
)
DESCRIPTOR_LINKS: dict[str, dict[str, float]] = {
    "piano": {"instruments.piano": 1.0, "instruments.solo_piano": 0.9},
    "strings": {
        "instruments.strings": 1.0,
        "instruments.string_quartet": 0.8,
        "instruments.violin": 0.6,
        "instruments.viola": 0.5,
        "instruments.cello": 0.6,
    },
    "guitar": {"instruments.guitar": 1.0, "instruments.acoustic_guitar": 0.8},
    "organ": {"instruments.organ": 1.0},
    "flute": {"instruments.flute": 1.0, "instruments.recorder": 0.6},
    "choir": {"instruments.choir": 1.0},
    "brass": {
        "instruments.brass": 1.0,
        "instruments.trumpet": 0.6,
        "instruments.trombone": 0.6,
        "instruments.french_horn": 0.6,
        "instruments.tuba": 0.5,
    },
    "harpsichord": {"instruments.harpsichord": 1.0},
}
"""Class -> descriptors its probability is evidence for, with a link weight (as tag links):
the family's own descriptor at 1, narrower members of the family lower. Only descriptors the
class covers, since a low probability counts against them too: not 'vocals' (the head never
heard a solo singer) nor 'woodwinds' (its reeds are in `other`)."""

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 256
N_MELS = 64
N_MFCC = 20
ACTIVE_DB = 40.0
STEP_DB = 0.5
"""Level changes per frame smaller than this count as steady (neither rise nor fall)."""
SILENT_LEVEL = -30.0
"""Frame power in dB (unnormalised FFT) below which a segment counts as silent: about
-78 dBFS for a sine."""
TIMBRE_DIM = 2 * (N_MFCC - 1) + 8


def timbre_statistics(segments: np.ndarray) -> np.ndarray:
    """General timbre statistics of each row of `segments` (mono, 16 kHz), shape (n, TIMBRE_DIM).

    Per segment, over frames within `ACTIVE_DB` of its loudest: MFCC 1-19 mean and standard
    deviation (c0, the level, left out), spectral flatness mean and deviation, log2 spectral
    centroid mean and deviation, and of the frame level in dB: the mean rise and mean fall per
    frame (steps beyond `STEP_DB`), the share of rising frames, and the deviation. All are
    independent of gain.

    Raises:
        ParameterError: `segments` is not a finite 2-D float array of at least one FFT frame.
    """
    import librosa
    import torch

    x = np.asarray(segments)
    if x.ndim != 2 or x.shape[1] < N_FFT or not np.isfinite(x).all():
        raise ParameterError(
            f"segments must be finite audio of shape (n, >= {N_FFT}), got {x.shape}"
        )
    spectrum = torch.stft(
        torch.from_numpy(x.astype(np.float32)),
        n_fft=N_FFT,
        hop_length=HOP,
        window=torch.hann_window(N_FFT),
        center=True,
        return_complex=True,
    )
    power = (spectrum.abs() ** 2).numpy().astype(np.float64)
    mel_basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
    freqs = librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=N_FFT)
    rows = []
    for p in power:
        level = 10 * np.log10(p.sum(axis=0) + 1e-12)
        active = level > level.max() - ACTIVE_DB
        if active.sum() < 2 or level.max() < SILENT_LEVEL:
            rows.append(np.zeros(TIMBRE_DIM))
            continue
        # Relative to the segment's peak, so the floor (-100 dB) does not depend on gain.
        pa = p[:, active] / p.max() + 1e-10
        mfcc = librosa.feature.mfcc(S=10 * np.log10(mel_basis @ pa), n_mfcc=N_MFCC)[1:]
        flatness = np.exp(np.log(pa).mean(axis=0)) / pa.mean(axis=0)
        centroid = np.log2((freqs[:, None] * pa).sum(axis=0) / pa.sum(axis=0) + 1.0)
        steps = np.diff(level)
        rises, falls = steps[steps > STEP_DB], steps[steps < -STEP_DB]
        rows.append(
            np.concatenate(
                [
                    mfcc.mean(axis=1),
                    mfcc.std(axis=1),
                    [flatness.mean(), flatness.std(), centroid.mean(), centroid.std()],
                    [
                        rises.mean() if rises.size else 0.0,
                        falls.mean() if falls.size else 0.0,
                        rises.size / max(steps.size, 1),
                        level[active].std(),
                    ],
                ]
            )
        )
    return np.stack(rows).astype(np.float32)


def window_segments(
    waveform: np.ndarray, window_times: np.ndarray, window_seconds: float, *, sample_rate: int
) -> np.ndarray:
    """The audio under each encoder window (centre `window_times`), zero-padded at the ends."""
    y = np.asarray(waveform, dtype=np.float32)
    length = int(round(window_seconds * sample_rate))
    out = np.zeros((len(window_times), length), dtype=np.float32)
    for i, centre in enumerate(window_times):
        start = int(round(centre * sample_rate)) - length // 2
        a, b = max(start, 0), min(start + length, len(y))
        if b > a:
            out[i, a - start : b - start] = y[a:b]
    return out


@dataclass(frozen=True)
class InstrumentHead:
    """The trained head: standardisation, weights, and where they came from."""

    encoder: str
    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    """Shape (n_classes, n_features)."""
    bias: np.ndarray
    provenance: dict

    @classmethod
    def load(cls, path: Path | str | None = None) -> InstrumentHead:
        """Read the head (default: the packaged `data/instrument_head.json`).

        Raises:
            ModelUnavailableError: The file is missing or malformed.
        """
        path = Path(path or str(resources.files("polymuse") / "data" / HEAD_FILE))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            head = cls(
                encoder=str(data["encoder"]),
                classes=tuple(data["classes"]),
                mean=np.array(data["mean"], dtype=np.float64),
                scale=np.array(data["scale"], dtype=np.float64),
                weights=np.array(data["weights"], dtype=np.float64),
                bias=np.array(data["bias"], dtype=np.float64),
                provenance=dict(data["provenance"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelUnavailableError(
                f"cannot read the instrument head {path}: {exc}; regenerate it with "
                "`polymuse eval tags --train-head`"
            ) from exc
        n = len(head.mean)
        if head.weights.shape != (len(head.classes), n) or head.scale.shape != (n,):
            raise ModelUnavailableError(f"the instrument head {path} has inconsistent shapes")
        return head

    def to_json(self) -> str:
        data = {
            "encoder": self.encoder,
            "classes": list(self.classes),
            "provenance": self.provenance,
            "mean": _rounded(self.mean),
            "scale": _rounded(self.scale),
            "weights": [_rounded(row) for row in self.weights],
            "bias": _rounded(self.bias),
        }
        return json.dumps(data, ensure_ascii=False)

    def window_probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of each window's features, shape (n_windows, n_classes)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.mean):
            raise ParameterError(f"features must have shape (n, {len(self.mean)}), got {x.shape}")
        logits = ((x - self.mean) / self.scale) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, window_embeddings: np.ndarray, segments: np.ndarray) -> dict[str, float]:
        """Class -> probability for one recording: the mean over its windows.

        Args:
            window_embeddings: The encoder's per-window embeddings, (n_windows, dim).
            segments: The 16 kHz audio under each window (`window_segments`).
        """
        features = head_features(window_embeddings, segments)
        p = self.window_probabilities(features).mean(axis=0)
        return {c: float(v) for c, v in zip(self.classes, p, strict=True)}

    @property
    def model_info(self) -> ModelInfo:
        """Name, provenance (training soundfonts, scores, date) and licences."""
        fonts = self.provenance.get("soundfonts", [])
        return ModelInfo(
            name="instrument-head",
            version=f"multinomial logistic regression on {self.encoder} + timbre statistics, "
            f"trained {self.provenance.get('date', '?')} (seed {self.provenance.get('seed')}, "
            f"{self.provenance.get('renders', '?')} renders)",
            source=f"polymuse data/{HEAD_FILE} (polymuse eval tags --train-head); soundfonts: "
            + ", ".join(f"{f['name']} [{f.get('package', '')}]" for f in fonts)
            + f"; scores: {self.provenance.get('pieces', '?')}",
            licence="MIT (weights); training sounds: "
            + "; ".join(f"{f['name']} {f['licence']}" for f in fonts),
        )


def head_card() -> ModelInfo:
    """The packaged head's model card for `polymuse doctor`, or one saying it is missing."""
    try:
        return InstrumentHead.load().model_info
    except ModelUnavailableError as exc:
        return ModelInfo(name="instrument-head", version="missing", source=str(exc))


def head_features(window_embeddings: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Per-window input of the head: embedding and timbre statistics (16 kHz) side by side."""
    embeddings = np.asarray(window_embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(segments):
        raise ParameterError("one embedding row per segment is needed")
    return np.concatenate([embeddings, timbre_statistics(segments)], axis=1)


def _rounded(values: np.ndarray) -> list[float]:
    return [float(f"{v:.6g}") for v in np.asarray(values, dtype=np.float64)]
