"""Every family's original TensorFlow names, on checkpoints written by real TensorFlow (tests/fixtures/tf).

Each parity test gives an independent implementation the values TensorFlow itself read back
(tf_readback.npz), placed through a name translation written here, from the two naming schemes,
without plmkit's rule tables: transformers' classes where one exists (ALBERT, ELECTRA, RoFormer,
T5 / mT5, OpenAI GPT); BERT for brightmart's albert_zh (its factorised table is one (V, H)
product, which BERT holds as is); the transformers 4.x NezhaModel worker of test_nezha_parity;
the hand-written RoFormer-v2 forward of test_roformer_parity.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import plmkit
from plmkit.convert.tensorflow import TFCheckpointReader

transformers = pytest.importorskip("transformers")
FIXTURES = Path(__file__).parent / "fixtures" / "tf"
TOL = 1e-5


def tf_values(name: str) -> dict[str, np.ndarray]:
    """What TensorFlow read from fixture `name`: float32 arrays (bfloat16 bits widened exactly)."""
    doc = json.loads((FIXTURES / name / "tf_readback.json").read_text())
    arrays = np.load(FIXTURES / name / "tf_readback.npz")
    out = {}
    for key, item in doc["tensors"].items():
        value = arrays[item["npz"]]
        if item["dtype"] == "bfloat16":
            value = (value.astype(np.uint32) << 16).view(np.float32)
        out[key] = value
    return out


def training_state(names) -> set[str]:
    """Optimizer slots and step counters, recognised here by their names in these releases."""
    return {n for n in names if n == "global_step" or n.endswith(("/adam_m", "/adam_v"))
            or re.search(r"_slot_v[rc]?$", n)}


def model_values(name: str) -> dict[str, np.ndarray]:
    values = tf_values(name)
    return {k: v for k, v in values.items() if k not in training_state(values)}


def batch(vocab, types=2, B=2, T=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 6:] = 0
    return ids, torch.randint(0, types, (B, T), generator=g) * mask, mask


def t(value: np.ndarray, transpose: bool = False) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(value))
    return x.T.contiguous() if transpose else x


def load_hf(hf_model, state: dict[str, torch.Tensor], allowed_missing=(), tie: bool = True) -> None:
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    assert unexpected == [], unexpected
    assert set(missing) <= set(allowed_missing), sorted(set(missing) - set(allowed_missing))
    if tie:
        hf_model.tie_weights()
    hf_model.eval()


def bert_layer_to_hf(rest: str) -> tuple[str, bool]:
    """'attention/self/query/kernel' -> ('attention.self.query.weight', transpose) (BERT's layer names)."""
    parts = rest.split("/")
    leaf = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias"}[parts[-1]]
    return ".".join(parts[:-1] + [leaf]), parts[-1] == "kernel"


def bert_to_hf(values: dict[str, np.ndarray], scope: str = "bert", prefix: str = "bert.") -> dict[str, torch.Tensor]:
    """google-research/bert names (any scope) -> transformers' BERT-style names."""
    state = {}
    for name, value in values.items():
        if name.startswith(f"{scope}/embeddings/"):
            leaf = name.split("/", 2)[2]
            key = {"LayerNorm/gamma": "LayerNorm.weight", "LayerNorm/beta": "LayerNorm.bias"}.get(leaf, leaf + ".weight")
            state[f"{prefix}embeddings.{key}"] = t(value)
        elif m := re.fullmatch(rf"{scope}/encoder/layer_(\d+)/(.*)", name):
            key, tr = bert_layer_to_hf(m.group(2))
            state[f"{prefix}encoder.layer.{m.group(1)}.{key}"] = t(value, tr)
        elif name.startswith(f"{scope}/pooler/dense/"):
            key, tr = bert_layer_to_hf(name.split("/", 2)[2])
            state[f"{prefix}pooler.{key}"] = t(value, tr)
        elif name.startswith("cls/predictions/transform/"):
            key, tr = bert_layer_to_hf(name.split("/", 3)[3])
            state[f"cls.predictions.transform.{key}"] = t(value, tr)
        elif name == "cls/predictions/output_bias":
            state["cls.predictions.bias"] = t(value)
        elif name == "cls/seq_relationship/output_weights":
            state["cls.seq_relationship.weight"] = t(value)
        elif name == "cls/seq_relationship/output_bias":
            state["cls.seq_relationship.bias"] = t(value)
    return state


def assert_same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def tf_round_trip(loaded, tmp_path, expected_names, dtype=None, **load) -> TFCheckpointReader:
    """save_pretrained(format="tf") -> from_pretrained: the same tensors, under exactly the release's names."""
    plmkit.save_pretrained(loaded, tmp_path, format="tf", dtype=dtype)
    back = plmkit.from_pretrained(tmp_path, **load)
    assert_same_tensors(loaded, back)
    assert back.load_report.skipped_state == [] and back.load_report.unexpected == []
    reader = TFCheckpointReader(tmp_path)
    assert set(reader.keys()) == set(expected_names)
    return reader


def assert_state_report(model, fixture: str) -> None:
    """Training state is skipped and listed, nothing else is."""
    names = tf_values(fixture)
    assert set(model.load_report.skipped_state) == training_state(names)
    assert model.load_report.unexpected == [] and model.load_report.missing == []


# ---- ALBERT ------------------------------------------------------------------------------------

ALBERT_LAYER = {"attention_1/self/query": "attention.query", "attention_1/self/key": "attention.key",
                "attention_1/self/value": "attention.value", "attention_1/output/dense": "attention.dense",
                "LayerNorm": "attention.LayerNorm", "ffn_1/intermediate/dense": "ffn",
                "ffn_1/intermediate/output/dense": "ffn_output", "LayerNorm_1": "full_layer_layer_norm"}


def albert_google_to_hf(values):
    """google-research/albert names -> transformers' AlbertForPreTraining names."""
    state = {}
    for name, value in values.items():
        scope, leaf = name.rsplit("/", 1)
        tr = leaf == "kernel"
        wb = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias"}.get(leaf)
        if scope == "bert/embeddings":
            state[f"albert.embeddings.{leaf}.weight"] = t(value)
        elif scope == "bert/embeddings/LayerNorm":
            state[f"albert.embeddings.LayerNorm.{wb}"] = t(value)
        elif scope == "bert/encoder/embedding_hidden_mapping_in":
            state[f"albert.encoder.embedding_hidden_mapping_in.{wb}"] = t(value, tr)
        elif m := re.fullmatch(r"bert/encoder/transformer/group_(\d+)/inner_group_0/(.*)", scope):
            state[f"albert.encoder.albert_layer_groups.{m.group(1)}.albert_layers.0.{ALBERT_LAYER[m.group(2)]}.{wb}"] = \
                t(value, tr)
        elif scope == "bert/pooler/dense":
            state[f"albert.pooler.{wb}"] = t(value, tr)
        elif scope == "cls/predictions/transform/dense":
            state[f"predictions.dense.{wb}"] = t(value, tr)
        elif scope == "cls/predictions/transform/LayerNorm":
            state[f"predictions.LayerNorm.{wb}"] = t(value)
        elif name == "cls/predictions/output_bias":
            state["predictions.bias"] = t(value)
        elif scope == "cls/seq_relationship":
            state[f"sop_classifier.classifier.{'weight' if leaf == 'output_weights' else 'bias'}"] = t(value)
        else:
            raise AssertionError(f"untranslated {name}")
    return state


def albert_oracle():
    cfg = json.loads((FIXTURES / "albert_google" / "albert_config.json").read_text())
    hf = transformers.AlbertForPreTraining(transformers.AlbertConfig(**dict(cfg, hidden_act="gelu_new")))
    load_hf(hf, albert_google_to_hf(model_values("albert_google")),
            ("predictions.decoder.weight", "predictions.decoder.bias", "albert.embeddings.position_ids"))
    return hf, cfg


@pytest.mark.parametrize("family", ["albert", "albert_unshared"])
def test_albert_google_names_match_transformers(family, tmp_path):
    ours = plmkit.from_pretrained(FIXTURES / "albert_google", model=family, with_mlm=True, with_nsp=True)
    assert ours.config.hidden_act == "gelu_tanh"  # google-research/albert's gelu is the tanh form
    assert_state_report(ours, "albert_google")
    hf, cfg = albert_oracle()
    ids, types, mask = batch(cfg["vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
        out = ours(ids, token_type_ids=types, attention_mask=mask)
    assert (out.last_hidden_state - ref.hidden_states[-1]).abs().max() <= TOL
    assert (out.logits - ref.prediction_logits).abs().max() <= TOL
    assert (out.nsp_logits - ref.sop_logits).abs().max() <= TOL
    if family == "albert":
        tf_round_trip(ours, tmp_path, model_values("albert_google"), with_mlm=True, with_nsp=True)
    else:  # independent layers are written as one group per layer, as Google's code names them
        reader = tf_round_trip(ours, tmp_path, {n.replace("/group_0/", f"/group_{i}/") for n in model_values("albert_google")
                                                for i in range(2)}, model="albert_unshared", with_mlm=True,
                               with_nsp=True)
        assert json.loads((tmp_path / "albert_config.json").read_text())["num_hidden_groups"] == 2
        assert reader.shape("bert/encoder/transformer/group_1/inner_group_0/ffn_1/intermediate/dense/kernel") == (16, 32)


def test_albert_zh_names_match_bert_with_the_product_table(tmp_path):
    """albert_zh = BERT whose token table is word_embeddings @ word_embeddings_2 and whose layers share weights."""
    values = model_values("albert_brightmart")
    cfg = json.loads((FIXTURES / "albert_brightmart" / "albert_config.json").read_text())
    state = bert_to_hf({k: v for k, v in values.items() if "layer_shared" not in k and not k.endswith("_2")})
    state["bert.embeddings.word_embeddings.weight"] = t(values["bert/embeddings/word_embeddings"]
                                                        @ values["bert/embeddings/word_embeddings_2"])
    shared = {k.split("layer_shared/")[1]: v for k, v in values.items() if "layer_shared/" in k}
    for i in range(cfg["num_hidden_layers"]):
        state.update(bert_to_hf({f"bert/encoder/layer_{i}/{k}": v for k, v in shared.items()}))
    hf = transformers.BertForPreTraining(transformers.BertConfig(**dict(cfg, hidden_act="gelu_new")))
    load_hf(hf, state, ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias", "bert.embeddings.position_ids"))
    ids, types, mask = batch(cfg["vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
    for family in ("albert", "albert_unshared"):
        ours = plmkit.from_pretrained(FIXTURES / "albert_brightmart", model=family, with_mlm=True, with_nsp=True)
        assert ours.config.options.token_projection is True
        assert_state_report(ours, "albert_brightmart")
        with torch.no_grad():
            out = ours(ids, token_type_ids=types, attention_mask=mask)
        assert (out.last_hidden_state - ref.hidden_states[-1]).abs().max() <= TOL
        assert (out.logits - ref.prediction_logits).abs().max() <= TOL
        assert (out.nsp_logits - ref.seq_relationship_logits).abs().max() <= TOL
    tf_round_trip(plmkit.from_pretrained(FIXTURES / "albert_brightmart", with_mlm=True, with_nsp=True),
                  tmp_path / "shared", values, with_mlm=True, with_nsp=True)
    # independent layers: BERT's layer_{i} scopes (albert_zh copies BERT's modeling.py), group count recorded
    reader = tf_round_trip(ours, tmp_path / "unshared",
                           {re.sub("layer_shared", f"layer_{i}", n) for n in values for i in range(2)},
                           model="albert_unshared", with_mlm=True, with_nsp=True)
    assert "bert/encoder/layer_1/output/LayerNorm/gamma" in reader
    with pytest.raises(ValueError, match="albert_zh"):
        plmkit.save_pretrained(ours, tmp_path / "hf")  # transformers' ALBERT cannot express this layout


def test_albert_layout_mismatch_is_named(tmp_path):
    import shutil
    shutil.copytree(FIXTURES / "albert_brightmart", tmp_path / "zh")
    cfg = json.loads((tmp_path / "zh" / "albert_config.json").read_text())
    (tmp_path / "zh" / "albert_config.json").write_text(json.dumps(dict(cfg, inner_group_num=1)))
    with pytest.raises(ValueError, match="word_embeddings_2.*remove inner_group_num"):
        plmkit.from_pretrained(tmp_path / "zh")


# ---- ELECTRA -----------------------------------------------------------------------------------

def electra_to_hf(values, part):
    """ELECTRA TF names of one model (the shared embeddings + its encoder and head) -> transformers names."""
    scope = "electra" if part == "discriminator" else "generator"
    mine = {k: v for k, v in values.items() if k.startswith(("electra/embeddings/", f"{scope}/", f"{part}_predictions/"))
            and not (part == "generator" and k.startswith("electra/encoder"))}
    state = bert_to_hf({k.replace(f"{scope}/encoder", "electra/encoder"): v for k, v in mine.items()},
                       scope="electra", prefix="electra.")
    for leaf in ("kernel", "bias"):
        w = "weight" if leaf == "kernel" else "bias"
        state[f"electra.embeddings_project.{w}"] = t(mine[f"{scope}/embeddings_project/{leaf}"], leaf == "kernel")
        if part == "discriminator":
            state[f"discriminator_predictions.dense.{w}"] = t(mine[f"discriminator_predictions/dense/{leaf}"],
                                                             leaf == "kernel")
            state[f"discriminator_predictions.dense_prediction.{w}"] = t(
                mine[f"discriminator_predictions/dense_1/{leaf}"], leaf == "kernel")
        else:
            state[f"generator_predictions.dense.{w}"] = t(mine[f"generator_predictions/dense/{leaf}"], leaf == "kernel")
    if part == "generator":
        state["generator_predictions.LayerNorm.weight"] = t(mine["generator_predictions/LayerNorm/gamma"])
        state["generator_predictions.LayerNorm.bias"] = t(mine["generator_predictions/LayerNorm/beta"])
        state["generator_lm_head.bias"] = t(mine["generator_predictions/output_bias"])
    return state, set(mine)


@pytest.mark.parametrize("part", ["discriminator", "generator"])
def test_electra_parts_match_transformers(part, tmp_path):
    values = model_values("electra")
    cfg = json.loads((FIXTURES / "electra" / f"{part}_config.json").read_text())
    head = {"with_rtd": True} if part == "discriminator" else {"with_mlm": True}
    ours = plmkit.from_pretrained(FIXTURES / "electra", model="electra", config=f"{part}_config.json", **head)
    assert ours.config.hidden_act == "gelu"  # google-research/electra's gelu is the exact (erf) one
    assert_state_report(ours, "electra")
    state, mine = electra_to_hf(values, part)
    assert set(ours.load_report.ignored) == set(values) - mine  # the other model's tensors, left out
    cls = transformers.ElectraForPreTraining if part == "discriminator" else transformers.ElectraForMaskedLM
    hf = cls(transformers.ElectraConfig(**cfg))
    load_hf(hf, state, ("electra.embeddings.position_ids", "generator_lm_head.weight"))
    ids, types, mask = batch(cfg["vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
        out = ours(ids, token_type_ids=types, attention_mask=mask)
    assert (out.last_hidden_state - ref.hidden_states[-1]).abs().max() <= TOL
    assert (out.logits - ref.logits).abs().max() <= TOL
    plmkit.save_pretrained(ours, tmp_path, format="tf")
    back = plmkit.from_pretrained(tmp_path, model="electra", **head)  # discriminator_config.json: the part is the file's
    assert_same_tensors(ours, back)
    assert set(TFCheckpointReader(tmp_path).keys()) == mine


# ---- NEZHA -------------------------------------------------------------------------------------

def nezha_hf_dir(path: Path) -> tuple[Path, dict]:
    """The NEZHA fixture as a transformers 4.x NezhaForPreTraining directory, names translated here."""
    cfg = json.loads((FIXTURES / "nezha" / "bert_config.json").read_text())
    hf_cfg = {k: cfg[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                  "intermediate_size", "type_vocab_size", "max_position_embeddings",
                                  "max_relative_position")}
    hf_cfg.update(hidden_act="gelu_new", model_type="nezha", architectures=["NezhaForPreTraining"])
    path.mkdir(parents=True, exist_ok=True)
    save_file(bert_to_hf(model_values("nezha"), prefix="nezha."), str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(hf_cfg))
    return path, hf_cfg


def test_nezha_names_and_round_trip(tmp_path):
    ours = plmkit.from_pretrained(FIXTURES / "nezha", with_mlm=True, with_nsp=True)  # use_relative_position: nezha
    assert ours.config.family == "nezha" and ours.config.options.max_relative_position == 8
    assert ours.config.hidden_act == "gelu_tanh"  # NEZHA-TensorFlow's modeling.py is BERT's
    assert_state_report(ours, "nezha")
    # the same tensors through transformers' names, read by our HF path (the oracle below checks the numbers)
    path, _ = nezha_hf_dir(tmp_path / "hf")
    via_hf = plmkit.from_pretrained(path, with_mlm=True, with_nsp=True)
    assert_same_tensors(ours, via_hf)
    tf_round_trip(ours, tmp_path / "tf", model_values("nezha"), with_mlm=True, with_nsp=True)
    assert json.loads((tmp_path / "tf" / "bert_config.json").read_text())["use_relative_position"] is True


def test_nezha_matches_transformers4(tmp_path):
    from conftest import transformers4_path
    from test_nezha_parity import Oracle

    transformers4_path()  # skips, saying how to install it, when absent
    worker = Oracle()
    try:
        if worker.greeting != "ready":
            pytest.skip(f"transformers 4.x NezhaModel not usable: {worker.greeting}")
        path, hf_cfg = nezha_hf_dir(tmp_path / "hf")
        ids, types, mask = batch(hf_cfg["vocab_size"], T=13)  # longer than the clipping distance 8
        save_file({"ids": ids, "types": types, "mask": mask}, str(tmp_path / "in.safetensors"))
        worker("load", [dict(name="tf", cls="NezhaForPreTraining", dir=str(path), inputs=str(tmp_path / "in.safetensors"),
                             out=str(tmp_path / "out.safetensors"))])
    finally:
        worker.close()
    ref = load_file(str(tmp_path / "out.safetensors"))
    ours = plmkit.from_pretrained(FIXTURES / "nezha", with_mlm=True, with_nsp=True)
    with torch.no_grad():
        out = ours(ids, token_type_ids=types, attention_mask=mask)
    assert (out.last_hidden_state - ref["hidden"]).abs().max() <= TOL
    assert (out.logits - ref["prediction_logits"]).abs().max() <= TOL
    assert (out.nsp_logits - ref["seq_relationship_logits"]).abs().max() <= TOL


# ---- RoFormer and RoFormer-v2 ------------------------------------------------------------------

def test_roformer_names_match_transformers(tmp_path):
    values = model_values("roformer")
    cfg = json.loads((FIXTURES / "roformer" / "bert_config.json").read_text())
    ours = plmkit.from_pretrained(FIXTURES / "roformer", model="roformer", with_mlm=True, with_nsp=True)
    assert ours.config.hidden_act == "gelu"  # bert4keras (which trained it) maps "gelu" to the erf form
    state = {k.replace("bert.", "roformer.", 1): v for k, v in bert_to_hf(values).items()
             if not k.startswith(("bert.pooler", "cls.seq"))}
    hf = transformers.RoFormerForMaskedLM(transformers.RoFormerConfig(**cfg))
    load_hf(hf, state, ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
                        "roformer.encoder.embed_positions.weight"))
    ids, types, mask = batch(cfg["vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
        out = ours(ids, token_type_ids=types, attention_mask=mask)
    h = ref.hidden_states[-1]
    assert (out.last_hidden_state - h).abs().max() <= TOL
    assert (out.logits - ref.logits).abs().max() <= TOL
    # pooler and NSP head (transformers' RoFormer has neither): BERT's formulas by hand
    pooled = torch.tanh(h[:, 0] @ t(values["bert/pooler/dense/kernel"]) + t(values["bert/pooler/dense/bias"]))
    nsp = pooled @ t(values["cls/seq_relationship/output_weights"]).T + t(values["cls/seq_relationship/output_bias"])
    assert (out.nsp_logits - nsp).abs().max() <= TOL
    tf_round_trip(ours, tmp_path, values, model="roformer", with_mlm=True, with_nsp=True)


def test_roformer_v2_names_match_reference_forward(tmp_path):
    from test_roformer_parity import _allowed, _v2_reference

    values = model_values("roformer_v2")
    cfg = json.loads((FIXTURES / "roformer_v2" / "bert_config.json").read_text())
    w = {k.replace("bert.", "roformer.", 1): v for k, v in bert_to_hf(values).items()}
    ours = plmkit.from_pretrained(FIXTURES / "roformer_v2", model="roformer_v2", with_mlm=True)
    assert ours.config.layer_norm_eps == 1e-7 and ours.load_report.unexpected == []
    ids, types, mask = batch(cfg["vocab_size"])
    with torch.no_grad():
        out = ours(ids, token_type_ids=types, attention_mask=mask)
    ref_h, ref_logits = _v2_reference(w, cfg, ids, types, _allowed("encoder", types, mask))
    assert (out.last_hidden_state - ref_h).abs().max() <= TOL
    assert (out.logits - ref_logits).abs().max() <= TOL
    tf_round_trip(ours, tmp_path, values, model="roformer_v2", with_mlm=True)


# ---- T5: mT5 / T5 PEGASUS (bfloat16, Adafactor slots) and T5.1.0 ----------------------------------

def mesh_to_hf(values, tied: bool) -> dict[str, torch.Tensor]:
    """mesh TensorFlow T5 names -> transformers' T5ForConditionalGeneration names."""
    state = {}
    for name, value in values.items():
        if name == "shared/embedding":
            for key in ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
                state[key] = t(value)
        elif name == "decoder/logits/kernel":
            state["lm_head.weight"] = t(value, True)
        elif m := re.fullmatch(r"(encoder|decoder)/(rms_norm|final_layer_norm)/scale", name):
            state[f"{m.group(1)}.final_layer_norm.weight"] = t(value)
        elif m := re.fullmatch(r"(encoder|decoder)/block_(\d+)/layer_(\d+)/(.*)", name):
            stack, block, layer, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
            p = f"{stack}.block.{block}.layer.{layer}."
            if rest in ("rms_norm/scale", "layer_norm/scale"):
                state[p + "layer_norm.weight"] = t(value)
            elif rest.endswith("relative_attention_bias"):
                state[p + "SelfAttention.relative_attention_bias.weight"] = t(value, True)  # (heads, buckets) stored
            elif rest.startswith("DenseReluDense/"):
                state[p + rest.replace("/kernel", "").replace("/", ".") + ".weight"] = t(value, True)
            else:  # SelfAttention/q, EncDecAttention/o, ...
                state[p + rest.replace("/", ".") + ".weight"] = t(value, True)
        else:
            raise AssertionError(f"untranslated {name}")
    if tied:
        state["lm_head.weight"] = state["shared.weight"]
    return state


def t5_oracle(fixture: str, cls: str, **config):
    tied = config.get("tie_word_embeddings", False)
    hf = getattr(transformers, cls)(getattr(transformers, cls.replace("ForConditionalGeneration", "Config"))(
        vocab_size=30, d_model=16, num_layers=2, num_heads=2, dropout_rate=0.0, layer_norm_epsilon=1e-6, **config))
    if not tied:  # transformers 5 builds MT5 with its head tied; an untied release loads its own head
        hf.lm_head.weight = torch.nn.Parameter(hf.lm_head.weight.detach().clone())
    load_hf(hf, mesh_to_hf(model_values(fixture), tied=tied), tie=tied)
    assert (hf.lm_head.weight is hf.shared.weight) == tied
    return hf


def t5_batch():
    ids, _, mask = batch(30, B=2, T=8)
    dec, _, _ = batch(30, B=2, T=5, seed=1)
    return ids, mask, dec


def test_mt5_bfloat16_names_match_transformers(tmp_path):
    ours = plmkit.from_pretrained(FIXTURES / "mt5", model="mt5.1.1")
    assert ours.config.hidden_act == "gelu"  # a bert4keras config (T5 PEGASUS): its "gelu" is the erf form
    assert_state_report(ours, "mt5")
    assert any(n.endswith("_slot_vc") for n in ours.load_report.skipped_state)
    hf = t5_oracle("mt5", "MT5ForConditionalGeneration", d_kv=8, d_ff=24, relative_attention_num_buckets=8,
                   feed_forward_proj="gated-gelu_python", tie_word_embeddings=False)
    ids, mask, dec = t5_batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
        out = ours(ids, decoder_input_ids=dec, attention_mask=mask)
    assert (out.encoder_last_hidden_state - ref.encoder_last_hidden_state)[mask.bool()].abs().max() <= TOL
    # bert4keras (which trained T5 PEGASUS) divides the decoder output by sqrt(hidden_size) before the
    # untied, bias-free head (its Decoder-Output-Scale layer); mesh TensorFlow and transformers do not,
    # so a bert4keras config gives transformers' logits times 16 ** -0.5
    assert (out.logits - ref.logits * 16 ** -0.5).abs().max() <= TOL
    # stored back in bfloat16, every tensor has TensorFlow's bits again
    reader = tf_round_trip(ours, tmp_path, model_values("mt5"), dtype=torch.bfloat16, model="mt5.1.1")
    bits = np.load(FIXTURES / "mt5" / "tf_readback.npz")
    doc = json.loads((FIXTURES / "mt5" / "tf_readback.json").read_text())["tensors"]
    for name in reader.keys():
        assert reader.dtype(name) == "bfloat16" and np.array_equal(reader.get(name), bits[doc[name]["npz"]]), name
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["hidden_act"] == ["gelu", "linear"]  # bert4keras' spelling of the gated FFN
    assert "logit_scale" not in cfg  # bert4keras' default (scaled) needs no key


def test_mt5_logit_scale_false_and_hf_export_of_a_scaled_head(tmp_path):
    # bert4keras' logit_scale=false (Google's mT5 as mesh TensorFlow computes it): transformers' logits
    unscaled = tmp_path / "unscaled"
    unscaled.mkdir()
    for f in (FIXTURES / "mt5").iterdir():
        (unscaled / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((FIXTURES / "mt5" / "config.json").read_text())
    (unscaled / "config.json").write_text(json.dumps({**cfg, "logit_scale": False}))
    hf = t5_oracle("mt5", "MT5ForConditionalGeneration", d_kv=8, d_ff=24, relative_attention_num_buckets=8,
                   feed_forward_proj="gated-gelu_python", tie_word_embeddings=False)
    ids, mask, dec = t5_batch()
    plain = plmkit.from_pretrained(unscaled, model="mt5.1.1")
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        assert (plain(ids, decoder_input_ids=dec, attention_mask=mask).logits - ref).abs().max() <= TOL
    plmkit.save_pretrained(plain, tmp_path / "tf_plain", format="tf")
    assert json.loads((tmp_path / "tf_plain" / "config.json").read_text())["logit_scale"] is False
    assert plmkit.from_pretrained(tmp_path / "tf_plain", model="mt5.1.1").lm_head.scale == 1.0
    # the scaled (T5 PEGASUS) model written for transformers: the scale is folded into lm_head.weight,
    # so transformers' MT5 gives our logits, and the file reads back as an unscaled model
    scaled = plmkit.from_pretrained(FIXTURES / "mt5", model="mt5.1.1")
    plmkit.save_pretrained(scaled, tmp_path / "hf")
    back = transformers.MT5ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    again = plmkit.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        ours = scaled(ids, decoder_input_ids=dec, attention_mask=mask).logits
        assert (back(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits - ours).abs().max() <= TOL
        assert (again(ids, decoder_input_ids=dec, attention_mask=mask).logits - ours).abs().max() <= TOL
    assert again.lm_head.scale == 1.0


def test_t5_v1_0_names_match_transformers(tmp_path):
    ours = plmkit.from_pretrained(FIXTURES / "t5_v1_0", model="t5.1.0")
    assert_state_report(ours, "t5_v1_0")
    hf = t5_oracle("t5_v1_0", "T5ForConditionalGeneration", d_kv=6, d_ff=20, relative_attention_num_buckets=8,
                   feed_forward_proj="relu", tie_word_embeddings=True)
    ids, mask, dec = t5_batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
        out = ours(ids, decoder_input_ids=dec, attention_mask=mask)
    assert (out.logits - ref.logits).abs().max() <= TOL
    tf_round_trip(ours, tmp_path, model_values("t5_v1_0"), model="t5.1.0")


def test_t5_1_1_reads_either_norm_naming(tmp_path):
    """T5.1.1's releases name norms layer_norm / final_layer_norm, mT5's rms_norm: the file's names decide."""
    ours = plmkit.from_pretrained(FIXTURES / "mt5", model="t5.1.1")  # rms_norm names, read as T5.1.1
    renamed = {n.replace("rms_norm/scale", "layer_norm/scale").replace("encoder/layer_norm", "encoder/final_layer_norm")
               .replace("decoder/layer_norm", "decoder/final_layer_norm") for n in model_values("mt5")}
    tf_round_trip(ours, tmp_path, renamed, model="t5.1.1")


def test_t5_config_refusals(tmp_path):
    from plmkit.config import ConfigError
    from plmkit.models.t5 import config_from_tf

    base = dict(hidden_size=8, intermediate_size=8, num_attention_heads=2, num_hidden_layers=1, vocab_size=10)
    with pytest.raises(ConfigError, match=r"\[ACT, 'linear'\]"):
        config_from_tf(dict(base, hidden_act=["gelu", "gelu"]), "cfg.json", "mt5.1.1")
    with pytest.raises(ConfigError, match="one activation"):
        config_from_tf(dict(base, hidden_act=["relu", "linear"]), "cfg.json", "t5.1.0")
    assert config_from_tf(dict(base, hidden_act=["gelu_tanh", "linear"]), "c", "t5.1.1").hidden_act == "gelu_tanh"


# ---- GPT (CDial-GPT's TensorFlow names) ----------------------------------------------------------

def cdial_to_hf(values) -> dict[str, torch.Tensor]:
    """bojone/CDial-GPT-tf names -> transformers' OpenAIGPTLMHeadModel names (Conv1D weights are [in, out])."""
    state = {"transformer.tokens_embed.weight": t(values["gpt/embeddings/word_embeddings"]),
             "transformer.positions_embed.weight": t(values["gpt/embeddings/position_embeddings"])}
    for i in range(2):
        p, h = f"gpt/transformer/layer_{i}/", f"transformer.h.{i}."
        qkv = [f"{p}attention/self/{n}" for n in ("query", "key", "value")]
        state[h + "attn.c_attn.weight"] = t(np.concatenate([values[q + "/kernel"] for q in qkv], axis=1))
        state[h + "attn.c_attn.bias"] = t(np.concatenate([values[q + "/bias"] for q in qkv]))
        for hf_name, tf_name in (("attn.c_proj", "attention/output/dense"), ("mlp.c_fc", "intermediate/dense"),
                                 ("mlp.c_proj", "output/dense")):
            state[h + hf_name + ".weight"] = t(values[p + tf_name + "/kernel"])
            state[h + hf_name + ".bias"] = t(values[p + tf_name + "/bias"])
        for hf_name, tf_name in (("ln_1", "attention/output/LayerNorm"), ("ln_2", "output/LayerNorm")):
            state[h + hf_name + ".weight"] = t(values[p + tf_name + "/gamma"])
            state[h + hf_name + ".bias"] = t(values[p + tf_name + "/beta"])
    return state


def test_cdial_gpt_names_match_transformers(tmp_path):
    values = model_values("cdial_gpt")
    ours = plmkit.from_pretrained(FIXTURES / "cdial_gpt", model="gpt")
    assert ours.config.hidden_act == "gelu_tanh" and ours.config.layer_norm_eps == 1e-5  # OpenAI GPT's, as trained
    hf = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(
        vocab_size=30, n_positions=24, n_embd=16, n_layer=2, n_head=2, afn="gelu", resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, layer_norm_epsilon=1e-5))
    load_hf(hf, cdial_to_hf(values), ("lm_head.weight",))
    ids, _, _ = batch(30, T=10)
    speakers = torch.where(torch.arange(10) < 5, 12, 13).expand(2, 10)  # speaker tokens looked up in the token table
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=speakers)
        out = ours(ids, token_type_ids=speakers)
    assert (out.logits - ref.logits).abs().max() <= TOL
    tf_round_trip(ours, tmp_path, values, model="gpt")
    assert (tmp_path / "gpt_config.json").exists() and (tmp_path / "gpt_model.ckpt.index").exists()


# ---- convert ------------------------------------------------------------------------------------

def test_convert_tf_to_hf_keeps_every_head_and_the_tokenizer(tmp_path):
    from plmkit.conversion import convert

    report = convert(FIXTURES / "albert_google", tmp_path / "hf", to="hf", progress=False)
    assert report.heads == {"with_pool": True, "with_nsp": True, "with_mlm": True}
    assert report.load.skipped_state == ["global_step"] and report.copied == ["vocab.txt"]
    hf = transformers.AlbertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    oracle, cfg = albert_oracle()
    ids, types, mask = batch(cfg["vocab_size"])
    with torch.no_grad():
        got = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
        ref = oracle(input_ids=ids, token_type_ids=types, attention_mask=mask)
    assert (got.prediction_logits - ref.prediction_logits).abs().max() <= TOL
    assert (got.sop_logits - ref.sop_logits).abs().max() <= TOL


def test_convert_mt5_keeps_bfloat16(tmp_path):
    from plmkit.conversion import convert

    report = convert(FIXTURES / "mt5", tmp_path / "hf", to="hf", model="mt5.1.1", progress=False)
    assert report.dtype == torch.bfloat16 and len(report.load.skipped_state) == len(training_state(tf_values("mt5")))
    weights = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert all(v.dtype == torch.bfloat16 for v in weights.values())
    expected = mesh_to_hf(model_values("mt5"), tied=False)
    # bert4keras' decoder-output scale folded into the head (16 ** -0.5 = 1/4: exact in bfloat16 too)
    assert torch.equal(weights["lm_head.weight"], (expected["lm_head.weight"] / 4).bfloat16())
    hf = transformers.MT5ForConditionalGeneration.from_pretrained(tmp_path / "hf")
    assert hf.config.feed_forward_proj == "gated-gelu_python"  # exact GELU, as the bert4keras config meant


def test_convert_hf_to_tf_writes_release_names(tmp_path):
    from plmkit.conversion import convert

    cfg = transformers.ElectraConfig(vocab_size=40, embedding_size=8, hidden_size=12, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=20, max_position_embeddings=20)
    hf = transformers.ElectraForPreTraining(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path / "hf")
    report = convert(tmp_path / "hf", tmp_path / "tf", to="tf", progress=False)
    assert report.heads == {"with_rtd": True}
    reader = TFCheckpointReader(tmp_path / "tf")
    hf_state = hf.state_dict()
    back, _ = electra_to_hf({n: reader.get(n) for n in reader.keys()}, "discriminator")
    assert set(back) == set(hf_state) - {"electra.embeddings.position_ids"}
    for name, value in back.items():
        assert torch.equal(value, hf_state[name]), name
    ours = plmkit.from_pretrained(tmp_path / "tf", model="electra", with_rtd=True)
    ids, types, mask = batch(40)
    with torch.no_grad():
        assert (ours(ids, token_type_ids=types, attention_mask=mask).logits
                - hf(input_ids=ids, token_type_ids=types, attention_mask=mask).logits).abs().max() <= TOL


def test_convert_progress_bar_and_errors(tmp_path, monkeypatch, capsys):
    from plmkit import conversion as module

    monkeypatch.setattr(module, "PROGRESS_MIN_BYTES", 0)
    module.convert(FIXTURES / "cdial_gpt", tmp_path / "a", to="hf", model="gpt")
    assert "convert gpt_model.ckpt 34/34" in capsys.readouterr().err  # TF tensors read (q, k, v apart)
    module.convert(FIXTURES / "cdial_gpt", tmp_path / "b", to="hf", model="gpt", progress=False)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="'hf' or 'tf'"):
        module.convert(FIXTURES / "bert", tmp_path / "c", to="onnx")
    # two configs beside the checkpoint: the discriminator's is the release name the family looks for first
    report = module.convert(FIXTURES / "electra", tmp_path / "d", model="electra", progress=False)
    assert report.heads == {"with_rtd": True}
    (tmp_path / "e").mkdir()
    for f in (FIXTURES / "electra").iterdir():
        (tmp_path / "e" / f.name.replace("discriminator_config", "disc_config")).write_bytes(f.read_bytes())
    with pytest.raises(FileNotFoundError, match="found several"):
        module.convert(tmp_path / "e", tmp_path / "f", model="electra")  # no release name: say which
