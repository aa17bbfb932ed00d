"""Optimizer groups, layer-wise decay, Lookahead, EMA and schedules against hand arithmetic."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from plmkit.training import (
    EMA,
    Lookahead,
    build_optimizer,
    default_layer_of,
    lambda_scheduler,
    piecewise_linear,
    warmup_cosine,
    warmup_linear,
)


class TinyStack(nn.Module):
    """Parameter names like our models: embeddings.*, blocks.{i}.*, then a head."""

    def __init__(self):
        super().__init__()
        self.embeddings = nn.ModuleDict({"token": nn.Embedding(5, 2)})
        self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
        self.head = nn.Linear(2, 3)


def _lr_and_decay(optimizer):
    out = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            out[id(p)] = (group["lr"], group["weight_decay"])
    return out


def test_default_layer_of_parses_our_names():
    assert default_layer_of("embeddings.token.weight") == 0
    assert default_layer_of("encoder.embeddings.norm.weight") == 0
    assert default_layer_of("blocks.0.attn.q.weight") == 1
    assert default_layer_of("encoder.blocks.11.ffn.up.bias") == 12
    assert default_layer_of("pooler.dense.weight") is None
    assert default_layer_of("myblocks.3.weight") is None  # not our block prefix


def test_layerwise_decay_and_weight_decay_groups_by_hand():
    model = TinyStack()
    opt = build_optimizer(model, lr=1.0, weight_decay=0.01, layerwise_decay=0.5)
    got = _lr_and_decay(opt)
    # top = 3 (embeddings 0, blocks 1 and 2, head 3): lr = 0.5 ** (3 - layer).
    expected = {
        "embeddings.token.weight": (0.125, 0.01),
        "blocks.0.weight": (0.25, 0.01),
        "blocks.0.bias": (0.25, 0.0),
        "blocks.1.weight": (0.5, 0.01),
        "blocks.1.bias": (0.5, 0.0),
        "head.weight": (1.0, 0.01),
        "head.bias": (1.0, 0.0),
    }
    names = dict(model.named_parameters())
    assert set(expected) == set(names)
    for name, (lr, wd) in expected.items():
        assert got[id(names[name])] == pytest.approx((lr, wd)), name


def test_adamw_first_step_by_hand():
    """One AdamW step: p -= lr * wd * p (2-D only), then p -= lr * g / (|g| + eps) (bias-corrected)."""
    torch.manual_seed(0)
    model = TinyStack()
    opt = build_optimizer(model, lr=0.1, weight_decay=0.5, layerwise_decay=0.5, eps=1e-8)
    names = dict(model.named_parameters())
    before = {n: p.detach().numpy().copy() for n, p in names.items()}
    grads = {n: np.random.default_rng(1).normal(size=p.shape).astype(np.float32) for n, p in names.items()}
    for n, p in names.items():
        p.grad = torch.tensor(grads[n])
    opt.step()
    lrs = {"embeddings": 0.1 * 0.125, "blocks.0": 0.1 * 0.25, "blocks.1": 0.1 * 0.5, "head": 0.1}
    for n, p in names.items():
        lr = next(v for k, v in lrs.items() if n.startswith(k))
        wd = 0.5 if before[n].ndim >= 2 else 0.0
        g = grads[n].astype(np.float64)
        # After one step m_hat = g and v_hat = g^2.
        expected = before[n] * (1 - lr * wd) - lr * g / (np.abs(g) + 1e-8)
        np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-5, atol=1e-7, err_msg=n)


def test_build_optimizer_rejects_bad_layers_and_decay():
    with pytest.raises(ValueError, match="layerwise_decay"):
        build_optimizer(TinyStack(), lr=1.0, layerwise_decay=1.5)
    with pytest.raises(ValueError, match=r"layer_of\('head.weight'\)"):
        build_optimizer(TinyStack(), lr=1.0, layerwise_decay=0.9,
                        layer_of=lambda n: -1 if n.startswith("head") else 0)


def test_lookahead_by_hand():
    """SGD lr 0.1 on 0.5 * w^2 (gradient w), Lookahead k=2, alpha=0.5, from w = 1."""
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD([w], lr=0.1), k=2, alpha=0.5)
    seen = []
    for _ in range(4):
        opt.zero_grad()
        (0.5 * w**2).sum().backward()
        opt.step()
        seen.append(w.item())
    # fast: 1 → 0.9 → 0.81; slow = 1 + 0.5 (0.81 - 1) = 0.905; fast: → 0.8145 → 0.73305;
    # slow = 0.905 + 0.5 (0.73305 - 0.905) = 0.819025.
    assert seen == pytest.approx([0.9, 0.905, 0.8145, 0.819025], abs=1e-12)


def test_lookahead_with_scheduler_and_state_round_trip():
    def make():
        w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        opt = Lookahead(torch.optim.SGD([w], lr=0.1, momentum=0.9), k=3, alpha=0.5)
        return w, opt, LambdaLR(opt, warmup_linear(2, 10))

    def run(w, opt, sched, steps):
        for _ in range(steps):
            opt.zero_grad()
            (w**2).sum().backward()
            opt.step()
            sched.step()

    w1, opt1, s1 = make()
    run(w1, opt1, s1, 7)
    w2, opt2, s2 = make()
    run(w2, opt2, s2, 4)
    state = (w2.detach().clone(), opt2.state_dict(), s2.state_dict())
    w3, opt3, s3 = make()
    with torch.no_grad():
        w3.copy_(state[0])
    opt3.load_state_dict(state[1])
    s3.load_state_dict(state[2])
    # The scheduler drives the inner optimizer's rate: warmup_linear(2, 10) at step 4 is 6/8.
    assert opt3.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 6 / 8)
    run(w3, opt3, s3, 3)
    assert torch.equal(w1, w3)


def test_ema_by_hand_and_apply_restore():
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema = EMA(lin, decay=0.9)
    for value in (2.0, 3.0):
        with torch.no_grad():
            lin.weight.fill_(value)
        ema.update()
    # 0.9 * 1 + 0.1 * 2 = 1.1; 0.9 * 1.1 + 0.1 * 3 = 1.29
    assert ema.shadow["weight"].item() == pytest.approx(1.29, abs=1e-6)
    ema.apply()
    assert lin.weight.item() == pytest.approx(1.29, abs=1e-6)
    with pytest.raises(RuntimeError, match="restore"):
        ema.update()
    ema.restore()
    assert lin.weight.item() == 3.0
    other = EMA(lin, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.num_updates == 2
    assert other.shadow["weight"].item() == pytest.approx(1.29, abs=1e-6)


def test_schedules_by_hand():
    lin = warmup_linear(10, 110)
    assert [lin(s) for s in (0, 5, 10, 60, 110, 200)] == pytest.approx([0, 0.5, 1, 0.5, 0, 0])
    cos = warmup_cosine(10, 110)
    assert [cos(s) for s in (0, 5, 10, 60, 110, 500)] == pytest.approx([0, 0.5, 1, 0.5, 0, 0])
    # A quarter of the way down: 0.5 * (1 + cos(pi / 4)).
    assert cos(35) == pytest.approx(0.5 * (1 + math.sqrt(0.5)))
    assert warmup_cosine(0, 100, min_ratio=0.1)(100) == pytest.approx(0.1)
    pw = piecewise_linear({1000: 1.0, 2000: 0.1})
    assert [pw(s) for s in (0, 500, 1000, 1500, 2000, 3000)] == pytest.approx([0, 0.5, 1, 0.55, 0.1, 0.1])
    # Without from_zero the value before the first point is the first value (bert4keras).
    assert piecewise_linear({10: 2.0, 20: 1.0}, from_zero=False)(3) == 2.0
    with pytest.raises(ValueError, match="total_steps"):
        warmup_linear(10, 5)


def test_schedule_drives_lambda_lr_and_pickles():
    import pickle

    w = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=2.0)
    sched = lambda_scheduler(opt, pickle.loads(pickle.dumps(piecewise_linear({4: 1.0}))))
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.0])


def test_layerwise_decay_gives_albert_s_shared_block_the_mean_of_its_depths_rates():
    """ALBERT applies one block at depths 1..3: it learns at the mean of those depths' rates, not the head's."""
    from plmkit import build_model
    from plmkit.config import ModelConfig

    config = ModelConfig(family="albert", vocab_size=50, hidden_size=32, num_layers=3, num_heads=2,
                         intermediate_size=48, max_position=64, embedding_size=16)
    model = build_model(config, with_pool=True, with_mlm=True)
    got = _lr_and_decay(build_optimizer(model, lr=2.0, weight_decay=0.01, layerwise_decay=0.5))
    # top = 4 (embeddings 0, the block at 1, 2 and 3, heads 4): rate 2 * 0.5 ** (4 - depth)
    shared = 2.0 * (0.5 ** 3 + 0.5 ** 2 + 0.5 ** 1) / 3  # = 0.58333...
    names = dict(model.named_parameters())
    assert any(n.startswith("blocks.block.") for n in names)
    for name, p in names.items():
        lr = 2.0 / 16 if name.startswith("embeddings.") else shared if name.startswith("blocks.block.") else 2.0
        assert got[id(p)] == pytest.approx((lr, 0.01 if p.dim() >= 2 else 0.0)), name
    # the same sizes with independent layers: blocks.{i} at depth i + 1, embeddings and heads as above
    unshared = build_model(ModelConfig(**{**config.__dict__, "family": "albert_unshared"}), with_pool=True)
    got = _lr_and_decay(build_optimizer(unshared, lr=2.0, layerwise_decay=0.5))
    for name, p in unshared.named_parameters():
        if name.startswith("blocks."):
            assert got[id(p)][0] == pytest.approx(2.0 * 0.5 ** (4 - (int(name.split(".")[1]) + 1))), name


def test_layer_of_may_name_several_depths():
    opt = build_optimizer(TinyStack(), lr=1.0, layerwise_decay=0.5,
                          layer_of=lambda n: (1, 2) if n.startswith("blocks.0") else default_layer_of(n))
    by_layer = {g["layer"]: g["lr"] for g in opt.param_groups}
    # top = 3: depth 0 -> 0.125, depth 2 -> 0.5, the head -> 1; depths (1, 2) -> mean(0.25, 0.5)
    assert by_layer == pytest.approx({0: 0.125, (1, 2): 0.375, 2: 0.5, 3: 1.0})
    with pytest.raises(ValueError, match=r"layer_of\('blocks.0.weight'\)"):
        build_optimizer(TinyStack(), lr=1.0, layerwise_decay=0.5,
                        layer_of=lambda n: () if n.startswith("blocks.0") else 0)
