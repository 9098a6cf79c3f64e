"""Loudness: agreement with pyloudnorm, streaming invariance, true peak, loudness range."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from polymuse.tools.loudness import measure_loudness

SR = 48000


def blocks(y: np.ndarray, size: int):
    for i in range(0, len(y), size):
        yield y[i : i + size]


@pytest.mark.parametrize("channels", [1, 2])
def test_integrated_matches_pyloudnorm(channels: int) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(SR * 12) / SR
    y = 0.2 * np.sin(2 * np.pi * 997 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    y = np.stack([y + 0.01 * rng.standard_normal(len(t))] * channels, axis=1)
    ours = measure_loudness(blocks(y, 65536), sr=SR)
    assert ours.integrated_lufs == pytest.approx(
        pyloudnorm.Meter(SR).integrated_loudness(y), abs=0.05
    )


def test_block_size_does_not_change_results() -> None:
    rng = np.random.default_rng(2)
    y = 0.1 * rng.standard_normal((SR * 8, 2))
    a = measure_loudness(blocks(y, 4096), sr=SR)
    b = measure_loudness(blocks(y, 100_003), sr=SR)
    assert a.integrated_lufs == pytest.approx(b.integrated_lufs, abs=1e-6)
    assert a.loudness_range_lu == pytest.approx(b.loudness_range_lu, abs=1e-6)
    assert a.true_peak_dbtp == pytest.approx(b.true_peak_dbtp, abs=0.05)


def test_true_peak_sees_intersample_peaks() -> None:
    """A sine at fs/4 sampled 45 degrees off its crest: samples peak at -3 dBFS, the wave at 0."""
    n = np.arange(SR * 4)
    y = np.sin(np.pi / 2 * n + np.pi / 4)[:, None]
    result = measure_loudness([y], sr=SR)
    assert result.true_peak_dbtp == pytest.approx(0.0, abs=0.2)


def test_loudness_range_of_a_two_level_signal() -> None:
    """10 s at one level then 10 s 12 dB lower: LRA (95th - 10th percentile) is about 12 LU."""
    rng = np.random.default_rng(3)
    loud = 0.2 * rng.standard_normal(SR * 10)
    y = np.concatenate([loud, loud / 10 ** (12 / 20)])[:, None]
    assert measure_loudness([y], sr=SR).loudness_range_lu == pytest.approx(12.0, abs=0.6)


def test_silence_has_no_loudness() -> None:
    result = measure_loudness([np.zeros((SR * 5, 2))], sr=SR)
    assert result.integrated_lufs is None and result.true_peak_dbtp is None
