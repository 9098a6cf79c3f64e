"""Audio encoder registry, the debug backend, and the combined musicnn encoder."""

from __future__ import annotations

import numpy as np
import pytest

from polymuse.errors import ParameterError, UserError
from polymuse.tools.encoders.audio import (
    AUDIO_ENCODERS,
    MODEL_DIR_SETTINGS,
    DebugAudioEncoder,
    build_audio_encoder,
    spread,
)


def _tone(seconds: float, sr: int = 16000, f0: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UserError, match="valid: musicnn, clap, clamp3, mert, muq, debug"):
        build_audio_encoder("panns")


@pytest.mark.parametrize("name", sorted(MODEL_DIR_SETTINGS))
def test_user_weight_backends_name_their_setting(name: str) -> None:
    class Settings:
        pass

    with pytest.raises(UserError, match=f"POLYMUSE_{MODEL_DIR_SETTINGS[name].upper()}"):
        build_audio_encoder(name, settings=Settings())


@pytest.mark.parametrize(("n", "k"), [(1, 5), (5, 5), (80, 24), (25, 24), (7, 1)])
def test_spread_keeps_first_and_last(n: int, k: int) -> None:
    index = spread(n, k)
    assert len(index) == min(n, k)
    assert index[0] == 0 and (k == 1 or index[-1] == n - 1)
    assert np.all(np.diff(index) > 0)


def test_spread_rejects_zero() -> None:
    with pytest.raises(ParameterError):
        spread(10, 0)


def test_debug_encoder_is_deterministic() -> None:
    encoder = build_audio_encoder("debug")
    assert "debug" in AUDIO_ENCODERS
    y = _tone(6.0)
    a = encoder.encode(y, sample_rate=16000, max_windows=4)
    b = DebugAudioEncoder().encode(y, sample_rate=16000, max_windows=4)
    assert a.window_embeddings.shape == (4, 16) and a.tag_probabilities.shape == (4, 10)
    np.testing.assert_array_equal(a.tag_probabilities, b.tag_probabilities)
    assert abs(np.linalg.norm(a.embedding) - 1) < 1e-6


@pytest.fixture(scope="module")
def musicnn():
    pytest.importorskip("musicnn")
    return build_audio_encoder("musicnn")


def test_musicnn_combines_both_taggers(musicnn) -> None:
    assert len(musicnn.tags) == 100 and musicnn.embedding_dim == 400
    assert musicnn.tags[0].startswith("MTT:") and musicnn.tags[50].startswith("MSD:")
    assert ((musicnn.tag_priors > 0) & (musicnn.tag_priors < 0.5)).all()
    encoding = musicnn.encode(_tone(20.0), sample_rate=16000, max_windows=3)
    assert encoding.tag_probabilities.shape == (3, 100)
    assert encoding.window_embeddings.shape == (3, 400)
    assert encoding.window_times[0] == pytest.approx(1.488, abs=1e-3)
    assert abs(np.linalg.norm(encoding.embedding) - 1) < 1e-5


def test_musicnn_patches_equal_the_whole_signal_front_end(musicnn) -> None:
    """Computing only the sampled patches gives the frames musicnn's own front end gives."""
    from polymuse.tools.encoders import musicnn as m

    y = _tone(12.0, f0=220.0)
    mel = m.log_mel(y, sample_rate=16000)
    for start in (0, 100, len(mel) - m.PATCH_FRAMES):
        np.testing.assert_array_equal(musicnn._patch(y, start), mel[start : start + m.PATCH_FRAMES])


def test_musicnn_matches_the_tagger_on_its_own(musicnn) -> None:
    y = _tone(10.0, sr=22050, f0=330.0)
    encoding = musicnn.encode(y, sample_rate=22050)
    alone = musicnn.taggers[0].tag(y, sample_rate=22050)
    np.testing.assert_allclose(encoding.tag_probabilities[:, :50], alone.probabilities, atol=1e-4)


def test_musicnn_rejects_too_short_audio(musicnn) -> None:
    with pytest.raises(ParameterError, match="shorter than one musicnn patch"):
        musicnn.encode(_tone(1.0), sample_rate=16000)


def test_encoder_status_says_which_are_configured(tmp_path) -> None:
    from polymuse.tools.encoders.audio import encoder_status

    class Settings:
        clap_dir = str(tmp_path)
        mert_dir = str(tmp_path / "missing")

    status = {name: (ok, detail) for name, ok, detail in encoder_status(Settings())}
    assert status["musicnn"][0] and status["clap"][0]
    assert not status["mert"][0] and "does not exist" in status["mert"][1]
    assert not status["clamp3"][0] and "POLYMUSE_CLAMP3_DIR" in status["clamp3"][1]
