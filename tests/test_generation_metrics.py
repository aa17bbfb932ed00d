"""plmkit.generation.metrics against rouge-score / sacrebleu themselves and values derived by hand."""
import importlib.util
import math
import sys

import pytest
import torch

from plmkit.generation.metrics import char_f1, char_tokens, diagnostics, same_text, score

# score() needs the gen extra (in the test extra too); diagnostics and the ImportError check do not
needs_gen = pytest.mark.skipif(
    not (importlib.util.find_spec("rouge_score") and importlib.util.find_spec("sacrebleu")),
    reason="rouge-score / sacrebleu not installed: pip install plmkit[gen]")


# ---- score: agreement with the libraries' documented examples -------------------------------------------

# rouge-score's README example, lower-cased and without the final "." so that rouge-score's default
# tokenizer (lower-case, drop non-alphanumerics, split on spaces) and ours give the same tokens.
RS_TARGET = "the quick brown fox jumps over the lazy dog"
RS_PREDICTION = "the quick brown dog jumps on the log"


@needs_gen
def test_rouge_matches_rouge_score_readme_example():
    from rouge_score import rouge_scorer
    ours = score([RS_PREDICTION], [RS_TARGET])
    theirs = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"]).score(RS_TARGET, RS_PREDICTION)
    assert ours["rouge-1"] == pytest.approx(theirs["rouge1"].fmeasure)
    assert ours["rouge-2"] == pytest.approx(theirs["rouge2"].fmeasure)
    assert ours["rouge-l"] == pytest.approx(theirs["rougeL"].fmeasure)
    # By hand: 8 prediction tokens, 9 target tokens.
    # unigrams in common: the x2, quick, brown, dog, jumps = 6 -> F = 2*6/(8+9) = 12/17
    # bigrams in common (7 vs 8): "the quick", "quick brown" = 2 -> F = 2*2/(7+8) = 4/15
    # LCS: the quick brown jumps the = 5 -> F = 2*5/(8+9) = 10/17
    assert ours["rouge-1"] == pytest.approx(12 / 17)
    assert ours["rouge-2"] == pytest.approx(4 / 15)
    assert ours["rouge-l"] == pytest.approx(10 / 17)


# sacrebleu's README example, with its first reference stream (our score takes one reference each)
SB_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
SB_REFS = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]


@needs_gen
def test_bleu_matches_sacrebleu_readme_example():
    import sacrebleu
    ours = score(SB_SYS, SB_REFS)["bleu"]
    # the documented call (default 13a tokenizer); "zh" tokenises text without Chinese the same way
    assert ours == pytest.approx(sacrebleu.corpus_bleu(SB_SYS, [SB_REFS]).score / 100)
    # By hand, 13a tokens: "The dog bit the man ." (6) / "It wasn't surprising ." (4) /
    # "The man had just bitten him ." (7): 17 hypothesis tokens, references 6 + 5 + 6 = 17 -> BP = 1.
    # clipped matches: 1-grams 6 + 2 (It, .) + 4 (The, man, him, .) = 12 / 17
    #                  2-grams 5 + 0 + 1 (The man) = 6 / 14;  3-grams 4 + 0 + 0 = 4 / 11;  4-grams 3 / 8
    assert ours == pytest.approx((12 / 17 * 6 / 14 * 4 / 11 * 3 / 8) ** 0.25)


# ---- score: Chinese, by hand ---------------------------------------------------------------------------

@needs_gen
def test_chinese_character_rouge_bleu_and_char_f1_by_hand():
    # A: 今天天气很好 vs 今天天气不错, 6 characters each.
    #    characters in common: 今, 天 x2, 气 = 4         -> ROUGE-1 F = 2*4/12 = 2/3, char F1 = 2/3
    #    bigrams (5 each) in common: 今天, 天天, 天气 = 3  -> ROUGE-2 F = 3/5
    #    LCS 今天天气 = 4                                 -> ROUGE-L F = 2/3
    # B: 白日依山尽 vs 山依白日尽 (same characters, other order), 5 each.
    #    characters in common: all 5                     -> ROUGE-1 F = 1, char F1 = 1
    #    bigrams (4 each) in common: 白日 = 1             -> ROUGE-2 F = 1/4
    #    LCS 白日尽 = 3                                   -> ROUGE-L F = 3/5
    got = score(["今天天气很好", "白日依山尽"], ["今天天气不错", "山依白日尽"])
    assert got["rouge-1"] == pytest.approx((2 / 3 + 1) / 2)
    assert got["rouge-2"] == pytest.approx((3 / 5 + 1 / 4) / 2)
    assert got["rouge-l"] == pytest.approx((2 / 3 + 3 / 5) / 2)
    assert got["char_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert got["exact_match"] == 0.0
    # BLEU of A alone ("zh" splits every character; lengths equal -> BP = 1):
    # clipped 1..4-gram precisions 4/6, 3/5, 2/4 (今天天, 天天气), 1/3 (今天天气)
    bleu = score(["今天天气很好"], ["今天天气不错"])["bleu"]
    assert bleu == pytest.approx((4 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)


@needs_gen
def test_ascii_words_and_numbers_are_one_rouge_token():
    assert char_tokens("用BERT做NER，acc=0.9 好") == \
        ["用", "BERT", "做", "NER", "，", "acc", "=", "0", ".", "9", "好"]
    # 版本2019 vs 版本2091: ROUGE tokens 版 本 2019 / 版 本 2091 -> 2 of 3 in common -> ROUGE-1 F = 2/3,
    # while the bag of characters (版 本 2 0 1 9 both) is identical -> char F1 = 1
    got = score(["版本2019"], ["版本2091"])
    assert got["rouge-1"] == pytest.approx(2 / 3)
    assert got["char_f1"] == pytest.approx(1.0)
    # whitespace separates tokens but is never one
    assert score(["今天 天气"], ["今天天气"])["rouge-l"] == pytest.approx(1.0)


def test_char_f1_edge_cases():
    assert char_f1("", "  ") == 1.0
    assert char_f1("", "对") == 0.0
    # 春风 vs 春雨春: in common 春 = 1 -> 2*1/(2+3)
    assert char_f1("春风", "春雨春") == pytest.approx(2 / 5)


@needs_gen
def test_exact_match_ignores_spacing_except_between_ascii_words():
    got = score(["你好 ", "\t再见\n", "a b"], ["你好", "再见", "ab"])
    assert got["exact_match"] == pytest.approx(2 / 3)  # "a b" is two words, "ab" one
    # a WordPiece decode spaces ASCII punctuation ("12 + 3 * ( 4 - 1 )", "3. 14"); the text is the same
    pairs = [("12 + 3 * ( 4 - 1 )", "12+3*(4-1)"), ("3. 14", "3.14"), ("x = 150 * 20 % / 5 %", "x=150*20%/5%"),
             ("1 2", "12"), ("hello world", "hello  world"), ("我 不 喜欢", "我不喜欢")]
    assert [same_text(p, r) for p, r in pairs] == [True, True, True, False, True, True]


def test_score_input_errors():
    with pytest.raises(ValueError, match="empty"):
        score([], [])
    with pytest.raises(ValueError, match=r"3 predictions but 2 references"):
        score(["a", "b", "c"], ["a", "b"])
    with pytest.raises(TypeError, match="single str"):
        score("你好", "你好")


def test_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rouge_score", None)  # makes `import rouge_score` raise ImportError
    with pytest.raises(ImportError, match=r"pip install plmkit\[gen\]"):
        score(["a"], ["a"])


# ---- diagnostics on hand-built ids ---------------------------------------------------------------------

EOS, PAD = 2, 0
OUTPUTS = [
    [5, 6, 5, 6, 5, 6],  # no end token, 6 = max_new_tokens ids: unfinished
    [7, 8, EOS, PAD, PAD, PAD],  # content 7 8
    [9, EOS, PAD, PAD, PAD, PAD],  # content 9
    [5, 6, 7, 5],  # no end token but shorter than max_new_tokens: stopped otherwise, not unfinished
]


def test_diagnostics_by_hand():
    got = diagnostics(OUTPUTS, eos_token_id=EOS, max_new_tokens=6, n=2)
    assert got["unfinished"] == pytest.approx(1 / 4)
    # bigrams: [5 6 5 6 5 6] -> 56 65 56 65 56, the last 3 repeat earlier ones: 3/5;  [7 8] -> 0/1;
    # [9] has none (left out of the mean);  [5 6 7 5] -> 56 67 75: 0/3.   mean (3/5 + 0 + 0) / 3
    assert got["repeated_ngram_rate"] == pytest.approx(1 / 5)
    # content unigrams 6 + 2 + 1 + 4 = 13, distinct {5,6,7,8,9} = 5 (an end token or a pad counted
    # would add a distinct id);  bigrams 5 + 1 + 0 + 3 = 9, distinct {56, 65, 78, 67, 75} = 5
    assert got["distinct-1"] == pytest.approx(5 / 13)
    assert got["distinct-2"] == pytest.approx(5 / 9)
    # default n = 4: [5 6 5 6 5 6] -> 5656 6565 5656: 1/3;  [5 6 7 5] -> 0/1;  the others have none
    assert diagnostics(OUTPUTS, eos_token_id=EOS, max_new_tokens=6)["repeated_ngram_rate"] == pytest.approx(1 / 6)


def test_diagnostics_distinct_on_texts_characters():
    texts = ["哈哈哈", "你 好", "好"]
    got = diagnostics([[1], [1], [1]], eos_token_id=EOS, max_new_tokens=6, texts=texts)
    # characters 哈哈哈 / 你好 / 好: 6 unigrams, distinct {哈, 你, 好} = 3;
    # bigrams 哈哈 哈哈 / 你好 (the space is not a character here): 3, distinct 2
    assert got["distinct-1"] == pytest.approx(3 / 6)
    assert got["distinct-2"] == pytest.approx(2 / 3)


def test_diagnostics_end_token_forms_and_tensor_rows():
    # several end ids: the first of any of them ends the output
    got = diagnostics([[4, 3, 4, 4], [4, 4, 4, 4]], eos_token_id=[2, 3], max_new_tokens=4, n=1)
    assert got["unfinished"] == pytest.approx(1 / 2)
    assert got["distinct-1"] == pytest.approx(1 / 5)  # content [4] and [4 4 4 4]
    # no end token at all: only length decides
    assert diagnostics([[1, 2, 3], [1, 2]], eos_token_id=None, max_new_tokens=3)["unfinished"] == pytest.approx(1 / 2)
    # rows of the tensor that generate returns
    rows = torch.tensor([[5, EOS, PAD], [5, 5, 5]])
    got = diagnostics(rows, eos_token_id=EOS, max_new_tokens=3, n=1)
    assert got["unfinished"] == pytest.approx(1 / 2)
    assert got["repeated_ngram_rate"] == pytest.approx((0 + 2 / 3) / 2)


def test_diagnostics_input_errors():
    with pytest.raises(ValueError, match="empty"):
        diagnostics([], eos_token_id=EOS, max_new_tokens=4)
    with pytest.raises(ValueError, match=r"2 outputs but 1 texts"):
        diagnostics([[1], [1]], eos_token_id=EOS, max_new_tokens=4, texts=["a"])
    with pytest.raises(ValueError, match="max_new_tokens"):
        diagnostics([[1]], eos_token_id=EOS, max_new_tokens=0)
    assert math.isfinite(diagnostics([[EOS]], eos_token_id=EOS, max_new_tokens=4)["repeated_ngram_rate"])
