"""Attention mask policies against hand-written matrices, and the UniLM property on a model."""
import pytest
import torch

from plmkit.config import ModelConfig
from plmkit.models import build_model
from plmkit.modules import masks


def test_unilm_mask_by_hand():
    seg = torch.tensor([[0, 0, 0, 1, 1]])
    expected = torch.tensor([
        [1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(masks.unilm(seg)[0, 0], expected)


def test_lm_mask_with_padding_by_hand():
    ids = torch.zeros(1, 4, dtype=torch.long)
    am = torch.tensor([[1, 1, 1, 0]])
    expected = torch.tensor([
        [1, 0, 0, 0],
        [1, 1, 0, 0],
        [1, 1, 1, 0],
        [1, 1, 1, 0],
    ], dtype=torch.bool)
    assert torch.equal(masks.build("lm", ids, None, am)[0, 0], expected)


def test_unilm_model_information_flow():
    """Source positions never see the target; target position t sees the source and targets <= t."""
    cfg = ModelConfig(family="bert", vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=20)
    model = build_model(cfg, application="unilm").eval()
    ids = torch.randint(1, 30, (1, 8))
    seg = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 30  # alter target position 6
    with torch.no_grad():
        a = model(ids, token_type_ids=seg).last_hidden_state
        b = model(changed, token_type_ids=seg).last_hidden_state
    diff = (a - b).abs().amax(-1)[0]
    assert torch.all(diff[:6] == 0)  # the source and earlier targets are untouched
    assert torch.all(diff[6:] > 0)  # position 6 itself and later targets see it
    changed_src = ids.clone()
    changed_src[0, 1] = (ids[0, 1] + 1) % 30
    with torch.no_grad():
        c = model(changed_src, token_type_ids=seg).last_hidden_state
    assert torch.all((a - c).abs().amax(-1)[0] > 0)  # everyone sees the source


@pytest.mark.parametrize("policy", ["encoder", "lm", "unilm"])
def test_stepwise_masks_are_rows_of_the_whole_mask(policy):
    """One definition for cached and uncached attention: feeding the tokens in chunks, each chunk's
    mask (its queries over every key so far) equals those rows of the mask of the whole sequence."""
    from plmkit.modules import masks

    segments = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])
    ids = torch.ones_like(segments)
    pad = torch.tensor([[1] * 7, [0, 1, 1, 1, 1, 1, 1]])
    whole = masks.build(policy, ids, segments, pad)
    whole = (torch.ones(2, 1, 7, 7, dtype=torch.bool) if whole is None else whole).expand(2, 1, 7, 7)
    state, past = {}, 0
    for chunk in ((0, 3), (3, 4), (4, 7)):  # the source, then one token, then three
        a, b = chunk
        step = masks.build(policy, ids[:, a:b], segments[:, a:b], pad[:, :b], past=past, state=state)
        step = torch.ones(2, 1, b - a, b, dtype=torch.bool) if step is None else step.expand(2, 1, b - a, b)
        assert torch.equal(step, whole[:, :, a:b, :b]), chunk
        past = b
