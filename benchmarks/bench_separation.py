"""Speed and memory of the `dsp` separator.

Goal (issue 5): a 4-minute stereo 44.1 kHz song separated in <= 20 s on a 2-core machine;
peak RSS reported (goal < 4 GB) for a 60-minute file written to stem WAVs through the same
streaming path as `polymuse separate`. Each measurement runs in a fresh process, so the peak
RSS is that run's alone; the timed part excludes start-up and numba's (cached) compilation,
which a warm-up second of audio pays first.

    python benchmarks/bench_separation.py [--minutes 4] [--long-minutes 60] [--separator dsp]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from polymuse.tools.signals import synth_song

GOAL_SECONDS, GOAL_RSS_GB = 20.0, 4.0
SR = 44100


def write_song(path: Path, minutes: float) -> None:
    """A stereo 16-bit WAV of `minutes`, written in 4-minute pieces to keep this process small."""
    piece = synth_song(bpm=112, tonic=62, seconds=min(minutes, 4.0) * 60)
    stereo = np.stack([piece, 0.8 * piece], axis=1)
    total = int(minutes * 60 * SR)
    with sf.SoundFile(path, "w", SR, 2, subtype="PCM_16") as fh:
        written = 0
        while written < total:
            block = stereo[: total - written]
            fh.write(block)
            written += len(block)


def run_in_memory(path: str, separator: str) -> dict:
    """Child: separate the whole array in memory; time it."""
    from polymuse.tools.separation import build_separator

    y, _ = sf.read(path, dtype="float32", always_2d=True)
    sep = build_separator(separator)
    sep.separate(y[:SR].T)  # warm-up: numba and torch initialisation
    started, cpu = time.perf_counter(), time.process_time()
    sep.separate(y.T)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "audio_s": len(y) / SR,
    }


def run_to_files(path: str, separator: str, out: str) -> dict:
    """Child: stream the file to stem WAVs as `polymuse separate` does."""
    from polymuse.settings import Settings
    from polymuse.tools.separation.stems import separate_file

    settings = Settings(home=Path(out) / "home", separator=separator)
    started = time.perf_counter()
    result = separate_file(path, Path(out) / "stems", settings=settings)
    return {"seconds": round(time.perf_counter() - started, 2), "stems": len(result.stems)}


def child(args: list[str]) -> dict:
    """Run one measurement in a fresh interpreter; add its peak RSS."""
    cmd = [sys.executable, __file__, "--child", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--long-minutes", type=float, default=60.0, help="0 skips the long run")
    parser.add_argument("--separator", default="dsp")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *rest = args.child
        result = run_in_memory(*rest) if mode == "memory" else run_to_files(*rest)
        result["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        song = Path(tmp) / "song.wav"
        write_song(song, args.minutes)
        short = child(["memory", str(song), args.separator])
        verdict = "ok" if short["seconds"] <= GOAL_SECONDS else "SLOWER than the goal"
        print(
            f"{args.separator}: {args.minutes:g} min stereo separated in {short['seconds']:.1f} s "
            f"({short['audio_s'] / short['seconds']:.1f}x real time; goal <= {GOAL_SECONDS:g} s: "
            f"{verdict}); {short['cpu_seconds']:.1f} s of CPU time; "
            f"peak RSS {short['peak_rss_gb']:.2f} GB; load average {os.getloadavg()[0]:.1f}"
        )
        if args.long_minutes > 0:
            song.unlink()
            write_song(song, args.long_minutes)
            long = child(["files", str(song), args.separator, tmp])
            verdict = "ok" if long["peak_rss_gb"] < GOAL_RSS_GB else "OVER the goal"
            print(
                f"{args.separator}: {args.long_minutes:g} min file to stem WAVs in "
                f"{long['seconds']:.0f} s; peak RSS {long['peak_rss_gb']:.2f} GB "
                f"(goal < {GOAL_RSS_GB:g} GB: {verdict})"
            )


if __name__ == "__main__":
    main()
