"""Run dependencies that travel with a graph run (LangGraph `context_schema`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from polymuse.settings import Settings
from polymuse.tools import audio


@dataclass
class AudioCache:
    """Decoded audio shared by the nodes of one run, keyed by (path, rate, mono)."""

    _probes: dict[str, audio.AudioProbe] = field(default_factory=dict)
    _arrays: dict[tuple[str, int | None, bool], np.ndarray] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def probe(self, path: str) -> audio.AudioProbe:
        with self._lock:
            if path not in self._probes:
                self._probes[path] = audio.probe(path)
            return self._probes[path]

    def load(self, path: str, *, sample_rate: int | None, mono: bool = True) -> np.ndarray:
        """Decode once per (path, rate, mono); parallel nodes asking for the same wait."""
        key = (path, sample_rate, mono)
        with self._lock:
            if key not in self._arrays:
                source = self._probes.get(path) or audio.probe(path)
                self._arrays[key] = audio.load(source, sample_rate=sample_rate, mono=mono)
            return self._arrays[key]


@dataclass
class Context:
    """What every node may use besides the state."""

    settings: Settings
    audio: AudioCache = field(default_factory=AudioCache)
