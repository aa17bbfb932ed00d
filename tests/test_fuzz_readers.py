"""Fuzzing the checkpoint readers (issue 28): mutated safetensors headers and bytes, truncated or garbled
TensorFlow bundle index and data files, garbled torch files. A reader may succeed or raise one of the
library's documented errors (CheckpointError / ConfigError / TFCheckpointError, all ValueErrors) with a
message naming the file; never a raw struct / Unicode / Index / Key error, never a hang.

Bounded: a few dozen examples per test, each under a deadline and a hard alarm.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import tempfile
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from plmkit.config import ConfigError  # noqa: E402
from plmkit.convert.namemap import CheckpointError  # noqa: E402
from plmkit.convert.tensor_files import open_hf_weights  # noqa: E402
from plmkit.convert.tensorflow import TFCheckpointError, TFCheckpointReader  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "tf"
DOCUMENTED = (CheckpointError, ConfigError, TFCheckpointError)
# PLMKIT_FUZZ_EXAMPLES=2000 hunts deeper (with fresh random examples); the default stays seconds, reproducible
EXAMPLES = int(os.environ.get("PLMKIT_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=2000, derandomize="PLMKIT_FUZZ_EXAMPLES" not in os.environ,
                database=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def alarm(seconds: float = 10.0):
    """Fail instead of hanging: a reader stuck in a loop gets a TimeoutError after `seconds`."""
    def stop(signum, frame):
        raise TimeoutError(f"reader still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def expect_documented(read, names_file: str) -> None:
    """Run `read()`; it may succeed, or fail with a documented error whose message names the file."""
    with alarm():
        try:
            read()
        except DOCUMENTED as e:
            assert names_file in str(e), f"{type(e).__name__} does not name {names_file}: {e}"


# ------------------------------------------------------------------------------------- mutations

@st.composite
def byte_edits(draw, size: int):
    """A list of edits to a file of `size` bytes: overwrite bytes, truncate, or append garbage."""
    kind = draw(st.sampled_from(["flip", "truncate", "overwrite", "append"]))
    if kind == "truncate":
        return [("truncate", draw(st.integers(0, max(size - 1, 0))))]
    if kind == "append":
        return [("append", draw(st.binary(min_size=1, max_size=64)))]
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(size - 1, 0)))
        if kind == "flip":
            edits.append(("xor", pos, draw(st.integers(1, 255))))
        else:
            edits.append(("write", pos, draw(st.binary(min_size=1, max_size=16))))
    return edits


def apply_edits(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for edit in edits:
        if edit[0] == "truncate":
            del buf[edit[1]:]
        elif edit[0] == "append":
            buf += edit[1]
        elif edit[0] == "xor" and edit[1] < len(buf):
            buf[edit[1]] ^= edit[2]
        elif edit[0] == "write":
            buf[edit[1]:edit[1] + len(edit[2])] = edit[2]
    return bytes(buf)


# ------------------------------------------------------------------------------------- safetensors

def _safetensors_bytes() -> bytes:
    from safetensors.torch import save

    g = torch.Generator().manual_seed(0)
    return save({"a.weight": torch.randn(3, 4, generator=g), "a.bias": torch.randn(4, generator=g).half(),
                 "ids": torch.arange(5, dtype=torch.int64)})


SAFETENSORS = _safetensors_bytes()
HEADER_LEN = struct.unpack("<Q", SAFETENSORS[:8])[0]
HEADER = json.loads(SAFETENSORS[8:8 + HEADER_LEN])


def read_all_hf(directory: Path) -> None:
    weights = open_hf_weights(directory)
    for name in weights:
        weights.get(name)


@FUZZ
@given(edits=byte_edits(len(SAFETENSORS)))
def test_safetensors_mutated_bytes(edits):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        path.write_bytes(apply_edits(SAFETENSORS, edits))
        expect_documented(lambda: read_all_hf(Path(d)), str(path))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)


@FUZZ
@given(tensor=st.sampled_from(sorted(HEADER)), field=st.sampled_from(["dtype", "shape", "data_offsets", None]),
       value=json_values | st.sampled_from(["F32", "I64", "BF16", "F8_E4M3", "U1"])
       | st.lists(st.integers(-5, 2**40), max_size=4),
       header_len=st.sampled_from([None, 0, 1, 2**63, 10**9]))
def test_safetensors_mutated_header(tensor, field, value, header_len):
    header = json.loads(json.dumps(HEADER))
    if field is None:
        header[tensor] = value  # the whole entry replaced
    else:
        header[tensor][field] = value
    raw = json.dumps(header).encode()
    n = len(raw) if header_len is None else header_len
    data = struct.pack("<Q", n) + raw + SAFETENSORS[8 + HEADER_LEN:]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        path.write_bytes(data)
        expect_documented(lambda: read_all_hf(Path(d)), str(path))


@FUZZ
@given(index=json_values, name=st.text(max_size=12))
def test_shard_index_of_any_json(index, name):
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "model.safetensors").write_bytes(SAFETENSORS)
        path = Path(d) / "model.safetensors.index.json"
        path.write_text(json.dumps({"weight_map": {name: index}} if isinstance(index, str) else index))
        expect_documented(lambda: read_all_hf(Path(d)), d)


# ------------------------------------------------------------------------------------- torch files

def _torch_bytes(legacy: bool) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}, buf,
               _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


TORCH_FILES = {legacy: _torch_bytes(legacy) for legacy in (False, True)}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch on garbled pickles, before it refuses them
@FUZZ
@given(legacy=st.booleans(), data=st.data())
def test_torch_bin_mutated_bytes(legacy, data):
    original = TORCH_FILES[legacy]
    edits = data.draw(byte_edits(len(original)))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "pytorch_model.bin"
        path.write_bytes(apply_edits(original, edits))
        expect_documented(lambda: read_all_hf(Path(d)), str(path))


# ------------------------------------------------------------------------------------- TF bundles

TF_CASES = ["bert", "dtypes", "multiblock", "partitioned", "tf2"]


def _tf_prefix(directory: Path) -> Path:
    return next(directory.glob("*.index")).with_suffix("")


def read_all_tf(prefix: Path, verify: bool) -> None:
    reader = TFCheckpointReader(prefix, verify=verify)
    try:
        for name in reader.keys():
            reader.get(name)
            reader.get_torch(name) if reader.dtype(name) != "string" else None
        reader.variable_names()
    finally:
        reader.close()


@pytest.fixture(scope="module")
def tf_sources(tmp_path_factory):
    """Each TF fixture's index and data bytes, read once."""
    out = {}
    for case in TF_CASES:
        prefix = _tf_prefix(FIXTURES / case)
        files = sorted(prefix.parent.glob(prefix.name + ".*"))
        out[case] = (prefix.name, {f.name: f.read_bytes() for f in files})
    return out


@FUZZ
@given(case=st.sampled_from(TF_CASES), which=st.sampled_from(["index", "data"]), verify=st.booleans(),
       data=st.data())
def test_tf_bundle_mutated_files(tf_sources, case, which, verify, data):
    prefix_name, files = tf_sources[case]
    targets = sorted(n for n in files if n.endswith(".index") == (which == "index"))
    target = data.draw(st.sampled_from(targets))
    edits = data.draw(byte_edits(len(files[target])))
    with tempfile.TemporaryDirectory() as d:
        for name, content in files.items():
            (Path(d) / name).write_bytes(apply_edits(content, edits) if name == target else content)
        prefix = Path(d) / prefix_name
        expect_documented(lambda: read_all_tf(prefix, verify), str(prefix))


def test_tf_fuzz_cases_exist():
    for case in TF_CASES:
        assert any((FIXTURES / case).glob("*.index")), case


def test_fuzz_reader_accepts_the_unmutated_files(tf_sources):
    """The harness itself: the originals read without error (so a mutation is what any error comes from)."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "model.safetensors").write_bytes(SAFETENSORS)
        read_all_hf(Path(d))
    for prefix_name, files in tf_sources.values():
        with tempfile.TemporaryDirectory() as d:
            for name, content in files.items():
                (Path(d) / name).write_bytes(content)
            read_all_tf(Path(d) / prefix_name, verify=True)


def test_garbled_object_graph_is_a_named_error(tmp_path):
    """Found by the fuzzer: a flipped bit in a TF2 object graph's variable name was a raw UnicodeDecodeError."""
    from plmkit.convert.tensorflow import OBJECT_GRAPH_KEY

    shutil.copytree(FIXTURES / "tf2", tmp_path / "tf2")
    prefix = _tf_prefix(tmp_path / "tf2")
    with TFCheckpointReader(prefix) as reader:
        data_file, offset, size = reader.location(OBJECT_GRAPH_KEY)
        blob = bytes(reader.get(OBJECT_GRAPH_KEY).reshape(-1)[0])
    # SerializedTensor {name: "VARIABLE_VALUE", full_name: ...}: the full name's first byte, in the data file
    start = offset + (size - len(blob)) + blob.index(b"VARIABLE_VALUE\x12") + len(b"VARIABLE_VALUE\x12") + 1
    raw = bytearray(Path(data_file).read_bytes())
    raw[start] ^= 0x80  # ASCII -> a lone UTF-8 continuation byte
    Path(data_file).write_bytes(bytes(raw))
    with TFCheckpointReader(prefix, verify=False) as reader:
        with pytest.raises(TFCheckpointError, match=rf"{prefix}\.index: {OBJECT_GRAPH_KEY}: .*utf-8"):
            reader.variable_names()
