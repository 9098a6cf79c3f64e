"""Speed and pitch robustness on music21 renders through FluidSynth (slow: renders first)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from polymuse.evaluation import distortions
from polymuse.recognition import MemoryIndex, Recognizer, SongRef
from polymuse.tools import corpus, fingerprint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth"),
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[np.ndarray, int]]:
    pieces = corpus.key_set(6, tmp_path_factory.mktemp("chorales"), seed=3, sample_rate=22050)
    songs = []
    for piece in pieces:
        y, sr = sf.read(piece.audio, dtype="float32")
        songs.append((y.mean(axis=1), sr))
    return songs


@pytest.mark.parametrize(
    "condition",
    [
        "speed -5 %",
        "speed +5 %",
        "speed -2 %",
        "speed +2 %",
        "pitch -1 st",
        "pitch +1 st",
        "tempo +5 %",
        "mp3 64k",
        "white 10 dB",
        "babble 10 dB",
    ],
)
def test_rendered_chorales_survive(rendered, condition: str, tmp_path) -> None:
    index = MemoryIndex()
    for i, (y, sr) in enumerate(rendered):
        index.add(i, fingerprint.reference(y, sr), song=SongRef(i, f"chorale {i}"))
    recognizer = Recognizer(index)
    cond = distortions.condition_named(condition)
    if cond.kind in ("pitch", "tempo") and not distortions.has_rubberband():
        pytest.skip("ffmpeg lacks the rubberband filter")
    babble, _ = distortions.babble_track(tmp_path, 22050)
    rng = np.random.default_rng(0)
    right = 0
    for i, (y, sr) in enumerate(rendered):
        start = 8.0
        clip = y[int(start * sr) : int((start + 5.0 * cond.ratio) * sr)]
        query = distortions.distort(clip, sr, cond, rng, babble=babble)
        answer = recognizer.identify(query, sr)
        # Robustness of fingerprint and matcher: the song ranked first, whatever the
        # confidence threshold (the calibrated acceptance is what `eval recognition` measures).
        best = answer.match or answer.alternatives[0]
        right += best.song_id == i
    assert right >= len(rendered) - 1
