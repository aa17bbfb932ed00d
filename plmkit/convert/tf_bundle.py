"""The TensorFlow TensorBundle on-disk format, decoded by hand (no TensorFlow, no protobuf).

A checkpoint `PREFIX` is `PREFIX.index` plus data shards `PREFIX.data-0000k-of-0000n`.
The index is a LevelDB-style sorted table (tensorflow/core/lib/io/table_builder.cc):

    [data block]* [metaindex block] [index block] [footer: 2 block handles, pad, magic]
    block   = entries, restart offsets (u32 each), restart count (u32), then a trailer of
              compression type (1 byte: 0 none, 1 snappy) and masked CRC-32C (u32)
    entry   = varint shared, varint non_shared, varint value_len, key suffix, value

Key "" holds a BundleHeaderProto; every other key a BundleEntryProto
(tensorflow/core/protobuf/tensor_bundle.proto) saying where the tensor's bytes live.
Slices of a partitioned variable are stored under keys built with OrderedCode
(tensorflow/core/util/saved_tensor_slice_util.cc) and listed in the full tensor's entry.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import crc32c
from .snappy import SnappyError, decompress as snappy_decompress

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1

# tensorflow/core/framework/types.proto
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_COMPLEX64, DT_INT64, DT_BOOL, DT_BFLOAT16, DT_UINT16 = 8, 9, 10, 14, 17
DT_COMPLEX128, DT_HALF, DT_RESOURCE, DT_VARIANT, DT_UINT32, DT_UINT64 = 18, 19, 20, 21, 22, 23

# TF dtype enum -> (our dtype name, numpy dtype string). bfloat16 is kept as raw uint16 bits.
DTYPES: dict[int, tuple[str, str]] = {
    DT_FLOAT: ("float32", "<f4"),
    DT_DOUBLE: ("float64", "<f8"),
    DT_INT32: ("int32", "<i4"),
    DT_UINT8: ("uint8", "u1"),
    DT_INT16: ("int16", "<i2"),
    DT_INT8: ("int8", "i1"),
    DT_STRING: ("string", "O"),
    DT_COMPLEX64: ("complex64", "<c8"),
    DT_INT64: ("int64", "<i8"),
    DT_BOOL: ("bool", "?"),
    DT_BFLOAT16: ("bfloat16", "<u2"),
    DT_UINT16: ("uint16", "<u2"),
    DT_COMPLEX128: ("complex128", "<c16"),
    DT_HALF: ("float16", "<f2"),
    DT_UINT32: ("uint32", "<u4"),
    DT_UINT64: ("uint64", "<u8"),
}
DTYPE_BY_NAME: dict[str, int] = {name: enum for enum, (name, _) in DTYPES.items()}
_UNSUPPORTED_NAMES = {DT_RESOURCE: "resource", DT_VARIANT: "variant"}


def dtype_name(enum: int) -> str:
    """Readable name of a TF DataType enum value (e.g. 1 -> 'float32')."""
    if enum in DTYPES:
        return DTYPES[enum][0]
    return _UNSUPPORTED_NAMES.get(enum, f"DataType({enum})")


class TFFormatError(ValueError):
    """A checkpoint file does not follow the TensorBundle format."""


# --------------------------------------------------------------------------- varints


def read_varint(buf: bytes, pos: int, what: str = "varint") -> tuple[int, int]:
    """Decode a base-128 varint at `pos`; return (value, next position)."""
    result = 0
    shift = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise TFFormatError(f"truncated {what}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise TFFormatError(f"{what} longer than 10 bytes")


def encode_varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement, as protobuf does."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


# --------------------------------------------------------------------------- protobuf


def iter_fields(buf: bytes, what: str) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) of a serialized protobuf message."""
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = read_varint(buf, pos, f"{what} field key")
        fnum, wtype = key >> 3, key & 7
        if wtype == 0:
            val, pos = read_varint(buf, pos, f"{what} field {fnum}")
        elif wtype == 1:
            if pos + 8 > n:
                raise TFFormatError(f"truncated fixed64 field {fnum} in {what}")
            val = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wtype == 2:
            ln, pos = read_varint(buf, pos, f"{what} field {fnum} length")
            if pos + ln > n:
                raise TFFormatError(f"field {fnum} of {what} runs past the message end")
            val = bytes(buf[pos : pos + ln])
            pos += ln
        elif wtype == 5:
            if pos + 4 > n:
                raise TFFormatError(f"truncated fixed32 field {fnum} in {what}")
            val = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise TFFormatError(f"unsupported wire type {wtype} for field {fnum} in {what}")
        yield fnum, wtype, val


def _f_varint(fnum: int, value: int) -> bytes:
    return encode_varint(fnum << 3) + encode_varint(value)


def _f_bytes(fnum: int, payload: bytes) -> bytes:
    return encode_varint((fnum << 3) | 2) + encode_varint(len(payload)) + payload


def _f_fixed32(fnum: int, value: int) -> bytes:
    return encode_varint((fnum << 3) | 5) + struct.pack("<I", value)


@dataclass
class BundleHeader:
    """BundleHeaderProto: how many data shards, byte order, format version."""

    num_shards: int = 1
    endianness: int = 0  # 0 LITTLE, 1 BIG
    producer: int = 1
    min_consumer: int = 0
    bad_consumers: list[int] = field(default_factory=list)


@dataclass
class BundleEntry:
    """BundleEntryProto: where one tensor (or one slice of a partitioned one) lives."""

    dtype: int = 0
    shape: tuple[int, ...] = ()
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0  # masked
    has_crc: bool = False
    # Each slice is a tuple of (start, length) per dimension; length -1 means "all".
    slices: list[tuple[tuple[int, int], ...]] = field(default_factory=list)


def parse_header(buf: bytes) -> BundleHeader:
    """Decode a serialized BundleHeaderProto."""
    h = BundleHeader(num_shards=0, producer=0)
    for fnum, wtype, val in iter_fields(buf, "BundleHeaderProto"):
        if fnum == 1 and wtype == 0:
            h.num_shards = _signed64(val)
        elif fnum == 2 and wtype == 0:
            h.endianness = val
        elif fnum == 3 and wtype == 2:
            for vf, vw, vv in iter_fields(val, "VersionDef"):
                if vf == 1 and vw == 0:
                    h.producer = _signed64(vv)
                elif vf == 2 and vw == 0:
                    h.min_consumer = _signed64(vv)
                elif vf == 3 and vw == 0:
                    h.bad_consumers.append(_signed64(vv))
                elif vf == 3 and vw == 2:  # packed repeated int32
                    p = 0
                    while p < len(vv):
                        x, p = read_varint(vv, p, "VersionDef.bad_consumers")
                        h.bad_consumers.append(_signed64(x))
    return h


def encode_header(h: BundleHeader) -> bytes:
    """Serialize a BundleHeaderProto the way TensorFlow's BundleWriter does."""
    version = b""
    if h.producer:
        version += _f_varint(1, h.producer)
    if h.min_consumer:
        version += _f_varint(2, h.min_consumer)
    out = b""
    if h.num_shards:
        out += _f_varint(1, h.num_shards)
    if h.endianness:
        out += _f_varint(2, h.endianness)
    return out + _f_bytes(3, version)


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for fnum, wtype, val in iter_fields(buf, "TensorShapeProto"):
        if fnum == 2 and wtype == 2:
            size = 0
            for df, dw, dv in iter_fields(val, "TensorShapeProto.Dim"):
                if df == 1 and dw == 0:
                    size = _signed64(dv)
            dims.append(size)
        elif fnum == 3 and wtype == 0 and val:
            raise TFFormatError("tensor shape has unknown rank")
    return tuple(dims)


def _parse_slice(buf: bytes) -> tuple[tuple[int, int], ...]:
    extents = []
    for fnum, wtype, val in iter_fields(buf, "TensorSliceProto"):
        if fnum == 1 and wtype == 2:
            start, length = 0, -1
            for ef, ew, ev in iter_fields(val, "TensorSliceProto.Extent"):
                if ef == 1 and ew == 0:
                    start = _signed64(ev)
                elif ef == 2 and ew == 0:
                    length = _signed64(ev)
            extents.append((start, length))
    return tuple(extents)


def parse_entry(buf: bytes) -> BundleEntry:
    """Decode a serialized BundleEntryProto."""
    e = BundleEntry()
    for fnum, wtype, val in iter_fields(buf, "BundleEntryProto"):
        if fnum == 1 and wtype == 0:
            e.dtype = val
        elif fnum == 2 and wtype == 2:
            e.shape = _parse_shape(val)
        elif fnum == 3 and wtype == 0:
            e.shard_id = _signed64(val)
        elif fnum == 4 and wtype == 0:
            e.offset = _signed64(val)
        elif fnum == 5 and wtype == 0:
            e.size = _signed64(val)
        elif fnum == 6 and wtype == 5:
            e.crc32c = val
            e.has_crc = True
        elif fnum == 7 and wtype == 2:
            e.slices.append(_parse_slice(val))
    return e


def encode_entry(e: BundleEntry) -> bytes:
    """Serialize a BundleEntryProto (proto3: zero scalars omitted, shape always present)."""
    shape = b"".join(_f_bytes(2, _f_varint(1, d) if d else b"") for d in e.shape)
    out = b""
    if e.dtype:
        out += _f_varint(1, e.dtype)
    out += _f_bytes(2, shape)
    if e.shard_id:
        out += _f_varint(3, e.shard_id)
    if e.offset:
        out += _f_varint(4, e.offset)
    if e.size:
        out += _f_varint(5, e.size)
    if e.crc32c:
        out += _f_fixed32(6, e.crc32c)
    for sl in e.slices:
        ext = b""
        for start, length in sl:
            body = (_f_varint(1, start) if start else b"") + (
                _f_varint(2, length) if length >= 0 else b""
            )
            ext += _f_bytes(1, body)
        out += _f_bytes(7, ext)
    return out


# --------------------------------------------------------------------------- slice keys


def _ordered_num(value: int) -> bytes:
    """OrderedCode::WriteNumIncreasing: length byte, then big-endian without leading zeros."""
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes([len(body)]) + body


def _escape(s: bytes) -> bytes:
    """OrderedCode::WriteString body: 0x00 -> 00 ff, 0xff -> ff 00."""
    out = bytearray()
    for b in s:
        if b == 0x00:
            out += b"\x00\xff"
        elif b == 0xFF:
            out += b"\xff\x00"
        else:
            out.append(b)
    return bytes(out)


# OrderedCode::WriteSignedNumIncreasing header bits for an encoding of n bytes.
_SIGNED_HEADER = [(0, 0), (0x80, 0), (0xC0, 0), (0xE0, 0), (0xF0, 0), (0xF8, 0), (0xFC, 0),
                  (0xFE, 0), (0xFF, 0), (0xFF, 0x80), (0xFF, 0xC0)]


def _ordered_signed(value: int) -> bytes:
    """OrderedCode::WriteSignedNumIncreasing (sign bit, unary length, payload)."""
    x = ~value if value < 0 else value
    if x < 64:
        return bytes([(0x80 ^ value) & 0xFF])
    # n bytes hold numbers in [-2^(7n-1), 2^(7n-1)).
    bits = x.bit_length() + 1
    n = max(2, -(-bits // 7))
    if n > 10:
        raise TFFormatError(f"slice coordinate {value} too large")
    raw = bytearray((value & ((1 << 80) - 1)).to_bytes(10, "big")[10 - n :])
    raw[0] ^= _SIGNED_HEADER[n][0]
    raw[1] ^= _SIGNED_HEADER[n][1]
    return bytes(raw)


def slice_key(name: bytes, extents: tuple[tuple[int, int], ...]) -> bytes:
    """Index key of one stored slice of partitioned tensor `name` (EncodeTensorNameSlice)."""
    out = _ordered_num(0) + _escape(name) + b"\x00\x01" + _ordered_num(len(extents))
    for start, length in extents:
        out += _ordered_signed(start) + _ordered_signed(length)
    return out


# --------------------------------------------------------------------------- table read


def _block_entries(block: bytes, where: str) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise TFFormatError(f"{where}: block of {len(block)} bytes is too short")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise TFFormatError(f"{where}: block claims {num_restarts} restart points")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = read_varint(block, pos, f"{where} entry")
        non_shared, pos = read_varint(block, pos, f"{where} entry")
        vlen, pos = read_varint(block, pos, f"{where} entry")
        if shared > len(key) or pos + non_shared + vlen > limit:
            raise TFFormatError(f"{where}: corrupted entry at byte {pos}")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + vlen]
        pos += vlen


def _decode_handle(buf: bytes, pos: int, where: str) -> tuple[int, int, int]:
    offset, pos = read_varint(buf, pos, f"{where} block handle")
    size, pos = read_varint(buf, pos, f"{where} block handle")
    return offset, size, pos


def _read_block(data: bytes, offset: int, size: int, where: str, verify: bool) -> bytes:
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(data):
        raise TFFormatError(f"{where}: block [{offset}, {end}) runs past the file end ({len(data)} bytes)")
    raw = data[offset : offset + size]
    ctype = data[offset + size]
    if verify:
        stored = struct.unpack_from("<I", data, offset + size + 1)[0]
        actual = crc32c.extend(crc32c.value(raw), bytes([ctype]))
        if crc32c.unmask(stored) != actual:
            raise TFFormatError(
                f"{where}: checksum mismatch in block at byte {offset} "
                f"(stored {crc32c.unmask(stored):#010x}, computed {actual:#010x})"
            )
    if ctype == NO_COMPRESSION:
        return raw
    if ctype == SNAPPY_COMPRESSION:
        try:
            return snappy_decompress(raw)
        except SnappyError as exc:
            raise TFFormatError(f"{where}: block at byte {offset}: {exc}") from exc
    raise TFFormatError(f"{where}: block at byte {offset} has unknown compression type {ctype}")


def read_table(data: bytes, where: str, verify: bool = True) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of a LevelDB-format table held in memory, in key order."""
    if len(data) < FOOTER_SIZE:
        raise TFFormatError(f"{where}: {len(data)} bytes is too short for a table footer")
    footer = data[-FOOTER_SIZE:]
    magic = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)[0]
    if magic != TABLE_MAGIC:
        raise TFFormatError(
            f"{where}: bad table magic {magic:#018x} (expected {TABLE_MAGIC:#018x}); "
            "not a TensorBundle index, or truncated"
        )
    _, _, pos = _decode_handle(footer, 0, where)  # metaindex: unused by TensorBundle
    idx_off, idx_size, _ = _decode_handle(footer, pos, where)
    index = _read_block(data, idx_off, idx_size, f"{where} (index block)", verify)
    out: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(index, f"{where} (index block)"):
        off, size, _ = _decode_handle(handle, 0, where)
        block = _read_block(data, off, size, where, verify)
        out.extend(_block_entries(block, f"{where} (block at byte {off})"))
    for (a, _), (b, _) in zip(out, out[1:]):
        if a >= b:
            raise TFFormatError(f"{where}: keys out of order ({a!r} then {b!r})")
    return out


# --------------------------------------------------------------------------- table write


class _BlockBuilder:
    def __init__(self, restart_interval: int):
        self.restart_interval = restart_interval
        self.reset()

    def reset(self) -> None:
        self.buf = bytearray()
        self.restarts = [0]
        self.counter = 0
        self.last_key = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.counter < self.restart_interval:
            limit = min(len(key), len(self.last_key))
            while shared < limit and key[shared] == self.last_key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.counter = 0
        self.buf += encode_varint(shared) + encode_varint(len(key) - shared)
        self.buf += encode_varint(len(value)) + key[shared:] + value
        self.last_key = key
        self.counter += 1

    def size_estimate(self) -> int:
        return len(self.buf) + 4 * len(self.restarts) + 4

    def empty(self) -> bool:
        return not self.buf

    def finish(self) -> bytes:
        tail = b"".join(struct.pack("<I", r) for r in self.restarts)
        return bytes(self.buf) + tail + struct.pack("<I", len(self.restarts))


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """A short key k with start <= k < limit (LevelDB BytewiseComparator)."""
    n = min(len(start), len(limit))
    i = 0
    while i < n and start[i] == limit[i]:
        i += 1
    if i < n and start[i] < 0xFF and start[i] + 1 < limit[i]:
        return start[:i] + bytes([start[i] + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    """A short key >= `key` (LevelDB BytewiseComparator)."""
    for i, b in enumerate(key):
        if b != 0xFF:
            return key[:i] + bytes([b + 1])
    return key


def build_table(
    entries: list[tuple[bytes, bytes]],
    block_size: int = 262144,
    restart_interval: int = 16,
    compress: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Serialize sorted (key, value) pairs as a LevelDB-format table (TF's index file).

    `compress`, if given, must produce a raw snappy block; it is used for a block only
    when it saves at least 1/8 of the bytes, as LevelDB does.
    """
    out = bytearray()

    def write_block(contents: bytes, allow_compress: bool) -> bytes:
        ctype = NO_COMPRESSION
        if allow_compress and compress is not None:
            packed = compress(contents)
            if len(packed) < len(contents) - len(contents) // 8:
                contents, ctype = packed, SNAPPY_COMPRESSION
        handle = encode_varint(len(out)) + encode_varint(len(contents))
        crc = crc32c.mask(crc32c.extend(crc32c.value(contents), bytes([ctype])))
        out.extend(contents)
        out.append(ctype)
        out.extend(struct.pack("<I", crc))
        return handle

    data_block = _BlockBuilder(restart_interval)
    index_block = _BlockBuilder(1)
    prev = None
    pending = None  # handle of a flushed block whose index key waits for the next key
    for key, value in entries:
        if prev is not None and key <= prev:
            raise ValueError(f"table keys must be strictly increasing: {prev!r} then {key!r}")
        if pending is not None:
            index_block.add(_shortest_separator(prev, key), pending)
            pending = None
        data_block.add(key, value)
        prev = key
        if data_block.size_estimate() >= block_size:
            pending = write_block(data_block.finish(), True)
            data_block.reset()
    if not data_block.empty():
        pending = write_block(data_block.finish(), True)
    if pending is not None:
        index_block.add(_short_successor(prev), pending)
    meta_handle = write_block(_BlockBuilder(1).finish(), False)
    index_handle = write_block(index_block.finish(), False)
    footer = meta_handle + index_handle
    footer += b"\x00" * (FOOTER_SIZE - 8 - len(footer)) + struct.pack("<Q", TABLE_MAGIC)
    out.extend(footer)
    return bytes(out)
