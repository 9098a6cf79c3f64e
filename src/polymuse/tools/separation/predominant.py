"""Predominant melody of a polyphonic magnitude spectrogram, and a harmonic mask on its partials.

1. Peaks: the local maxima of each frame's magnitude within 40 dB of its loudest, with
   frequency and amplitude refined by a parabola through the log magnitudes (Salamon & Gomez
   2012's peak stage).
2. Candidates, by iterative estimation and cancellation (Klapuri 2006): on a 10-cent grid, the
   salience of an f0 is the sum over its first `harmonics` partials of the peaks within
   +-50 cents (cosine-squared weighted), each partial h weighted by Klapuri's
   (f0 + 20 Hz) / (h f0 + 320 Hz); the most salient f0 is taken, and its partials are
   cancelled with a spectral-smoothness rule (a partial loses at most the median of itself
   and its two neighbours, so a partial another voice shares keeps that voice's excess);
   repeat for `voices` candidates per frame.
3. Melody: a Viterbi path through each frame's candidates in the lead's pitch range, scoring
   log relative salience plus `height` per octave (the lead line is usually the highest
   salient voice, the "high-voice superiority" of polyphonic listening), and charging
   `jump` per semitone between frames. A frame is voiced when its chosen candidate holds at
   least `voicing` of the median salience of the chosen path.
4. Mask: per voiced frame, a triangular tooth at each partial h f0 up to `max_hz`, as wide
   as the window's main lobe (2 bins each side) plus the pitch uncertainty
   (`tolerance_cents` of h f0). Partials shared with the accompaniment go to the lead whole:
   sharing them by the smoothness rule of step 2 measured worse on rendered chorales.

Good at: a lead that is the most salient or the highest pitched line in its range and moves
continuously; partials that stand apart from the accompaniment's. Bad at: a lead below a
louder or higher line (a bass-register melody, a descant or piano right hand above the
singer), unisons and octaves with the accompaniment (its shared partials go to the lead's
mask), octave leaps within a few frames, unpitched singing; and an instrument that is the
highest line is taken for the lead just as readily as a voice (there is no timbre model).
"""

from __future__ import annotations

import numba
import numpy as np

from polymuse.errors import ParameterError

GRID_CENTS = 10.0
GRID_FMIN = 55.0  # the candidate grid spans the bass too, so lower voices can be cancelled
GRID_BINS = 600  # six octaves: 55 Hz .. 3520 Hz
PEAK_FLOOR = 10 ** (-40 / 20)  # peaks within 40 dB of the frame's loudest
MAX_PEAKS = 80
PEAK_MAX_HZ = 5000.0
HALF_WIDTH_CENTS = 50.0  # a peak supports f0 candidates within +-50 cents of peak / h
KLAPURI_EPS = (20.0, 320.0)  # Hz: partial weight (f0 + e1) / (h f0 + e2)
MAIN_LOBE_BINS = 2.0  # Hann window main lobe half-width


def pitch_candidates(
    mag: np.ndarray, *, sr: int, n_fft: int, voices: int = 6, harmonics: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `voices` f0 candidates per frame of a (bins, frames) magnitude spectrogram.

    Returns:
        (frames, voices) f0 in Hz (0 where none) and their saliences, in order of detection.

    Raises:
        ParameterError: `mag` does not have `n_fft // 2 + 1` rows, or a count is below 1.
    """
    if mag.ndim != 2 or mag.shape[0] != n_fft // 2 + 1:
        raise ParameterError(f"magnitude of shape {mag.shape} does not match n_fft={n_fft}")
    if voices < 1 or harmonics < 1:
        raise ParameterError(f"voices={voices}, harmonics={harmonics}: need both >= 1")
    df = sr / n_fft
    top = min(mag.shape[0] - 1, int(PEAK_MAX_HZ / df))
    return _candidates(np.ascontiguousarray(mag, dtype=np.float32), df, top, voices, harmonics)


def track_melody(
    f0: np.ndarray,
    salience: np.ndarray,
    *,
    fmin: float,
    fmax: float,
    height: float = 1.0,
    jump: float = 1.0,
    voicing: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """The lead line through `pitch_candidates`' output.

    Args:
        f0: (frames, voices) candidate f0s, Hz.
        salience: Their saliences.
        fmin: Lowest lead pitch, Hz.
        fmax: Highest lead pitch, Hz.
        height: Score bonus per octave above `fmin` (natural-log units).
        jump: Cost per semitone of a pitch change between frames.
        voicing: Salience, relative to the path's median, below which a frame is unvoiced.

    Returns:
        The path's f0 per frame (Hz, 0 where no candidate lies in range) and whether the
        frame is voiced.
    """
    frames = f0.shape[0]
    f = f0.astype(np.float64)
    s = salience.astype(np.float64)
    valid = (f >= fmin) & (f <= fmax) & (s > 0)
    if frames == 0 or not valid.any():
        return np.zeros(frames, np.float32), np.zeros(frames, bool)
    rel = s / np.maximum(s.max(axis=1, keepdims=True), 1e-12)
    score = np.where(
        valid, np.log(rel + 1e-3) + height * np.log2(np.maximum(f, fmin) / fmin), -30.0
    )
    path = _viterbi_candidates(score, 12.0 * np.log2(np.maximum(f, 1.0)), jump)
    rows = np.arange(frames)
    on_path = valid[rows, path]
    strength = np.where(on_path, s[rows, path], 0.0)
    voiced = on_path & (strength >= voicing * np.median(strength[on_path]))
    return np.where(on_path, f[rows, path], 0.0).astype(np.float32), voiced


def harmonic_mask(
    f0: np.ndarray, *, sr: int, n_fft: int, max_hz: float, tolerance_cents: float = 40.0
) -> np.ndarray:
    """A soft mask (n_fft // 2 + 1, frames) in 0..1 on the partials of `f0` (0: unvoiced)."""
    if f0.ndim != 1:
        raise ParameterError(f"f0 must be one value per frame, got shape {f0.shape}")
    return _harmonic_mask(
        n_fft // 2 + 1,
        np.ascontiguousarray(f0, dtype=np.float32),
        sr / n_fft,
        max_hz,
        2 ** (tolerance_cents / 1200) - 1,
    )


def _viterbi_candidates(score: np.ndarray, semitones: np.ndarray, jump: float) -> np.ndarray:
    frames, states = score.shape
    best = score[0].copy()
    back = np.zeros((frames, states), np.int64)
    for t in range(1, frames):
        trans = best[:, None] - jump * np.abs(semitones[t - 1][:, None] - semitones[t][None, :])
        back[t] = trans.argmax(axis=0)
        best = trans.max(axis=0) + score[t]
    path = np.empty(frames, np.int64)
    path[-1] = int(best.argmax())
    for t in range(frames - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


@numba.njit(cache=True)
def _peaks(m: np.ndarray, df: float, top: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    freq = np.zeros(MAX_PEAKS, np.float64)
    amp = np.zeros(MAX_PEAKS, np.float64)
    loudest = 0.0
    for i in range(1, top):
        loudest = max(loudest, m[i])
    n = 0
    for i in range(1, top - 1):
        if m[i] > m[i - 1] and m[i] >= m[i + 1] and m[i] > loudest * PEAK_FLOOR and m[i - 1] > 0:
            if m[i + 1] <= 0:
                continue
            a, b, c = np.log(m[i - 1]), np.log(m[i]), np.log(m[i + 1])
            den = a - 2 * b + c
            p = 0.5 * (a - c) / den if den < 0 else 0.0
            value = np.exp(b - 0.25 * (a - c) * p)
            j = n
            if n == MAX_PEAKS:  # full: replace the weakest if this one is louder
                j = int(np.argmin(amp))
                if value <= amp[j]:
                    continue
            else:
                n += 1
            freq[j], amp[j] = (i + p) * df, value
    return freq[:n], amp[:n]


@numba.njit(parallel=True, cache=True)
def _candidates(
    mag: np.ndarray, df: float, top: int, voices: int, harmonics: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - numba
    frames = mag.shape[1]
    out_f = np.zeros((frames, voices), np.float32)
    out_s = np.zeros((frames, voices), np.float32)
    hw = int(HALF_WIDTH_CENTS / GRID_CENTS)
    e1, e2 = KLAPURI_EPS
    for t in numba.prange(frames):
        freq, amp = _peaks(mag[:, t], df, top)
        cents = np.empty(len(freq))
        for i in range(len(freq)):
            cents[i] = 1200 * np.log2(max(freq[i], 1.0) / GRID_FMIN)
        sal = np.zeros(GRID_BINS)
        partial = np.zeros(harmonics + 2)
        owner = np.zeros(harmonics + 2, np.int64)
        for k in range(voices):
            sal[:] = 0.0
            for i in range(len(freq)):
                if amp[i] <= 0:
                    continue
                for h in range(1, harmonics + 1):
                    c = (cents[i] - 1200 * np.log2(h)) / GRID_CENTS
                    if c < -hw:
                        break
                    w = amp[i] * (freq[i] / h + e1) / (freq[i] + e2)
                    b0 = int(np.floor(c))
                    for b in range(max(b0 - hw + 1, 0), min(b0 + hw + 1, GRID_BINS)):
                        d = (b - c) / hw
                        if abs(d) < 1:
                            x = np.cos(0.5 * np.pi * d)
                            sal[b] += w * x * x
            best = int(np.argmax(sal))
            if sal[best] <= 0:
                break
            out_f[t, k] = GRID_FMIN * 2 ** (best * GRID_CENTS / 1200)
            out_s[t, k] = sal[best]
            # Cancel the winner's partials, each down to the smoothness envelope.
            partial[:] = 0.0
            owner[:] = -1
            for i in range(len(freq)):
                r = cents[i] - best * GRID_CENTS
                h = int(np.rint(2 ** (r / 1200)))
                near = 1 <= h <= harmonics and abs(r - 1200 * np.log2(h)) < HALF_WIDTH_CENTS
                if near and amp[i] > partial[h]:
                    partial[h], owner[h] = amp[i], i
            for h in range(1, harmonics + 1):
                i = owner[h]
                if i < 0:
                    continue
                if h == 1:
                    amp[i] = 0.0
                else:
                    amp[i] -= min(amp[i], _median3(partial[h - 1], partial[h], partial[h + 1]))
    return out_f, out_s


@numba.njit(cache=True)
def _median3(a: float, b: float, c: float) -> float:  # pragma: no cover - numba
    return max(min(a, b), min(max(a, b), c))


@numba.njit(parallel=True, cache=True)
def _harmonic_mask(
    bins: int, f0: np.ndarray, df: float, max_hz: float, tolerance: float
) -> np.ndarray:  # pragma: no cover - numba
    frames = f0.shape[0]
    mask = np.zeros((bins, frames), np.float32)
    for t in numba.prange(frames):
        if f0[t] <= 0:
            continue
        for h in range(1, int(max_hz / f0[t]) + 1):
            centre = h * f0[t] / df
            half = MAIN_LOBE_BINS + centre * tolerance
            for b in range(max(int(np.ceil(centre - half)), 0), min(int(centre + half) + 1, bins)):
                mask[b, t] = max(mask[b, t], 1.0 - abs(b - centre) / half)
    return mask
