"""Structure segments with repeat labels (A, B, A', ...) by Laplacian segmentation.

McFee & Ellis (2014), "Analyzing song structure with spectral clustering": a beat-synchronous
CQT recurrence graph (repetition) is blended with an MFCC path graph (local continuity); the
first eigenvectors of its normalised Laplacian are clustered, and label changes are the
boundaries. The number of section types is the best eigengap among those giving
section-length runs.
"""

from __future__ import annotations

import string

import librosa
import numpy as np
import scipy.ndimage
import scipy.sparse.csgraph
from sklearn.cluster import KMeans

from polymuse.errors import ParameterError
from polymuse.model_cards import MODEL_CARDS
from polymuse.report import TimedLabel

MODEL = MODEL_CARDS["laplacian-segmentation"]
SR = 22050
HOP = 512
MAX_NODES = 1500


def segment_structure(
    y: np.ndarray,
    *,
    sr: int,
    beats: list[float] | None = None,
    max_types: int = 8,
    min_beats: int = 8,
    variation_similarity: float = 0.85,
    seed: int = 0,
) -> list[TimedLabel]:
    """Segment mono audio into labelled sections.

    Args:
        y: mono audio.
        sr: its sample rate.
        beats: beat times in seconds; tracked with librosa when not given.
        max_types: most section types (letters) to consider.
        min_beats: sections shorter than this many beats merge into a neighbour.
        variation_similarity: a repeat whose chroma matches the first occurrence less than
            this (mean cosine over aligned beats) is marked as a variation (A').
        seed: k-means seed.
    """
    if y.ndim != 1:
        raise ParameterError(f"structure needs mono audio, got shape {y.shape}")
    y = librosa.resample(y, orig_sr=sr, target_sr=SR, res_type="soxr_hq") if sr != SR else y
    duration = len(y) / SR
    if beats:
        beat_frames = librosa.time_to_frames(np.asarray(beats), sr=SR, hop_length=HOP)
    else:
        _, beat_frames = librosa.beat.beat_track(y=y, sr=SR, hop_length=HOP, trim=False)
    magnitude = np.abs(librosa.cqt(y=y, sr=SR, hop_length=HOP, bins_per_octave=36, n_bins=252))
    cqt = librosa.amplitude_to_db(magnitude, ref=np.max)
    n_frames = cqt.shape[1]
    bounds = librosa.util.fix_frames(beat_frames, x_min=0, x_max=n_frames)
    # The graph is dense (n x n): past MAX_NODES beats, group beats so a long file stays cheap.
    stride = -(-len(bounds) // MAX_NODES)
    bounds = np.r_[bounds[:-1:stride], bounds[-1]]
    min_beats = max(2, min_beats // stride)
    if len(bounds) < 2 * min_beats + 1:
        return [TimedLabel(start=0.0, end=round(duration, 3), label="A")]
    csync = librosa.util.sync(cqt, bounds, aggregate=np.median)
    mfcc = librosa.util.sync(librosa.feature.mfcc(y=y, sr=SR, hop_length=HOP), bounds)
    chroma = librosa.util.sync(
        librosa.feature.chroma_cqt(C=magnitude, sr=SR, hop_length=HOP, bins_per_octave=36), bounds
    )
    labels = _cluster(csync, mfcc, max_types=max_types, min_beats=min_beats, seed=seed)
    times = librosa.frames_to_time(bounds, sr=SR, hop_length=HOP)
    times[-1] = duration
    return _label_sections(labels, times, chroma, min_beats, variation_similarity)


def _cluster(
    csync: np.ndarray, mfcc: np.ndarray, *, max_types: int, min_beats: int, seed: int
) -> np.ndarray:
    rec = librosa.segment.recurrence_matrix(csync, width=3, mode="affinity", sym=True)
    rec = librosa.segment.timelag_filter(scipy.ndimage.median_filter)(rec, size=(1, 7))
    path_distance = np.sum(np.diff(mfcc, axis=1) ** 2, axis=0)
    sigma = np.median(path_distance) or 1.0
    path_sim = np.exp(-path_distance / sigma)
    path = np.diag(path_sim, k=1) + np.diag(path_sim, k=-1)
    deg_path, deg_rec = path.sum(axis=1), rec.sum(axis=1)
    mu = deg_path.dot(deg_path + deg_rec) / (np.sum((deg_path + deg_rec) ** 2) or 1.0)
    graph = mu * rec + (1 - mu) * path
    laplacian = scipy.sparse.csgraph.laplacian(graph, normed=True)
    evals, evecs = np.linalg.eigh(laplacian)
    evecs = scipy.ndimage.median_filter(evecs, size=(9, 1))
    norm = np.cumsum(evecs**2, axis=1) ** 0.5
    k_max = min(max_types, len(evals) - 1)
    gaps = np.diff(evals[: k_max + 1])
    # Best eigengap first; a k whose clusters flicker faster than a section is a finer level
    # of repetition (chords, bars), so we take the first k that yields section-length runs.
    labels = np.zeros(len(evals), dtype=int)
    for k in np.argsort(gaps[1:])[::-1] + 2:
        x = evecs[:, :k] / (norm[:, k - 1 : k] + 1e-12)
        candidate = KMeans(n_clusters=int(k), n_init=10, random_state=seed).fit_predict(x)
        if np.median(_run_lengths(candidate)) >= min_beats:
            return candidate
    return labels


def _run_lengths(labels: np.ndarray) -> np.ndarray:
    change = np.flatnonzero(np.diff(labels)) + 1
    return np.diff(np.r_[0, change, len(labels)])


def _label_sections(
    labels: np.ndarray,
    times: np.ndarray,
    chroma: np.ndarray,
    min_beats: int,
    variation_similarity: float,
) -> list[TimedLabel]:
    # Runs of equal cluster labels, short runs merged into the previous section.
    runs: list[list[int]] = []  # [cluster, first beat, last beat + 1]
    for i, lab in enumerate(labels):
        if runs and runs[-1][0] == lab:
            runs[-1][2] = i + 1
        else:
            runs.append([int(lab), i, i + 1])
    merged: list[list[int]] = []
    for run in runs:
        if merged and (run[2] - run[1] < min_beats or merged[-1][0] == run[0]):
            merged[-1][2] = run[2]
        else:
            merged.append(run)
    if len(merged) > 1 and merged[0][2] - merged[0][1] < min_beats:
        merged[1][1] = 0
        merged.pop(0)
    letters: dict[int, str] = {}
    first: dict[int, tuple[int, int]] = {}
    sections = []
    for cluster, start, end in merged:
        if cluster not in letters:
            letters[cluster] = string.ascii_uppercase[len(letters) % 26]
            first[cluster] = (start, end)
            label = letters[cluster]
        else:
            f_start, f_end = first[cluster]
            n = min(end - start, f_end - f_start)
            a, b = chroma[:, f_start : f_start + n], chroma[:, start : start + n]
            cos = np.sum(a * b, axis=0) / (
                np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0) + 1e-9
            )
            label = letters[cluster] + ("'" if float(cos.mean()) < variation_similarity else "")
        sections.append(
            TimedLabel(
                start=round(float(times[start]), 3), end=round(float(times[end]), 3), label=label
            )
        )
    return sections
