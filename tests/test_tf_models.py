"""Models built from checkpoints written by real TensorFlow (tests/fixtures/tf) against transformers."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import plmkit

transformers = pytest.importorskip("transformers")
FIXTURES = Path(__file__).parent / "fixtures" / "tf"


def tf_values(name: str) -> dict[str, np.ndarray]:
    """What TensorFlow itself read from fixture `name` (saved beside it by the fixture script)."""
    doc = json.loads((FIXTURES / name / "tf_readback.json").read_text())
    arrays = np.load(FIXTURES / name / "tf_readback.npz")
    return {k: arrays[v["npz"]] for k, v in doc["tensors"].items() if "npz" in v}


def bert_tf_to_hf(tf_name: str) -> tuple[str, bool]:
    """google-research/bert variable name -> transformers name, and whether to transpose.

    Written here from the two naming schemes, independently of plmkit's rule tables.
    """
    parts = tf_name.split("/")
    out = []
    for p in parts:
        m = re.fullmatch(r"layer_(\d+)", p)
        if m:
            out += ["layer", m.group(1)]
        else:
            out.append({"kernel": "weight", "gamma": "weight", "beta": "bias", "output_bias": "bias",
                        "output_weights": "weight"}.get(p, p))
    if parts[-1].endswith("_embeddings"):
        out.append("weight")
    return ".".join(out), parts[-1] == "kernel"


def _ids(vocab, types=2, B=2, T=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 6:] = 0
    return ids, torch.randint(0, types, (B, T), generator=g) * mask, mask


def test_bert_from_tf_checkpoint_matches_transformers(tmp_path):
    ours = plmkit.from_pretrained(FIXTURES / "bert", with_mlm=True, with_nsp=True)
    report = ours.load_report
    assert report.unexpected == [] and report.missing == []
    assert "global_step" in report.skipped_state
    assert any(n.endswith("/adam_m") for n in report.skipped_state)
    assert ours.config.hidden_act == "gelu_tanh"  # google-research/bert computes gelu with tanh

    values = tf_values("bert")
    cfg = json.loads((FIXTURES / "bert" / "bert_config.json").read_text())
    hf = transformers.BertForPreTraining(transformers.BertConfig(**dict(cfg, hidden_act="gelu_new"))).eval()
    state = {}
    for name, value in values.items():
        if name == "global_step" or "adam_" in name:
            continue
        hf_name, transpose = bert_tf_to_hf(name)
        t = torch.from_numpy(value.copy())
        state[hf_name] = t.T if transpose else t
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert unexpected == [] and set(missing) <= {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
                                                 "bert.embeddings.position_ids"}
    hf.tie_weights()
    ids, types, mask = _ids(cfg["vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
        out = ours(ids, token_type_ids=types, attention_mask=mask)
    assert (out.last_hidden_state - ref.hidden_states[-1]).abs().max() <= 1e-5
    assert (out.logits - ref.prediction_logits).abs().max() <= 1e-5
    assert (out.nsp_logits - ref.seq_relationship_logits).abs().max() <= 1e-5
    # the weights are TensorFlow's to the bit
    assert np.array_equal(ours.embeddings.token.weight.detach().numpy(), values["bert/embeddings/word_embeddings"])


def test_bert_tf_round_trip(tmp_path):
    ours = plmkit.from_pretrained(FIXTURES / "bert", with_mlm=True, with_nsp=True)
    plmkit.save_pretrained(ours, tmp_path, format="tf")
    assert (tmp_path / "bert_config.json").exists() and (tmp_path / "bert_model.ckpt.index").exists()
    back = plmkit.from_pretrained(tmp_path, with_mlm=True, with_nsp=True)
    for k, v in ours.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    from plmkit.convert.tensorflow import TFCheckpointReader
    written = set(TFCheckpointReader(tmp_path).keys())
    original = {k for k in tf_values("bert") if k != "global_step" and "adam_" not in k}
    assert written == original  # the release's own variable names, nothing else


def test_tf_prefix_and_index_paths_load_too():
    a = plmkit.from_pretrained(FIXTURES / "bert" / "bert_model.ckpt")
    b = plmkit.from_pretrained(FIXTURES / "bert" / "bert_model.ckpt.index")
    assert torch.equal(a.embeddings.token.weight, b.embeddings.token.weight)


def test_tf_config_missing_is_clear(tmp_path):
    import shutil
    shutil.copytree(FIXTURES / "bert", tmp_path / "bert")
    (tmp_path / "bert" / "bert_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config file beside the TensorFlow checkpoint"):
        plmkit.from_pretrained(tmp_path / "bert")


def test_cli_info_and_convert(tmp_path, capsys):
    from plmkit.cli import main
    assert main(["info", str(FIXTURES / "bert")]) == 0
    out = capsys.readouterr().out
    assert "heads:       with_mlm, with_nsp, with_pool" in out and "skipped state: 93" in out
    assert main(["convert", str(FIXTURES / "bert"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    back = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    ours = plmkit.from_pretrained(FIXTURES / "bert", with_mlm=True, with_nsp=True)
    ids, types, mask = _ids(30)
    with torch.no_grad():
        assert (back(input_ids=ids, token_type_ids=types, attention_mask=mask).prediction_logits
                - ours(ids, token_type_ids=types, attention_mask=mask).logits).abs().max() <= 1e-5


# ---- activations survive HF -> TF -> plmkit (issue 28) -------------------------------------------------

EMBEDDED = Path(plmkit.__file__).parent / "pretrained_models" / "tiny-zh-char-bert"


def test_exact_gelu_survives_hf_to_tf_to_plmkit(tmp_path):
    """The embedded model computes exact GELU; google-research/bert reads "gelu" as the tanh approximation,
    so the export must write a name that means exact GELU (bert4keras' "gelu_erf")."""
    assert json.loads((EMBEDDED / "config.json").read_text())["hidden_act"] == "gelu"  # exact, to transformers
    ours = plmkit.from_pretrained(EMBEDDED, with_mlm=True)
    plmkit.save_pretrained(ours, tmp_path / "tf", format="tf")
    assert json.loads((tmp_path / "tf" / "bert_config.json").read_text())["hidden_act"] == "gelu_erf"
    back = plmkit.from_pretrained(tmp_path / "tf", with_mlm=True)
    assert back.config.hidden_act == "gelu"
    # the oracle: transformers on the original (float16-stored) weights, computing in float32 as we do
    hf = transformers.BertForMaskedLM.from_pretrained(EMBEDDED).float().eval()
    ids = torch.randint(1, 4341, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, before = back(ids), ours(ids)
        ref = hf(input_ids=ids, output_hidden_states=True)
    assert (out.logits - before.logits).abs().max() <= 1e-5  # the round trip keeps the function (was 4.4e-3)
    assert (out.last_hidden_state - ref.hidden_states[-1]).abs().max() <= 1e-5
    assert (out.logits - ref.logits).abs().max() <= 1e-4  # logits of magnitude ~10: float32 rounding only


def test_tanh_gelu_in_bert_config_still_reads_as_tanh(tmp_path):
    """The original meaning of "gelu" in a bert_config.json is kept (google-research/bert's modeling.py)."""
    ours = plmkit.from_pretrained(FIXTURES / "bert")
    assert ours.config.hidden_act == "gelu_tanh"
    plmkit.save_pretrained(ours, tmp_path, format="tf")
    assert json.loads((tmp_path / "bert_config.json").read_text())["hidden_act"] == "gelu"


@pytest.mark.parametrize("family", ["bert", "nezha", "albert", "gpt", "electra", "roformer"])
@pytest.mark.parametrize("act", ["gelu", "gelu_tanh"])
def test_gelu_kind_survives_the_tf_round_trip(tmp_path, family, act):
    """Exact and tanh GELU both come back as themselves through every family's TensorFlow config."""
    from plmkit.models import get_family
    fam = get_family(family)
    config = fam.tiny().replace(hidden_act=act)
    torch.manual_seed(0)
    model = fam.build(config).eval()
    plmkit.save_pretrained(model, tmp_path, format="tf")
    back = plmkit.from_pretrained(tmp_path, model=family)
    tanh_names = {"gelu_tanh", "gelu_new", "gelu_fast", "gelu_pytorch_tanh"}  # one function, several spellings
    assert back.config.hidden_act == act or {back.config.hidden_act, act} <= tanh_names
    ids = torch.randint(1, config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = model(ids).last_hidden_state, back(ids).last_hidden_state
    assert (a - b).abs().max() <= 1e-5
