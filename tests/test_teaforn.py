"""TeaForN: N = 1 is plain teacher forcing exactly (loss and gradients); the nested steps' soft inputs equal a hand
computation of the expected embeddings with the model's own token table; the step losses combine as documented."""
import pytest
import torch
import torch.nn.functional as F

from plmkit.models import build_model, get_family
from plmkit.recipes.seq2seq import Pairs, Seq2SeqConfig, _loss_fn, seq2seq_loss
from plmkit.tokenizers import WordPieceTokenizer
from plmkit.training.teaforn import teaforn_loss

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"零一二三四五六七八九十百"]
ROWS = [("一二三", "三二一"), ("四五六七八九", "九")]


def _unilm():
    torch.manual_seed(0)
    cfg = get_family("bert").tiny().replace(vocab_size=len(VOCAB), dropout=0.0, attention_dropout=0.0)
    model = build_model(cfg, with_mlm=True, application="unilm").eval()
    return model, Pairs(WordPieceTokenizer(VOCAB), "unilm", 8, 6, None, 0)(ROWS)


def _t5():
    torch.manual_seed(0)
    family = get_family("t5.1.1")
    model = family.build(family.tiny().replace(vocab_size=len(VOCAB), dropout=0.0)).eval()
    return model, Pairs(WordPieceTokenizer(VOCAB), "encoder-decoder", 8, 6, 2, 0)(ROWS)


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("build", [_unilm, _t5], ids=["unilm", "encoder-decoder"])
def test_n1_is_plain_teacher_forcing_exactly(build):
    model, batch = build()
    plain, count = seq2seq_loss(model, batch)
    plain_grads = _grads(model, plain)
    tea, tea_count = teaforn_loss(model, batch, 1)
    tea_grads = _grads(model, tea)
    assert torch.equal(tea, plain) and torch.equal(tea_count, count)
    assert plain_grads.keys() == tea_grads.keys()
    assert all(torch.equal(plain_grads[k], tea_grads[k]) for k in plain_grads)
    assert _loss_fn(Seq2SeqConfig()) is seq2seq_loss


def _hand_expected(logits: torch.Tensor, table: torch.Tensor, b: int, t: int) -> torch.Tensor:
    """sum_v p_v · E[v] with p = softmax(logits[b, t - 1]), summed row by row in float64."""
    row = logits[b, t - 1].double()
    p = torch.exp(row - row.max())
    p = p / p.sum()
    out = torch.zeros(table.shape[1], dtype=torch.float64)
    for v in range(table.shape[0]):
        out += p[v] * table[v].double()
    return out


def test_unilm_nested_inputs_equal_the_hand_computation():
    model, batch = _unilm()
    with torch.no_grad():
        loss, count, steps = teaforn_loss(model, batch, 2, return_steps=True)
        plain = model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                      attention_mask=batch["attention_mask"]).logits
    table = model.embeddings.token.weight.detach()
    (first_in, first), (soft, second) = steps
    assert first_in is None and torch.allclose(first, plain)
    # row 0 is [CLS] 一 二 三 [SEP] | 三 二 一 [SEP] [PAD]: positions 5..8 (segment 1) read step 1's predictions
    targets = {0: range(5, 9), 1: range(8, 10)}
    inputs = table[batch["input_ids"]].clone()  # (B, T, H): the true tokens' rows
    for b, positions in targets.items():
        for t in positions:
            hand = _hand_expected(plain, table, b, t)
            assert torch.allclose(soft[b, t].double(), hand, atol=1e-5)
            inputs[b, t] = hand.float()
    # step 2 is the model run on those inputs: the same logits through the model's own inputs_embeds argument
    with torch.no_grad():
        again = model(batch["input_ids"], token_type_ids=batch["token_type_ids"], attention_mask=batch["attention_mask"],
                      inputs_embeds=inputs).logits
    assert torch.allclose(second, again, atol=1e-5)
    assert not torch.allclose(second, plain, atol=1e-3)  # the soft inputs did change something
    # the loss: the mean of the two steps' next-token cross-entropies over segment 1
    hand = 0.0
    for logits in (plain, second):
        for b, positions in targets.items():
            for t in positions:
                hand -= logits[b, t - 1].log_softmax(-1)[batch["input_ids"][b, t]].item() / 2
    assert count.item() == 6 and loss.item() == pytest.approx(hand, rel=1e-5)


def test_encoder_decoder_nested_inputs_equal_the_hand_computation():
    model, batch = _t5()
    gamma = 0.5
    with torch.no_grad():
        loss, count, steps = teaforn_loss(model, batch, 3, gamma, return_steps=True)
        plain = model(batch["input_ids"], decoder_input_ids=batch["decoder_input_ids"],
                      attention_mask=batch["attention_mask"],
                      decoder_attention_mask=batch["decoder_attention_mask"]).logits
    table = model.embeddings.token.weight.detach()
    lengths = batch["decoder_attention_mask"].sum(1).tolist()  # [start] 三 二 一 and [start] 九
    assert lengths == [4, 2]
    for k in (1, 2):  # step k + 1 reads step k's predictions, at every decoder position but the start
        previous = steps[k - 1][1]
        soft = steps[k][0]
        for b, n in enumerate(lengths):
            for t in range(1, n):
                assert torch.allclose(soft[b, t].double(), _hand_expected(previous, table, b, t), atol=1e-5)
    assert torch.allclose(steps[0][1], plain)
    labels = batch["labels"]
    per_step = [F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum").item()
                for _, logits in steps]
    assert per_step[0] != pytest.approx(per_step[1])
    assert loss.item() == pytest.approx((per_step[0] + 0.5 * per_step[1] + 0.25 * per_step[2]) / 1.75, rel=1e-5)
    assert count.item() == 6  # 三 二 一 [SEP] and 九 [SEP]


def test_bad_settings_fail_clearly():
    model, batch = _t5()
    with pytest.raises(ValueError, match="N >= 1"):
        teaforn_loss(model, batch, 0)
    with pytest.raises(ValueError, match="teaforn"):
        Seq2SeqConfig(teaforn=0)
    with pytest.raises(ValueError, match="teaforn_gamma"):
        Seq2SeqConfig(teaforn=2, teaforn_gamma=0)
