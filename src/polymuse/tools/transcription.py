"""Polyphonic note transcription with Basic Pitch (Bittner et al. 2022) run by onnxruntime.

The ONNX export of the ICASSP 2022 model ships inside the `basic-pitch` wheel
(`basic_pitch/saved_models/icassp_2022/nmp.onnx`); the package is located but never imported,
so neither TensorFlow nor its other optional runtimes are needed. What this module repeats from
`basic_pitch.inference` and `basic_pitch.note_creation` (Apache-2.0):

- framing: mono audio at 22.05 kHz, `OVERLAP_FRAMES / 2 * 256` zeros in front, windows of
  43,844 samples every 36,164 (30 frames of overlap), the last zero-padded; 15 output frames
  are dropped at each side of every window and the rest concatenated;
- notes: onset peaks (model onsets, maxed with onsets inferred from rises of the frame
  activations) above `onset_threshold` start notes that last while the frame activation stays
  above `frame_threshold` (with 11 frames of tolerance), backwards in time, each note clearing
  its pitch and neighbours; then the "Melodia trick" turns leftover frame energy into notes.
  Pitch bends are not exported.

One difference: frame times come from each frame's exact position in its window (window start
+ frame x 256 samples) instead of Basic Pitch's per-window drift correction, which uses the
window length in frames (172) where the unwrapped output advances 142 frames per window.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import librosa
import numpy as np
import scipy.signal

from polymuse.errors import ModelUnavailableError, ParameterError
from polymuse.tools.melody import Note

SAMPLE_RATE = 22050
FFT_HOP = 256
WINDOW = SAMPLE_RATE * 2 - FFT_HOP  # 43,844 samples
FRAMES_PER_WINDOW = 172
OVERLAP_FRAMES = 30
OVERLAP = OVERLAP_FRAMES * FFT_HOP
HOP = WINDOW - OVERLAP
MIDI_OFFSET = 21
N_PITCHES = 88
ENERGY_TOLERANCE = 11
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.3
MIN_NOTE_MS = 127.7
_INPUT = "serving_default_input_2:0"
_OUTPUTS = ("StatefulPartitionedCall:1", "StatefulPartitionedCall:2")  # note, onset


def basic_pitch_model() -> Path:
    """The ONNX file in the installed `basic-pitch` wheel, found without importing it.

    Raises:
        ModelUnavailableError: basic-pitch is not installed or lacks the ONNX model.
    """
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "the Basic Pitch model comes from its wheel: pip install basic-pitch --no-deps"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "saved_models" / "icassp_2022" / "nmp.onnx"
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing; reinstall basic-pitch --no-deps")
    return path


@functools.lru_cache(maxsize=1)
def _session(path: str):  # noqa: ANN202 - onnxruntime is imported lazily
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ModelUnavailableError(
            "Basic Pitch runs on onnxruntime: pip install onnxruntime"
        ) from error
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own untyped errors for bad files
        raise ModelUnavailableError(f"{path} is not a loadable ONNX model: {error}") from error


def activations(
    y: np.ndarray, *, sr: int, model: Path | str | None = None, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Basic Pitch's frame and onset activations (frames, 88) and each frame's time in s.

    Raises:
        ParameterError: Not mono, or a bad sample rate.
        ModelUnavailableError: onnxruntime or the model is missing.
    """
    y = np.asarray(y, np.float32)
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio (samples,), got shape {y.shape}")
    if sr <= 0:
        raise ParameterError(f"sr={sr} must be positive")
    if sr != SAMPLE_RATE:
        y = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    session = _session(str(model or basic_pitch_model()))
    padded = np.concatenate([np.zeros(OVERLAP // 2, np.float32), y])
    starts = np.arange(0, len(padded), HOP)
    keep = slice(OVERLAP_FRAMES // 2, FRAMES_PER_WINDOW - OVERLAP_FRAMES // 2)
    notes, onsets = [], []
    for first in range(0, len(starts), batch_size):
        batch = np.zeros((len(starts[first : first + batch_size]), WINDOW, 1), np.float32)
        for i, start in enumerate(starts[first : first + batch_size]):
            chunk = padded[start : start + WINDOW]
            batch[i, : len(chunk), 0] = chunk
        note, onset = session.run(list(_OUTPUTS), {_INPUT: batch})
        notes.append(note[:, keep].reshape(-1, N_PITCHES))
        onsets.append(onset[:, keep].reshape(-1, N_PITCHES))
    per_window = keep.stop - keep.start
    n_frames = int(np.floor(len(y) * (SAMPLE_RATE // FFT_HOP) / SAMPLE_RATE))
    k = np.arange(len(starts) * per_window)
    # kept frame j of window w starts at w*HOP - OVERLAP/2 + (j + 15)*FFT_HOP = w*HOP + j*FFT_HOP
    times = ((k // per_window) * HOP + (k % per_window) * FFT_HOP) / SAMPLE_RATE
    return (
        np.concatenate(notes)[:n_frames],
        np.concatenate(onsets)[:n_frames],
        times[:n_frames],
    )


def transcribe(
    y: np.ndarray,
    *,
    sr: int,
    onset_threshold: float = ONSET_THRESHOLD,
    frame_threshold: float = FRAME_THRESHOLD,
    min_note_ms: float = MIN_NOTE_MS,
    min_hz: float | None = None,
    max_hz: float | None = None,
    melodia_trick: bool = True,
    model: Path | str | None = None,
) -> list[Note]:
    """Notes of a (polyphonic) mono signal, sorted by onset; velocity from mean activation.

    Defaults are Basic Pitch's. Raises as `activations` does, and `ParameterError` for
    thresholds outside (0, 1).
    """
    if not (0 < onset_threshold < 1 and 0 < frame_threshold < 1):
        raise ParameterError(
            f"onset_threshold={onset_threshold}, frame_threshold={frame_threshold}: "
            "both must lie in (0, 1)"
        )
    frames, onsets, times = activations(y, sr=sr, model=model)
    if len(frames) < 2:
        return []
    min_len = int(np.round(min_note_ms / 1000 * (SAMPLE_RATE / FFT_HOP)))
    events = _notes_from_activations(
        frames.copy(),
        onsets.copy(),
        onset_threshold=onset_threshold,
        frame_threshold=frame_threshold,
        min_len=min_len,
        min_hz=min_hz,
        max_hz=max_hz,
        melodia_trick=melodia_trick,
    )
    step = FFT_HOP / SAMPLE_RATE
    ends = np.append(times, times[-1] + step)
    notes = [
        Note(
            onset=round(float(times[a]), 4),
            offset=round(float(ends[b]), 4),
            pitch=pitch,
            velocity=int(np.clip(round(127 * amplitude), 1, 127)),
        )
        for a, b, pitch, amplitude in events
    ]
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


def _notes_from_activations(
    frames: np.ndarray,
    onsets: np.ndarray,
    *,
    onset_threshold: float,
    frame_threshold: float,
    min_len: int,
    min_hz: float | None,
    max_hz: float | None,
    melodia_trick: bool,
) -> list[tuple[int, int, int, float]]:
    """`basic_pitch.note_creation.output_to_notes_polyphonic`, same decisions."""
    n_frames = frames.shape[0]
    top = N_PITCHES - 1
    if max_hz is not None:
        hi = int(np.round(librosa.hz_to_midi(max_hz) - MIDI_OFFSET))
        onsets[:, hi:] = 0
        frames[:, hi:] = 0
    if min_hz is not None:
        lo = int(np.round(librosa.hz_to_midi(min_hz) - MIDI_OFFSET))
        onsets[:, :lo] = 0
        frames[:, :lo] = 0
    onsets = _inferred_onsets(onsets, frames)
    peaks = np.zeros(onsets.shape)
    where = scipy.signal.argrelmax(onsets, axis=0)
    peaks[where] = onsets[where]
    onset_t, onset_f = np.where(peaks >= onset_threshold)
    remaining = frames.copy()
    events: list[tuple[int, int, int, float]] = []
    for start, pitch in zip(onset_t[::-1], onset_f[::-1], strict=True):
        if start >= n_frames - 1:
            continue
        i, k = start + 1, 0
        while i < n_frames - 1 and k < ENERGY_TOLERANCE:
            k = k + 1 if remaining[i, pitch] < frame_threshold else 0
            i += 1
        i -= k
        if i - start <= min_len:
            continue
        remaining[start:i, max(pitch - 1, 0) : min(pitch + 2, top + 1)] = 0
        events.append(
            (int(start), int(i), int(pitch) + MIDI_OFFSET, float(frames[start:i, pitch].mean()))
        )
    if not melodia_trick:
        return events
    while remaining.max() > frame_threshold:
        mid, pitch = np.unravel_index(np.argmax(remaining), remaining.shape)
        remaining[mid, pitch] = 0
        band = slice(max(pitch - 1, 0), min(pitch + 2, top + 1))
        i, k = mid + 1, 0
        while i < n_frames - 1 and k < ENERGY_TOLERANCE:
            k = k + 1 if remaining[i, pitch] < frame_threshold else 0
            remaining[i, band] = 0
            i += 1
        end = i - 1 - k
        i, k = mid - 1, 0
        while i > 0 and k < ENERGY_TOLERANCE:
            k = k + 1 if remaining[i, pitch] < frame_threshold else 0
            remaining[i, band] = 0
            i -= 1
        begin = i + 1 + k
        if end - begin <= min_len:
            continue
        events.append(
            (int(begin), int(end), int(pitch) + MIDI_OFFSET, float(frames[begin:end, pitch].mean()))
        )
    return events


def _inferred_onsets(onsets: np.ndarray, frames: np.ndarray, n_diff: int = 2) -> np.ndarray:
    """Onsets maxed with rises of the frame activations, rescaled to the onsets' maximum."""
    diffs = []
    for n in range(1, n_diff + 1):
        shifted = np.concatenate([np.zeros((n, frames.shape[1])), frames])
        diffs.append(shifted[n:] - shifted[:-n])
    rise = np.maximum(np.min(diffs, axis=0), 0)
    rise[:n_diff] = 0
    peak = rise.max()
    if peak > 0:
        rise = onsets.max() * rise / peak
    return np.maximum(onsets, rise)
