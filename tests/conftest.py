"""Shared fixtures: audio the tests make themselves, with known musical truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polymuse.tools.signals import synth_song

SR = 44100


@pytest.fixture(scope="session")
def song_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 s stereo WAV at 120 BPM in C major (I-IV-V-I, one chord per bar)."""
    path = tmp_path_factory.mktemp("audio") / "synth song.wav"
    y = synth_song()
    sf.write(path, np.stack([y, y * 0.9], axis=1), SR, subtype="PCM_16")
    return path


@pytest.fixture
def write_audio(tmp_path: Path):
    """Write a signal as `name` (format from the extension) and return the path."""

    def write(name: str, y: np.ndarray, sr: int = SR, **kwargs) -> Path:
        path = tmp_path / name
        sf.write(path, y, sr, **kwargs)
        return path

    return write
