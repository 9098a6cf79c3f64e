"""Separation: registry, chunked overlap-add, the dsp separator, stem files and their cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from langgraph.runtime import Runtime
from typer.testing import CliRunner

from polymuse.commands.separate import separate as separate_command
from polymuse.errors import ParameterError
from polymuse.nodes.separate import separate as separate_node
from polymuse.report import SourceInfo
from polymuse.runtime import Context
from polymuse.settings import Settings
from polymuse.tools import audio
from polymuse.tools.separation import STEMS, Separator, build_separator, stems
from polymuse.tools.separation.base import ChunkedSeparator
from polymuse.tools.separation.chunking import overlap_add
from polymuse.tools.separation.dsp import DspSeparator, running_median
from polymuse.tools.separation.repetition import repeating_model

SR = 44100


def click_and_tones(seconds: float = 6.0, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Stereo parts: a click track (drums), a sustained 330 Hz tone, a sustained 55 Hz bass."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    clicks = np.zeros(n)
    rng = np.random.default_rng(seed)
    for start in range(0, n, SR // 2):  # 120 BPM
        burst = rng.standard_normal(400) * np.exp(-np.arange(400) / 60)
        clicks[start : start + 400] += burst[: n - start]
    tone = sum(0.2 / h * np.sin(2 * np.pi * 330 * h * t) for h in range(1, 6))
    bass = 0.3 * np.sin(2 * np.pi * 55 * t) + 0.1 * np.sin(2 * np.pi * 110 * t)
    return {
        name: np.stack([y, 0.8 * y]).astype(np.float32)
        for name, y in (("clicks", 0.5 * clicks), ("tone", tone), ("bass", bass))
    }


def energy(y: np.ndarray) -> float:
    return float(np.square(y, dtype=np.float64).sum())


class Identity(ChunkedSeparator):
    """Returns its input as `vocals` and silence elsewhere, through the chunked path."""

    name = "identity"
    outputs = STEMS

    def __init__(self, chunk: int, step: int, fade: int, batch_size: int) -> None:
        super().__init__()
        self.chunk, self.step, self.fade, self.batch_size = chunk, step, fade, batch_size

    def _process(self, batch: np.ndarray) -> np.ndarray:
        out = np.zeros((batch.shape[0], 4, *batch.shape[1:]), np.float32)
        out[:, 0] = batch
        return out


# Registry


def test_unknown_separator_lists_the_valid_ones():
    with pytest.raises(ParameterError) as info:
        build_separator("spleeter")
    for name in ("bs_roformer", "demucs", "dsp", "unittest"):
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["dsp", "DSP", "unittest"])
def test_builtin_separators_build_and_follow_the_protocol(name):
    sep = build_separator(name, Settings())
    assert isinstance(sep, Separator)
    assert sep.model.name


def test_unittest_separator_is_deterministic_and_sums_to_the_mix():
    x = np.random.default_rng(1).standard_normal((2, SR * 2 + 123)).astype(np.float32)
    a = build_separator("unittest").separate(x)
    b = build_separator("unittest").separate(x)
    assert set(a) == set(STEMS)
    for s in STEMS:
        assert a[s].shape == x.shape
        np.testing.assert_array_equal(a[s], b[s])
    np.testing.assert_allclose(sum(a.values()), x, atol=1e-5)


@pytest.mark.parametrize("bad", [np.zeros(100), np.zeros((3, 100)), np.zeros((2, 10), np.int16)])
def test_bad_audio_is_rejected_up_front(bad):
    with pytest.raises(ParameterError):
        build_separator("unittest").separate(bad)


# Overlap-add


@pytest.mark.parametrize("n", [1, 999, 1000, 1001, 7777])
@pytest.mark.parametrize(
    ("chunk", "step", "fade", "batch"),
    [(1000, 1000, 0, 1), (1000, 500, 100, 2), (1000, 250, 300, 3)],
)
@pytest.mark.parametrize("pad_last", [True, False])
def test_overlap_add_of_an_identity_model_gives_the_input_back(
    n, chunk, step, fade, batch, pad_last
):
    x = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32)
    blocks = [x[:, i : i + 333] for i in range(0, n, 333)]
    parts = list(
        overlap_add(
            lambda b: b[:, None],
            blocks,
            chunk=chunk,
            step=step,
            fade=fade,
            batch_size=batch,
            pad_last=pad_last,
        )
    )
    y = np.concatenate(parts, axis=-1)[0]
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-6)


def test_identity_separator_reconstructs_through_the_streaming_path():
    x = np.random.default_rng(2).standard_normal((2, 50_000)).astype(np.float32)
    out = Identity(chunk=4096, step=1024, fade=409, batch_size=4).separate(x)
    np.testing.assert_allclose(out["vocals"], x, rtol=0, atol=1e-6)
    assert not any(np.any(out[s]) for s in ("drums", "bass", "other"))


def test_overlap_add_rejects_bad_sizes():
    with pytest.raises(ParameterError):
        list(overlap_add(lambda b: b[:, None], [np.zeros((1, 10))], chunk=10, step=11, fade=0))


# dsp


def test_running_median_matches_scipy():
    from scipy.ndimage import median_filter

    m = np.random.default_rng(3).random((7, 200)).astype(np.float32)
    for k in (1, 3, 17):
        np.testing.assert_array_equal(running_median(m, k), median_filter(m, (1, k), mode="mirror"))


@pytest.fixture(scope="module")
def dsp_parts():
    parts = click_and_tones()
    mix = sum(parts.values())
    return parts, mix, DspSeparator().separate(mix)


def test_dsp_stems_sum_to_the_mix(dsp_parts):
    _, mix, out = dsp_parts
    assert set(out) == set(STEMS)
    np.testing.assert_allclose(sum(out.values()), mix, atol=2e-5)


def test_dsp_puts_clicks_in_drums_and_sustained_tones_in_harmonic_stems(dsp_parts):
    parts, mix, out = dsp_parts

    # Where a stem goes: the share of the part's energy its projection on each stem takes.
    def share(part: np.ndarray, stem: np.ndarray) -> float:
        return float(np.sum(part * stem) / energy(part))

    clicks, tone, bass = parts["clicks"], parts["tone"], parts["bass"]
    assert share(clicks, out["drums"]) > 0.6
    harmonic = out["vocals"] + out["bass"] + out["other"]
    assert share(tone, harmonic) > 0.9
    assert share(bass, out["bass"]) > 0.8
    assert share(tone, out["bass"]) < 0.05
    # The drums stem is mostly clicks, not tone.
    assert energy(out["drums"] - clicks) < 0.5 * energy(out["drums"])


@pytest.fixture(scope="module")
def lead_over_chord() -> dict[str, np.ndarray]:
    """A C5-D5-E5-D5-C5-B4 line, one second a note, over a sustained G major chord."""
    n = 6 * SR
    t = np.arange(n) / SR
    line = np.repeat([523.25, 587.33, 659.25, 587.33, 523.25, 493.88], SR)
    phase = 2 * np.pi * np.cumsum(line) / SR
    lead = sum(0.2 / h * np.sin(h * phase) for h in range(1, 6))
    chord = sum(
        0.12 / h * np.sin(2 * np.pi * h * f * t) for f in (196.0, 246.94, 293.66) for h in (1, 2, 3)
    )
    return {
        name: np.stack([y, 0.8 * y]).astype(np.float32)
        for name, y in (("lead", lead), ("chord", chord))
    }


def test_dsp_puts_the_high_lead_line_in_vocals_and_the_chord_elsewhere(lead_over_chord):
    parts = lead_over_chord
    out = DspSeparator().separate(parts["lead"] + parts["chord"])

    def share(part: np.ndarray, stem: np.ndarray) -> float:
        return float(np.sum(part * stem) / energy(part))

    assert share(parts["lead"], out["vocals"]) > 0.8
    # Only the chord's partials the line sings too (D5 = 2 x D4 = 3 x G3, B4 = 2 x B3) follow it.
    assert share(parts["chord"], out["vocals"]) < 0.2


def test_dsp_repetition_model_takes_the_repeating_chord_out_of_the_vocals(lead_over_chord):
    parts = lead_over_chord
    mix = parts["lead"] + parts["chord"]
    with_repet = DspSeparator().separate(mix)["vocals"]
    without = DspSeparator(neighbours=0).separate(mix)["vocals"]

    def share(part: np.ndarray, stem: np.ndarray) -> float:
        return float(np.sum(part * stem) / energy(part))

    # The chord's partials under the line repeat all along; the line's own notes do not.
    assert share(parts["chord"], with_repet) < 0.9 * share(parts["chord"], without)
    assert share(parts["lead"], with_repet) > 0.8


def test_repeating_model_keeps_a_loop_and_votes_out_a_melody_over_it():
    rng = np.random.default_rng(5)
    period, frames, bins = 20, 200, 100
    loop = np.tile(rng.random((bins, period)).astype(np.float32), (1, frames // period))
    melody = np.zeros_like(loop)
    # A rising line, five frames a note: no note comes back within the excerpt.
    melody[20 + np.arange(frames) // 5, np.arange(frames)] = 5.0
    rep = repeating_model(loop + melody, frame_rate=10.0, neighbours=5, min_gap_s=1.0)
    np.testing.assert_allclose(rep, loop, rtol=1e-6)


def test_repeating_model_without_admissible_neighbours_is_zero_and_checks_input():
    mag = np.ones((4, 8), np.float32)
    np.testing.assert_array_equal(repeating_model(mag, frame_rate=10.0), 0.0)
    with pytest.raises(ParameterError):
        repeating_model(mag, frame_rate=10.0, neighbours=0)
    with pytest.raises(ParameterError):
        repeating_model(mag, frame_rate=10.0, features=np.ones((4, 7)))


def test_dsp_chunked_equals_unchunked_within_tolerance():
    parts = click_and_tones(seconds=14.0, seed=4)
    mix = sum(parts.values())
    whole = DspSeparator().separate(mix)
    chunked = DspSeparator()
    chunked.chunk, chunked.step, chunked.fade = 6 * SR, 4 * SR, 2 * SR
    pieces = chunked.separate(mix)
    for s in STEMS:
        if energy(whole[s]) < 1e-3 * energy(mix):
            continue
        snr = 10 * np.log10(energy(whole[s]) / energy(whole[s] - pieces[s]))
        assert snr > 15, f"{s}: chunked differs from whole by {snr:.1f} dB SNR"


# Stem files, cache, node and command


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", output_dir=tmp_path / "reports", separator="unittest")


def test_separate_file_writes_stems_and_reuses_the_cache(
    settings, write_audio, tmp_path, monkeypatch
):
    x = np.random.default_rng(5).standard_normal((SR * 2, 2)).astype(np.float32) * 0.1
    wav = write_audio("song.wav", x, subtype="FLOAT")
    first = stems.separate_file(wav, tmp_path / "a", settings=settings)
    assert not first.cached and first.backend == "unittest"
    names = [s.name for s in first.stems]
    assert names == [*STEMS, "instrumental"]
    assert abs(sum(s.energy_share for s in first.stems if s.name in STEMS) - 1) < 0.01
    written = {s.name: sf.read(s.path, always_2d=True) for s in first.stems}
    for y, rate in written.values():
        assert rate == SR and y.shape == x.shape
    np.testing.assert_allclose(sum(written[s][0] for s in STEMS), x, atol=4 * 2**-15)
    np.testing.assert_allclose(written["instrumental"][0], x - written["vocals"][0], atol=2**-14)
    assert all(s.loudness_lufs is not None for s in first.stems)

    def no_separator(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(stems, "build_separator", no_separator)
    again = stems.separate_file(wav, tmp_path / "b", settings=settings)
    assert again.cached
    assert [s.loudness_lufs for s in again.stems] == [s.loudness_lufs for s in first.stems]
    assert all(Path(s.path).parent == tmp_path / "b" for s in again.stems)
    record = json.loads((tmp_path / "b" / "separation.json").read_text())
    assert record["backend"] == "unittest"


def test_separate_file_resamples_to_44k(settings, write_audio, tmp_path):
    y = np.random.default_rng(6).standard_normal(22050 * 2).astype(np.float32) * 0.1
    wav = write_audio("low.flac", y, sr=22050)
    result = stems.separate_file(wav, tmp_path / "out", settings=settings)
    info = sf.info(result.stems[0].path)
    assert info.samplerate == SR and info.channels == 1 and abs(info.frames - 2 * SR) <= 2


def test_separate_node_writes_into_the_report_folder(settings, song_wav):
    probe = audio.probe(song_wav)
    source = SourceInfo(
        path=str(song_wav),
        file_name=song_wav.name,
        content_hash=audio.content_hash(song_wav),
        size_bytes=song_wav.stat().st_size,
        container=probe.container,
        codec=probe.codec,
        decoder=probe.decoder,
        sample_rate=probe.sample_rate,
        channels=probe.channels,
        frames=probe.frames,
        duration_s=probe.duration_s,
    )
    update = separate_node(
        {"path": str(song_wav), "source": source}, Runtime(context=Context(settings))
    )
    result = update["separation"]
    folder = settings.output_dir / f"synth-song-{source.content_hash[:8]}" / "stems"
    assert sorted(p.name for p in folder.glob("*.wav")) == sorted(
        f"{s}.wav" for s in [*STEMS, "instrumental"]
    )
    assert result.folder == str(folder)


def test_separate_command(tmp_path, song_wav, monkeypatch):
    monkeypatch.setenv("POLYMUSE_HOME", str(tmp_path / "home"))
    app = typer.Typer()
    app.command()(separate_command)
    app.command("other")(lambda: None)  # keep `separate` a sub-command, as in the real CLI
    result = CliRunner().invoke(
        app, ["separate", str(song_wav), "-o", str(tmp_path), "-s", "unittest", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backend"] == "unittest"
    bad = CliRunner().invoke(app, ["separate", str(song_wav), "-o", str(tmp_path), "-s", "nope"])
    assert bad.exit_code != 0 and "valid separators" in str(bad.exception)
