"""bf16 and int8 inference stay close to fp32; the oneDNN linear follows the hardware choice."""
import pytest
import torch

import plmkit
from plmkit import hardware
from plmkit.config import ModelConfig
from plmkit.models import build_model
from plmkit.modules import linear as linear_module
from plmkit.quantize import Int8Linear, quantize_dynamic


def _tiny(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(family="bert", vocab_size=120, hidden_size=64, num_layers=2, num_heads=4,
                         intermediate_size=128, max_position=64, type_vocab_size=2)
    model = build_model(config, with_pool=True, num_labels=3).eval()
    model.config.labels = ["a", "b", "c"]
    plmkit.save_pretrained(model, tmp_path / "m")
    return tmp_path / "m"


def _inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (4, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[2:, 13:] = 0
    return ids, mask


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a.float().flatten(1), b.float().flatten(1), dim=-1).min().item()


@pytest.mark.parametrize("precision,tolerance", [("bf16", 0.05), ("int8", 0.05)])
def test_low_precision_inference_stays_close_to_fp32(tmp_path, precision, tolerance):
    """Stated tolerance: max abs difference of the final hidden states <= 0.05 (they are LayerNorm
    outputs of scale ~1), cosine >= 0.999, and the same argmax class for every row."""
    path = _tiny(tmp_path)
    ids, mask = _inputs()
    ref = plmkit.from_pretrained(path)
    low = plmkit.from_pretrained(path, **plmkit.pretrained.inference_options(precision))
    with torch.no_grad():
        a = ref(ids, attention_mask=mask)
        b = low(ids, attention_mask=mask)
    real = mask.bool()
    diff = (a.last_hidden_state - b.last_hidden_state.float())[real].abs().max().item()
    assert diff <= tolerance
    assert _cos(a.last_hidden_state[real], b.last_hidden_state[real]) >= 0.999
    assert torch.equal(a.label_logits.argmax(-1), b.label_logits.float().argmax(-1))
    if precision == "int8":
        assert sum(isinstance(m, Int8Linear) for m in low.modules()) == 2 * 4 + 2  # blocks, pooler, classifier
        with pytest.raises(ValueError, match="quantised for inference"):
            plmkit.save_pretrained(low, tmp_path / "again")
    else:
        assert b.last_hidden_state.dtype == torch.bfloat16


def test_int8_linear_matches_a_hand_quantised_product():
    """The int8 product equals the product of the dequantised int8 weight with the input,
    up to the input's own 8-bit rounding (per tensor, one step = range / 255)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 24)
    q = Int8Linear(lin, reduce_range=False)
    x = torch.randn(5, 48)
    scale = lin.weight.abs().amax(1, keepdim=True) / 127
    w8 = torch.round(lin.weight / scale).clamp(-127, 127) * scale  # what the int8 weight holds
    expected = x @ w8.T + lin.bias
    step = (x.max() - x.min()).item() / 255
    bound = step / 2 * w8.abs().sum(1).max().item() + 1e-5  # worst case of the input rounding
    assert (q(x) - expected).abs().max().item() <= bound
    assert (q(x) - lin(x)).abs().max().item() > 0  # it really is a different product


def test_quantize_dynamic_refuses_a_model_without_linears():
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize_dynamic(torch.nn.Sequential(torch.nn.ReLU()))


def test_onednn_linear_is_raced_per_shape_class_and_the_winner_kept(monkeypatch):
    if linear_module._ONEDNN is None:
        pytest.skip("this torch has no oneDNN linear")
    calls = []
    monkeypatch.setattr(linear_module, "_ONEDNN", lambda *a: calls.append("onednn") or torch.ops.mkldnn._linear_pointwise(*a))
    linear_module.set_fast_cpu_linear(True)
    try:
        lin = linear_module.Linear(256, 512)
        # a machine where oneDNN is faster for 64 rows and slower for 512
        times = iter([1.0, 2.0, 2.0, 1.0])
        monkeypatch.setattr(linear_module, "_best_of", lambda fn: next(times))
        with torch.no_grad():
            small, large = torch.randn(64, 256), torch.randn(512, 256)
            for x in (small, large, small, large):  # the second time each class is not raced again
                assert torch.allclose(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias), atol=1e-5)
        assert list(linear_module.race_results().values()) == [True, False]
        # oneDNN ran: one warm-up per raced class (2), and the two products of the class it won (2)
        assert len([c for c in calls if c == "onednn"]) == 4
        linear_module.set_fast_cpu_linear(False)
        calls.clear()
        with torch.no_grad():
            lin(small)
        assert calls == []  # switched off: always torch's default
    finally:
        linear_module.set_fast_cpu_linear(None)


def test_hardware_report_names_the_choices(monkeypatch):
    zen3 = hardware.Hardware(cpu_model="AMD EPYC 7763", vendor="AuthenticAMD", flags=frozenset({"avx2"}))
    r = hardware.report(zen3, "cpu")
    assert r["precision_auto"] == "fp32" and "emulated" in r["precision_why"] and r["isa_flags"] == "avx2"


def test_linear_follows_bf16_autocast():
    """Validation inside a bf16 training run runs under autocast: the layers must compute in bf16
    there, not take the fp32 oneDNN path (which autocast does not know)."""
    linear_module.set_fast_cpu_linear(True)
    try:
        lin = linear_module.Linear(256, 512)
        x = torch.randn(64, 256)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert lin(x).dtype == torch.bfloat16
            assert lin.forward_act(x, "gelu").dtype == torch.bfloat16
        with torch.no_grad():
            assert lin(x).dtype == torch.float32
    finally:
        linear_module.set_fast_cpu_linear(None)


@pytest.mark.parametrize("kind", ["gpt2", "t5.1.0", "mt5.1.1"])
def test_int8_generators_keep_their_heads_and_stay_close(tmp_path, kind):
    """int8 covers the output heads (tied to the token table, or scaled as T5's): logits stay close to
    fp32 (cosine >= 0.99 per position) and decoding runs; the scale of T5 heads is kept."""
    import transformers

    from plmkit.generation import generate
    from plmkit.quantize import Int8Head

    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=97, n_embd=64, n_layer=2, n_head=4, n_positions=64)
        transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(tmp_path)
    else:
        fields = dict(feed_forward_proj="relu") if kind == "t5.1.0" else dict(feed_forward_proj="gated-gelu",
                                                                               tie_word_embeddings=False)
        cls = transformers.T5ForConditionalGeneration if kind == "t5.1.0" else transformers.MT5ForConditionalGeneration
        cfg = (transformers.T5Config if kind == "t5.1.0" else transformers.MT5Config)(
            vocab_size=97, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4, decoder_start_token_id=0,
            pad_token_id=0, eos_token_id=1, **fields)
        hf = cls(cfg).eval()
        if kind == "mt5.1.1":  # transformers 5 ties by default; give the untied head its own weights
            with torch.no_grad():
                hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.shared.weight) * 0.5)
            hf.config.tie_word_embeddings = False
        hf.save_pretrained(tmp_path)
    ref = plmkit.from_pretrained(tmp_path)
    q = plmkit.from_pretrained(tmp_path, quantize="int8")
    ids = torch.randint(3, 97, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        if kind == "gpt2":
            a, b = ref(ids).logits, q(ids).logits
        else:
            dec = torch.zeros(2, 4, dtype=torch.long)
            a, b = ref(ids, decoder_input_ids=dec).logits, q(ids, decoder_input_ids=dec).logits
    assert torch.nn.functional.cosine_similarity(a, b, dim=-1).min() >= 0.99
    heads = [m for m in q.modules() if isinstance(m, Int8Head)]
    assert len(heads) == 1  # after a forward (T5.1.0 quantises the table it is handed on its first call)
    out = generate(q, ids, max_new_tokens=5, eos_token_id=())
    assert out.shape[0] == 2
