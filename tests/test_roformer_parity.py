"""RoFormer against transformers on tiny random weights; RoFormer-v2 against a hand-written forward."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import plmkit
from oracles import logits_parity_and_round_trip, padded_batch as _batch, random_hf_model
from plmkit.config import ConfigError

transformers = pytest.importorskip("transformers")

CONFIGS = [
    # odd head counts, sizes that are not powers of two, type_vocab_size 1 and 3, an embedding projection
    dict(vocab_size=97, hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=50,
         type_vocab_size=3, max_position_embeddings=40),
    dict(vocab_size=61, hidden_size=30, num_hidden_layers=3, num_attention_heads=5, intermediate_size=47,
         type_vocab_size=1, max_position_embeddings=33, hidden_act="gelu_new", layer_norm_eps=1e-6,
         embedding_size=22),
    dict(vocab_size=128, hidden_size=64, num_hidden_layers=1, num_attention_heads=1, intermediate_size=100,
         type_vocab_size=2, max_position_embeddings=64, hidden_act="relu", embedding_size=40),
]




def _hf(cls, cfg, path, safe=True):
    config = transformers.RoFormerConfig(**cfg, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return random_hf_model(cls, config, path, safe=safe)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_roformer_model_parity(cfg, tmp_path):
    hf = _hf(transformers.RoFormerModel, cfg, tmp_path)
    ours = plmkit.from_pretrained(tmp_path)
    assert ours.config.family == "roformer"
    assert ours.load_report.unexpected == [] and ours.load_report.missing == []
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
        out = ours(ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
    assert (out.last_hidden_state - ref.last_hidden_state).abs().max() <= 1e-5
    # every block, and the (projected) embeddings, agree too
    assert len(out.hidden_states) == len(ref.hidden_states)
    for a, b in zip(out.hidden_states, ref.hidden_states):
        assert (a - b).abs().max() <= 1e-5


@pytest.mark.parametrize("cfg", CONFIGS[:2])
@pytest.mark.parametrize("safe", [True, False])
def test_roformer_mlm_parity_and_round_trip(cfg, safe, tmp_path):
    hf = _hf(transformers.RoFormerForMaskedLM, cfg, tmp_path / "hf", safe)
    ours = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True)
    batch = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    logits_parity_and_round_trip(hf, ours, transformers.RoFormerForMaskedLM, batch, tmp_path,
                                 (3, 11, cfg["vocab_size"]))
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["architectures"] == ["RoFormerForMaskedLM"]


def test_roformer_encoder_only_load_skips_mlm_head(tmp_path):
    _hf(transformers.RoFormerForMaskedLM, CONFIGS[1], tmp_path)
    enc = plmkit.from_pretrained(tmp_path)
    assert enc.mlm is None
    assert any(n.startswith("cls.predictions") for n in enc.load_report.skipped_heads)


def test_lm_application_matches_hf_decoder(tmp_path):
    """application='lm' is causal attention over the whole sequence, as RoFormerModel(is_decoder=True)."""
    cfg = CONFIGS[1]
    hf = _hf(transformers.RoFormerModel, dict(cfg, is_decoder=True), tmp_path)
    ours = plmkit.from_pretrained(tmp_path, application="lm")
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, use_cache=False).last_hidden_state
        out = ours(ids, token_type_ids=types, attention_mask=mask).last_hidden_state
    keep = mask.bool()  # padded query rows are not compared: their masks differ by convention
    assert (out - ref)[keep].abs().max() <= 1e-5


def test_unilm_application(tmp_path):
    """Source tokens never see the target; a target token sees the source and earlier targets only."""
    cfg = CONFIGS[0]
    _hf(transformers.RoFormerModel, cfg, tmp_path)
    ours = plmkit.from_pretrained(tmp_path, application="unilm")
    enc = plmkit.from_pretrained(tmp_path)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, cfg["vocab_size"], (1, 9), generator=g)
    seg = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, 1]])
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1 - 3) % (cfg["vocab_size"] - 3) + 3  # alter one target token
    with torch.no_grad():
        a = ours(ids, token_type_ids=seg).last_hidden_state
        b = ours(changed, token_type_ids=seg).last_hidden_state
        # the source part equals a bidirectional encoder run on the source alone
        src = enc(ids[:, :4], token_type_ids=seg[:, :4]).last_hidden_state
    assert torch.equal(a[:, :6], b[:, :6])  # before the change: untouched
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-4  # at and after the change: it is seen
    assert (a[:, :4] - src).abs().max() <= 1e-5


def test_roformer_config_refusals(tmp_path):
    _hf(transformers.RoFormerModel, CONFIGS[0], tmp_path)
    d = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(d, rotary_value=True)))
    with pytest.raises(ConfigError, match="rotary_value"):
        plmkit.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(dict(d, norm_type="rms_norm")))
    with pytest.raises(ConfigError, match="roformer_v2"):
        plmkit.from_pretrained(tmp_path)


# ---- RoFormer-v2: no transformers class exists; a forward written here from the description ----

V2_CONFIGS = [
    dict(vocab_size=83, hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=50,
         type_vocab_size=2, hidden_act="relu"),  # no layer_norm_eps: bert4keras' Keras default applies
    dict(vocab_size=70, hidden_size=40, num_hidden_layers=3, num_attention_heads=5, intermediate_size=61,
         type_vocab_size=3, hidden_act="gelu", layer_norm_eps=1e-6, embedding_size=24),
]


def _v2_files(cfg, path, seed=0):
    """Random v2 weights under RoFormer-style names, written by hand (no plmkit involved)."""
    g = torch.Generator().manual_seed(seed)
    H, E, I = cfg["hidden_size"], cfg.get("embedding_size", cfg["hidden_size"]), cfg["intermediate_size"]

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    w = {"roformer.embeddings.word_embeddings.weight": rnd(cfg["vocab_size"], E),
         "roformer.embeddings.token_type_embeddings.weight": rnd(cfg["type_vocab_size"], E)}
    if E != H:
        w["roformer.embeddings_project.weight"] = rnd(H, E)
        w["cls.predictions.transform.dense.weight"] = rnd(E, H)
    for i in range(cfg["num_hidden_layers"]):
        p = f"roformer.encoder.layer.{i}."
        for n in ("query", "key", "value"):
            w[f"{p}attention.self.{n}.weight"] = rnd(H, H)
        w[f"{p}attention.output.dense.weight"] = rnd(H, H)
        w[f"{p}intermediate.dense.weight"] = rnd(I, H)
        w[f"{p}output.dense.weight"] = rnd(H, I)
    path.mkdir(parents=True, exist_ok=True)
    save_file(w, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(dict(cfg, model_type="roformer_v2")))
    return w


def _v2_reference(w, cfg, ids, seg, allowed):
    """RoFormer-v2 forward from its description, straight torch ops; `allowed` is (B, T, T) bool."""
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    hs, eps = H // nh, cfg.get("layer_norm_eps", 1e-7)
    act = {"relu": torch.relu, "gelu": torch.nn.functional.gelu}[cfg["hidden_act"]]

    def norm(x):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)

    def rope(x):  # x (B, T, nh, hs): pairs (2i, 2i+1) as complex numbers times e^{j t 10000^(-2i/hs)}
        T = x.shape[1]
        theta = torch.arange(T, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, hs, 2) / hs)
        z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], hs // 2, 2).contiguous())
        z = z * torch.polar(torch.ones_like(theta), theta)[None, :, None, :]
        return torch.view_as_real(z).reshape(x.shape).float()

    x = w["roformer.embeddings.word_embeddings.weight"][ids] + w["roformer.embeddings.token_type_embeddings.weight"][seg]
    x = norm(x)
    if "roformer.embeddings_project.weight" in w:
        x = x @ w["roformer.embeddings_project.weight"].T
    B, T = ids.shape
    for i in range(cfg["num_hidden_layers"]):
        p = f"roformer.encoder.layer.{i}."
        q, k, v = (x @ w[f"{p}attention.self.{n}.weight"].T for n in ("query", "key", "value"))
        q, k, v = (t.reshape(B, T, nh, hs) for t in (q, k, v))
        q, k = rope(q), rope(k)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / hs ** 0.5
        scores = scores.masked_fill(~allowed[:, None], -1e30)
        o = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(B, T, H)
        x = norm(x + o @ w[f"{p}attention.output.dense.weight"].T)
        f = act(x @ w[f"{p}intermediate.dense.weight"].T) @ w[f"{p}output.dense.weight"].T
        x = norm(x + f)
    h = x @ w["cls.predictions.transform.dense.weight"].T if "cls.predictions.transform.dense.weight" in w else x
    return x, h @ w["roformer.embeddings.word_embeddings.weight"].T


def _allowed(application, seg, mask):
    B, T = seg.shape
    key = mask.bool()[:, None, :].expand(B, T, T)
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    if application == "encoder":
        return key
    if application == "lm":
        return key & (j <= i)
    # unilm: every query sees the source (segment 0); target (segment 1) queries also see targets up to themselves
    return key & ((seg[:, None, :] == 0) | ((seg[:, :, None] == 1) & (j <= i)))


@pytest.mark.parametrize("cfg", V2_CONFIGS)
@pytest.mark.parametrize("application", ["encoder", "lm", "unilm"])
def test_roformer_v2_matches_reference(cfg, application, tmp_path):
    w = _v2_files(cfg, tmp_path)
    ours = plmkit.from_pretrained(tmp_path, model="roformer_v2", with_mlm=True, application=application)
    assert ours.load_report.unexpected == [] and ours.load_report.missing == []
    assert not any(n.endswith("bias") for n in ours.state_dict())
    ids, _, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"], T=10)
    seg = torch.tensor([[0] * 4 + [1] * 6] * 3) * mask  # source then target, pads in segment 0
    with torch.no_grad():
        out = ours(ids, token_type_ids=seg, attention_mask=mask)
    ref_h, ref_logits = _v2_reference(w, cfg, ids, seg, _allowed(application, seg, mask))
    keep = mask.bool()  # padded query rows are not compared
    assert (out.last_hidden_state - ref_h)[keep].abs().max() <= 1e-5
    assert (out.logits - ref_logits)[keep].abs().max() <= 1e-4 * ref_logits.abs().max()


def test_roformer_v2_round_trip_through_our_format(tmp_path):
    cfg = V2_CONFIGS[1]
    w = _v2_files(cfg, tmp_path / "v2")
    ours = plmkit.from_pretrained(tmp_path / "v2", model="roformer_v2", with_mlm=True)
    plmkit.save_pretrained(ours, tmp_path / "saved")
    written = load_file(str(tmp_path / "saved" / "model.safetensors"))
    assert sorted(written) == sorted(w)
    assert all(torch.equal(written[k], w[k]) for k in w)
    back = plmkit.from_pretrained(tmp_path / "saved", with_mlm=True)  # model_type roformer_v2 in config.json
    assert back.config.family == "roformer_v2" and back.config.layer_norm_eps == cfg["layer_norm_eps"]
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    with torch.no_grad():
        assert torch.equal(ours(ids, types, mask).logits, back(ids, types, mask).logits)


def test_roformer_v2_default_epsilon_and_refusals(tmp_path):
    _v2_files(V2_CONFIGS[0], tmp_path)
    ours = plmkit.from_pretrained(tmp_path, model="roformer_v2")
    assert ours.config.layer_norm_eps == 1e-7  # Keras' epsilon, what bert4keras' norm used when none was given
    with pytest.raises(ValueError, match="no pooler"):
        plmkit.from_pretrained(tmp_path, model="roformer_v2", with_pool=True)
