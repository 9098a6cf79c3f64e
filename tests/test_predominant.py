"""Predominant melody: pitch candidates, the lead-line path and its harmonic mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymuse.errors import ParameterError
from polymuse.tools.separation.predominant import harmonic_mask, pitch_candidates, track_melody

SR = 44100
N_FFT, HOP = 4096, 1024


def tone(f0: np.ndarray | float, n: int, *, partials: int = 8, level: float = 0.2) -> np.ndarray:
    """A harmonic tone with 1/h partial amplitudes following `f0` (Hz, per sample)."""
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(f0, (n,))) / SR
    return level * sum(np.sin(h * phase) / h for h in range(1, partials + 1))


def magnitude(y: np.ndarray) -> np.ndarray:
    window = torch.hann_window(N_FFT, dtype=torch.float64)
    spec = torch.stft(torch.from_numpy(y), N_FFT, HOP, window=window, return_complex=True)
    return spec.abs().numpy().astype(np.float32)


def cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1200 * np.abs(np.log2(np.maximum(a, 1e-6) / b))


@pytest.fixture(scope="module")
def melody_over_chord() -> tuple[np.ndarray, np.ndarray]:
    """4 s: a stepwise line (A4 B4 C#5 D5, one per second) above a held A2-C#3-E3 chord."""
    n = 4 * SR
    line = np.repeat([440.0, 493.88, 554.37, 587.33], SR)
    chord = sum(tone(f, n, level=0.25) for f in (110.0, 138.59, 164.81))
    return (chord + tone(line, n)).astype(np.float64), line


def test_candidates_hold_every_voice_of_a_chord(melody_over_chord):
    y, line = melody_over_chord
    f0, salience = pitch_candidates(magnitude(y), sr=SR, n_fft=N_FFT)
    frames = slice(5, -5)
    truth = line[np.minimum(np.arange(f0.shape[0]) * HOP, len(line) - 1)][frames]
    for voice in (110.0, 138.59, 164.81, truth):
        found = (cents(f0[frames], np.asarray(voice)[..., None]) < 50).any(axis=1)
        assert found.mean() > 0.9, f"{voice}: found in {found.mean():.0%} of frames"
    assert (salience[:, :-1] >= 0).all()


def test_the_lead_is_the_high_line_and_silence_is_unvoiced(melody_over_chord):
    y, line = melody_over_chord
    y = np.concatenate([y, np.zeros(SR)])
    lead, voiced = track_melody(
        *pitch_candidates(magnitude(y), sr=SR, n_fft=N_FFT), fmin=150.0, fmax=1100.0
    )
    times = np.arange(len(lead)) * HOP / SR
    # Away from note changes (the frames straddle them).
    steady = (times % 1.0 > 0.1) & (times % 1.0 < 0.9) & (times < 4.0)
    truth = np.array([440.0, 493.88, 554.37, 587.33])[np.minimum(times, 3.99).astype(int)]
    assert (cents(lead[steady], truth[steady]) < 50).mean() > 0.95
    assert voiced[steady].mean() > 0.95
    assert not voiced[times > 4.2].any()


def test_harmonic_mask_has_teeth_at_the_partials_only():
    f0 = np.array([0.0, 220.0, 441.0], np.float32)
    mask = harmonic_mask(f0, sr=SR, n_fft=N_FFT, max_hz=4000.0)
    df = SR / N_FFT
    assert mask.shape == (N_FFT // 2 + 1, 3)
    assert not mask[:, 0].any()
    assert mask.min() >= 0 and mask.max() <= 1
    for h in range(1, 18):
        assert mask[round(h * 220 / df), 1] > 0.5
    between = np.round((np.arange(1, 9) + 0.5) * 441 / df).astype(int)
    assert not mask[between, 2].any()
    assert not mask[round(4500 / df) :].any()


def test_bad_shapes_are_rejected():
    with pytest.raises(ParameterError):
        pitch_candidates(np.zeros((100, 10), np.float32), sr=SR, n_fft=N_FFT)
    with pytest.raises(ParameterError):
        harmonic_mask(np.zeros((2, 3)), sr=SR, n_fft=N_FFT, max_hz=4000.0)
