"""plmkit serve: the real server in a subprocess on a loopback port, answered over HTTP and compared with the same
models called in-process; errors, limits, streaming, graceful shutdown; the batcher on its own."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

httpx = pytest.importorskip("httpx", reason="the serve tests talk HTTP with httpx: pip install -e '.[test]'")
pytest.importorskip("fastapi", reason="plmkit serve needs the serve extra: pip install -e '.[serve]'")

import plmkit  # noqa: E402
from plmkit.cli import main  # noqa: E402
from plmkit.config import ModelConfig  # noqa: E402
from plmkit.data import build_char_vocab  # noqa: E402
from plmkit.models import build_model, get_family  # noqa: E402
from plmkit.recipes.fewshot import FewShotConfig, run_fewshot  # noqa: E402
from plmkit.serve.batching import Batcher, Overloaded, TimedOut  # noqa: E402
from plmkit.similarity.retrieval import build_sentence_index  # noqa: E402
from plmkit.tokenizers import WordPieceTokenizer  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ---- tiny model directories of every kind serve answers for, built in seconds -------------------------------

CHARS = "这个东西我们他们的了是在有好棒赞喜欢满意差烂坏讨厌失望很不"
SENTENCES = ["今天天气很好", "这个电影很好看", "我喜欢这本书", "物流太慢了", "质量很差", "服务态度不好",
             "价格便宜实惠", "下雨了带伞"]
DIGITS = "零一二三四五六七八九"


def classifier_dir(root: Path) -> Path:
    """A random tiny BERT classifier laid out as `plmkit finetune` writes it (out/model, labels in config.json)."""
    torch.manual_seed(0)
    vocab = build_char_vocab([CHARS], min_count=1)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=48, max_position=64)
    model = build_model(cfg, num_labels=3)
    model.config.labels = ["negative", "neutral", "positive"]
    plmkit.save_pretrained(model, root / "clf" / "model", tokenizer=WordPieceTokenizer(vocab))
    return root / "clf"


def seq2seq_dir(root: Path) -> Path:
    """A random tiny UniLM generator laid out as `plmkit seq2seq` writes it (model/ with seq2seq.json)."""
    torch.manual_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *DIGITS, "十", "百"]
    cfg = get_family("bert").tiny().replace(vocab_size=len(vocab), dropout=0.0, attention_dropout=0.0)
    out = root / "gen" / "model"
    plmkit.save_pretrained(build_model(cfg, with_mlm=True), out, tokenizer=WordPieceTokenizer(vocab))
    (out / "seq2seq.json").write_text(json.dumps({"mode": "unilm", "max_source_length": 16, "max_target_length": 12,
                                                  "generation": {"num_beams": 2}}), encoding="utf-8")
    return root / "gen"


def index_dir(root: Path) -> Path:
    """A `plmkit similar` index over SENTENCES with the embedded model and BERT-whitening to 6 dimensions (8 sentences span 7)."""
    return build_sentence_index(embedded_model_dir(), SENTENCES, root / "index", whiten_dim=6, progress=False,
                                device="cpu")


def fewshot_dir(root: Path) -> Path:
    """A zero-shot `plmkit pet` output on the embedded model (its default patterns and words)."""
    run_fewshot(embedded_model_dir(), root / "pet", cfg=FewShotConfig(device="cpu"), progress=False)
    return root / "pet"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`plmkit serve` in a subprocess; `url` once /healthz answers."""

    def __init__(self, models: list[str], *options: str, log: Path) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "plmkit.cli", "serve", "--port", str(port), "--device", "cpu", *options]
        for m in models:
            args += ["--model", m]
        self.proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"plmkit serve exited with {self.proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"plmkit serve did not answer /healthz within 120 s:\n{log.read_text()}")

    def post(self, route: str, body, **kw) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/{route}", json=body, timeout=30, **kw)

    def stop(self) -> bool:
        """SIGTERM, then whether the server shut down cleanly (uvicorn re-raises the signal once it has)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30) in (0, -signal.SIGTERM) and \
            "Application shutdown complete" in self.log.read_text()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return {"clf": classifier_dir(root), "gen": seq2seq_dir(root),
            "index": index_dir(root), "pet": fewshot_dir(root), "root": root}


@pytest.fixture(scope="module")
def server(dirs):
    s = Server([f"clf={dirs['clf']}", f"pet={dirs['pet']}", f"gen={dirs['gen']}", f"index={dirs['index']}",
                f"enc={embedded_model_dir()}"], "--max-wait-ms", "20", log=dirs["root"] / "server.log")
    yield s
    assert s.stop()
    assert "Traceback" not in s.log.read_text()  # no request made the server fail


TEXTS = ["这个东西好棒我喜欢", "差", "他们的了是在有讨厌失望很不满意的东西", "很好", "不", "我们"]


def _concurrently(fn, args: list) -> list:
    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(fn, args))


def test_models_and_health(server):
    models = {m["name"]: m for m in httpx.get(server.url + "/v1/models").json()["models"]}
    assert {n: m["routes"] for n, m in models.items()} == {
        "clf": ["/v1/classify"], "pet": ["/v1/classify"], "gen": ["/v1/generate"],
        "index": ["/v1/embed", "/v1/similar"], "enc": ["/v1/embed"]}
    assert models["clf"]["labels"] == ["negative", "neutral", "positive"] and models["index"]["whitening"] is True
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/classify", "/v1/embed", "/v1/similar", "/v1/generate"} <= set(spec["paths"])
    assert "swagger" in httpx.get(server.url + "/docs").text.lower()


def test_classify_matches_in_process(server, dirs):
    from plmkit.recipes.fewshot import FewShotClassifier
    from plmkit.recipes.finetune import TextClassifier

    for name, clf in (("clf", TextClassifier(dirs["clf"], device="cpu")),
                      ("pet", FewShotClassifier(dirs["pet"], device="cpu"))):
        # one text per request, sent together: they share batches on the server
        answers = _concurrently(lambda t: server.post("classify", {"texts": [t], "model": name}), TEXTS)
        expected = clf.predict(TEXTS)
        for r, (label, probs) in zip(answers, expected):
            assert r.status_code == 200, r.text
            got = r.json()["results"][0]
            assert got["label"] == label and list(got["probs"]) == clf.labels
            assert torch.allclose(torch.tensor(list(got["probs"].values())), torch.tensor(probs), atol=1e-5)
    pairs = server.post("classify", {"texts": TEXTS[:2], "pairs": TEXTS[2:4], "model": "clf"}).json()["results"]
    expected = TextClassifier(dirs["clf"], device="cpu").predict(TEXTS[:2], TEXTS[2:4])
    assert [p["label"] for p in pairs] == [label for label, _ in expected]


def test_embed_and_similar_match_in_process(server, dirs):
    import plmkit
    from plmkit.sentence import encode_sentences
    from plmkit.similarity.retrieval import query_sentence_index

    enc = plmkit.from_pretrained(embedded_model_dir())
    tok = plmkit.load_tokenizer(embedded_model_dir())
    answers = _concurrently(lambda t: server.post("embed", {"texts": [t], "model": "enc"}), TEXTS)
    got = torch.tensor([r.json()["vectors"][0] for r in answers])
    assert (got - encode_sentences(enc, tok, TEXTS, max_length=128)).abs().max() <= 1e-5
    # the index's embed is whitened as the index saved it (6-d), the same vectors the index was built from
    vectors = torch.tensor(server.post("embed", {"texts": TEXTS, "model": "index"}).json()["vectors"])
    expected = encode_sentences(enc, tok, TEXTS, whitening=dirs["index"] / "whitening.safetensors")
    assert vectors.shape == (len(TEXTS), 6) and (vectors - expected).abs().max() <= 1e-5
    hits = server.post("similar", {"texts": TEXTS[:3], "k": 3}).json()["results"]
    for row, ref in zip(hits, query_sentence_index(dirs["index"], TEXTS[:3], k=3, device="cpu")):
        assert [h["row"] for h in row] == [r for r, _, _ in ref]
        assert [h["sentence"] for h in row] == [s for _, s, _ in ref]
        assert max(abs(h["score"] - s) for h, (_, _, s) in zip(row, ref)) <= 1e-5


def _events(response) -> list[tuple[str, dict]]:
    out = []
    for block in response.text.strip().split("\n\n"):
        kind, data = block.split("\n")
        out.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_generate_and_stream_match_in_process(server, dirs):
    from plmkit.recipes.seq2seq import Seq2SeqGenerator

    gen = Seq2SeqGenerator(dirs["gen"], device="cpu")
    sources = ["一二三", "四五", "六七八九"]
    answers = _concurrently(lambda s: server.post("generate", {"texts": [s]}), sources)
    assert [r.json()["results"][0] for r in answers] == [gen.generate([s])[0] for s in sources]  # saved: 2 beams
    assert server.post("generate", {"texts": sources, "num_beams": 1}).json()["results"] == \
        gen.generate(sources, num_beams=1)
    for s in sources:
        with httpx.stream("POST", server.url + "/v1/generate", json={"texts": [s], "stream": True}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            r.read()
        events = _events(r)
        expected = gen.generate([s], num_beams=1)[0]
        assert events[-1] == ("done", {"model": "gen", "text": expected})
        tokens = [data for kind, data in events if kind == "token"]
        assert "".join(t["delta"] for t in tokens) == expected and tokens[-1]["text"] == expected
        assert len(tokens) >= min(2, len(expected))  # it arrives piece by piece
    sampled = [server.post("generate", {"texts": ["一二三"], "do_sample": True, "seed": 7, "num_beams": 1}).json()
               for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seeded request decodes alone, so the seed reproduces it
    assert sampled[0]["results"] == gen.generate(["一二三"], do_sample=True, seed=7, num_beams=1)


def test_errors_are_json_with_the_right_status(server, dirs):
    def check(r, status, words):
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["status"] == status and words in error["message"] and "Traceback" not in r.text

    check(httpx.post(server.url + "/v1/classify", content=b'{"texts": ["x"', timeout=10,
                     headers={"Content-Type": "application/json"}), 400, "not valid JSON")
    check(httpx.post(server.url + "/v1/classify", content=b'{"texts": ["x"]}', timeout=10), 400, "Content-Type")
    check(server.post("classify", {"texts": [1], "model": "clf"}), 422, "texts.0")
    check(server.post("classify", {"text": "x", "model": "clf"}), 422, "texts")
    check(server.post("classify", {"texts": ["x"], "model": "clf", "topk": 2}), 422, "topk")
    check(server.post("classify", {"texts": ["x"]}), 422, "clf, pet")
    check(server.post("classify", {"texts": ["x"], "model": "gen"}), 422, "seq2seq model")
    check(server.post("classify", {"texts": ["x"], "model": "nope"}), 422, "no model is named so")
    check(server.post("classify", {"texts": [], "model": "clf"}), 422, "at least one")
    check(server.post("classify", {"texts": ["x", "y"], "pairs": ["z"], "model": "clf"}), 422, "pairs")
    check(server.post("similar", {"texts": ["x"], "k": 0}), 422, "k")
    check(server.post("generate", {"texts": ["一", "二"], "stream": True}), 422, "one text")
    check(server.post("generate", {"texts": ["一"], "stream": True, "num_beams": 3}), 422, "num_beams 1")
    check(server.post("generate", {"texts": ["一"], "temperature": -1}), 422, "temperature")
    check(httpx.get(server.url + "/v1/nothing"), 404, "Not Found")
    # a malformed request sent among good ones is refused alone; the good ones get their own answers
    bodies = [{"texts": [t], "model": "clf"} for t in TEXTS] + [{"texts": [3], "model": "clf"}, {"texts": []}]
    answers = _concurrently(lambda b: server.post("classify", b), bodies)
    assert [r.status_code for r in answers] == [200] * len(TEXTS) + [422, 422]
    from plmkit.recipes.finetune import TextClassifier
    expected = TextClassifier(dirs["clf"], device="cpu").predict(TEXTS)
    assert [r.json()["results"][0]["label"] for r in answers[:len(TEXTS)]] == [label for label, _ in expected]


def test_limits_overload_and_timeout(dirs):
    s = Server([str(dirs["clf"])], "--max-items", "4", "--max-text-chars", "50", "--max-body-bytes", "2000",
               "--max-wait-ms", "1500", "--request-timeout", "0.5", "--max-queue", "1", log=dirs["root"] / "b.log")
    try:
        r = s.post("classify", {"texts": ["x"] * 5})
        assert r.status_code == 413 and "max_items 4" in r.json()["error"]["message"]
        r = s.post("classify", {"texts": ["ok", "x" * 51]})
        assert r.status_code == 413 and "texts.1: 51 characters" in r.json()["error"]["message"]
        r = s.post("classify", {"texts": ["x" * 40] * 4, "pad": "y" * 3000})
        assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]["message"]
        r = s.post("generate", {"texts": ["x"]})
        assert r.status_code == 404 and "no loaded model offers /v1/generate" in r.json()["error"]["message"]
        # the batch waits 1.5 s for company, longer than the 0.5 s timeout; the queue holds one text
        first = threading.Thread(target=lambda: results.append(s.post("classify", {"texts": ["a"]})))
        results: list = []
        first.start()
        time.sleep(0.2)
        second = s.post("classify", {"texts": ["b"]})
        first.join()
        assert second.status_code == 503 and "max_queue 1" in second.json()["error"]["message"]
        assert results[0].status_code == 503 and "request_timeout" in results[0].json()["error"]["message"]
    finally:
        assert s.stop()


def test_graceful_shutdown_lets_in_flight_requests_finish(dirs):
    s = Server([str(dirs["clf"])], "--max-wait-ms", "1500", log=dirs["root"] / "c.log")
    results: list = []
    t = threading.Thread(target=lambda: results.append(s.post("classify", {"texts": ["好棒"]})))
    t.start()
    time.sleep(0.5)  # the request waits in its batch for 1.5 s
    s.proc.send_signal(signal.SIGTERM)
    t.join()
    assert s.stop()
    assert results[0].status_code == 200 and results[0].json()["results"][0]["label"] in (
        "negative", "neutral", "positive")
    with pytest.raises(httpx.TransportError):  # no longer listening
        httpx.get(s.url + "/healthz", timeout=2)


def test_bad_model_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", "--model", f"a={embedded_model_dir()}", "--model", f"a={embedded_model_dir()}"]) == 2
    assert "taken" in capsys.readouterr().err


# ---- the batcher alone --------------------------------------------------------------------------------------

def _batcher_run(coro):
    return asyncio.run(coro)


def test_batcher_groups_concurrent_requests_and_isolates_a_failing_one():
    calls: list[list] = []

    def run(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [x.upper() for x in items]

    async def scenario():
        b = Batcher(run, executor=ThreadPoolExecutor(1), max_batch_size=4, max_wait_s=0.2, max_queue=100)
        b.start()
        jobs = [b.submit([x], timeout=5) for x in ("a", "b", "bad", "c", "d", "e")]
        out = await asyncio.gather(*jobs, return_exceptions=True)
        await b.stop()
        return out

    out = _batcher_run(scenario())
    assert out[:2] == [["A"], ["B"]] and isinstance(out[2], ValueError) and out[3:] == [["C"], ["D"], ["E"]]
    assert calls[0] == ["a", "b", "bad", "c"]  # one batch of max_batch_size ...
    assert calls[1:5] == [["a"], ["b"], ["bad"], ["c"]]  # ... that failed, so each request ran alone
    assert calls[5] == ["d", "e"]


def test_batcher_max_batch_one_runs_requests_one_at_a_time_and_times_out():
    calls: list[list] = []

    def run(items):
        calls.append(list(items))
        time.sleep(0.05)
        return items

    async def scenario():
        b = Batcher(run, executor=ThreadPoolExecutor(1), max_batch_size=1, max_wait_s=1.0, max_queue=2)
        b.start()
        out = await asyncio.gather(*(b.submit([i], timeout=5) for i in range(2)))
        slow = Batcher(run, executor=ThreadPoolExecutor(1), max_batch_size=8, max_wait_s=1.0, max_queue=1)
        slow.start()
        errors = await asyncio.gather(slow.submit([1], timeout=0.1), slow.submit([2], timeout=5),
                                      return_exceptions=True)
        await b.stop()
        await slow.stop()
        return out, errors

    out, errors = _batcher_run(scenario())
    assert out == [[0], [1]] and calls[:2] == [[0], [1]]  # max batch 1 does not wait for company
    assert isinstance(errors[0], TimedOut) and isinstance(errors[1], Overloaded)


# ---- the page, in a real headless browser ----------------------------------------------------------------------

def _browser():
    """Selenium's headless Chrome on Debian's chromium + chromium-driver, or a skip saying how to get them."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the test extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no chromium / chromedriver on PATH: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1400"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service
    return webdriver.Chrome(service=Service(driver), options=options)  # no browser is downloaded


def test_page_in_a_headless_browser(server, dirs, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from plmkit.recipes.finetune import TextClassifier
    from plmkit.recipes.seq2seq import Seq2SeqGenerator

    browser = _browser()
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: b.find_elements(By.ID, "generate-go"))  # built from /v1/models
        assert {s.get_attribute("id") for s in browser.find_elements(By.TAG_NAME, "section")} == {
            "classify", "embed", "similar", "generate"}
        # classify: type a text, submit, see the label the model gives in-process
        Select(browser.find_element(By.ID, "classify-model")).select_by_visible_text("clf")
        browser.find_element(By.ID, "classify-text").send_keys("这个东西好棒")
        browser.find_element(By.ID, "classify-go").click()
        label = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#classify-out .label"))[0].text
        assert label == TextClassifier(dirs["clf"], device="cpu").predict(["这个东西好棒"])[0][0]
        # similar: the nearest sentence listed
        browser.find_element(By.ID, "similar-text").send_keys("天气很好")
        browser.find_element(By.ID, "similar-go").click()
        wait.until(lambda b: "今天天气很好" in b.find_element(By.ID, "similar-out").text)
        # generate, streamed: the text as it grows, then done
        browser.find_element(By.ID, "generate-text").send_keys("一二三")
        browser.find_element(By.ID, "generate-go").click()
        wait.until(lambda b: "(done)" in b.find_element(By.ID, "generate-out").text)
        expected = Seq2SeqGenerator(dirs["gen"], device="cpu").generate(["一二三"], num_beams=1)[0]
        assert browser.find_element(By.ID, "generate-out").text == f"{expected} (done)"
        # an error shows as the server's message
        browser.find_element(By.ID, "embed-text").send_keys("x" * 5000)
        browser.find_element(By.ID, "embed-go").click()
        wait.until(lambda b: "413" in b.find_element(By.ID, "embed-out").text)
        browser.save_screenshot(str(tmp_path / "serve_page.png"))
        assert (tmp_path / "serve_page.png").stat().st_size > 10_000
    finally:
        browser.quit()
