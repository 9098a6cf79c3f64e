"""Source separation: a registry of separators, each giving vocals, drums, bass and other.

Every backend takes float32 audio shaped (channels, samples) at 44.1 kHz and returns the four
stems at the same rate and length. `build_separator` maps a config string to a class and
imports the heavy modules (torch models, demucs) only then.

| name | what | needs |
| --- | --- | --- |
| `dsp` | HPSS, REPET-SIM, predominant-melody masks, band split (offline default) | nothing |
| `bs_roformer` | BS-RoFormer / Mel-RoFormer checkpoint + YAML (UVR / MSST format) | weights |
| `demucs` | Demucs / HT-Demucs from a local model folder | demucs, weights |
| `unittest` | deterministic fixed filters, for tests and CI | nothing |
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from polymuse.errors import ParameterError
from polymuse.report import ModelInfo

if TYPE_CHECKING:
    from polymuse.settings import Settings

SAMPLE_RATE = 44100
STEMS = ("vocals", "drums", "bass", "other")
"""The four stems every separator returns, in this order."""


@runtime_checkable
class Separator(Protocol):
    """What every backend offers."""

    name: str
    """Registry name, e.g. `dsp`."""
    model: ModelInfo
    """Identity of the algorithm or checkpoint."""
    notes: list[str]
    """Fallbacks taken during the last song (smaller chunks, CPU, derived stems)."""

    def separate(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """Split (channels, samples) audio at 44.1 kHz into the `STEMS`, same shape each."""
        ...

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Like `separate`, over (channels, n) blocks; yields stem blocks as they finish."""
        ...

    def cache_key(self) -> str:
        """A string that changes whenever the output for the same input could change."""
        ...

    def produced_by(self, stem: str) -> str:
        """Which backend made `stem` (single-stem models leave some to `dsp`)."""
        ...

    def close(self) -> None:
        """Free model memory (GPU memory included)."""
        ...


# name -> (module, class, one-line description)
SEPARATORS: dict[str, tuple[str, str, str]] = {
    "dsp": (
        "polymuse.tools.separation.dsp",
        "DspSeparator",
        "HPSS + REPET-SIM + predominant-melody harmonic masks",
    ),
    "bs_roformer": (
        "polymuse.tools.separation.roformer",
        "RoformerSeparator",
        "BS-RoFormer / Mel-RoFormer checkpoint + YAML",
    ),
    "demucs": ("polymuse.tools.separation.demucs", "DemucsSeparator", "Demucs from a local repo"),
    "unittest": (
        "polymuse.tools.separation.testing",
        "UnittestSeparator",
        "deterministic filters for tests",
    ),
}
ALIASES = {"mel_roformer": "bs_roformer", "roformer": "bs_roformer", "htdemucs": "demucs"}


def build_separator(name: str, settings: Settings | None = None) -> Separator:
    """Build the separator a config string names.

    Args:
        name: A key of `SEPARATORS` (or an alias such as `mel_roformer`).
        settings: Process settings; backends read their paths and device from it.

    Returns:
        A ready separator.

    Raises:
        ParameterError: Unknown name; the message lists the valid ones.
        ModelUnavailableError: The backend's package or weights are missing.
    """
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in SEPARATORS:
        valid = ", ".join(sorted(SEPARATORS))
        raise ParameterError(f"unknown separator {name!r}; valid separators: {valid}")
    module, cls, _ = SEPARATORS[key]
    return getattr(importlib.import_module(module), cls).from_settings(settings)


__all__ = ["SAMPLE_RATE", "SEPARATORS", "STEMS", "Separator", "build_separator"]
