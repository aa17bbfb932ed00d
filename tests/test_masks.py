"""Attention mask policies against hand-written matrices, and the UniLM property on a model."""
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
