"""Nearest-neighbour repetition model of a magnitude spectrogram (REPET-SIM, Rafii & Pardo 2012).

Per frame: the frames most similar to it (cosine similarity of their magnitude spectra), at
least `min_gap_s` away from it and from each other (local maxima of its similarity row), and
the median of the `neighbours` most similar of them, bin by bin, is the repeating part of the
frame, capped at the frame itself. What repeats (loops, riffs, repeated chords) agrees across
the neighbours and survives the median; what does not (a melody over them) is voted out.

Good at: accompaniment that repeats within the spectrogram at the same pitch and level, at
any period or none (no beat or period is assumed). Bad at: music that does not repeat within
the excerpt (every frame's "repetition" is then a merely similar frame, whose shared partials
it claims), accompaniment that repeats transposed or varied, and a melody that repeats with it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import maximum_filter1d

from polymuse.errors import ParameterError

EPS = 1e-10


def repeating_model(
    mag: np.ndarray,
    *,
    frame_rate: float,
    neighbours: int = 5,
    min_gap_s: float = 1.0,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """The repeating part of a (bins, frames) magnitude spectrogram, same shape, <= `mag`.

    Args:
        mag: Magnitudes to model.
        frame_rate: Frames per second.
        neighbours: How many similar frames the median runs over.
        min_gap_s: Closest a neighbour may be to the frame, and neighbours to each other, s.
        features: (dims, frames) spectra compared for similarity; `mag` when None.

    Returns:
        Per bin and frame, the median of the neighbours' magnitudes, capped at `mag`; frames
        with no admissible neighbour (an excerpt shorter than twice `min_gap_s`) get zero.

    Raises:
        ParameterError: `neighbours` is below 1 or the shapes disagree.
    """
    if neighbours < 1:
        raise ParameterError(f"neighbours={neighbours}: need at least 1")
    feat = mag if features is None else features
    if mag.ndim != 2 or feat.ndim != 2 or feat.shape[1] != mag.shape[1]:
        raise ParameterError(f"shapes {mag.shape} and {feat.shape} do not share frames")
    frames = mag.shape[1]
    gap = max(1, round(min_gap_s * frame_rate))
    f = torch.from_numpy(np.ascontiguousarray(feat, dtype=np.float32))
    f = f / (f.norm(dim=0, keepdim=True) + EPS)
    sim = (f.T @ f).numpy()
    # Neighbours are local maxima of the similarity row, so two are not one repetition.
    peaks = sim >= maximum_filter1d(sim, size=gap, axis=1, mode="nearest")
    idx = np.arange(frames)
    peaks &= np.abs(idx[:, None] - idx[None, :]) >= gap
    sim = torch.from_numpy(np.where(peaks, sim, -np.inf).astype(np.float32))
    k = min(neighbours, frames)
    best, nearest = sim.topk(k, dim=1)
    m = torch.from_numpy(np.ascontiguousarray(mag, dtype=np.float32))
    gathered = m[:, nearest]  # (bins, frames, k)
    gathered[:, torch.isinf(best)] = float("nan")
    rep = gathered.nanmedian(dim=2).values.nan_to_num(0.0)
    return torch.minimum(rep, m).numpy()
