"""Task heads and decoding against hand-computed cases and exhaustive enumeration."""
import itertools
import math
import random

import pytest
import torch

from plmkit.losses import multilabel_categorical_crossentropy
from plmkit.tasks.cloze import ChidBlank, assign_one_to_one, chid_inputs
from plmkit.tasks.crf import CRF
from plmkit.tasks.global_pointer import NEG, GlobalPointer, decode_spans, span_targets
from plmkit.tasks.mrc import MrcExample, WindowAnswer, answer_tokens, cmrc_em, cmrc_f1, cmrc_scores, make_windows, \
    merge_answers
from plmkit.tasks.ner import (chars_to_tokens, decode_bio, encode_bio, entity_f1, read_char_tagged, tags_to_spans,
                              tokens_to_chars)
from plmkit.tokenizers import WordPieceTokenizer


# ---- CRF ------------------------------------------------------------------------------------

def _crf(trans, start, end):
    crf = CRF(len(start))
    with torch.no_grad():
        crf.transitions.copy_(torch.tensor(trans))
        crf.start.copy_(torch.tensor(start))
        crf.end.copy_(torch.tensor(end))
    return crf


def test_crf_two_steps_by_hand():
    # score(y0, y1) = start[y0] + e0[y0] + trans[y0, y1] + e1[y1] + end[y1]
    #   (0,0) 0.2+1+0.5+0+0 = 1.7   (0,1) 0.2+1-1+2+0.3 = 2.5   (1,0) 0   (1,1) 0+0+1+2+0.3 = 3.3
    crf = _crf([[0.5, -1.0], [0.0, 1.0]], [0.2, 0.0], [0.0, 0.3])
    emissions = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    log_z = math.log(math.exp(1.7) + math.exp(2.5) + math.exp(0.0) + math.exp(3.3))
    nll = crf(emissions, torch.tensor([[0, 1]]))
    assert nll.item() == pytest.approx(log_z - 2.5, abs=1e-6)
    assert crf.decode(emissions) == [[1, 1]]
    # the same emissions cut to one step by the mask: score(y) = start[y] + e0[y] + end[y] = 1.2 or 0.3
    mask = torch.tensor([[1, 0]])
    assert crf(emissions, torch.tensor([[1, 0]]), mask).item() == pytest.approx(
        math.log(math.exp(1.2) + math.exp(0.3)) - 0.3, abs=1e-6)
    assert crf.decode(emissions, mask) == [[0]]


def test_viterbi_is_not_greedy():
    # per-step argmax says 0, 1, 1, but switching tags costs 5: staying on 1 wins (0+1+1.5 = 2.5 > 2)
    crf = _crf([[0.0, -5.0], [-5.0, 0.0]], [0.0, 0.0], [0.0, 0.0])
    emissions = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [0.0, 1.5]]])
    assert crf.decode(emissions) == [[1, 1, 1]]


def _path_score(e, y, trans, start, end):
    s = start[y[0]] + e[0][y[0]] + end[y[-1]]
    for t in range(1, len(y)):
        s += trans[y[t - 1]][y[t]] + e[t][y[t]]
    return s


def test_crf_matches_enumeration_of_all_paths():
    rng = random.Random(0)
    K, T = 3, 4
    trans = [[rng.uniform(-2, 2) for _ in range(K)] for _ in range(K)]
    start, end = [rng.uniform(-1, 1) for _ in range(K)], [rng.uniform(-1, 1) for _ in range(K)]
    crf = _crf(trans, start, end)
    lengths = [4, 2, 1, 3]
    e = [[[rng.uniform(-3, 3) for _ in range(K)] for _ in range(T)] for _ in lengths]
    mask = torch.tensor([[1] * n + [0] * (T - n) for n in lengths])
    tags = [[rng.randrange(K) for _ in range(T)] for _ in lengths]
    nll = crf(torch.tensor(e), torch.tensor(tags), mask)
    paths = crf.decode(torch.tensor(e), mask)
    for b, n in enumerate(lengths):
        scores = {y: _path_score(e[b][:n], y, trans, start, end) for y in itertools.product(range(K), repeat=n)}
        log_z = math.log(sum(math.exp(s) for s in scores.values()))
        assert nll[b].item() == pytest.approx(log_z - scores[tuple(tags[b][:n])], abs=1e-5)
        assert tuple(paths[b]) == max(scores, key=scores.get)


def test_crf_rejects_left_padding():
    with pytest.raises(ValueError, match="first position unmasked"):
        CRF(2).decode(torch.zeros(1, 3, 2), torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match="right only"):
        CRF(2).decode(torch.zeros(1, 3, 2), torch.tensor([[1, 0, 1]]))


# ---- GlobalPointer ----------------------------------------------------------------------------

def test_global_pointer_scores_by_hand():
    # one head of size 2, q_t = k_t = h_t; RoPE turns position p by angle p (base^0 = 1):
    #   q0 = (1, 0), k1 = rot((0, 1), 1) = (-sin 1, cos 1)  ->  s[0, 1] = -sin 1 / sqrt 2
    gp = GlobalPointer(2, heads=1, head_size=2, bias=False)
    with torch.no_grad():
        gp.dense.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1]]))  # rows: q (2), then k (2)
    s = gp(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    r2 = math.sqrt(2)
    assert s.shape == (1, 1, 2, 2)
    assert s[0, 0, 0, 0].item() == pytest.approx(1 / r2, abs=1e-6)
    assert s[0, 0, 1, 1].item() == pytest.approx(1 / r2, abs=1e-6)
    assert s[0, 0, 0, 1].item() == pytest.approx(-math.sin(1.0) / r2, abs=1e-6)
    assert s[0, 0, 1, 0].item() == pytest.approx(NEG)  # an end before its start
    # padding removes its rows and columns
    s = gp(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), mask=torch.tensor([[1, 0]]))
    assert s[0, 0, 0, 0].item() == pytest.approx(1 / r2, abs=1e-6) and s[0, 0, 0, 1].item() == pytest.approx(NEG)


def test_global_pointer_scores_depend_on_relative_position_only():
    torch.manual_seed(0)
    gp = GlobalPointer(8, heads=2, head_size=4)
    h = torch.randn(1, 3, 8)
    a = gp(h)
    b = gp(torch.cat([torch.randn(1, 2, 8), h], dim=1))  # the same tokens two positions later
    assert torch.allclose(a, b[:, :, 2:, 2:], atol=1e-5)


def test_decode_spans_and_targets_by_hand():
    scores = torch.full((2, 2, 3, 3), -1.0)
    scores[0, 1, 0, 2] = 3.0
    scores[0, 0, 1, 1] = 0.5
    scores[1, 0, 2, 2] = 0.0  # not above the threshold
    found = decode_spans(scores)
    assert [[(h, s, e) for h, s, e, _ in items] for items in found] == [[(1, 0, 2), (0, 1, 1)], []]
    assert found[0][0][3] == 3.0
    t = span_targets([[(1, 0, 2)], []], heads=2, length=3)
    assert t.sum().item() == 1 and t[0, 1, 0, 2].item() == 1
    with pytest.raises(ValueError, match="outside"):
        span_targets([[(0, 2, 1)]], heads=1, length=3)


def test_global_pointer_loss_ignores_masked_pairs():
    # the multilabel loss of a masked matrix equals the loss over the legal pairs alone
    torch.manual_seed(0)
    gp = GlobalPointer(4, heads=1, head_size=2)
    mask = torch.tensor([[1, 1, 0]])
    s = gp(torch.randn(1, 3, 4), mask)
    target = span_targets([[(0, 0, 1)]], 1, 3)
    full = multilabel_categorical_crossentropy(target.view(1, -1), s.view(1, -1))
    legal = [(0, 0), (0, 1), (1, 1)]
    scores = torch.stack([s[0, 0, i, j] for i, j in legal])
    pos = scores[1]
    neg = scores[[0, 2]]
    by_hand = torch.log1p(torch.exp(neg).sum()) + torch.log1p(torch.exp(-pos))
    assert full.item() == pytest.approx(by_hand.item(), abs=1e-5)


# ---- CHID ---------------------------------------------------------------------------------------

def test_assignment_by_hand_beats_greedy():
    # greedy gives both blanks candidate 0; one-to-one: blank 0 -> 1 (0.8), blank 1 -> 0 (0.85) = 1.65 > 1.0
    assert assign_one_to_one([[0.9, 0.8], [0.85, 0.1]]) == [1, 0]
    # 3 blanks, 4 candidates: 2 + 5 + 4 = 11 beats 1 + 3 + 4 = 8 and leaves candidate 3 unused
    assert assign_one_to_one([[1, 0, 2, 0], [5, 0, 3, 0], [0, 4, 0, 0]]) == [2, 0, 1]


def test_assignment_matches_exhaustive_search():
    rng = random.Random(1)
    for _ in range(300):
        n = rng.randint(1, 5)
        m = rng.randint(n, 6)
        s = [[rng.choice([rng.random(), float(rng.randint(-2, 2))]) for _ in range(m)] for _ in range(n)]
        got = assign_one_to_one(s)
        assert len(set(got)) == n
        best = max(sum(s[i][p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        assert sum(s[i][got[i]] for i in range(n)) == pytest.approx(best)


def test_assignment_with_more_blanks_than_candidates():
    # candidates go one-to-one to the blanks that want them most; the rest take their argmax
    assert assign_one_to_one([[3, 0], [2, 1], [1, 5]]) == [0, 0, 1]


def test_chid_inputs_mark_the_blank_and_mask_the_others():
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]"] + list("甲乙丙丁一二三四"))
    blank = ChidBlank("#idiom2#", 0, ["甲乙", "丙"], ["丁"], ["一二三四", "四三二一"], 1)
    ids = chid_inputs(blank, tok, max_length=64)
    text = [tok.ids_to_tokens(i) for i, _ in ids]
    assert text[0] == ["[CLS]", "一", "二", "三", "四", "[SEP]", "甲", "乙", "[MASK]", "[MASK]", "[MASK]", "[MASK]",
                       "丙", "[unused1]", "丁", "[SEP]"]
    assert ids[1][1] == [0] * 6 + [1] * 10
    # truncation keeps the context nearest the blank, trimming the longer side's far end first:
    # room for 3 of 甲 乙 M M M M 丙 | 丁 -> M 丙 | 丁
    short = chid_inputs(blank, tok, max_length=6 + 2 + 3)
    assert tok.ids_to_tokens(short[0][0])[6:] == ["[MASK]", "丙", "[unused1]", "丁", "[SEP]"]


# ---- CMRC 2018 ----------------------------------------------------------------------------------

def test_windows_by_hand():
    ex = MrcExample("q", "?", "0123456789", [("45", 4)])
    w = make_windows(ex, max_chars=4, stride=3)
    assert [(x.start, x.end, x.answer) for x in w] == [(0, 4, None), (3, 7, (1, 3)), (6, 10, None)]
    ex = MrcExample("q", "?", "0123456789", [("3", 3)])
    assert [x.answer for x in make_windows(ex, 4, 3)] == [(3, 4), (0, 1), None]
    assert [(x.start, x.end) for x in make_windows(MrcExample("q", "?", "abc"), 4, 3)] == [(0, 3)]


def test_answer_tokens_take_whole_tokens():
    offsets = [(0, 0), (0, 1), (0, 0), (0, 4), (4, 5), (5, 6), (0, 0)]  # [CLS] q [SEP] 1995 年 后 [SEP]
    context = [3, 4, 5]
    assert answer_tokens((0, 5), offsets, context) == (3, 4)  # "1995年"
    assert answer_tokens((2, 5), offsets, context) == (3, 4)  # "95年": the boundary falls inside "1995"
    assert answer_tokens((5, 7), offsets, context) is None  # runs past the truncated window


def test_merge_takes_the_best_window():
    context = "长城西起嘉峪关，东至辽东虎山。"
    found = [WindowAnswer("q1", 0.5, 0, 2), WindowAnswer("q1", 2.0, 4, 7), WindowAnswer("q1", 1.0, 10, 14),
             WindowAnswer("q2", -1.0, 8, 14)]
    assert merge_answers(found, {"q1": context, "q2": context}) == {"q1": "嘉峪关", "q2": "东至辽东虎山"}


def test_cmrc_metric_by_hand():
    assert cmrc_em("1963年", ["1963年"]) == 1.0 and cmrc_f1("1963年", ["1963年"]) == 1.0
    # segments: pred 在 / 1963 / 年, ref 1963 / 年 -> common run 2: P 2/3, R 1, F1 0.8
    assert cmrc_em("在1963年", ["1963年"]) == 0.0
    assert cmrc_f1("在1963年", ["1963年"]) == pytest.approx(0.8)
    assert cmrc_em("工商协进会。", ["工商协进会"]) == 1.0  # punctuation removed
    assert cmrc_f1("the USB device", ["usb device"]) == pytest.approx(0.8)  # case folded, words
    # the best reference counts; a longest common SUBSTRING, not subsequence: 东汉 vs 东X汉 -> 1 of 2 and 3
    assert cmrc_f1("东x汉", ["东汉", "西"]) == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert cmrc_scores({"a": "东汉", "b": "x"}, {"a": ["东汉"], "b": ["y"], "c": ["z"]}) == {
        "em": pytest.approx(1 / 3), "f1": pytest.approx(1 / 3)}


# ---- NER ----------------------------------------------------------------------------------------

def test_tag_schemes_to_spans():
    assert tags_to_spans(["B-PER", "I-PER", "O", "B-LOC"]) == [(0, 1, "PER"), (3, 3, "LOC")]
    assert tags_to_spans(["B-ORG", "M-ORG", "E-ORG", "S-PER", "O"]) == [(0, 2, "ORG"), (3, 3, "PER")]
    assert tags_to_spans(["O", "I-LOC", "I-LOC"]) == [(1, 2, "LOC")]
    assert tags_to_spans(["B-PER", "I-LOC"]) == [(0, 0, "PER"), (1, 1, "LOC")]
    assert tags_to_spans(["B-PER", "E-PER", "E-PER"]) == [(0, 1, "PER"), (2, 2, "PER")]
    with pytest.raises(ValueError, match="tag 1: 'X-PER'"):
        tags_to_spans(["O", "X-PER"])


def test_bio_ids_by_hand():
    types = ["A", "B"]
    assert encode_bio([(1, 1, 3)], 5) == [0, 3, 4, 4, 0]  # B-B = 1 + 2*1, I-B = 2 + 2*1
    assert encode_bio([(0, 0, 0), (0, 0, 1)], 3) == [1, 2, 0]  # overlap: the longer span wins
    assert decode_bio([0, 3, 4, 4, 0, 1], types) == [(1, 1, 3), (0, 5, 5)]


def test_character_and_token_spans():
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "生", "化"])
    enc = tok(["CSOL生化"], return_offsets=True)
    offsets = enc["offset_mapping"][0].tolist()
    assert offsets == [[0, 0], [0, 4], [4, 5], [5, 6], [0, 0]]  # "csol" is one [UNK] over 4 characters
    types = ["game", "x"]
    assert chars_to_tokens([(0, 3, "game"), (3, 4, "x")], offsets, types) == [(0, 1, 1), (1, 1, 2)]
    assert chars_to_tokens([(5, 6, "game")], offsets[:3] + [[0, 0]], types) == []  # truncated away
    assert tokens_to_chars([(0, 1, 1), (1, 2, 3), (0, 0, 2)], offsets, types) == [(0, 3, "game"), (4, 5, "x")]


def test_entity_f1_by_hand():
    gold = [[(0, 1, "A"), (3, 3, "B")], []]
    pred = [[(0, 1, "A"), (2, 3, "B")], [(0, 0, "A")]]
    assert entity_f1(gold, pred) == {"f1": pytest.approx(2 / 5), "precision": pytest.approx(1 / 3),
                                     "recall": pytest.approx(1 / 2)}


def test_char_tagged_file(tmp_path):
    path = tmp_path / "msra.txt"
    path.write_text("中 B-ORG\n国 M-ORG\n队 E-ORG\n赢 O\n\n\n李 S-PER\r\n\r\n", encoding="utf-8")
    ex = read_char_tagged(path)
    assert [(e.text, e.entities) for e in ex] == [("中国队赢", [(0, 2, "ORG")]), ("李", [(0, 0, "PER")])]
