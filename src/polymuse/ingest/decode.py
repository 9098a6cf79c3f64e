"""The per-file work of an ingest, run in worker processes: hash, decode, window, tags, Chromaprint.

Workers never raise for a bad file: they return a `Rejected` with the stage and the reason,
and the main process records it in the quarantine.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from polymuse.errors import AudioLoadError
from polymuse.ingest.metadata import read_tags, song_info
from polymuse.ingest.walk import FileEntry
from polymuse.store.catalog import SongInfo
from polymuse.tools import audio, chromaprint

MIN_DURATION_S = audio.MIN_DURATION_S


@dataclass(frozen=True)
class Window:
    """A slice of a file: the unit stored as a window `audio_object` and used as evidence."""

    index: int
    start_s: float
    end_s: float


@dataclass
class IngestItem:
    """One decoded file as the extractors see it: mono float32 audio and its windows."""

    path: str
    content_hash: str
    size: int
    mtime_ns: int
    container: str
    codec: str
    native_rate: int
    channels: int
    duration_s: float
    audio: np.ndarray
    sample_rate: int
    windows: tuple[Window, ...]
    tags: dict[str, str]
    song: SongInfo
    chromaprint: np.ndarray | None = None
    chromaprint_note: str | None = None
    _resampled: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def audio_at(self, sample_rate: int) -> np.ndarray:
        """The audio at another rate (resampled once, then cached)."""
        if sample_rate == self.sample_rate:
            return self.audio
        if sample_rate not in self._resampled:
            import soxr

            self._resampled[sample_rate] = soxr.resample(
                self.audio, self.sample_rate, sample_rate, quality="HQ"
            ).astype(np.float32)
        return self._resampled[sample_rate]

    def window_audio(self, index: int, *, sample_rate: int | None = None) -> np.ndarray:
        """The samples of window `index`, at `sample_rate` (default: the item's rate)."""
        rate = sample_rate or self.sample_rate
        window = self.windows[index]
        y = self.audio_at(rate)
        return y[round(window.start_s * rate) : round(window.end_s * rate)]


@dataclass(frozen=True)
class Rejected:
    """A file that cannot enter the catalogue, and why."""

    path: str
    content_hash: str | None
    size: int
    mtime_ns: int
    stage: Literal["read", "decode", "extract", "write"]
    reason: str


def init_worker() -> None:
    """Worker set-up: Ctrl-C is the main process's business; decoder chatter goes nowhere."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # libmpg123 & co. print warnings straight to fd 2, over the progress bar
    os.close(devnull)


def hash_file(entry: FileEntry) -> tuple[FileEntry, str | None, str | None]:
    """(entry, sha256 hex, None), or (entry, None, why it could not be read)."""
    digest = hashlib.sha256()
    try:
        with open(entry.path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        return entry, None, f"cannot read: {exc.strerror or exc}"
    return entry, digest.hexdigest(), None


def plan_windows(duration_s: float, *, window_s: float, hop_s: float) -> tuple[Window, ...]:
    """Windows of `window_s` every `hop_s`, the last one flush with the end; one if shorter."""
    if duration_s <= window_s:
        return (Window(0, 0.0, round(duration_s, 6)),)
    count = math.ceil((duration_s - window_s) / hop_s) + 1
    starts = [min(k * hop_s, duration_s - window_s) for k in range(count)]
    return tuple(Window(k, round(s, 6), round(s + window_s, 6)) for k, s in enumerate(starts))


def decode_file(
    entry: FileEntry,
    content_hash: str,
    *,
    sample_rate: int,
    window_s: float,
    hop_s: float,
    with_chromaprint: bool,
) -> IngestItem | Rejected:
    """Decode, validate and describe one file; never raises for a bad file."""

    def reject(reason: str) -> Rejected:
        return Rejected(entry.path, content_hash, entry.size, entry.mtime_ns, "decode", reason)

    try:
        source = audio.probe(entry.path)
        samples = audio.load(source, sample_rate=sample_rate, mono=True)
    except AudioLoadError as exc:
        return reject(exc.cause)
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file bad, not the run
        return reject(f"decoder error: {type(exc).__name__}: {exc}")
    duration = len(samples) / sample_rate
    if duration < MIN_DURATION_S:
        return reject(f"too short: {duration:.2f} s of audio (at least {MIN_DURATION_S:.0f} s)")
    if not np.isfinite(samples).all():
        return reject("decoded audio holds NaN or infinite samples")
    tags = read_tags(entry.path)
    fingerprint, note = None, None
    if with_chromaprint:
        try:
            fingerprint = chromaprint.fingerprint(samples, sample_rate=sample_rate)
        except (chromaprint.ChromaprintError, OSError, subprocess.SubprocessError) as exc:
            note = f"no Chromaprint: {exc}"
    return IngestItem(
        path=entry.path,
        content_hash=content_hash,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        container=source.container,
        codec=source.codec,
        native_rate=source.sample_rate,
        channels=source.channels,
        duration_s=duration,
        audio=samples,
        sample_rate=sample_rate,
        windows=plan_windows(duration, window_s=window_s, hop_s=hop_s),
        tags=tags,
        song=song_info(entry.path, tags),
        chromaprint=fingerprint,
        chromaprint_note=note,
    )
