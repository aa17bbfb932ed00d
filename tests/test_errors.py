"""Bad input gets a clear error naming the file, tensor or field."""
import json

import pytest
import torch

import plmkit
from plmkit.config import ConfigError, ModelConfig
from plmkit.convert.namemap import CheckpointError

transformers = pytest.importorskip("transformers")


@pytest.fixture
def hf_dir(tmp_path):
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=20, max_position_embeddings=20)
    transformers.BertModel(cfg).save_pretrained(tmp_path)
    return tmp_path


def _edit_weights(directory, edit):
    from safetensors.torch import load_file, save_file
    path = directory / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)


def test_config_missing_field(hf_dir):
    d = json.loads((hf_dir / "config.json").read_text())
    del d["num_attention_heads"]
    (hf_dir / "config.json").write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"config\.json.*'num_attention_heads' is missing"):
        plmkit.from_pretrained(hf_dir)


def test_config_bad_values():
    with pytest.raises(ConfigError, match="hidden_size 30 is not divisible by num_heads 4"):
        ModelConfig(family="bert", vocab_size=10, hidden_size=30, num_layers=1, num_heads=4, intermediate_size=8)
    with pytest.raises(ConfigError, match="'num_layers' must be a positive integer, found 0"):
        ModelConfig(family="bert", vocab_size=10, hidden_size=8, num_layers=0, num_heads=2, intermediate_size=8)
    with pytest.raises(ConfigError, match="'hidden_act' is 'swishy'"):
        ModelConfig(family="bert", vocab_size=10, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8,
                    hidden_act="swishy")


def test_wrong_shape_names_tensor(hf_dir):
    _edit_weights(hf_dir, lambda s: s.__setitem__("encoder.layer.1.output.dense.weight", torch.zeros(16, 21)))
    with pytest.raises(CheckpointError, match=r"'encoder\.layer\.1\.output\.dense\.weight'.*shape \(16, 21\), "
                                              r"expected \(16, 20\) for blocks\.1\.ffn\.down\.weight"):
        plmkit.from_pretrained(hf_dir)


def test_missing_tensor_names_it_and_allow_reports(hf_dir):
    _edit_weights(hf_dir, lambda s: s.pop("encoder.layer.0.attention.self.key.bias"))
    with pytest.raises(CheckpointError, match=r"missing tensor 'encoder\.layer\.0\.attention\.self\.key\.bias'"):
        plmkit.from_pretrained(hf_dir)
    model = plmkit.from_pretrained(hf_dir, allow_missing=True)
    assert model.load_report.missing == ["blocks.0.attn.qkv.bias"]
    assert torch.isfinite(model.embeddings.token.weight).all() and model.embeddings.token.weight.device.type == "cpu"


def test_unexpected_tensor_names_it(hf_dir):
    _edit_weights(hf_dir, lambda s: s.__setitem__("encoder.layer.0.mystery.weight", torch.zeros(3)))
    with pytest.raises(CheckpointError, match=r"unexpected tensors.*'encoder\.layer\.0\.mystery\.weight'"):
        plmkit.from_pretrained(hf_dir)
    model = plmkit.from_pretrained(hf_dir, allow_unexpected=True)
    assert model.load_report.unexpected == ["encoder.layer.0.mystery.weight"]


def test_truncated_safetensors_names_file(hf_dir):
    path = hf_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        plmkit.from_pretrained(hf_dir)


def test_missing_vocab_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        plmkit.load_tokenizer(tmp_path / "nowhere")


def test_nothing_to_load(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither config.json"):
        plmkit.from_pretrained(tmp_path)


def test_unknown_family(hf_dir):
    with pytest.raises(KeyError, match="unknown model family 'bart'"):
        plmkit.from_pretrained(hf_dir, model="bart")
