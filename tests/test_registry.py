"""Every registered family: builds tiny, runs forward and backward, saves and loads back identically."""
import pytest
import torch

import plmkit
from plmkit.models import REGISTRY, get_family


def _inputs(model, cfg):
    ids = torch.randint(2, cfg.vocab_size, (2, 7))
    kwargs = {"attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2])}
    if getattr(model, "is_encoder_decoder", False):
        kwargs["decoder_input_ids"] = torch.randint(2, cfg.vocab_size, (2, 5))
    return ids, kwargs


def _first_tensor(out):
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_family_builds_runs_saves_loads(name, tmp_path):
    family = get_family(name)
    assert family.tiny is not None, f"family {name} has no tiny config"
    cfg = family.tiny()
    model = family.build(cfg)
    ids, kwargs = _inputs(model, cfg)
    model.train()
    _first_tensor(model(ids, **kwargs)).float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    plmkit.save_pretrained(model, tmp_path)
    back = plmkit.from_pretrained(tmp_path, model=name)
    with torch.no_grad():
        a, b = _first_tensor(model(ids, **kwargs)), _first_tensor(back(ids, **kwargs))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_family_map_covers_real_size_on_meta(name):
    """The name map covers every tensor at a real size (BERT-base-like), built on the meta device."""
    family = get_family(name)
    cfg = family.tiny().replace(hidden_size=768, num_heads=12, head_size=None, intermediate_size=3072,
                                num_layers=12, vocab_size=21128)
    with torch.device("meta"):
        model = family.build(cfg)
    hf = family.sources["hf"]
    rules, _ = hf.rules(cfg, hf.prefixes[0])
    ours = set(model.state_dict())
    mapped = {r.ours for r in rules}
    assert ours <= mapped, f"unmapped: {sorted(ours - mapped)[:5]}"


def _tied_heads(model):
    """Heads that hold the token embedding module (hidden from the module tree) instead of a weight of their own."""
    return [m for m in model.modules() if isinstance(getattr(m, "embedding", None), list)]


def _head_options(name: str) -> dict:
    """with_mlm where the family takes it (GPT's tied LM head is built by default)."""
    try:
        with torch.device("meta"):
            get_family(name).build(get_family(name).tiny(), with_mlm=True)
    except (TypeError, ValueError):
        return {}
    return {"with_mlm": True}


def _builds_tied_head(name: str) -> bool:
    with torch.device("meta"):
        return bool(_tied_heads(get_family(name).build(get_family(name).tiny(), **_head_options(name))))


TIED = [name for name in sorted(REGISTRY) if _builds_tied_head(name)]


def test_only_encoder_decoders_have_no_module_tied_head():
    """The families left out of the next test take the token table per call (T5.1.0) or have an untied head."""
    untied = sorted(set(REGISTRY) - set(TIED))
    with torch.device("meta"):
        assert all(getattr(get_family(n).build(get_family(n).tiny()), "is_encoder_decoder", False) for n in untied)
    assert {"bert", "gpt2", "roformer_v2"} <= set(TIED)  # MLMHead, GPT-2's and RoFormer-v2's TiedLMHead


@pytest.mark.parametrize("name", TIED)
def test_loaded_tied_heads_read_the_loaded_token_table(name, tmp_path):
    """load_state_dict(assign=True) replaces parameters, not modules: a head tied to the token embedding
    module reads the loaded table itself, with no re-tying after loading."""
    family = get_family(name)
    cfg = family.tiny()
    options = _head_options(name)
    torch.manual_seed(0)
    plmkit.save_pretrained(family.build(cfg, **options).eval(), tmp_path)
    model = plmkit.from_pretrained(tmp_path, model=name, **options)
    heads = _tied_heads(model)
    table = dict(model.named_parameters())["embeddings.token.weight"]
    assert table.device.type == "cpu"  # loaded, not the meta tensor the model was built with
    (head,) = heads
    assert head.embedding[0] is model.embeddings.token
    assert head.embedding[0].weight is table and head.embedding[0].weight.data_ptr() == table.data_ptr()
    hidden = torch.randn(2, 3, cfg.hidden_size)
    t = cfg.vocab_size - 1
    with torch.no_grad():
        before = head(hidden)
        table[t] = 0  # change the model's token table in place: the head's logit for t is its bias alone
        after = head(hidden)
    bias = head.bias[t] if getattr(head, "bias", None) is not None else torch.tensor(0.0)
    assert torch.equal(after[..., :t], before[..., :t])
    assert torch.equal(after[..., t], bias.expand_as(after[..., t])) and not torch.equal(after, before)


# ---- the family x source matrix, generated from the registry ------------------------------------------------
# Every (family, format) the registry holds is a test case below: coverage at real sizes on the meta device,
# a save / load round trip that also checks detection, and parity with an independent implementation
# (transformers for Hugging Face sources; checkpoints written by real TensorFlow for TensorFlow sources).

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from plmkit.conversion import HEAD_OPTIONS  # noqa: E402
from plmkit.models import families  # noqa: E402

SOURCES = [(f.name, fmt) for f in families() for fmt in f.sources]
TF_FIXTURES = Path(__file__).parent / "fixtures" / "tf"
# family -> (TensorFlow fixture directory, the family that fixture is detected as without model=)
TF_FIXTURE_OF = {
    "bert": ("bert", "bert"), "nezha": ("nezha", "nezha"), "roformer": ("roformer", "roformer"),
    "roformer_v2": ("roformer_v2", "roformer_v2"), "gpt": ("cdial_gpt", "gpt"), "t5.1.0": ("t5_v1_0", "t5.1.0"),
    "t5.1.1": ("mt5", "mt5.1.1"), "mt5.1.1": ("mt5", "mt5.1.1"), "albert": ("albert_google", "albert"),
    "albert_unshared": ("albert_brightmart", "albert"), "electra": ("electra", "electra"),
}
# Hugging Face sources whose transformers class is gone from transformers 5: the oracle lives in another test
HF_ORACLE_ELSEWHERE = {
    "nezha": "test_nezha_parity.py",  # transformers 4.57's NezhaModel, installed beside (tests/scripts)
    "roformer_v2": "test_roformer_parity.py",  # no transformers class: bert4keras' formulas written out there
    "transfo_xl": "test_transfo_xl_parity.py",  # transformers 4.35's TransfoXLLMHeadModel, installed beside
}


def _head_sets(name: str) -> list[dict]:
    """No head, and each head option the family builds alone (tried on the meta device)."""
    family, sets = get_family(name), [{}]
    for option in HEAD_OPTIONS:
        try:
            with torch.device("meta"):
                family.build(family.tiny(), **{option: True})
        except (TypeError, ValueError):
            continue
        sets.append({option: True})
    return sets


def _real_size(name: str):
    cfg = get_family(name).tiny()
    return cfg.replace(hidden_size=768, num_heads=12, head_size=None, intermediate_size=3072, num_layers=12,
                       vocab_size=21128)


@pytest.mark.parametrize("name,fmt", SOURCES)
def test_source_rules_cover_every_head_at_real_size(name, fmt):
    """Every tensor of every head the family builds has a name in this format, at a BERT-base size."""
    family = get_family(name)
    source = family.sources[fmt]
    for heads in _head_sets(name):
        cfg = _real_size(name)
        with torch.device("meta"):
            model = family.build(cfg, **heads)
        rules, _ = source.rules(model.config, source.prefixes[0], None)
        ours = set(model.state_dict())
        mapped = {r.ours for r in rules}
        assert ours <= mapped, f"{name} {fmt} {heads}: unmapped {sorted(ours - mapped)[:5]}"


@pytest.mark.parametrize("name,fmt", SOURCES)
def test_source_round_trip_and_detection(name, fmt, tmp_path):
    """Saved in the format and read back: same outputs; without model= the file is recognised as this family
    (or, for a family only named with model=, as the one that reads its checkpoints)."""
    family = get_family(name)
    for i, heads in enumerate(_head_sets(name)):
        torch.manual_seed(i)
        model = family.build(family.tiny(), **heads).eval()
        if fmt == "tf" and heads.get("with_mlm") and name == "electra":
            assert model.config.options.part == "generator"  # the head says which model it is
        out = plmkit.save_pretrained(model, tmp_path / str(i), format=fmt)
        back = plmkit.from_pretrained(out, model=name, **heads)
        mine, read = model.state_dict(), back.state_dict()
        assert mine.keys() == read.keys() and all(torch.equal(mine[k], read[k]) for k in mine), heads
        ids, kwargs = _inputs(model, model.config)
        with torch.no_grad():  # same values; a transposed copy may take another GEMM path: not bit-equal
            assert torch.allclose(_first_tensor(model(ids, **kwargs)), _first_tensor(back(ids, **kwargs)),
                                  rtol=0, atol=1e-6), heads
        detected = plmkit.from_pretrained(out, **heads)
        expected = name if family.sources[fmt].detect is not None else detected.config.family
        assert detected.config.family == expected
        assert detected.config.family == name or family.sources[fmt].detect is None


@pytest.mark.parametrize("name", [n for n, fmt in SOURCES if fmt == "tf"])
def test_tf_source_reads_a_checkpoint_written_by_tensorflow(name):
    """Against values real TensorFlow read from its own file (tests/fixtures/tf): every model tensor of the
    checkpoint is read, into the tensor the name map says, with the value TensorFlow holds."""
    from plmkit.convert.namemap import invert_map
    from test_tf_zoo import model_values

    assert name in TF_FIXTURE_OF, f"family {name} has a TensorFlow source but no fixture written by TensorFlow"
    directory, detected_as = TF_FIXTURE_OF[name]
    heads = {k: v for h in _head_sets(name) for k, v in h.items() if k != "with_mlm" or name != "electra"}
    model = plmkit.from_pretrained(TF_FIXTURES / directory, model=name, **heads)
    assert not model.load_report.missing and not model.load_report.unexpected
    values = model_values(directory)
    source = get_family(name).sources["tf"]
    rules, _ = source.rules(model.config, "", values)
    theirs = invert_map(rules, model.state_dict())
    compared = 0
    for key, value in theirs.items():
        if key in values and name != "albert_unshared":  # unshared layers copy one stored layer: compared below
            expected = torch.from_numpy(np.ascontiguousarray(values[key])).float()
            assert torch.allclose(value.float(), expected.reshape(value.shape), atol=0, rtol=0), key
            compared += 1
    if name != "albert_unshared":
        assert compared == len(theirs)
    assert plmkit.from_pretrained(TF_FIXTURES / directory).config.family == detected_as


@pytest.mark.parametrize("name", [n for n, fmt in SOURCES if fmt == "hf"])
def test_hf_source_matches_transformers(name, tmp_path):
    """Our model, saved as Hugging Face files, gives the outputs transformers' class gives on them."""
    transformers = pytest.importorskip("transformers")
    family = get_family(name)
    heads = {"with_mlm": True} if {"with_mlm": True} in _head_sets(name) else {}
    torch.manual_seed(0)
    model = family.build(family.tiny(), **heads).eval()
    out = plmkit.save_pretrained(model, tmp_path)
    architecture = family.sources["hf"].architecture(model)
    if not hasattr(transformers, architecture):
        assert name in HF_ORACLE_ELSEWHERE, f"{architecture} is not in transformers: name the oracle test"
        assert name in (Path(__file__).parent / HF_ORACLE_ELSEWHERE[name]).read_text()
        return
    theirs = getattr(transformers, architecture).from_pretrained(out).eval()
    ids, kwargs = _inputs(model, model.config)
    with torch.no_grad():
        ref = theirs(input_ids=ids, **kwargs)
        mine = model(ids, **kwargs)
    ref_tensor = next(getattr(ref, k) for k in ("logits", "prediction_logits", "last_hidden_state")
                      if getattr(ref, k, None) is not None)
    assert (_first_tensor(mine) - ref_tensor).abs().max() <= 1e-5
