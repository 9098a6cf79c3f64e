"""BS-RoFormer, Mel-RoFormer and Demucs backends: tiny random models saved to a temp dir and
loaded through the real loaders, chunked inference, dsp completion, errors and OOM fallbacks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from polymuse.errors import ModelUnavailableError
from polymuse.tools.separation import STEMS, build_separator
from polymuse.tools.separation.roformer import RoformerSeparator, build_network, load_config

bs_roformer = pytest.importorskip("bs_roformer", reason="bs-roformer==0.3.10 is not installed")

SR = 44100
TINY_BS = {
    "dim": 16,
    "depth": 1,
    "stereo": True,
    "num_stems": 1,
    "time_transformer_depth": 1,
    "freq_transformer_depth": 1,
    "linear_transformer_depth": 0,
    "freqs_per_bands": (32, 32, 65),
    "dim_head": 8,
    "heads": 2,
    "attn_dropout": 0.1,
    "ff_dropout": 0.1,
    "flash_attn": True,
    "dim_freqs_in": 129,
    "stft_n_fft": 256,
    "stft_hop_length": 64,
    "stft_win_length": 256,
    "stft_normalized": False,
    "mask_estimator_depth": 2,
    "multi_stft_resolution_loss_weight": 1.0,
    "multi_stft_resolutions_window_sizes": (256, 128),
    "multi_stft_hop_size": 64,
    "multi_stft_normalized": False,
}


@dataclass
class FakeSettings:
    """Stands in for `Settings` until it declares the backend path fields."""

    roformer_checkpoint: Path | None = None
    roformer_config: Path | None = None
    demucs_repo: Path | None = None
    demucs_model: str | None = None

    def resolved_device(self) -> str:
        return "cpu"


def save_roformer(folder: Path, model_cfg: dict, **config) -> tuple[Path, Path]:
    """A randomly initialised network for `model_cfg`, as an MSST checkpoint + YAML."""
    torch.manual_seed(0)
    cfg = {
        "audio": {"chunk_size": 8192, "sample_rate": SR},
        "model": model_cfg,
        "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
        "inference": {"batch_size": 2, "num_overlap": 2},
    }
    for key, value in config.items():
        section, name = key.split("__")
        cfg[section][name] = value
    network = build_network(cfg)
    ckpt, conf = folder / "tiny.ckpt", folder / "tiny.yaml"
    torch.save(network.state_dict(), ckpt)
    # MSST writes tuples with the python/tuple tag; the loader must read them.
    conf.write_text(yaml.dump(cfg, Dumper=yaml.Dumper), encoding="utf-8")
    assert "!!python/tuple" in conf.read_text()
    return ckpt, conf


@pytest.fixture
def roformer_files(tmp_path: Path) -> tuple[Path, Path]:
    return save_roformer(tmp_path, dict(TINY_BS))


def noise(channels: int = 2, n: int = 20_000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((channels, n)) * 0.1).astype(np.float32)


# BS-RoFormer


def test_roformer_loads_through_the_registry_and_runs_chunked(roformer_files):
    ckpt, conf = roformer_files
    sep = build_separator("bs_roformer", FakeSettings(roformer_checkpoint=ckpt))  # yaml beside it
    assert isinstance(sep, RoformerSeparator)
    assert sep.outputs == ("vocals",) and sep.chunk == 8192 and sep.step == 4096
    x = noise()
    out = sep.separate(x)
    assert set(out) == set(STEMS) and all(out[s].shape == x.shape for s in STEMS)
    # Drums, bass and other come from dsp on the instrumental: the four sum to the mix.
    np.testing.assert_allclose(sum(out.values()), x, atol=1e-5)
    assert any("dsp" in note for note in sep.notes)
    assert sep.produced_by("vocals") == "bs_roformer" and "dsp" in sep.produced_by("drums")


@pytest.mark.filterwarnings("ignore:.*sdp_kernel")
def test_roformer_single_chunk_equals_the_network(roformer_files):
    sep = RoformerSeparator(*roformer_files)
    x = noise(n=8192, seed=1)
    with torch.no_grad():
        direct = sep.network(torch.from_numpy(x)[None]).numpy()[0]
    np.testing.assert_allclose(sep.separate(x)["vocals"], direct, atol=1e-5)


def test_roformer_overlap_add_reconstructs_an_identity_network(roformer_files):
    sep = RoformerSeparator(*roformer_files)

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    sep.network = Identity()
    x = noise(n=30_001, seed=2)
    np.testing.assert_allclose(sep.separate(x)["vocals"], x, rtol=0, atol=1e-6)


def test_roformer_resamples_to_the_model_rate_and_back(tmp_path):
    sep = RoformerSeparator(*save_roformer(tmp_path, dict(TINY_BS), audio__sample_rate=32000))
    assert sep.model_rate == 32000
    x = noise(n=15_000, seed=3)
    assert sep.separate(x)["vocals"].shape == x.shape


def test_roformer_mono_input_on_a_stereo_model(roformer_files):
    out = RoformerSeparator(*roformer_files).separate(noise(channels=1))
    assert out["vocals"].shape == (1, 20_000)


def test_mel_roformer_loads_too(tmp_path):
    cfg = {k: v for k, v in TINY_BS.items() if k != "freqs_per_bands"}
    cfg.update(num_bands=8, sample_rate=SR)
    sep = RoformerSeparator(*save_roformer(tmp_path, cfg))
    assert "MelBandRoformer" in sep.model.name
    assert sep.separate(noise(n=9000))["vocals"].shape == (2, 9000)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"dim": 24}, ["dim", "is (", "model.dim"]),
        ({"depth": 2}, ["missing from the checkpoint", "layers.1", "model.depth"]),
        ({"num_stems": 2}, ["mask_estimators.1", "model.num_stems"]),
        ({"freqs_per_bands": (64, 65)}, ["band_split", "freqs_per_bands"]),
        ({"linear_transformer_depth": 1}, ["model.linear_transformer_depth=1"]),
        ({"wobble": 3}, ["model.wobble"]),
    ],
)
def test_mismatched_yaml_names_the_key_or_shape(roformer_files, change, says):
    ckpt, conf = roformer_files
    cfg = load_config(conf)
    cfg["model"].update(change)
    if change.get("num_stems") == 2:
        cfg["training"].pop("target_instrument")
    conf.write_text(yaml.dump(cfg, Dumper=yaml.Dumper), encoding="utf-8")
    with pytest.raises(ModelUnavailableError) as info:
        RoformerSeparator(ckpt, conf)
    for text in says:
        assert text in str(info.value)


def test_missing_files_and_keys_are_named(roformer_files, tmp_path):
    ckpt, conf = roformer_files
    with pytest.raises(ModelUnavailableError, match="nothing.ckpt does not exist"):
        RoformerSeparator(tmp_path / "nothing.ckpt", conf)
    with pytest.raises(ModelUnavailableError, match="needs a checkpoint"):
        build_separator("bs_roformer", FakeSettings())
    cfg = load_config(conf)
    del cfg["audio"]["chunk_size"]
    conf.write_text(yaml.dump(cfg, Dumper=yaml.Dumper), encoding="utf-8")
    with pytest.raises(ModelUnavailableError, match=r"audio\.chunk_size"):
        RoformerSeparator(ckpt, conf)


def test_out_of_memory_retries_smaller_chunks_then_the_cpu(roformer_files, monkeypatch):
    sep = RoformerSeparator(*roformer_files)
    real_run = sep._run
    calls = []

    def small_only(batch):
        calls.append(batch.shape[-1])
        if batch.shape[-1] > 4096:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run(batch)

    monkeypatch.setattr(sep, "_run", small_only)
    x = noise(n=8192, seed=4)
    out = sep.separate(x)["vocals"]
    assert 4096 in calls and any("chunks instead" in n for n in sep.notes)
    assert out.shape == x.shape

    sep = RoformerSeparator(*roformer_files)
    sep.device = "cuda:0"  # pretend: every GPU call runs out of memory
    moved = []
    monkeypatch.setattr(
        sep, "_move", lambda device: (moved.append(device), setattr(sep, "device", device))
    )
    real_run = sep._run

    def gpu_full(batch):
        if sep.device != "cpu":
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_run(batch)

    monkeypatch.setattr(sep, "_run", gpu_full)
    assert sep.separate(x)["vocals"].shape == x.shape
    assert moved == ["cpu"] and any("fell back to CPU" in n for n in sep.notes)


# Demucs


@pytest.fixture
def demucs_repo(tmp_path: Path) -> Path:
    pytest.importorskip("demucs.hdemucs", reason="demucs is not installed")
    from demucs.hdemucs import HDemucs
    from demucs.states import get_state

    torch.manual_seed(0)
    # demucs_unittest's architecture with a 1 s segment and no LSTM branch, to stay fast.
    model = HDemucs(
        channels=4, sources=["drums", "bass", "other", "vocals"], segment=1, dconv_mode=0
    )
    args, kwargs = model._init_args_kwargs
    package = {"klass": HDemucs, "args": args, "kwargs": kwargs, "state": get_state(model, None)}
    torch.save(package, tmp_path / "tiny.th")
    (tmp_path / "tinybag.yaml").write_text(
        "models: ['tiny', 'tiny']\nweights: [[1,1,1,1],[1,0,1,3]]\n"
    )
    return tmp_path


def test_demucs_loads_a_local_model_and_matches_apply_model(demucs_repo):
    from demucs.apply import apply_model

    sep = build_separator("demucs", FakeSettings(demucs_repo=demucs_repo, demucs_model="tiny"))
    assert sep.chunk == SR
    x = noise(n=SR, seed=5)
    out = sep.separate(x)
    assert set(out) == set(STEMS)
    with torch.no_grad():
        ref = apply_model(sep.network, torch.from_numpy(x)[None], shifts=0, split=False)[0]
    for i, source in enumerate(sep.network.sources):
        np.testing.assert_allclose(out[source], ref[i].numpy(), atol=1e-4)


def test_demucs_bag_of_models_runs(demucs_repo):
    sep = build_separator("demucs", FakeSettings(demucs_repo=demucs_repo, demucs_model="tinybag"))
    assert len(sep.members) == 2
    assert sep.separate(noise(n=30_000))["drums"].shape == (2, 30_000)


def test_demucs_errors_say_what_is_missing(demucs_repo, tmp_path):
    with pytest.raises(ModelUnavailableError, match="POLYMUSE_DEMUCS_REPO"):
        build_separator("demucs", FakeSettings())
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        build_separator("demucs", FakeSettings(demucs_repo=tmp_path / "none"))
    with pytest.raises(ModelUnavailableError, match="tiny"):
        build_separator("demucs", FakeSettings(demucs_repo=demucs_repo, demucs_model="htdemucs"))
