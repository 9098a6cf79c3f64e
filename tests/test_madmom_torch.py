"""The PyTorch port of madmom's networks against madmom's numpy layers and a golden file.

Regenerate the golden file (after a deliberate change of madmom) with
`python tests/test_madmom_torch.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from polymuse.errors import ParameterError
from polymuse.tools.madmom_torch import TorchNetworkProcessor, accelerate
from polymuse.tools.rhythm import _activation_processor, track_rhythm
from polymuse.tools.tonality import estimate_key, recognize_chords

# madmom imports only after polymuse's import shim ran (madmom_torch runs it)
# isort: split
from madmom.audio.signal import Signal
from madmom.features.beats import RNNBeatProcessor
from madmom.features.chords import CNNChordFeatureProcessor
from madmom.features.downbeats import RNNDownBeatProcessor
from madmom.features.key import CNNKeyRecognitionProcessor
from madmom.features.onsets import CNNOnsetProcessor, RNNOnsetProcessor
from madmom.ml.nn import NeuralNetwork, NeuralNetworkEnsemble
from madmom.ml.nn import activations as act
from madmom.ml.nn import layers as L
from madmom.processors import ParallelProcessor, Processor, SequentialProcessor

# madmom's own relu passes `out` positionally to np.maximum
pytestmark = pytest.mark.filterwarnings("ignore:Passing more than 2 positional:DeprecationWarning")

GOLDEN = Path(__file__).parent / "fixtures" / "madmom" / "activations.npz"
SAMPLE_RATE = 44100
TOLERANCE = 1e-4


def synthetic_music(seconds: float = 10.0, seed: int = 1234) -> np.ndarray:
    """Triads (C, Am, F, G, C; two seconds each) over noise clicks at 120 BPM, mono float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    y = np.zeros_like(t)
    for i, chord in enumerate([(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)] * 2):
        segment = (t >= 2 * i) & (t < 2 * i + 2)
        for midi in chord:
            freq = 440.0 * 2 ** ((midi - 69) / 12)
            for harmonic in (1, 2, 3):
                y[segment] += 0.08 / harmonic * np.sin(2 * np.pi * freq * harmonic * t[segment])
    click = np.exp(-np.arange(2000) / 200)
    for k, start in enumerate(np.arange(0, len(t) - len(click), SAMPLE_RATE // 2)):
        accent = 0.8 if k % 4 == 0 else 0.4
        y[start : start + len(click)] += accent * click * rng.standard_normal(len(click))
    y += 0.003 * rng.standard_normal(len(y))
    return y.astype(np.float32)


def _processor(name: str) -> Processor:
    factories: dict[str, Callable[[], Processor]] = {
        "downbeats_blstm": RNNDownBeatProcessor,
        "chords_cnn": CNNChordFeatureProcessor,
        "key_cnn": CNNKeyRecognitionProcessor,
        "beats_blstm": RNNBeatProcessor,
        "onsets_brnn": RNNOnsetProcessor,
        "onsets_cnn": CNNOnsetProcessor,
    }
    return factories[name]()


MODELS = ["downbeats_blstm", "chords_cnn", "key_cnn", "beats_blstm", "onsets_brnn", "onsets_cnn"]


@pytest.fixture(scope="module")
def signal() -> Signal:
    return Signal(synthetic_music(), sample_rate=SAMPLE_RATE, num_channels=1)


def _max_diff(a: Any, b: Any) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    return float(np.max(np.abs(a.astype(np.float64) - b)))


@pytest.mark.parametrize("name", MODELS)
def test_matches_madmom(name: str, signal: Signal) -> None:
    expected = _processor(name)(signal)
    got = accelerate(_processor(name))(signal)
    assert np.asarray(got).dtype == np.float32
    assert _max_diff(got, expected) <= TOLERANCE


@pytest.mark.parametrize("name", MODELS)
def test_matches_golden(name: str, signal: Signal) -> None:
    with np.load(GOLDEN) as golden:
        expected = golden[name]
    assert _max_diff(accelerate(_processor(name))(signal), expected) <= TOLERANCE


def test_rhythm_and_tonality_run_the_port() -> None:
    y = synthetic_music()
    rhythm = track_rhythm(y, sr=SAMPLE_RATE)
    assert isinstance(_activation_processor().processors[1], TorchNetworkProcessor)
    assert rhythm.time_signature == "4/4"
    assert rhythm.tempo_bpm == pytest.approx(120.0, rel=0.02)
    assert rhythm.downbeats[:3] == pytest.approx([0.0, 2.0, 4.0], abs=0.03)
    assert estimate_key(y, sr=SAMPLE_RATE).label == "C major"
    chords = [chord.label for chord in recognize_chords(y, sr=SAMPLE_RATE)]
    assert chords == ["C:maj", "A:min", "F:maj", "G:maj", "C:maj"]


@pytest.mark.parametrize(
    ("y", "sr", "kwargs", "message"),
    [
        (np.zeros(44100, np.float32), 22050, {}, "44100 Hz"),
        (np.zeros((44100, 2), np.float32), 44100, {}, "mono"),
        (np.zeros(44100, np.float32), 44100, {"beats_per_bar": ()}, "beats_per_bar"),
        (np.zeros(44100, np.float32), 44100, {"min_bpm": 200.0, "max_bpm": 100.0}, "min_bpm"),
    ],
)
def test_track_rhythm_validates(y: np.ndarray, sr: int, kwargs: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        track_rhythm(y, sr=sr, **kwargs)


def test_accelerate_replaces_the_networks() -> None:
    processor = RNNDownBeatProcessor()
    assert accelerate(processor) is processor
    ensemble = processor.processors[1]
    assert isinstance(ensemble, TorchNetworkProcessor)
    assert ensemble.ensemble and ensemble.num_networks == 8


# Layer by layer: small random networks through madmom's numpy layers and the port.

rng = np.random.default_rng()


@pytest.fixture(autouse=True)
def _seed() -> None:
    rng.bit_generator.state = np.random.default_rng(7).bit_generator.state


def _w(*shape: int) -> np.ndarray:
    return (0.5 * rng.standard_normal(shape)).astype(np.float32)


def _conv(cin: int, cout: int, kt: int, kf: int, **kwargs: Any) -> L.ConvolutionalLayer:
    return L.ConvolutionalLayer(_w(cin, cout, kt, kf), _w(cout), **kwargs)


def _batch_norm(n: int, fn: Any) -> L.BatchNormLayer:
    inv_std = np.abs(_w(n)) + 0.5
    return L.BatchNormLayer(_w(n), _w(n), _w(n), inv_std, activation_fn=fn)


def _gate(i: int, h: int, peephole: bool = True, fn: Any = act.sigmoid) -> L.Gate:
    return L.Gate(_w(i, h), _w(h), _w(h, h), _w(h) if peephole else None, activation_fn=fn)


def _lstm(i: int, h: int, forget_fn: Any = act.sigmoid) -> L.LSTMLayer:
    return L.LSTMLayer(
        _gate(i, h),
        _gate(i, h, fn=forget_fn),
        L.Cell(_w(i, h), _w(h), _w(h, h)),
        _gate(i, h),
        init=_w(h),
        cell_init=_w(h),
    )


def _gru(i: int, h: int) -> L.GRULayer:
    return L.GRULayer(
        _gate(i, h, peephole=False),
        _gate(i, h, peephole=False),
        L.GRUCell(_w(i, h), _w(h), _w(h, h)),
        init=_w(h),
    )


def _rnn(i: int, h: int, fn: Any = act.tanh) -> L.RecurrentLayer:
    return L.RecurrentLayer(_w(i, h), _w(h), _w(h, h), activation_fn=fn, init=_w(h))


NETWORKS: dict[str, tuple[Callable[[], list[Any]], tuple[int, ...]]] = {
    "conv_valid_even_kernels": (
        lambda: [
            _conv(1, 4, 2, 4, activation_fn=act.relu),
            _batch_norm(4, act.elu),
            _conv(4, 3, 3, 3),
        ],
        (20, 16),
    ),
    "conv_same_and_stride": (
        lambda: [
            _conv(2, 3, 4, 3, pad="same", activation_fn=act.tanh),
            _conv(3, 2, 3, 2, pad="same", stride=(2, 1), activation_fn=act.sigmoid),
        ],
        (15, 9, 2),
    ),
    "pad_pool_average": (
        lambda: [
            L.PadLayer(2, (0, 1), value=0.25),
            _conv(1, 3, 5, 5),
            L.MaxPoolLayer((2, 3), stride=(1, 2)),
            L.AverageLayer(axis=(0, 1)),
        ],
        (12, 11),
    ),
    "pool_axis_stride_dense": (
        lambda: [
            _conv(1, 3, 3, 3, activation_fn=act.relu),
            L.MaxPoolLayer(None, axis=2),
            L.StrideLayer(3),
            L.FeedForwardLayer(_w(3 * 6, 5), _w(5), activation_fn=act.softmax),
        ],
        (14, 8),
    ),
    "reshape_transpose_sequential": (
        lambda: [
            L.SequentialLayer([_conv(1, 2, 3, 1), L.TransposeLayer((1, 0, 2))]),
            L.ReshapeLayer((-1, 10)),
            L.AverageLayer(axis=None, keepdims=True),
        ],
        (7, 5),
    ),
    "recurrent": (
        lambda: [
            _rnn(6, 5, fn=act.relu),
            L.BidirectionalLayer(_rnn(5, 4), _rnn(5, 4)),
            L.FeedForwardLayer(_w(8, 2), _w(2), activation_fn=act.sigmoid),
        ],
        (40, 6),
    ),
    "lstm": (
        lambda: [
            _lstm(6, 5),
            L.BidirectionalLayer(_lstm(5, 4, forget_fn=act.tanh), _lstm(5, 4, forget_fn=act.tanh)),
            L.FeedForwardLayer(_w(8, 3), _w(3), activation_fn=act.softmax),
        ],
        (40, 6),
    ),
    "gru": (
        lambda: [
            L.BidirectionalLayer(_gru(6, 5), _gru(6, 5)),
            _gru(10, 3),
            L.FeedForwardLayer(_w(3, 1), _w(1)),
        ],
        (40, 6),
    ),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_layers_match_madmom(name: str) -> None:
    build, shape = NETWORKS[name]
    network = NeuralNetwork(build())
    x = rng.standard_normal(shape).astype(np.float32)
    expected = network(x)
    got = TorchNetworkProcessor([network], ensemble=False)(x)
    assert _max_diff(got, expected) <= 1e-5


def _small_net(hidden: int) -> NeuralNetwork:
    return NeuralNetwork(
        [
            L.BidirectionalLayer(_lstm(3, hidden), _lstm(3, hidden)),
            L.FeedForwardLayer(_w(2 * hidden, 2), _w(2)),
        ]
    )


def test_ensemble_of_two_architectures() -> None:
    networks = [_small_net(4), _small_net(5), _small_net(4)]
    x = rng.standard_normal((25, 3)).astype(np.float32)
    averaged = NeuralNetworkEnsemble(networks)(x)
    assert _max_diff(accelerate(NeuralNetworkEnsemble(networks))(x), averaged) <= 1e-5
    separate = accelerate(NeuralNetworkEnsemble(networks, ensemble_fn=None))(x)
    assert len(separate) == 3
    for got, network in zip(separate, networks, strict=True):
        assert _max_diff(got, network(x)) <= 1e-5


class _Holder(Processor):
    def __init__(self, network: NeuralNetwork) -> None:
        self.network = network

    def process(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        return self.network(data)


def test_accelerate_walks_the_processor_tree() -> None:
    net = _small_net(3)
    tree = SequentialProcessor(
        [np.abs, ParallelProcessor([_Holder(net), [net]]), lambda outs: outs[0] + outs[1]]
    )
    x = rng.standard_normal((30, 3)).astype(np.float32)
    expected = tree(x)
    accelerate(tree)
    holder, chain = tree.processors[1].processors
    assert isinstance(holder.network, TorchNetworkProcessor)
    assert isinstance(chain.processors[0], TorchNetworkProcessor)
    assert _max_diff(tree(x), expected) <= 1e-5


class _Doubler(L.Layer):
    def activate(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        return 2 * data


def test_unsupported_layer() -> None:
    network = NeuralNetwork([_Doubler()])
    with pytest.raises(ParameterError, match="_Doubler"):
        accelerate(network)
    assert accelerate(network, strict=False) is network


def test_rejects_online_processing_and_bad_input() -> None:
    fast = TorchNetworkProcessor([_small_net(3)], ensemble=False)
    with pytest.raises(ParameterError, match="online"):
        fast(np.zeros((5, 3), np.float32), reset=False)
    with pytest.raises(ParameterError, match="numeric"):
        fast(np.array(["a", "b"]))
    with pytest.raises(ParameterError, match="does not fit"):
        fast(np.zeros((5, 4), np.float32))


def _write_golden() -> None:
    music = Signal(synthetic_music(), sample_rate=SAMPLE_RATE, num_channels=1)
    outputs = {name: np.asarray(_processor(name)(music), dtype=np.float32) for name in MODELS}
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, **outputs)


if __name__ == "__main__":
    _write_golden()
