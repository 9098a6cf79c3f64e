"""Hash indexes: where query probes find reference postings (hash -> asset, anchor frame).

Two implementations answer the same `lookup`: `MemoryIndex` (sorted numpy arrays, for tests,
benchmarks and the evaluation) and `PostgresIndex` (the catalogue's `fingerprint_posting`
table through the store's pool). Both return raw postings; `matching` does the rest, so the
two give identical answers on identical postings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from polymuse.errors import ParameterError
from polymuse.tools import fingerprint


@dataclass(frozen=True)
class SongRef:
    """Which song an asset belongs to, for answers."""

    song_id: int
    title: str
    artist: str | None = None


@dataclass(frozen=True)
class Postings:
    """Stored postings for some hashes: each row is (hash, asset, anchor frame)."""

    hashes: np.ndarray
    assets: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.hashes)


@dataclass(frozen=True)
class Hits:
    """Query probes joined with postings: one row per (probe, posting) with equal hashes."""

    probe: np.ndarray
    """Index into the query's probes."""
    posting: np.ndarray
    """Index into `Postings`, identifying a stored (hash, asset, frame)."""
    assets: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.probe)

    def where(self, keep: np.ndarray) -> Hits:
        """The rows a boolean mask keeps."""
        return Hits(self.probe[keep], self.posting[keep], self.assets[keep], self.offsets[keep])


class HashIndex(Protocol):
    """What matching needs from an index: postings, and the songs of their assets."""

    def postings(self, hashes: np.ndarray) -> Postings:
        """Every stored posting whose hash is in `hashes` (uint32, any order, repeats allowed)."""
        ...

    def describe(self, asset_ids: list[int]) -> dict[int, SongRef]:
        """Song of each known asset id (unknown ids are left out)."""
        ...

    def peaks(self, asset_ids: list[int]) -> dict[int, np.ndarray]:
        """Packed reference peaks of each asset (for verification)."""
        ...

    def all_peaks(self, limit: int) -> dict[int, np.ndarray] | None:
        """Packed peaks of every asset, or None when they number more than `limit`."""
        ...


def join(probes: np.ndarray, postings: Postings) -> Hits:
    """Pair each probe with every posting of the same hash (a sort-merge join in numpy)."""
    order = np.argsort(postings.hashes, kind="stable")
    stored = postings.hashes[order].astype(np.uint32)
    probes = np.asarray(probes, dtype=np.uint32)
    lo = np.searchsorted(stored, probes, side="left")
    counts = np.searchsorted(stored, probes, side="right") - lo
    probe = np.repeat(np.arange(len(probes)), counts)
    pos = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    posting = order[pos + np.repeat(lo, counts)]
    return Hits(probe, posting, postings.assets[posting], postings.offsets[posting])


@dataclass
class MemoryIndex:
    """An in-memory index: postings of many assets in arrays sorted by hash."""

    _hashes: list[np.ndarray] = field(default_factory=list)
    _assets: list[np.ndarray] = field(default_factory=list)
    _offsets: list[np.ndarray] = field(default_factory=list)
    _frozen: Postings | None = None
    durations: dict[int, float] = field(default_factory=dict)
    labels: dict[int, SongRef] = field(default_factory=dict)
    stored_peaks: dict[int, np.ndarray] = field(default_factory=dict)

    def add(
        self, asset_id: int, print_: fingerprint.ReferencePrint, *, song: SongRef | None = None
    ) -> None:
        """Add one asset's reference fingerprint (its song defaults to itself)."""
        self.labels[asset_id] = song or SongRef(asset_id, f"asset {asset_id}")
        self.stored_peaks[asset_id] = np.asarray(print_.peaks, dtype=np.uint32)
        self._hashes.append(np.asarray(print_.hashes, dtype=np.uint32))
        self._assets.append(np.full(len(print_.hashes), asset_id, dtype=np.int64))
        self._offsets.append(np.asarray(print_.offsets, dtype=np.int32))
        self.durations[asset_id] = print_.duration_s
        self._frozen = None

    def describe(self, asset_ids: list[int]) -> dict[int, SongRef]:
        return {int(a): self.labels[int(a)] for a in asset_ids if int(a) in self.labels}

    def peaks(self, asset_ids: list[int]) -> dict[int, np.ndarray]:
        return {int(a): self.stored_peaks[int(a)] for a in asset_ids if int(a) in self.stored_peaks}

    def all_peaks(self, limit: int) -> dict[int, np.ndarray] | None:
        total = sum(len(p) for p in self.stored_peaks.values())
        return dict(self.stored_peaks) if total <= limit else None

    @property
    def frozen(self) -> Postings:
        """All postings sorted by hash (built on first use after an `add`)."""
        if self._frozen is None:
            hashes = np.concatenate(self._hashes) if self._hashes else np.zeros(0, np.uint32)
            assets = np.concatenate(self._assets) if self._assets else np.zeros(0, np.int64)
            offsets = np.concatenate(self._offsets) if self._offsets else np.zeros(0, np.int32)
            order = np.argsort(hashes, kind="stable")
            self._frozen = Postings(hashes[order], assets[order], offsets[order])
            self._hashes, self._assets, self._offsets = (
                [self._frozen.hashes],
                [self._frozen.assets],
                [self._frozen.offsets],
            )
        return self._frozen

    def __len__(self) -> int:
        return len(self.frozen)

    @property
    def nbytes(self) -> int:
        """Compact size: 8 bytes a posting (uint32 hash, uint32 asset/frame), 4 a peak."""
        return 8 * len(self.frozen) + 4 * sum(len(p) for p in self.stored_peaks.values())

    def postings(self, hashes: np.ndarray) -> Postings:
        all_ = self.frozen
        wanted = np.unique(np.asarray(hashes, dtype=np.uint32))
        lo = np.searchsorted(all_.hashes, wanted, side="left")
        counts = np.searchsorted(all_.hashes, wanted, side="right") - lo
        pos = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        pos += np.repeat(lo, counts)
        return Postings(all_.hashes[pos], all_.assets[pos], all_.offsets[pos])

    def save(self, path: str | Path) -> Path:
        all_ = self.frozen
        ids = np.fromiter(self.durations, dtype=np.int64, count=len(self.durations))
        durations = np.array([self.durations[int(i)] for i in ids], dtype=np.float64)
        songs = np.array([self.labels[int(i)].song_id for i in ids], dtype=np.int64)
        titles = np.array([self.labels[int(i)].title for i in ids], dtype=str)
        np.savez(
            path,
            hashes=all_.hashes,
            assets=all_.assets,
            offsets=all_.offsets,
            ids=ids,
            durations=durations,
            songs=songs,
            titles=titles,
            peak_counts=np.array([len(self.stored_peaks[int(i)]) for i in ids], dtype=np.int64),
            peaks=np.concatenate([self.stored_peaks[int(i)] for i in ids])
            if len(ids)
            else np.zeros(0, np.uint32),
        )
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> MemoryIndex:
        with np.load(path) as data:
            index = cls()
            index._frozen = Postings(data["hashes"], data["assets"], data["offsets"])
            index._hashes = [data["hashes"]]
            index._assets = [data["assets"]]
            index._offsets = [data["offsets"]]
            bounds = np.cumsum(data["peak_counts"])
            peaks = np.split(data["peaks"], bounds[:-1]) if len(bounds) else []
            for i, d, song, title, p in zip(
                data["ids"], data["durations"], data["songs"], data["titles"], peaks, strict=True
            ):
                index.durations[int(i)] = float(d)
                index.labels[int(i)] = SongRef(int(song), str(title))
                index.stored_peaks[int(i)] = p
        if not (len(index._frozen.hashes) == len(index._frozen.assets)):
            raise ParameterError(f"{path}: inconsistent index arrays")
        return index
