"""Audio decoding: probe, stream, load and resample any common format.

Two decoders are tried in order: libsndfile (via soundfile: wav, flac, ogg/vorbis, opus, mp3,
aiff) and the ffmpeg command line (everything else, e.g. m4a/aac). Errors name the file and
what each decoder said.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from polymuse.errors import AudioLoadError, ParameterError

MIN_DURATION_S = 1.0
BLOCK_FRAMES = 1 << 18


@dataclass(frozen=True)
class AudioProbe:
    """Stream facts read from the container header."""

    path: Path
    container: str
    codec: str
    decoder: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def content_hash(path: str | Path) -> str:
    """sha256 of the file bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: str | Path) -> Path:
    """The path if it is a non-empty regular file, else an `AudioLoadError` saying why."""
    p = Path(path)
    if not p.exists():
        raise AudioLoadError(p, "no such file")
    if p.is_dir():
        raise AudioLoadError(p, "is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioLoadError(p, "empty file (0 bytes)")
    return p


def probe(path: str | Path) -> AudioProbe:
    """Read stream facts, trying libsndfile then ffprobe."""
    p = check_file(path)
    reasons = []
    try:
        info = sf.info(str(p))
        if info.format == "WAV":
            _check_wav_length(p, info.frames * info.channels)
        if info.frames > 0 and info.samplerate > 0:
            return AudioProbe(
                p,
                info.format.lower(),
                info.subtype.lower(),
                "soundfile",
                info.samplerate,
                info.channels,
                info.frames,
            )
        reasons.append("soundfile: no audio frames")
    except (sf.LibsndfileError, RuntimeError) as exc:
        reasons.append(f"soundfile: {_first_line(exc, p)}")
    try:
        return _ffprobe(p)
    except AudioLoadError as exc:
        reasons.append(exc.cause)
    raise AudioLoadError(p, "not a readable audio file (" + "; ".join(reasons) + ")")


def stream(source: AudioProbe, *, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Yield float32 blocks shaped (frames, channels) at the native rate.

    Raises:
        AudioLoadError: when the data is corrupt or ends well before the header says.
    """
    decoded = 0
    blocks = _sf_blocks if source.decoder == "soundfile" else _ffmpeg_blocks
    try:
        for block in blocks(source, block_frames):
            decoded += len(block)
            yield block
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioLoadError(source.path, f"corrupt audio data: {_first_line(exc)}") from exc
    # Lossy decoders may differ from the header by a frame or two of padding.
    if decoded < source.frames * 0.99 - source.sample_rate * 0.05:
        raise AudioLoadError(
            source.path,
            f"truncated: header says {source.duration_s:.2f} s, "
            f"only {decoded / source.sample_rate:.2f} s decodable",
        )


def load(
    source: AudioProbe,
    *,
    sample_rate: int | None = None,
    mono: bool = True,
) -> np.ndarray:
    """Decode the whole file, downmixed and resampled block by block.

    Returns:
        float32 array, (samples,) when mono else (channels, samples).
    """
    if sample_rate is not None and sample_rate <= 0:
        raise ParameterError(f"sample_rate must be positive, got {sample_rate}")
    target = sample_rate or source.sample_rate
    channels = 1 if mono else source.channels
    resampler = (
        soxr.ResampleStream(source.sample_rate, target, channels, dtype="float32", quality="HQ")
        if target != source.sample_rate
        else None
    )
    parts = []
    for block in stream(source):
        if mono:
            block = block.mean(axis=1, keepdims=True)
        if resampler is not None:
            block = resampler.resample_chunk(block)
        parts.append(block)
    if resampler is not None:
        parts.append(resampler.resample_chunk(np.zeros((0, channels), np.float32), last=True))
    audio = np.concatenate(parts, axis=0) if parts else np.zeros((0, channels), np.float32)
    return np.ascontiguousarray(audio[:, 0] if mono else audio.T, dtype=np.float32)


def spans(length: int, size: int, *, minimum: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive spans of `size` covering `length`; a rest shorter than
    `minimum` joins the last span, so no span is shorter than `minimum` unless `length` is."""
    bounds = [(start, min(start + size, length)) for start in range(0, max(length, 1), size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < minimum:
        bounds[-2:] = [(bounds[-2][0], length)]
    return bounds


def _sf_blocks(source: AudioProbe, block_frames: int) -> Iterator[np.ndarray]:
    with sf.SoundFile(str(source.path)) as fh:
        while True:
            block = fh.read(block_frames, dtype="float32", always_2d=True)
            if not len(block):
                return
            yield block


def _ffmpeg_blocks(source: AudioProbe, block_frames: int) -> Iterator[np.ndarray]:
    cmd = [
        _ffmpeg("ffmpeg", source.path),
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(source.path),
        "-map",
        "0:a:0",
        "-f",
        "f32le",
        "-acodec",
        "pcm_f32le",
        "-ac",
        str(source.channels),
        "-ar",
        str(source.sample_rate),
        "-",
    ]
    bytes_per_block = block_frames * source.channels * 4
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        while chunk := proc.stdout.read(bytes_per_block):
            usable = len(chunk) - len(chunk) % (4 * source.channels)
            yield np.frombuffer(chunk[:usable], np.float32).reshape(-1, source.channels)
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise RuntimeError(err.strip().splitlines()[-1] if err.strip() else "ffmpeg failed")


def _ffprobe(path: Path) -> AudioProbe:
    cmd = [
        _ffmpeg("ffprobe", path),
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=codec_name,sample_rate,channels,duration:format=format_name,duration",
        "-of",
        "json",
        str(path),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise AudioLoadError(path, f"ffmpeg: {_first_line(out.stderr, path) or 'cannot read'}")
    meta = json.loads(out.stdout or "{}")
    streams = meta.get("streams") or []
    if not streams:
        raise AudioLoadError(path, "ffmpeg: no audio stream")
    st = streams[0]
    if st.get("codec_name", "unknown") in ("unknown", "none", ""):
        raise AudioLoadError(path, "ffmpeg: unsupported codec (no decoder for this stream)")
    duration = float(st.get("duration") or meta.get("format", {}).get("duration") or 0)
    rate, channels = int(st.get("sample_rate") or 0), int(st.get("channels") or 0)
    if rate <= 0 or channels <= 0 or duration <= 0:
        raise AudioLoadError(path, "ffmpeg: audio stream has no decodable samples")
    return AudioProbe(
        path,
        meta.get("format", {}).get("format_name", "unknown").split(",")[0],
        st.get("codec_name", "unknown"),
        "ffmpeg",
        rate,
        channels,
        round(duration * rate),
    )


def _ffmpeg(tool: str, path: Path) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise AudioLoadError(path, f"{tool}: not installed (Debian package 'ffmpeg')")
    return exe


def _check_wav_length(path: Path, samples: int) -> None:
    """Raise when a WAV's data chunk promises more bytes than the file holds.

    libsndfile silently shortens such files; a cut-off download should be reported instead.
    """
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            available = path.stat().st_size - (pos + 8)
            if 0 < size < 0xFFFFFFFF and available < size:
                raise AudioLoadError(
                    path,
                    f"truncated: data chunk declares {size} bytes, file holds {available}",
                )
            return
        pos += 8 + size + (size & 1)


def _first_line(value: object, path: Path | None = None) -> str:
    """The first line of a decoder's message, without the file name it repeats."""
    text = str(value).strip()
    if path is not None:
        text = re.sub(r"Error opening '.*?': ", "", text).replace(f"{path}: ", "")
    return text.splitlines()[0] if text else ""
