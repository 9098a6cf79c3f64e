"""`bs_roformer`: BS-RoFormer and Mel-RoFormer checkpoints in the UVR / MSST format.

A model is a checkpoint (`.ckpt`: a state dict) plus its YAML config as
Music-Source-Separation-Training (MSST) writes them, e.g. `model_bs_roformer_ep_317_sdr_12.9755`:

    audio:     sample_rate, chunk_size
    model:     dim, depth, stereo, num_stems, time/freq_transformer_depth, freqs_per_bands
               (BS-RoFormer) or num_bands (Mel-RoFormer), dim_head, heads, mask_estimator_depth,
               stft_*, ...
    training:  instruments, target_instrument
    inference: batch_size, num_overlap, (use_fp16)

The networks come from lucidrains' `bs-roformer` package, pinned to 0.3.10: it is the last
release whose modules carry the state-dict names of the MSST / UVR checkpoints (0.4.x adds an
empty linear-attention slot to Mel-RoFormer's layers, 0.5.x value-residual parameters, 0.6 and
later wrap every block in hyper-connections, `...layers.0.0.branch...`). With the same weights
its forward pass equals MSST's with `zero_dc=False`, as the viperx checkpoints were trained.
MSST-only config keys are checked: `linear_transformer_depth` must be 0, `skip_connection` and
`use_pope` false, `mlp_expansion_factor` 4; training-only ones (`use_torch_checkpoint`, ...)
are ignored.

Inference follows MSST's `demix`: chunks of `audio.chunk_size` samples, `inference.num_overlap`
chunks overlapping each point, linear cross-fades of a tenth of a chunk, at the model's rate
(the audio is resampled with soxr), FP16 autocast on CUDA when the config asks for it.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from polymuse.errors import ModelUnavailableError
from polymuse.report import ModelInfo
from polymuse.settings import Settings
from polymuse.tools.separation.neural import NeuralSeparator

PACKAGE_PIN = "bs-roformer==0.3.10"
TUPLE_KEYS = ("freqs_per_bands", "multi_stft_resolutions_window_sizes")
# MSST fork keys that bs-roformer 0.3.10 does not take: the value it behaves as, or None when
# any value is fine (training-time switches).
MSST_ONLY: dict[str, Any] = {
    "linear_transformer_depth": 0,
    "skip_connection": False,
    "use_pope": False,
    "mlp_expansion_factor": 4,
    "use_torch_checkpoint": None,
    "zero_dc": None,
    "match_input_audio_length": None,
    "sage_attention": None,
}
# Which config keys shape which tensors, for mismatch messages.
SHAPE_HINTS = (
    ("band_split.", "model.freqs_per_bands / model.num_bands, model.stereo, model.dim"),
    ("mask_estimators.", "model.num_stems, model.mask_estimator_depth, model.dim"),
    (".to_qkv.", "model.dim, model.heads, model.dim_head"),
    (".to_gates.", "model.heads, model.dim"),
    (".to_out.", "model.dim, model.heads, model.dim_head"),
    (".rotary_embed.", "model.dim_head"),
    (
        "layers.",
        "model.dim, model.depth, model.time_transformer_depth, model.freq_transformer_depth",
    ),
    ("final_norm", "model.dim"),
)


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader plus the `!!python/tuple` tag MSST configs use."""


_ConfigLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple",
    lambda loader, node: tuple(loader.construct_sequence(node, deep=True)),
)


def load_config(path: Path | str) -> dict[str, Any]:
    """Read an MSST YAML config; errors name the file and the missing key."""
    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(f"BS-RoFormer config {path} does not exist")
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_ConfigLoader)
    except yaml.YAMLError as exc:
        raise ModelUnavailableError(f"{path}: not a readable YAML config ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelUnavailableError(f"{path}: expected a mapping with audio/model/inference keys")
    for section, keys in (("audio", ("chunk_size",)), ("model", ("dim", "depth"))):
        if not isinstance(config.get(section), dict):
            raise ModelUnavailableError(f"{path}: missing section '{section}:'")
        for key in keys:
            if key not in config[section]:
                raise ModelUnavailableError(f"{path}: missing key {section}.{key}")
    return config


def build_network(config: dict[str, Any], *, source: str = "config") -> torch.nn.Module:
    """BSRoformer or MelBandRoformer from the `model:` section of an MSST config."""
    try:
        from bs_roformer import BSRoformer, MelBandRoformer
    except ImportError as exc:
        raise ModelUnavailableError(
            f"the bs_roformer separator needs the bs-roformer package: pip install '{PACKAGE_PIN}'"
        ) from exc
    params = dict(config["model"])
    if "num_bands" in params:
        cls = MelBandRoformer
    elif "freqs_per_bands" in params:
        cls = BSRoformer
    else:
        raise ModelUnavailableError(
            f"{source}: model.freqs_per_bands (BS-RoFormer) or model.num_bands (Mel-RoFormer) "
            "is required"
        )
    accepted = inspect.signature(cls.__init__).parameters
    for key in list(params):
        if key in accepted:
            continue
        if key not in MSST_ONLY:
            raise ModelUnavailableError(
                f"{source}: model.{key} is not a parameter of {cls.__name__} in {PACKAGE_PIN}"
            )
        value, neutral = params.pop(key), MSST_ONLY[key]
        if neutral is not None and value != neutral:
            raise ModelUnavailableError(
                f"{source}: model.{key}={value!r} needs MSST's own model code; "
                f"{cls.__name__} in {PACKAGE_PIN} only behaves as {key}={neutral!r}"
            )
    for key in TUPLE_KEYS:
        if key in params:
            params[key] = tuple(params[key])
    try:
        with warnings.catch_warnings():  # its band count check runs an STFT without a window
            warnings.filterwarnings("ignore", message="A window was not provided")
            return cls(**params)
    except (AssertionError, TypeError, ValueError) as exc:
        raise ModelUnavailableError(f"{source}: cannot build {cls.__name__}: {exc}") from exc


def load_state(path: Path | str) -> dict[str, torch.Tensor]:
    """The state dict inside an MSST/UVR checkpoint (bare, or under state_dict/state/model)."""
    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(f"BS-RoFormer checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailableError(f"{path}: not a loadable PyTorch checkpoint ({exc})") from exc
    for key in ("state_dict", "state", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelUnavailableError(f"{path}: holds no state dict of tensors")
    return {re.sub(r"^(module\.|model\.)", "", k): v for k, v in state.items()}


def check_state(
    network: torch.nn.Module, state: dict[str, torch.Tensor], *, checkpoint: str, config: str
) -> dict[str, torch.Tensor]:
    """Match checkpoint tensors to the network; a mismatch names the tensor and config keys."""
    expected = network.state_dict()
    # Rotary frequencies are fixed by dim_head; older rotary-embedding-torch did not save them.
    rotary = {k for k in expected if k.endswith("rotary_embed.freqs")}
    missing = [k for k in expected if k not in state and k not in rotary]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if wrong:
        k = wrong[0]
        raise ModelUnavailableError(
            f"{checkpoint} does not fit {config}: tensor {k} is {tuple(state[k].shape)} in the "
            f"checkpoint but {tuple(expected[k].shape)} for the config ({len(wrong)} tensors "
            f"differ); check {_hint(k)}"
        )
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing from the checkpoint, e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} not in the config's model, e.g. {unexpected[0]}")
        depth = _checkpoint_depth(state)
        if depth is not None and f"layers.{depth - 1}." not in " ".join(expected):
            parts.append(f"the checkpoint has {depth} layers")
        key = (missing or unexpected)[0]
        raise ModelUnavailableError(
            f"{checkpoint} does not fit {config}: {'; '.join(parts)}; check {_hint(key)}"
        )
    return {**{k: expected[k] for k in rotary if k not in state}, **state}


def _hint(key: str) -> str:
    for pattern, keys in SHAPE_HINTS:
        if pattern in key:
            return keys
    return "the model: section"


def _checkpoint_depth(state: dict[str, torch.Tensor]) -> int | None:
    layers = {int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))}
    return max(layers) + 1 if layers else None


def stem_names(config: dict[str, Any]) -> tuple[str, ...]:
    """What the network's outputs are, from training.target_instrument / instruments."""
    training = config.get("training") or {}
    stems = int(config["model"].get("num_stems", 1))
    target = training.get("target_instrument")
    instruments = [str(i).lower() for i in training.get("instruments") or []]
    if target:
        names = [str(target).lower()]
    elif len(instruments) >= stems:
        names = instruments[:stems]
    else:
        names = ["vocals"] if stems == 1 else []
    if len(names) != stems:
        raise ModelUnavailableError(
            f"model.num_stems={stems} but training.instruments names {len(instruments)} stems"
        )
    return tuple(names)


def _identity(checkpoint: Path, config: Path) -> str:
    """Checkpoint (path, size, mtime) and config text: what the output depends on."""
    for path, what in ((checkpoint, "checkpoint"), (config, "config")):
        if not path.is_file():
            raise ModelUnavailableError(f"BS-RoFormer {what} {path} does not exist")
    stat = checkpoint.stat()
    text = hashlib.sha256(config.read_bytes()).hexdigest()[:16]
    return (
        f"bs_roformer|{PACKAGE_PIN}|{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{text}"
    )


class RoformerSeparator(NeuralSeparator):
    """BS-RoFormer / Mel-RoFormer from an MSST checkpoint and YAML."""

    name = "bs_roformer"

    def __init__(self, checkpoint: Path | str, config: Path | str, *, device: str = "cpu") -> None:
        super().__init__(device=device)
        self.checkpoint, self.config_path = Path(checkpoint), Path(config)
        cfg = load_config(self.config_path)
        network = build_network(cfg, source=str(self.config_path))
        state = check_state(
            network,
            load_state(self.checkpoint),
            checkpoint=str(self.checkpoint),
            config=str(self.config_path),
        )
        network.load_state_dict(state)
        self.network = network.eval()
        self.stereo = bool(cfg["model"].get("stereo", False))
        self.model_channels = 2 if self.stereo else 1
        audio, inference = cfg["audio"], cfg.get("inference") or {}
        self.model_rate = int(audio.get("sample_rate", 44100))
        self.chunk = int(audio["chunk_size"])
        overlap = max(1, int(inference.get("num_overlap", 4)))
        self.step = max(1, self.chunk // overlap)
        self.fade = self.chunk // 10
        self.batch_size = max(1, int(inference.get("batch_size", 1)))
        self.use_fp16 = bool(
            inference.get(
                "use_fp16", cfg.get("use_fp16", (cfg.get("training") or {}).get("use_amp", False))
            )
        )
        self.outputs = stem_names(cfg)
        kind = type(network).__name__
        self.model = ModelInfo(
            name=f"{kind} {self.checkpoint.stem}",
            version=f"{PACKAGE_PIN}; outputs {', '.join(self.outputs)}",
            source=str(self.checkpoint),
            licence="see the checkpoint's distribution terms",
        )
        self._move(device)

    @staticmethod
    def _paths(settings: Settings | None) -> tuple[Path, Path]:
        checkpoint = getattr(settings, "roformer_checkpoint", None)
        config = getattr(settings, "roformer_config", None)
        if not checkpoint:
            raise ModelUnavailableError(
                "the bs_roformer separator needs a checkpoint: set POLYMUSE_ROFORMER_CHECKPOINT "
                "(and POLYMUSE_ROFORMER_CONFIG, default: the .yaml beside it), "
                "or use --separator dsp"
            )
        checkpoint = Path(checkpoint).expanduser()
        return checkpoint, Path(config).expanduser() if config else checkpoint.with_suffix(".yaml")

    @classmethod
    def from_settings(cls, settings: Settings | None) -> RoformerSeparator:
        checkpoint, config = cls._paths(settings)
        device = settings.resolved_device() if settings is not None else "cpu"
        return cls(checkpoint, config, device=device)

    @classmethod
    def identity(cls, settings: Settings | None) -> str:
        return _identity(*cls._paths(settings))

    def cache_key(self) -> str:
        return _identity(self.checkpoint, self.config_path)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # 0.3.10 uses the deprecated sdp_kernel context
            warnings.filterwarnings("ignore", message=".*sdp_kernel.*", category=FutureWarning)
            y = self.network(x)
        if y.ndim == 3:  # bs-roformer drops the stem axis of single-stem models
            y = y.unsqueeze(1)
        n = x.shape[-1]
        if y.shape[-1] < n:  # its iSTFT can end a partial hop early
            y = torch.nn.functional.pad(y, (0, n - y.shape[-1]))
        return y[..., :n]
