"""Adapters for user-supplied weights: a tiny random model of each, saved in the test's temp
folder with the library's own config classes and loaded through the real loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polymuse.errors import ModelUnavailableError
from polymuse.tools.encoders.audio import build_audio_encoder

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


MUQ_UNAVAILABLE = (
    "muq 0.1.0 is not installable with torch 2.13 / transformers 5: it needs torchaudio (no "
    "build for torch 2.13 on PyPI) and imports transformers.deepspeed, removed in transformers 5"
)


def _noise(seconds: float, sr: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal(int(seconds * sr))).astype(np.float32)


def _tokenizer(folder: Path) -> None:
    """A word-level fast tokenizer with RoBERTa's special tokens, saved to `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["solo", "piano", "calm", "choir", "music", "drums", "rock"]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(folder)


@pytest.fixture
def clap_dir(tmp_path: Path) -> Path:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor
    from transformers.models.clap.configuration_clap import ClapAudioConfig, ClapTextConfig

    text = ClapTextConfig(
        vocab_size=16,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        projection_dim=16,
        type_vocab_size=1,
    )
    audio = ClapAudioConfig(
        num_mel_bins=16,
        spec_size=128,
        window_size=4,
        patch_size=4,
        patch_stride=(4, 4),
        depths=[1, 1],
        num_attention_heads=[2, 2],
        hidden_size=32,
        patch_embeds_hidden_size=16,
        projection_dim=16,
        enable_fusion=False,
    )
    torch.manual_seed(0)
    folder = tmp_path / "clap"
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
    ClapModel(config).save_pretrained(folder)
    _tokenizer(folder / "tok")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder / "tok")
    features = ClapFeatureExtractor(feature_size=16, truncation="rand_trunc", padding="repeatpad")
    ClapProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_clap_tiny_model_through_the_loader(clap_dir: Path) -> None:
    encoder = build_audio_encoder(f"clap:{clap_dir}")
    assert encoder.joint_text and encoder.sample_rate == 48000 and encoder.embedding_dim == 16
    encoding = encoder.encode(_noise(25.0, 48000), sample_rate=48000)
    np.testing.assert_allclose(encoding.window_times, [5.0, 15.0, 22.5])
    assert encoding.window_embeddings.shape == (3, 16)
    text = encoder.encode_text(["solo piano", "rock drums"])
    assert text.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)
    resampled = encoder.encode(_noise(12.0, 22050), sample_rate=22050, max_windows=1)
    assert resampled.window_embeddings.shape == (1, 16)


def test_clap_folder_without_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="CLAP model"):
        build_audio_encoder(f"clap:{tmp_path}")


def _mert(folder: Path) -> None:
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    HubertModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=24000, do_normalize=True).save_pretrained(folder)


def test_mert_tiny_model_through_the_loader(tmp_path: Path) -> None:
    _mert(tmp_path / "mert")
    encoder = build_audio_encoder(f"mert:{tmp_path / 'mert'}")
    assert encoder.sample_rate == 24000 and not encoder.tags and not encoder.joint_text
    encoding = encoder.encode(_noise(12.0, 24000), sample_rate=24000)
    np.testing.assert_allclose(encoding.window_times, [2.5, 7.5, 12.5])
    assert encoding.window_embeddings.shape == (3, 32)


@pytest.fixture
def clamp3_dir(tmp_path: Path) -> Path:
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    folder = tmp_path / "clamp3"
    _mert(folder / "MERT-v1-95M")
    text = folder / "xlm-roberta-base"
    _tokenizer(text)
    text_config = XLMRobertaConfig(
        vocab_size=16,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=40,
    )
    text_config.save_pretrained(text)
    audio_config = BertConfig(
        vocab_size=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=1,
        intermediate_size=64,
        max_position_embeddings=8,
    )
    torch.manual_seed(0)
    parts = {
        "text_model": XLMRobertaModel(text_config),
        "text_proj": torch.nn.Linear(32, 16),
        "audio_model": BertModel(audio_config),
        "audio_proj": torch.nn.Linear(32, 16),
    }
    state = {f"{p}.{k}": v for p, m in parts.items() for k, v in m.state_dict().items()}
    torch.save({"model": state, "epoch": 1, "min_eval_loss": 0.5}, folder / "weights_clamp3.pth")
    return folder


def test_clamp3_tiny_model_through_the_loader(clamp3_dir: Path) -> None:
    encoder = build_audio_encoder(f"clamp3:{clamp3_dir}")
    assert encoder.joint_text and encoder.embedding_dim == 16 and encoder.max_length == 8
    # 47 s: ten 5 s MERT windows -> 12 frames with the zero ends -> segments of 8 and 4.
    encoding = encoder.encode(_noise(47.0, 24000), sample_rate=24000)
    np.testing.assert_allclose(encoding.window_times, [15.0, 45.0])
    assert encoding.embedding.shape == (16,)
    text = encoder.encode_text(["solo piano", "calm choir music"])
    assert text.shape == (2, 16)


def test_clamp3_rejects_a_foreign_checkpoint(clamp3_dir: Path) -> None:
    torch.save({"model": {"something.weight": torch.zeros(2)}}, clamp3_dir / "weights_clamp3.pth")
    from polymuse.tools.encoders.clamp3 import Clamp3Encoder

    with pytest.raises(ModelUnavailableError, match="no CLaMP 3 state dict"):
        Clamp3Encoder(clamp3_dir)


def test_muq_tiny_model_through_the_loader(tmp_path: Path) -> None:
    muq = pytest.importorskip("muq", reason=MUQ_UNAVAILABLE)
    config = muq.MuQConfig(
        encoder_dim=32,
        encoder_depth=1,
        conv_dim=16,
        n_mels=16,
        w2v2_config={"num_attention_heads": 2},
    )
    model = muq.MuQ(config)
    model.save_pretrained(tmp_path / "muq")
    encoder = build_audio_encoder(f"muq:{tmp_path / 'muq'}")
    encoding = encoder.encode(_noise(12.0, 24000), sample_rate=24000)
    assert encoding.window_embeddings.shape[0] == 2
