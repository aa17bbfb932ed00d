"""Read and write original TensorFlow checkpoints (TensorBundle, "V2") without TensorFlow.

    reader = TFCheckpointReader("chinese_L-12_H-768_A-12/")   # dir, prefix or .index
    reader.keys()                          # ['bert/embeddings/LayerNorm/beta', ...]
    reader.get("bert/pooler/dense/kernel")  # np.ndarray, memory-mapped, checksum verified
    write_tf_checkpoint("out/model.ckpt", {"w": np.ones(3, np.float32)})

Arrays come straight out of a copy-on-write memory map of the data shard, so loading
costs no second copy of the file. bfloat16 tensors come back as their raw uint16 bits;
`bfloat16_to_torch` / `bfloat16_to_float32` turn them into numbers. The file format is
decoded in `tf_bundle.py`.
"""

from __future__ import annotations

import ast
import glob
import mmap
import os
import re
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

from ..files import atomic_write
from . import crc32c
from .tf_bundle import (
    DT_BFLOAT16,
    DT_STRING,
    DTYPE_BY_NAME,
    DTYPES,
    BundleEntry,
    BundleHeader,
    TFFormatError,
    build_table,
    dtype_name,
    encode_entry,
    encode_header,
    encode_varint,
    iter_fields,
    parse_entry,
    parse_header,
    read_table,
    read_varint,
    slice_key,
)

if TYPE_CHECKING:  # torch is only needed for the torch helpers
    import torch

__all__ = [
    "TFCheckpointError",
    "TFCheckpointReader",
    "read_tf_checkpoint",
    "write_tf_checkpoint",
    "resolve_tf_checkpoint",
    "bfloat16_to_torch",
    "bfloat16_to_float32",
    "to_torch",
]

VARIABLE_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_DATA_RE = re.compile(r"\.data-\d{5}-of-\d{5}$")


class TFCheckpointError(ValueError):
    """A TensorFlow checkpoint is missing, corrupted, truncated or unsupported."""


def _key_str(key: bytes) -> str:
    return key.decode("utf-8", errors="surrogateescape")


def _key_bytes(name: str) -> bytes:
    return name.encode("utf-8", errors="surrogateescape")


def data_filename(prefix: str, shard: int, num_shards: int) -> str:
    """Path of data shard `shard` of `num_shards` (`PREFIX.data-0000k-of-0000n`)."""
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


def _state_file_prefix(directory: str) -> str | None:
    path = os.path.join(directory, "checkpoint")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^\s*model_checkpoint_path\s*:\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')",
                  text, re.M)
    if m is None:
        raise TFCheckpointError(f"{path}: no model_checkpoint_path line in the checkpoint state file")
    # Text-format protobuf strings use C escapes, which Python bytes literals share;
    # raw non-ASCII characters (hand-edited files) become \x escapes of their UTF-8 first.
    quoted = m.group(1).encode("utf-8").decode("ascii", "backslashreplace")
    try:
        value = ast.literal_eval("b" + quoted).decode("utf-8")
    except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
        raise TFCheckpointError(f"{path}: cannot parse model_checkpoint_path {m.group(1)}: {exc}") from exc
    return value if os.path.isabs(value) else os.path.join(directory, value)


def resolve_tf_checkpoint(path: str | os.PathLike) -> str:
    """Checkpoint prefix for a directory, a prefix, a `.index` file or a `.data-*` shard."""
    path = os.fspath(path)
    if os.path.isdir(path):
        prefix = _state_file_prefix(path)
        if prefix is not None:
            # Released checkpoints often carry the trainer's absolute path (even gs://...), and a
            # copied directory still names the original: the files beside the state file come
            # first; the path as written (relative to this directory) only when they are not here.
            for candidate in (os.path.join(path, os.path.basename(prefix)), os.path.join(path, prefix)):
                if os.path.isfile(candidate + ".index"):
                    return candidate
        indexes = sorted(glob.glob(os.path.join(glob.escape(path), "*.index")))
        if len(indexes) == 1:
            return indexes[0][: -len(".index")]
        if not indexes:
            hint = f" (the state file names {prefix!r}, which has no .index)" if prefix else ""
            raise TFCheckpointError(f"{path}: no TensorFlow checkpoint (*.index) in this directory{hint}")
        names = ", ".join(os.path.basename(i) for i in indexes)
        raise TFCheckpointError(
            f"{path}: several checkpoints ({names}) and no usable 'checkpoint' state file; "
            "pass the prefix of the one to load"
        )
    if path.endswith(".index"):
        path = path[: -len(".index")]
    else:
        path = _DATA_RE.sub("", path)
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isfile(path):
        raise TFCheckpointError(
            f"{path}: no {os.path.basename(path)}.index beside this file; old (V1) TensorFlow "
            "checkpoints are not supported"
        )
    raise TFCheckpointError(f"{path}.index: no such TensorFlow checkpoint index")


class TFCheckpointReader:
    """Random access to the tensors of a TensorFlow checkpoint, without TensorFlow.

    `verify` checks every tensor's masked CRC-32C as it is read (fast with
    `google-crc32c` installed). `mmap=False` reads each tensor into its own buffer
    instead of returning views of a copy-on-write file mapping.
    """

    def __init__(self, path: str | os.PathLike, *, verify: bool = True, mmap: bool = True) -> None:
        self.prefix = resolve_tf_checkpoint(path)
        self.verify = verify
        self.use_mmap = mmap
        self.index_path = self.prefix + ".index"
        with open(self.index_path, "rb") as f:
            data = f.read()
        try:
            rows = read_table(data, self.index_path, verify=verify)
        except TFFormatError as exc:
            raise TFCheckpointError(str(exc)) from exc
        if not rows or rows[0][0] != b"":
            raise TFCheckpointError(f"{self.index_path}: no header entry (empty key) in the index")
        try:
            self.header = parse_header(rows[0][1])
        except TFFormatError as exc:
            raise TFCheckpointError(f"{self.index_path}: header: {exc}") from exc
        self._check_header()
        self._entries: dict[bytes, BundleEntry] = {}
        for key, value in rows[1:]:
            try:
                self._entries[key] = parse_entry(value)
            except TFFormatError as exc:
                raise TFCheckpointError(
                    f"{self.index_path}: entry for tensor {_key_str(key)!r}: {exc}"
                ) from exc
        # Keys starting with a 0 byte hold slices of partitioned tensors.
        self._names = [_key_str(k) for k in self._entries if not k.startswith(b"\x00")]
        self._maps: dict[int, Any] = {}

    # ---------------------------------------------------------------- metadata

    def _check_header(self) -> None:
        h = self.header
        if h.num_shards < 1:
            raise TFCheckpointError(f"{self.index_path}: header says {h.num_shards} data shards")
        if h.endianness != 0:
            raise TFCheckpointError(
                f"{self.index_path}: big-endian checkpoint (header endianness={h.endianness}); "
                "only little-endian checkpoints are supported"
            )
        if h.min_consumer > 1 or 1 in h.bad_consumers:
            raise TFCheckpointError(
                f"{self.index_path}: format version producer={h.producer} "
                f"min_consumer={h.min_consumer} is newer than this reader (version 1)"
            )

    def keys(self) -> list[str]:
        """Tensor names in the checkpoint, sorted as stored (slice entries hidden)."""
        return list(self._names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and not name.startswith("\x00") and _key_bytes(name) in self._entries

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def _entry(self, name: str) -> BundleEntry:
        entry = self._entries.get(_key_bytes(name)) if not name.startswith("\x00") else None
        if entry is None:
            raise KeyError(f"tensor {name!r} not in checkpoint {self.prefix}")
        return entry

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of tensor `name`."""
        return self._entry(name).shape

    def dtype(self, name: str) -> str:
        """dtype of tensor `name` as a string: 'float32', 'bfloat16', 'int64', 'string', ..."""
        return dtype_name(self._entry(name).dtype)

    def nbytes(self, name: str) -> int:
        """Bytes tensor `name` occupies in the data files."""
        e = self._entry(name)
        if not e.slices:
            return e.size
        parts = (self._entries.get(slice_key(_key_bytes(name), s)) for s in e.slices)
        return sum(p.size for p in parts if p is not None)

    def location(self, name: str) -> tuple[str, int, int]:
        """(data file, byte offset, byte size) of a non-partitioned tensor."""
        e = self._entry(name)
        if e.slices:
            raise TFCheckpointError(f"tensor {name!r} is partitioned into {len(e.slices)} slices")
        return data_filename(self.prefix, e.shard_id, self.header.num_shards), e.offset, e.size

    def is_partitioned(self, name: str) -> bool:
        """Whether `name` is stored as several slices (a partitioned variable)."""
        return bool(self._entry(name).slices)

    def friendly_names(self) -> dict[str, str]:
        """For TF2 object-based checkpoints: object path -> key, e.g. 'model/dense/kernel'."""
        out = {}
        for name in self._names:
            if name.endswith(VARIABLE_VALUE_SUFFIX):
                out[name[: -len(VARIABLE_VALUE_SUFFIX)]] = name
        return out

    def variable_names(self) -> dict[str, str]:
        """For TF2 checkpoints: the variables' own names (tf.Variable.name) -> key.

        Read from the serialized object graph; empty for TF1 name-based checkpoints.
        """
        if OBJECT_GRAPH_KEY not in self:
            return {}
        graph = self.get(OBJECT_GRAPH_KEY)
        return _object_graph_full_names(bytes(graph.reshape(-1)[0]), self.index_path)

    # ---------------------------------------------------------------- data access

    def _data_file(self, shard: int) -> tuple[str, Any]:
        path = data_filename(self.prefix, shard, self.header.num_shards)
        if shard not in self._maps:
            if shard < 0 or shard >= self.header.num_shards:
                raise TFCheckpointError(
                    f"{self.index_path}: shard id {shard} outside 0..{self.header.num_shards - 1}"
                )
            if not os.path.isfile(path):
                raise TFCheckpointError(f"{path}: data shard missing")
            if self.use_mmap:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    # ACCESS_COPY: arrays are writable (torch.from_numpy wants that) and
                    # writes stay private to this process, never reaching the file.
                    self._maps[shard] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else b""
            else:
                self._maps[shard] = None
        return path, self._maps[shard]

    def _raw(self, label: str, e: BundleEntry) -> tuple[str, np.ndarray]:
        """The bytes of one stored tensor (or slice) as a uint8 array, bounds-checked."""
        path, mm = self._data_file(e.shard_id)
        if e.offset < 0 or e.size < 0:
            raise TFCheckpointError(f"{self.index_path}: tensor {label!r} has offset {e.offset}, size {e.size}")
        end = e.offset + e.size
        if mm is None:
            file_size = os.path.getsize(path)
        else:
            file_size = len(mm)
        if end > file_size:
            raise TFCheckpointError(
                f"{path}: truncated: tensor {label!r} needs bytes [{e.offset}, {end}) "
                f"but the file has {file_size} bytes"
            )
        if mm is None:
            buf = np.empty(e.size, dtype=np.uint8)
            with open(path, "rb") as f:
                f.seek(e.offset)
                got = f.readinto(memoryview(buf))
            if got != e.size:
                raise TFCheckpointError(f"{path}: short read of tensor {label!r} ({got} of {e.size} bytes)")
            return path, buf
        if e.size == 0:
            return path, np.zeros(0, dtype=np.uint8)
        return path, np.frombuffer(mm, dtype=np.uint8, count=e.size, offset=e.offset)

    def _checksum(self, path: str, label: str, e: BundleEntry, crc: int) -> None:
        stored = crc32c.unmask(e.crc32c)
        if e.has_crc and crc != stored:
            raise TFCheckpointError(
                f"{path}: checksum mismatch for tensor {label!r} (bytes [{e.offset}, "
                f"{e.offset + e.size})): stored crc32c {stored:#010x}, computed {crc:#010x}; "
                "the file is corrupted"
            )

    def _read_stored(self, label: str, e: BundleEntry) -> np.ndarray:
        if e.dtype not in DTYPES:
            raise TFCheckpointError(
                f"{self.index_path}: tensor {label!r} has dtype {dtype_name(e.dtype)}, "
                "which this reader does not support"
            )
        count = 1
        for d in e.shape:
            if d < 0:
                raise TFCheckpointError(f"{self.index_path}: tensor {label!r} has shape {e.shape}")
            count *= d
        if e.dtype == DT_STRING:
            return self._read_strings(label, e, count)
        np_dtype = np.dtype(DTYPES[e.dtype][1])
        if e.size != count * np_dtype.itemsize:
            raise TFCheckpointError(
                f"{self.index_path}: tensor {label!r} of shape {e.shape} and dtype "
                f"{dtype_name(e.dtype)} should take {count * np_dtype.itemsize} bytes, entry says {e.size}"
            )
        path, raw = self._raw(label, e)
        if self.verify:
            self._checksum(path, label, e, crc32c.value(raw))
        if raw.ctypes.data % np_dtype.alignment:
            raw = raw.copy()  # TF packs tensors without padding; numpy/torch want alignment
        return raw.view(np_dtype).reshape(e.shape)

    def _read_strings(self, label: str, e: BundleEntry, count: int) -> np.ndarray:
        # Layout (tensor_bundle.cc WriteStringTensor): varint64 length per element, a masked
        # CRC-32C of the lengths (as u32, or u64 if > 4 GiB), then the bytes back to back.
        path, raw = self._raw(label, e)
        buf = raw.tobytes()
        pos = 0
        lengths = []
        try:
            for _ in range(count):
                n, pos = read_varint(buf, pos, "string length")
                lengths.append(n)
        except TFFormatError as exc:
            raise TFCheckpointError(f"{path}: string tensor {label!r}: {exc}") from exc
        if pos + 4 > len(buf):
            raise TFCheckpointError(f"{path}: string tensor {label!r}: missing length checksum")
        length_crc_bytes = buf[pos : pos + 4]
        pos += 4
        if pos + sum(lengths) != len(buf):
            raise TFCheckpointError(
                f"{path}: string tensor {label!r}: lengths add up to {pos + sum(lengths)} bytes, "
                f"entry says {len(buf)}"
            )
        if self.verify:
            packed = b"".join(
                n.to_bytes(4 if n <= 0xFFFFFFFF else 8, "little") for n in lengths
            )
            crc = crc32c.value(packed)
            stored = crc32c.unmask(int.from_bytes(length_crc_bytes, "little"))
            if crc != stored:
                raise TFCheckpointError(
                    f"{path}: checksum mismatch in the string lengths of tensor {label!r}: "
                    f"stored {stored:#010x}, computed {crc:#010x}"
                )
            crc = crc32c.extend(crc, length_crc_bytes)
            crc = crc32c.extend(crc, buf[pos:])
            self._checksum(path, label, e, crc)
        out = np.empty(count, dtype=object)
        for i, n in enumerate(lengths):
            out[i] = buf[pos : pos + n]
            pos += n
        return out.reshape(e.shape)

    def _assemble(self, name: str, e: BundleEntry) -> np.ndarray:
        shape = e.shape
        dtype = np.dtype(DTYPES[e.dtype][1]) if e.dtype in DTYPES else None
        if dtype is None:
            raise TFCheckpointError(f"{self.index_path}: tensor {name!r} has unsupported dtype {dtype_name(e.dtype)}")
        out = np.empty(shape, dtype=dtype)
        boxes = []
        for extents in e.slices:
            if len(extents) != len(shape):
                raise TFCheckpointError(
                    f"{self.index_path}: slice {extents} of tensor {name!r} has rank {len(extents)}, "
                    f"tensor has shape {shape}"
                )
            box = tuple((0, d) if ln < 0 else (st, ln) for (st, ln), d in zip(extents, shape))
            for (st, ln), d in zip(box, shape):
                if st < 0 or ln < 0 or st + ln > d:
                    raise TFCheckpointError(
                        f"{self.index_path}: slice {extents} of tensor {name!r} lies outside shape {shape}"
                    )
            key = slice_key(_key_bytes(name), extents)
            part = self._entries.get(key)
            if part is None:
                raise TFCheckpointError(
                    f"{self.index_path}: slice {extents} of partitioned tensor {name!r} has no entry"
                )
            if part.dtype != e.dtype or tuple(part.shape) != tuple(ln for _, ln in box):
                raise TFCheckpointError(
                    f"{self.index_path}: slice {extents} of tensor {name!r} is stored as "
                    f"{dtype_name(part.dtype)}{list(part.shape)}, expected "
                    f"{dtype_name(e.dtype)}{[ln for _, ln in box]}"
                )
            values = self._read_stored(f"{name} (slice {extents})", part)
            out[tuple(slice(st, st + ln) for st, ln in box)] = values
            boxes.append(box)
        # The slices must tile the tensor exactly: disjoint, and volumes adding up.
        total = int(np.prod(shape, dtype=np.int64))
        covered = sum(int(np.prod([ln for _, ln in b], dtype=np.int64)) for b in boxes)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                if all(max(s1, s2) < min(s1 + l1, s2 + l2) for (s1, l1), (s2, l2) in zip(a, b)):
                    raise TFCheckpointError(f"{self.index_path}: slices {a} and {b} of tensor {name!r} overlap")
        if covered != total:
            raise TFCheckpointError(
                f"{self.index_path}: slices of partitioned tensor {name!r} cover {covered} of {total} elements"
            )
        return out

    def get(self, name: str) -> np.ndarray:
        """Tensor `name` as a numpy array (bfloat16 as uint16 bits, strings as bytes objects)."""
        e = self._entry(name)
        if e.slices:
            return self._assemble(name, e)
        return self._read_stored(name, e)

    def get_torch(self, name: str) -> "torch.Tensor":
        """Tensor `name` as a torch tensor sharing memory with the file mapping."""
        return to_torch(self.get(name), self.dtype(name))

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name, array) for every tensor, in stored order."""
        for name in self._names:
            yield name, self.get(name)

    def close(self) -> None:
        """Drop the file mappings (arrays already returned keep them alive)."""
        for mm in self._maps.values():
            if isinstance(mm, mmap.mmap):
                try:
                    mm.close()
                except BufferError:
                    pass  # arrays still view it; it closes when they are gone
        self._maps.clear()

    def __enter__(self) -> "TFCheckpointReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TFCheckpointReader({self.prefix!r}, {len(self)} tensors, {self.header.num_shards} shard(s))"


def _object_graph_full_names(blob: bytes, where: str) -> dict[str, str]:
    """TrackableObjectGraph -> {variable full_name: checkpoint_key} (hand-decoded proto)."""
    out: dict[str, str] = {}
    try:
        for fnum, wtype, node in iter_fields(blob, "TrackableObjectGraph"):
            if fnum != 1 or wtype != 2:
                continue
            for nf, nw, attr in iter_fields(node, "TrackableObject"):
                if nf != 2 or nw != 2:
                    continue
                fields = {af: av for af, aw, av in iter_fields(attr, "SerializedTensor") if aw == 2}
                full = fields.get(2, b"").decode("utf-8")
                key = fields.get(3, b"").decode("utf-8")
                if full and key and fields.get(1, b"") == b"VARIABLE_VALUE":
                    out[full] = key
    except (TFFormatError, UnicodeDecodeError) as exc:
        raise TFCheckpointError(f"{where}: {OBJECT_GRAPH_KEY}: {exc}") from exc
    return out


def read_tf_checkpoint(path: str | os.PathLike, *, verify: bool = True) -> dict[str, np.ndarray]:
    """All tensors of a TF checkpoint (dir, prefix or .index path) as name -> numpy array."""
    reader = TFCheckpointReader(path, verify=verify)
    return dict(reader.items())


# --------------------------------------------------------------------------- torch helpers


def bfloat16_to_torch(bits: np.ndarray) -> "torch.Tensor":
    """uint16 bfloat16 bit patterns -> torch.bfloat16 tensor, sharing memory (no copy)."""
    import torch

    arr = np.asarray(bits)
    if arr.dtype.itemsize != 2:
        raise TypeError(f"bfloat16 bits must be a 2-byte dtype, got {arr.dtype}")
    return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float32 values (exact; one new array)."""
    arr = np.asarray(bits)
    if arr.dtype.itemsize != 2:
        raise TypeError(f"bfloat16 bits must be a 2-byte dtype, got {arr.dtype}")
    return (arr.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def to_torch(array: np.ndarray, dtype: str | None = None) -> "torch.Tensor":
    """A reader array as a torch tensor without copying; pass dtype='bfloat16' for bf16 bits."""
    import torch

    if dtype == "bfloat16":
        return bfloat16_to_torch(array)
    if array.dtype == object:
        raise TypeError("string tensors have no torch equivalent")
    return torch.from_numpy(np.asarray(array, order="C"))


# --------------------------------------------------------------------------- writer


def _float32_to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bits (NaN kept quiet)."""
    x = np.asarray(x, dtype=np.float32, order="C")
    u = x.view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def _as_tf_array(name: str, value: Any, want: str | None) -> tuple[int, np.ndarray]:
    """(TF dtype enum, contiguous numpy array of the on-disk element layout)."""
    enum = None
    if type(value).__module__.startswith("torch"):
        import torch

        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            enum = DT_BFLOAT16
            arr = t.contiguous().view(torch.int16).numpy().view(np.uint16)
        else:
            arr = t.contiguous().numpy()
    else:
        arr = np.asarray(value)
        if arr.dtype.name == "bfloat16":  # ml_dtypes / tensorflow numpy bfloat16
            enum = DT_BFLOAT16
            arr = arr.view(np.uint16)
    if arr.dtype.kind in "OSU":
        if want not in (None, "string"):
            raise TypeError(f"tensor {name!r}: cannot store strings as {want}")
        flat = [
            v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in arr.reshape(-1).tolist()
        ]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return DT_STRING, out.reshape(arr.shape)
    if want is not None:
        if want not in DTYPE_BY_NAME or want == "string":
            raise ValueError(f"tensor {name!r}: unknown target dtype {want!r}")
        target = DTYPE_BY_NAME[want]
        if target == DT_BFLOAT16:
            if enum == DT_BFLOAT16:
                pass
            elif arr.dtype == np.uint16:  # already bfloat16 bit patterns
                enum = DT_BFLOAT16
            elif arr.dtype.kind == "f":
                arr, enum = _float32_to_bfloat16_bits(arr.astype(np.float32)), DT_BFLOAT16
            else:
                raise TypeError(f"tensor {name!r}: cannot convert {arr.dtype} to bfloat16")
        else:
            if enum == DT_BFLOAT16:
                arr = bfloat16_to_float32(arr)
            arr, enum = arr.astype(DTYPES[target][1]), target
    if enum is None:
        for code, (_, np_str) in DTYPES.items():
            if code not in (DT_STRING, DT_BFLOAT16) and np.dtype(np_str) == arr.dtype.newbyteorder("<"):
                enum = code
                break
        if enum is None:
            raise TypeError(f"tensor {name!r}: numpy dtype {arr.dtype} has no TensorFlow equivalent")
    np_dtype = np.dtype(DTYPES[enum][1])
    return enum, np.asarray(arr, dtype=np_dtype, order="C")


def _is_floating(value: Any) -> bool:
    if type(value).__module__.startswith("torch"):
        return bool(value.is_floating_point())
    dt = np.asarray(value).dtype
    return dt.kind == "f" or dt.name == "bfloat16"


def _string_payload(arr: np.ndarray) -> tuple[list[bytes], int]:
    """Chunks of a TF string tensor on disk, and their unmasked CRC-32C."""
    items = arr.reshape(-1).tolist()
    lengths = b"".join(encode_varint(len(s)) for s in items)
    crc = crc32c.value(b"".join(len(s).to_bytes(4 if len(s) <= 0xFFFFFFFF else 8, "little") for s in items))
    length_crc = crc32c.mask(crc).to_bytes(4, "little")
    crc = crc32c.extend(crc, length_crc)
    for s in items:
        crc = crc32c.extend(crc, s)
    return [lengths, length_crc, *items], crc


def _write_atomic_bytes(path: str, chunks: list[bytes]) -> None:
    def write(tmp) -> None:
        with open(tmp, "wb") as f:
            for c in chunks:
                f.write(c)

    atomic_write(path, write)


def write_tf_checkpoint(
    prefix: str | os.PathLike,
    tensors: Mapping[str, Any],
    *,
    dtypes: Mapping[str, str] | str | None = None,
    state_file: bool = True,
    block_size: int = 262144,
    index_compressor: Any = None,
) -> str:
    """Write `tensors` as a TensorFlow checkpoint `PREFIX.index` + `PREFIX.data-00000-of-00001`.

    Values may be numpy arrays, torch tensors (bfloat16 included), scalars, or arrays of
    str/bytes (stored as DT_STRING). `dtypes` converts on the way out: one dtype name for
    every floating tensor, or a per-name mapping (e.g. {"shared/embedding": "bfloat16"}).
    Files appear atomically; a `checkpoint` state file naming the prefix is written beside
    them unless `state_file=False`. Returns the prefix.
    """
    prefix = os.fspath(prefix)
    directory = os.path.dirname(prefix) or "."
    os.makedirs(directory, exist_ok=True)
    names = sorted(tensors, key=_key_bytes)
    if not names:
        raise ValueError("write_tf_checkpoint: no tensors given")
    for name in names:
        if not isinstance(name, str) or not name or name.startswith("\x00"):
            raise ValueError(f"invalid tensor name {name!r}: must be a non-empty str not starting with NUL")

    data_path = data_filename(prefix, 0, 1)
    entries: list[tuple[bytes, bytes]] = []

    def write_data(tmp) -> None:
        offset = 0
        with open(tmp, "wb") as f:
            for name in names:
                value = tensors[name]
                if isinstance(dtypes, str):
                    want = dtypes if _is_floating(value) else None
                else:
                    want = dtypes.get(name) if dtypes is not None else None
                enum, arr = _as_tf_array(name, value, want)
                if enum == DT_STRING:
                    chunks, crc = _string_payload(arr)
                    size = 0
                    for c in chunks:
                        f.write(c)
                        size += len(c)
                else:
                    view = memoryview(arr).cast("B") if arr.size else memoryview(b"")
                    crc = crc32c.value(view)
                    f.write(view)
                    size = view.nbytes
                entry = BundleEntry(dtype=enum, shape=tuple(int(d) for d in arr.shape), offset=offset,
                                    size=size, crc32c=crc32c.mask(crc))
                entries.append((_key_bytes(name), encode_entry(entry)))
                offset += size

    # Data first, index last: a reader never sees an index without its data.
    atomic_write(data_path, write_data)
    header = encode_header(BundleHeader(num_shards=1, endianness=0, producer=1))
    index = build_table([(b"", header), *entries], block_size=block_size, compress=index_compressor)
    _write_atomic_bytes(prefix + ".index", [index])
    if state_file:
        base = os.path.basename(prefix)
        quoted = base.replace("\\", "\\\\").replace('"', '\\"')
        text = f'model_checkpoint_path: "{quoted}"\nall_model_checkpoint_paths: "{quoted}"\n'
        _write_atomic_bytes(os.path.join(directory, "checkpoint"), [text.encode("utf-8")])
    return prefix
