"""CLaMP 3 (Wu et al., 2025), audio and text towers, from a local folder of user weights.

Folder layout (`clamp3_dir`):

- one `*.pth` checkpoint as the CLaMP 3 repository saves it (`{"model": state_dict, ...}`),
  e.g. weights_clamp3_saas_h_size_768_t_model_FacebookAI_xlm-roberta-base_..._p_length_512.pth;
- `xlm-roberta-base/` (or `text/`): the text model's config.json and tokenizer files (its
  weights are in the checkpoint);
- `MERT-v1-95M/`, unless `mert_dir` names MERT elsewhere.

The architecture is the repository's `CLaMP3Model` (code/utils.py), audio and text parts:
text = XLM-R, mean-pooled over the attention mask, then `text_proj`; audio = MERT window
features (see `mert.py`), framed by a zero vector at each end, cut into segments of
`max_position_embeddings` (128) and run through a BERT encoder on `inputs_embeds`,
mean-pooled, then `audio_proj`; segments are averaged weighted by their length, as its
`extract_clamp3.py` does for a global feature. The BERT size is read from the checkpoint.
Per-window embeddings here are the same procedure on groups of six MERT windows (30 s).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polymuse.errors import ModelUnavailableError
from polymuse.report import ModelInfo
from polymuse.tools.encoders.audio import AudioEncoder, AudioEncoding, unit
from polymuse.tools.encoders.hf import load_pretrained
from polymuse.tools.encoders.mert import WINDOW_SECONDS, MertEncoder

MAX_TEXT_LENGTH = 128
GROUP = 6
TEXT_DIRS = ("xlm-roberta-base", "text")
MERT_DIR = "MERT-v1-95M"


class Clamp3Encoder(AudioEncoder):
    """CLaMP 3's joint audio-text space over MERT features."""

    name = "clamp3"
    joint_text = True

    def __init__(
        self, folder: str | Path, *, mert_dir: str | Path | None = None, device: str = "cpu"
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.folder = Path(folder)
        checkpoints = sorted(self.folder.glob("*.pth"))
        if not checkpoints:
            raise ModelUnavailableError(f"CLaMP 3: no *.pth checkpoint in {self.folder}")
        self.checkpoint = checkpoints[0]
        text_dir = next((self.folder / d for d in TEXT_DIRS if (self.folder / d).is_dir()), None)
        if text_dir is None:
            raise ModelUnavailableError(
                f"CLaMP 3: {self.folder} needs a {' or '.join(TEXT_DIRS)}/ folder with the text "
                "model's config.json and tokenizer"
            )
        self.mert = MertEncoder(
            Path(mert_dir) if mert_dir else self.folder / MERT_DIR, device=device
        )
        try:
            data = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelUnavailableError(f"CLaMP 3: cannot read {self.checkpoint}: {exc}") from exc
        state = data.get("model", data) if isinstance(data, dict) else None
        if not isinstance(state, dict) or "audio_proj.weight" not in state:
            raise ModelUnavailableError(f"CLaMP 3: {self.checkpoint} holds no CLaMP 3 state dict")
        text_config = load_pretrained(AutoConfig, text_dir, "CLaMP 3 text config")
        self.tokenizer = load_pretrained(AutoTokenizer, text_dir, "CLaMP 3 tokenizer")
        self.text_model = AutoModel.from_config(text_config)
        self.audio_model = _bert_from_state(state)
        hidden = int(state["audio_proj.weight"].shape[0])
        self.text_proj = torch.nn.Linear(text_config.hidden_size, hidden)
        self.audio_proj = torch.nn.Linear(self.audio_model.config.hidden_size, hidden)
        for prefix, module in (
            ("text_model.", self.text_model),
            ("text_proj.", self.text_proj),
            ("audio_model.", self.audio_model),
            ("audio_proj.", self.audio_proj),
        ):
            _load_part(module, state, prefix, self.checkpoint)
            module.to(device).eval()
        self.device = device
        self.sample_rate = self.mert.sample_rate
        self.embedding_dim = hidden
        self.max_length = int(self.audio_model.config.max_position_embeddings)

    def encode(
        self, waveform: np.ndarray, *, sample_rate: int, max_windows: int | None = None
    ) -> AudioEncoding:
        starts, features = self.mert.window_features(waveform, sample_rate=sample_rate)
        embedding = self.audio_embedding(features)
        groups = [features[i : i + GROUP] for i in range(0, len(features), GROUP)]
        if max_windows is not None and len(groups) > max_windows:
            keep = np.unique(np.round(np.linspace(0, len(groups) - 1, max_windows)).astype(int))
            groups = [groups[i] for i in keep]
            group_starts = starts[::GROUP][keep]
        else:
            group_starts = starts[::GROUP]
        windows = np.stack([self.audio_embedding(g) for g in groups])
        return AudioEncoding(
            encoder=self.name,
            window_times=group_starts + GROUP * WINDOW_SECONDS / 2,
            window_embeddings=windows,
            embedding=embedding,
            window_seconds=GROUP * WINDOW_SECONDS,
        )

    def audio_embedding(self, features: np.ndarray) -> np.ndarray:
        """CLaMP 3's global audio feature of a sequence of MERT window features, unit length."""
        import torch

        x = torch.from_numpy(np.asarray(features, dtype=np.float32))
        zero = torch.zeros((1, x.shape[-1]))
        x = torch.cat((zero, x, zero), 0)
        segments = [x[i : i + self.max_length] for i in range(0, len(x), self.max_length)]
        segments[-1] = x[-self.max_length :]
        outputs, weights = [], []
        with torch.inference_mode():
            for segment in segments:
                n = segment.shape[0]
                mask = torch.cat((torch.ones(n), torch.zeros(self.max_length - n)))
                padded = torch.cat((segment, torch.zeros((self.max_length - n, x.shape[-1]))))
                hidden = self.audio_model(
                    inputs_embeds=padded[None].to(self.device),
                    attention_mask=mask[None].to(self.device),
                ).last_hidden_state
                pooled = _avg_pool(hidden, mask[None].to(self.device))
                outputs.append(self.audio_proj(pooled)[0])
            remainder = len(x) % self.max_length
            weights = [self.max_length] * (len(x) // self.max_length)
            if remainder:
                weights.append(remainder)
            w = torch.tensor(weights, dtype=torch.float32, device=self.device)[:, None]
            combined = (torch.stack(outputs) * w).sum(dim=0) / w.sum()
        return unit(combined.cpu().numpy())

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for text in texts:
                inputs = self.tokenizer(
                    text, truncation=True, max_length=MAX_TEXT_LENGTH, return_tensors="pt"
                )
                ids = inputs["input_ids"].to(self.device)
                mask = inputs["attention_mask"].to(self.device)
                hidden = self.text_model(ids, attention_mask=mask).last_hidden_state
                out.append(unit(self.text_proj(_avg_pool(hidden, mask))[0].cpu().numpy()))
        return np.stack(out)

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(
            name="clamp3",
            version=f"CLaMP 3 {self.checkpoint.name} + {self.mert.model_info.version}",
            source=str(self.folder),
            licence="see the weights' model card (CLaMP 3: MIT)",
        )


def _avg_pool(hidden, mask):
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1)


def _bert_from_state(state: dict):
    """A BertModel shaped like the checkpoint's audio encoder (CLaMP 3 builds it from config.py)."""
    from transformers import BertConfig, BertModel

    hidden = int(state["audio_proj.weight"].shape[1])
    layers = {
        int(m.group(1))
        for key in state
        if (m := re.match(r"audio_model\.encoder\.layer\.(\d+)\.", key))
    }
    config = BertConfig(
        vocab_size=int(state["audio_model.embeddings.word_embeddings.weight"].shape[0]),
        hidden_size=hidden,
        num_hidden_layers=len(layers),
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=int(
            state["audio_model.encoder.layer.0.intermediate.dense.weight"].shape[0]
        ),
        max_position_embeddings=int(
            state["audio_model.embeddings.position_embeddings.weight"].shape[0]
        ),
        type_vocab_size=int(state["audio_model.embeddings.token_type_embeddings.weight"].shape[0]),
    )
    return BertModel(config, add_pooling_layer="audio_model.pooler.dense.weight" in state)


def _load_part(module, state: dict, prefix: str, checkpoint: Path) -> None:
    part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    result = module.load_state_dict(part, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelUnavailableError(
            f"CLaMP 3: {checkpoint.name} does not fit the {prefix.rstrip('.')} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
