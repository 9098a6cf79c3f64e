"""CLAP (Wu et al., 2023) through transformers' `ClapModel` and `ClapProcessor`, from a local
folder holding user-supplied weights (e.g. a copy of laion/larger_clap_music).

Audio is cut into 10 s windows at 48 kHz (CLAP's training length; the processor pads shorter
ones by repetition), each embedded with `get_audio_features` (projection, unit length). The
song embedding is the mean of the window embeddings, unit length. Text goes through
`get_text_features` into the same space, so a text query is compared with audio directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polymuse.report import ModelInfo
from polymuse.tools.encoders.audio import (
    AudioEncoder,
    AudioEncoding,
    _mono_float,
    spread,
    unit,
)
from polymuse.tools.encoders.hf import features_tensor, load_pretrained

WINDOW_SECONDS = 10.0


class ClapEncoder(AudioEncoder):
    """A CLAP model and processor saved with `save_pretrained` in one folder."""

    name = "clap"
    joint_text = True

    def __init__(self, folder: str | Path, *, device: str = "cpu", batch_size: int = 4) -> None:
        from transformers import ClapModel, ClapProcessor

        self.folder = Path(folder)
        self.model = load_pretrained(ClapModel, self.folder, "CLAP model").to(device).eval()
        self.processor = load_pretrained(ClapProcessor, self.folder, "CLAP processor")
        self.device = device
        self.batch_size = batch_size
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        self.embedding_dim = int(self.model.config.projection_dim)

    def encode(
        self, waveform: np.ndarray, *, sample_rate: int, max_windows: int | None = None
    ) -> AudioEncoding:
        import torch

        y = _resample(_mono_float(waveform, sample_rate), sample_rate, self.sample_rate)
        size = int(WINDOW_SECONDS * self.sample_rate)
        starts = np.arange(0, max(len(y) - size // 10, 1), size)
        starts = starts[spread(len(starts), max_windows)]
        embeddings = []
        with torch.inference_mode():
            for i in range(0, len(starts), self.batch_size):
                chunk = [y[s : s + size] for s in starts[i : i + self.batch_size]]
                inputs = self.processor.feature_extractor(
                    chunk, sampling_rate=self.sample_rate, return_tensors="pt"
                )
                inputs = {k: v.to(self.device) for k, v in inputs.items()}
                embeddings.append(features_tensor(self.model.get_audio_features(**inputs)))
        window_embeddings = np.concatenate(embeddings).astype(np.float32)
        return AudioEncoding(
            encoder=self.name,
            window_times=(starts + np.minimum(size, len(y) - starts) / 2) / self.sample_rate,
            window_embeddings=window_embeddings,
            embedding=unit(window_embeddings.mean(axis=0)),
            window_seconds=WINDOW_SECONDS,
        )

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            inputs = self.processor.tokenizer(
                list(texts), padding=True, truncation=True, return_tensors="pt"
            )
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            vectors = features_tensor(self.model.get_text_features(**inputs))
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(
            name="clap",
            version=f"ClapModel from {self.folder.name}",
            source=str(self.folder),
            licence="see the weights' model card (LAION CLAP: CC0 / Apache-2.0)",
        )


def _resample(y: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return y
    import soxr

    return soxr.resample(y, rate, target, quality="HQ").astype(np.float32)
