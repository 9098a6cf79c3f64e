"""`load`: validate and probe the file, hash it, and scan its levels in one streaming pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from langgraph.runtime import Runtime

from polymuse.errors import AudioLoadError
from polymuse.report import BasicFacts, SourceInfo
from polymuse.runtime import Context
from polymuse.state import AnalysisState
from polymuse.tools import audio

SILENCE_DBFS = -80.0
CLIP_LEVEL = 0.999


def load(state: AnalysisState, runtime: Runtime[Context]) -> dict:
    """Probe, hash and level-scan `state["path"]`; raise `AudioLoadError` for unusable input."""
    path = str(Path(state["path"]).expanduser())
    source = runtime.context.audio.probe(path)
    if source.duration_s < audio.MIN_DURATION_S:
        raise AudioLoadError(
            path,
            f"audio is {source.duration_s:.2f} s long; at least {audio.MIN_DURATION_S:g} s needed",
        )
    facts = scan_levels(source)
    flags = []
    if facts.silent:
        flags.append("silent")
    if facts.clipping_ratio > 1e-4:
        flags.append("clipping")
    p = Path(path)
    return {
        "source": SourceInfo(
            path=str(p.resolve()),
            file_name=p.name,
            content_hash=audio.content_hash(p),
            size_bytes=p.stat().st_size,
            container=source.container,
            codec=source.codec,
            decoder=source.decoder,
            sample_rate=source.sample_rate,
            channels=source.channels,
            frames=source.frames,
            duration_s=round(source.duration_s, 3),
        ),
        "facts": facts,
        "flags": flags,
    }


def scan_levels(source: audio.AudioProbe) -> BasicFacts:
    """Peak, RMS, clipping and DC offset over all channels, block by block."""
    peak = total = sq = 0.0
    clipped = count = 0
    for block in audio.stream(source):
        block = block.astype(np.float64)
        peak = max(peak, float(np.abs(block).max(initial=0.0)))
        total += float(block.sum())
        sq += float(np.square(block).sum())
        clipped += int(np.count_nonzero(np.abs(block) >= CLIP_LEVEL))
        count += block.size
    if count == 0:
        raise AudioLoadError(source.path, "no audio samples could be decoded")
    rms = (sq / count) ** 0.5
    peak_db = 20 * np.log10(peak) if peak > 0 else None
    return BasicFacts(
        peak_dbfs=None if peak_db is None else round(float(peak_db), 2),
        rms_dbfs=round(float(20 * np.log10(rms)), 2) if rms > 0 else None,
        clipped_samples=clipped,
        clipping_ratio=round(clipped / count, 6),
        dc_offset=round(total / count, 6),
        silent=peak_db is None or peak_db < SILENCE_DBFS,
    )
