"""Read TensorFlow checkpoint bundles (`<prefix>.index` + `<prefix>.data-*`) without TensorFlow.

The `.index` file is a LevelDB-style sorted table: a 48-byte footer points at an index block,
whose entries point at data blocks. Each block holds prefix-compressed key/value records
(varint lengths, restart points at the end) and a 5-byte trailer (compression type and a
masked CRC-32C). Keys are tensor names; the empty key holds a `BundleHeaderProto` and every
other value is a serialized `BundleEntryProto` (dtype, shape, shard, offset, size, CRC-32C)
locating the tensor's raw little-endian bytes in a data shard.

TensorFlow's `BundleWriter` always writes the index with `kNoCompression` (its source notes
that Snappy is not available on every platform), so snappy blocks are reported as
unsupported rather than decoded. Partitioned (sliced) variables and string tensors are
reported the same way; neither appears in plain `tf.train.Saver` checkpoints of dense models.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from polymuse.errors import ModelUnavailableError, ParameterError

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
_BLOCK_TRAILER_LEN = 5
_CRC_MASK_DELTA = 0xA282EAD8
_CRC32C_POLY = 0x82F63B78
_CRC_VECTOR_MIN = 4096

# TensorFlow `DataType` enum values (types.proto) with a numpy equivalent.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("float32"),
    2: np.dtype("float64"),
    3: np.dtype("int32"),
    4: np.dtype("uint8"),
    5: np.dtype("int16"),
    6: np.dtype("int8"),
    8: np.dtype("complex64"),
    9: np.dtype("int64"),
    10: np.dtype("bool"),
    17: np.dtype("uint16"),
    18: np.dtype("complex128"),
    19: np.dtype("float16"),
    22: np.dtype("uint32"),
    23: np.dtype("uint64"),
}


class _FormatError(ValueError):
    """The bytes do not follow the table or protobuf layout."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in the bundle, as stated by its `BundleEntryProto`."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int


def list_tensors(prefix: str | Path) -> dict[str, TensorEntry]:
    """Index of a checkpoint bundle: tensor name -> `TensorEntry`, in key order.

    Args:
        prefix: The checkpoint prefix (the path without `.index`). A directory is taken as
            the prefix `<dir>/`, the layout `tf.train.Saver` writes for a path ending in `/`.

    Raises:
        ModelUnavailableError: The index is missing, corrupt or uses an unsupported feature.
    """
    index_path = _index_path(prefix)
    _, entries = _read_index(index_path)
    return entries


def read_checkpoint(
    prefix: str | Path,
    *,
    names: Iterable[str] | None = None,
    verify: bool = True,
) -> dict[str, np.ndarray]:
    """Load tensors of a checkpoint bundle as numpy arrays.

    Args:
        prefix: The checkpoint prefix (see `list_tensors`).
        names: Tensor names to load; all tensors when None.
        verify: Check each tensor's CRC-32C against the index.

    Returns:
        Tensor name -> array with the stored dtype and shape (native byte order).

    Raises:
        ParameterError: A requested name is not in the checkpoint.
        ModelUnavailableError: A file is missing, truncated, corrupt or unsupported.
    """
    index_path = _index_path(prefix)
    num_shards, entries = _read_index(index_path)
    if names is None:
        wanted = list(entries)
    else:
        wanted = list(names)
        unknown = [name for name in wanted if name not in entries]
        if unknown:
            shown = ", ".join(sorted(entries)[:8])
            raise ParameterError(
                f"{index_path}: no tensor named {unknown[0]!r} ({len(unknown)} unknown); "
                f"the checkpoint holds {len(entries)} tensors, e.g. {shown}"
            )
    base = str(index_path)[: -len(".index")]
    by_shard: dict[int, list[TensorEntry]] = {}
    for name in wanted:
        by_shard.setdefault(entries[name].shard_id, []).append(entries[name])
    tensors: dict[str, np.ndarray] = {}
    for shard_id, shard_entries in sorted(by_shard.items()):
        data_path = Path(f"{base}.data-{shard_id:05d}-of-{num_shards:05d}")
        if not data_path.is_file():
            raise ModelUnavailableError(f"{data_path}: checkpoint data shard is missing")
        with open(data_path, "rb") as fh:
            for entry in sorted(shard_entries, key=lambda e: e.offset):
                fh.seek(entry.offset)
                raw = fh.read(entry.size)
                if len(raw) != entry.size:
                    raise ModelUnavailableError(
                        f"{data_path}: truncated, tensor {entry.name!r} needs bytes "
                        f"{entry.offset}..{entry.offset + entry.size}"
                    )
                if verify and crc32c(raw) != entry.crc32c:
                    raise ModelUnavailableError(
                        f"{data_path}: CRC-32C mismatch for tensor {entry.name!r}; "
                        "the checkpoint is corrupt, reinstall it"
                    )
                array = np.frombuffer(raw, dtype=entry.dtype).reshape(entry.shape)
                tensors[entry.name] = array.astype(entry.dtype.newbyteorder("="))
    return {name: tensors[name] for name in wanted}


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli) of `data`, as TensorFlow and LevelDB compute it (unmasked)."""
    n = len(data)
    if n < _CRC_VECTOR_MIN:
        crc = 0xFFFFFFFF
        for byte in bytes(data):
            crc = _CRC_TABLE_LIST[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    # Starting from register ~0 equals starting from 0 with the first four bytes complemented;
    # with a zero register the CRC is linear, so rows of the message are run side by side
    # and then chained: crc(A || B) = shift_len(B)(crc(A)) ^ crc(B).
    buf = np.frombuffer(bytes(data), dtype=np.uint8).copy()
    buf[:4] ^= 0xFF
    width = math.isqrt(n) + 1
    rows = -(-n // width)
    padded = np.zeros(rows * width, dtype=np.uint8)
    padded[rows * width - n :] = buf  # leading zeros leave a zero register unchanged
    columns = padded.reshape(rows, width).T.astype(np.uint32)
    state = np.zeros(rows, dtype=np.uint32)
    for column in columns:
        state = _CRC_TABLE[(state ^ column) & 0xFF] ^ (state >> 8)
    shift = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    for _ in range(width):
        shift = _CRC_TABLE[shift & 0xFF] ^ (shift >> 8)
    shift_images = shift.tolist()
    crc = 0
    for row_crc in state.tolist():
        crc = _apply_linear(shift_images, crc) ^ row_crc
    return crc ^ 0xFFFFFFFF


def _make_crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_CRC32C_POLY), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _make_crc_table()
_CRC_TABLE_LIST: list[int] = _CRC_TABLE.tolist()


def _apply_linear(images: list[int], value: int) -> int:
    out = 0
    bit = 0
    while value:
        if value & 1:
            out ^= images[bit]
        value >>= 1
        bit += 1
    return out


def _unmask(masked: int) -> int:
    rot = (masked - _CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _index_path(prefix: str | Path) -> Path:
    text = str(prefix)
    if Path(text).is_dir() and not text.endswith("/"):
        text += "/"
    path = Path(text + ".index")
    if not path.is_file():
        raise ModelUnavailableError(
            f"{path}: checkpoint index not found; pass the prefix the checkpoint was saved with"
        )
    return path


def _read_index(path: Path) -> tuple[int, dict[str, TensorEntry]]:
    data = path.read_bytes()
    try:
        header: dict[int, list[int | bytes]] | None = None
        entries: dict[str, TensorEntry] = {}
        for key, value in _table_records(data):
            if key == b"":
                header = _parse_message(value)
                continue
            name = key.decode("utf-8")
            entries[name] = _parse_entry(name, value)
        if header is None:
            raise _FormatError("no BundleHeaderProto record")
        num_shards = int(_scalar(header, 1, 1))
        if int(_scalar(header, 2, 0)) != 0:
            entries = {
                name: replace(e, dtype=e.dtype.newbyteorder(">")) for name, e in entries.items()
            }
        bad_shard = [e.name for e in entries.values() if not 0 <= e.shard_id < num_shards]
        if bad_shard:
            raise _FormatError(f"tensor {bad_shard[0]!r} names a shard beyond {num_shards}")
    except (_FormatError, UnicodeDecodeError) as exc:
        raise ModelUnavailableError(
            f"{path}: not a readable TensorFlow bundle index: {exc}"
        ) from exc
    return num_shards, entries


def _table_records(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(data) < _FOOTER_LEN:
        raise _FormatError(f"{len(data)} bytes is shorter than the table footer")
    footer = data[-_FOOTER_LEN:]
    (magic,) = struct.unpack("<Q", footer[-8:])
    if magic != _TABLE_MAGIC:
        raise _FormatError(f"bad table magic {magic:#x}")
    pos = 0
    for _ in range(2):  # the metaindex handle, then the index handle
        offset, pos = _varint(footer, pos)
        size, pos = _varint(footer, pos)
    index_block = _read_block(data, offset, size)
    for _, handle in _block_records(index_block):
        block_offset, hpos = _varint(handle, 0)
        block_size, _ = _varint(handle, hpos)
        yield from _block_records(_read_block(data, block_offset, block_size))


def _read_block(data: bytes, offset: int, size: int) -> bytes:
    end = offset + size
    if end + _BLOCK_TRAILER_LEN > len(data):
        raise _FormatError(f"block at {offset} (+{size}) runs past the end of the file")
    kind = data[end]
    (stored,) = struct.unpack("<I", data[end + 1 : end + _BLOCK_TRAILER_LEN])
    if crc32c(data[offset : end + 1]) != _unmask(stored):
        raise _FormatError(f"CRC-32C mismatch in block at {offset}")
    if kind != 0:
        raise _FormatError(
            f"block at {offset} has compression type {kind}; only uncompressed tables "
            "(what TensorFlow's BundleWriter writes) are supported"
        )
    return data[offset:end]


def _block_records(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise _FormatError("block shorter than its restart count")
    (num_restarts,) = struct.unpack("<I", block[-4:])
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise _FormatError(f"block claims {num_restarts} restart points")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise _FormatError(f"record at {pos} overruns its block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise _FormatError("varint runs past the end of its buffer")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _FormatError("varint longer than 10 bytes")


def _parse_message(buf: bytes) -> dict[int, list[int | bytes]]:
    """Protobuf wire format -> field number -> values (ints, or bytes for length-delimited)."""
    fields: dict[int, list[int | bytes]] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise _FormatError("fixed64 field runs past the end of its message")
            (value,) = struct.unpack("<Q", buf[pos : pos + 8])
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _FormatError(f"field {number} runs past the end of its message")
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise _FormatError("fixed32 field runs past the end of its message")
            (value,) = struct.unpack("<I", buf[pos : pos + 4])
            pos += 4
        else:
            raise _FormatError(f"unsupported protobuf wire type {wire} for field {number}")
        fields.setdefault(number, []).append(value)
    return fields


def _scalar(fields: dict[int, list[int | bytes]], number: int, default: int) -> int:
    values = fields.get(number)
    if not values:
        return default
    value = values[-1]
    if not isinstance(value, int):
        raise _FormatError(f"field {number} should be a number")
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_entry(name: str, value: bytes) -> TensorEntry:
    fields = _parse_message(value)
    if fields.get(7):
        raise _FormatError(f"tensor {name!r} is partitioned into slices, which is unsupported")
    dtype_code = _scalar(fields, 1, 0)
    if dtype_code not in _DTYPES:
        raise _FormatError(f"tensor {name!r} has unsupported TensorFlow dtype {dtype_code}")
    dtype = _DTYPES[dtype_code].newbyteorder("<")
    shape: tuple[int, ...] = ()
    shape_fields = fields.get(2)
    if shape_fields:
        shape_message = shape_fields[-1]
        if not isinstance(shape_message, bytes):
            raise _FormatError(f"tensor {name!r} has a malformed shape")
        dims = []
        for dim in _parse_message(shape_message).get(2, []):
            if not isinstance(dim, bytes):
                raise _FormatError(f"tensor {name!r} has a malformed dimension")
            dims.append(_scalar(_parse_message(dim), 1, 0))
        shape = tuple(dims)
    if any(d < 0 for d in shape):
        raise _FormatError(f"tensor {name!r} has an unknown dimension in {shape}")
    size = _scalar(fields, 5, 0)
    if size != math.prod(shape) * dtype.itemsize:
        raise _FormatError(f"tensor {name!r}: {size} bytes do not fit {dtype} {shape}")
    return TensorEntry(
        name=name,
        dtype=dtype,
        shape=shape,
        shard_id=_scalar(fields, 3, 0),
        offset=_scalar(fields, 4, 0),
        size=size,
        crc32c=_unmask(_scalar(fields, 6, 0) & 0xFFFFFFFF),
    )
