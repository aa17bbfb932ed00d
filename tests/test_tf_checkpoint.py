"""TensorFlow checkpoints without TensorFlow: reader, writer, snappy, CRC-32C.

Oracles: the fixtures in tests/fixtures/tf/ were written by real TensorFlow (see
make_tf_fixtures.py), and `tf_readback.*` beside each holds what TensorFlow's own
`tf.train.load_checkpoint` returned for every key. Published CRC-32C check values and
hand-assembled snappy streams cover the codecs.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil

import numpy as np
import pytest
import torch

from plmkit.convert import crc32c, snappy, tf_bundle
from plmkit.convert.tensorflow import (
    TFCheckpointError,
    TFCheckpointReader,
    bfloat16_to_float32,
    bfloat16_to_torch,
    read_tf_checkpoint,
    resolve_tf_checkpoint,
    to_torch,
    write_tf_checkpoint,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "tf")
FIXTURE_NAMES = sorted(
    d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d))
)


def readback(name: str) -> tuple[dict, np.lib.npyio.NpzFile]:
    """What TensorFlow returned for fixture `name`: the json document and its arrays."""
    d = os.path.join(FIXTURES, name)
    path = os.path.join(d, "tf_readback.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    else:
        with gzip.open(path + ".gz", "rt", encoding="utf-8") as f:
            doc = json.load(f)
    return doc, np.load(os.path.join(d, "tf_readback.npz"))


def copy_fixture(name: str, tmp_path) -> str:
    dst = tmp_path / name
    shutil.copytree(os.path.join(FIXTURES, name), dst)
    return str(dst)


# ----------------------------------------------------------------------------- fixtures vs TF


def test_fixture_set_is_complete():
    expected = {"bert", "albert_google", "albert_brightmart", "electra", "nezha", "roformer",
                "mt5", "partitioned", "slices", "multishard", "tf2", "dtypes", "multiblock", "ours"}
    assert expected <= set(FIXTURE_NAMES)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_tensor_bit_equal_to_tensorflow(name):
    doc, arrays = readback(name)
    reader = TFCheckpointReader(os.path.join(FIXTURES, name))
    assert os.path.basename(reader.prefix) == doc["prefix"]
    assert sorted(reader.keys()) == sorted(doc["tensors"])
    for key, want in doc["tensors"].items():
        assert reader.dtype(key) == want["dtype"], key
        assert list(reader.shape(key)) == want["shape"], key
        got = reader.get(key)
        assert list(got.shape) == want["shape"], key
        if want["dtype"] == "string":
            assert [bytes(v).hex() for v in got.reshape(-1)] == want["hex"], key
        else:
            expected = arrays[want["npz"]]
            assert got.dtype.itemsize == expected.dtype.itemsize, key
            assert got.tobytes() == expected.tobytes(), key  # bitwise: NaN, -0.0 included


def test_mmap_off_reads_the_same():
    doc, arrays = readback("dtypes")
    with_map = read_tf_checkpoint(os.path.join(FIXTURES, "dtypes"))
    reader = TFCheckpointReader(os.path.join(FIXTURES, "dtypes"), mmap=False)
    for key in doc["tensors"]:
        a, b = with_map[key], reader.get(key)
        if a.dtype == object:
            assert a.tolist() == b.tolist()
        else:
            assert a.tobytes() == b.tobytes() and a.shape == b.shape


def test_original_variable_names_and_config_shapes():
    bert = TFCheckpointReader(os.path.join(FIXTURES, "bert"))
    with open(os.path.join(FIXTURES, "bert", "bert_config.json")) as f:
        cfg = json.load(f)
    v, h = cfg["vocab_size"], cfg["hidden_size"]
    assert bert.shape("bert/embeddings/word_embeddings") == (v, h)
    assert bert.shape("bert/encoder/layer_1/intermediate/dense/kernel") == (h, cfg["intermediate_size"])
    assert bert.shape("cls/seq_relationship/output_weights") == (2, h)
    assert bert.dtype("global_step") == "int64" and bert.get("global_step") == 1000
    assert "bert/pooler/dense/kernel/adam_m" in bert and "cls/predictions/output_bias/adam_v" in bert

    albert = TFCheckpointReader(os.path.join(FIXTURES, "albert_google"))
    assert albert.shape("bert/encoder/embedding_hidden_mapping_in/kernel") == (8, 16)
    assert "bert/encoder/transformer/group_0/inner_group_0/ffn_1/intermediate/output/dense/kernel" in albert
    zh = TFCheckpointReader(os.path.join(FIXTURES, "albert_brightmart"))
    assert zh.shape("bert/embeddings/word_embeddings_2") == (8, 16)
    assert "bert/encoder/layer_shared/attention/self/query/kernel" in zh
    for family in ("nezha", "roformer"):
        r = TFCheckpointReader(os.path.join(FIXTURES, family))
        assert "bert/embeddings/position_embeddings" not in r
        assert "bert/encoder/layer_0/attention/self/query/kernel" in r
    electra = TFCheckpointReader(os.path.join(FIXTURES, "electra"))
    assert electra.shape("discriminator_predictions/dense_1/kernel") == (16, 1)
    assert electra.shape("generator/encoder/layer_0/attention/self/query/kernel") == (12, 12)
    assert electra.shape("generator_predictions/output_bias") == (30,)


def test_mesh_tensorflow_t5_in_bfloat16():
    r = TFCheckpointReader(os.path.join(FIXTURES, "mt5"))
    assert r.dtype("shared/embedding") == "bfloat16"
    assert r.shape("encoder/block_000/layer_000/SelfAttention/relative_attention_bias") == (2, 8)
    assert r.dtype("encoder/block_001/layer_001/DenseReluDense/wi_0/kernel") == "bfloat16"
    assert "shared/embedding_slot_vc" in r and "decoder/rms_norm/scale_slot_v" in r
    doc, arrays = readback("mt5")
    bits = r.get("decoder/logits/kernel")
    assert bits.dtype == np.uint16
    as_torch = bfloat16_to_torch(bits)
    assert as_torch.dtype == torch.bfloat16
    assert as_torch.data_ptr() == bits.ctypes.data  # no copy
    # Widening bf16 to f32 is exact: compare with torch's own conversion.
    assert torch.equal(torch.from_numpy(bfloat16_to_float32(bits)), as_torch.float())
    assert torch.equal(r.get_torch("decoder/logits/kernel"), as_torch)


def test_partitioned_variable_is_reassembled():
    r = TFCheckpointReader(os.path.join(FIXTURES, "partitioned"))
    assert r.keys() == ["part/embedding", "part/ids", "plain/bias"]  # slice keys hidden
    assert r.is_partitioned("part/embedding") and not r.is_partitioned("plain/bias")
    assert r.shape("part/ids") == (5, 6)
    assert np.array_equal(r.get("part/ids"), np.arange(30).reshape(5, 6))  # as the script made it
    assert r.nbytes("part/embedding") == 10 * 4 * 4
    with pytest.raises(TFCheckpointError, match="partitioned"):
        r.location("part/embedding")
    s = TFCheckpointReader(os.path.join(FIXTURES, "slices"))
    assert all(s.is_partitioned(k) for k in ("grid", "cols", "bf16_rows", "long"))


def test_missing_slice_is_reported(tmp_path):
    src = os.path.join(FIXTURES, "slices", "model.ckpt")
    with open(src + ".index", "rb") as f:
        rows = tf_bundle.read_table(f.read(), "src")
    dropped = [(k, v) for k, v in rows if not (k.startswith(b"\x00grid") and k.endswith(b"\x83\x83\x82\x82"))]
    assert len(dropped) == len(rows) - 1  # the (3,3):(2,2) tile of "grid"
    prefix = str(tmp_path / "model.ckpt")
    shutil.copy(src + ".data-00000-of-00001", prefix + ".data-00000-of-00001")
    with open(prefix + ".index", "wb") as f:
        f.write(tf_bundle.build_table(dropped))
    r = TFCheckpointReader(prefix)
    with pytest.raises(TFCheckpointError, match=r"slice .*'grid' has no entry"):
        r.get("grid")
    assert r.get("cols").shape == (5, 6)


def test_multishard_reads_both_data_files(tmp_path):
    r = TFCheckpointReader(os.path.join(FIXTURES, "multishard"))
    assert r.header.num_shards == 2
    files = {r.location(k)[0] for k in r.keys() if not r.is_partitioned(k)}
    assert {os.path.basename(f) for f in files} == {
        "model.ckpt.data-00000-of-00002", "model.ckpt.data-00001-of-00002"}
    d = copy_fixture("multishard", tmp_path)
    os.remove(os.path.join(d, "model.ckpt.data-00001-of-00002"))
    r = TFCheckpointReader(d)
    in_0 = [k for k in r.keys() if not r.is_partitioned(k) and r.location(k)[0].endswith("00000-of-00002")]
    in_1 = [k for k in r.keys() if not r.is_partitioned(k) and r.location(k)[0].endswith("00001-of-00002")]
    for k in in_0:
        r.get(k)
    with pytest.raises(TFCheckpointError, match="00001-of-00002: data shard missing"):
        r.get(in_1[0])
    with pytest.raises(TFCheckpointError, match="data shard missing"):
        r.get("split")  # its slices live in both shards


def test_tf2_object_based_names():
    r = TFCheckpointReader(os.path.join(FIXTURES, "tf2"))  # found via the `checkpoint` state file
    assert os.path.basename(r.prefix) == "ckpt-1"
    friendly = r.friendly_names()
    assert friendly["model/embeddings"] == "model/embeddings/.ATTRIBUTES/VARIABLE_VALUE"
    assert friendly["model/blocks/1/kernel"] == "model/blocks/1/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    assert "save_counter" in friendly
    # Variable names given in make_tf_fixtures.py, recovered from the object graph.
    full = r.variable_names()
    assert full["bert/embeddings/word_embeddings"] == "model/embeddings/.ATTRIBUTES/VARIABLE_VALUE"
    assert full["steps"] == "model/steps/.ATTRIBUTES/VARIABLE_VALUE"
    assert r.get(friendly["model/tag"]).item() == b"plmkit-fixture"
    assert TFCheckpointReader(os.path.join(FIXTURES, "bert")).variable_names() == {}


def _index_data_blocks(prefix: str) -> list[int]:
    """Compression type byte of each data block of an index file."""
    with open(prefix + ".index", "rb") as f:
        raw = f.read()
    footer = raw[-tf_bundle.FOOTER_SIZE:]
    _, _, pos = tf_bundle._decode_handle(footer, 0, "footer")
    off, size, _ = tf_bundle._decode_handle(footer, pos, "footer")
    index = tf_bundle._read_block(raw, off, size, "index", True)
    types = []
    for _, handle in tf_bundle._block_entries(index, "index"):
        boff, bsize, _ = tf_bundle._decode_handle(handle, 0, "handle")
        types.append(raw[boff + bsize])
    return types


def test_multiblock_index_and_unaligned_tensors():
    r = TFCheckpointReader(os.path.join(FIXTURES, "multiblock"))
    assert len(_index_data_blocks(r.prefix)) >= 2
    assert len(r) == 701
    d = TFCheckpointReader(os.path.join(FIXTURES, "dtypes"))
    _, offset, _ = d.location("b_float32")
    assert offset % 4 != 0  # TF packs tensors; a 3-byte bool came first
    arr = d.get("b_float32")
    assert arr.flags.aligned and to_torch(arr).dtype == torch.float32


def test_snappy_index_written_by_us_read_by_tensorflow():
    doc, _ = readback("ours")
    assert doc["tensorflow_read_ok"]
    blocks = _index_data_blocks(os.path.join(FIXTURES, "ours", doc["prefix"]))
    assert len(blocks) >= 2 and tf_bundle.SNAPPY_COMPRESSION in blocks


# ----------------------------------------------------------------------------- writer


def test_writer_is_byte_identical_to_tensorflow(tmp_path):
    # The fixture script passed SaveV2 its tensors in key order, so TF's files and ours
    # should agree byte for byte: header, entries, CRCs, table blocks and separators.
    for name in ("dtypes", "multiblock", "bert", "mt5"):
        r = TFCheckpointReader(os.path.join(FIXTURES, name))
        tensors = {k: r.get(k) for k in r.keys()}
        bf16 = {k: "bfloat16" for k in r.keys() if r.dtype(k) == "bfloat16"}
        prefix = write_tf_checkpoint(tmp_path / name / "x", tensors, dtypes=bf16, state_file=False)
        for suffix in (".index", ".data-00000-of-00001"):
            with open(prefix + suffix, "rb") as a, open(r.prefix + suffix, "rb") as b:
                assert a.read() == b.read(), (name, suffix)


def test_writer_round_trip_all_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    bf = torch.randn(3, 5).to(torch.bfloat16)
    tensors = {
        "f32": rng.standard_normal((4, 3)).astype(np.float32),
        "f64": np.array([np.pi, -0.0, np.nan]),
        "f16": np.array([1.5, -65504, np.inf], dtype=np.float16),
        "bf16_torch": bf,
        "i8": np.array([-128, 127], dtype=np.int8),
        "u8": np.array([0, 255], dtype=np.uint8),
        "i16": np.array([-32768], dtype=np.int16),
        "u16": np.array([65535], dtype=np.uint16),
        "i32": torch.tensor([[-(2**31), 2**31 - 1]], dtype=torch.int32),
        "u32": np.array([2**32 - 1], dtype=np.uint32),
        "i64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
        "u64": np.array([2**64 - 1], dtype=np.uint64),
        "bool": torch.tensor([True, False, True]),
        "c64": np.array([1 - 2j], dtype=np.complex64),
        "c128": np.array([3 + 4j]),
        "strings": np.array([["a", "中文"], ["", "\x00"]], dtype=object),
        "bytes": np.array([b"\xff" * 300, b""], dtype=object),
        "scalar": np.float32(2.5),
        "int_scalar": 7,
        "empty": np.zeros((0, 2, 3), dtype=np.float32),
        "nested/name/with/slashes": np.ones(2, dtype=np.float32),
    }
    prefix = write_tf_checkpoint(tmp_path / "ckpt" / "model.ckpt", tensors, block_size=64)
    assert resolve_tf_checkpoint(tmp_path / "ckpt") == prefix  # via our `checkpoint` file
    r = TFCheckpointReader(tmp_path / "ckpt")
    assert sorted(r.keys()) == sorted(tensors)
    assert r.dtype("bf16_torch") == "bfloat16" and r.dtype("strings") == "string"
    assert r.dtype("int_scalar") == "int64" and r.shape("scalar") == ()
    assert torch.equal(r.get_torch("bf16_torch"), bf)
    assert r.get("strings").tolist() == [[b"a", "中文".encode()], [b"", b"\x00"]]
    assert r.get("bytes").tolist() == [b"\xff" * 300, b""]
    for key, value in tensors.items():
        if key in ("bf16_torch", "strings", "bytes"):
            continue
        want = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        got = r.get(key)
        assert got.shape == want.shape and got.dtype == want.dtype, key
        assert got.tobytes() == want.tobytes(), key


def test_writer_dtype_conversion(tmp_path):
    x = torch.randn(64, dtype=torch.float32) * 1000
    x[0] = float("nan")
    prefix = write_tf_checkpoint(tmp_path / "m", {"x": x.numpy(), "h": x.numpy(), "n": np.arange(3)},
                                 dtypes={"x": "bfloat16", "h": "float16"})
    r = TFCheckpointReader(prefix)
    got = bfloat16_to_torch(r.get("x"))
    want = x.to(torch.bfloat16)  # torch rounds to nearest even: the independent oracle
    assert torch.equal(got[1:], want[1:]) and torch.isnan(got[0])
    assert r.get("h").dtype == np.float16 and np.array_equal(r.get("h")[1:], x.numpy()[1:].astype(np.float16))
    # A single dtype applies to floating tensors only.
    prefix = write_tf_checkpoint(tmp_path / "n", {"x": x.numpy(), "n": np.arange(3)}, dtypes="float16")
    r = TFCheckpointReader(prefix)
    assert r.dtype("x") == "float16" and r.dtype("n") == "int64"


def test_writer_is_atomic_and_rejects_bad_input(tmp_path):
    prefix = str(tmp_path / "m")
    write_tf_checkpoint(prefix, {"a": np.ones(2, np.float32)})
    before = open(prefix + ".index", "rb").read()

    class Boom:
        def __array__(self, *a, **k):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_tf_checkpoint(prefix, {"a": np.zeros(2, np.float32), "b": Boom()})
    assert open(prefix + ".index", "rb").read() == before  # old checkpoint untouched
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "m.data-00000-of-00001", "m.index"]
    with pytest.raises(ValueError, match="no tensors"):
        write_tf_checkpoint(prefix, {})
    with pytest.raises(ValueError, match="invalid tensor name"):
        write_tf_checkpoint(prefix, {"": np.ones(1)})
    with pytest.raises(TypeError, match="no TensorFlow equivalent"):
        write_tf_checkpoint(prefix, {"a": np.array(["2020-01-01"], dtype="datetime64[D]")})


# ----------------------------------------------------------------------------- corruption


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def test_flipped_byte_in_data_names_file_and_tensor(tmp_path):
    d = copy_fixture("bert", tmp_path)
    name = "bert/encoder/layer_1/attention/self/value/kernel"
    path, offset, size = TFCheckpointReader(d).location(name)
    _flip(path, offset + size // 2)
    r = TFCheckpointReader(d)
    with pytest.raises(TFCheckpointError) as err:
        r.get(name)
    msg = str(err.value)
    assert path in msg and name in msg and "checksum mismatch" in msg
    r.get("bert/encoder/layer_1/attention/self/query/kernel")  # neighbours still fine
    unchecked = TFCheckpointReader(d, verify=False).get(name)
    assert unchecked.shape == (16, 16)


def test_flipped_byte_in_string_tensor(tmp_path):
    d = copy_fixture("dtypes", tmp_path)
    path, offset, size = TFCheckpointReader(d).location("p_string_matrix")
    _flip(path, offset + size - 10)  # inside the string bytes
    with pytest.raises(TFCheckpointError, match=r"checksum mismatch for tensor 'p_string_matrix'"):
        TFCheckpointReader(d).get("p_string_matrix")
    _flip(path, offset + size - 10)
    _flip(path, offset)  # a varint length: structure or length checksum breaks
    with pytest.raises(TFCheckpointError, match="p_string_matrix"):
        TFCheckpointReader(d).get("p_string_matrix")


def test_truncated_data_names_file_and_tensor(tmp_path):
    d = copy_fixture("bert", tmp_path)
    r = TFCheckpointReader(d)
    last = max(r.keys(), key=lambda k: r.location(k)[1])
    path, offset, size = r.location(last)
    with open(path, "r+b") as f:
        f.truncate(offset + size - 3)
    r = TFCheckpointReader(d)
    with pytest.raises(TFCheckpointError) as err:
        r.get(last)
    msg = str(err.value)
    assert path in msg and last in msg and "truncated" in msg
    with pytest.raises(TFCheckpointError, match="truncated"):
        read_tf_checkpoint(d, verify=False)


def test_corrupted_index_is_a_clear_error(tmp_path):
    d = copy_fixture("bert", tmp_path)
    index = os.path.join(d, "bert_model.ckpt.index")
    size = os.path.getsize(index)
    _flip(index, size // 2)
    with pytest.raises(TFCheckpointError, match=r"bert_model\.ckpt\.index.*checksum mismatch in block"):
        TFCheckpointReader(d)
    _flip(index, size // 2)
    with open(index, "r+b") as f:
        f.truncate(size - 20)
    with pytest.raises(TFCheckpointError, match="bad table magic"):
        TFCheckpointReader(d)
    with open(index, "wb") as f:
        f.write(b"not an index")
    with pytest.raises(TFCheckpointError, match="too short"):
        TFCheckpointReader(d)


def test_unsupported_header_is_rejected(tmp_path):
    entry = tf_bundle.encode_entry(tf_bundle.BundleEntry(dtype=1, shape=(1,), size=4))
    for header, pattern in [
        (tf_bundle.BundleHeader(num_shards=1, endianness=1), "big-endian"),
        (tf_bundle.BundleHeader(num_shards=1, min_consumer=5), "newer than this reader"),
        (tf_bundle.BundleHeader(num_shards=0), "0 data shards"),
    ]:
        prefix = str(tmp_path / f"h{header.endianness}{header.min_consumer}{header.num_shards}")
        with open(prefix + ".index", "wb") as f:
            f.write(tf_bundle.build_table([(b"", tf_bundle.encode_header(header)), (b"w", entry)]))
        with pytest.raises(TFCheckpointError, match=pattern):
            TFCheckpointReader(prefix)


# ----------------------------------------------------------------------------- paths


def test_path_forms_resolve_to_the_prefix(tmp_path):
    d = os.path.join(FIXTURES, "bert")  # no state file: the single .index is used
    prefix = os.path.join(d, "bert_model.ckpt")
    for form in (d, prefix, prefix + ".index", prefix + ".data-00000-of-00001"):
        assert resolve_tf_checkpoint(form) == prefix
    with pytest.raises(TFCheckpointError, match="no such TensorFlow checkpoint"):
        resolve_tf_checkpoint(os.path.join(d, "nope"))
    with pytest.raises(TFCheckpointError, match=r"no TensorFlow checkpoint \(\*\.index\)"):
        resolve_tf_checkpoint(tmp_path)
    write_tf_checkpoint(tmp_path / "a", {"x": np.ones(1)}, state_file=False)
    write_tf_checkpoint(tmp_path / "b", {"x": np.ones(1)}, state_file=False)
    with pytest.raises(TFCheckpointError, match=r"several checkpoints \(a\.index, b\.index\)"):
        resolve_tf_checkpoint(tmp_path)
    with open(tmp_path / "checkpoint", "w") as f:
        f.write('model_checkpoint_path: "b"\nall_model_checkpoint_paths: "a"\n')
    assert resolve_tf_checkpoint(tmp_path) == str(tmp_path / "b")
    with open(tmp_path / "checkpoint", "w") as f:  # trainer's path, files moved since
        f.write('model_checkpoint_path: "gs://bucket/run/a"\n')
    assert resolve_tf_checkpoint(tmp_path) == str(tmp_path / "a")
    copy = tmp_path / "copy"  # a copied directory whose state file still names the original, which exists
    write_tf_checkpoint(copy / "a", {"x": np.ones(1)}, state_file=False)
    (copy / "checkpoint").write_text(f'model_checkpoint_path: "{tmp_path / "a"}"\n')
    assert resolve_tf_checkpoint(copy) == str(copy / "a")
    (copy / "checkpoint").write_text(f'model_checkpoint_path: "{tmp_path / "b"}"\n')  # not in the copy
    assert resolve_tf_checkpoint(copy) == str(tmp_path / "b")
    with pytest.raises(KeyError, match="'y' not in checkpoint"):
        TFCheckpointReader(tmp_path).get("y")
    with open(tmp_path / "checkpoint", "w") as f:
        f.write('all_model_checkpoint_paths: "a"\n')
    with pytest.raises(TFCheckpointError, match="no model_checkpoint_path"):
        resolve_tf_checkpoint(tmp_path)


# ----------------------------------------------------------------------------- codecs


def test_crc32c_check_values():
    # CRC catalogue check value and RFC 3720 (iSCSI) B.4 test vectors.
    assert crc32c.value(b"123456789") == 0xE3069283
    assert crc32c.value(bytes(32)) == 0x8A9136AA
    assert crc32c.value(b"\xff" * 32) == 0x62A8AB43
    assert crc32c.value(bytes(range(32))) == 0x46DD794E
    assert crc32c.extend_numpy(0, b"123456789") == 0xE3069283
    for v in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert crc32c.unmask(crc32c.mask(v)) == v and crc32c.mask(v) != v


def test_crc32c_numpy_matches_bytewise_definition():
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, 200_003, dtype=np.uint8)
    for n in (0, 1, 7, 255, 256, 1023, 4096, 65537, 200_003):
        for start in (0, 1, 3):
            chunk = data[start : start + n]
            want = crc32c._raw_py(chunk.tobytes(), 0xFFFFFFFF) ^ 0xFFFFFFFF
            assert crc32c.extend_numpy(0, chunk) == want, (n, start)
    split = 70_001
    assert crc32c.extend_numpy(crc32c.extend_numpy(0, data[:split]), data[split:]) == crc32c.extend_numpy(0, data)


def test_snappy_hand_built_streams():
    cases = [
        (b"\x05\x10hello", b"hello"),  # one literal
        (b"\x0c\x0cabcd\x11\x04", b"abcd" * 3),  # copy, 1-byte offset
        (b"\x0a\x00a\x15\x01", b"a" * 10),  # overlapping copy (run length)
        (b"\x00", b""),
    ]
    lit = bytes(range(70))
    # 70-byte literal (length in one extra byte), then copy 10 @ offset 70 (2-byte offset)
    cases.append((bytes([80, 60 << 2, 69]) + lit + bytes([(9 << 2) | 2]) + (70).to_bytes(2, "little"),
                  lit + lit[:10]))
    # copy 5 @ offset 3 with a 4-byte offset
    cases.append((bytes([8, 2 << 2]) + b"xyz" + bytes([(4 << 2) | 3]) + (3).to_bytes(4, "little"),
                  b"xyzxyzxy"))
    for stream, want in cases:
        assert snappy.decompress_py(stream) == want
        assert snappy.decompress(stream) == want
    for bad, pattern in [
        (b"\x05\x10hel", "runs past"),
        (b"\x04\x01\x00", "offset 0"),
        (b"\x08\x00a\x11\x05", "offset 5"),
        (b"\x04\x10hello", "exceeds"),
        (b"\x09\x10hello", "preamble says 9"),
        (b"\x80", "truncated"),
    ]:
        with pytest.raises(snappy.SnappyError, match=pattern):
            snappy.decompress_py(bad)


def test_snappy_compressed_index_block(tmp_path):
    # An index whose data block is snappy-compressed with a literal-plus-run encoder.
    def compress(block: bytes) -> bytes:
        out = bytearray(tf_bundle.encode_varint(len(block)))
        i = 0
        while i < len(block):
            run = 1
            while i + run < len(block) and block[i + run] == block[i] and run < 64:
                run += 1
            out += bytes([0]) + block[i : i + 1]  # literal of 1 byte
            if run > 4:
                out += bytes([((run - 2) << 2) | 2]) + (1).to_bytes(2, "little")  # copy run-1
                i += run
            else:
                i += 1
        return bytes(out)

    tensors = {"zeros": np.zeros(4, np.float32), "a" * 200: np.ones(1, np.int64)}
    prefix = write_tf_checkpoint(tmp_path / "m", tensors, index_compressor=compress)
    assert _index_data_blocks(prefix) == [tf_bundle.SNAPPY_COMPRESSION]
    r = TFCheckpointReader(prefix)
    assert r.get("a" * 200).tolist() == [1] and r.get("zeros").tolist() == [0, 0, 0, 0]


def test_table_separators_follow_leveldb():
    # Hand-worked LevelDB BytewiseComparator results (the index keys TF writes).
    assert tf_bundle._shortest_separator(b"abcd", b"abzz") == b"abd"
    assert tf_bundle._shortest_separator(b"abc", b"abd") == b"abc"  # 'c'+1 is not < 'd'
    assert tf_bundle._shortest_separator(b"ab", b"abc") == b"ab"  # prefix: unchanged
    assert tf_bundle._shortest_separator(b"a\xff1", b"b") == b"a\xff1"
    assert tf_bundle._short_successor(b"global_step") == b"h"
    assert tf_bundle._short_successor(b"\xff\xffa") == b"\xff\xffb"
    assert tf_bundle._short_successor(b"\xff\xff") == b"\xff\xff"
    # Shortened separators still route every key to its block.
    keys = [f"k{i:03d}/{'x' * 40}".encode() for i in range(0, 300, 7)]
    table = tf_bundle.build_table([(k, b"v" + k) for k in keys], block_size=100)
    assert tf_bundle.read_table(table, "t") == [(k, b"v" + k) for k in keys]
