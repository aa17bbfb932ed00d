"""`plmkit export --format onnx`: onnxruntime runs the exported graph as plmkit's own forward does (<= 1e-4,
max abs) at batch sizes and lengths other than the traced one, with padding; encoders with and without a
pooler, a fine-tuned classifier, the embedded model, every encoder family; models with no ONNX path refused
in one line. The oracle is plmkit's forward on the directory as `from_pretrained` loads it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import plmkit  # noqa: E402
from plmkit.cli import main  # noqa: E402
from plmkit.data import build_char_vocab  # noqa: E402
from plmkit.export import ExportConfig, ExportError, export_onnx  # noqa: E402
from plmkit.models import build_model, get_family  # noqa: E402
from plmkit.recipes.finetune import TextClassifier  # noqa: E402
from plmkit.tokenizers import WordPieceTokenizer, load_tokenizer  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402

TEXTS = ["今天天气很好", "这个电影很好看我喜欢", "差", "物流太慢了但是价格便宜实惠质量也不错", "服务态度不好",
         "下雨了带伞", "我们喜欢这本书的故事", "好"]
BATCHES = [TEXTS[:1], TEXTS[1:4], TEXTS]  # 1, 3 and 8 rows of unequal lengths: padding in all but the first
TOL = 1e-4


def _vocab() -> list[str]:
    return build_char_vocab(TEXTS, min_count=1)


def _tiny_bert_dir(path: Path, **options) -> Path:
    torch.manual_seed(0)
    vocab = _vocab()
    cfg = get_family("bert").tiny().replace(vocab_size=len(vocab), labels=options.pop("labels", None))
    plmkit.save_pretrained(build_model(cfg, **options), path, tokenizer=WordPieceTokenizer(vocab))
    return path


def _session(out: Path):
    return ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])


def _run(session, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {n: batch[n].numpy() for n in names})))


def _max_diff(got: np.ndarray, want: torch.Tensor) -> float:
    assert got.shape == tuple(want.shape)
    return float(np.abs(got - want.numpy()).max())


def _check_encoder(model_dir: Path, out: Path, with_pool: bool, batches=BATCHES, max_length=None) -> None:
    session = _session(out)
    model = plmkit.from_pretrained(model_dir, with_pool=with_pool)
    tokenizer = load_tokenizer(out)  # the copied tokenizer files
    for texts in batches:
        batch = tokenizer(texts, max_length=max_length)
        got = _run(session, batch)
        with torch.no_grad():
            want = model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                         attention_mask=batch["attention_mask"])
        assert _max_diff(got["last_hidden_state"], want.last_hidden_state) <= TOL
        assert ("pooled_output" in got) == with_pool
        if with_pool:
            assert _max_diff(got["pooled_output"], want.pooled_output) <= TOL


def test_tiny_bert_with_pooler_matches_at_other_batch_sizes_and_lengths(tmp_path):
    model_dir = _tiny_bert_dir(tmp_path / "m", with_pool=True)
    info = export_onnx(model_dir, tmp_path / "onnx")
    assert info["max_abs_diff"] <= TOL
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [
        "config.json", "model.onnx", "onnx.json", "tokenizer_config.json", "vocab.txt"]
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    onnx.checker.check_model(graph)
    for tensor in list(graph.graph.input) + [o for o in graph.graph.output if o.name == "last_hidden_state"]:
        dims = [d.dim_param for d in tensor.type.tensor_type.shape.dim[:2]]
        assert dims == ["batch", "sequence"], (tensor.name, dims)  # named, not fixed at the traced 2 x 7
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    # 1, 3, 8 rows with padding; a pair (segments 0 and 1); and the longest sequence the positions allow
    pair = load_tokenizer(model_dir)(TEXTS[:3], TEXTS[3:6])
    _check_encoder(model_dir, tmp_path / "onnx", with_pool=True)
    _check_encoder(model_dir, tmp_path / "onnx", with_pool=True, batches=[TEXTS[3:4] * 2 + ["好"]], max_length=40)
    assert pair["token_type_ids"].max() == 1
    session, model = _session(tmp_path / "onnx"), plmkit.from_pretrained(model_dir, with_pool=True)
    with torch.no_grad():
        want = model(pair["input_ids"], token_type_ids=pair["token_type_ids"], attention_mask=pair["attention_mask"])
    assert _max_diff(_run(session, pair)["last_hidden_state"], want.last_hidden_state) <= TOL


def test_an_encoder_without_a_pooler_gives_the_hidden_states_only(tmp_path):
    model_dir = _tiny_bert_dir(tmp_path / "m")
    info = export_onnx(model_dir, tmp_path / "onnx")
    assert list(info["outputs"]) == ["last_hidden_state"]
    _check_encoder(model_dir, tmp_path / "onnx", with_pool=False)


def test_a_finetuned_classifier_gives_logits_and_the_probabilities_predict_gives(tmp_path):
    labels = ["negative", "neutral", "positive"]
    model_dir = _tiny_bert_dir(tmp_path / "clf" / "model", num_labels=3, labels=labels)
    main(["export", "--model", str(tmp_path / "clf"), "--out", str(tmp_path / "onnx")])  # the finetune output dir
    info = json.loads((tmp_path / "onnx" / "onnx.json").read_text(encoding="utf-8"))
    assert info["task"] == "classification" and info["labels"] == labels
    assert list(info["outputs"]) == ["logits", "probabilities"]
    assert json.loads((tmp_path / "onnx" / "config.json").read_text(encoding="utf-8"))["id2label"]["2"] == "positive"
    session, tokenizer = _session(tmp_path / "onnx"), load_tokenizer(tmp_path / "onnx")
    model = plmkit.from_pretrained(model_dir)
    predicted = TextClassifier(tmp_path / "clf").predict(TEXTS)
    for texts in BATCHES:
        batch = tokenizer(texts)
        got = _run(session, batch)
        with torch.no_grad():
            logits = model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                           attention_mask=batch["attention_mask"]).label_logits
        assert _max_diff(got["logits"], logits) <= TOL
    got = _run(session, tokenizer(TEXTS))
    assert _max_diff(got["probabilities"], torch.tensor([p for _, p in predicted])) <= TOL
    assert [labels[i] for i in got["probabilities"].argmax(-1)] == [label for label, _ in predicted]


def test_the_embedded_model_matches(tmp_path):
    out = tmp_path / "onnx"
    main(["export", "--model", str(embedded_model_dir()), "--out", str(out)])
    _check_encoder(embedded_model_dir(), out, with_pool=True,
                   batches=BATCHES + [[TEXTS[3] * 8, TEXTS[2]]])  # 8 x 19 characters: a long row and a short one


@pytest.mark.parametrize("family", ["roberta", "albert", "electra", "nezha", "roformer", "roformer_v2"])
def test_every_encoder_family_exports(tmp_path, family):
    """Families with other position schemes (RoBERTa's padding-aware table, NEZHA's relative positions, RoFormer's
    rotary) and layouts (ALBERT's shared block, ELECTRA's projection); export_onnx checks against plmkit's forward
    at three shapes, and this test at three more."""
    torch.manual_seed(0)
    vocab = _vocab()
    cfg = get_family(family).tiny().replace(vocab_size=len(vocab))
    with_pool = family not in ("electra", "roformer_v2")  # neither release has a pooler
    plmkit.save_pretrained(build_model(cfg, with_pool=with_pool), tmp_path / "m", tokenizer=WordPieceTokenizer(vocab))
    info = export_onnx(tmp_path / "m", tmp_path / "onnx")
    assert info["family"] == family and info["max_abs_diff"] <= TOL
    _check_encoder(tmp_path / "m", tmp_path / "onnx", with_pool=with_pool)


def test_the_export_runs_with_onnxruntime_and_tokenizers_alone(tmp_path):
    """A user's process: no torch, no plmkit; Hugging Face tokenizers reads the copied vocab.txt."""
    model_dir = _tiny_bert_dir(tmp_path / "m", with_pool=True)
    export_onnx(model_dir, tmp_path / "onnx")
    script = f"""
import json, sys
import numpy as np, onnxruntime
from tokenizers import BertWordPieceTokenizer
out = {str(tmp_path / 'onnx')!r}
info = json.load(open(out + "/onnx.json"))
tok = BertWordPieceTokenizer(out + "/vocab.txt", lowercase=True)
tok.enable_padding(pad_id={0}, pad_token="[PAD]")
enc = tok.encode_batch({TEXTS!r})
feed = {{"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
         "token_type_ids": [e.type_ids for e in enc]}}
session = onnxruntime.InferenceSession(out + "/" + info["file"], providers=["CPUExecutionProvider"])
got = session.run(None, {{n: np.array(feed[n], dtype=np.int64) for n in info["inputs"]}})
np.save({str(tmp_path / 'hidden.npy')!r}, got[0])
assert "torch" not in sys.modules and "plmkit" not in sys.modules, "a plain runtime process imported torch"
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    batch = load_tokenizer(model_dir)(TEXTS)
    with torch.no_grad():
        want = plmkit.from_pretrained(model_dir, with_pool=True)(
            batch["input_ids"], token_type_ids=batch["token_type_ids"], attention_mask=batch["attention_mask"])
    assert _max_diff(np.load(tmp_path / "hidden.npy"), want.last_hidden_state) <= TOL


@pytest.mark.parametrize("family,what", [("gpt", "decoder-only language model"), ("t5.1.1", "encoder-decoder")])
def test_a_model_with_no_onnx_path_is_one_line_from_the_cli(tmp_path, capsys, family, what):
    torch.manual_seed(0)
    plmkit.save_pretrained(build_model(get_family(family).tiny()), tmp_path / "m")
    code = main(["export", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "onnx")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("plmkit export: error: ") and what in err, err
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "onnx.partial").exists()


def test_an_existing_output_needs_overwrite_and_a_bad_option_is_named(tmp_path, capsys):
    model_dir = _tiny_bert_dir(tmp_path / "m")
    (tmp_path / "onnx").mkdir()
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "onnx")]) == 2
    assert "already exists" in capsys.readouterr().err
    main(["export", "--model", str(model_dir), "--out", str(tmp_path / "onnx"), "--overwrite"])
    assert (tmp_path / "onnx" / "model.onnx").exists() and not (tmp_path / "onnx.partial").exists()
    with pytest.raises(ExportError, match="opset"):
        ExportConfig(opset=9)
    assert main(["export", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")]) == 2
    assert "does not exist" in capsys.readouterr().err
