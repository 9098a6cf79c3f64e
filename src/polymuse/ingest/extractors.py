"""Feature extractors for the ingest: the protocol, a registry, and two built-in backends.

An extractor has a model identity (`name`, `version`, `feature_set`, stored with every fact)
and one method, `extract_batch(items)`, called with several decoded files at once so model
inference is batched across files. It returns, for each item, a list of `Fact`s: fingerprints
(optionally with hash postings), embeddings (stored in the model's vector table) or
descriptors (JSON payloads), for the whole file (`window=None`) or one of `item.windows`.

Backends are built by name from `EXTRACTORS` (imported lazily) or from a `module:attr` spec,
so extractors written elsewhere plug in without changes here.
"""

from __future__ import annotations

import functools
import importlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from polymuse.errors import UserError

if TYPE_CHECKING:
    from polymuse.ingest.decode import IngestItem
    from polymuse.settings import Settings

FeatureType = Literal["fingerprint", "embedding", "descriptor"]


@dataclass(frozen=True)
class Fact:
    """One feature of one file (`window=None`) or of one of its windows.

    Attributes:
        kind: fingerprint, embedding or descriptor.
        window: Index into `item.windows`, or None for the whole file.
        vector: 1-D float embedding (required for `embedding`).
        value: Short text form of a fingerprint (e.g. an id), optional.
        payload: JSON-ready details (descriptor values, parameters), optional.
        hashes: Landmark hashes (32-bit, signed or unsigned), stored as postings.
        offsets: Time offset of each hash, in the extractor's own frame units.
    """

    kind: FeatureType
    window: int | None = None
    vector: np.ndarray | None = None
    value: str | None = None
    payload: dict[str, Any] | None = None
    hashes: np.ndarray | None = None
    offsets: np.ndarray | None = None


@runtime_checkable
class Extractor(Protocol):
    """What the ingest needs from a feature extractor."""

    name: str
    version: str
    feature_set: str
    sample_rate: int | None
    """Rate wanted in `item.audio`; None: any (use `item.audio_at(rate)` for a specific one)."""

    def extract_batch(self, items: Sequence[IngestItem]) -> Sequence[Sequence[Fact]]:
        """Facts for each item, in order. Raise to reject the batch (items are then retried one
        by one, and those that still fail are quarantined)."""
        ...


EXTRACTORS: dict[str, str] = {
    "spectral-stats": "polymuse.ingest.extractors:SpectralStatsExtractor",
    "debug": "polymuse.ingest.extractors:DebugExtractor",
    "semantic": "polymuse.tools.semantics.catalogue:SemanticExtractor",
    "polymuse-triplets": "polymuse.recognition.extractor:LandmarkExtractor",
}
DEFAULT_EXTRACTORS = ("spectral-stats", "polymuse-triplets")  # `catalog add` and `review`


def build_extractor(spec: str, *, settings: Settings | None = None) -> Extractor:
    """An extractor from a registered name or a `package.module:attr` factory.

    A factory with a `from_settings` class method gets the settings (device, model paths).

    Raises:
        UserError: unknown name, unimportable spec, or an object that is not an extractor.
    """
    target = EXTRACTORS.get(spec, spec if ":" in spec else None)
    if target is None:
        raise UserError(
            f"unknown extractor {spec!r}; registered: {', '.join(sorted(EXTRACTORS))} "
            "(or give module:attr)"
        )
    module_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot load extractor {spec!r} from {target}: {exc}") from exc
    if settings is not None and hasattr(factory, "from_settings"):
        extractor = factory.from_settings(settings)
    else:
        extractor = factory()
    if not isinstance(extractor, Extractor):
        raise UserError(
            f"{target} did not give an extractor (name, version, feature_set, "
            "sample_rate, extract_batch)"
        )
    return extractor


class SpectralStatsExtractor:
    """`spectral-stats`: a compact log-mel statistics embedding, not a learned model.

    Per window: mean and standard deviation over time of a 64-band log-mel spectrogram
    (22.05 kHz, FFT 2048, hop 1024), 128 numbers, L2-normalised; per file the normalised mean
    of its windows. Cheap, deterministic, good enough to find near-identical audio; a stand-in
    until learned encoders (musicnn, CLAP) are plugged in. Frames of all files in a batch go
    through the FFT and mel projection together, in fixed-size chunks.
    """

    name = "spectral-stats"
    version = "1"
    feature_set = "logmel64-meanstd"
    sample_rate = 22050
    n_fft = 2048
    hop = 1024
    n_mels = 64

    def __init__(self, *, chunk_frames: int = 4096) -> None:
        self.chunk_frames = chunk_frames
        self._window = np.hanning(self.n_fft).astype(np.float32)

    @functools.cached_property
    def _mel(self) -> np.ndarray:
        import librosa  # only when there is audio to analyse: a no-op re-run stays fast

        return librosa.filters.mel(
            sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels
        ).T.astype(np.float32)

    def extract_batch(self, items: Sequence[IngestItem]) -> list[list[Fact]]:
        mels = self._log_mel([item.audio_at(self.sample_rate) for item in items])
        results = []
        for item, mel in zip(items, mels, strict=True):
            facts = []
            for window in item.windows:
                lo = int(window.start_s * self.sample_rate / self.hop)
                hi = max(lo + 1, int(window.end_s * self.sample_rate / self.hop))
                part = mel[lo:hi] if lo < len(mel) else mel[-1:]
                facts.append(
                    Fact(
                        "embedding",
                        window.index,
                        _unit(np.concatenate([part.mean(axis=0), part.std(axis=0)])),
                    )
                )
            whole = np.mean([f.vector for f in facts], axis=0)
            facts.append(Fact("embedding", None, _unit(whole)))
            results.append(facts)
        return results

    def _log_mel(self, signals: list[np.ndarray]) -> list[np.ndarray]:
        """Frame-level log-mel for each signal, computed in chunks that span signals."""
        views = []
        for y in signals:
            if len(y) < self.n_fft:
                y = np.pad(y, (0, self.n_fft - len(y)))
            views.append(np.lib.stride_tricks.sliding_window_view(y, self.n_fft)[:: self.hop])
        counts = [len(v) for v in views]
        out = np.empty((sum(counts), self.n_mels), dtype=np.float32)
        pending: list[np.ndarray] = []
        filled = written = 0
        for view in views:
            for start in range(0, len(view), self.chunk_frames):
                part = view[start : start + self.chunk_frames]
                pending.append(part)
                filled += len(part)
                if filled >= self.chunk_frames:
                    out[written : written + filled] = self._transform(np.concatenate(pending))
                    written, pending, filled = written + filled, [], 0
        if pending:
            out[written : written + filled] = self._transform(np.concatenate(pending))
        return np.split(out, np.cumsum(counts)[:-1])

    def _transform(self, frames: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft(frames * self._window, axis=1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
        return np.log10(power @ self._mel + 1e-10)


class DebugExtractor:
    """`debug`: tiny deterministic features for tests and CI, through the real code path.

    Per window an 8-d embedding of simple statistics; per file a fingerprint whose postings
    are CRC32 hashes of the rounded window levels (offset = window index), and a descriptor.
    `fail_on` makes it raise for files whose name contains that text (to test isolation).
    """

    name = "debug"
    version = "1"
    feature_set = "debug-stats"
    sample_rate = None

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.fail_on = fail_on

    def extract_batch(self, items: Sequence[IngestItem]) -> list[list[Fact]]:
        results = []
        for item in items:
            if self.fail_on and self.fail_on in Path(item.path).name:
                raise ValueError(f"told to fail on {Path(item.path).name}")
            facts, levels = [], []
            for window in item.windows:
                y = item.window_audio(window.index).astype(np.float64)
                rms = float(np.sqrt(np.mean(y**2))) if len(y) else 0.0
                crossings = float(np.mean(np.abs(np.diff(np.sign(y))) > 0)) if len(y) > 1 else 0.0
                stats = [
                    rms,
                    float(np.max(np.abs(y), initial=0.0)),
                    crossings,
                    float(np.mean(y)),
                    float(np.std(y)),
                    window.start_s / 600,
                    window.end_s / 600,
                    1.0,
                ]
                facts.append(Fact("embedding", window.index, _unit(np.asarray(stats))))
                levels.append(round(rms, 3))
            hashes = np.array(
                [zlib.crc32(f"{i}:{level}".encode()) for i, level in enumerate(levels)], np.uint32
            )
            facts.append(
                Fact(
                    "fingerprint",
                    None,
                    value=item.content_hash[:16],
                    hashes=hashes,
                    offsets=np.arange(len(hashes)),
                )
            )
            facts.append(
                Fact(
                    "descriptor",
                    None,
                    payload={"windows": len(levels), "max_rms": max(levels, default=0.0)},
                )
            )
            results.append(facts)
        return results


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v
