"""musicnn audio tagging (Pons & Serra, 2019) in PyTorch, loading the original TF checkpoints.

Four pretrained models ship as TensorFlow 1 checkpoints inside the `musicnn` wheel (install it
with `pip install --no-deps musicnn==0.1.0`; its TensorFlow dependency is never needed).
They are read with `polymuse.tools.tf_checkpoint` and mapped onto the modules below:

- `MTT_musicnn`, `MSD_musicnn`: musically motivated front end (timbral filters 7x38 and 7x67
  over mel bins, temporal filters 128/64/32 x 1, each ReLU -> batch norm -> max over
  frequency), mid end of three 7-frame convolutions with 64 filters and residual links (ReLU ->
  batch norm), back end of max+mean pooling over time -> batch norm -> dense 200 (ReLU) ->
  batch norm -> dense 50. The embedding is that batch-normalised dense-200 layer (musicnn's
  "penultimate" feature), 200 dimensions.
- `MTT_vgg`, `MSD_vgg`: five 3x3 convolutions with 128 filters (ReLU -> batch norm -> max
  pool), flatten, dense 50. The embedding is the flattened last pooling layer (`pool5`,
  2 x 1 x 128 = 256 dimensions), the input of the output layer. The two differ in their
  first two poolings: MTT_vgg pools 4x1 with stride 2x2 then 2x2, MSD_vgg 4x1 then 1x4
  (stride = size). The MSD pooling is read from the graph MSD_vgg was trained with (its
  `.meta` file); musicnn 0.1.0's own `models.py` builds MSD_vgg with the MTT pooling,
  which does not fit its weights.

Batch norms use TensorFlow's epsilon 0.001; dropout is inactive, as in musicnn's extractor,
which runs every layer with `is_training=False`.

The front end reproduces `musicnn.extractor.batch_data`: 16 kHz audio, power mel spectrogram
(librosa's defaults: periodic Hann window, centred frames with zero padding, Slaney mel
filters; FFT 512, hop 256, 96 bands), cast to float16 as the models were trained on, then
`log10(10000 * x + 1)` in float16, cut into non-overlapping 187-frame (3 s) patches.
One deliberate difference: musicnn's float16 product overflows to infinity when a mel bin
exceeds 6.55 (a sine louder than about -19 dBFS), which turns the tags into NaN; here the
product saturates at float16's largest value instead (log-mel 4.816), the largest value
musicnn's float16 input representation can hold.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soxr
import torch
from torch import nn
from torch.nn import functional as F

from polymuse.errors import ModelUnavailableError, ParameterError
from polymuse.tools.tf_checkpoint import read_checkpoint

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187
TF_BN_EPSILON = 1e-3
_FLOAT16_MAX = float(np.finfo(np.float16).max)

Architecture = Literal["musicnn", "vgg", "vgg_msd"]
Pooling = tuple[tuple[int, int], tuple[int, int]]
"""Max pooling (size, stride) over (time, frequency)."""

VGG_POOLS: dict[str, tuple[Pooling, ...]] = {
    "vgg": (
        ((4, 1), (2, 2)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((4, 4), (4, 4)),
    ),
    "vgg_msd": (
        ((4, 1), (4, 1)),
        ((1, 4), (1, 4)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((4, 4), (4, 4)),
    ),
}

MODELS: dict[str, tuple[Architecture, str]] = {
    "MTT_musicnn": ("musicnn", "MTT_LABELS"),
    "MSD_musicnn": ("musicnn", "MSD_LABELS"),
    "MTT_vgg": ("vgg", "MTT_LABELS"),
    "MSD_vgg": ("vgg_msd", "MSD_LABELS"),
}
"""Models in the musicnn wheel: name -> (architecture, tag list in musicnn.configuration)."""

EMBEDDING_LAYERS: dict[Architecture, tuple[str, int]] = {
    "musicnn": ("penultimate: batch-normalised dense layer before the output", 200),
    "vgg": ("pool5: flattened last max-pooling layer before the output", 256),
    "vgg_msd": ("pool5: flattened last max-pooling layer before the output", 256),
}

MODEL_CARD: dict[str, str] = {
    "name": "musicnn",
    "models": ", ".join(MODELS),
    "source": "https://github.com/jordipons/musicnn (package musicnn 0.1.0 on PyPI)",
    "authors": "Jordi Pons and Xavier Serra (Music Technology Group, Universitat Pompeu Fabra)",
    "paper": "musicnn: pre-trained convolutional neural networks for music audio tagging, "
    "ISMIR 2019 late-breaking demo",
    "training_data": "MagnaTagATune (MTT_*), Million Song Dataset (MSD_*)",
    "licence": "ISC",
    "install": "pip install --no-deps musicnn==0.1.0",
    "port": "PyTorch re-implementation in polymuse; weights read from the TF1 checkpoints",
}


@dataclass(frozen=True)
class MusicnnResult:
    """Tags and embeddings of one recording, one row per 3 s patch."""

    model: str
    tags: list[str]
    frame_times: np.ndarray
    """Centre of each patch in seconds, shape (n_patches,)."""
    probabilities: np.ndarray
    """Sigmoid tag probabilities, shape (n_patches, n_tags)."""
    patch_embeddings: np.ndarray
    """Embedding-layer activations per patch, shape (n_patches, embedding_dim)."""
    embedding: np.ndarray
    """Mean of `patch_embeddings` over patches, shape (embedding_dim,)."""
    embedding_layer: str


class _ConvBlock(nn.Module):
    """Conv2d -> ReLU -> batch norm, the order of every musicnn/vgg convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel)
        self.bn = nn.BatchNorm2d(out_channels, eps=TF_BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))

    def max_over_frequency(self, x: torch.Tensor) -> torch.Tensor:
        """`forward(x).amax(dim=3)`, pooling before the ReLU and batch norm.

        Both are monotonic per channel (increasing where gamma >= 0, decreasing otherwise),
        so taking the max, or the min for decreasing channels, first gives the same floats
        while sparing the full-size ReLU and batch-norm passes.
        """
        z = self.conv(x)
        increasing = (self.bn.weight >= 0).view(1, -1, 1, 1)
        z = torch.where(increasing, z.amax(dim=3, keepdim=True), z.amin(dim=3, keepdim=True))
        return self.bn(F.relu(z)).squeeze(3)


class MusicnnNet(nn.Module):
    """musicnn network: (batch, frames, mels) log-mel patches -> (logits, penultimate)."""

    def __init__(
        self,
        *,
        n_mels: int = N_MELS,
        n_classes: int = 50,
        midend_filters: int = 64,
        backend_units: int = 200,
    ) -> None:
        super().__init__()
        timbral_filters, temporal_filters = int(1.6 * 128), int(1.6 * 32)
        self.input_bn = nn.BatchNorm2d(1, eps=TF_BN_EPSILON)
        self.timbral = nn.ModuleList(
            _ConvBlock(1, timbral_filters, (7, int(share * n_mels))) for share in (0.4, 0.7)
        )
        self.temporal_lengths = (128, 64, 32)
        self.temporal = nn.ModuleList(
            _ConvBlock(1, temporal_filters, (length, 1)) for length in self.temporal_lengths
        )
        frontend_channels = 2 * timbral_filters + 3 * temporal_filters
        self.midend = nn.ModuleList(
            _ConvBlock(1, midend_filters, (7, width))
            for width in (frontend_channels, midend_filters, midend_filters)
        )
        pooled = 2 * (frontend_channels + 3 * midend_filters)
        self.pool_bn = nn.BatchNorm1d(pooled, eps=TF_BN_EPSILON)
        self.dense = nn.Linear(pooled, backend_units)
        self.dense_bn = nn.BatchNorm1d(backend_units, eps=TF_BN_EPSILON)
        self.output = nn.Linear(backend_units, n_classes)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input_bn(mel.unsqueeze(1))  # (B, 1, T, F)
        # Zero padding goes after the input batch norm, as in the TF graph.
        padded = F.pad(x, (0, 0, 3, 3))
        features = [block.max_over_frequency(padded) for block in self.timbral]
        for length, block in zip(self.temporal_lengths, self.temporal, strict=True):
            # TF "same" padding: the extra row of an even kernel goes at the end.
            same = F.pad(x, (0, 0, (length - 1) // 2, length // 2))
            features.append(block.max_over_frequency(same))
        frontend = torch.cat(features, dim=1)  # (B, C, T)
        layers = [frontend]
        h = frontend
        for i, block in enumerate(self.midend):
            # Each mid-end conv spans all channels: treat channels as the kernel's width.
            out = block(F.pad(h.transpose(1, 2).unsqueeze(1), (0, 0, 3, 3))).squeeze(3)
            h = out if i == 0 else out + h
            layers.append(h)
        midend = torch.cat(layers, dim=1)  # (B, C', T)
        pooled = torch.stack([midend.amax(dim=2), midend.mean(dim=2)], dim=2).flatten(1)
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return self.output(penultimate), penultimate


class VggNet(nn.Module):
    """musicnn's VGG baseline: (batch, frames, mels) log-mel patches -> (logits, pool5)."""

    def __init__(
        self,
        *,
        n_classes: int = 50,
        filters: int = 128,
        pools: Sequence[Pooling] = VGG_POOLS["vgg"],
    ) -> None:
        super().__init__()
        if len(pools) != 5:
            raise ParameterError(f"VggNet needs 5 poolings, got {len(pools)}")
        self.input_bn = nn.BatchNorm2d(1, eps=TF_BN_EPSILON)
        self.blocks = nn.ModuleList(
            _ConvBlock(1 if i == 0 else filters, filters, (3, 3)) for i in range(5)
        )
        self.pools = nn.ModuleList(nn.MaxPool2d(size, stride=stride) for size, stride in pools)
        frames, mels = PATCH_FRAMES, N_MELS
        for (size_t, size_f), (stride_t, stride_f) in pools:
            frames, mels = (frames - size_t) // stride_t + 1, (mels - size_f) // stride_f + 1
        self.output = nn.Linear(frames * mels * filters, n_classes)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input_bn(mel.unsqueeze(1))
        for block, pool in zip(self.blocks, self.pools, strict=True):
            x = pool(block(F.pad(x, (1, 1, 1, 1))))
        # TF flattens NHWC: time, then frequency, then channel.
        pool5 = x.permute(0, 2, 3, 1).flatten(1)
        return self.output(pool5), pool5


def build_network(architecture: Architecture, *, n_classes: int = 50) -> nn.Module:
    """An untrained network for 187 x 96 patches: 'musicnn', 'vgg' (MTT) or 'vgg_msd'."""
    if architecture == "musicnn":
        return MusicnnNet(n_classes=n_classes)
    if architecture in VGG_POOLS:
        return VggNet(n_classes=n_classes, pools=VGG_POOLS[architecture])
    raise ParameterError(
        f"unknown musicnn architecture {architecture!r}; use 'musicnn', 'vgg' or 'vgg_msd'"
    )


def load_tf_weights(network: nn.Module, tensors: dict[str, np.ndarray]) -> None:
    """Copy TF checkpoint variables into `network` (every parameter and buffer must match).

    Args:
        network: A `MusicnnNet` or `VggNet`.
        tensors: TF variable name -> array, as `tf_checkpoint.read_checkpoint` returns.

    Raises:
        ParameterError: `network` is of another class.
        ModelUnavailableError: A variable is missing or has the wrong shape.
    """
    if isinstance(network, MusicnnNet):
        plan: list[tuple[str, str]] = [("input_bn", "batch_normalization")]
        convs = [f"timbral.{i}" for i in range(2)]
        convs += [f"temporal.{i}" for i in range(3)] + [f"midend.{i}" for i in range(3)]
        for i, module in enumerate(convs):
            plan += [(f"{module}.conv", _tf_name("conv2d", i))]
            plan += [(f"{module}.bn", _tf_name("batch_normalization", i + 1))]
        plan += [("pool_bn", "batch_normalization_9"), ("dense", "dense")]
        plan += [("dense_bn", "batch_normalization_10"), ("output", "dense_1")]
    elif isinstance(network, VggNet):
        plan = [("input_bn", "batch_normalization"), ("output", "dense")]
        for i in range(5):
            plan += [(f"blocks.{i}.conv", f"{i + 1}CNN")]
            plan += [(f"blocks.{i}.bn", f"batch_normalization_{i + 1}")]
    else:
        raise ParameterError(f"no TF weight mapping for {type(network).__name__}")
    modules = dict(network.named_modules())
    state: dict[str, torch.Tensor] = {}
    for module_name, tf_name in plan:
        module = modules[module_name]
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            for torch_key, tf_key in (
                ("weight", "gamma"),
                ("bias", "beta"),
                ("running_mean", "moving_mean"),
                ("running_var", "moving_variance"),
            ):
                state[f"{module_name}.{torch_key}"] = _tensor(tensors, f"{tf_name}/{tf_key}")
            state[f"{module_name}.num_batches_tracked"] = torch.tensor(0)
        elif isinstance(module, nn.Conv2d):
            # TF kernels are (height, width, in, out); torch wants (out, in, height, width).
            kernel = _tensor(tensors, f"{tf_name}/kernel").permute(3, 2, 0, 1)
            state[f"{module_name}.weight"] = kernel
            state[f"{module_name}.bias"] = _tensor(tensors, f"{tf_name}/bias")
        else:
            state[f"{module_name}.weight"] = _tensor(tensors, f"{tf_name}/kernel").T
            state[f"{module_name}.bias"] = _tensor(tensors, f"{tf_name}/bias")
    expected = network.state_dict()
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ModelUnavailableError(
                f"checkpoint tensor for {key} has shape {tuple(value.shape)}, "
                f"the network needs {tuple(expected[key].shape)}"
            )
    network.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True)


def log_mel(waveform: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """musicnn's input representation: (frames, 96) float16 log-compressed mel spectrogram.

    Args:
        waveform: Mono audio, shape (samples,), any float dtype, nominally within [-1, 1].
        sample_rate: Its sample rate in Hz; resampled to 16 kHz with soxr (librosa's default).

    Raises:
        ParameterError: The waveform is not a finite 1-D array or the rate is not positive.
    """
    y = _check_waveform(waveform, sample_rate)
    if sample_rate != SAMPLE_RATE:
        y = soxr.resample(y, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    # librosa frames float32 audio, windows and transforms it in float64, stores complex64.
    spectrum = torch.stft(
        torch.from_numpy(y.astype(np.float64)),
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        window=torch.hann_window(N_FFT, periodic=True, dtype=torch.float64),
        center=True,
        pad_mode="constant",
        return_complex=True,
    ).to(torch.complex64)
    power = spectrum.abs() ** 2
    mel = (_mel_basis() @ power).T.numpy()
    # float16 arithmetic as musicnn does it (the training data were stored as float16),
    # saturating where musicnn's product would overflow.
    mel16 = np.minimum(mel, _FLOAT16_MAX).astype(np.float16)
    with np.errstate(over="ignore"):
        scaled = np.minimum(np.float16(10000) * mel16, np.float16(_FLOAT16_MAX))
    return np.log10(scaled + np.float16(1))


def patch_starts(n_frames: int, *, hop_frames: int = PATCH_FRAMES) -> np.ndarray:
    """First frame of each 187-frame patch, as musicnn's `batch_data` cuts them."""
    if hop_frames < 1:
        raise ParameterError(f"hop_frames must be at least 1, got {hop_frames}")
    return np.arange(0, n_frames - PATCH_FRAMES + 1, hop_frames)


class MusicnnTagger:
    """A loaded musicnn model: waveform in, per-patch tags and embeddings out."""

    def __init__(
        self,
        *,
        model: str,
        architecture: Architecture,
        network: nn.Module,
        tags: Sequence[str],
        device: str | torch.device = "cpu",
    ) -> None:
        if architecture not in EMBEDDING_LAYERS:
            raise ParameterError(
                f"unknown musicnn architecture {architecture!r}; "
                f"use one of {', '.join(EMBEDDING_LAYERS)}"
            )
        self.model = model
        self.architecture: Architecture = architecture
        self.tags = list(tags)
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()

    @classmethod
    def from_package(
        cls, model: str = "MTT_musicnn", *, device: str | torch.device = "cpu"
    ) -> MusicnnTagger:
        """Load one of the models shipped in the `musicnn` wheel.

        Args:
            model: One of `MODELS`.
            device: Torch device to run the network on.

        Raises:
            ParameterError: `model` is not one of `MODELS`.
            ModelUnavailableError: The musicnn package is not installed or its files are bad.
        """
        if model not in MODELS:
            raise ParameterError(f"unknown musicnn model {model!r}; available: {', '.join(MODELS)}")
        try:
            from musicnn import configuration
        except ImportError as exc:
            raise ModelUnavailableError(
                f"musicnn weights are not installed; run `{MODEL_CARD['install']}`"
            ) from exc
        architecture, labels = MODELS[model]
        prefix = Path(configuration.__file__).parent / model
        return cls.from_checkpoint(
            prefix,
            model=model,
            architecture=architecture,
            tags=getattr(configuration, labels),
            device=device,
        )

    @classmethod
    def from_checkpoint(
        cls,
        prefix: str | Path,
        *,
        model: str,
        architecture: Architecture,
        tags: Sequence[str],
        device: str | torch.device = "cpu",
    ) -> MusicnnTagger:
        """Load a musicnn/vgg TF1 checkpoint bundle saved under `prefix`.

        Args:
            prefix: Checkpoint prefix or directory (see `tf_checkpoint.read_checkpoint`).
            model: Name reported in results.
            architecture: 'musicnn', 'vgg' (MTT pooling) or 'vgg_msd' (MSD pooling).
            tags: Output labels, in the order of the network's outputs.
            device: Torch device to run the network on.

        Raises:
            ParameterError: Unknown architecture.
            ModelUnavailableError: The checkpoint is missing, corrupt or does not fit.
        """
        network = build_network(architecture, n_classes=len(tags))
        load_tf_weights(network, read_checkpoint(prefix))
        return cls(
            model=model, architecture=architecture, network=network, tags=tags, device=device
        )

    @property
    def embedding_layer(self) -> str:
        """Which layer `MusicnnResult.embedding` comes from."""
        return EMBEDDING_LAYERS[self.architecture][0]

    @property
    def embedding_dim(self) -> int:
        """Size of the embedding vector."""
        return EMBEDDING_LAYERS[self.architecture][1]

    def predict_patches(
        self, patches: np.ndarray, *, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on log-mel patches.

        Args:
            patches: Shape (n_patches, 187, 96), as `log_mel` makes them.
            batch_size: Patches per forward pass.

        Returns:
            Probabilities (n_patches, n_tags) and embeddings (n_patches, embedding_dim),
            float32.

        Raises:
            ParameterError: Wrong shape, non-finite values or a batch size below 1.
        """
        patches = np.asarray(patches)
        if patches.ndim != 3 or patches.shape[1:] != (PATCH_FRAMES, N_MELS):
            raise ParameterError(
                f"patches must have shape (n, {PATCH_FRAMES}, {N_MELS}), got {patches.shape}"
            )
        if not np.isfinite(patches).all():
            raise ParameterError("patches contain NaN or infinite values")
        if batch_size < 1:
            raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
        probabilities = np.empty((len(patches), len(self.tags)), dtype=np.float32)
        embeddings = np.empty((len(patches), self.embedding_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(patches), batch_size):
                batch = torch.from_numpy(patches[start : start + batch_size].astype(np.float32))
                logits, hidden = self.network(batch.to(self.device))
                stop = start + len(batch)
                probabilities[start:stop] = torch.sigmoid(logits).cpu().numpy()
                embeddings[start:stop] = hidden.cpu().numpy()
        return probabilities, embeddings

    def tag(
        self,
        waveform: np.ndarray,
        *,
        sample_rate: int,
        batch_size: int = 32,
        patch_hop_s: float | None = None,
    ) -> MusicnnResult:
        """Tag a mono waveform patch by patch.

        Args:
            waveform: Mono audio, shape (samples,), nominally within [-1, 1].
            sample_rate: Its sample rate in Hz (resampled to 16 kHz).
            batch_size: Patches per forward pass.
            patch_hop_s: Time between patch starts, rounded to whole 16 ms frames; None for
                musicnn's default of back-to-back 3 s patches (a trailing part shorter than
                3 s is not tagged).

        Raises:
            ParameterError: Bad waveform, rate, batch size or hop, or audio shorter than one
                patch (about 2.98 s).
        """
        if patch_hop_s is None:
            hop_frames = PATCH_FRAMES
        elif patch_hop_s > 0:
            hop_frames = max(1, round(patch_hop_s * SAMPLE_RATE / HOP_LENGTH))
        else:
            raise ParameterError(f"patch_hop_s must be positive, got {patch_hop_s}")
        mel = log_mel(waveform, sample_rate=sample_rate)
        starts = patch_starts(len(mel), hop_frames=hop_frames)
        if len(starts) == 0:
            seconds = (PATCH_FRAMES - 1) * HOP_LENGTH / SAMPLE_RATE
            raise ParameterError(
                f"audio of {len(waveform) / sample_rate:.2f} s is shorter than one musicnn "
                f"patch ({seconds:.2f} s)"
            )
        patches = np.stack([mel[s : s + PATCH_FRAMES] for s in starts])
        probabilities, embeddings = self.predict_patches(patches, batch_size=batch_size)
        centres = (starts + (PATCH_FRAMES - 1) / 2) * HOP_LENGTH / SAMPLE_RATE
        return MusicnnResult(
            model=self.model,
            tags=list(self.tags),
            frame_times=centres,
            probabilities=probabilities,
            patch_embeddings=embeddings,
            embedding=embeddings.mean(axis=0),
            embedding_layer=self.embedding_layer,
        )


def _tf_name(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def _tensor(tensors: dict[str, np.ndarray], name: str) -> torch.Tensor:
    if name not in tensors:
        raise ModelUnavailableError(f"checkpoint has no variable {name!r}; is it a musicnn model?")
    return torch.from_numpy(np.asarray(tensors[name], dtype=np.float32))


def _check_waveform(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise ParameterError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    y = np.asarray(waveform)
    if y.ndim != 1:
        raise ParameterError(f"waveform must be mono with shape (samples,), got {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"waveform must be floating point, got {y.dtype}")
    if not np.isfinite(y).all():
        raise ParameterError("waveform contains NaN or infinite samples")
    return y.astype(np.float32)


@functools.cache
def _mel_basis() -> torch.Tensor:
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS))
