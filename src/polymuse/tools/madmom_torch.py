"""Run madmom's neural networks in PyTorch, equal to madmom's numpy layers up to float32 rounding.

madmom evaluates its pretrained models layer by layer in numpy: convolutions one channel pair
at a time with `scipy.ndimage.convolve`, recurrent layers one frame and one network at a time.
Here a network, or all networks of an ensemble that share one architecture, becomes a list of
batched torch layers. Every tensor between layers has the ensemble member as its first
dimension, followed by madmom's own dimensions (frames, bins[, channels]). Convolutions,
pooling and dense layers run in torch; recurrent layers project all frames in torch, then the
members of an ensemble and both directions of a bidirectional layer step through the frames
together in a numpy loop (see `_Recurrent` for why numpy).

`accelerate(processor)` swaps every `NeuralNetwork` and `NeuralNetworkEnsemble` inside a madmom
processor tree for a `TorchNetworkProcessor` whose `process(data)` returns the same activations.
Weights are converted once, when the processor is accelerated. Thread count is the caller's
choice (`torch.set_num_threads`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from types import BuiltinFunctionType, FunctionType
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from polymuse.errors import ParameterError
from polymuse.tools.madmom_compat import import_madmom

import_madmom()

from madmom.ml.nn import (  # noqa: E402 - needs import_madmom() first
    NeuralNetwork,
    NeuralNetworkEnsemble,
    average_predictions,
)
from madmom.ml.nn import activations as mm_act  # noqa: E402
from madmom.ml.nn import layers as mm_layers  # noqa: E402
from madmom.processors import ParallelProcessor, Processor, SequentialProcessor  # noqa: E402

__all__ = ["SUPPORTED_LAYERS", "TorchNetworkProcessor", "accelerate"]

Tensor = torch.Tensor
# An activation writes f(x) into `out` (which may be `x` itself) and returns it.
Activation = Callable[[Tensor, Tensor], Tensor]
P = TypeVar("P")


class _UnsupportedError(Exception):
    """A layer or activation this port does not implement (raised as `ParameterError`)."""


def _linear(x: Tensor, out: Tensor) -> Tensor:
    return x if out is x else out.copy_(x)


def _tanh(x: Tensor, out: Tensor) -> Tensor:
    return torch.tanh(x, out=out)


def _sigmoid(x: Tensor, out: Tensor) -> Tensor:
    return torch.sigmoid(x, out=out)


def _relu(x: Tensor, out: Tensor) -> Tensor:
    return torch.clamp_min(x, 0.0, out=out)


def _elu(x: Tensor, out: Tensor) -> Tensor:
    # madmom computes exp(x) - 1, not expm1(x)
    return torch.where(x < 0, torch.exp(x) - 1, x, out=out)


def _softmax(x: Tensor, out: Tensor) -> Tensor:
    # madmom normalises over axis 1 of each member's array, i.e. dim 2 here
    return out.copy_(torch.softmax(x, dim=2))


_ACTIVATIONS: dict[Any, Activation] = {
    None: _linear,
    mm_act.linear: _linear,
    mm_act.tanh: _tanh,
    mm_act.sigmoid: _sigmoid,
    mm_act.relu: _relu,
    mm_act.elu: _elu,
    mm_act.softmax: _softmax,
}
# Attributes that hold a layer's running state, not its definition.
_STATE_ATTRIBUTES = frozenset({"_prev", "_state", "_tmp"})


def _activation(fn: object) -> Activation:
    try:
        return _ACTIVATIONS[fn]
    except (KeyError, TypeError):
        raise _UnsupportedError(f"activation function {fn!r}") from None


def _signature(obj: object) -> Hashable:
    """Everything about a layer tree except its float weights: equal signatures stack."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            return ("array", obj.shape)
        return ("array", obj.shape, obj.dtype.str, obj.tobytes())
    if isinstance(obj, list | tuple):
        return (type(obj).__name__, tuple(_signature(item) for item in obj))
    if isinstance(obj, FunctionType | BuiltinFunctionType | np.ufunc):
        return ("function", getattr(obj, "__module__", None), obj.__name__)
    if isinstance(obj, mm_layers.Layer):
        attributes = sorted(
            (name, _signature(value))
            for name, value in vars(obj).items()
            if name not in _STATE_ATTRIBUTES
        )
        return (type(obj).__name__, tuple(attributes))
    return ("value", repr(obj))


def _stack(arrays: Sequence[Any]) -> Tensor:
    """One float32 tensor with the ensemble member as its first dimension."""
    return torch.from_numpy(np.stack([np.asarray(a, dtype=np.float32) for a in arrays]))


def _member_dim(axis: int, ndim: int) -> int:
    """Tensor dim of a member array's `axis`, for tensors of `ndim` dims including members."""
    return axis % (ndim - 1) + 1


def _member_view(param: Tensor, ndim: int) -> Tensor:
    """Align a stacked (members, *shape) parameter with the trailing dims of an `ndim` tensor."""
    return param.view(param.shape[0], *([1] * (ndim - param.dim())), *param.shape[1:])


class _Dense:
    """FeedForwardLayer: x @ W + b over the last axis, then the activation."""

    def __init__(self, members: Sequence[Any]) -> None:
        weights = members[0].weights
        if weights.ndim != 2:
            raise _UnsupportedError("FeedForwardLayer with 1-d weights")
        width = weights.shape[1]
        self.weight = _stack([m.weights for m in members])
        self.bias = _stack([np.broadcast_to(m.bias, (width,)) for m in members]).unsqueeze(1)
        self.activation = _activation(members[0].activation_fn)

    def __call__(self, x: Tensor) -> Tensor:
        members, inputs, width = self.weight.shape
        lead = x.shape[1:-1]
        flat = x.reshape(members, math.prod(lead), inputs)
        out = torch.baddbmm(self.bias, flat, self.weight).view(members, *lead, width)
        return self.activation(out, out)


class _BatchNorm:
    """BatchNormLayer: (x - mean) * (gamma * inv_std) + beta, then the activation."""

    def __init__(self, members: Sequence[Any]) -> None:
        self.mean = _stack([m.mean for m in members])
        self.scale = _stack([np.asarray(m.gamma * m.inv_std) for m in members])
        self.beta = _stack([m.beta for m in members])
        self.activation = _activation(members[0].activation_fn)

    def __call__(self, x: Tensor) -> Tensor:
        n = x.dim()
        out = (x - _member_view(self.mean, n)) * _member_view(self.scale, n)
        out += _member_view(self.beta, n)
        return self.activation(out, out)


class _Conv:
    """ConvolutionalLayer: a true convolution (flipped kernel), 'valid' or 'same', per member."""

    def __init__(self, members: Sequence[Any]) -> None:
        first = members[0]
        _, outputs, size_t, size_f = first.weights.shape
        if first.pad == "valid":
            self.padding = (0, 0, 0, 0)
        elif first.pad == "same":
            # scipy.ndimage.convolve centres even kernels one sample later than odd ones
            self.padding = ((size_f - 1) // 2, size_f // 2, (size_t - 1) // 2, size_t // 2)
        else:
            raise _UnsupportedError(f"ConvolutionalLayer with pad={first.pad!r}")
        self.stride = self._stride(first.stride)
        if np.size(first.bias) not in (1, outputs):
            raise _UnsupportedError(f"ConvolutionalLayer bias of shape {np.shape(first.bias)}")
        # madmom weights are (in, out, time, freq); torch correlates with (out, in, time, freq)
        self.weights = [
            torch.from_numpy(np.flip(m.weights, (2, 3)).swapaxes(0, 1).astype(np.float32))
            for m in members
        ]
        self.bias = _stack([np.broadcast_to(np.ravel(m.bias), (outputs,)) for m in members])
        self.activation = _activation(first.activation_fn)

    @staticmethod
    def _stride(stride: object) -> tuple[int, ...]:
        values = (1,) if stride is None else tuple(int(v) for v in np.ravel(stride))
        if values == (1,):
            return (1, 1)
        if len(values) == 2:
            return values
        raise _UnsupportedError(f"ConvolutionalLayer with stride={stride!r}")

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(-1)
        outs = []
        for member, weight in enumerate(self.weights):
            # (frames, bins, channels) viewed as a channels-last (1, channels, frames, bins)
            image = x[member].permute(2, 0, 1).unsqueeze(0)
            if any(self.padding):
                image = F.pad(image, self.padding)
            y = F.conv2d(image, weight, self.bias[member], stride=self.stride)
            outs.append(y[0].permute(1, 2, 0))
        out = torch.stack(outs) if len(outs) > 1 else outs[0].unsqueeze(0)
        return self.activation(out, out)


class _MaxPool:
    """MaxPoolLayer: windows entirely inside the data, or a max over one axis."""

    def __init__(self, members: Sequence[Any]) -> None:
        first = members[0]
        self.axis = first.axis
        if self.axis is None:
            self.size = tuple(int(v) for v in np.ravel(first.size))
            self.stride = tuple(int(v) for v in np.ravel(first.stride))
            if len(self.size) != 2 or len(self.stride) != 2:
                raise _UnsupportedError(f"MaxPoolLayer with size={first.size!r}")
        elif first.stride is not None:
            raise _UnsupportedError("MaxPoolLayer with both axis and stride")

    def __call__(self, x: Tensor) -> Tensor:
        if self.axis is not None:
            return x.amax(dim=_member_dim(self.axis, x.dim()))
        planar = x.dim() == 3
        if planar:
            x = x.unsqueeze(-1)
        members, frames, bins, channels = x.shape
        # madmom slices a maximum filter; these are the window counts it keeps
        counts = [
            len(range(size // 2, n - (size - 1) // 2, step))
            for n, size, step in zip((frames, bins), self.size, self.stride, strict=True)
        ]
        if 0 in counts:
            out = x.new_zeros(members, counts[0], counts[1], channels)
        else:
            out = F.max_pool2d(x.permute(0, 3, 1, 2), self.size, self.stride).permute(0, 2, 3, 1)
        return out.squeeze(-1) if planar else out


class _Pad:
    """PadLayer: a constant border of `width` on the given axes."""

    def __init__(self, members: Sequence[Any]) -> None:
        first = members[0]
        self.width = int(first.width)
        self.axes = tuple(int(a) for a in first.axes)
        self.value = float(first.value)

    def __call__(self, x: Tensor) -> Tensor:
        n = x.dim()
        pads = [0] * (2 * (n - 1))
        for axis in self.axes:
            from_end = n - 1 - _member_dim(axis, n)
            pads[2 * from_end] = pads[2 * from_end + 1] = self.width
        return F.pad(x, pads, value=self.value)


class _Average:
    """AverageLayer: the mean over some of each member's axes."""

    def __init__(self, members: Sequence[Any]) -> None:
        first = members[0]
        if first.dtype is not None:
            raise _UnsupportedError("AverageLayer with a dtype")
        self.axis = first.axis
        self.keepdims = bool(first.keepdims)

    def __call__(self, x: Tensor) -> Tensor:
        n = x.dim()
        if self.axis is None:
            dims = tuple(range(1, n))
        else:
            axes = self.axis if isinstance(self.axis, tuple | list) else (self.axis,)
            dims = tuple(_member_dim(a, n) for a in axes)
        return x.mean(dim=dims, keepdim=self.keepdims)


class _Stride:
    """StrideLayer: overlapping blocks of `block_size` frames, each flattened."""

    def __init__(self, members: Sequence[Any]) -> None:
        self.block_size = int(members[0].block_size)

    def __call__(self, x: Tensor) -> Tensor:
        blocks = x.unfold(1, self.block_size, 1).movedim(-1, 2)
        return blocks.reshape(x.shape[0], blocks.shape[1], -1)


class _Reshape:
    """ReshapeLayer in C order."""

    def __init__(self, members: Sequence[Any]) -> None:
        first = members[0]
        if first.order != "C":
            raise _UnsupportedError(f"ReshapeLayer with order={first.order!r}")
        shape = first.newshape
        self.shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)

    def __call__(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)


class _Transpose:
    """TransposeLayer: permute each member's axes."""

    def __init__(self, members: Sequence[Any]) -> None:
        axes = members[0].axes
        self.axes = None if axes is None else tuple(int(a) for a in axes)

    def __call__(self, x: Tensor) -> Tensor:
        n = x.dim()
        if self.axes is None:
            return x.permute(0, *range(n - 1, 0, -1))
        return x.permute(0, *(_member_dim(a, n) for a in self.axes))


class _Sequential:
    """SequentialLayer: its sub-layers one after the other."""

    def __init__(self, members: Sequence[Any]) -> None:
        self.layers = _convert_layers([m.layers for m in members])

    def __call__(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def _step_relu(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=out)


# Activations a recurrent step may use: madmom's own numpy functions (relu rewritten because
# madmom passes `out` positionally, which numpy deprecates).
_STEP_ACTIVATIONS = {
    None: mm_act.linear,
    mm_act.linear: mm_act.linear,
    mm_act.tanh: mm_act.tanh,
    mm_act.sigmoid: mm_act.sigmoid,
    mm_act.relu: _step_relu,
    mm_act.elu: mm_act.elu,
}
StepActivation = Callable[..., np.ndarray]


def _step_activation(fn: object) -> StepActivation:
    try:
        return _STEP_ACTIVATIONS[fn]
    except (KeyError, TypeError):
        raise _UnsupportedError(f"recurrent activation function {fn!r}") from None


def _f32(array: Any) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


class _Recurrent:
    """Recurrent layers of one kind for every member and direction, stepped together.

    Built from one tuple of layers per member: (layer,) or (forward, backward). The input
    projection x W + b of all frames is one batched torch product; backward members see it in
    reverse time. The frame loop then runs in numpy on preallocated buffers laid out
    (gate, member * direction, 1, hidden) so that every operation is on contiguous memory.
    Why numpy: each step is a dozen microsecond-sized operations, numpy's overhead per call is
    lower, and torch dispatches small batched products over its intra-op threads; with two
    threads on a loaded two-core machine every frame then waited for a thread wake-up (about
    100x slower).
    """

    gates: int

    def __init__(self, members: Sequence[Sequence[Any]]) -> None:
        self.directions = len(members[0])
        layers = [layer for member in members for layer in member]
        self.hidden = self._parts(layers[0])[0].bias.size
        self.weight = torch.from_numpy(
            np.stack(
                [
                    np.concatenate(
                        [_f32(p.weights) for layer in member for p in self._parts(layer)], axis=1
                    )
                    for member in members
                ]
            )
        )
        self.bias = torch.from_numpy(
            np.stack(
                [
                    np.concatenate([_f32(p.bias) for layer in member for p in self._parts(layer)])
                    for member in members
                ]
            )
        ).unsqueeze(1)
        # (gate, member * direction, hidden, hidden)
        self.recurrent = np.ascontiguousarray(
            np.stack(
                [[_f32(p.recurrent_weights) for p in self._parts(layer)] for layer in layers]
            ).swapaxes(0, 1)
        )
        self.init = self._vectors([layer.init for layer in layers])

    def _parts(self, layer: Any) -> Sequence[Any]:
        """The layer's gates and cell, each with weights, bias and recurrent_weights."""
        raise NotImplementedError

    def _vectors(self, vectors: Sequence[Any]) -> np.ndarray:
        """(member * direction, 1, hidden) stack of per-layer vectors."""
        return np.stack([np.broadcast_to(_f32(v), (self.hidden,)) for v in vectors])[:, None, :]

    def __call__(self, x: Tensor) -> Tensor:
        """(members, frames, inputs) -> (members, frames, directions * hidden)."""
        members, frames = x.shape[:2]
        gates, directions, hidden = self.gates, self.directions, self.hidden
        projected = torch.baddbmm(self.bias, x, self.weight).numpy()
        projected = projected.reshape(members, frames, directions, gates, hidden)
        # numpy rearranges with negative strides, so time reversal costs no extra copy
        steps = np.empty((frames, gates, members, directions, hidden), dtype=np.float32)
        steps[..., 0, :] = projected[:, :, 0].transpose(1, 2, 0, 3)
        if directions == 2:
            steps[..., 1, :] = projected[:, ::-1, 1].transpose(1, 2, 0, 3)
        del projected
        shape = (frames, gates, members * directions, 1, hidden)
        outputs = self._run(steps.reshape(shape)).reshape(frames, members, directions, hidden)
        out = np.empty((members, frames, directions, hidden), dtype=np.float32)
        out[:, :, 0] = outputs[:, :, 0].transpose(1, 0, 2)
        if directions == 2:
            out[:, :, 1] = outputs[::-1, :, 1].transpose(1, 0, 2)
        return torch.from_numpy(out.reshape(members, frames, directions * hidden))

    def _run(self, steps: np.ndarray) -> np.ndarray:
        """(frames, gates, B, 1, hidden) projected inputs -> (frames, B, 1, hidden) outputs."""
        raise NotImplementedError


class _SimpleRecurrent(_Recurrent):
    """RecurrentLayer: h_t = f(x_t W + b + h_{t-1} R)."""

    gates = 1

    def __init__(self, members: Sequence[Sequence[Any]]) -> None:
        super().__init__(members)
        self.activation = _step_activation(members[0][0].activation_fn)

    def _parts(self, layer: Any) -> Sequence[Any]:
        return (layer,)

    def _run(self, steps: np.ndarray) -> np.ndarray:
        out = np.empty(steps.shape[:1] + steps.shape[2:], dtype=np.float32)
        recurrent = self.recurrent[0]
        prev = self.init
        for x_t, h_t in zip(steps[:, 0], out, strict=True):
            np.matmul(prev, recurrent, out=h_t)
            h_t += x_t
            self.activation(h_t, h_t)
            prev = h_t
        return out


class _LSTM(_Recurrent):
    """LSTMLayer with peephole connections (input and forget gates on c_{t-1}, output on c_t)."""

    gates = 4

    def __init__(self, members: Sequence[Sequence[Any]]) -> None:
        super().__init__(members)
        layers = [layer for member in members for layer in member]
        zeros = np.zeros(self.hidden, dtype=np.float32)

        def peepholes(gate: str) -> np.ndarray:
            return self._vectors(
                [
                    zeros
                    if getattr(m, gate).peephole_weights is None
                    else getattr(m, gate).peephole_weights
                    for m in layers
                ]
            )

        self.peephole_if = np.stack([peepholes("input_gate"), peepholes("forget_gate")])
        self.peephole_o = peepholes("output_gate")
        self.cell_init = self._vectors([m.cell_init for m in layers])
        first = layers[0]
        self.input_activation = _step_activation(first.input_gate.activation_fn)
        self.forget_activation = _step_activation(first.forget_gate.activation_fn)
        self.cell_activation = _step_activation(first.cell.activation_fn)
        self.output_activation = _step_activation(first.output_gate.activation_fn)
        self.activation = _step_activation(first.activation_fn)

    def _parts(self, layer: Any) -> Sequence[Any]:
        return (layer.input_gate, layer.forget_gate, layer.cell, layer.output_gate)

    def _run(self, steps: np.ndarray) -> np.ndarray:
        states = np.empty((len(steps), 2, *steps.shape[2:]), dtype=np.float32)
        z = np.empty(steps.shape[1:], dtype=np.float32)
        z_if, z_i, z_f, z_c, z_o = z[:2], z[0], z[1], z[2], z[3]
        peep = np.empty_like(z_if)
        tmp = np.empty_like(z_c)
        joint = self.input_activation is self.forget_activation
        h_prev, c_prev = self.init, self.cell_init
        for x_t, (h_t, c_t) in zip(steps, states, strict=True):
            np.matmul(h_prev, self.recurrent, out=z)
            z += x_t
            np.multiply(c_prev, self.peephole_if, out=peep)
            z_if += peep
            if joint:
                self.input_activation(z_if, z_if)
            else:
                self.input_activation(z_i, z_i)
                self.forget_activation(z_f, z_f)
            self.cell_activation(z_c, z_c)
            np.multiply(z_c, z_i, out=c_t)
            np.multiply(c_prev, z_f, out=tmp)
            c_t += tmp
            np.multiply(c_t, self.peephole_o, out=tmp)
            z_o += tmp
            self.output_activation(z_o, z_o)
            self.activation(c_t, h_t)
            h_t *= z_o
            h_prev, c_prev = h_t, c_t
        return states[:, 0]


class _GRU(_Recurrent):
    """GRULayer (Cho et al. 2014): h_t = u c + (1 - u) h_{t-1}, c = f(x W + b + r (h R))."""

    gates = 3

    def __init__(self, members: Sequence[Sequence[Any]]) -> None:
        super().__init__(members)
        first = members[0][0]
        if any(getattr(p, "peephole_weights", None) is not None for p in self._parts(first)):
            raise _UnsupportedError("GRULayer with peephole weights")
        self.reset_activation = _step_activation(first.reset_gate.activation_fn)
        self.update_activation = _step_activation(first.update_gate.activation_fn)
        self.cell_activation = _step_activation(first.cell.activation_fn)

    def _parts(self, layer: Any) -> Sequence[Any]:
        return (layer.reset_gate, layer.update_gate, layer.cell)

    def _run(self, steps: np.ndarray) -> np.ndarray:
        out = np.empty(steps.shape[:1] + steps.shape[2:], dtype=np.float32)
        recurrent = np.empty(steps.shape[1:], dtype=np.float32)
        recurrent_ru, recurrent_c = recurrent[:2], recurrent[2]
        gates = np.empty_like(recurrent_ru)
        reset, update = gates[0], gates[1]
        joint = self.reset_activation is self.update_activation
        cell = np.empty_like(reset)
        keep = np.empty_like(reset)
        prev = self.init
        for x_ru, x_c, h_t in zip(steps[:, :2], steps[:, 2], out, strict=True):
            np.matmul(prev, self.recurrent, out=recurrent)
            np.add(x_ru, recurrent_ru, out=gates)
            if joint:
                self.reset_activation(gates, gates)
            else:
                self.reset_activation(reset, reset)
                self.update_activation(update, update)
            np.multiply(reset, recurrent_c, out=cell)
            cell += x_c
            self.cell_activation(cell, cell)
            np.multiply(update, cell, out=h_t)
            np.subtract(1, update, out=keep)
            keep *= prev
            h_t += keep
            prev = h_t
        return out


_RECURRENT: dict[type, type[_Recurrent]] = {
    mm_layers.RecurrentLayer: _SimpleRecurrent,
    mm_layers.LSTMLayer: _LSTM,
    mm_layers.GRULayer: _GRU,
}


def _unidirectional(members: Sequence[Any]) -> _Recurrent:
    return _RECURRENT[type(members[0])]([(m,) for m in members])


def _bidirectional(members: Sequence[Any]) -> _Recurrent:
    """BidirectionalLayer: forward and time-reversed layers, outputs side by side."""
    forward, backward = members[0].fwd_layer, members[0].bwd_layer
    kind = type(forward)
    if kind not in _RECURRENT or _signature(forward) != _signature(backward):
        raise _UnsupportedError(
            "BidirectionalLayer whose directions are not the same kind of recurrent layer"
        )
    return _RECURRENT[kind]([(m.fwd_layer, m.bwd_layer) for m in members])


_LayerModule = Callable[[Tensor], Tensor]
_CONVERTERS: dict[type, Callable[[Sequence[Any]], _LayerModule]] = {
    mm_layers.FeedForwardLayer: _Dense,
    mm_layers.BatchNormLayer: _BatchNorm,
    mm_layers.ConvolutionalLayer: _Conv,
    mm_layers.MaxPoolLayer: _MaxPool,
    mm_layers.PadLayer: _Pad,
    mm_layers.AverageLayer: _Average,
    mm_layers.StrideLayer: _Stride,
    mm_layers.ReshapeLayer: _Reshape,
    mm_layers.TransposeLayer: _Transpose,
    mm_layers.SequentialLayer: _Sequential,
    mm_layers.RecurrentLayer: _unidirectional,
    mm_layers.LSTMLayer: _unidirectional,
    mm_layers.GRULayer: _unidirectional,
    mm_layers.BidirectionalLayer: _bidirectional,
}
SUPPORTED_LAYERS: tuple[str, ...] = tuple(sorted(kind.__name__ for kind in _CONVERTERS))


def _convert_layers(stacks: Sequence[Sequence[Any]]) -> list[_LayerModule]:
    """Batched torch layers for members whose layer lists have equal signatures."""
    converted = []
    for members in zip(*stacks, strict=True):
        kind = type(members[0])
        if kind not in _CONVERTERS:
            raise _UnsupportedError(f"layer type {kind.__name__}")
        converted.append(_CONVERTERS[kind](members))
    return converted


class _BatchedNetworks:
    """Networks of one architecture evaluated together; output has one row per network."""

    def __init__(self, networks: Sequence[Any]) -> None:
        self.size = len(networks)
        self.layers = _convert_layers([n.layers for n in networks])

    def __call__(self, x: Tensor) -> Tensor:
        x = x.expand(self.size, *x.shape)
        for layer in self.layers:
            x = layer(x)
        return x


class TorchNetworkProcessor(Processor):
    """A madmom `NeuralNetwork` or `NeuralNetworkEnsemble` evaluated with PyTorch.

    `process(data)` returns what the replaced network or ensemble returned: each network's
    squeezed float32 activations, for an ensemble passed as a list to its `ensemble_fn`
    (madmom's `average_predictions` by default; the list itself when it is None).
    """

    def __init__(
        self,
        networks: Sequence[Any],
        *,
        ensemble: bool,
        ensemble_fn: Callable[[list[np.ndarray]], Any] | None = average_predictions,
    ) -> None:
        """Convert the networks' weights.

        Args:
            networks: madmom `NeuralNetwork` objects, one unless `ensemble` is true.
            ensemble: Behave as a `NeuralNetworkEnsemble` rather than a single network.
            ensemble_fn: Combines the ensemble's per-network predictions.

        Raises:
            ParameterError: A network is missing, not a madmom network, or holds a layer or
                activation this port does not implement.
        """
        if not networks or (not ensemble and len(networks) != 1):
            raise ParameterError(
                f"expected {'at least one network' if ensemble else 'one network'}, "
                f"got {len(networks)}"
            )
        for network in networks:
            if not isinstance(network, NeuralNetwork):
                raise ParameterError(f"not a madmom NeuralNetwork: {type(network).__name__}")
        self.ensemble = ensemble
        self.ensemble_fn = ensemble_fn
        self.num_networks = len(networks)
        groups: dict[Hashable, list[int]] = {}
        for index, network in enumerate(networks):
            groups.setdefault(_signature(network.layers), []).append(index)
        try:
            self._groups = [
                (indices, _BatchedNetworks([networks[i] for i in indices]))
                for indices in groups.values()
            ]
        except _UnsupportedError as exc:
            raise ParameterError(
                f"cannot run this madmom network in PyTorch: unsupported {exc}; "
                f"supported layers: {', '.join(SUPPORTED_LAYERS)}"
            ) from None

    def process(self, data: Any, *, reset: bool = True, **kwargs: Any) -> Any:
        """Activate the network(s) with `data`, shaped (frames, features[, channels]).

        Raises:
            ParameterError: `data` is not a numeric array fitting the network, or `reset` is
                false (frame-by-frame online processing keeps madmom's numpy networks).
        """
        if not reset:
            raise ParameterError(
                "TorchNetworkProcessor processes whole sequences (reset=True); "
                "use madmom's numpy networks for online, frame-by-frame processing"
            )
        array = np.asarray(data)
        if array.dtype.kind not in "biuf":
            raise ParameterError(
                f"network input must be a numeric array, got {array.dtype} of shape {array.shape}"
            )
        if array.ndim < 2:
            array = array.reshape(1, -1)
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        predictions: list[Any] = [None] * self.num_networks
        with torch.inference_mode():
            for indices, networks in self._groups:
                try:
                    out = networks(x)
                except RuntimeError as exc:
                    raise ParameterError(
                        f"input of shape {array.shape} does not fit the network: {exc}"
                    ) from exc
                for row, index in enumerate(indices):
                    predictions[index] = out[row].contiguous().numpy().squeeze()
        if not self.ensemble:
            return predictions[0]
        return predictions if self.ensemble_fn is None else self.ensemble_fn(predictions)


def _ensemble_parts(ensemble: Any) -> tuple[list[Any], Any] | None:
    """(networks, ensemble_fn) of a `NeuralNetworkEnsemble` built the standard way, else None."""
    parts = ensemble.processors
    if len(parts) != 2 or not isinstance(parts[0], ParallelProcessor):
        return None
    networks = list(parts[0].processors)
    if not all(isinstance(n, NeuralNetwork) for n in networks):
        return None
    return networks, parts[1]


def accelerate(processor: P, *, strict: bool = True) -> P | TorchNetworkProcessor:
    """Swap every madmom network inside `processor` for a `TorchNetworkProcessor`.

    Walks `SequentialProcessor` / `ParallelProcessor` chains, lists and the attributes of other
    processors, replacing networks in place; returns `processor`, or its replacement when it
    is itself a network or ensemble. Example: `accelerate(RNNDownBeatProcessor())(signal)`.

    Args:
        processor: A madmom processor, network, ensemble or list of them.
        strict: Raise on a network this port cannot run; if false, keep it in numpy.

    Raises:
        ParameterError: `strict` and a network holds an unsupported layer or activation.
    """
    if isinstance(processor, NeuralNetwork):
        return _accelerated([processor], ensemble=False, fallback=processor, strict=strict)
    if isinstance(processor, NeuralNetworkEnsemble):
        parts = _ensemble_parts(processor)
        if parts is not None:
            networks, ensemble_fn = parts
            return _accelerated(
                networks, ensemble=True, ensemble_fn=ensemble_fn, fallback=processor, strict=strict
            )
    if isinstance(processor, list):
        processor[:] = [accelerate(item, strict=strict) for item in processor]
    elif isinstance(processor, SequentialProcessor):
        processor.processors = [accelerate(item, strict=strict) for item in processor.processors]
    elif isinstance(processor, Processor):
        for name, value in vars(processor).items():
            if isinstance(value, Processor | list):
                setattr(processor, name, accelerate(value, strict=strict))
    return processor


def _accelerated(
    networks: list[Any],
    *,
    ensemble: bool,
    fallback: P,
    strict: bool,
    ensemble_fn: Callable[[list[np.ndarray]], Any] | None = average_predictions,
) -> P | TorchNetworkProcessor:
    try:
        return TorchNetworkProcessor(networks, ensemble=ensemble, ensemble_fn=ensemble_fn)
    except ParameterError:
        if strict:
            raise
        return fallback
