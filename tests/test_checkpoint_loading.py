"""Loading strictly: legacy torch files, tensor dtypes, configs that do not fit the file, shard indexes,
and which file a TensorFlow checkpoint's config is read from (issue 28).

Oracles: torch.load itself on the same file, transformers on the same weights, torch's own casts.
"""
import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import torch

import plmkit
from plmkit.config import ConfigError
from plmkit.convert.namemap import CheckpointError, Rule, apply_map

transformers = pytest.importorskip("transformers")
FIXTURES = Path(__file__).parent / "fixtures" / "tf"
EMBEDDED = Path(plmkit.__file__).parent / "pretrained_models" / "tiny-zh-char-bert"


@pytest.fixture
def hf_bert(tmp_path):
    """A tiny random transformers BERT saved as model.safetensors + config.json, and the model itself."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=20, max_position_embeddings=20)
    model = transformers.BertModel(cfg).eval()
    model.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf", model


def _ids():
    g = torch.Generator().manual_seed(1)
    return torch.randint(1, 40, (2, 7), generator=g)


def _edit_safetensors(directory: Path, edit) -> None:
    from safetensors.torch import load_file, save_file
    state = load_file(directory / "model.safetensors")
    edit(state)
    save_file(state, directory / "model.safetensors")


# ------------------------------------------------------------------ legacy (pre-1.6) torch files

def test_legacy_torch_bin_loads(hf_bert):
    directory, hf = hf_bert
    (directory / "model.safetensors").unlink()
    path = directory / "pytorch_model.bin"
    torch.save(hf.state_dict(), path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)  # really the legacy stream format
    ours = plmkit.from_pretrained(directory)
    stored = torch.load(path, weights_only=True)  # the oracle: torch reading the same file
    assert torch.equal(ours.embeddings.token.weight, stored["embeddings.word_embeddings.weight"])
    assert torch.equal(ours.blocks[1].ffn.down.weight, stored["encoder.layer.1.output.dense.weight"])
    with torch.no_grad():
        ref = hf(input_ids=_ids()).last_hidden_state
        out = ours(_ids()).last_hidden_state
    assert (out - ref).abs().max() <= 1e-5


def test_zip_torch_bin_still_loads(hf_bert):
    directory, hf = hf_bert
    (directory / "model.safetensors").unlink()
    torch.save(hf.state_dict(), directory / "pytorch_model.bin")
    assert zipfile.is_zipfile(directory / "pytorch_model.bin")
    ours = plmkit.from_pretrained(directory)
    assert torch.equal(ours.embeddings.token.weight, hf.embeddings.word_embeddings.weight)


# ------------------------------------------------------------------ dtypes

def test_integer_tensor_for_a_float_parameter_is_named(hf_bert):
    directory, _ = hf_bert
    name = "embeddings.word_embeddings.weight"
    _edit_safetensors(directory, lambda s: s.__setitem__(name, s[name].round().to(torch.int32)))
    with pytest.raises(CheckpointError) as e:
        plmkit.from_pretrained(directory)
    msg = str(e.value)
    assert f"'{name}'" in msg and str(directory / "model.safetensors") in msg
    assert "dtype int32" in msg and "float32" in msg and "embeddings.token.weight" in msg
    assert "unexpected tensors" not in msg and "allow_missing" not in msg  # named once, as mis-typed
    with pytest.raises(CheckpointError, match="dtype int32"):  # allowing gaps does not allow a wrong type
        plmkit.from_pretrained(directory, allow_missing=True, allow_unexpected=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_precisions_are_cast(hf_bert, dtype):
    directory, hf = hf_bert
    _edit_safetensors(directory, lambda s: s.update({k: v.to(dtype) for k, v in s.items()}))
    ours = plmkit.from_pretrained(directory)
    expected = hf.embeddings.word_embeddings.weight.detach().to(dtype).float()  # torch's own rounding
    assert ours.embeddings.token.weight.dtype == torch.float32
    assert torch.equal(ours.embeddings.token.weight, expected)


def test_float_where_an_integer_buffer_is_expected_is_named():
    ours = {"steps": torch.zeros(3, dtype=torch.int64), "w": torch.zeros(2, 2)}
    theirs = {"counter": torch.tensor([1.5, 2.0, 3.0]), "weight": torch.ones(2, 2)}
    rules = [Rule("steps", "counter"), Rule("w", "weight")]
    with pytest.raises(CheckpointError, match=r"tensor 'counter' in f\.bin has dtype float32, expected integer "
                                              r"\(int64\) for steps"):
        apply_map(rules, ours, theirs, theirs.__getitem__, source="f.bin")
    # integer widths are one kind: int32 stored for an int64 buffer loads
    theirs["counter"] = torch.tensor([1, 2, 3], dtype=torch.int32)
    state, report = apply_map(rules, ours, theirs, theirs.__getitem__, source="f.bin")
    assert report.loaded == ["steps", "w"] and state["steps"].tolist() == [1, 2, 3]


# ------------------------------------------------------------------ configs that do not fit the file

def _set_config(path: Path, **changes) -> None:
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


def test_absurd_layer_count_fails_fast_naming_the_field(hf_bert):
    directory, _ = hf_bert
    _set_config(directory / "config.json", num_hidden_layers=1_000_000)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        plmkit.from_pretrained(directory)
    assert time.perf_counter() - start < 3.0
    msg = str(e.value)
    assert "config.json" in msg and "'num_hidden_layers' is 1000000" in msg
    assert "holds tensors for 2 layers" in msg and "encoder.layer.2." in msg


def test_absurd_layer_count_in_a_tf_config_fails_fast(tmp_path):
    shutil.copytree(FIXTURES / "bert", tmp_path / "bert")
    cfg = json.loads((tmp_path / "bert" / "bert_config.json").read_text())
    layers = cfg["num_hidden_layers"]
    _set_config(tmp_path / "bert" / "bert_config.json", num_hidden_layers=1_000_000)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"bert_config\.json: field 'num_hidden_layers' is 1000000, but .*bert_model"
                                          rf"\.ckpt holds tensors for {layers} layers .*'bert/encoder/layer_{layers}/"):
        plmkit.from_pretrained(tmp_path / "bert")
    assert time.perf_counter() - start < 3.0


def test_too_few_layers_in_the_config_names_the_field(hf_bert):
    directory, _ = hf_bert
    _set_config(directory / "config.json", num_hidden_layers=1)
    with pytest.raises(ConfigError, match=r"'num_hidden_layers' is 1, but .* holds tensors for more layers "
                                          r"\(e\.g\. 'encoder\.layer\.1\."):
        plmkit.from_pretrained(directory)
    # asked for, the extra layer is reported instead
    model = plmkit.from_pretrained(directory, allow_unexpected=True)
    assert any(n.startswith("encoder.layer.1.") for n in model.load_report.unexpected)


def test_absurd_decoder_layer_count_fails_fast(tmp_path):
    cfg = transformers.T5Config(vocab_size=32, d_model=16, d_kv=8, d_ff=24, num_layers=2, num_decoder_layers=2,
                                num_heads=2)
    transformers.T5ForConditionalGeneration(cfg).save_pretrained(tmp_path / "t5")
    _set_config(tmp_path / "t5" / "config.json", num_decoder_layers=1_000_000)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"'num_decoder_layers' is 1000000, but .* holds tensors for 2 layers"):
        plmkit.from_pretrained(tmp_path / "t5")
    assert time.perf_counter() - start < 3.0


# ------------------------------------------------------------------ shard indexes

@pytest.mark.parametrize("index, found", [
    ({"metadata": {}, "weight_map": ["model.safetensors"]}, "found a list"),
    ({"metadata": {}, "weight_map": "model.safetensors"}, "found a str"),
    ({"metadata": {}}, "found no such field"),
    (["weight_map"], "found a JSON list"),
    ({"weight_map": {"embeddings.word_embeddings.weight": 3}}, "must name a shard file"),
    ({"weight_map": {"embeddings.word_embeddings.weight": "../elsewhere.safetensors"}}, "must name a shard file"),
])
def test_bad_shard_index_names_the_index_file(hf_bert, index, found):
    directory, _ = hf_bert
    path = directory / "model.safetensors.index.json"
    path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as e:
        plmkit.from_pretrained(directory)
    assert str(path) in str(e.value) and found in str(e.value)


def test_shard_index_naming_a_tensor_its_torch_shard_lacks(hf_bert):
    directory, hf = hf_bert
    (directory / "model.safetensors").unlink()
    state = hf.state_dict()
    weight_map = {k: "shard-1.bin" for k in state}
    del state["encoder.layer.1.output.dense.bias"]
    torch.save(state, directory / "shard-1.bin")
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=r"shard-1\.bin: no tensor 'encoder\.layer\.1\.output\.dense\.bias', "
                                              r"although the shard index names this file"):
        plmkit.from_pretrained(directory)


# ------------------------------------------------------------------ which file is the model config

def test_tf_dir_without_model_config_never_reads_the_tokenizer_config(tmp_path):
    """plmkit's own TF export writes tokenizer_config.json beside bert_config.json; without the latter the
    former must not be taken as the model config."""
    ours = plmkit.from_pretrained(EMBEDDED)
    tokenizer = plmkit.load_tokenizer(EMBEDDED)
    out = plmkit.save_pretrained(ours, tmp_path / "tf", format="tf", tokenizer=tokenizer)
    assert (out / "tokenizer_config.json").exists()
    (out / "bert_config.json").unlink()
    with pytest.raises(FileNotFoundError) as e:
        plmkit.from_pretrained(out)
    msg = str(e.value)
    looked_for = msg.split("looked for ")[1].split(", or one other")[0].split(", ")  # every family's release name
    assert {"bert_config.json", "albert_config.json", "gpt_config.json", "config.json"} <= set(looked_for)
    assert "tokenizer_config.json" in msg and "not model configs" in msg and "config=" in msg


def test_tf_dir_with_one_other_model_config_uses_it(tmp_path):
    shutil.copytree(FIXTURES / "bert", tmp_path / "bert")
    (tmp_path / "bert" / "bert_config.json").rename(tmp_path / "bert" / "chinese_bert_config.json")
    (tmp_path / "bert" / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True,
                                                                        "model_max_length": 512}))
    (tmp_path / "bert" / "generation_config.json").write_text(json.dumps({"num_hidden_layers": 3}))
    model = plmkit.from_pretrained(tmp_path / "bert", model="bert")
    expected = json.loads((FIXTURES / "bert" / "bert_config.json").read_text())
    assert model.config.source.endswith("chinese_bert_config.json")
    assert model.config.num_layers == expected["num_hidden_layers"]


def test_absurd_layer_count_fails_fast_even_when_gaps_are_allowed(hf_bert, tmp_path):
    """info / convert / allow_missing=True would otherwise build a million layers before reporting them missing."""
    from plmkit.conversion import convert
    directory, _ = hf_bert
    _set_config(directory / "config.json", num_hidden_layers=1_000_000)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="'num_hidden_layers' is 1000000"):
        plmkit.from_pretrained(directory, allow_missing=True)
    with pytest.raises(ConfigError, match="'num_hidden_layers' is 1000000"):
        convert(directory, tmp_path / "out", to="tf", progress=False)
    assert time.perf_counter() - start < 3.0 and not (tmp_path / "out").exists()
    # a small gap stays allowed: the missing layer is built fresh and reported
    _set_config(directory / "config.json", num_hidden_layers=3)
    model = plmkit.from_pretrained(directory, allow_missing=True)
    assert any(n.startswith("blocks.2.") for n in model.load_report.missing)
