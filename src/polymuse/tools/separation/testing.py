"""`unittest`: a deterministic band-split separator for tests and CI.

It runs through the same chunked streaming path as the real backends, with fixed brick-wall
bands per chunk: bass below 150 Hz, vocals 150 Hz-1 kHz, other 1-5 kHz, drums above 5 kHz.
The stems sum to the input. It separates nothing musically; it exercises the plumbing.
"""

from __future__ import annotations

import numpy as np

from polymuse.report import ModelInfo
from polymuse.settings import Settings
from polymuse.tools.separation import SAMPLE_RATE
from polymuse.tools.separation.base import ChunkedSeparator

BANDS_HZ = {"bass": (0, 150), "vocals": (150, 1000), "other": (1000, 5000), "drums": (5000, None)}


class UnittestSeparator(ChunkedSeparator):
    """Brick-wall band split, one second per chunk."""

    name = "unittest"
    model = ModelInfo(name="unittest band split", version="1", source="polymuse", licence="MIT")
    outputs = ("vocals", "drums", "bass", "other")
    chunk = SAMPLE_RATE
    step = SAMPLE_RATE * 3 // 4
    fade = SAMPLE_RATE // 8

    @classmethod
    def from_settings(cls, settings: Settings | None) -> UnittestSeparator:
        return cls()

    def _process(self, batch: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft(batch, axis=-1)
        freqs = np.fft.rfftfreq(batch.shape[-1], 1 / self.model_rate)
        out = np.empty((batch.shape[0], len(self.outputs), *batch.shape[1:]), np.float32)
        for i, stem in enumerate(self.outputs):
            lo, hi = BANDS_HZ[stem]
            keep = (freqs >= lo) & (freqs < (hi if hi is not None else np.inf))
            out[:, i] = np.fft.irfft(spectrum * keep, n=batch.shape[-1], axis=-1)
        return out
