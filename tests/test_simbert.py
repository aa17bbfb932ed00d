"""The SimBERT / RoFormer-Sim recipe at tiny size: batches, noise, losses, exact chunking, training, gen_synonyms."""
import random

import pytest
import torch
import torch.nn.functional as F

from plmkit import save_pretrained
from plmkit.config import ModelConfig
from plmkit.models import build_model
from plmkit.recipes.simbert import (
    SimBertConfig,
    SupervisedSimilarityHead,
    build_simbert,
    distillation_loss,
    gen_synonyms,
    load_simbert,
    pair_batch,
    seq2seq_loss_sum,
    simbert_step,
    source_noise,
    teacher_from,
    train_simbert,
)
from plmkit.sentence import encode_sentences
from plmkit.similarity.retrieval import retrieval_metrics
from plmkit.tokenizers import WordPieceTokenizer

CHARS = [chr(0x4E00 + i) for i in range(30)]  # CJK characters: one token each
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + CHARS


def S(*indices):  # a text of CHARS[i] for each index
    return "".join(CHARS[i] for i in indices)


def _cipher(a):  # the partner of a sentence: every character shifted by 7 (no characters in common)
    return "".join(CHARS[(CHARS.index(c) + 7) % 30] for c in a)


def _pairs(n=64, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = "".join(rng.choice(CHARS) for _ in range(rng.randint(4, 8)))
        out.append((a, _cipher(a)))
    return out


def _config(dropout=0.0):
    return ModelConfig(family="roformer", vocab_size=len(VOCAB), hidden_size=32, num_layers=2, num_heads=4,
                       intermediate_size=64, max_position=64, dropout=dropout, attention_dropout=dropout,
                       initializer_range=0.2)


@pytest.fixture
def tok():
    return WordPieceTokenizer(VOCAB)


def test_pair_batch_rows_and_seq2seq_loss_by_hand(tok):
    batch = pair_batch(tok, [(S(1, 2), S(3)), (S(4), S(5, 6, 7))], max_length=None)
    ids, seg = batch["input_ids"], batch["token_type_ids"]
    assert batch["sources"] == [S(1, 2), S(3), S(4), S(5, 6, 7)]
    assert tok.decode(ids[1]) == S(3, 1, 2) and seg[1].tolist()[:5] == [0, 0, 0, 1, 1]  # row 1 is (b, a)
    logits = torch.randn(*ids.shape, len(VOCAB))
    total, count = seq2seq_loss_sum(logits, ids, seg, batch["attention_mask"])
    expected, n = 0.0, 0
    for b in range(len(ids)):
        for t in range(1, ids.shape[1]):
            if seg[b, t] == 1 and batch["attention_mask"][b, t] == 1:  # segment-1 tokens incl. the last [SEP]
                expected += -torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]].item()
                n += 1
    assert count.item() == n == 2 + 3 + 4 + 2  # each row's second text and its [SEP]
    assert total.item() == pytest.approx(expected, rel=1e-6)


def test_source_noise_masks_whole_words_of_the_source_only(tok):
    pairs = [(S(1, 2, 3, 4, 5, 6), S(7, 8, 9, 10)), (S(11, 12, 13, 14, 15, 16), S(17, 18, 19, 20))] * 32
    batch = pair_batch(tok, pairs, max_length=None, offsets=True)
    words = lambda text: [text[i:i + 2] for i in range(0, len(text), 2)]  # noqa: E731 (two-character words)
    noisy = source_noise(batch, tok, prob=0.5, rows=0.5, segment=words, generator=torch.Generator().manual_seed(0))
    changed = noisy != batch["input_ids"]
    assert changed.any()
    assert not (changed & (batch["token_type_ids"] == 1)).any()  # targets untouched
    assert not changed[:, 0].any()  # [CLS] untouched
    picked_rows = changed.any(1)
    assert 0 < picked_rows.sum() < len(pairs) * 2
    # 80% of picked tokens become [MASK]; a word's two characters are picked together
    masked = noisy == tok.mask_token_id
    sources = torch.arange(len(noisy)) % 2 == 0  # rows whose source is the six-character text
    word_starts = [1, 3, 5]
    both = sum(int((masked[sources, t] & masked[sources, t + 1]).sum()) for t in word_starts)
    # word-straddling pairs (positions 2-3, 4-5) are picked independently: both masked far more rarely
    straddling = sum(int((masked[sources, t] & masked[sources, t + 1]).sum()) for t in (2, 4))
    assert both > straddling


def test_chunked_step_equals_whole_batch_step(tok):
    torch.manual_seed(0)
    model = build_simbert(_config(dropout=0.0)).train()
    batch = pair_batch(tok, _pairs(6), max_length=None)
    teacher = torch.randn(12, 5)
    grads = []
    for chunks in (1, 3):
        model.zero_grad()
        rec = simbert_step(model, batch, SimBertConfig(chunks=chunks, precision="fp32"), teacher_vectors=teacher)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        if chunks == 1:
            whole = rec
            assert rec["distill"] > 0 and rec["seq2seq"] > 0 and rec["similarity"] > 0
        else:
            assert rec["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    for n in grads[0]:
        assert (grads[0][n] - grads[1][n]).abs().max() <= 1e-6 * grads[0][n].abs().max().clamp(min=1e-12), n


def test_distillation_loss_by_hand():
    s, t = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    # student cosines [[1, 0], [0, 1]], teacher all ones: two off-diagonal squared errors of 1 over 4 entries
    assert distillation_loss(s, t, weight=100.0).item() == pytest.approx(50.0)


def test_supervised_head_masks_other_tasks():
    head = SupervisedSimilarityHead(hidden_size=4, num_tasks=3, num_labels=2)
    u, v = torch.randn(5, 4), torch.randn(5, 4)
    tasks, labels = torch.tensor([0, 2, 1, 2, 0]), torch.tensor([1, 0, 1, 1, 0])
    logits = head(u, v, tasks)
    assert torch.isinf(logits).sum() == 5 * 4
    loss = head.loss(logits, tasks, labels)
    feats = torch.cat([u, v, (u - v).abs()], -1)
    w = head.dense.weight.detach()  # (6, 12): rows 2t, 2t+1 belong to task t
    own = torch.stack([feats[i] @ w[2 * tasks[i]:2 * tasks[i] + 2].T for i in range(5)])  # (5, 2)
    assert loss.item() == pytest.approx(F.cross_entropy(own, labels).item(), rel=1e-6)
    loss.backward()
    assert head.dense.weight.grad[2:4].abs().sum() > 0  # task 1 appears once
    head.zero_grad()
    head.loss(head(u[:1], v[:1], tasks[:1]), tasks[:1], labels[:1]).backward()
    assert head.dense.weight.grad[2:].abs().sum() == 0  # a task-0 row leaves the other tasks' weights alone


def test_trains_end_to_end_and_round_trips(tmp_path, tok):
    pairs = _pairs()
    torch.manual_seed(0)
    model = build_simbert(_config())

    def metrics():
        a = encode_sentences(model, tok, [p[0] for p in pairs], pooling="pooler_linear")
        b = encode_sentences(model, tok, [p[1] for p in pairs], pooling="pooler_linear")
        return retrieval_metrics(a, b, list(range(len(pairs))))

    before = metrics()
    history = train_simbert(model, tok, pairs, SimBertConfig(batch_size=16, steps=140, lr=1e-3, max_length=24))
    after = metrics()
    first = lambda key: sum(r[key] for r in history[:5]) / 5  # noqa: E731
    last = lambda key: sum(r[key] for r in history[-10:]) / 10  # noqa: E731
    assert last("similarity") < 0.3 * first("similarity")
    assert last("seq2seq") < first("seq2seq") - 0.5
    assert before["top1"] < 0.1 and after["top1"] > 0.8  # chance is 1/64; the partners share no character

    save_pretrained(model, tmp_path / "sim")
    back = load_simbert(tmp_path / "sim")
    texts = [p[0] for p in pairs[:5]]
    assert torch.allclose(encode_sentences(back, tok, texts, pooling="pooler_linear"),
                          encode_sentences(model, tok, texts, pooling="pooler_linear"), atol=1e-6)


def test_noise_and_teacher_options_run(tok):
    torch.manual_seed(0)
    teacher_model = build_simbert(_config())
    student = build_simbert(_config(dropout=0.1))
    history = train_simbert(student, tok, _pairs(16), SimBertConfig(batch_size=4, steps=3, lr=1e-3, noise_prob=0.3,
                                                                    chunks=2),
                            teacher=teacher_from(teacher_model, tok), segment=list)
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    with pytest.raises(ValueError, match="application='unilm'"):
        train_simbert(build_model(_config(), with_mlm=True, with_pool=True), tok, _pairs(4))


def test_gen_synonyms_ranks_and_deduplicates(tok):
    torch.manual_seed(0)
    model = build_simbert(_config())
    text = S(1, 2, 3, 4)
    sep = tok.sep_token_id
    ids = lambda s: tok.encode(s)[0][1:-1]  # noqa: E731 (content ids of a text)
    samples = [ids(S(1, 2, 3, 5)) + [sep], ids(S(7, 8)) + [sep, 9, 9], ids(text) + [sep], ids(S(1, 2, 3, 5)) + [sep],
               [sep], ids(S(9, 10, 11)) + [sep], ids(S(7, 8))]  # duplicates, the input itself, an empty one, no [SEP]
    calls = {}

    def sampler(model_, token_ids, segment_ids, *, n, top_p, max_new_tokens, end_id, generator):
        calls.update(n=n, top_p=top_p, end_id=end_id, token_ids=token_ids, segment_ids=segment_ids)
        return samples

    out = gen_synonyms(model, tok, text, n=7, k=10, top_p=0.8, sampler=sampler)
    assert calls["n"] == 7 and calls["top_p"] == 0.8 and calls["end_id"] == sep
    assert calls["token_ids"] == tok.encode(text)[0] and set(calls["segment_ids"]) == {0}
    assert sorted(out) == sorted([S(1, 2, 3, 5), S(7, 8), S(9, 10, 11)])
    # ranked by cosine to the input, each vector computed on its own
    def vec(s):
        return encode_sentences(model, tok, [s], pooling="pooler_linear")[0]
    cos = {c: float(vec(c) @ vec(text)) for c in out}
    assert [cos[c] for c in out] == sorted(cos.values(), reverse=True)
    assert gen_synonyms(model, tok, text, k=2, sampler=sampler) == out[:2]


def test_gen_synonyms_with_plmkit_generate(tok):
    generation = pytest.importorskip("plmkit.generation", reason="plmkit.generation (issue 5) has not landed yet")
    if not hasattr(generation, "generate"):
        pytest.skip("plmkit.generation.generate (issue 5) has not landed yet")
    torch.manual_seed(0)
    model = build_simbert(_config()).eval()
    text, sep = S(1, 2, 3, 4), tok.sep_token_id
    ids, segments = tok.encode(text)
    # the same draws straight from generate (UniLM rows hold the target tokens only)
    rows = generation.generate(model, torch.tensor([ids]), token_type_ids=torch.tensor([segments]), max_new_tokens=6,
                               do_sample=True, top_p=0.9, num_return_sequences=12, eos_token_id=sep,
                               generator=torch.Generator().manual_seed(0))
    expected = set()
    for row in rows.tolist():
        row = row[:row.index(sep)] if sep in row else row
        expected.add(tok.decode(row).strip())
    expected -= {"", text}
    out = gen_synonyms(model, tok, text, n=12, k=100, top_p=0.9, max_new_tokens=6,
                       generator=torch.Generator().manual_seed(0))
    assert len(out) == len(set(out)) and set(out) == expected and len(expected) > 3
