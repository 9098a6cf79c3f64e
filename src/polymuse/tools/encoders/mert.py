"""MERT (Li et al., 2024), a HuBERT-style music model, from a local folder of user weights.

The folder is what `save_pretrained` writes (e.g. a copy of m-a-p/MERT-v1-95M): config.json,
weights and, for MERT-v1, its own modelling code (`auto_map` in config.json), which is then
loaded with `trust_remote_code` from that folder only. A plain `HubertModel` or
`Wav2Vec2Model` folder loads without custom code.

Features follow CLaMP 3's MERT extraction: 5 s windows of 24 kHz audio, normalised by the
feature extractor, every hidden layer (embedding output + each transformer layer) averaged over
time, then over layers: one 768-d vector per window for MERT-v1-95M.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from polymuse.errors import ModelUnavailableError, ParameterError
from polymuse.report import ModelInfo
from polymuse.tools.encoders.audio import AudioEncoder, AudioEncoding, _mono_float, spread, unit
from polymuse.tools.encoders.hf import load_pretrained

WINDOW_SECONDS = 5.0
MIN_SECONDS = 1.0


class MertEncoder(AudioEncoder):
    """MERT window features; embeddings only (no tags, no text tower)."""

    name = "mert"

    def __init__(self, folder: str | Path, *, device: str = "cpu", batch_size: int = 8) -> None:
        from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2FeatureExtractor

        self.folder = Path(folder)
        config = self.folder / "config.json"
        if not config.is_file():
            raise ModelUnavailableError(f"MERT: {self.folder} has no config.json")
        custom = "auto_map" in json.loads(config.read_text(encoding="utf-8"))
        self.model = (
            load_pretrained(AutoModel, self.folder, "MERT model", trust_remote_code=custom)
            .to(device)
            .eval()
        )
        if (self.folder / "preprocessor_config.json").is_file():
            self.processor = load_pretrained(AutoFeatureExtractor, self.folder, "MERT processor")
        else:
            self.processor = Wav2Vec2FeatureExtractor(sampling_rate=24000, do_normalize=True)
        self.device = device
        self.batch_size = batch_size
        self.sample_rate = int(self.processor.sampling_rate)
        self.embedding_dim = int(self.model.config.hidden_size)

    def window_features(
        self, waveform: np.ndarray, *, sample_rate: int, max_windows: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(window start times in s, features (n_windows, hidden)) as CLaMP 3 extracts them.

        Windows are 5 s back to back; a last one shorter than 1 s is dropped.

        Raises:
            ParameterError: Audio shorter than 1 s, or a bad waveform.
        """
        import torch

        y = _mono_float(waveform, sample_rate)
        if sample_rate != self.sample_rate:
            import soxr

            y = soxr.resample(y, sample_rate, self.sample_rate, quality="HQ").astype(np.float32)
        size = int(WINDOW_SECONDS * self.sample_rate)
        starts = np.arange(0, len(y), size)
        starts = starts[len(y) - starts >= MIN_SECONDS * self.sample_rate]
        if len(starts) == 0:
            raise ParameterError(f"MERT needs at least {MIN_SECONDS:g} s of audio")
        starts = starts[spread(len(starts), max_windows)]
        features = []
        with torch.inference_mode():
            for s in starts:
                # One window per call: windows differ in length only at the end, and padding
                # would change the normalisation and the time average.
                chunk = y[s : s + size]
                inputs = self.processor(chunk, sampling_rate=self.sample_rate, return_tensors="pt")
                values = inputs["input_values"].to(self.device)
                hidden = self.model(values, output_hidden_states=True).hidden_states
                layers = torch.stack(hidden)  # (layers, 1, time, hidden)
                features.append(layers.mean(dim=2).mean(dim=0)[0].float().cpu().numpy())
        return starts / self.sample_rate, np.stack(features).astype(np.float32)

    def encode(
        self, waveform: np.ndarray, *, sample_rate: int, max_windows: int | None = None
    ) -> AudioEncoding:
        times, features = self.window_features(
            waveform, sample_rate=sample_rate, max_windows=max_windows
        )
        return AudioEncoding(
            encoder=self.name,
            window_times=times + WINDOW_SECONDS / 2,
            window_embeddings=features,
            embedding=unit(features.mean(axis=0)),
            window_seconds=WINDOW_SECONDS,
        )

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(
            name="mert",
            version=f"{type(self.model).__name__} from {self.folder.name}",
            source=str(self.folder),
            licence="see the weights' model card (MERT-v1: CC BY-NC 4.0)",
        )
