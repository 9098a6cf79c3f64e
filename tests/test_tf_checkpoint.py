"""The TensorFlow checkpoint reader, against the checkpoints shipped in the musicnn wheel."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from polymuse.errors import ModelUnavailableError, ParameterError
from polymuse.tools.tf_checkpoint import crc32c, list_tensors, read_checkpoint

MODELS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")


@pytest.fixture(scope="module")
def musicnn_dir() -> Path:
    spec = importlib.util.find_spec("musicnn")
    if spec is None or spec.origin is None:
        pytest.fail("the musicnn wheel is not installed: pip install --no-deps musicnn==0.1.0")
    return Path(spec.origin).parent


def _crc32c_bytewise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_values() -> None:
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720, 32 zero bytes


@pytest.mark.parametrize("size", [4095, 4096, 4097, 20011])
def test_crc32c_vectorised_path_matches_bytewise(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == _crc32c_bytewise(data)


@pytest.mark.parametrize("model", MODELS)
def test_index_lists_model_variables_with_tf_shapes(musicnn_dir: Path, model: str) -> None:
    entries = list_tensors(musicnn_dir / model)
    assert list(entries) == sorted(entries), "SSTable keys come in sorted order"
    assert all(e.dtype == np.dtype("<f4") for e in entries.values())
    assert entries["batch_normalization/gamma"].shape == (1,)
    for name, entry in entries.items():
        if name.endswith(("/Adam", "/Adam_1")):
            assert entry.shape == entries[name.rsplit("/", 1)[0]].shape, name
    if "musicnn" in model:
        assert entries["conv2d/kernel"].shape == (7, 38, 1, 204)
        assert entries["conv2d_1/kernel"].shape == (7, 67, 1, 204)
        assert entries["conv2d_2/kernel"].shape == (128, 1, 1, 51)
        assert entries["conv2d_5/kernel"].shape == (7, 561, 1, 64)
        assert entries["batch_normalization_9/moving_mean"].shape == (1506,)
        assert entries["dense/kernel"].shape == (1506, 200)
        assert entries["dense_1/kernel"].shape == (200, 50)
    else:
        assert entries["1CNN/kernel"].shape == (3, 3, 1, 128)
        assert entries["5CNN/kernel"].shape == (3, 3, 128, 128)
        assert entries["dense/kernel"].shape == (256, 50)


def test_read_checkpoint_values_are_sane(musicnn_dir: Path) -> None:
    tensors = read_checkpoint(musicnn_dir / "MTT_musicnn")
    assert len(tensors) == len(list_tensors(musicnn_dir / "MTT_musicnn"))
    assert all(np.isfinite(t).all() for t in tensors.values())
    variances = [t for n, t in tensors.items() if n.endswith("/moving_variance")]
    assert len(variances) == 11
    assert all((v > 0).all() for v in variances)
    assert 0 <= float(tensors["beta1_power"]) < 1  # 0.9 ** steps underflows to 0
    kernel = tensors["conv2d/kernel"]
    assert kernel.dtype == np.float32 and kernel.flags.writeable
    assert 1e-3 < float(np.abs(kernel).mean()) < 10


def test_prefix_forms_and_name_selection(musicnn_dir: Path) -> None:
    names = ["dense_1/bias", "conv2d/kernel"]
    by_dir = read_checkpoint(musicnn_dir / "MTT_vgg", names=["dense/bias"])
    by_prefix = read_checkpoint(f"{musicnn_dir / 'MTT_vgg'}/", names=["dense/bias"])
    np.testing.assert_array_equal(by_dir["dense/bias"], by_prefix["dense/bias"])
    selected = read_checkpoint(musicnn_dir / "MTT_musicnn", names=names)
    assert list(selected) == names
    with pytest.raises(ParameterError, match="no tensor named 'nope'"):
        read_checkpoint(musicnn_dir / "MTT_musicnn", names=["nope"])


def test_missing_checkpoint_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="index not found"):
        read_checkpoint(tmp_path / "absent")


def _copy_bundle(musicnn_dir: Path, tmp_path: Path) -> Path:
    prefix = tmp_path / "ckpt"
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copyfile(musicnn_dir / "MTT_vgg" / suffix, f"{prefix}{suffix}")
    return prefix


def test_corrupt_data_fails_crc_unless_unverified(musicnn_dir: Path, tmp_path: Path) -> None:
    prefix = _copy_bundle(musicnn_dir, tmp_path)
    entry = list_tensors(prefix)["dense/bias"]
    data_path = Path(f"{prefix}.data-00000-of-00001")
    raw = bytearray(data_path.read_bytes())
    raw[entry.offset] ^= 0x40
    data_path.write_bytes(bytes(raw))
    with pytest.raises(ModelUnavailableError, match="CRC-32C mismatch for tensor 'dense/bias'"):
        read_checkpoint(prefix, names=["dense/bias"])
    assert read_checkpoint(prefix, names=["dense/bias"], verify=False)["dense/bias"].shape == (50,)


def test_corrupt_or_truncated_index_is_reported(musicnn_dir: Path, tmp_path: Path) -> None:
    prefix = _copy_bundle(musicnn_dir, tmp_path)
    index_path = Path(f"{prefix}.index")
    raw = bytearray(index_path.read_bytes())
    raw[40] ^= 0x01
    index_path.write_bytes(bytes(raw))
    with pytest.raises(ModelUnavailableError, match="CRC-32C mismatch in block"):
        list_tensors(prefix)
    index_path.write_bytes(bytes(raw[:-10]))
    with pytest.raises(ModelUnavailableError, match="not a readable TensorFlow bundle index"):
        list_tensors(prefix)


def test_truncated_data_is_reported(musicnn_dir: Path, tmp_path: Path) -> None:
    prefix = _copy_bundle(musicnn_dir, tmp_path)
    data_path = Path(f"{prefix}.data-00000-of-00001")
    data_path.write_bytes(data_path.read_bytes()[:1000])
    with pytest.raises(ModelUnavailableError, match="truncated"):
        read_checkpoint(prefix)
