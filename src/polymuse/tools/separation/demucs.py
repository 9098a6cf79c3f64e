"""`demucs`: Demucs / Hybrid (Transformer) Demucs models from a local model folder.

Uses the `demucs` package (4.1.0 needs no torchaudio) and a folder laid out as demucs' own
`--repo`: one `<signature>.th` (or `<signature>-<sha8>.th`) per model and, for bags of models
such as `htdemucs_ft`, a `<name>.yaml` listing them. Nothing is downloaded: the folder is
`settings.demucs_repo`, the model `settings.demucs_model` (default `htdemucs`).

Chunks are the models' training segment (7.8 s for HT-Demucs), overlapping by a quarter, run
through the shared overlap-add; every model of a bag runs on each chunk and their outputs are
mixed with the bag's per-source weights, as `demucs.apply.apply_model` does (without its
random time shifts, so results are deterministic). Demucs normalises its input inside the
network, so the global mean/std scaling of demucs' command line is left out for streaming.
Six-source models add guitar and piano to `other`.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import torch

from polymuse.errors import ModelUnavailableError
from polymuse.report import ModelInfo
from polymuse.settings import Settings
from polymuse.tools.separation.neural import NeuralSeparator

OVERLAP = 0.25


def load_demucs(name: str, repo: Path | str) -> torch.nn.Module:
    """A Demucs model or bag `name` from the local folder `repo`, in eval mode."""
    try:
        from demucs.pretrained import get_model
        from demucs.repo import ModelLoadingError
    except ImportError as exc:
        raise ModelUnavailableError(
            f"the demucs separator needs the demucs package: pip install demucs==4.1.0 ({exc})"
        ) from exc
    repo = Path(repo).expanduser()
    if not repo.is_dir():
        raise ModelUnavailableError(
            f"demucs model folder {repo} does not exist; set POLYMUSE_DEMUCS_REPO to a folder "
            "holding the model's .th files (and the bag's .yaml)"
        )
    try:
        model = get_model(name, repo=repo)
    except (ModelLoadingError, KeyError, FileNotFoundError) as exc:
        found = sorted(p.stem for p in repo.iterdir() if p.suffix in (".th", ".yaml"))
        raise ModelUnavailableError(
            f"demucs model {name!r} not loadable from {repo}: {exc}; "
            f"the folder holds: {', '.join(found) or 'no .th/.yaml files'}"
        ) from exc
    except RuntimeError as exc:  # load_state_dict: missing keys or size mismatch
        raise ModelUnavailableError(
            f"demucs model {name!r} in {repo} does not load: {exc}"
        ) from exc
    return model.eval()


class DemucsSeparator(NeuralSeparator):
    """A Demucs model or bag of models, streamed chunk by chunk."""

    name = "demucs"

    def __init__(self, network: torch.nn.Module, *, label: str, device: str = "cpu") -> None:
        super().__init__(device=device)
        self.network = network
        self.members = list(getattr(network, "models", [network]))
        self.weights = torch.tensor(
            getattr(network, "weights", [[1.0] * len(network.sources)]), dtype=torch.float32
        )
        self.outputs = tuple(network.sources)
        self.model_rate = int(network.samplerate)
        self.model_channels = int(network.audio_channels)
        segment = Fraction(min(float(getattr(m, "segment", 10)) for m in self.members))
        self.chunk = int(segment * self.model_rate)
        self.step = max(1, int(self.chunk * (1 - OVERLAP)))
        self.fade = self.chunk // 10
        self.label = label
        kinds = sorted({type(m).__name__ for m in self.members})
        self.model = ModelInfo(
            name=f"demucs {label}",
            version=f"{'+'.join(kinds)} x{len(self.members)}; sources {', '.join(self.outputs)}",
            source=label,
            licence="MIT (code); weights: see their distribution",
        )
        self._move(device)

    @staticmethod
    def _configured(settings: Settings | None) -> tuple[str, Path]:
        repo = getattr(settings, "demucs_repo", None)
        name = getattr(settings, "demucs_model", None) or "htdemucs"
        if not repo:
            raise ModelUnavailableError(
                "the demucs separator needs a local model folder: set POLYMUSE_DEMUCS_REPO "
                "(and POLYMUSE_DEMUCS_MODEL, default htdemucs), or use --separator dsp"
            )
        return name, Path(repo).expanduser()

    @classmethod
    def from_settings(cls, settings: Settings | None) -> DemucsSeparator:
        name, repo = cls._configured(settings)
        device = settings.resolved_device() if settings is not None else "cpu"
        return cls(load_demucs(name, repo), label=f"{name} from {repo}", device=device)

    @classmethod
    def identity(cls, settings: Settings | None) -> str:
        name, repo = cls._configured(settings)
        if not repo.is_dir():
            raise ModelUnavailableError(f"demucs model folder {repo} does not exist")
        files = sorted(
            f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
            for p in repo.iterdir()
            if p.suffix in (".th", ".yaml")
        )
        return f"demucs|{name}|{repo.resolve()}|{','.join(files)}"

    def cache_key(self) -> str:
        return f"{super().cache_key()}|{self.label}"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        total = torch.zeros(x.shape[0], len(self.outputs), *x.shape[1:], device=x.device)
        for member, weight in zip(self.members, self.weights.to(x.device), strict=True):
            padded = x
            valid = member.valid_length(n) if hasattr(member, "valid_length") else n
            if valid > n:  # demucs pads centred and trims the centre back
                left = (valid - n) // 2
                padded = torch.nn.functional.pad(x, (left, valid - n - left))
            y = member(padded).float()
            if y.shape[-1] > n:
                left = (y.shape[-1] - n) // 2
                y = y[..., left : left + n]
            total += y * weight[None, :, None, None]
        return total / self.weights.sum(dim=0).to(x.device)[None, :, None, None]
