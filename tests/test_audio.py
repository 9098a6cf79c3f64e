"""Audio loading: formats, channel layouts, resampling, and every kind of bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from polymuse.errors import AudioLoadError
from polymuse.tools import audio

SR = 44100


def tone(seconds: float = 2.0, sr: int = SR, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("a.wav", {}),
        ("a.flac", {}),
        ("a.ogg", {}),
        ("a.mp3", {}),
        ("a.opus", {"format": "OGG", "subtype": "OPUS"}),
    ],
)
def test_formats_decode_to_the_right_length(write_audio, name: str, kwargs: dict) -> None:
    sr = 48000 if "opus" in name else SR
    path = write_audio(name, tone(sr=sr), sr, **kwargs)
    src = audio.probe(path)
    y = audio.load(src, sample_rate=22050)
    assert src.decoder == "soundfile"
    assert abs(len(y) / 22050 - 2.0) < 0.06
    assert 0.3 < np.abs(y).max() < 0.6


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_m4a_goes_through_ffmpeg(write_audio, tmp_path: Path) -> None:
    wav = write_audio("a.wav", tone())
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), str(m4a)], check=True)
    src = audio.probe(m4a)
    assert (src.decoder, src.codec) == ("ffmpeg", "aac")
    y = audio.load(src)
    assert abs(len(y) / SR - 2.0) < 0.06


def test_multichannel_downmix_and_any_rate(write_audio) -> None:
    y = np.stack([tone(sr=8000)] * 6, axis=1)
    path = write_audio("surround.wav", y, 8000)
    src = audio.probe(path)
    assert (src.channels, src.sample_rate) == (6, 8000)
    stereo = audio.load(src, mono=False)
    assert stereo.shape == (6, 16000)
    mono = audio.load(src, sample_rate=44100)
    assert mono.ndim == 1 and abs(len(mono) - 88200) <= 2


def test_content_hash_is_sha256_of_bytes(write_audio) -> None:
    import hashlib

    path = write_audio("a.wav", tone())
    assert audio.content_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _file(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


BAD_INPUTS = {
    "missing": (lambda d, w: d / "missing.wav", "no such file"),
    "directory": (lambda d, w: d, "is a directory"),
    "empty": (lambda d, w: _file(d, "empty.wav", b""), "empty file"),
    "text-as-wav": (lambda d, w: _file(d, "t.wav", b"not audio\n"), "not a readable audio file"),
    "random-flac": (
        lambda d, w: _file(d, "r.flac", np.random.default_rng(0).bytes(5000)),
        "not a readable audio file",
    ),
    "zero-ogg": (lambda d, w: _file(d, "z.ogg", b""), "empty file"),
    "cut-wav": (lambda d, w: _truncate(w("cut.wav", tone(5.0))), "truncated"),
    "cut-mp3": (lambda d, w: _truncate(w("cut.mp3", tone(5.0))), "truncated"),
}


@pytest.mark.parametrize(("make", "message"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_names_file_and_cause(tmp_path: Path, write_audio, make, message: str) -> None:
    path = make(tmp_path, write_audio)
    with pytest.raises(AudioLoadError) as info:
        source = audio.probe(path)
        for _ in audio.stream(source):
            pass
    text = str(info.value)
    assert text.startswith(str(path)) and message in text
    assert "\n" not in text


def test_unknown_codec_is_reported(tmp_path: Path) -> None:
    """A WAV header with a format tag no decoder knows."""
    data = np.zeros(8000, np.int16).tobytes()
    fmt = (0x7777).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    fmt += (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + len(data).to_bytes(4, "little") + data
    path = tmp_path / "odd.wav"
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    with pytest.raises(
        AudioLoadError, match="odd.wav: not a readable audio file.*unsupported codec"
    ):
        audio.probe(path)


@pytest.mark.parametrize(
    ("length", "expected"),
    [(10, [(0, 4), (4, 8), (8, 10)]), (9, [(0, 4), (4, 9)]), (8, [(0, 4), (4, 8)]), (3, [(0, 3)])],
)
def test_spans_cover_the_length_without_a_short_rest(length, expected) -> None:
    assert audio.spans(length, 4, minimum=2) == expected
