"""Speed of `analyze` (load + features + report) on a 4-minute stereo 44.1 kHz song.

Goal (issue 2): <= 30 s wall time and <= 3 GB peak RSS on a 2-core machine.
Each run is a fresh `python -m polymuse analyze` process, so start-up and model loading count.

    python benchmarks/bench_analyze.py [--minutes 4] [--runs 1]
"""

from __future__ import annotations

import argparse
import resource
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
        walls = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "polymuse", "analyze", str(song), "-o", tmp],
                check=True, capture_output=True,
            )
            walls.append(time.perf_counter() - started)
        rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    wall = float(np.median(walls))
    print(f"analyze {args.minutes:g} min stereo 44.1 kHz: wall {wall:.1f} s (median of {args.runs})")
    print(f"  goal {GOAL_SECONDS:.0f} s -> ratio {wall / GOAL_SECONDS:.2f} of the budget")
    print(f"  peak RSS {rss_gb:.2f} GB; goal {GOAL_RSS_GB:.0f} GB -> ratio {rss_gb / GOAL_RSS_GB:.2f}")


if __name__ == "__main__":
    main()
