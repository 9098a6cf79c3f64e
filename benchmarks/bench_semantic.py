"""Speed of the semantic `review` node on a 4-minute song (goal: <= 10 s on this machine).

The song is `signals.synth_song` (drums over a chord cadence), stereo 44.1 kHz, as in
bench_analyze.py. The node runs through a compiled load -> review graph with the default
backends (musicnn + MiniLM) and a fresh POLYMUSE_HOME. Runs:

1. first use: loads musicnn and, to build the text index, MiniLM; encodes the song;
2. new process: model caches cleared (as in a new `polymuse analyze`), text index on disk;
3+. warm: models loaded; the encoding cache is emptied first, so the song is encoded again.

Times are the node function's own (backend set-up + decoding at the model rates + encoding
+ features + scoring); the first decode of the file is `load`'s.

    python benchmarks/bench_semantic.py [--minutes 4] [--runs 4]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from polymuse.nodes.load import load
from polymuse.nodes.review import review
from polymuse.runtime import Context
from polymuse.semantic_report import SemanticSection
from polymuse.settings import Settings
from polymuse.state import AnalysisState
from polymuse.tools.encoders import audio, text
from polymuse.tools.semantics import reviewer
from polymuse.tools.signals import synth_song

GOAL_SECONDS = 10.0
LABELS = {0: "first use", 1: "new process"}


class BenchState(AnalysisState, total=False):
    semantic: SemanticSection
    review_seconds: float


def _review(state: BenchState, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    update = review(state, runtime)
    return {**update, "review_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    graph = StateGraph(BenchState, context_schema=Context)
    graph.add_node("load", load)
    graph.add_node("review", _review)
    graph.add_edge(START, "load")
    graph.add_edge("load", "review")
    graph.add_edge("review", END)
    app = graph.compile()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        song = Path(tmp) / "bench song.wav"
        y = synth_song(bpm=112, tonic=62, seconds=args.minutes * 60)
        sf.write(song, np.stack([y, 0.8 * y], axis=1), 44100, subtype="PCM_16")
        settings = Settings(home=Path(tmp) / "home", device="cpu")
        for run in range(args.runs):
            shutil.rmtree(settings.cache_dir / "semantic" / "encodings", ignore_errors=True)
            if run == 1:
                reviewer._REVIEWERS.clear()
                audio._build.cache_clear()
                text._build.cache_clear()
            out = app.invoke({"path": str(song)}, context=Context(settings=settings))
            times.append(out["review_seconds"])
            print(
                f"run {run + 1} ({LABELS.get(run, 'warm')}): review node "
                f"{out['review_seconds']:.2f} s, of which analysis {out['semantic'].seconds:.2f}"
                f" s; {out['semantic'].windows} windows"
            )
    warm = times[2:] or times[-1:]
    print(
        f"{args.minutes:g}-min song: first use {times[0]:.2f} s, new process "
        f"{times[min(1, len(times) - 1)]:.2f} s, warm median {np.median(warm):.2f} s; "
        f"goal {GOAL_SECONDS:.0f} s"
    )


if __name__ == "__main__":
    main()
