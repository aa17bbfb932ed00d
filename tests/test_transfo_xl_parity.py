"""Transformer-XL against transformers 4.35's TransfoXLLMHeadModel (dropped in transformers 5), memories included,
plus identities that need no oracle (memory = the longer context; no gradient into memory).

The oracle runs in a subprocess whose PYTHONPATH puts transformers 4.35 first (it shares this
interpreter's torch): `.oracles/transformers435` in the repository, made by

    python tests/scripts/install_oracles.py

Without it the oracle tests are skipped with a reason that gives the install command.
"""

import pytest
import torch
from safetensors.torch import load_file, save_file

import plmkit
from conftest import ROOT, _INSTALLER
from oracles import OracleWorker
from plmkit.config import ConfigError
from plmkit.models import get_family

ORACLE_DIR = ROOT / _INSTALLER.TRANSFORMERS435

# A worker under transformers 4.35, started once per module: one JSON request per line.
# "make": build a TransfoXLLMHeadModel from a config with random non-zero biases and norms, save it;
# "load": load a directory plmkit wrote, strictly. Then run the segments in order, each after the
# memory the previous one returned (the first after `first_mems`: "empty" = zero-length memories,
# as the paper's code starts; "default" = transformers' own start, mem_len zero vectors).
ORACLE = r"""
import json, sys, traceback, warnings
warnings.filterwarnings("ignore")
try:
    import torch
    import transformers
    from safetensors.torch import load_file, save_file
    assert transformers.__version__.startswith("4.35"), "found transformers " + transformers.__version__
    transformers.TransfoXLLMHeadModel
except Exception as e:
    print("unavailable: " + repr(e), flush=True)
    sys.exit(0)
print("ready", flush=True)


def run(mode, case):
    cls = transformers.TransfoXLLMHeadModel
    if mode == "make":
        torch.manual_seed(case["seed"])
        model = cls(transformers.TransfoXLConfig(**case["config"])).eval()
        with torch.no_grad():  # random non-zero biases and norms so nothing hides behind zeros or ones
            for n, p in model.named_parameters():
                if n.endswith("bias") or "layer_norm" in n:
                    p.add_(torch.randn_like(p) * 0.1)
        model.save_pretrained(case["dir"], safe_serialization=True)
    model, info = cls.from_pretrained(case["dir"], output_loading_info=True)
    model.eval()
    tied = {"crit.out_layers.0.weight", "transformer.pos_emb.inv_freq"}  # tied to the token table; a buffer
    left = {k: sorted(set(v) - tied) for k, v in info.items() if k != "mismatched_keys"}
    assert not any(left.values()) and not info["mismatched_keys"], info
    x = load_file(case["inputs"])
    mems = None
    if case["first_mems"] == "empty":
        mems = [torch.zeros(0, x["seg0"].shape[0], model.config.d_model) for _ in range(model.config.n_layer)]
    out = {}
    with torch.no_grad():
        for s in range(case["segments"]):
            o = model(input_ids=x[f"seg{s}"], mems=mems)
            mems = o.mems
            out[f"scores{s}"] = o.prediction_scores.contiguous()
            for i, m in enumerate(mems):
                out[f"mems{s}_{i}"] = m.transpose(0, 1).contiguous()  # (B, M, D) as plmkit holds them
    save_file(out, case["out"])

"""  # + oracles.WORKER_LOOP


class Oracle(OracleWorker):
    """The transformers 4.35 worker process."""

    def __init__(self) -> None:
        super().__init__(ORACLE, ORACLE_DIR)


@pytest.fixture(scope="module")
def oracle():
    if not ORACLE_DIR.is_dir():
        pytest.skip(f"Transformer-XL oracle (transformers 4.35; 5 dropped TransfoXLLMHeadModel) not installed at "
                    f"{_INSTALLER.TRANSFORMERS435}: install it with `python tests/scripts/install_oracles.py`, which "
                    f"runs `{' '.join(_INSTALLER.pip_command(_INSTALLER.TRANSFORMERS435, _INSTALLER.REQUIREMENTS_435))}`"
                    " in the repository root")
    worker = Oracle()
    if worker.greeting != "ready":
        worker.close()
        pytest.skip(f"transformers 4.35 in {ORACLE_DIR} does not import here: {worker.greeting}")
    yield worker
    worker.close()


# TransfoXLConfig fields; plain softmax (cutoffs [], div_val 1); init_std 0.3 so that every term moves the
# log-probabilities well above the tolerance (at 0.02 they sit near uniform)
CONFIGS = {
    # same_length's window (distances < mem_len), clamp_len (2) below them, memory (4) shorter than a segment
    "windowed": dict(vocab_size=53, cutoffs=[], div_val=1, d_model=24, d_embed=24, n_head=3, d_head=8, d_inner=40,
                     n_layer=2, mem_len=4, clamp_len=2, same_length=True, dropout=0.0, dropatt=0.0,
                     layer_norm_epsilon=1e-5, init_std=0.3),
    # heads wider than d_model / n_head, memory (9) longer than a segment, no window: distances up to 15, clamped at 6
    "long_memory": dict(vocab_size=41, cutoffs=[], div_val=1, d_model=20, d_embed=20, n_head=4, d_head=7,
                        d_inner=33, n_layer=3, mem_len=9, clamp_len=6, same_length=False, dropout=0.0,
                        dropatt=0.0, layer_norm_epsilon=1e-6, init_std=0.3),
}
SEGMENTS = (6, 5, 7)  # token counts of three consecutive segments


def _segments(vocab: int, B: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"seg{s}": torch.randint(0, vocab, (B, n), generator=g) for s, n in enumerate(SEGMENTS)}


def _ours(model, x: dict[str, torch.Tensor], first_mems: str) -> dict[str, torch.Tensor]:
    c = model.config
    mems = None
    if first_mems == "default":  # transformers' start: mem_len zero vectors per layer
        mems = [torch.zeros(x["seg0"].shape[0], c.options.mem_len, c.hidden_size) for _ in range(c.num_layers)]
    out = {}
    with torch.no_grad():
        for s in range(len(SEGMENTS)):
            o = model(x[f"seg{s}"], mems=mems)
            mems = o.mems
            out[f"scores{s}"] = o.logits.log_softmax(-1)  # transformers returns log-probabilities
            out.update({f"mems{s}_{i}": m for i, m in enumerate(mems)})
    return out


def _compare(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], what: str) -> None:
    assert ours.keys() == theirs.keys(), what
    for k in ours:
        assert ours[k].shape == theirs[k].shape, (what, k)
        assert torch.allclose(ours[k], theirs[k], atol=2e-5, rtol=1e-4), (what, k, (ours[k] - theirs[k]).abs().max())


@pytest.mark.parametrize("first_mems", ["empty", "default"])
def test_loads_transformers_directories_and_matches_over_segments(oracle, tmp_path, first_mems):
    """transformers writes each model; plmkit loads it strictly; log-probabilities and memories agree over 3 segments."""
    cases = []
    for i, (name, config) in enumerate(CONFIGS.items()):
        d = tmp_path / name
        d.mkdir()
        save_file(_segments(config["vocab_size"], seed=i), str(d / "inputs.safetensors"))
        cases.append(dict(seed=i, config=config, dir=str(d), inputs=str(d / "inputs.safetensors"),
                          out=str(d / "out.safetensors"), segments=len(SEGMENTS), first_mems=first_mems))
    oracle("make", cases)
    for case in cases:
        model = plmkit.from_pretrained(case["dir"])
        assert model.config.family == "transfo_xl"
        report = model.load_report
        assert not report.missing and not report.unexpected and not report.skipped_heads, report.summary()
        _compare(_ours(model, load_file(case["inputs"]), first_mems), load_file(case["out"]), case["dir"])


def test_saved_directory_matches_in_transformers(oracle, tmp_path):
    """plmkit writes a random model; transformers loads it strictly and gives the same segments and memories."""
    torch.manual_seed(3)
    family = get_family("transfo_xl")
    # clamp_len 0: unclamped
    cfg = family.tiny().replace(initializer_range=0.3).with_options(same_length=True, clamp_len=0, mem_len=5)
    model = family.build(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias") or "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    out = plmkit.save_pretrained(model, tmp_path / "ours")
    x = _segments(cfg.vocab_size, seed=7)
    save_file(x, str(tmp_path / "inputs.safetensors"))
    oracle("load", [dict(dir=str(out), inputs=str(tmp_path / "inputs.safetensors"),
                         out=str(tmp_path / "out.safetensors"), segments=len(SEGMENTS), first_mems="empty")])
    _compare(_ours(model, x, "empty"), load_file(tmp_path / "out.safetensors"), "plmkit-written")


# ---- identities that need no oracle --------------------------------------------------------------------

def _tiny(**options):
    torch.manual_seed(0)
    family = get_family("transfo_xl")
    return family.build(family.tiny().with_options(**options))


def test_memory_equals_the_longer_context():
    """Causal layers: segment 2 after the memory of segment 1 (mem_len >= its length) is the tail of one run over both."""
    model = _tiny(mem_len=8, same_length=False, clamp_len=1000).eval()
    a, b = torch.randint(0, 50, (2, 8)), torch.randint(0, 50, (2, 5))
    with torch.no_grad():
        first = model(a)
        second = model(b, mems=first.mems)
        whole = model(torch.cat((a, b), dim=1))
        alone = model(b)
    assert torch.allclose(second.logits, whole.logits[:, 8:], atol=1e-5)
    assert not torch.allclose(alone.logits, second.logits, atol=1e-3)  # the memory is read


def test_memory_keeps_the_last_mem_len_layer_inputs_and_carries_no_gradient():
    """mems hold each layer's input over [memory; segment], cut to mem_len, detached (the paper's SG(·))."""
    model = _tiny(mem_len=5, same_length=False).train()
    a, b = torch.randint(0, 50, (2, 3)), torch.randint(0, 50, (2, 4))
    first = model(a, output_hidden_states=True)
    assert [m.shape for m in first.mems] == [(2, 3, 24)] * 2  # fewer tokens than mem_len: all of them
    assert all(not m.requires_grad for m in first.mems)
    second = model(b, mems=first.mems, output_hidden_states=True)
    for i, m in enumerate(second.mems):  # the last 5 of [3 remembered; 4 new] inputs of layer i
        expected = torch.cat((first.hidden_states[i], second.hidden_states[i]), dim=1)[:, -5:]
        assert torch.equal(m, expected.detach())
    second.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert first.logits.grad_fn is not None and all(m.grad is None for m in first.mems)


def test_config_refuses_the_adaptive_softmax_naming_the_field(tmp_path):
    family = get_family("transfo_xl")
    good = family.sources["hf"].write_config(family.tiny())
    for field, value in (("cutoffs", [20, 40]), ("div_val", 4), ("pre_lnorm", True), ("untie_r", False)):
        with pytest.raises(ConfigError, match=field):
            family.sources["hf"].read_config({**good, field: value}, "config.json")
    model = family.build(family.tiny())
    with pytest.raises(ValueError, match=r"mems\[0\]"):
        model(torch.zeros(2, 3, dtype=torch.long), mems=[torch.zeros(1, 4, 24), torch.zeros(1, 4, 24)])


def test_generate_says_what_to_do_instead():
    """plmkit.generate has no decoding path for Transformer-XL: the error says so, not that application= is wrong."""
    model = _tiny(mem_len=8, same_length=False, clamp_len=1000).eval()
    with pytest.raises(ValueError, match="segment by segment"):
        plmkit.generate(model, torch.randint(0, 50, (1, 4)), max_new_tokens=2)
