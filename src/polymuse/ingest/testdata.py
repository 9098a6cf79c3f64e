"""Generated audio folders for tests and benchmarks: short songs in mixed formats, plus the
corrupt files an ingest must survive (the catalogue acceptance folder)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

FORMATS = ("wav", "flac", "ogg", "mp3", "aiff", "m4a")
_SF_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "aiff": ("AIFF", "PCM_16"),
}
CORRUPT_KINDS = {
    "empty.wav": "empty file",
    "readme.wav": "text file named .wav",
    "cut.mp3": "truncated mp3",
    "noise.flac": "random bytes named .flac",
    "nothing.ogg": "zero-length .ogg",
    "cut.wav": "truncated wav",
}


@dataclass
class Corpus:
    """A generated folder: valid files (with their intended song) and corrupt ones."""

    root: Path
    valid: list[Path] = field(default_factory=list)
    corrupt: list[Path] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(sf.info(p).duration for p in self.valid if p.suffix != ".m4a") + sum(
            _ffprobe_seconds(p) for p in self.valid if p.suffix == ".m4a"
        )


def render_song(seed: int, *, seconds: float = 6.0, sample_rate: int = 22050) -> np.ndarray:
    """A distinct little piece per seed: random notes with harmonics, decay and some noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    y = np.zeros(n, dtype=np.float64)
    note_len = int(rng.uniform(0.15, 0.4) * sample_rate)
    t = np.arange(note_len) / sample_rate
    envelope = np.exp(-t * rng.uniform(2.0, 6.0))
    for start in range(0, n, note_len):
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5)) * envelope
        stop = min(n, start + note_len)
        y[start:stop] += tone[: stop - start]
    y += 0.02 * rng.standard_normal(n)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def write_audio(
    path: Path, y: np.ndarray, sample_rate: int, *, tags: dict[str, str] | None = None
) -> Path:
    """Write mono audio by the file's suffix (m4a through ffmpeg) and set text tags."""
    fmt = path.suffix.lstrip(".").lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "m4a":
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise RuntimeError("writing m4a needs ffmpeg")
        wav = path.with_suffix(".tmp.wav")
        sf.write(wav, y, sample_rate, subtype="PCM_16")
        subprocess.run(
            [ffmpeg, "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", "-b:a", "96k", str(path)],
            check=True,
        )
        wav.unlink()
    else:
        container, subtype = _SF_FORMATS[fmt]
        sf.write(path, y, sample_rate, format=container, subtype=subtype)
    if tags:
        import mutagen

        tagged = mutagen.File(str(path), easy=True)
        if tagged is not None:
            if tagged.tags is None:
                tagged.add_tags()
            for key, value in tags.items():
                tagged[key] = value
            tagged.save()
    return path


def write_corrupt(folder: Path, *, seed: int = 0) -> list[Path]:
    """The bad files of the acceptance test, one of each kind in `CORRUPT_KINDS`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "readme.wav").write_text("These are my favourite songs.\n" * 20)
    full = write_audio(folder / "full.tmp.mp3", render_song(seed, seconds=8.0), 22050)
    data = full.read_bytes()
    (folder / "cut.mp3").write_bytes(data[: len(data) // 2])
    full.unlink()
    (folder / "noise.flac").write_bytes(rng.bytes(40_000))
    (folder / "nothing.ogg").write_bytes(b"")
    full = write_audio(folder / "full.tmp.wav", render_song(seed + 1, seconds=8.0), 22050)
    data = full.read_bytes()
    (folder / "cut.wav").write_bytes(data[: len(data) // 3])
    full.unlink()
    return [folder / name for name in CORRUPT_KINDS]


def write_corpus(
    root: Path,
    *,
    n_valid: int = 68,
    seconds: float = 6.0,
    seed: int = 0,
    formats: tuple[str, ...] = FORMATS,
    corrupt: bool = True,
) -> Corpus:
    """`n_valid` distinct songs cycling through `formats` (a third tagged, a third named
    `Artist - Title`, a third plain), plus the corrupt files, under `root`."""
    if "m4a" in formats and shutil.which("ffmpeg") is None:
        formats = tuple(f for f in formats if f != "m4a")
    corpus = Corpus(root)
    for i in range(n_valid):
        fmt = formats[i % len(formats)]
        folder = root / f"album{i % 4}"
        y = render_song(seed * 10_000 + i, seconds=seconds)
        artist, title = f"Artist {i % 7}", f"Song {i:03d}"
        if i % 3 == 0 and fmt not in ("wav", "aiff"):
            path = write_audio(
                folder / f"track{i:03d}.{fmt}",
                y,
                22050,
                tags={"artist": artist, "title": title, "album": f"Album {i % 4}"},
            )
        elif i % 3 == 1:
            path = write_audio(folder / f"{artist} - {title}.{fmt}", y, 22050)
        else:
            path = write_audio(folder / f"untitled {i:03d}.{fmt}", y, 22050)
        corpus.valid.append(path)
    if corrupt:
        corpus.corrupt = write_corrupt(root / "bad", seed=seed)
    return corpus


def _ffprobe_seconds(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return float(out.stdout.strip())
    except ValueError:
        return 0.0
