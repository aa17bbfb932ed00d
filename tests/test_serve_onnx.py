"""plmkit serve --runtime onnx: the real server in a subprocess on loopback, classify and embed answered by
onnxruntime and compared with plmkit's torch forward in-process; what the ONNX runtime cannot serve is refused
with an error that names it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

httpx = pytest.importorskip("httpx", reason="the serve tests talk HTTP with httpx: pip install -e '.[test]'")
pytest.importorskip("fastapi", reason="plmkit serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("onnxruntime", reason="--runtime onnx needs onnxruntime: pip install -e '.[export]'")

import plmkit  # noqa: E402
from plmkit.cli import main  # noqa: E402
from plmkit.config import ModelConfig  # noqa: E402
from plmkit.data import build_char_vocab  # noqa: E402
from plmkit.export import export_onnx  # noqa: E402
from plmkit.models import build_model  # noqa: E402
from plmkit.recipes.finetune import TextClassifier  # noqa: E402
from plmkit.sentence import encode_sentences  # noqa: E402
from plmkit.serve.config import ServeConfig  # noqa: E402
from plmkit.serve.models import load_model  # noqa: E402
from plmkit.tokenizers import WordPieceTokenizer  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402
from test_serve import CHARS, TEXTS, Server, _concurrently, classifier_dir, seq2seq_dir  # noqa: E402


def encoder_dir(root: Path, with_pool: bool) -> Path:
    """A random tiny BERT encoder, with or without a pooler in its checkpoint."""
    torch.manual_seed(1)
    vocab = build_char_vocab([CHARS], min_count=1)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=48, max_position=64)
    out = root / ("enc_pool" if with_pool else "enc_nopool")
    plmkit.save_pretrained(build_model(cfg, with_pool=with_pool), out, tokenizer=WordPieceTokenizer(vocab))
    return out


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_onnx")
    clf = classifier_dir(root)
    export_onnx(clf, root / "clf_onnx")  # an export given as --model, recognised by its onnx.json
    return {"clf": clf, "clf_onnx": root / "clf_onnx", "gen": seq2seq_dir(root), "root": root}


@pytest.fixture(scope="module")
def server(dirs):
    s = Server([f"clf={dirs['clf']}", f"clfx={dirs['clf_onnx']}", f"enc={embedded_model_dir()}",
                f"gen={dirs['gen']}"], "--runtime", "onnx", "--max-wait-ms", "20",
               log=dirs["root"] / "server.log")
    yield s
    assert s.stop()
    assert "Traceback" not in s.log.read_text()


def test_runtime_of_each_model_is_reported(server, dirs):
    models = {m["name"]: m for m in httpx.get(server.url + "/v1/models").json()["models"]}
    assert {n: (m["runtime"], m["routes"]) for n, m in models.items()} == {
        "clf": ("onnxruntime", ["/v1/classify"]), "clfx": ("onnxruntime", ["/v1/classify"]),
        "enc": ("onnxruntime", ["/v1/embed"]), "gen": ("torch", ["/v1/generate"])}
    assert models["clf"]["onnx"] == "at startup" and models["clfx"]["onnx"] == str(dirs["clf_onnx"])
    log = server.log.read_text()
    assert "model gen keeps the torch runtime" in log and "model clf keeps" not in log


def test_classify_matches_torch_in_process(server, dirs):
    clf = TextClassifier(dirs["clf"], device="cpu")  # plmkit's own forward: the reference
    expected = clf.predict(TEXTS)
    for name in ("clf", "clfx"):
        answers = _concurrently(lambda t: server.post("classify", {"texts": [t], "model": name}), TEXTS)
        for r, (label, probs) in zip(answers, expected):
            assert r.status_code == 200, r.text
            got = r.json()["results"][0]
            assert got["label"] == label and list(got["probs"]) == clf.labels
            assert (torch.tensor(list(got["probs"].values())) - torch.tensor(probs)).abs().max() <= 1e-4
    pairs = server.post("classify", {"texts": TEXTS[:3], "pairs": TEXTS[3:], "model": "clf"}).json()["results"]
    expected = clf.predict(TEXTS[:3], TEXTS[3:])
    assert [p["label"] for p in pairs] == [label for label, _ in expected]
    assert max(abs(a - b) for p, (_, probs) in zip(pairs, expected)
               for a, b in zip(p["probs"].values(), probs)) <= 1e-4


def test_embed_matches_torch_in_process(server):
    enc, tok = plmkit.from_pretrained(embedded_model_dir()), plmkit.load_tokenizer(embedded_model_dir())
    answers = _concurrently(lambda t: server.post("embed", {"texts": [t], "model": "enc"}), TEXTS)
    got = torch.tensor([r.json()["vectors"][0] for r in answers])
    expected = encode_sentences(enc, tok, TEXTS, max_length=128)  # mean pooling, normalised: serve's default
    assert got.shape == expected.shape and (got - expected).abs().max() <= 1e-4
    together = torch.tensor(server.post("embed", {"texts": TEXTS, "model": "enc"}).json()["vectors"])
    assert (together - expected).abs().max() <= 1e-4  # padded in one batch: the same vectors


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_each_pooling_matches_torch(tmp_path, pooling):
    path = encoder_dir(tmp_path, with_pool=True)
    served = load_model("enc", path, ServeConfig(runtime="onnx", pooling=pooling))
    assert served.info["runtime"] == "onnxruntime"
    model = plmkit.from_pretrained(path, with_pool=pooling == "pooler")
    expected = encode_sentences(model, plmkit.load_tokenizer(path), TEXTS, pooling=pooling, max_length=128)
    got = torch.tensor(served.routes["embed"](TEXTS))
    assert (got - expected).abs().max() <= 1e-4


def test_what_onnx_cannot_serve_is_a_clear_error(tmp_path, capsys):
    enc = encoder_dir(tmp_path, with_pool=False)
    assert main(["serve", "--model", str(enc), "--runtime", "onnx", "--pooling", "first_last_mean"]) == 2
    err = capsys.readouterr().err
    assert "first_last_mean" in err and "--runtime torch" in err and "Traceback" not in err
    assert main(["serve", "--model", str(enc), "--runtime", "onnx", "--pooling", "pooler"]) == 2
    err = capsys.readouterr().err
    assert "pooled_output" in err and "no pooler" in err
    assert main(["serve", "--model", str(enc), "--runtime", "onnx", "--precision", "bf16"]) == 2
    assert "precision 'bf16'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="runs on the CPU"):
        ServeConfig(runtime="onnx", device="cuda")


def test_help_says_which_routes_onnx_covers(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--runtime {torch,onnx}" in text and "generate keep torch" in text
