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
