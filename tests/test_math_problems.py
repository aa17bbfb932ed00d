"""Math word problems: the exact evaluator, the expression constraint, the synthetic templates, bad input.

Oracles: Python's fractions on hand-derived values; random expression trees computed with Fraction straight
from the tree (never through our parser) and rendered with minimal parentheses by precedence; each template's
own brute-force / closed-form check; decoding every completed constrained path and parsing it."""
from __future__ import annotations

import json
import random
from fractions import Fraction as F

import pytest
from hypothesis import given, settings, strategies as st

from plmkit.tasks.math_problems import (ExpressionConstraint, ExpressionError, Unsupported, ZeroDivision,
                                        answer_in_problem, answers_match, check_problem_file,
                                        remove_redundant_parentheses, evaluate_expression,
                                        expression_constraint, problem_numbers, score_all, score_expression)
from plmkit.tasks.math_templates import TEMPLATES, build_splits, people_daily_names, write_splits


# ---- the evaluator: hand-derived values ------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("1+2*3", F(7)), ("(1+2)*3", F(9)), ("7-2-1", F(4)), ("12/4/3", F(1)), ("2**3**2", F(512)),
    ("-2**2", F(-4)), ("(-2)**2", F(4)), ("2^-1", F(1, 2)), ("2*-3", F(-6)), ("--3", F(3)),
    ("30%", F(3, 10)), ("(1+2)%", F(3, 100)), ("1(1/2)", F(3, 2)), ("2(3/4)*4", F(11)),
    ("150*20%/5%-150", F(450)),  # the post's first Ape210k example, answer 450
    ("(3.14*(4+1)**2)-(3.14*4**2)", F(314, 100) * 25 - F(314, 100) * 16),  # its second: 28.26
    ("x=12. 5 + 1", F(27, 2)),  # a WordPiece decode's spaces and Ape210k's "x="
    ("10:4", F(5, 2)), ("0.1+0.2", F(3, 10)), ("1/3+1/6", F(1, 2)),
])
def test_hand_values(text, value):
    assert evaluate_expression(text) == value


@pytest.mark.parametrize("text, position", [
    ("1+", 2), ("(1+2", 4), ("1+2)", 3), ("2*/3", 2), ("3+a", 2), ("1..2", 1), ("", 0), ("()", 1),
    ("5%3", 2), ("+1", 0),
])
def test_malformed_expressions_name_the_position(text, position):
    with pytest.raises(ExpressionError) as e:
        evaluate_expression(text)
    assert type(e.value) is ExpressionError
    assert e.value.position == position and e.value.expression == text
    assert repr(text) in str(e.value) and f"position {position}" in str(e.value)


def test_division_by_zero_is_typed_and_counted_wrong():
    with pytest.raises(ZeroDivision) as e:
        evaluate_expression("1/(2-2)")
    assert e.value.position == 1 and "division by zero" in str(e.value)
    with pytest.raises(ZeroDivision):
        evaluate_expression("0**-1")
    with pytest.raises(Unsupported):
        evaluate_expression("4**(1/2)")
    with pytest.raises(Unsupported):
        evaluate_expression("2**100")
    with pytest.raises(Unsupported, match="bits"):
        evaluate_expression("((((9**64)**64)**64)**64)**64")
    assert evaluate_expression("(9**64)**64") == F(9) ** 4096  # large, but within the limit
    outcome = score_expression("6/(3-3)", "2")
    assert outcome.status == "zero_division" and not outcome.correct and outcome.value is None
    scores = score_all(["6/(3-3)", "1+1", "1+", "5"], ["2", "2", "2", "2"], ["", "", "", "有5个"])
    assert scores["accuracy"] == 0.25 and scores["zero_division_share"] == 0.25
    assert scores["invalid_share"] == 0.25 and scores["wrong_share"] == 0.25 and scores["copied_share"] == 0.25


def test_answers_match_rounds_like_the_post():
    assert answers_match(F(1, 3), F("0.333333"))  # round(1/3, 6) == 0.333333
    assert not answers_match(F(1, 3), F("0.33"))
    assert answers_match(evaluate_expression("3.14*3**2"), F("28.26"))
    assert not answers_match(F(1), F("1.000002"))


@pytest.mark.parametrize("text, cleaned", [
    ("(1+2)+3", "1+2+3"), ("(1+2)*3", "(1+2)*3"), ("((4))", "4"), ("x=(6/(2*3))", "6/(2*3)"),
    ("10-(2-1)", "10-(2-1)"), ("1(1/2)", "1(1/2)"), ("(2+2)*1", "2+2*1"),  # by value, as the post does
])
def test_remove_redundant_parentheses(text, cleaned):
    assert remove_redundant_parentheses(text) == cleaned


def test_answer_in_problem():
    problem = "一本书有120页，看了30%，还剩1(1/2)天"
    assert problem_numbers(problem) == {F(120), F(3, 10), F(3, 2)}
    assert answer_in_problem("120", problem) and answer_in_problem(" 30 %", problem)
    assert not answer_in_problem("84", problem) and not answer_in_problem("120-36", problem)
    assert score_expression("120", "84", problem).copied


# ---- the evaluator against random expression trees --------------------------------------------------------------
# A tree is ("num", text) | ("neg", t) | ("pct", t) | (op, left, right); its value comes from Fraction directly.

PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "**": 4, "pct": 5, "num": 6}


def tree_value(t):
    kind = t[0]
    if kind == "num":
        return F(t[1])
    if kind == "neg":
        return -tree_value(t[1])
    if kind == "pct":
        return tree_value(t[1]) / 100
    a, b = tree_value(t[1]), tree_value(t[2])
    if kind == "+":
        return a + b
    if kind == "-":
        return a - b
    if kind == "*":
        return a * b
    if kind == "/":
        return a / b  # Fraction raises ZeroDivisionError on b == 0
    return a ** int(b)  # "**": exponents are small integers by construction; 0 ** -1 raises ZeroDivisionError


def render(t):
    """Text with only the parentheses precedence needs, so the parser's precedence is what is tested."""
    kind = t[0]
    if kind == "num":
        return t[1]
    if kind == "neg":
        inner = render(t[1])
        return "-" + (inner if PREC[t[1][0]] >= 3 else f"({inner})")
    if kind == "pct":
        inner = render(t[1])
        return (inner if t[1][0] == "num" else f"({inner})") + "%"
    left, right = render(t[1]), render(t[2])
    if kind == "**":  # the base binds tighter than unary minus; the exponent is a unary
        left = left if PREC[t[1][0]] >= 5 else f"({left})"
        right = right if PREC[t[2][0]] >= 3 else f"({right})"
        return f"{left}**{right}"
    left = left if PREC[t[1][0]] >= PREC[kind] else f"({left})"
    right = right if PREC[t[2][0]] > PREC[kind] else f"({right})"
    return f"{left}{kind}{right}"


def random_tree(r: random.Random, depth: int):
    if depth <= 0 or r.random() < 0.25:
        return ("num", r.choice([str(r.randint(0, 12)), f"{r.randint(0, 9)}.{r.randint(1, 99)}"]))
    kind = r.choice(["+", "-", "*", "/", "neg", "pct", "**", "+", "*", "/"])
    if kind in ("neg", "pct"):
        return (kind, random_tree(r, depth - 1))
    if kind == "**":
        exponent = ("num", str(r.randint(0, 3)))
        return (kind, random_tree(r, depth - 2), exponent if r.random() < 0.7 else ("neg", exponent))
    return (kind, random_tree(r, depth - 1), random_tree(r, depth - 1))


def test_random_trees_match_fraction_arithmetic():
    r = random.Random(7)
    zero = 0
    for _ in range(600):
        t = random_tree(r, 5)
        text = render(t)
        try:
            expected = tree_value(t)
        except ZeroDivisionError:
            zero += 1
            with pytest.raises(ZeroDivision):
                evaluate_expression(text)
            continue
        assert evaluate_expression(text) == expected, text
        assert evaluate_expression(" ".join(text)) == expected  # the spaces a decode puts in are removed
    assert 0 < zero < 300  # both paths were exercised


# ---- the templates --------------------------------------------------------------------------------------------

def test_every_template_expression_equals_its_independent_check():
    r = random.Random(3)
    for t in TEMPLATES:
        assert len(t.forms) >= 2, t.name
        for _ in range(60):
            values = t.draw(r)
            fields = {k: v for k, v in values.items() if not isinstance(v, tuple)}
            answer = evaluate_expression(t.expression.format(**fields))
            assert answer == t.check(values), (t.name, values)
            assert answer > 0 and answer.denominator <= 60, (t.name, values, answer)  # a sensible answer


def test_categories_of_the_post_are_covered():
    categories = {t.category for t in TEMPLATES}
    assert {"盈亏", "年龄", "植树", "牛吃草", "利润", "行程", "工程", "鸡兔同笼", "分数", "百分数", "平均数"} <= categories


def test_splits_are_deterministic_and_held_out(tmp_path):
    a = build_splits(5, train=300, valid=20, test=40)
    assert a == build_splits(5, train=300, valid=20, test=40)
    assert a["train"] != build_splits(6, train=300, valid=20, test=40)["train"]
    held = {t.name for t in TEMPLATES if t.held_out}
    assert {r["template"] for r in a["train"] + a["valid"] + a["test_numbers"]}.isdisjoint(held)
    assert {r["template"] for r in a["test_templates"]} <= held
    seen_numbers = {(r["template"], r["numbers"]) for r in a["train"]}
    assert all((r["template"], r["numbers"]) not in seen_numbers for r in a["test_numbers"])
    for row in a["train"][:50]:
        assert evaluate_expression(row["target"]) == evaluate_expression(row["answer"])
    paths = write_splits(a, tmp_path)
    assert check_problem_file(paths["train"]) == 300
    first = json.loads(paths["test_templates"].read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"source", "target", "answer", "template", "category"}


def test_people_daily_names(tmp_path):
    path = tmp_path / "199801.txt"
    path.write_text("中共中央/nt  总书记/n  江/nr  泽民/nr  在/p  北京/ns  会见/v  李/nr  鹏/nr\n"
                    "新华社/nt  记者/n  兰/nr  红光/nr  摄/Vg  上海/ns  北京/ns\n", encoding="utf-8")
    names, places = people_daily_names(path)
    assert names == ["江泽民", "李鹏", "兰红光"] and places == ["北京", "上海"]


def test_malformed_training_data_is_reported(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"source": "1加1", "target": "1+1", "answer": "2"}, {"source": "3乘4", "target": "3*+4", "answer": "12"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.jsonl: line 2: field 'target': expression '3\*\+4': at position 2"):
        check_problem_file(path)
    rows[1]["target"] = "3*5"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: field 'target': '3\\*5' evaluates to 15, but field 'answer' says 12"):
        check_problem_file(path)
    rows[1]["target"] = "3/(4-4)"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: .*division by zero"):
        check_problem_file(path)


# ---- the constraint ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    from plmkit import load_tokenizer
    from plmkit.zoo import embedded_model_dir
    return load_tokenizer(embedded_model_dir())


def test_gold_targets_are_allowed_paths(tokenizer):
    constraint = expression_constraint(tokenizer, 72)
    end = tokenizer.sep_token_id
    rows = build_splits(1, train=200, valid=0, test=10)
    for row in rows["train"] + rows["test_templates"]:
        ids = tokenizer.encode(row["target"])[0][1:-1]
        for i in range(len(ids)):
            assert ids[i] in constraint.allowed(ids[:i]), (row["target"], i)
        assert end in constraint.allowed(ids)


def test_constraint_rejects_by_hand(tokenizer):
    c = expression_constraint(tokenizer, 20)
    tid = tokenizer.token_to_id
    assert set(c.allowed([])) == {tid(d) for d in "0123456789"} | {tid("("), tid("-")}
    one_plus = [tid("1"), tid("+")]
    assert tokenizer.sep_token_id not in c.allowed(one_plus) and tid(")") not in c.allowed(one_plus)
    one = [tid("1")]
    assert tid("##2") in c.allowed(one) and tid("2") not in c.allowed(one) and tid("(") not in c.allowed(one)
    assert tid("*") in c.allowed(one + [tid("*")]) and tid("*") not in c.allowed(one + [tid("*")] * 2)
    # the length budget: with 4 tokens left after "((1", only ")" ")" [SEP] finishes, so "+" is refused
    c5 = expression_constraint(tokenizer, 6)
    assert c5.allowed([tid("("), tid("("), tid("1")]) == [tid(")")]


def test_multi_character_tokens():
    vocab = ["[PAD]", "[SEP]", "12", "##3", "##.5", "+", "**", "(", ")", "%", "7", "x"]
    c = ExpressionConstraint(vocab, end_id=1, max_length=10)
    allowed = lambda ids: {vocab[i] for i in c.allowed(ids)}  # noqa: E731
    assert allowed([]) == {"12", "7", "("}
    assert allowed([2]) == {"[SEP]", "##3", "##.5", "+", "**", "%"}  # no plain "7" after "12": it would merge
    assert allowed([2, 4]) == {"[SEP]", "##3", "+", "**", "%"}  # 12.5 may go on to 12.53, not 12.5.5
    assert allowed([2, 6]) == {"12", "7", "("}


@pytest.fixture(scope="module")
def walk_constraint(tokenizer):
    return expression_constraint(tokenizer, 24)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.data())
def test_random_constrained_paths_always_parse(tokenizer, walk_constraint, data):
    end, ids = tokenizer.sep_token_id, []
    while True:
        allowed = walk_constraint.allowed(ids)
        assert allowed, ids
        token = data.draw(st.sampled_from(allowed))
        if token == end:
            break
        ids.append(token)
        assert len(ids) < 24, "the budget must force an end"
    text = tokenizer.decode(ids)
    try:
        evaluate_expression(text)
    except (ZeroDivision, Unsupported):
        pass  # well formed; its value is what is undefined


def test_constraint_inside_seq2seq_generation(tokenizer):
    """Wired through the recipe's generate_texts: the constraint sees the target's ids only (a source id would
    not be a valid prefix and raise), and every output of a random tiny UniLM parses."""
    import torch

    from plmkit.config import ModelConfig
    from plmkit.models import build_model
    from plmkit.recipes.seq2seq import Pairs, generate_texts

    torch.manual_seed(0)
    cfg = ModelConfig(family="bert", vocab_size=tokenizer.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                      intermediate_size=32, max_position=64)
    model = build_model(cfg, with_mlm=True, application="unilm")
    pairs = Pairs(tokenizer, "unilm", 32, 10, None, 0)
    constraint = expression_constraint(tokenizer, 10)
    sources = ["鸡兔同笼，共有10个头", "一本书有120页", "甲乙两地相距300千米"]
    for beams in (1, 2):
        for text in generate_texts(model, pairs, sources, num_beams=beams, allowed_tokens=constraint):
            assert text
            try:
                evaluate_expression(text)
            except (ZeroDivision, Unsupported):
                pass
