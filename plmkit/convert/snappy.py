"""Snappy raw-block decompression, for compressed blocks of LevelDB-style tables.

Format: https://github.com/google/snappy/blob/main/format_description.txt
A preamble varint gives the uncompressed length; then tagged elements follow: literals
(tag low bits 00) and back-references with 1-, 2- or 4-byte offsets (01, 10, 11).
Uses `cramjam` or `python-snappy` when importable, else the pure-Python decoder below.
"""

from __future__ import annotations

from typing import Callable


class SnappyError(ValueError):
    """A snappy block is malformed."""


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise SnappyError("snappy: truncated length preamble")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 35:
            raise SnappyError("snappy: length preamble longer than 5 bytes")


def decompress_py(data: bytes) -> bytes:
    """Decode one raw snappy block in pure Python."""
    data = bytes(data)
    size, pos = _read_uvarint(data, 0)
    out = bytearray(size)
    op = 0
    end = len(data)
    while pos < end:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                nbytes = length - 59
                if pos + nbytes > end:
                    raise SnappyError(f"snappy: truncated literal length at byte {pos}")
                length = int.from_bytes(data[pos : pos + nbytes], "little")
                pos += nbytes
            length += 1
            if pos + length > end:
                raise SnappyError(f"snappy: literal of {length} bytes runs past the input end")
            if op + length > size:
                raise SnappyError(f"snappy: output exceeds the declared {size} bytes")
            out[op : op + length] = data[pos : pos + length]
            op += length
            pos += length
            continue
        if kind == 1:
            if pos + 1 > end:
                raise SnappyError("snappy: truncated 1-byte-offset copy")
            length = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        else:
            nbytes = 2 if kind == 2 else 4
            if pos + nbytes > end:
                raise SnappyError(f"snappy: truncated {nbytes}-byte-offset copy")
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + nbytes], "little")
            pos += nbytes
        if offset == 0 or offset > op:
            raise SnappyError(f"snappy: copy offset {offset} invalid at output position {op}")
        if op + length > size:
            raise SnappyError(f"snappy: output exceeds the declared {size} bytes")
        src = op - offset
        if offset >= length:
            out[op : op + length] = out[src : src + length]
        else:  # overlapping copy repeats the last `offset` bytes
            pattern = bytes(out[src:op])
            reps = -(-length // offset)
            out[op : op + length] = (pattern * reps)[:length]
        op += length
    if op != size:
        raise SnappyError(f"snappy: decoded {op} bytes, preamble says {size}")
    return bytes(out)


def _fast_decoder() -> Callable[[bytes], bytes] | None:
    try:
        import cramjam

        return lambda b: bytes(cramjam.snappy.decompress_raw(b))
    except ImportError:
        pass
    try:
        import snappy as _snappy

        if hasattr(_snappy, "uncompress"):
            return _snappy.uncompress
    except ImportError:
        pass
    return None


_FAST = _fast_decoder()


def decompress(data: bytes) -> bytes:
    """Decode one raw snappy block, with a compiled decoder when one is installed."""
    if _FAST is not None:
        try:
            return _FAST(bytes(data))
        except Exception as exc:  # normalise the third-party error type
            raise SnappyError(f"snappy: {exc}") from exc
    return decompress_py(data)
