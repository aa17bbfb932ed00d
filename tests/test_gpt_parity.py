"""GPT (OpenAIGPTLMHeadModel) and GPT-2 (GPT2LMHeadModel) against transformers on the same tiny random weights."""
import pytest
import torch
from safetensors.torch import load_file, save_file

import plmkit
from oracles import random_hf_model
from plmkit.modules.prenorm import position_ids_from_mask

transformers = pytest.importorskip("transformers")

GPT2_CONFIGS = [
    # odd head counts, sizes that are not powers of two, an MLP width that is not 4 x n_embd
    dict(vocab_size=97, n_embd=30, n_layer=3, n_head=5, n_inner=50, n_positions=40, bos_token_id=1, eos_token_id=2),
    dict(vocab_size=61, n_embd=36, n_layer=2, n_head=3, n_positions=33, activation_function="relu",
         layer_norm_epsilon=1e-6, scale_attn_by_inverse_layer_idx=True, initializer_range=0.1,
         bos_token_id=1, eos_token_id=2),
]
GPT_CONFIGS = [
    dict(vocab_size=97, n_embd=30, n_layer=3, n_head=5, n_positions=40),
    dict(vocab_size=61, n_embd=36, n_layer=2, n_head=3, n_positions=33, afn="silu", layer_norm_epsilon=1e-6,
         initializer_range=0.1),
]
NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def _hf(cls, cfg_cls, cfg, path):
    return random_hf_model(cls, cfg_cls(**cfg, **NO_DROPOUT), path)


def _batch(vocab, B=3, T=11, left=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    for b, n in enumerate((T, T - 4, 3)[:B]):  # rows of different lengths
        if left:
            mask[b, :T - n] = 0
        else:
            mask[b, n:] = 0
    ids = ids * mask  # pads are id 0
    speakers = torch.randint(1, 3, (B, T), generator=g) * mask  # CDial-GPT style: speaker tokens are vocab ids
    return ids, speakers, mask


def _max_diff(a, b, mask):
    return (a - b).abs()[mask.bool()].max().item()


@pytest.mark.parametrize("cfg", GPT2_CONFIGS)
def test_gpt2_lm_parity_padded_and_round_trip(cfg, tmp_path):
    hf = _hf(transformers.GPT2LMHeadModel, transformers.GPT2Config, cfg, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf")
    assert ours.config.family == "gpt2"
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    ids, types, mask = _batch(cfg["vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        out = ours(ids, token_type_ids=types, attention_mask=mask).logits
    assert out.shape == ref.shape == (3, 11, cfg["vocab_size"])
    assert _max_diff(out, ref, mask) <= 1e-5
    plmkit.save_pretrained(ours, tmp_path / "ours")
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours").eval()
    assert (back.config.n_inner, back.config.eos_token_id) == (cfg.get("n_inner") or 4 * cfg["n_embd"], 2)
    with torch.no_grad():
        again = back(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert _max_diff(again, out, mask) <= 1e-5


def test_gpt2_left_padding_positions(tmp_path):
    """Left padding with positions counted from each row's first real token, as transformers' generate does."""
    cfg = GPT2_CONFIGS[0]
    hf = _hf(transformers.GPT2LMHeadModel, transformers.GPT2Config, cfg, tmp_path)
    ours = plmkit.from_pretrained(tmp_path)
    ids, _, mask = _batch(cfg["vocab_size"], left=True)
    pos = position_ids_from_mask(mask)
    assert pos[1].tolist() == [0] * 4 + list(range(7))
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        out = ours(ids, attention_mask=mask, position_ids=pos).logits
        assert _max_diff(out, ref, mask) <= 1e-5
        # identity: each left-padded row gives the logits of the same tokens run alone, unpadded
        for b in range(ids.shape[0]):
            real = mask[b].bool()
            alone = ours(ids[b:b + 1, real]).logits[0]
            assert (out[b, real] - alone).abs().max() <= 1e-5
    # without explicit positions both count 0..T-1 regardless of the mask (transformers' forward)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).logits
        out = ours(ids, attention_mask=mask).logits
    assert _max_diff(out, ref, mask) <= 1e-5


def test_gpt2_base_model_and_old_buffers(tmp_path):
    """A GPT2Model file (no 'transformer.' prefix) holding the causal-mask buffers older transformers saved."""
    cfg = GPT2_CONFIGS[1]
    hf = _hf(transformers.GPT2Model, transformers.GPT2Config, cfg, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    T = cfg["n_positions"]
    for i in range(cfg["n_layer"]):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, T, T))
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ours = plmkit.from_pretrained(tmp_path, with_lm=False)
    assert ours.lm_head is None
    assert sorted(ours.load_report.ignored) == sorted(n for n in state if ".attn.bias" in n or "masked_bias" in n)
    ids, _, mask = _batch(cfg["vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        out = ours(ids, attention_mask=mask)
    assert out.logits is None
    assert _max_diff(out.last_hidden_state, ref, mask) <= 1e-5


@pytest.mark.parametrize("cfg", GPT_CONFIGS)
def test_gpt_lm_parity_speaker_ids_and_round_trip(cfg, tmp_path):
    hf = _hf(transformers.OpenAIGPTLMHeadModel, transformers.OpenAIGPTConfig, cfg, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf")
    assert ours.config.family == "gpt" and ours.final_norm is None
    for left in (False, True):
        ids, speakers, mask = _batch(cfg["vocab_size"], left=left)
        with torch.no_grad():
            ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=speakers).logits
            out = ours(ids, token_type_ids=speakers, attention_mask=mask).logits
        assert _max_diff(out, ref, mask) <= 1e-5
    plmkit.save_pretrained(ours, tmp_path / "ours")
    back = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        again = back(input_ids=ids, attention_mask=mask, token_type_ids=speakers).logits
    assert _max_diff(again, out, mask) <= 1e-5


def test_gpt_is_causal_and_refuses_other_heads(tmp_path):
    cfg = GPT_CONFIGS[0]
    _hf(transformers.OpenAIGPTLMHeadModel, transformers.OpenAIGPTConfig, cfg, tmp_path)
    ours = plmkit.from_pretrained(tmp_path)
    ids, _, _ = _batch(cfg["vocab_size"], B=1)
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % cfg["vocab_size"]
    with torch.no_grad():
        a, b = ours(ids).logits, ours(changed).logits
    assert torch.equal(a[:, :6], b[:, :6]) and not torch.allclose(a[:, 6:], b[:, 6:])
    with pytest.raises(ValueError, match="with_mlm"):
        plmkit.from_pretrained(tmp_path, with_mlm=True)
    with pytest.raises(ValueError, match="application must be 'lm'"):
        plmkit.from_pretrained(tmp_path, application="unilm")


def test_gpt2_keep_tokens(tmp_path):
    cfg = GPT2_CONFIGS[0]
    hf = _hf(transformers.GPT2LMHeadModel, transformers.GPT2Config, cfg, tmp_path)
    keep = [0, 5, 7, 3, 50, 96]
    ours = plmkit.from_pretrained(tmp_path, keep_tokens=keep)
    assert ours.config.vocab_size == len(keep)
    ids = torch.tensor([[1, 2, 3, 4, 5]])  # new ids -> old ids 5, 7, 3, 50, 96
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor([[keep[i] for i in ids[0]]])).logits[..., keep]
        out = ours(ids).logits
    assert (out - ref).abs().max() <= 1e-5
