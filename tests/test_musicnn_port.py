"""The PyTorch musicnn port against outputs of the original TensorFlow graphs.

The golden files in fixtures/musicnn/ were written by fixtures/musicnn/make_reference.py in a
TensorFlow environment: musicnn's own mel patches of a deterministic signal, and the taggram
and embedding-layer activations of each shipped model's training graph.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soxr

from polymuse.errors import ParameterError
from polymuse.tools.encoders.musicnn import (
    EMBEDDING_LAYERS,
    HOP_LENGTH,
    MODEL_CARD,
    MODELS,
    PATCH_FRAMES,
    SAMPLE_RATE,
    MusicnnTagger,
    log_mel,
    patch_starts,
)

FIXTURES = Path(__file__).parent / "fixtures" / "musicnn"
TOLERANCE = 1e-4


def _load_reference_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "musicnn_make_reference", FIXTURES / "make_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference_input() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "input.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def signal(reference_input: dict[str, np.ndarray]) -> np.ndarray:
    script = _load_reference_script()
    y = script.make_signal()
    assert script.signal_digest(y) == str(reference_input["signal_sha256"]), (
        "make_signal() no longer reproduces the reference waveform (numpy RNG stream changed?); "
        "rerun make_reference.py in a TensorFlow environment"
    )
    return y


@pytest.fixture(scope="module")
def taggers() -> dict[str, MusicnnTagger]:
    return {model: MusicnnTagger.from_package(model) for model in MODELS}


def _reference(model: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{model}.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("model", list(MODELS))
def test_port_matches_tensorflow_from_mel_patches(
    taggers: dict[str, MusicnnTagger], reference_input: dict[str, np.ndarray], model: str
) -> None:
    ref = _reference(model)
    probabilities, embeddings = taggers[model].predict_patches(reference_input["mel"])
    assert probabilities.shape == ref["taggram"].shape == (3, 50)
    assert embeddings.shape == ref["embedding"].shape
    assert np.abs(probabilities - ref["taggram"]).max() <= TOLERANCE
    assert np.abs(embeddings - ref["embedding"]).max() <= TOLERANCE


def test_front_end_matches_musicnn_extractor(
    signal: np.ndarray, reference_input: dict[str, np.ndarray]
) -> None:
    mel = log_mel(signal, sample_rate=SAMPLE_RATE)
    assert mel.dtype == np.float16 and mel.shape == (1 + len(signal) // HOP_LENGTH, 96)
    patches = np.stack([mel[s : s + PATCH_FRAMES] for s in patch_starts(len(mel))])
    expected = reference_input["mel"]
    assert patches.shape == expected.shape
    # float32 rounding differences between torch.stft and librosa can move a mel power
    # across a float16 rounding boundary: a handful of values differ by one float16 step.
    differ = patches != expected
    assert differ.mean() < 1e-3
    assert np.abs(patches.astype(np.float32) - expected).max() < 1e-3


@pytest.mark.parametrize("model", list(MODELS))
def test_port_matches_tensorflow_from_waveform(
    taggers: dict[str, MusicnnTagger], signal: np.ndarray, model: str
) -> None:
    ref = _reference(model)
    result = taggers[model].tag(signal, sample_rate=SAMPLE_RATE, batch_size=2)
    assert np.abs(result.probabilities - ref["taggram"]).max() <= TOLERANCE
    assert np.abs(result.patch_embeddings - ref["embedding"]).max() <= 2 * TOLERANCE


@pytest.mark.parametrize("model", ["MTT_musicnn", "MSD_vgg"])
def test_result_layout(taggers: dict[str, MusicnnTagger], signal: np.ndarray, model: str) -> None:
    from musicnn import configuration

    tagger = taggers[model]
    result = tagger.tag(signal, sample_rate=SAMPLE_RATE)
    labels = configuration.MTT_LABELS if model.startswith("MTT") else configuration.MSD_LABELS
    dim = EMBEDDING_LAYERS[MODELS[model][0]][1]
    assert result.model == model
    assert result.tags == labels and len(result.tags) == 50
    assert dim == tagger.embedding_dim == (200 if "musicnn" in model else 256)
    assert result.probabilities.shape == (3, 50)
    assert ((result.probabilities > 0) & (result.probabilities < 1)).all()
    assert result.patch_embeddings.shape == (3, dim)
    np.testing.assert_allclose(result.embedding, result.patch_embeddings.mean(axis=0))
    assert result.embedding_layer == tagger.embedding_layer
    np.testing.assert_allclose(result.frame_times, [1.488, 4.48, 7.472])


def test_batch_size_and_patch_hop(taggers: dict[str, MusicnnTagger], signal: np.ndarray) -> None:
    tagger = taggers["MTT_musicnn"]
    whole = tagger.tag(signal, sample_rate=SAMPLE_RATE, batch_size=64)
    single = tagger.tag(signal, sample_rate=SAMPLE_RATE, batch_size=1)
    np.testing.assert_allclose(single.probabilities, whole.probabilities, atol=1e-6)
    overlapped = tagger.tag(signal, sample_rate=SAMPLE_RATE, patch_hop_s=1.0)
    hop_frames = round(SAMPLE_RATE / HOP_LENGTH)
    assert len(overlapped.frame_times) == len(patch_starts(626, hop_frames=hop_frames)) == 8
    np.testing.assert_allclose(np.diff(overlapped.frame_times), hop_frames * 0.016)
    np.testing.assert_allclose(overlapped.probabilities[0], whole.probabilities[0], atol=1e-6)


def test_other_sample_rates_are_resampled(
    taggers: dict[str, MusicnnTagger], signal: np.ndarray
) -> None:
    tagger = taggers["MTT_musicnn"]
    native = tagger.tag(signal, sample_rate=SAMPLE_RATE)
    upsampled = soxr.resample(signal, SAMPLE_RATE, 44100, quality="VHQ").astype(np.float32)
    resampled = tagger.tag(upsampled, sample_rate=44100)
    np.testing.assert_allclose(resampled.frame_times, native.frame_times)
    assert np.abs(resampled.probabilities - native.probabilities).max() < 0.02


def test_loud_input_saturates_instead_of_overflowing(taggers: dict[str, MusicnnTagger]) -> None:
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    loud = np.sin(2 * np.pi * 110 * t).astype(np.float32)
    mel = log_mel(loud, sample_rate=SAMPLE_RATE)
    assert np.isfinite(mel).all()
    assert float(mel.max()) == pytest.approx(np.log10(65505.0), abs=2e-3)
    result = taggers["MTT_musicnn"].tag(loud, sample_rate=SAMPLE_RATE)
    assert np.isfinite(result.probabilities).all()


def test_invalid_input_is_rejected(taggers: dict[str, MusicnnTagger]) -> None:
    tagger = taggers["MTT_vgg"]
    mono = np.zeros(4 * SAMPLE_RATE, dtype=np.float32)
    with pytest.raises(ParameterError, match="mono"):
        tagger.tag(np.zeros((2, 4 * SAMPLE_RATE), dtype=np.float32), sample_rate=SAMPLE_RATE)
    with pytest.raises(ParameterError, match="NaN"):
        tagger.tag(np.full(4 * SAMPLE_RATE, np.nan, dtype=np.float32), sample_rate=SAMPLE_RATE)
    with pytest.raises(ParameterError, match="floating point"):
        tagger.tag(np.zeros(4 * SAMPLE_RATE, dtype=np.int16), sample_rate=SAMPLE_RATE)
    with pytest.raises(ParameterError, match="sample_rate"):
        tagger.tag(mono, sample_rate=0)
    with pytest.raises(ParameterError, match="shorter than one musicnn patch"):
        tagger.tag(mono[: 2 * SAMPLE_RATE], sample_rate=SAMPLE_RATE)
    with pytest.raises(ParameterError, match="batch_size"):
        tagger.tag(mono, sample_rate=SAMPLE_RATE, batch_size=0)
    with pytest.raises(ParameterError, match="patch_hop_s"):
        tagger.tag(mono, sample_rate=SAMPLE_RATE, patch_hop_s=0.0)
    with pytest.raises(ParameterError, match="shape"):
        tagger.predict_patches(np.zeros((1, 100, 96), dtype=np.float32))


def test_unknown_model_lists_the_valid_ones() -> None:
    with pytest.raises(ParameterError, match="MTT_musicnn, MSD_musicnn, MTT_vgg, MSD_vgg"):
        MusicnnTagger.from_package("MSD_musicnn_big")


def test_model_card_names_source_and_licence() -> None:
    assert MODEL_CARD["licence"] == "ISC"
    assert "jordipons/musicnn" in MODEL_CARD["source"]
    assert MODEL_CARD["install"] == "pip install --no-deps musicnn==0.1.0"
