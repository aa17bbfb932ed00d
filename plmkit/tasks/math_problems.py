"""Math word problems as seq2seq: a problem in, an arithmetic expression out, scored by executing it.

After Su Jianlin, "BERT可以上几年级了？Seq2Seq'硬刚'小学数学应用题" (https://kexue.fm/archives/7809) and
bert4keras' examples/task_seq2seq_ape210k_math_word_problem.py: a UniLM writes the expression the way a
pupil would, and it is right when its value equals the answer.

    problem ─► seq2seq (plmkit.recipes.seq2seq) ─► expression text ─► normalise ─► parse ─► exact Fraction
                        ▲ allowed_tokens: only tokens that keep a valid prefix (ExpressionConstraint)

The evaluator never calls `eval`: a recursive-descent parser computes with `fractions.Fraction`.

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/") unary)*
    unary   := "-" unary | power                     (so -2**2 = -(2**2), as in Python)
    power   := postfix (("**" | "^") unary)?         (right-associative: 2**3**2 = 2**9)
    postfix := primary "%"*                          (30% = 30/100; (1+2)% = (1+2)/100: the post's rules)
    primary := number | number "(" expr ")" | "(" expr ")"
    number  := digits ("." digits)?

The post's normalisations: spaces removed (a WordPiece decode writes "12. 5"), a leading "x=" dropped,
":" read as "/", a mixed number "1(1/2)" read as 1 + 1/2 (Ape210k's notation; the post rewrites any
"d(" as "d+("), a percentage as a fraction. Answers compare as exact fractions, and as the post's
`is_equal` does, equal after rounding both to 6 decimal places (an answer written as a decimal, 28.26
for 3.14*9, then still matches). A division by zero is an outcome of its own (`ZeroDivision`), counted
as wrong; so is an exponent that is not a small integer (`Unsupported`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from plmkit.data import iter_rows

OPERATORS = "+-*/^"
EXPRESSION_CHARS = set("0123456789.+-*/^%()")
MAX_EXPONENT = 64  # exact powers stay small; 2**10**10 must not hang the scorer
MAX_BITS = 100_000  # nor may a tower of allowed exponents
ROUND_PLACES = 6  # the post's is_equal: round(float(a), 6) == round(float(b), 6)


class ExpressionError(ValueError):
    """An expression that cannot be read: names the expression, the position and what was expected."""

    def __init__(self, expression: str, position: int, message: str) -> None:
        self.expression, self.position, self.reason = expression, position, message
        pointer = f"{expression[:position]}⟨here⟩{expression[position:]}"
        super().__init__(f"expression {expression!r}: at position {position} ({pointer!r}): {message}")


class ZeroDivision(ExpressionError):
    """The expression is well formed but divides by zero somewhere."""


class Unsupported(ExpressionError):
    """Well formed but not exactly computable here: a fractional or huge exponent."""


# ---- the evaluator ---------------------------------------------------------------------------------------------

def normalise(expression: str) -> str:
    """The post's clean-up: no whitespace, no leading "x=", ":" as "/", full-width operators as ASCII."""
    text = re.sub(r"\s+", "", expression)
    text = text.translate(str.maketrans({"×": "*", "÷": "/", "（": "(", "）": ")", "：": "/", ":": "/", "％": "%"}))
    if text[:2] in ("x=", "X="):
        text = text[2:]
    return text


_TOKEN = re.compile(r"\d+(?:\.\d+)?|\*\*|[-+*/^%()]")


def tokenize(text: str) -> list[tuple[str, int]]:
    """(token, position) for a normalised expression; an unknown character fails naming its position."""
    tokens, at = [], 0
    while at < len(text):
        m = _TOKEN.match(text, at)
        if m is None:
            if text[at] == "." or (text[at].isdigit()):
                raise ExpressionError(text, at, "a number must be digits, optionally '.' and more digits")
            raise ExpressionError(text, at, f"unexpected character {text[at]!r}; expected a number, an operator "
                                            "(+ - * / ^ **), '%' or a parenthesis")
        tokens.append((m.group(), at))
        at = m.end()
    return tokens


def _number(token: str) -> Fraction:
    return Fraction(token)  # Fraction("12.5") is exact: 25/2


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.i = text, tokenize(text), 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def where(self) -> int:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else len(self.text)

    def take(self) -> tuple[str, int]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, message: str, cls: type[ExpressionError] = ExpressionError) -> ExpressionError:
        found = self.peek()
        return cls(self.text, self.where(), f"{message}, found {'the end' if found is None else repr(found)}")

    def parse(self) -> Fraction:
        if not self.tokens:
            raise ExpressionError(self.text, 0, "the expression is empty")
        value = self.expr()
        if self.peek() is not None:
            raise self.fail("expected an operator or the end")
        return value

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            op, _ = self.take()
            right = self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "/"):
            op, at = self.take()
            right = self.unary()
            if op == "/":
                if right == 0:
                    raise ZeroDivision(self.text, at, "division by zero")
                value = value / right
            else:
                value = value * right
        return value

    def unary(self) -> Fraction:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        return self.power()

    def power(self) -> Fraction:
        base = self.postfix()
        if self.peek() in ("**", "^"):
            _, at = self.take()
            exponent = self.unary()
            if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
                raise Unsupported(self.text, at, f"the exponent must be an integer of at most {MAX_EXPONENT} in "
                                                 f"size, found {exponent}")
            if base == 0 and exponent < 0:
                raise ZeroDivision(self.text, at, "zero to a negative power")
            bits = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(int(exponent))
            if bits > MAX_BITS:  # ((9**64)**64)**64... would take the scorer minutes and gigabytes
                raise Unsupported(self.text, at, f"the power would have about {bits} bits, more than {MAX_BITS}")
            return base ** int(exponent)
        return base

    def postfix(self) -> Fraction:
        value = self.primary()
        while self.peek() == "%":
            self.take()
            value = value / 100
        return value

    def primary(self) -> Fraction:
        token = self.peek()
        if token == "(":
            return self.group()
        if token is not None and token[0].isdigit():
            self.take()
            value = _number(token)
            if self.peek() == "(":  # a mixed number 1(1/2) = 1 + 1/2 (the post's "d(" -> "d+(")
                value = value + self.group()
            return value
        raise self.fail("expected a number, '-' or '('")

    def group(self) -> Fraction:
        self.take()
        value = self.expr()
        if self.peek() != ")":
            raise self.fail("expected ')'")
        self.take()
        return value


def evaluate_expression(expression: str) -> Fraction:
    """The exact value of an arithmetic expression (after `normalise`); raises ExpressionError (ZeroDivision,
    Unsupported: its subclasses) naming the expression and the position."""
    return _Parser(normalise(expression)).parse()


def answers_match(predicted: Fraction, gold: Fraction, places: int = ROUND_PLACES) -> bool:
    """Equal as fractions, or equal after rounding both to `places` decimals (the post's is_equal)."""
    return predicted == gold or round(predicted, places) == round(gold, places)


def remove_redundant_parentheses(expression: str) -> str:
    """Drop each parenthesis pair whose removal leaves the value unchanged (the post's `remove_bucket`, a
    training-target clean-up). Judged by value, as the post does: "(2+2)*1" becomes "2+2*1" (both 4)."""
    text = normalise(expression)
    value = evaluate_expression(text)
    opened, pairs = [], []
    for i, char in enumerate(text):
        if char == "(":
            opened.append(i)
        elif char == ")":
            if not opened:
                raise ExpressionError(text, i, "')' without '('")
            pairs.append((opened.pop(), i))
    chars = list(text)
    for left, right in pairs:  # innermost first, as they close
        trial = chars.copy()
        trial[left] = trial[right] = ""
        try:
            if evaluate_expression("".join(trial)) == value:
                chars = trial
        except ExpressionError:
            pass  # "-(1)" -> "-1" reads fine; "2(3)" -> "23" would not be the same, and is kept
    return "".join(chars)


_PROBLEM_NUMBER = re.compile(r"\d+\(\d+/\d+\)|\d+/\d+|\d+(?:\.\d+)?%?")


def problem_numbers(problem: str) -> set[Fraction]:
    """The values of the numbers written in a problem (mixed numbers, fractions and percentages read as such)."""
    values = set()
    for m in _PROBLEM_NUMBER.finditer(problem.replace("（", "(").replace("）", ")")):
        try:
            values.add(evaluate_expression(m.group()))
        except ExpressionError:
            pass  # "3/0" in a problem's text is not a number we can compare with
    return values


def answer_in_problem(expression: str, problem: str) -> bool:
    """Whether the expression is a bare number that is written in the problem (a copy, not a solution)."""
    text = normalise(expression)
    if not re.fullmatch(r"\d+(?:\.\d+)?%?", text):
        return False
    return evaluate_expression(text) in problem_numbers(problem)


@dataclass(frozen=True)
class Outcome:
    """How one generated expression fared: status is "correct", "wrong", "invalid" (does not parse),
    "zero_division" or "unsupported"; only "correct" counts as right."""

    status: str
    value: Fraction | None = None
    error: str | None = None
    copied: bool = False  # a bare number taken from the problem (answer_in_problem)

    @property
    def correct(self) -> bool:
        return self.status == "correct"


def score_expression(expression: str, answer: Fraction | str, problem: str = "") -> Outcome:
    """Execute a generated expression and compare it with the answer (a Fraction or answer text)."""
    gold = answer if isinstance(answer, Fraction) else evaluate_expression(answer)
    try:
        value = evaluate_expression(expression)
    except ZeroDivision as e:
        return Outcome("zero_division", error=str(e))
    except Unsupported as e:
        return Outcome("unsupported", error=str(e))
    except ExpressionError as e:
        return Outcome("invalid", error=str(e))
    copied = bool(problem) and answer_in_problem(expression, problem)
    return Outcome("correct" if answers_match(value, gold) else "wrong", value=value, copied=copied)


def score_all(expressions: Sequence[str], answers: Sequence[Fraction | str],
              problems: Sequence[str]) -> dict[str, float]:
    """Answer accuracy and the share of each outcome over a set of generated expressions."""
    if not (len(expressions) == len(answers) == len(problems)):
        raise ValueError(f"{len(expressions)} expressions, {len(answers)} answers and {len(problems)} problems: "
                         "one of each per problem")
    outcomes = [score_expression(e, a, p) for e, a, p in zip(expressions, answers, problems)]
    n = max(len(outcomes), 1)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("correct", "wrong", "invalid", "zero_division",
                                                                  "unsupported")}
    return {"accuracy": counts["correct"] / n, **{f"{s}_share": c / n for s, c in counts.items() if s != "correct"},
            "copied_share": sum(o.copied for o in outcomes) / n, "examples": len(outcomes)}


def format_fraction(value: Fraction) -> str:
    """An answer as text the evaluator reads back: "12", "7/3", "-1/2"."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


# ---- training data: every gold expression must execute ------------------------------------------------------------

def check_problem_file(path: str | Path, *, source_col: str = "source", target_col: str = "target",
                       answer_col: str | None = "answer") -> int:
    """Check a JSONL problem file before training: every target parses (and equals the answer, when the row has
    one). The first bad row raises ValueError naming the file, the line and the expression; returns the row count."""
    path = Path(path)
    rows = 0
    for n, row in iter_rows(path, "jsonl"):  # JSON errors and non-objects are named by line there
        if not isinstance(row.get(target_col), str) or not isinstance(row.get(source_col), str):
            raise ValueError(f"{path}: line {n}: expected an object with string fields {source_col!r} and "
                             f"{target_col!r}")
        try:
            value = evaluate_expression(row[target_col])
        except ExpressionError as e:
            raise ValueError(f"{path}: line {n}: field {target_col!r}: {e}") from None
        if answer_col and row.get(answer_col) is not None:
            try:
                gold = evaluate_expression(str(row[answer_col]))
            except ExpressionError as e:
                raise ValueError(f"{path}: line {n}: field {answer_col!r}: {e}") from None
            if not answers_match(value, gold):
                raise ValueError(f"{path}: line {n}: field {target_col!r}: {row[target_col]!r} evaluates to "
                                 f"{format_fraction(value)}, but field {answer_col!r} says {row[answer_col]}")
        rows += 1
    return rows


# ---- constrained decoding ----------------------------------------------------------------------------------------
#
# A character automaton over the canonical output language (the post's equations after normalisation):
# numbers, + - * / ^ **, unary minus, parentheses, a percent sign after an operand. Mixed numbers are not
# generated (the post rewrites them to (a+b/c) in training targets). States:
#   "operand"  an operand must come (start, after an operator, "(" or unary "-")
#   "star"     after one "*": a second "*" (power) or an operand
#   "int"      inside a number's integer digits    "dot"  after its "."    "frac"  inside its decimals
#   "after"    after ")" or a number's "%"; "pct" after "%" (one "%" per operand)

_State = tuple[str, int]  # (mode, open parentheses)
_COMPLETE = ("int", "frac", "after", "pct")


def _step(state: _State, char: str) -> _State | None:
    mode, depth = state
    if mode in ("operand", "star"):
        if char.isdigit():
            return "int", depth
        if char == "(":
            return "operand", depth + 1
        if char == "-":
            return ("operand", depth) if mode == "operand" else None
        if char == "*" and mode == "star":
            return "operand", depth
        return None
    if mode == "dot":
        return ("frac", depth) if char.isdigit() else None
    if char.isdigit():
        return (mode, depth) if mode in ("int", "frac") else None
    if char == "." and mode == "int":
        return "dot", depth
    if char == "%" and mode != "pct":
        return "pct", depth
    if char == ")" and depth > 0:
        return "after", depth - 1
    if char == "*":
        return "star", depth
    if char in "+-/^":
        return "operand", depth
    return None


def _finish_cost(state: _State) -> int:
    """The fewest tokens (the end token included) that complete an expression from `state`."""
    mode, depth = state
    return (0 if mode in _COMPLETE else 1) + depth + 1


class ExpressionConstraint:
    """Next allowed token ids that keep a generated expression a valid prefix, for `generate(allowed_tokens=...)`.

    Works on the vocabulary's token strings, so a multi-character token ("12", "##5", "**") moves the automaton
    as its characters do. A "##" piece only continues a number (it joins the previous token in decoding); a
    plain digit token never follows a digit (the tokenizer writes "12" as "1", "##2"). Within `max_length`
    tokens (the end token included) the expression can always be closed: a token is allowed only if the
    fewest tokens that finish after it still fit, and the end token only when the expression is complete."""

    def __init__(self, vocab: Sequence[str], end_id: int, max_length: int) -> None:
        if max_length < 2:
            raise ValueError(f"max_length {max_length}: an expression needs at least one token and the end token")
        self.end_id, self.max_length = end_id, max_length
        self.pieces: list[tuple[int, str, bool]] = []  # (id, characters, is a "##" continuation)
        for token_id, token in enumerate(vocab):
            glued = token.startswith("##")
            chars = token[2:] if glued else token
            if chars and set(chars) <= EXPRESSION_CHARS:
                self.pieces.append((token_id, chars, glued))
        if not any(c.isdigit() for _, c, _ in self.pieces):
            raise ValueError("the vocabulary has no digit tokens: it cannot write an expression")
        self._states: dict[tuple[int, ...], _State | None] = {(): ("operand", 0)}
        self._allowed: dict[tuple[_State, int], list[int]] = {}

    def _move(self, state: _State, chars: str, glued: bool) -> _State | None:
        if glued and state[0] not in ("int", "dot", "frac"):
            return None
        if not glued and state[0] in ("int", "frac") and chars[0].isdigit():
            return None
        for char in chars:
            state = _step(state, char)
            if state is None:
                return None
        return state

    def state_of(self, ids: Sequence[int]) -> _State | None:
        """The automaton's state after these token ids (None: not a valid prefix)."""
        key = tuple(ids)
        if key in self._states:
            return self._states[key]
        before = self.state_of(key[:-1])
        state = None
        if before is not None:
            for token_id, chars, glued in self.pieces:
                if token_id == key[-1]:
                    state = self._move(before, chars, glued)
                    break
        if len(self._states) > 200_000:  # many distinct prefixes: start over rather than grow without end
            self._states = {(): ("operand", 0)}
        self._states[key] = state
        return state

    def allowed(self, ids: Sequence[int]) -> list[int]:
        """The token ids allowed after `ids` (the target's tokens so far)."""
        ids = [int(i) for i in ids]
        if self.end_id in ids:  # a finished row (greedy pads it): anything valid keeps the filter satisfiable
            return [self.end_id]
        state = self.state_of(ids)
        if state is None:
            raise ValueError(f"token ids {ids} are not a valid expression prefix; the constraint cannot continue it")
        room = self.max_length - len(ids)  # tokens left, the end token included
        key = (state, room)
        if key not in self._allowed:
            allowed = [self.end_id] if state[0] in _COMPLETE and state[1] == 0 else []
            for token_id, chars, glued in self.pieces:
                after = self._move(state, chars, glued)
                if after is not None and _finish_cost(after) <= room - 1:
                    allowed.append(token_id)
            if not allowed:  # cannot happen while room >= _finish_cost(state); kept as a clear error
                raise ValueError(f"no token completes the expression in {room} tokens from state {state}")
            self._allowed[key] = allowed
        return self._allowed[key]

    def __call__(self, index: int, ids: Sequence[int]) -> list[int]:
        """The `allowed_tokens(i, ids)` signature of plmkit.generate / generate_texts (every input alike)."""
        return self.allowed(ids.tolist() if hasattr(ids, "tolist") else ids)


def expression_constraint(tokenizer, max_length: int) -> ExpressionConstraint:
    """An ExpressionConstraint for a WordPiece-like tokenizer (its vocabulary and [SEP] end token)."""
    size = tokenizer.vocab_size if hasattr(tokenizer, "vocab_size") else len(tokenizer.vocab)
    vocab = [tokenizer.id_to_token(i) for i in range(size)]
    end = getattr(tokenizer, "sep_token_id", None)
    if end is None:
        end = tokenizer.token_to_id(tokenizer.end_token)
    return ExpressionConstraint(vocab, end, max_length)


__all__ = ["ExpressionError", "ZeroDivision", "Unsupported", "normalise", "tokenize", "evaluate_expression",
           "answers_match", "remove_redundant_parentheses", "problem_numbers", "answer_in_problem", "Outcome",
           "score_expression", "score_all", "format_fraction", "check_problem_file", "ExpressionConstraint",
           "expression_constraint"]
