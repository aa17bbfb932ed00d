"""CRC-32C (Castagnoli), the checksum TensorFlow puts on every tensor and table block.

Uses `google-crc32c` (hardware accelerated) when it is installed; otherwise a numpy
implementation that runs many CRC lanes side by side and folds them together with the
linearity of CRC over GF(2), fast enough for checkpoints of a few hundred megabytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:  # optional accelerator, listed in the `crc` extra
    import google_crc32c as _google_crc32c

    # The package silently falls back to pure Python when its C extension is missing.
    if getattr(_google_crc32c, "implementation", "c") != "c":
        _google_crc32c = None
except ImportError:  # pragma: no cover - depends on the environment
    _google_crc32c = None

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8  # from LevelDB/TensorFlow crc32c::Mask
_U32 = 0xFFFFFFFF


def _make_byte_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_byte_table()
_TABLE_NP = np.array(_TABLE, dtype=np.uint32)


def _make_halfword_tables() -> tuple[np.ndarray, np.ndarray]:
    """Tables that advance the register by two bytes at once: one for each 16-bit half."""
    idx = np.arange(65536, dtype=np.uint32)
    # Register r (32 bits) absorbs 4 zero-padded bytes; split r = lo16 | hi16 << 16.
    # Advancing by 4 bytes is linear, so table_lo[lo] ^ table_hi[hi] == advance4(r).
    def advance(values: np.ndarray, nbytes: int) -> np.ndarray:
        r = values.copy()
        for _ in range(nbytes):
            r = _TABLE_NP[r & 0xFF] ^ (r >> 8)
        return r

    return advance(idx, 4), advance(idx << 16, 4)


_HALF_TABLES: tuple[np.ndarray, np.ndarray] | None = None


def _raw_py(data: bytes | memoryview, reg: int = 0) -> int:
    """Unconditioned register update, one byte at a time (small inputs only)."""
    table = _TABLE
    for b in bytes(data):
        reg = table[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


# The zero-byte operator Z (advance the register over one 0x00 byte) is linear; we keep
# Z^(2^k) as 32 column images, and as four 256-entry tables for fast application.
_SHIFT_COLS: list[list[int]] = []
_SHIFT_TABLES: dict[int, np.ndarray] = {}


def _apply_cols(cols: list[int], v: int) -> int:
    out = 0
    bit = 0
    while v:
        if v & 1:
            out ^= cols[bit]
        v >>= 1
        bit += 1
    return out


def _shift_cols(k: int) -> list[int]:
    """Columns of Z^(2^k)."""
    while len(_SHIFT_COLS) <= k:
        if not _SHIFT_COLS:
            cols = [_TABLE[(1 << b) & 0xFF] ^ ((1 << b) >> 8) for b in range(32)]
        else:
            prev = _SHIFT_COLS[-1]
            cols = [_apply_cols(prev, c) for c in prev]
        _SHIFT_COLS.append(cols)
    return _SHIFT_COLS[k]


def _shift_int(v: int, nbytes: int) -> int:
    """Advance register value `v` over `nbytes` zero bytes."""
    k = 0
    while nbytes:
        if nbytes & 1:
            v = _apply_cols(_shift_cols(k), v)
        nbytes >>= 1
        k += 1
    return v


def _cols_for_length(nbytes: int) -> list[int]:
    return [_shift_int(1 << b, nbytes) for b in range(32)]


def _byte_tables(nbytes: int) -> np.ndarray:
    """(4, 256) tables applying Z^nbytes to each byte of a register value."""
    tab = _SHIFT_TABLES.get(nbytes)
    if tab is None:
        cols = np.array(_cols_for_length(nbytes), dtype=np.uint32)  # (32,)
        byte_vals = np.arange(256, dtype=np.uint32)
        tab = np.zeros((4, 256), dtype=np.uint32)
        for j in range(4):
            for b in range(8):
                tab[j] ^= np.where((byte_vals >> b) & 1, cols[8 * j + b], 0).astype(np.uint32)
        if len(_SHIFT_TABLES) > 256:
            _SHIFT_TABLES.clear()
        _SHIFT_TABLES[nbytes] = tab
    return tab


def _shift_np(v: np.ndarray, nbytes: int) -> np.ndarray:
    t = _byte_tables(nbytes)
    return t[0][v & 0xFF] ^ t[1][(v >> 8) & 0xFF] ^ t[2][(v >> 16) & 0xFF] ^ t[3][v >> 24]


_MIN_WORDS_PER_LANE = 32
_MAX_LANES = 1 << 16


def _raw_np(buf: np.ndarray) -> int:
    """Unconditioned CRC register (initial value 0) of a uint8 array."""
    n = buf.size
    if n < 4 * _MIN_WORDS_PER_LANE * 2:
        return _raw_py(buf.tobytes())
    global _HALF_TABLES
    if _HALF_TABLES is None:
        _HALF_TABLES = _make_halfword_tables()
    lo_tab, hi_tab = _HALF_TABLES
    lanes = 1
    while lanes * 2 <= _MAX_LANES and n // (lanes * 2 * 4) >= _MIN_WORDS_PER_LANE:
        lanes *= 2
    words = n // (lanes * 4)
    misalign = buf.ctypes.data % 4
    if misalign:  # the uint32 view below needs an aligned start
        head = 4 - misalign
        return _shift_int(_raw_py(buf[:head].tobytes()), n - head) ^ _raw_np(buf[head:])
    main = lanes * words * 4
    grid = buf[:main].view("<u4").reshape(lanes, words)  # (lanes, words)
    reg = np.zeros(lanes, dtype=np.uint32)
    tmp = np.empty(lanes, dtype=np.uint32)
    # intp indices spare np.take a conversion; they are < 65536 so 'clip' never clips.
    lo = np.empty(lanes, dtype=np.intp)
    hi = np.empty(lanes, dtype=np.intp)
    step = 64
    for w0 in range(0, words, step):
        # Transposed copy keeps each column contiguous for the inner loop.
        cols = np.ascontiguousarray(grid[:, w0 : w0 + step].T)  # (step, lanes)
        for col in cols:
            np.bitwise_xor(reg, col, out=reg)
            np.bitwise_and(reg, 0xFFFF, out=lo, casting="unsafe")
            np.right_shift(reg, 16, out=hi, casting="unsafe")
            lo_tab.take(lo, out=reg, mode="clip")
            hi_tab.take(hi, out=tmp, mode="clip")
            np.bitwise_xor(reg, tmp, out=reg)
    # Fold lanes pairwise: raw(A || B) = Z^len(B)(raw(A)) ^ raw(B).
    span = words * 4
    while reg.size > 1:
        reg = _shift_np(reg[0::2], span) ^ reg[1::2]
        span *= 2
    total = int(reg[0])
    rest = n - main
    if rest:
        total = _shift_int(total, rest) ^ _raw_np(buf[main:])
    return total


def _as_uint8(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        arr = data
    else:
        arr = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if arr.dtype != np.uint8 or arr.ndim != 1:
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        arr = arr.reshape(-1).view(np.uint8)
    return arr


def extend_numpy(crc: int, data: Any) -> int:
    """CRC-32C of the bytes that `crc` covered followed by `data` (numpy implementation)."""
    buf = _as_uint8(data)
    start = (crc ^ _U32) & _U32
    return (_raw_np(buf) ^ _shift_int(start, buf.size) ^ _U32) & _U32


def extend(crc: int, data: Any) -> int:
    """CRC-32C of the bytes that `crc` covered followed by `data`; `extend(0, b)` is crc32c(b)."""
    if _google_crc32c is not None:
        buf = _as_uint8(data)
        return _google_crc32c.extend(crc, buf)
    return extend_numpy(crc, data)


def value(data: Any) -> int:
    """CRC-32C of a bytes-like object or a contiguous numpy array's raw bytes."""
    return extend(0, data)


def mask(crc: int) -> int:
    """TensorFlow/LevelDB masked form of a CRC, as stored in checkpoint files."""
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def unmask(masked: int) -> int:
    """Inverse of `mask`."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


def backend() -> str:
    """Which implementation `extend` uses: 'google-crc32c' or 'numpy'."""
    return "google-crc32c" if _google_crc32c is not None else "numpy"
