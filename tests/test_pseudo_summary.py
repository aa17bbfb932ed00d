"""PEGASUS-style pseudo-summaries: sentence splitting, the LCS against a plain dynamic programme, the greedy
selection against hand-derived picks, round trips, and the one-sentence document."""
import random

import pytest

from plmkit.generation.pseudo_summary import (
    PairStats, lcs_length, pick_sentences, pseudo_summary, pseudo_summary_pairs, rouge_l, split_sentences)


def lcs_table(a: str, b: str) -> int:
    """The textbook O(|a|·|b|) table: an independent algorithm for the bit-parallel one."""
    row = [0] * (len(b) + 1)
    for ca in a:
        prev = 0
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if ca == cb else max(row[j], row[j - 1])
    return row[-1]


def test_lcs_matches_the_dynamic_programme():
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("甲乙丙丁戊") for _ in range(rng.randrange(0, 90)))
        b = "".join(rng.choice("甲乙丙丁戊己") for _ in range(rng.randrange(0, 90)))
        assert lcs_length(a, b) == lcs_table(a, b), (a, b)
    assert lcs_length("ABCBDAB", "BDCABA") == 4  # CLRS's example
    assert rouge_l("春眠 不觉", "春眠不觉晓") == pytest.approx(2 * 4 / 9)


def test_split_keeps_punctuation_and_round_trips():
    text = "今天下雨了。你去吗？不去！好吧；那就算了……\n明天再说\n\n“真的吗？”他问。最后一句"
    sentences = split_sentences(text)
    assert sentences == ["今天下雨了。", "你去吗？", "不去！", "好吧；", "那就算了……\n", "明天再说\n\n",
                         "“真的吗？”", "他问。", "最后一句"]
    assert "".join(sentences) == text


POEM = ["春眠不觉晓\n", "处处闻啼鸟\n", "春眠不觉晓处处闻啼鸟\n", "夜来风雨声\n", "花落知多少\n",
        "夜来风雨声花落\n", "甲乙\n", "丙丁"]


def test_greedy_picks_the_hand_derived_sentences():
    # 8 sentences, ratio 1/4: two picks. Step 1: sentence 2 (10 chars) is a subsequence of sentences 0+1 left
    # behind: LCS 10; any other single sentence reaches at most 7 (sentence 5 within 3+4). Step 2 with 2 picked:
    # adding 5 gives target 春眠不觉晓处处闻啼鸟夜来风雨声花落, all of it in 0,1,3,4 left: LCS 17; adding 3 gives
    # 10 + 5 = 15, adding 4 gives 10 + 2 (花落 of sentence 5) = 12, adding 0 or 1 leaves LCS 5, 6 or 7: 10.
    assert pick_sentences(POEM, 1) == [2]
    pair = pseudo_summary("".join(POEM))
    assert pair.picked == (2, 5)
    assert pair.target == "春眠不觉晓处处闻啼鸟\n夜来风雨声花落\n"
    assert pair.source == "春眠不觉晓\n处处闻啼鸟\n夜来风雨声\n花落知多少\n甲乙\n丙丁"


def test_ties_go_to_the_earliest_sentence():
    # 甲乙丙。 twice: moving either leaves an LCS of 4 (甲乙丙。) with the rest; 丁戊。 / 己庚。 share only 。 (1)
    pair = pseudo_summary("甲乙丙。甲乙丙。丁戊。己庚。")
    assert pair.picked == (0,)
    assert (pair.source, pair.target) == ("甲乙丙。丁戊。己庚。", "甲乙丙。")


def test_pairs_round_trip_to_the_document():
    rng = random.Random(1)
    for _ in range(40):
        sentences = ["".join(rng.choice("天地玄黄宇宙洪荒") for _ in range(rng.randrange(1, 9))) + rng.choice("。！？；\n")
                     for _ in range(rng.randrange(2, 12))]
        document = "".join(sentences)
        pair = pseudo_summary(document)
        assert pair.sentences == tuple(split_sentences(document))
        # put the target sentences back at their indices among the source's: the document, in order
        source, target = iter(s for i, s in enumerate(pair.sentences) if i not in pair.picked), iter(
            pair.sentences[i] for i in pair.picked)
        rebuilt = "".join(next(target) if i in pair.picked else next(source) for i in range(len(pair.sentences)))
        assert rebuilt == document
        assert sorted(pair.source + pair.target) == sorted(document)
        assert len(pair.picked) == min(max(1, round(len(sentences) / 4)), len(sentences) - 1)


def test_one_sentence_documents_are_skipped_and_counted():
    assert pseudo_summary("只有一句话。") is None
    assert pseudo_summary("") is None
    stats = PairStats()
    pairs = list(pseudo_summary_pairs(["只有一句话。", "第一句。第二句。", "", "没有句号的一句"], stats=stats))
    assert pairs == [("第二句。", "第一句。")]  # a tie (LCS 3 either way): the earlier sentence is the target
    assert (stats.documents, stats.pairs, stats.too_short, stats.examples_skipped) == (4, 1, 3, [0, 2, 3])
    with pytest.raises(ValueError, match="ratio"):
        pseudo_summary("一。二。", ratio=1.5)
    with pytest.raises(ValueError, match="count"):
        pick_sentences(["一。"], 1)
