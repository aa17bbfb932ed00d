"""NEZHA against transformers 4.x's NezhaModel (dropped in transformers 5), plus hand-checked tables.

The oracle runs in a subprocess whose PYTHONPATH puts a transformers 4.x install first (it
shares this interpreter's torch): `.oracles/transformers4` in the repository, made by

    python tests/scripts/install_oracles.py

or the directory PLMKIT_TRANSFORMERS4_PATH names. Without it the oracle tests are skipped with a
reason that gives the install command; the hand-checked tests always run.
"""
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

import plmkit
from conftest import TRANSFORMERS4, transformers4_path
from oracles import OracleWorker
from plmkit.modules.relative_position import FunctionalRelativePositions, RelativeSelfAttention

ORACLE_PATH = str(TRANSFORMERS4)

# A worker under transformers 4.x, started once per module: it answers one JSON request per line.
# mode "make": build, perturb, save each case's model, run it; mode "load": load each case's
# directory (written by plmkit) and run it. Outputs go to safetensors files named in the request.
ORACLE = r"""
import json, sys, traceback
try:
    import torch
    import transformers
    from safetensors.torch import load_file, save_file
    assert transformers.__version__.startswith("4."), "found transformers " + transformers.__version__
    transformers.NezhaModel
except Exception as e:
    print("unavailable: " + repr(e), flush=True)
    sys.exit(0)
print("ready", flush=True)


def run(mode, case):
    cls = getattr(transformers, case["cls"])
    if mode == "make":
        torch.manual_seed(case["seed"])
        config = transformers.NezhaConfig(**case["config"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        model = cls(config).eval()
        with torch.no_grad():  # random non-zero biases and norms so nothing hides behind zeros
            for n, p in model.named_parameters():
                if n.endswith("bias") or "LayerNorm" in n:
                    p.add_(torch.randn_like(p) * 0.1)
        model.save_pretrained(case["dir"], safe_serialization=True)
    else:
        model = cls.from_pretrained(case["dir"]).eval()
    x = load_file(case["inputs"])
    with torch.no_grad():
        o = model(input_ids=x["ids"], token_type_ids=x["types"], attention_mask=x["mask"], output_hidden_states=True)
    out = {"hidden": o.hidden_states[-1].contiguous()}
    for name in ("pooler_output", "logits", "prediction_logits", "seq_relationship_logits"):
        if getattr(o, name, None) is not None:
            out[name] = o[name].contiguous()
    save_file(out, case["out"])

"""  # + oracles.WORKER_LOOP


class Oracle(OracleWorker):
    """The transformers 4.x worker process."""

    def __init__(self) -> None:
        super().__init__(ORACLE, ORACLE_PATH)


def _batch(vocab, type_vocab, B=3, T=13, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    for b, n in enumerate((T, T - 4, 2)[:B]):  # padded rows of different lengths
        mask[b, n:] = 0
        ids[b, n:] = 0
    types = torch.randint(0, max(type_vocab, 1), (B, T), generator=g) * mask
    return ids, types, mask


CASES = {
    # odd head count, head size 12, clipping at 4 (< the 13 tokens), type_vocab_size 3
    "model": ("NezhaModel", dict(vocab_size=97, hidden_size=36, num_hidden_layers=2, num_attention_heads=3,
                                 intermediate_size=50, type_vocab_size=3, max_position_embeddings=40,
                                 max_relative_position=4)),
    # five heads of size 6, default clipping (64: never reached), gelu_new, eps 1e-6
    "mlm": ("NezhaForMaskedLM", dict(vocab_size=61, hidden_size=30, num_hidden_layers=3, num_attention_heads=5,
                                     intermediate_size=47, type_vocab_size=1, max_position_embeddings=33,
                                     hidden_act="gelu_new", layer_norm_eps=1e-6)),
    "pretraining": ("NezhaForPreTraining", dict(vocab_size=50, hidden_size=20, num_hidden_layers=2,
                                                num_attention_heads=2, intermediate_size=33, type_vocab_size=2,
                                                max_position_embeddings=30, max_relative_position=2,
                                                hidden_act="relu")),
    # is_decoder: transformers' causal NezhaModel, our application="lm"
    "decoder": ("NezhaModel", dict(vocab_size=40, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                   intermediate_size=30, type_vocab_size=2, max_position_embeddings=30,
                                   max_relative_position=3, is_decoder=True)),
}
OPTIONS = {"model": dict(with_pool=True), "mlm": dict(with_mlm=True), "pretraining": dict(with_mlm=True, with_nsp=True),
           "decoder": dict(with_pool=True, application="lm")}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    transformers4_path()  # skips, saying how to install it, when absent
    worker = Oracle()
    if worker.greeting != "ready":
        worker.close()
        pytest.skip(f"transformers 4.x NezhaModel not usable from {ORACLE_PATH}: {worker.greeting or 'no answer'}")
    work = tmp_path_factory.mktemp("nezha")
    cases = []
    for i, (name, (cls, cfg)) in enumerate(CASES.items()):
        ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"], seed=i)
        save_file({"ids": ids, "types": types, "mask": mask}, str(work / f"{name}_inputs.safetensors"))
        cases.append(dict(name=name, cls=cls, config=cfg, seed=i, dir=str(work / name),
                          inputs=str(work / f"{name}_inputs.safetensors"), out=str(work / f"{name}_out.safetensors")))
    worker("make", cases)
    yield worker, work, {c["name"]: c for c in cases}
    worker.close()


def _ours(case, options):
    model = plmkit.from_pretrained(case["dir"], **options)
    x = load_file(case["inputs"])
    with torch.no_grad():
        out = model(x["ids"], token_type_ids=x["types"], attention_mask=x["mask"])
    return model, out, x["mask"].bool()


@pytest.mark.parametrize("name", list(CASES))
def test_nezha_parity_with_transformers4(oracle, name):
    _, _, cases = oracle
    case = cases[name]
    model, out, keep = _ours(case, OPTIONS[name])
    ref = load_file(case["out"])
    assert model.config.family == "nezha"
    assert model.config.options.max_relative_position == case["config"].get("max_relative_position", 64)
    assert model.load_report.unexpected == [] and model.load_report.missing == []
    if name == "decoder":  # padded query rows are not compared: their masks differ by convention
        assert (out.last_hidden_state - ref["hidden"])[keep].abs().max() <= 1e-5
    else:
        assert (out.last_hidden_state - ref["hidden"]).abs().max() <= 1e-5
    if "pooler_output" in ref and out.pooled_output is not None:
        assert (out.pooled_output - ref["pooler_output"]).abs().max() <= 1e-5
    logits = ref.get("logits", ref.get("prediction_logits"))
    if logits is not None:
        assert (out.logits - logits).abs().max() <= 1e-5
    if "seq_relationship_logits" in ref:
        assert (out.nsp_logits - ref["seq_relationship_logits"]).abs().max() <= 1e-5


def test_nezha_round_trip_into_transformers4(oracle):
    worker, work, cases = oracle
    back = []
    ours_out = {}
    for name in ("mlm", "pretraining"):
        model, out, _ = _ours(cases[name], OPTIONS[name])
        plmkit.save_pretrained(model, work / f"{name}_ours")
        ours_out[name] = out
        back.append(dict(cases[name], dir=str(work / f"{name}_ours"), out=str(work / f"{name}_back.safetensors")))
    worker("load", back)
    for case in back:
        ref = load_file(case["out"])
        out = ours_out[case["name"]]
        assert (out.logits - ref.get("logits", ref.get("prediction_logits"))).abs().max() <= 1e-5
        assert (out.last_hidden_state - ref["hidden"]).abs().max() <= 1e-5


# ---- checks that need no oracle ------------------------------------------------------------------

def test_relative_index_clipping_by_hand():
    rel = FunctionalRelativePositions(head_size=4, max_relative_position=2)
    # row = clip(j - i, -2, 2) + 2 for query i (rows) and key j (columns)
    expected = torch.tensor([
        [2, 3, 4, 4, 4],
        [1, 2, 3, 4, 4],
        [0, 1, 2, 3, 4],
        [0, 0, 1, 2, 3],
        [0, 0, 0, 1, 2],
    ])
    assert torch.equal(rel.index(5, 5), expected)


def test_relative_table_values_by_hand():
    rel = FunctionalRelativePositions(head_size=4, max_relative_position=2)
    a = rel(5, dtype=torch.float64)  # (5, 5, 4)
    # head size 4: frequencies 1 and 10000^(-1/2) = 0.01; the table row is the shifted index r = δ + 2
    # query 0, key 4: distance 4 clipped to 2, row 4: [sin 4, cos 4, sin 0.04, cos 0.04]
    assert torch.allclose(a[0, 4], torch.tensor([-0.7568024953, -0.6536436209, 0.0399893342, 0.9992001067],
                                                dtype=torch.float64), atol=1e-9)
    # query 3, key 0: distance -3 clipped to -2, row 0: [sin 0, cos 0, sin 0, cos 0]
    assert torch.allclose(a[3, 0], torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64))
    # the diagonal (distance 0) is row 2: [sin 2, cos 2, sin 0.02, cos 0.02]
    assert torch.allclose(a[1, 1], torch.tensor([0.9092974268, -0.4161468365, 0.0199986667, 0.9998000067],
                                                dtype=torch.float64), atol=1e-9)
    assert torch.equal(a[0, 4], a[0, 3]) and torch.equal(a[4, 0], a[2, 0])  # clipped distances share a row


def test_relative_attention_matches_explicit_formula():
    """The compact (gather / scatter over 2M+1 rows) attention equals the formula with full a_ij."""
    torch.manual_seed(0)
    H, nh, hs, T, M = 24, 3, 8, 9, 3
    attn = RelativeSelfAttention(H, nh, hs, relative=FunctionalRelativePositions(hs, M)).double().eval()
    x = torch.randn(2, T, H, dtype=torch.float64)
    mask = torch.zeros(2, 1, 1, T, dtype=torch.float64)
    mask[1, ..., 6:] = -1e30
    with torch.no_grad():
        out = attn(x, mask)
        q, k, v = attn.qkv(x).view(2, T, 3, nh, hs).unbind(2)  # (B, T, nh, hs)
        a = torch.empty(T, T, hs, dtype=torch.float64)
        for i in range(T):
            for j in range(T):
                r = max(-M, min(M, j - i)) + M
                w = 10000 ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
                a[i, j, 0::2], a[i, j, 1::2] = torch.sin(r * w), torch.cos(r * w)
        s = (torch.einsum("bihd,bjhd->bhij", q, k) + torch.einsum("bihd,ijd->bhij", q, a)) / math.sqrt(hs) + mask
        p = s.softmax(-1)
        y = torch.einsum("bhij,bjhd->bihd", p, v) + torch.einsum("bhij,ijd->bihd", p, a)
        ref = attn.out(y.reshape(2, T, nh * hs))
    assert (out - ref).abs().max() < 1e-10


def test_nezha_builds_trains_and_round_trips_without_oracle(tmp_path):
    from plmkit.models import build_model, get_family

    config = get_family("nezha").tiny()
    model = build_model(config, with_mlm=True, application="unilm")
    ids = torch.randint(1, config.vocab_size, (2, 12))
    seg = torch.tensor([[0] * 5 + [1] * 7] * 2)
    model(ids, token_type_ids=seg).logits.sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None
    plmkit.save_pretrained(model.eval(), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["max_relative_position"] == 5
    back = plmkit.from_pretrained(tmp_path, with_mlm=True, application="unilm")
    with torch.no_grad():
        assert torch.equal(model(ids, token_type_ids=seg).logits, back(ids, token_type_ids=seg).logits)
