"""Recognition on generated songs: identity, offset, rejection, timeline, speed and pitch."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soxr

from polymuse.errors import ParameterError
from polymuse.evaluation import distortions
from polymuse.ingest.testdata import render_song
from polymuse.recognition import (
    Calibration,
    MemoryIndex,
    Recognizer,
    SongRef,
    calibration,
    constellation,
    matching,
    service,
)
from polymuse.recognition.calibration import Evidence
from polymuse.recognition.constellation import PeakTable
from polymuse.recognition.extractor import LandmarkExtractor
from polymuse.recognition.index import join
from polymuse.recognition.listening import listen
from polymuse.recognition.models import SongMatch
from polymuse.recognition.payload import decode_peaks
from polymuse.recognition.recognizer import _rank, _runs
from polymuse.tools import fingerprint

SR = 22050
CATALOGUE = range(1, 9)
SECONDS = 30.0


@pytest.fixture(scope="module")
def songs() -> dict[int, np.ndarray]:
    return {seed: render_song(seed, seconds=SECONDS, sample_rate=SR) for seed in range(1, 11)}


@pytest.fixture(scope="module")
def index(songs: dict[int, np.ndarray]) -> MemoryIndex:
    index = MemoryIndex()
    for seed in CATALOGUE:
        index.add(seed, fingerprint.reference(songs[seed], SR), song=SongRef(seed, f"song {seed}"))
    return index


@pytest.fixture(scope="module")
def recognizer(index: MemoryIndex) -> Recognizer:
    return Recognizer(index)


@pytest.mark.parametrize("seed, start", [(1, 0.0), (3, 7.31), (5, 12.5), (8, 24.02)])
def test_clean_clip_is_found_with_its_offset(
    recognizer: Recognizer, songs: dict[int, np.ndarray], seed: int, start: float
) -> None:
    clip = songs[seed][int(start * SR) : int((start + 5.0) * SR)]
    answer = recognizer.identify(clip, SR)
    assert answer.status == "match" and answer.match is not None
    assert answer.match.song_id == seed
    assert abs(answer.match.reference_offset_s - start) <= 0.05
    assert abs(answer.match.tempo_ratio - 1.0) < 0.01
    assert answer.match.confidence >= 0.9


def test_clip_from_another_song_is_unknown(
    recognizer: Recognizer, songs: dict[int, np.ndarray]
) -> None:
    for seed in (9, 10):
        for start in (2.0, 14.0):
            clip = songs[seed][int(start * SR) : int((start + 5.0) * SR)]
            assert recognizer.identify(clip, SR).status == "unknown"


def test_noise_is_unknown(recognizer: Recognizer) -> None:
    noise = np.random.default_rng(0).standard_normal(5 * SR).astype(np.float32) * 0.1
    assert recognizer.identify(noise, SR).status == "unknown"


def test_noisy_clip_is_still_found(recognizer: Recognizer, songs: dict[int, np.ndarray]) -> None:
    clip = songs[4][10 * SR : 15 * SR]
    noise = np.random.default_rng(1).standard_normal(len(clip)).astype(np.float32)
    noisy = clip + noise * np.sqrt(np.mean(clip**2) / 10 ** (5 / 10))
    answer = recognizer.identify(noisy, SR)
    assert answer.match is not None and answer.match.song_id == 4


@pytest.mark.parametrize("speed", [0.95, 0.98, 1.02, 1.05])
def test_speed_change_is_found_with_its_ratio(
    recognizer: Recognizer, songs: dict[int, np.ndarray], speed: float
) -> None:
    start = 8.0
    source = songs[6][int(start * SR) : int((start + 5.0 * speed) * SR)]
    clip = soxr.resample(source, SR, SR / speed)
    answer = recognizer.identify(clip, SR)
    assert answer.match is not None and answer.match.song_id == 6
    assert abs(answer.match.tempo_ratio - speed) < 0.01
    assert abs(answer.match.reference_offset_s - start) <= 0.05
    assert abs(answer.match.pitch_shift - 12 * np.log2(speed)) < 0.2


@pytest.mark.skipif(not distortions.has_rubberband(), reason="needs ffmpeg's rubberband filter")
@pytest.mark.parametrize("semitones", [-1, 1])
def test_pitch_shift_is_found(
    recognizer: Recognizer, songs: dict[int, np.ndarray], semitones: int
) -> None:
    clip = songs[2][9 * SR : 14 * SR]
    shifted = distortions.distort(
        clip, SR, distortions.Condition("pitch", "pitch", semitones), np.random.default_rng(0)
    )
    answer = recognizer.identify(shifted, SR)
    assert answer.match is not None and answer.match.song_id == 2
    assert abs(answer.match.pitch_shift - semitones) < 0.2
    assert abs(answer.match.tempo_ratio - 1.0) < 0.01


def test_timeline_of_two_concatenated_songs(
    recognizer: Recognizer, songs: dict[int, np.ndarray]
) -> None:
    first, second = songs[3][5 * SR : 25 * SR], songs[7][2 * SR : 22 * SR]
    recording = np.concatenate([first, second])
    found = recognizer.timeline(recording, SR, window_s=6.0, hop_s=3.0)
    assert [s.match.song_id for s in found.segments] == [3, 7]
    a, b = found.segments
    assert a.start_s < 2.0 and 17.0 < a.end_s <= 20.5
    assert 19.5 <= b.start_s < 23.0 and b.end_s > 37.0
    assert abs(a.match.reference_offset_s - 5.0) <= 0.05
    assert abs(b.match.reference_offset_s - (2.0 - 20.0)) <= 0.05


def test_timeline_windows_search_the_constellation_too(
    recognizer: Recognizer, songs: dict[int, np.ndarray]
) -> None:
    """Under speech-like noise 9 dB louder than the music, the first song's windows keep too
    few hashes; their constellation search still finds it, at its offset."""
    recording = np.concatenate([songs[3][5 * SR : 25 * SR], songs[7][2 * SR : 22 * SR]])
    noise = _glides(len(recording) / SR, 4)[: len(recording)]
    noise *= np.sqrt(np.mean(recording**2) / np.mean(noise**2)) * 10 ** (9 / 20)
    found = recognizer.timeline(recording + noise, SR, window_s=6.0, hop_s=3.0)
    first = found.segments[0].match
    assert first.song_id == 3 and abs(first.reference_offset_s - 5.0) <= 0.05
    assert [s.match.song_id for s in found.segments] == [3, 7]


def test_timeline_rejects_bad_windows(recognizer: Recognizer) -> None:
    with pytest.raises(ParameterError):
        recognizer.timeline(np.zeros(SR, np.float32), SR, window_s=2.0, hop_s=3.0)


def test_index_round_trips_through_a_file(index: MemoryIndex, tmp_path, songs) -> None:
    path = index.save(tmp_path / "index.npz")
    loaded = MemoryIndex.load(path)
    assert len(loaded) == len(index) and loaded.labels == index.labels
    clip = songs[5][3 * SR : 8 * SR]
    assert Recognizer(loaded).identify(clip, SR).match.song_id == 5


def _verified(index: MemoryIndex, song: int, clip: np.ndarray) -> matching.Verification:
    """Verification of `song`'s best line through the clip's hits."""
    heard = listen(clip, SR)
    hits = join(heard.query.hashes, index.postings(heard.query.hashes))
    candidate = next(c for c in matching.vote(heard.query, hits, top=20) if c.asset_id == song)
    return matching.verify(candidate, index.stored_peaks[song], heard)


def test_masked_peaks_are_not_absent(index: MemoryIndex, songs: dict[int, np.ndarray]) -> None:
    """Noise hides reference peaks (fewer found) without making the query quiet there."""
    clip = songs[6][5 * SR : 10 * SR]
    noise = np.random.default_rng(2).standard_normal(len(clip)).astype(np.float32)
    noisy = clip + noise * np.sqrt(np.mean(clip**2))  # 0 dB SNR
    clean, masked = _verified(index, 6, clip), _verified(index, 6, noisy)
    assert masked.fraction < clean.fraction
    assert clean.absence <= 0.05 and masked.absence <= 0.05
    # The noise hides the notes, but they still raise the clip above its usual level.
    assert masked.raised > 0.5 * masked.checked


def test_missing_notes_are_absent(index: MemoryIndex, songs: dict[int, np.ndarray]) -> None:
    """Song 6's peaks where the query plays song 2's notes: absent, not masked."""
    clip = songs[6][5 * SR : 10 * SR]
    other = songs[2][5 * SR : 10 * SR]
    heard = listen(other, SR)
    candidate = matching.Candidate(6, 10, 10, 1.0, 5.0, 0.0, 5.0)
    verdict = matching.verify(candidate, index.stored_peaks[6], heard)
    assert verdict.checked > 20 and verdict.absence > 0.2
    right = _verified(index, 6, clip)
    assert right.absence < verdict.absence
    assert right.depth_db < 1.0 < 5.0 < verdict.depth_db
    assert verdict.steady_explained < verdict.steady / 2
    assert right.steady_explained > 0.9 * right.steady > 0
    assert verdict.raised_share < 0.8 < right.raised_share


def test_refine_moves_a_line_off_in_tempo_onto_the_found_peaks(
    index: MemoryIndex, songs: dict[int, np.ndarray]
) -> None:
    """A vote's line 3 % off in tempo loses the far end of the clip; the line its found peaks
    fit recovers them and the offset."""
    heard = listen(songs[4][10 * SR : 15 * SR], SR)
    true = matching.Candidate(4, 10, 10, 1.0, 10.0, 0.0, 5.0)
    off = replace(true, ratio=1.03, offset_s=10.0 - 0.03 * 1.0)  # right at 1 s, 0.12 s off at 5 s
    peaks = index.stored_peaks[4]
    best = matching.verify(true, peaks, heard)
    before = matching.verify(off, peaks, heard)
    moved, after = matching.refine(off, peaks, heard)
    assert before.found < 0.8 * best.found
    assert after.found >= 0.95 * best.found
    assert moved.ratio == pytest.approx(1.0, abs=0.003)
    assert moved.offset_s == pytest.approx(10.0, abs=0.03)
    # A line already right stays.
    assert matching.refine(true, peaks, heard)[1].found == best.found


def _glides(seconds: float, seed: int) -> np.ndarray:
    """Speech-like noise: harmonic tones whose pitch glides, in short bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for start in np.arange(0.0, seconds, 0.25):
        f0 = rng.uniform(120, 250) * 2 ** (rng.uniform(-4, 4) / 12 * (t - start) / 0.25)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        burst = np.exp(-0.5 * ((t - start - 0.12) / 0.05) ** 2)
        out += burst * sum(np.sin(k * phase) / k for k in range(1, 12))
    return out.astype(np.float32)


def test_steady_peaks_are_held_notes_not_glides() -> None:
    t = np.arange(2 * SR) / SR
    held = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    heard = listen(held + _glides(2.0, 0), SR)
    hz = 125.0 * 2 ** (heard.query.peak_p / (12 * fingerprint.PITCH_STEPS))
    inner = (heard.query.peak_t > 10) & (heard.query.peak_t < heard.query.peak_t.max() - 10)
    at_note = inner & (np.abs(hz - 440) < 10)
    assert at_note.any() and heard.steady[at_note].all()
    assert heard.steady[inner & ~at_note].mean() < 0.2


def _varied(base: Evidence, name: str, values: np.ndarray) -> list[Evidence]:
    return [replace(base, **{name: v}) for v in values]


def test_calibration_round_trip_and_fit() -> None:
    rng = np.random.default_rng(0)
    right = [Evidence(int(f), 2, f / 60, 30, 0.8, 0.0, 1.0, 9, 8) for f in rng.integers(20, 60, 50)]
    wrong = [Evidence(int(f), 3, f / 60, 3, 0.2, 0.3, 9.0, 9, 2) for f in rng.integers(0, 10, 50)]
    model = calibration.fit(right + wrong, np.array([1] * 50 + [0] * 50))
    assert len(model.knots) == len(calibration.FEATURES)
    assert model.confidence(right[0]) > 0.9 > 0.1 > model.confidence(wrong[0])
    # Monotone: more peaks found never lowers the confidence, more depth never raises it.
    up = model.confidences(_varied(wrong[0], "found", np.arange(0, 80)))
    down = model.confidences(_varied(right[0], "depth_db", np.linspace(0, 30, 61)))
    assert np.all(np.diff(up) >= 0) and np.all(np.diff(down) <= 0)
    assert Calibration.from_json(model.to_json()) == model


def test_a_line_off_the_querys_pitch_or_tempo_lowers_the_confidence_either_way() -> None:
    """Look-alikes match at any pitch shift and tempo ratio of the search, right songs mostly at
    none: the fitted model reads the distance from none, whichever the direction."""
    rng = np.random.default_rng(2)
    right = [Evidence(30, 10, 0.5, 20, 0.5, pitch_shift=s) for s in rng.normal(0, 0.05, 100)]
    wrong = [Evidence(30, 10, 0.5, 20, 0.5, pitch_shift=s) for s in rng.uniform(-0.9, 0.9, 100)]
    model = calibration.fit(right + wrong, np.array([1] * 100 + [0] * 100))
    sweep = model.confidences(_varied(right[0], "pitch_shift", np.linspace(0, 0.9, 10)))
    assert np.all(np.diff(sweep) <= 0) and sweep[0] > 0.8 > 0.2 > sweep[-1]
    flipped = [replace(right[0], pitch_shift=-0.5), replace(right[0], pitch_shift=0.5)]
    assert np.ptp(model.confidences(flipped)) == 0.0
    tempo = [replace(right[0], tempo_ratio=1.05), replace(right[0], tempo_ratio=1 / 1.05)]
    assert np.allclose(*calibration.features(tempo))


def test_beyond_its_fitting_data_the_model_is_never_surer() -> None:
    """No rival at all (a catalogue of one song) reads like the fewest rival peaks fitted, and
    more peaks found than any fitted clip like the most; fewer found still lower the confidence."""
    knots = ((1.0, 2.0, 3.0),) * len(calibration.FEATURES)
    signs = [s for s in calibration.SIGNS for _ in range(4)]
    model = Calibration(weights=(0.0, *signs), knots=knots)
    base = Evidence(
        found=int(np.expm1(2.5)), second_found=int(np.expm1(1.5)), fraction=2.5, score=10
    )
    # log1p: 1 rival peak lies below the first knot, 20 peaks found above the last.
    no_rival = _varied(base, "second_found", np.array([1, 0]))
    many = _varied(base, "found", np.array([20, 500]))
    few = _varied(base, "found", np.array([2, 0]))
    assert np.ptp(model.confidences(no_rival)) == 0.0
    assert np.ptp(model.confidences(many)) == 0.0
    assert np.diff(model.confidences(few))[0] < 0


def test_counts_of_a_long_clip_enter_the_model_scaled_to_its_fitted_length() -> None:
    """A 10 s clip with twice a 5 s clip's counts and the same shares reads like the 5 s clip;
    a 3 s clip's counts are not scaled up."""
    short = Evidence(20, 8, 0.4, 12, 0.5, 0.0, 2.0, 16, 10, 0.9, seconds=5.0)
    long = replace(
        short, found=40, second_found=16, score=24, steady=32, steady_explained=20, seconds=10.0
    )
    unscaled = [replace(short, seconds=3.0), replace(short, seconds=0.0)]
    rows = calibration.features([short, long, *unscaled])
    assert np.allclose(rows, rows[0])


def test_calibration_keeps_evidence_for_a_match_in_favour() -> None:
    """Data where more explained notes go with wrong answers: precision is flat, not falling."""
    rng = np.random.default_rng(1)
    found = rng.integers(5, 60, 200)
    right = found > 30
    evidence = [
        Evidence(int(f), 10, f / 60, int(f) // 2, 0.2 if r else 0.8)
        for f, r in zip(found, right, strict=True)
    ]
    model = calibration.fit(evidence, right.astype(int))
    sweep = model.confidences(_varied(evidence[0], "precision", np.linspace(0, 1, 11)))
    assert np.ptp(sweep) == 0.0
    assert model.confidence(replace(evidence[0], found=55)) > model.confidence(evidence[0])


def test_linear_calibration_without_knots_still_loads() -> None:
    weights = (-10.0, 2.0, -2.0, 5.0, 1.0, 1.0, -15.0, -0.2, 0.5, -1.0, 2.0, -1.0, -10.0)
    model = Calibration.from_json(json.dumps({"weights": weights, "threshold": 0.7}))
    e = Evidence(30, 5, 0.5, 20, 0.5, 0.1, 2.0, 10, 8, 0.6, pitch_shift=-0.5, tempo_ratio=1.05)
    x = (1, np.log1p(30), np.log1p(5), 0.5, np.log1p(20), 0.5, 0.1, 2.0, np.log1p(8), np.log1p(2))
    x += (0.6, 0.5, np.log(1.05))
    assert model.confidence(e) == pytest.approx(1 / (1 + np.exp(-np.dot(weights, x))))
    with pytest.raises(ParameterError, match="weights"):
        Calibration(weights=weights[:-1])


def test_a_clip_shorter_than_short_seconds_is_judged_by_the_short_model() -> None:
    zero = (0.0,) * len(calibration.FEATURES)
    short = Calibration(weights=(-2.0, *zero), threshold=0.1)
    model = Calibration(weights=(2.0, *zero), threshold=0.9, short=short)
    clips = [Evidence(9, 9, 0.5, 5, seconds=s) for s in (1.0, 2.4, 2.5, 5.0, 0.0)]
    expected = [0.1192, 0.1192, 0.8808, 0.8808, 0.8808]  # 0: length unknown, the main model
    assert np.allclose(model.confidences(clips), expected, atol=1e-4)
    assert [model.accepts(e) for e in clips] == [True, True, False, False, False]
    assert all(model.without_threshold().accepts(e) for e in clips)
    assert Calibration.from_json(model.to_json()) == model


def test_shipped_calibration_loads() -> None:
    model = calibration.default_calibration()
    assert model.knots and model.fingerprint_version == fingerprint.VERSION
    assert 0 < model.threshold < 1


def test_extractor_emits_postings_and_peaks(songs: dict[int, np.ndarray]) -> None:
    from polymuse.ingest.decode import IngestItem, Window
    from polymuse.store.catalog import SongInfo

    y = soxr.resample(songs[1], SR, 16000).astype(np.float32)
    item = IngestItem(
        path="a.wav",
        content_hash="0" * 64,
        size=1,
        mtime_ns=0,
        container="wav",
        codec="pcm",
        native_rate=16000,
        channels=1,
        duration_s=len(y) / 16000,
        audio=y,
        sample_rate=16000,
        windows=(Window(0, 0.0, 10.0),),
        tags={},
        song=SongInfo("a"),
    )
    extractor = LandmarkExtractor()
    [[fact]] = extractor.extract_batch([item])
    assert fact.kind == "fingerprint" and fact.window is None
    assert len(fact.hashes) == len(fact.offsets) > 100
    ref = fingerprint.reference(songs[1], SR)
    np.testing.assert_array_equal(decode_peaks(fact.payload["peaks"]).shape, ref.peaks.shape)


def test_constellation_finds_a_song_its_hashes_miss(songs: dict[int, np.ndarray]) -> None:
    """Every stored peak votes: a song whose hashes are gone is still found at its offset."""
    index = MemoryIndex()
    for seed in CATALOGUE:
        ref = fingerprint.reference(songs[seed], SR)
        if seed == 4:
            ref = replace(ref, hashes=ref.hashes[:0], offsets=ref.offsets[:0])
        index.add(seed, ref, song=SongRef(seed, f"song {seed}"))
    clip = songs[4][int(9.3 * SR) : int(12.3 * SR)]
    found = constellation.search(
        PeakTable.build(index.all_peaks(10**9)), listen(clip, SR).query, top=3
    )
    assert found[0].asset_id == 4 and abs(found[0].offset_s - 9.3) <= 0.05
    assert found[0].votes > 3 * found[1].votes
    answer = Recognizer(index).identify(clip, SR)
    best = answer.match or answer.alternatives[0]
    assert best.song_id == 4 and best.score == 0 and best.peaks_found > 10
    assert best.constellation_votes == found[0].votes


def test_the_vote_keeps_a_runner_up_line_for_a_repeated_passage(
    songs: dict[int, np.ndarray],
) -> None:
    """A passage played twice: the vote returns both places, best first."""
    passage = songs[7][: 6 * SR]
    song = np.concatenate([passage, songs[8][: 5 * SR], passage])
    index = MemoryIndex()
    index.add(1, fingerprint.reference(song, SR), song=SongRef(1, "twice"))
    heard = listen(passage[SR : 5 * SR], SR)
    hits = join(heard.query.hashes, index.postings(heard.query.hashes))
    lines = matching.vote(heard.query, hits)
    assert [c.asset_id for c in lines] == [1, 1]
    assert sorted(round(c.offset_s, 1) for c in lines) == [1.0, 12.0]


def test_the_constellations_line_is_kept_when_the_hashes_chose_another_line_of_the_song(
    index: MemoryIndex, songs: dict[int, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hashes may vote for a repeat of the passage, 7 s away: the constellation search's
    line for the same song is verified as well, and the line that finds more peaks answers."""
    vote = matching.vote

    def astray(*args: object, **kwargs: object) -> list[matching.Candidate]:
        return [replace(c, offset_s=c.offset_s + 7.0) for c in vote(*args, **kwargs)]

    monkeypatch.setattr(matching, "vote", astray)
    answer = Recognizer(index).identify(songs[6][int(4.2 * SR) : int(9.2 * SR)], SR)
    assert answer.match is not None and answer.match.song_id == 6
    assert abs(answer.match.reference_offset_s - 4.2) <= 0.05
    assert answer.match.constellation_votes > 10


def test_a_bass_line_is_found_by_its_bass_peaks_alone() -> None:
    """Songs with nothing above `F_MIN` (so no hashes): the bass band's stored peaks still find
    the right one, at its offset, through the constellation search."""
    rng = np.random.default_rng(11)
    t = np.arange(SR // 4) / SR
    lines = {
        song: np.concatenate(
            [np.sin(2 * np.pi * f * t) for f in rng.uniform(35.0, 120.0, size=120)]
        ).astype(np.float32)
        for song in (1, 2, 3)
    }
    index = MemoryIndex()
    for song, y in lines.items():
        index.add(song, fingerprint.reference(y, SR), song=SongRef(song, f"bass {song}"))
    answer = Recognizer(index).identify(lines[2][int(11.1 * SR) : int(16.1 * SR)], SR)
    best = answer.match or answer.alternatives[0]
    assert best.song_id == 2 and best.score == 0 and best.constellation_votes > 10
    assert abs(best.reference_offset_s - 11.1) <= 0.05


def test_constellation_is_skipped_for_a_large_catalogue(
    index: MemoryIndex, songs: dict[int, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over `MAX_PEAKS` the peaks are not read, and the hashes alone answer."""
    monkeypatch.setattr(constellation, "MAX_PEAKS", 1000)
    recognizer = Recognizer(index)
    assert recognizer.peak_table is None
    answer = recognizer.identify(songs[2][5 * SR : 10 * SR], SR)
    assert answer.status == "match" and answer.match.song_id == 2


def test_constellation_without_a_shared_pitch_finds_nothing(songs: dict[int, np.ndarray]) -> None:
    table = PeakTable.build({1: fingerprint.pack_peaks(np.array([10.0]), np.array([5.0]))})
    assert constellation.search(table, listen(songs[1][: 3 * SR], SR).query) == []


def test_phone_in_a_cafe_keeps_the_phone_band_and_adds_babble() -> None:
    t = np.arange(3 * SR) / SR
    low, mid = np.sin(2 * np.pi * 80 * t), np.sin(2 * np.pi * 1000 * t)
    clip = (0.3 * (low + mid)).astype(np.float32)
    babble = np.random.default_rng(0).standard_normal(10 * SR).astype(np.float32)
    condition = distortions.condition_named("phone in a cafe")
    out = distortions.distort(clip, SR, condition, np.random.default_rng(1), babble=babble)
    assert out.shape == clip.shape and np.abs(out).max() <= 1.0
    spectrum = np.abs(np.fft.rfft(out)) ** 2
    hz = np.fft.rfftfreq(len(out), 1 / SR)
    bass, voice = (spectrum[np.abs(hz - f) < 3].sum() for f in (80, 1000))
    assert bass < 0.05 * voice  # the phone's band cuts the bass
    assert np.corrcoef(out, clip)[0, 1] < 0.9  # room, babble and codec change it


def _match(song: int, **fields: object) -> SongMatch:
    """A match of `song` over 0-3 s of query and reference, with `fields` set."""
    base = {
        "confidence": 1.0,
        "score": 10,
        "reference_offset_s": 0.0,
        "query_start_s": 0.0,
        "query_end_s": 3.0,
        "reference_start_s": 0.0,
        "reference_end_s": 3.0,
        "tempo_ratio": 1.0,
    }
    return SongMatch(song_id=song, asset_id=song, title=f"song {song}", **(base | fields))


def test_contenders_are_ranked_by_confidence_the_rest_by_peaks_found() -> None:
    """A song that found fewer peaks but is surer comes first among songs that found at least
    half the most; a sure match on a third of them does not."""
    found_confidence = [(40, 0.3), (25, 0.9), (13, 0.99), (20, 0.1)]
    ranked = _rank(
        [_match(i + 1, peaks_found=f, confidence=c) for i, (f, c) in enumerate(found_confidence)]
    )
    assert [m.song_id for m in ranked] == [2, 1, 4, 3]


def test_timeline_runs_compare_alignments_where_the_windows_matched() -> None:
    """Windows of one song stay one segment when adjacent (one may have matched a repeat of its
    passage) or, across rejected windows, when the song is still on its line. Half an hour in,
    a tempo ratio off by 0.05 % moves that line's offset at the recording's start by a second,
    so lines are compared where the windows matched."""

    def window(start: float, ratio: float, moved: float = 0.0) -> tuple[float, float, SongMatch]:
        ref_start = start + 2.0 - 1800.0 + moved
        match = _match(
            4,
            score=30,
            reference_offset_s=ref_start - ratio * (start + 2.0),
            query_start_s=start + 2.0,
            query_end_s=start + 9.0,
            reference_start_s=ref_start,
            reference_end_s=ref_start + 7.0,
            tempo_ratio=ratio,
        )
        return start, start + 10.0, match

    def runs(*windows: tuple[float, float, SongMatch]) -> list[int]:
        return [len(run) for run in _runs(list(windows), hop_s=5.0)]

    first, second, later = window(1800.0, 1.0005), window(1805.0, 0.9995), window(1820.0, 1.0005)
    assert abs(second[2].reference_offset_s - later[2].reference_offset_s) > 1.5
    # After two rejected windows, the song plays on along the line `second` found.
    assert runs(first, second, later) == [3]
    # There, 3 s off the line, it is another stretch; next to the last window, a repeat.
    assert runs(first, second, window(1820.0, 1.0, moved=3.0)) == [2, 1]
    assert runs(first, second, window(1810.0, 1.0, moved=3.0)) == [3]


def _voice(clip: np.ndarray, level: float) -> np.ndarray:
    """Held harmonic notes, half a second each, at `level` times the clip's RMS: a singer."""
    rng = np.random.default_rng(0)
    t = np.arange(len(clip)) / SR
    y = np.zeros(len(clip))
    for start in range(0, len(clip), SR // 2):
        note, f0 = slice(start, start + SR // 2), rng.uniform(200, 600)
        y[note] = sum(np.sin(2 * np.pi * f0 * h * t[note]) / h for h in range(1, 8))
    return (y * level * np.std(clip) / np.std(y)).astype(np.float32)


def test_an_instrumental_stem_confirms_only_the_mixs_best_candidate(
    recognizer: Recognizer, songs: dict[int, np.ndarray]
) -> None:
    """A loud voice hides song 6 (ranked first, rejected); its instrumental stem confirms it.
    A stem matching any other song does not make the file that song."""
    clip = songs[6][5 * SR : 15 * SR]
    mix = recognizer.identify(clip + _voice(clip, 8.0), SR)
    assert mix.status == "unknown" and mix.alternatives[0].song_id == 6
    confirmed = service.confirm_on_stem(recognizer, mix, clip + _voice(clip, 0.3), SR)
    assert confirmed.status == "match" and confirmed.match.song_id == 6
    other = service.confirm_on_stem(recognizer, mix, songs[5][5 * SR : 15 * SR], SR)
    assert other.status == "unknown" and other.match is None
    assert other.alternatives[0].song_id == 5


def test_a_long_file_is_identified_by_excerpts_in_its_own_time(
    recognizer: Recognizer, songs: dict[int, np.ndarray]
) -> None:
    """25 s of song 3 from 2 s on: looked up as 10 s excerpts, answered in the file's time."""
    answer, starts = service.identify_file(recognizer, songs[3][2 * SR : 27 * SR], SR)
    assert len(starts) == service.EXCERPTS and answer.match is not None
    hit = answer.match
    assert hit.song_id == 3 and abs(hit.reference_offset_s - 2.0) <= 0.05
    assert min(starts) <= hit.query_start_s < hit.query_end_s <= max(starts) + service.EXCERPT_S
    assert abs(hit.reference_start_s - hit.query_start_s - 2.0) <= 0.05
