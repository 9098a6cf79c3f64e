"""Speed of `analyze` on a 4-minute stereo 44.1 kHz song: load + features + report, then all nodes.

Goal (issue 2, load + features + report): <= 30 s wall time and <= 3 GB peak RSS on a 2-core
machine. Each run is a fresh `python -m polymuse analyze` process, so start-up and model
loading count.

    python benchmarks/bench_analyze.py [--minutes 4] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from polymuse.tools.signals import synth_song

GOAL_SECONDS, GOAL_RSS_GB = 30.0, 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        song = Path(tmp) / "bench song.wav"
        y = synth_song(bpm=112, tonic=62, seconds=args.minutes * 60)
        sf.write(song, np.stack([y, 0.8 * y], axis=1), 44100, subtype="PCM_16")
        for label, selection in (
            ("load + features + report", ["--only", "features"]),
            ("all nodes", []),
        ):
            walls, peak = [], 0.0
            for _ in range(args.runs):
                wall, rss = _run([str(song), "-o", tmp, *selection])
                walls.append(wall)
                peak = max(peak, rss)
            wall = float(np.median(walls))
            print(
                f"analyze {args.minutes:g} min stereo 44.1 kHz, {label}: wall {wall:.1f} s "
                f"(median of {args.runs}), peak RSS {peak:.2f} GB"
            )
            if selection:
                print(
                    f"  vs goal: time {wall / GOAL_SECONDS:.2f} of {GOAL_SECONDS:.0f} s, "
                    f"memory {peak / GOAL_RSS_GB:.2f} of {GOAL_RSS_GB:.0f} GB"
                )


def _run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one `polymuse analyze` process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "polymuse", "analyze", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(proc.stderr.read().decode())
    return wall, usage.ru_maxrss / 1024**2


if __name__ == "__main__":
    main()
