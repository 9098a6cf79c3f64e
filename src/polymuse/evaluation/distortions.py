"""Query making for recognition benchmarks: where a clip is cut, and what happens to it.

Segment strategies (from the seed's benchmarks): `random`, `high_energy` (among the loudest
windows), `onset_aware` (starting at a strong onset), `beat_aware` (starting on a ground-truth
beat) and `hybrid` (beat starts ranked by loudness times onset density).

Conditions: white and babble noise at a given SNR, reverb (synthetic rooms, RT60 0.3-0.9 s,
direct-to-reverberant ratio 0-6 dB), gain (with clipping when it goes up), EQ (three random
peaking bands, +-12 dB), mp3/opus at 64 kbit/s through ffmpeg, speed (resampling: tempo and
pitch together), tempo (time stretch) and pitch shift (both with ffmpeg's rubberband filter),
and a phone held up in a café (room, phone band, babble and opus at once, as real recordings
come). Speed and tempo report the ratio of reference time to query time, so the caller cuts
`duration * ratio` seconds of source.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from polymuse.errors import ModelUnavailableError, ParameterError

STRATEGIES = ("random", "high_energy", "onset_aware", "beat_aware", "hybrid")
BABBLE_TALKERS = 6
_SENTENCES = (
    "The north wind and the sun were disputing which was the stronger.",
    "A traveller came along wrapped in a warm cloak.",
    "They agreed that the one who first succeeded in making him take it off would win.",
    "Then the north wind blew as hard as he could, but the more he blew the closer he held it.",
    "At last the sun shone out warmly and the traveller took off his cloak at once.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her on Wednesday.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "The rainbow is a division of white light into many beautiful colours.",
    "Throughout the centuries people have explained the rainbow in various ways.",
)
_VOICES = ("en", "en-us", "de", "fr", "es", "it", "nl", "pt", "pl", "sv")


@dataclass(frozen=True)
class Condition:
    """One distortion: its name in tables, its kind and its parameter."""

    name: str
    kind: str
    value: float = 0.0

    @property
    def ratio(self) -> float:
        """Reference seconds per query second."""
        return self.value if self.kind in ("speed", "tempo") else 1.0


def default_conditions() -> list[Condition]:
    """The issue's grid (noise at 0/5/10/20 dB, room, gain, EQ, codecs, speed, pitch) and a phone
    in a café."""
    conditions = [Condition("clean", "clean")]
    for snr in (0, 5, 10, 20):
        conditions.append(Condition(f"white {snr} dB", "white", snr))
    for snr in (0, 5, 10, 20):
        conditions.append(Condition(f"babble {snr} dB", "babble", snr))
    conditions += [
        Condition("reverb", "reverb"),
        Condition("gain", "gain"),
        Condition("eq", "eq"),
        Condition("mp3 64k", "mp3", 64),
        Condition("opus 64k", "opus", 64),
    ]
    for pct in (-5, -2, 2, 5):
        conditions.append(Condition(f"speed {pct:+d} %", "speed", 1 + pct / 100))
    conditions += [Condition("tempo -5 %", "tempo", 0.95), Condition("tempo +5 %", "tempo", 1.05)]
    conditions += [Condition("pitch -1 st", "pitch", -1), Condition("pitch +1 st", "pitch", 1)]
    conditions.append(Condition("phone in a cafe", "phone"))
    return conditions


def condition_named(name: str) -> Condition:
    for condition in default_conditions():
        if condition.name == name:
            return condition
    raise ParameterError(
        f"unknown condition {name!r}; known: {[c.name for c in default_conditions()]}"
    )


# -- segments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SongProfile:
    """Frame-level loudness and onset strength of a song (10 frames a second)."""

    duration_s: float
    energy: np.ndarray
    onsets: np.ndarray
    beats: np.ndarray

    HOP_S = 0.1

    @classmethod
    def of(cls, y: np.ndarray, sr: int, beats: list[float]) -> SongProfile:
        hop = int(sr * cls.HOP_S)
        frames = len(y) // hop
        blocks = y[: frames * hop].reshape(frames, hop).astype(np.float64)
        energy = np.sqrt(np.mean(blocks**2, axis=1))
        spec = np.abs(np.fft.rfft(blocks * np.hanning(hop), axis=1))
        flux = np.maximum(np.diff(np.log1p(100 * spec), axis=0), 0).sum(axis=1)
        return cls(len(y) / sr, energy, np.concatenate([[0.0], flux]), np.asarray(beats, float))


def choose_start(
    profile: SongProfile, span_s: float, strategy: str, rng: np.random.Generator
) -> float:
    """Start (s) of a `span_s` window by `strategy`; the window lies inside the song."""
    latest = profile.duration_s - span_s
    if latest <= 0:
        return 0.0
    hop = SongProfile.HOP_S
    n = int(span_s / hop)
    starts = np.arange(0, int(latest / hop) + 1)
    if strategy == "random":
        return float(rng.uniform(0, latest))
    if strategy == "high_energy":
        window = np.convolve(profile.energy**2, np.ones(max(n, 1)), mode="valid")[: len(starts)]
        return float(_top_pick(starts * hop, window, 0.1, rng))
    if strategy == "onset_aware":
        strength = profile.onsets[: len(starts)]
        return float(max(0.0, _top_pick(starts * hop, strength, 0.2, rng) - 0.05))
    beats = profile.beats[(profile.beats >= 0) & (profile.beats <= latest)]
    if not len(beats):
        return float(rng.uniform(0, latest))
    if strategy == "beat_aware":
        return float(rng.choice(beats))
    if strategy == "hybrid":
        idx = np.minimum((beats / hop).astype(int), len(profile.energy) - 1)
        energy = np.array([profile.energy[i : i + n].mean() for i in idx])
        onsets = np.array([profile.onsets[i : i + n].mean() for i in idx])
        score = energy / (energy.max() or 1) * (1 + onsets / (onsets.max() or 1))
        return float(_top_pick(beats, score, 0.25, rng))
    raise ParameterError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")


def _top_pick(values: np.ndarray, score: np.ndarray, share: float, rng) -> float:
    """A random value among the best-scoring `share` of them."""
    keep = max(1, int(len(values) * share))
    best = np.argsort(-score, kind="stable")[:keep]
    return float(values[rng.choice(best)])


# -- distortions -------------------------------------------------------------------------


def distort(
    y: np.ndarray,
    sr: int,
    condition: Condition,
    rng: np.random.Generator,
    *,
    babble: np.ndarray | None = None,
) -> np.ndarray:
    """`y` (mono float32) after `condition`; speed/tempo shorten it by their ratio."""
    kind = condition.kind
    apply: dict[str, Callable[[], np.ndarray]] = {
        "clean": lambda: y,
        "white": lambda: _add(y, rng.standard_normal(len(y)), condition.value),
        "babble": lambda: _add(y, _babble_cut(babble, len(y), rng), condition.value),
        "reverb": lambda: _reverb(y, sr, rng),
        "gain": lambda: _gain(y, rng),
        "eq": lambda: _eq(y, sr, rng),
        "mp3": lambda: _codec(y, sr, "libmp3lame", "mp3", condition.value),
        "opus": lambda: _codec(y, sr, "libopus", "ogg", condition.value),
        "speed": lambda: _speed(y, sr, condition.value),
        "tempo": lambda: _rubberband(y, sr, f"tempo={condition.value:.6f}"),
        "pitch": lambda: _rubberband(y, sr, f"pitch={2 ** (condition.value / 12):.6f}"),
        "phone": lambda: _phone(y, sr, rng, babble),
    }
    if kind not in apply:
        raise ParameterError(f"unknown distortion {kind!r}")
    return np.asarray(apply[kind](), dtype=np.float32)


def _add(y: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    p_signal = float(np.mean(np.square(y, dtype=np.float64))) or 1e-12
    p_noise = float(np.mean(np.square(noise, dtype=np.float64))) or 1e-12
    return y + noise * np.sqrt(p_signal / p_noise / 10 ** (snr_db / 10))


def _babble_cut(babble: np.ndarray | None, n: int, rng: np.random.Generator) -> np.ndarray:
    if babble is None or len(babble) < n:
        raise ParameterError("babble noise needs a babble track longer than the query")
    start = int(rng.integers(0, len(babble) - n + 1))
    return babble[start : start + n]


def _reverb(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: the direct sound, then exponentially decaying noise (RT60 0.3-0.9 s)
    whose energy sits 0-6 dB below it (a phone a few metres from the speaker)."""
    rt60 = rng.uniform(0.3, 0.9)
    direct_to_reverb_db = rng.uniform(0.0, 6.0)
    t = np.arange(int(rt60 * sr)) / sr
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
    tail[: int(0.005 * sr)] = 0.0  # the first reflections arrive after 5 ms
    tail *= 10 ** (-direct_to_reverb_db / 20) / np.sqrt(np.sum(tail**2))
    wet = signal.fftconvolve(y, np.concatenate([[1.0], tail]))[: len(y)]
    return wet * (np.sqrt(np.mean(y**2)) / (np.sqrt(np.mean(wet**2)) or 1))


def _phone(
    y: np.ndarray, sr: int, rng: np.random.Generator, babble: np.ndarray | None
) -> np.ndarray:
    """A phone held up in a café: the room (`_reverb`), the phone's band (200 Hz-3.4 kHz,
    4th-order Butterworth), the café's babble at 10 dB SNR, then opus at 24 kbit/s as a
    messaging app sends it."""
    band = signal.butter(4, [200.0, 3400.0], btype="bandpass", fs=sr, output="sos")
    heard = _add(signal.sosfilt(band, _reverb(y, sr, rng)), _babble_cut(babble, len(y), rng), 10)
    heard *= 0.9 / (float(np.max(np.abs(heard))) or 1.0)
    return _codec(heard, sr, "libopus", "ogg", 24)


def _gain(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """-20..-6 dB or +6..+12 dB; going up clips at full scale, as a hot recorder would."""
    db = rng.uniform(-20, -6) if rng.random() < 0.5 else rng.uniform(6, 12)
    peak = float(np.max(np.abs(y))) or 1.0
    return np.clip(y / peak * 0.9 * 10 ** (db / 20), -1.0, 1.0)


def _eq(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Three peaking bands (RBJ biquads): 80 Hz-6 kHz, +-12 dB, Q 0.7-2."""
    out = y.astype(np.float64)
    for _ in range(3):
        f0 = float(np.exp(rng.uniform(np.log(80), np.log(min(6000, sr / 2.5)))))
        gain = rng.uniform(-12, 12)
        q = rng.uniform(0.7, 2.0)
        a = 10 ** (gain / 40)
        w0 = 2 * np.pi * f0 / sr
        alpha = np.sin(w0) / (2 * q)
        b = [1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a]
        den = [1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a]
        out = signal.lfilter(b, den, out)
    return out


def _speed(y: np.ndarray, sr: int, ratio: float) -> np.ndarray:
    import soxr

    return soxr.resample(y, sr, sr / ratio, quality="HQ")


@functools.cache
def has_rubberband() -> bool:
    """Whether ffmpeg has the rubberband filter (pitch and tempo conditions need it)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return False
    listed = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, check=False)
    return b"rubberband" in listed.stdout


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise ModelUnavailableError("ffmpeg is not installed (Debian package ffmpeg)")
    return exe


def _pcm_args(sr: int) -> list[str]:
    return ["-f", "f32le", "-ar", str(sr), "-ac", "1"]


def _run(cmd: list[str], data: bytes) -> bytes:
    done = subprocess.run(cmd, input=data, capture_output=True, check=False)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise ModelUnavailableError(f"ffmpeg failed: {said[-1] if said else 'no message'}")
    return done.stdout


def _codec(y: np.ndarray, sr: int, codec: str, container: str, kbps: float) -> np.ndarray:
    """Encode and decode through a file: on a pipe the mp3 muxer cannot write the header that
    tells the decoder to drop the encoder's delay, and every offset would shift by it."""
    pcm = np.asarray(y, dtype="<f4").tobytes()
    base = [_ffmpeg(), "-v", "error", "-nostdin", "-y"]
    with tempfile.TemporaryDirectory() as tmp:
        encoded = Path(tmp) / f"clip.{container}"
        _run(
            [
                *base,
                *_pcm_args(sr),
                "-i",
                "-",
                "-c:a",
                codec,
                "-b:a",
                f"{int(kbps)}k",
                str(encoded),
            ],
            pcm,
        )
        decoded = _run([*base, "-i", str(encoded), *_pcm_args(sr), "-"], b"")
    out = np.frombuffer(decoded, dtype="<f4")
    return out[: len(y)] if len(out) >= len(y) else np.pad(out, (0, len(y) - len(out)))


def _rubberband(y: np.ndarray, sr: int, setting: str) -> np.ndarray:
    pcm = np.asarray(y, dtype="<f4").tobytes()
    cmd = [
        _ffmpeg(),
        "-v",
        "error",
        "-nostdin",
        *_pcm_args(sr),
        "-i",
        "-",
        "-af",
        f"rubberband={setting}",
        *_pcm_args(sr),
        "-",
    ]
    return np.frombuffer(_run(cmd, pcm), dtype="<f4").copy()


# -- babble ------------------------------------------------------------------------------


@functools.cache
def babble_track(cache_dir: Path, sr: int, seconds: float = 60.0) -> tuple[np.ndarray, str]:
    """A babble-noise track (six talkers) and how it was made, cached as a WAV.

    With `espeak-ng` installed (Debian package), the talkers are synthetic speech in ten
    languages at varied pitch and rate; without it, formant-filtered glottal pulses with
    syllable-rate envelopes stand in (and the returned source says so).
    """
    source = "espeak-ng" if shutil.which("espeak-ng") else "formant-synthesis"
    path = Path(cache_dir) / f"babble-{source}-{sr}-{int(seconds)}.wav"
    if path.is_file():
        y, _ = sf.read(path, dtype="float32")
        return y, source
    rng = np.random.default_rng(12345)
    n = int(seconds * sr)
    mix = np.zeros(n)
    for talker in range(BABBLE_TALKERS):
        if source == "espeak-ng":
            voice = _espeak_talker(talker, sr, n, rng)
        else:
            voice = _formant_talker(sr, n, rng)
        mix += voice / (np.sqrt(np.mean(voice**2)) or 1)
    mix = (0.5 * mix / np.max(np.abs(mix))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, mix, sr, subtype="FLOAT")
    return mix, source


def _espeak_talker(talker: int, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    import soxr

    out = np.zeros(0)
    voice = _VOICES[talker % len(_VOICES)]
    with tempfile.TemporaryDirectory() as tmp:
        while len(out) < n:
            text = " ".join(rng.choice(_SENTENCES, size=3))
            wav = Path(tmp) / "s.wav"
            subprocess.run(
                [
                    "espeak-ng",
                    "-v",
                    voice,
                    "-s",
                    str(int(rng.uniform(140, 200))),
                    "-p",
                    str(int(rng.uniform(20, 80))),
                    "-w",
                    str(wav),
                    text,
                ],
                check=True,
                capture_output=True,
            )
            speech, rate = sf.read(wav, dtype="float64")
            speech = soxr.resample(speech, rate, sr) if rate != sr else speech
            out = np.concatenate([out, speech, np.zeros(int(rng.uniform(0.05, 0.4) * sr))])
    shift = int(rng.integers(0, n))
    return np.roll(out[:n], shift)


def _formant_talker(sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t))
    phase = np.cumsum(f0 / sr)
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)
    out = np.zeros(n)
    for f1, f2 in ((700, 1200), (300, 2300), (500, 1000), (400, 1900)):
        for fc in (f1, f2):
            b, a = signal.iirpeak(fc * rng.uniform(0.9, 1.1), 8, fs=sr)
            out += signal.lfilter(b, a, pulses) / 4
    syllables = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)))
    return out * syllables**2
