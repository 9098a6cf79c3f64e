"""MuQ and MuQ-MuLan (Zhu et al., 2025) from a local folder, through the `muq` package.

The folder is what the package's `save_pretrained` writes (config.json + weights), e.g. a copy
of OpenMuQ/MuQ-MuLan-large (joint audio-text space, English and Chinese text) or of
OpenMuQ/MuQ-large-msd-iter (audio features only). Which one it is comes from config.json:
MuQ-MuLan's has a `mulan` section. MuQ-MuLan's text tower loads xlm-roberta-large through
transformers; it must be in the local Hugging Face cache (the hub is never contacted).

Audio: 24 kHz, 10 s windows; MuQ-MuLan embeds each window (its own `mulan(wavs=...)`), MuQ
averages the last hidden state over time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polymuse.errors import ModelUnavailableError
from polymuse.report import ModelInfo
from polymuse.tools.encoders.audio import AudioEncoder, AudioEncoding, _mono_float, spread, unit

SAMPLE_RATE = 24000
WINDOW_SECONDS = 10.0
INSTALL = "pip install --no-deps muq==0.1.0 (plus einops, nnAudio, easydict, x-clip, torchaudio)"


class MuqEncoder(AudioEncoder):
    """MuQ-MuLan (joint text) or MuQ (embeddings only), chosen by the folder's config."""

    name = "muq"
    sample_rate = SAMPLE_RATE

    def __init__(self, folder: str | Path, *, device: str = "cpu") -> None:
        self.folder = Path(folder)
        config_file = self.folder / "config.json"
        if not config_file.is_file():
            raise ModelUnavailableError(f"MuQ: {self.folder} has no config.json")
        config = json.loads(config_file.read_text(encoding="utf-8"))
        self.joint_text = "mulan" in config
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from muq import MuQ, MuQMuLan
        except ImportError as exc:
            raise ModelUnavailableError(
                f"MuQ: the muq package does not import ({exc}); {INSTALL}"
            ) from exc
        cls = MuQMuLan if self.joint_text else MuQ
        try:
            self.model = cls.from_pretrained(str(self.folder)).to(device).eval()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelUnavailableError(f"MuQ: cannot load {self.folder}: {exc}") from exc
        self.device = device
        self.embedding_dim = 0

    def encode(
        self, waveform: np.ndarray, *, sample_rate: int, max_windows: int | None = None
    ) -> AudioEncoding:
        import torch

        y = _mono_float(waveform, sample_rate)
        if sample_rate != SAMPLE_RATE:
            import soxr

            y = soxr.resample(y, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
        size = int(WINDOW_SECONDS * SAMPLE_RATE)
        starts = np.arange(0, max(len(y) - size // 10, 1), size)
        starts = starts[spread(len(starts), max_windows)]
        rows = []
        with torch.inference_mode():
            for s in starts:
                wav = torch.from_numpy(y[s : s + size])[None].to(self.device)
                if self.joint_text:
                    vector = self.model(wavs=wav)[0]
                else:
                    vector = (
                        self.model(wav, output_hidden_states=False).last_hidden_state[0].mean(0)
                    )
                rows.append(vector.float().cpu().numpy())
        windows = np.stack(rows).astype(np.float32)
        self.embedding_dim = windows.shape[1]
        return AudioEncoding(
            encoder=self.name,
            window_times=(starts + np.minimum(size, len(y) - starts) / 2) / SAMPLE_RATE,
            window_embeddings=windows,
            embedding=unit(windows.mean(axis=0)),
            window_seconds=WINDOW_SECONDS,
        )

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if not self.joint_text:
            return super().encode_text(texts)
        import torch

        with torch.inference_mode():
            vectors = self.model(texts=list(texts)).float().cpu().numpy()
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    @property
    def model_info(self) -> ModelInfo:
        kind = "MuQ-MuLan" if self.joint_text else "MuQ"
        return ModelInfo(
            name="muq",
            version=f"{kind} from {self.folder.name}",
            source=str(self.folder),
            licence="code MIT; weights CC BY-NC 4.0 (see the model card)",
        )
