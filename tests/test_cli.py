"""The plmkit command line: each subcommand wired to its recipe, with clear errors."""
import json
from pathlib import Path


import plmkit
from plmkit.cli import main
from plmkit.config import ModelConfig
from plmkit.data import build_char_vocab
from plmkit.models import build_model
from plmkit.tokenizers import WordPieceTokenizer

CLUE = Path(__file__).parent / "fixtures" / "clue"


def _tiny(path, texts):
    vocab = build_char_vocab(texts, min_count=1)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=48, max_position=64)
    plmkit.save_pretrained(build_model(cfg, with_mlm=True, with_pool=True), path, tokenizer=WordPieceTokenizer(vocab))
    return path


def test_clue_command_writes_the_submission(tmp_path):
    model = _tiny(tmp_path / "m", [p.read_text(encoding="utf-8") for p in (CLUE / "afqmc").rglob("*.json")])
    code = main(["clue", "afqmc", "--model", str(model), "--data", str(CLUE), "--out", str(tmp_path / "out"),
                 "--max-steps", "2", "--batch-size", "2", "--precision", "fp32"])
    assert code == 0
    rows = [json.loads(l) for l in (tmp_path / "out" / "afqmc_predict.json").read_text().splitlines()]
    test_rows = [json.loads(l) for l in (CLUE / "afqmc" / "test.json").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in test_rows]
    assert all(r["label"] in ("0", "1") for r in rows)


def test_similar_indexes_and_queries(tmp_path, capsys):
    sentences = ["北京是中国的首都", "今天天气很好", "我喜欢吃苹果"]
    (tmp_path / "s.txt").write_text("\n".join(sentences), encoding="utf-8")
    model = _tiny(tmp_path / "m", sentences)
    assert main(["similar", "--index", str(tmp_path / "idx"), "--index-from", str(tmp_path / "s.txt"),
                 "--model", str(model), "--query", "今天天气很好", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "1.0000  [1] 今天天气很好" in out  # a sentence is its own nearest neighbour (cosine 1)


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
