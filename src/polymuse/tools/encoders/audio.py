"""Audio encoders: a registry of backends that turn a waveform into windows of embeddings
and, where the model has them, tag probabilities or a text tower in the same space.

Backends (`build_audio_encoder(spec, settings=...)`; `spec` is a name or `name:path`):

- `musicnn` (default, offline): the MTT and MSD musicnn taggers run on the same log-mel
  patches (see `MusicnnEncoder`).
- `clap`: transformers' `ClapModel` + `ClapProcessor` from a local folder (setting
  `clap_dir`); joint audio-text space.
- `clamp3`: CLaMP 3 (SAAS) from a local folder (setting `clamp3_dir`, MERT from `mert_dir`);
  joint audio-text space, multilingual text.
- `mert`: MERT (HuBERT-style) from a local folder (setting `mert_dir`); embeddings only.
- `muq`: MuQ or MuQ-MuLan from a local folder (setting `muq_dir`, needs the `muq` package);
  MuQ-MuLan has a joint audio-text space.
- `debug`: band energies and a fixed random tag head; deterministic, no weights, for tests.

Encoders with no tags and no text tower (MERT, plain MuQ) still give embeddings for
similarity search; the semantic reviewer then takes descriptor evidence from musicnn.
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polymuse.errors import ModelUnavailableError, ParameterError, UserError
from polymuse.report import ModelInfo


@dataclass(frozen=True)
class AudioEncoding:
    """What an encoder made of one recording, one row per analysed window."""

    encoder: str
    window_times: np.ndarray
    """Centre of each window in seconds, shape (n,)."""
    window_embeddings: np.ndarray
    """Shape (n, dim)."""
    embedding: np.ndarray
    """The recording's embedding: pooled over windows, unit length, shape (dim,)."""
    tags: tuple[str, ...] = ()
    """Qualified tag names ('MTT:piano'), empty when the model has no tagging head."""
    tag_probabilities: np.ndarray | None = None
    """Shape (n, len(tags)), or None."""
    window_seconds: float = 0.0
    """Length of one window."""
    extra: dict[str, np.ndarray] = field(default_factory=dict)


class AudioEncoder(ABC):
    """A loaded audio model. Subclasses set the class attributes and implement `encode`."""

    name: str
    sample_rate: int
    embedding_dim: int
    tags: tuple[str, ...] = ()
    tag_priors: np.ndarray | None = None
    """Each tag's prior probability, as the model itself implies it (see musicnn), or None."""
    joint_text: bool = False
    """Whether `encode_text` maps text into the audio embedding space."""

    @abstractmethod
    def encode(
        self, waveform: np.ndarray, *, sample_rate: int, max_windows: int | None = None
    ) -> AudioEncoding:
        """Encode mono audio; `max_windows` spreads at most that many windows over it."""

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors in the audio embedding space (joint models only)."""
        raise ModelUnavailableError(f"audio encoder {self.name} has no text tower")

    @property
    @abstractmethod
    def model_info(self) -> ModelInfo: ...


def spread(n_available: int, max_windows: int | None) -> np.ndarray:
    """Indices of at most `max_windows` of `n_available` windows, evenly spread, first and
    last included."""
    if max_windows is not None and max_windows < 1:
        raise ParameterError(f"max_windows must be at least 1, got {max_windows}")
    if max_windows is None or n_available <= max_windows:
        return np.arange(n_available)
    return np.unique(np.round(np.linspace(0, n_available - 1, max_windows)).astype(int))


def unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


class MusicnnEncoder(AudioEncoder):
    """The MTT and MSD musicnn taggers as one encoder.

    How the two are combined: both read the same 3 s log-mel patches (computed once). Their
    50 tags each form one 100-tag space, named 'MTT:<tag>' and 'MSD:<tag>' (tags both have,
    such as 'rock', stay separate, as the models disagree on them). The embedding of a window
    is both models' penultimate layer (200 each), standardised by that batch-norm layer's own
    training statistics ((x - beta) / gamma, so 0 is the training mean) and concatenated:
    400 dimensions. The recording's embedding is the mean over windows, unit length.
    Each tag's prior is the sigmoid of the output layer at the penultimate layer's training
    mean (beta): the model's answer for an average training clip.
    """

    name = "musicnn"

    def __init__(self, *, device: str = "cpu") -> None:
        from polymuse.tools.encoders import musicnn

        self._musicnn = musicnn
        self.taggers = [
            musicnn.MusicnnTagger.from_package(model, device=device)
            for model in ("MTT_musicnn", "MSD_musicnn")
        ]
        self.sample_rate = musicnn.SAMPLE_RATE
        self.tags = tuple(f"{t.model.split('_')[0]}:{tag}" for t in self.taggers for tag in t.tags)
        self.embedding_dim = sum(t.embedding_dim for t in self.taggers)
        import torch

        priors, self._standardise = [], []
        with torch.no_grad():
            for tagger in self.taggers:
                net = tagger.network
                beta = net.dense_bn.bias.detach().cpu()
                gamma = net.dense_bn.weight.detach().cpu().numpy()
                logits = net.output(beta.to(tagger.device)[None])[0].cpu().numpy()
                priors.append(1 / (1 + np.exp(-logits)))
                gamma = np.where(np.abs(gamma) > 1e-6, gamma, 1.0)
                self._standardise.append((beta.numpy(), gamma))
        self.tag_priors = np.concatenate(priors).astype(np.float32)

    def encode(
        self, waveform: np.ndarray, *, sample_rate: int, max_windows: int | None = None
    ) -> AudioEncoding:
        m = self._musicnn
        y = _mono_float(waveform, sample_rate)
        if sample_rate != m.SAMPLE_RATE:
            import soxr

            y = soxr.resample(y, sample_rate, m.SAMPLE_RATE, quality="HQ").astype(np.float32)
        n_frames = len(y) // m.HOP_LENGTH + 1
        starts = m.patch_starts(n_frames)
        if len(starts) == 0:
            raise ParameterError(
                f"audio of {len(y) / m.SAMPLE_RATE:.2f} s is shorter than one musicnn "
                f"patch ({(m.PATCH_FRAMES - 1) * m.HOP_LENGTH / m.SAMPLE_RATE:.2f} s)"
            )
        starts = starts[spread(len(starts), max_windows)]
        patches = np.stack([self._patch(y, int(s)) for s in starts])
        probabilities, embeddings = [], []
        with _without_onednn():
            for tagger, (beta, gamma) in zip(self.taggers, self._standardise, strict=True):
                p, e = tagger.predict_patches(patches)
                probabilities.append(p)
                embeddings.append((e - beta) / gamma)
        window_embeddings = np.concatenate(embeddings, axis=1).astype(np.float32)
        times = (starts + (m.PATCH_FRAMES - 1) / 2) * m.HOP_LENGTH / m.SAMPLE_RATE
        return AudioEncoding(
            encoder=self.name,
            window_times=times,
            window_embeddings=window_embeddings,
            embedding=unit(window_embeddings.mean(axis=0)),
            tags=self.tags,
            tag_probabilities=np.concatenate(probabilities, axis=1),
            window_seconds=m.PATCH_FRAMES * m.HOP_LENGTH / m.SAMPLE_RATE,
        )

    def _patch(self, y: np.ndarray, start: int) -> np.ndarray:
        """Log-mel frames start..start+187 of `y`, computing only the samples they cover.

        The mel front end centres frame k on sample k * hop with zero padding at the ends, so
        a segment from half a window before the first frame's centre to half a window after
        the last gives exactly the same frames as the whole signal would.
        """
        m = self._musicnn
        half = m.N_FFT // 2
        first = start * m.HOP_LENGTH - half
        last = (start + m.PATCH_FRAMES - 1) * m.HOP_LENGTH + half
        pad_left = max(0, -first)
        segment = y[max(first, 0) : last]
        segment = np.pad(segment, (pad_left, max(0, last - first - pad_left - len(segment))))
        # The segment's frame 1 is centred on sample `start * hop` of the whole signal.
        return m.log_mel(segment, sample_rate=m.SAMPLE_RATE)[1 : 1 + m.PATCH_FRAMES]

    @property
    def model_info(self) -> ModelInfo:
        card = self._musicnn.MODEL_CARD
        return ModelInfo(
            name="musicnn",
            version="MTT_musicnn + MSD_musicnn (musicnn 0.1.0), PyTorch port",
            source=card["source"],
            licence=card["licence"],
        )


DEBUG_TAGS = (
    "MTT:piano",
    "MTT:guitar",
    "MTT:drums",
    "MTT:choir",
    "MTT:quiet",
    "MTT:loud",
    "MTT:fast",
    "MTT:slow",
    "MSD:rock",
    "MSD:happy",
)


class DebugAudioEncoder(AudioEncoder):
    """Log energies in 16 bands of 1 s windows, and a fixed random tag head over them."""

    name = "debug"
    sample_rate = 16000
    embedding_dim = 16
    tags = DEBUG_TAGS

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self._head = rng.standard_normal((self.embedding_dim, len(self.tags))).astype(np.float32)
        self.tag_priors = np.full(len(self.tags), 0.1, dtype=np.float32)

    def encode(
        self, waveform: np.ndarray, *, sample_rate: int, max_windows: int | None = None
    ) -> AudioEncoding:
        y = _mono_float(waveform, sample_rate)
        if sample_rate != self.sample_rate:
            import soxr

            y = soxr.resample(y, sample_rate, self.sample_rate).astype(np.float32)
        n = len(y) // self.sample_rate
        if n == 0:
            raise ParameterError("the debug encoder needs at least 1 s of audio")
        index = spread(n, max_windows)
        frames = y[: n * self.sample_rate].reshape(n, self.sample_rate)[index]
        spectrum = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        bands = np.array_split(spectrum[:, 1:], self.embedding_dim, axis=1)
        energies = np.log10(np.stack([b.mean(axis=1) for b in bands], axis=1) + 1e-10)
        emb = (energies - energies.mean(axis=1, keepdims=True)).astype(np.float32)
        logits = emb @ self._head / 4
        return AudioEncoding(
            encoder=self.name,
            window_times=index + 0.5,
            window_embeddings=emb,
            embedding=unit(emb.mean(axis=0)),
            tags=self.tags,
            tag_probabilities=(1 / (1 + np.exp(-logits))).astype(np.float32),
            window_seconds=1.0,
        )

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(
            name="debug",
            version="band energies + fixed random tag head (test backend)",
            source="polymuse.tools.encoders.audio",
            licence="MIT",
        )


@dataclass(frozen=True)
class BackendArgs:
    """What a backend factory gets: its model folder, MERT's folder (CLaMP 3), the device."""

    folder: str | None = None
    mert_dir: str | None = None
    device: str = "cpu"

    def need_folder(self, name: str) -> str:
        if not self.folder:
            setting = MODEL_DIR_SETTINGS[name]
            raise UserError(
                f"the {name} audio encoder needs its model folder: set "
                f"POLYMUSE_{setting.upper()} (or {setting} in polymuse.toml), or use "
                f"audio_encoder = '{name}:/path'"
            )
        return self.folder


def _clap(args: BackendArgs) -> AudioEncoder:
    from polymuse.tools.encoders.clap import ClapEncoder

    return ClapEncoder(args.need_folder("clap"), device=args.device)


def _clamp3(args: BackendArgs) -> AudioEncoder:
    from polymuse.tools.encoders.clamp3 import Clamp3Encoder

    return Clamp3Encoder(args.need_folder("clamp3"), mert_dir=args.mert_dir, device=args.device)


def _mert(args: BackendArgs) -> AudioEncoder:
    from polymuse.tools.encoders.mert import MertEncoder

    return MertEncoder(args.need_folder("mert"), device=args.device)


def _muq(args: BackendArgs) -> AudioEncoder:
    from polymuse.tools.encoders.muq import MuqEncoder

    return MuqEncoder(args.need_folder("muq"), device=args.device)


AUDIO_ENCODERS: dict[str, Callable[[BackendArgs], AudioEncoder]] = {
    "musicnn": lambda args: MusicnnEncoder(device=args.device),
    "clap": _clap,
    "clamp3": _clamp3,
    "mert": _mert,
    "muq": _muq,
    "debug": lambda args: DebugAudioEncoder(),
}

MODEL_DIR_SETTINGS = {
    "clap": "clap_dir",
    "clamp3": "clamp3_dir",
    "mert": "mert_dir",
    "muq": "muq_dir",
}
"""Settings that name the local model folder of each backend with user-supplied weights."""


def build_audio_encoder(spec: str, *, settings: object = None, device: str = "cpu") -> AudioEncoder:
    """The audio encoder named by `spec` ('musicnn', 'clap', 'clap:/models/clap', ...).

    Settings are read with `getattr(settings, name, None)` for each backend's folder
    (`MODEL_DIR_SETTINGS`). Loaded encoders are kept per process.

    Raises:
        UserError: Unknown name (the message lists the valid ones) or no folder configured.
        ModelUnavailableError: The package or weights are missing or do not load.
    """
    name, _, path = spec.partition(":")
    if name not in AUDIO_ENCODERS:
        raise UserError(f"unknown audio encoder {name!r}; valid: {', '.join(AUDIO_ENCODERS)}")
    setting = MODEL_DIR_SETTINGS.get(name)
    folder = path or (str(getattr(settings, setting, None) or "") if setting else "")
    mert_dir = str(getattr(settings, "mert_dir", None) or "") if name == "clamp3" else ""
    return _build(
        name, BackendArgs(folder=folder or None, mert_dir=mert_dir or None, device=device)
    )


def encoder_status(settings: object) -> list[tuple[str, bool, str]]:
    """(backend, configured, detail) for each audio encoder, without loading any model:
    for `polymuse doctor`. musicnn and debug need no folder; the others are configured when
    their folder setting names an existing folder."""
    rows: list[tuple[str, bool, str]] = []
    for name in AUDIO_ENCODERS:
        setting = MODEL_DIR_SETTINGS.get(name)
        if setting is None:
            rows.append((name, True, "built in"))
            continue
        folder = getattr(settings, setting, None)
        if not folder:
            rows.append((name, False, f"set POLYMUSE_{setting.upper()} to its model folder"))
        elif not Path(str(folder)).is_dir():
            rows.append((name, False, f"{setting} = {folder} does not exist"))
        else:
            rows.append((name, True, str(folder)))
    return rows


@functools.lru_cache(maxsize=4)
def _build(name: str, args: BackendArgs) -> AudioEncoder:
    return AUDIO_ENCODERS[name](args)


@contextlib.contextmanager
def _without_onednn() -> Iterator[None]:
    """Run convolutions on PyTorch's own CPU kernels: for musicnn's single-channel front end
    with wide kernels they are about 1.6x faster than oneDNN's, with the same results to 1e-5.
    """
    import torch

    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def _mono_float(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise ParameterError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    y = np.asarray(waveform)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"waveform must be mono float with shape (samples,), got {y.shape}")
    if not np.isfinite(y).all():
        raise ParameterError("waveform contains NaN or infinite samples")
    return y.astype(np.float32)
