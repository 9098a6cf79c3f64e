"""Separate an audio file into stem WAVs, streaming, with a content-hash cache.

The file is decoded block by block, resampled to 44.1 kHz, streamed through a separator and
written as `vocals.wav drums.wav bass.wav other.wav instrumental.wav` (instrumental = mix -
vocals), so memory stays flat for hour-long files. Stems are first written to
`<home>/cache/stems/<content hash>-<separator key>/` and then linked (or copied) into the
requested folder; a later run with the same file and the same separator configuration reuses
them without separating again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from polymuse.errors import ParameterError
from polymuse.report import Separation, StemInfo
from polymuse.settings import Settings
from polymuse.tools import audio, loudness
from polymuse.tools.separation import SAMPLE_RATE, SEPARATORS, STEMS, build_separator
from polymuse.tools.separation.base import _Fifo, to_stereo_or_mono

CACHE_VERSION = 1
FILES = (*STEMS, "instrumental")
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")


def stem_cache_root(settings: Settings) -> Path:
    return Path(settings.home) / "cache" / "stems"


def separator_identity(name: str, settings: Settings | None) -> str:
    """The cache identity of a configured separator, without loading its weights."""
    import importlib

    from polymuse.tools.separation import ALIASES

    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in SEPARATORS:
        build_separator(name, settings)  # raises the error listing the valid names
    module, cls, _ = SEPARATORS[key]
    return getattr(importlib.import_module(module), cls).identity(settings)


def separate_file(
    path: str | Path,
    out_dir: str | Path,
    *,
    settings: Settings,
    separator: str | None = None,
    content_hash: str | None = None,
) -> Separation:
    """Write the stems of `path` into `out_dir`; reuse the cache when it has them.

    Args:
        path: Any audio file `polymuse.tools.audio` decodes.
        out_dir: Folder for the stem WAVs (created).
        settings: Process settings: cache home, device, backend paths, `stem_subtype`.
        separator: Registry name; default `settings.separator`.
        content_hash: sha256 of the file, when the caller has it already.

    Returns:
        The stems written, with loudness and share of the mix, and the backend's identity.

    Raises:
        AudioLoadError: The file cannot be decoded.
        ParameterError: Unknown separator (the message lists the valid ones).
        ModelUnavailableError: The backend's package or weights are missing.
    """
    name = separator or settings.separator
    subtype = str(getattr(settings, "stem_subtype", None) or "PCM_16").upper()
    if subtype not in SUBTYPES:
        raise ParameterError(f"stem_subtype={subtype!r}; valid: {', '.join(SUBTYPES)}")
    source = audio.probe(path)
    digest = content_hash or audio.content_hash(source.path)
    identity = separator_identity(name, settings)
    key = hashlib.sha256(f"{CACHE_VERSION}|{digest}|{identity}|{subtype}".encode()).hexdigest()
    entry = stem_cache_root(settings) / f"{digest[:16]}-{key[:16]}"
    record = entry / "separation.json"
    cached = record.is_file() and all((entry / f"{s}.wav").is_file() for s in FILES)
    if cached:
        result = Separation.model_validate_json(record.read_text(encoding="utf-8"))
        result = result.model_copy(update={"cached": True, "seconds": 0.0})
    else:
        sep = build_separator(name, settings)
        try:
            result = _write_stems(source, sep, entry, subtype=subtype)
        finally:
            sep.close()
    return _publish(result, entry, Path(out_dir))


def _write_stems(source: audio.AudioProbe, sep, entry: Path, *, subtype: str) -> Separation:
    """Stream the separator over the file into a fresh cache entry."""
    started = time.perf_counter()
    partial = entry.with_name(f".{entry.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    channels = min(source.channels, 2)
    writers = {
        s: sf.SoundFile(partial / f"{s}.wav", "w", SAMPLE_RATE, channels, subtype=subtype)
        for s in FILES
    }
    energy = dict.fromkeys(FILES, 0.0)
    clipped = dict.fromkeys(FILES, 0)
    mix = _Fifo()
    try:
        for stems in sep.stream(_blocks_44k(source, mix)):
            n = stems["vocals"].shape[-1]
            stems = {**stems, "instrumental": mix.pop(n) - stems["vocals"]}
            for s in FILES:
                y = stems[s]
                energy[s] += float(np.square(y, dtype=np.float64).sum())
                if subtype != "FLOAT":
                    over = np.abs(y) > 1.0
                    clipped[s] += int(over.sum())
                    y = np.clip(y, -1.0, 1.0)
                writers[s].write(np.ascontiguousarray(y.T))
    finally:
        for w in writers.values():
            w.close()
    seconds = round(time.perf_counter() - started, 3)
    total = sum(energy[s] for s in STEMS) or 1.0
    infos = []
    for s in FILES:
        stem_path = partial / f"{s}.wav"
        measured = loudness.measure_loudness(audio.stream(audio.probe(stem_path)), sr=SAMPLE_RATE)
        infos.append(
            StemInfo(
                name=s,
                path=f"{s}.wav",
                loudness_lufs=measured.integrated_lufs,
                true_peak_dbtp=measured.true_peak_dbtp,
                energy_share=round(energy[s] / total, 4),
                clipped_samples=clipped[s],
                produced_by=sep.produced_by(s) if s in STEMS else f"mix - vocals ({sep.name})",
            )
        )
    result = Separation(
        backend=sep.name,
        model=sep.model,
        sample_rate=SAMPLE_RATE,
        folder=str(entry),
        stems=infos,
        seconds=seconds,
        notes=list(sep.notes),
    )
    (partial / "separation.json").write_text(result.model_dump_json(indent=1), encoding="utf-8")
    shutil.rmtree(entry, ignore_errors=True)
    os.replace(partial, entry)
    return result


def _blocks_44k(source: audio.AudioProbe, mix: _Fifo):
    """Decoded (channels, n) float32 blocks at 44.1 kHz, each also pushed onto `mix`."""
    resampler = None
    channels = 0
    for block in audio.stream(source):
        y = to_stereo_or_mono(np.ascontiguousarray(block.T))
        if source.sample_rate != SAMPLE_RATE:
            if resampler is None:
                channels = y.shape[0]
                resampler = soxr.ResampleStream(
                    source.sample_rate, SAMPLE_RATE, channels, dtype="float32", quality="HQ"
                )
            y = resampler.resample_chunk(np.ascontiguousarray(y.T)).T
        mix.push(y)
        yield y
    if resampler is not None:
        y = resampler.resample_chunk(np.zeros((0, channels), np.float32), last=True).T
        mix.push(y)
        yield y


def _publish(result: Separation, entry: Path, out_dir: Path) -> Separation:
    """Hard-link (or copy) the cached stems into `out_dir`; paths in the result point there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = []
    for info in result.stems:
        src, dst = entry / Path(info.path).name, out_dir / Path(info.path).name
        if not (dst.exists() and os.path.samefile(src, dst)):
            dst.unlink(missing_ok=True)
            try:
                os.link(src, dst)
            except OSError:  # another file system: copy
                shutil.copyfile(src, dst)
        stems.append(info.model_copy(update={"path": str(dst)}))
    (out_dir / "separation.json").write_text(
        json.dumps(
            result.model_dump(mode="json") | {"stems": [s.model_dump() for s in stems]}, indent=1
        ),
        encoding="utf-8",
    )
    return result.model_copy(update={"stems": stems, "folder": str(out_dir)})
