"""Structure segmentation: boundaries and repeat labels of a generated A B A B A form."""

from __future__ import annotations

import numpy as np

from polymuse.tools.signals import midi_hz
from polymuse.tools.structure import segment_structure

SR = 22050


def section(roots: list[int], seconds: float, harmonics: list[float]) -> np.ndarray:
    t_all = np.zeros(int(SR * seconds))
    for k, t0 in enumerate(np.arange(0, seconds, 1.0)):
        start = int(t0 * SR)
        tt = np.arange(min(SR, len(t_all) - start)) / SR
        for interval in (0, 4, 7):
            f = midi_hz(roots[k % len(roots)] + interval)
            wave = sum(a * np.sin(2 * np.pi * f * h * tt) for h, a in enumerate(harmonics, 1))
            t_all[start : start + len(tt)] += 0.1 * wave * np.exp(-2 * tt)
    return t_all


def test_abab_a_form_is_found() -> None:
    a = section([60, 65, 67, 60], 24, [1, 0.5, 0.2])
    b = section([57, 62, 64, 69], 24, [1, 0, 0.6, 0, 0.4])
    y = np.concatenate([a, b, a, b, a]).astype(np.float32)
    beats = list(np.arange(0, len(y) / SR, 0.5))
    sections = segment_structure(y, sr=SR, beats=beats)
    assert [s.label.rstrip("'") for s in sections] == ["A", "B", "A", "B", "A"]
    starts = [s.start for s in sections]
    assert np.allclose(starts, [0, 24, 48, 72, 96], atol=1.0)
    assert sections[-1].end == len(y) / SR


def test_uniform_music_is_one_section() -> None:
    y = section([60, 65, 67, 60], 40, [1, 0.5]).astype(np.float32)
    assert [s.label for s in segment_structure(y, sr=SR)] == ["A"]
