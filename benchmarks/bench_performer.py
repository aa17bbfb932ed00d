"""Performer FAVOR+ (arXiv:2009.14794; kexue.fm/archives/7921): the post's claims and its doubt, measured.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_performer.py --part approx   # (1) error vs m, (2) orth vs iid
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_performer.py --part length   # (3) time / peak memory vs T
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_performer.py --part swap     # (4) swap into trained models

(1)/(2) use the real queries and keys of the embedded model (4 layers x 4 heads, head size 64)
on test reviews, and Gaussian q, k at the same size: relative Frobenius error of the attention
matrix and of the attention output against exact softmax, over seeds, vs m; a log-log slope fit.
(3) one SelfAttention layer of the embedded model's size (hidden 256, 4 heads), batch 1,
forward without grad, each (method, T) in a fresh subprocess; peak memory is the rise of the
process's peak resident set size (getrusage ru_maxrss) over the call, after inputs exist.
(4) the embedded model fine-tuned on review sentiment, then Performer swapped in without
retraining (accuracy, hidden-state cosine), then a short fine-tuning with Performer vs the same
extra time with softmax; and all-MiniLM-L6-v2 sentence-embedding cosine drift on WordNet glosses.
Prints markdown tables.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import plmkit  # noqa: E402
from plmkit.data import read_examples  # noqa: E402
from plmkit.modules.attention import SelfAttention  # noqa: E402
from plmkit.modules.performer import (PerformerAttention, _stable_features, gaussian_projection,  # noqa: E402
                                      use_performer, use_softmax)
from plmkit.zoo import embedded_model_dir  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "sentiment"
MS = (16, 32, 64, 128, 256, 512, 1024)


class Recorder(nn.Module):
    """A SelfAttention kernel that keeps the (q, k, v) it sees and answers with exact SDPA."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Tensor, ...]] = []

    def forward(self, q, k, v, mask=None, *, scale=None):
        self.seen.append((q, k, v))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def model_qkv(n_texts: int) -> list[torch.Tensor]:
    """(q, k, v) of every layer of the embedded model on `n_texts` test reviews, one unpadded text at a time."""
    path = embedded_model_dir()
    model, tok = plmkit.from_pretrained(path).eval(), plmkit.load_tokenizer(path)
    recorders = []
    for m in model.modules():
        if isinstance(m, SelfAttention):
            m.kernel = Recorder()
            recorders.append(m.kernel)
    texts = [t for t in read_examples(DATA / "sentiment.test.data").texts if len(t) >= 60][:n_texts]
    with torch.no_grad():
        for t in texts:
            model(**{k: v for k, v in tok([t], max_length=128).items() if k != "labels"})
    return [qkv for r in recorders for qkv in r.seen]


def approx_errors(qkv: list, m: int, orthogonal: bool, seed: int) -> tuple[float, float]:
    """Mean relative Frobenius error of the attention matrix and of the output, over heads and texts."""
    g = torch.Generator().manual_seed(1000 + seed)  # apart from the stream the Gaussian q, k came from (seed 0)
    e_att, e_out = [], []
    for q, k, v in qkv:
        q, k, v = q.double(), k.double(), v.double()
        root = q.shape[-1] ** -0.25
        w = gaussian_projection(m, q.shape[-1], orthogonal=orthogonal, generator=g).double()
        a = _stable_features(q * root, w, query=True) @ _stable_features(k * root, w, query=False).transpose(-2, -1)
        a = a / a.sum(-1, keepdim=True)  # (B, nh, T, T) Performer's implicit attention matrix
        exact = torch.softmax(q @ k.transpose(-2, -1) * root * root, dim=-1)
        e_att.append(((a - exact).norm(dim=(-2, -1)) / exact.norm(dim=(-2, -1))).flatten())
        y, y0 = a @ v, exact @ v
        e_out.append(((y - y0).norm(dim=(-2, -1)) / y0.norm(dim=(-2, -1))).flatten())
    return torch.cat(e_att).mean().item(), torch.cat(e_out).mean().item()


def slope(ms, errs) -> float:
    """Least-squares slope of log(error) against log(m)."""
    x, y = torch.tensor([math.log(m) for m in ms]), torch.tensor([math.log(e) for e in errs])
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def part_approx(seeds: int, n_texts: int) -> None:
    t0 = time.time()
    real = model_qkv(n_texts)
    g = torch.Generator().manual_seed(0)
    d = real[0][0].shape[-1]
    sets = [("embedded model q, k", real)]
    for std in (0.25, 0.5, 1.0):  # Gaussian q, k per-dimension std (before the d^-1/4 scaling)
        sets.append((f"Gaussian q, k, std {std}", [tuple(torch.randn(1, 4, 96, d, generator=g) * (std if i < 2 else 1)
                                                        for i in range(3)) for _ in range(n_texts)]))
    print(f"\n(1)/(2) {len(real)} (text, layer) pairs of the embedded model, 4 heads each, lengths "
          f"{min(q.shape[-2] for q, _, _ in real)}-{max(q.shape[-2] for q, _, _ in real)}, head size {d}; "
          f"Gaussian sets: {n_texts} x 4 heads, T=96; {seeds} seeds (± is the std over seeds)")
    for name, qkv in sets:
        sq = torch.cat([torch.cat([q, k], -2).flatten(0, -2) for q, k, _ in qkv]).pow(2).sum(-1) / math.sqrt(d)
        print(f"{name}: mean |x|^2 after the d^-1/4 scaling (q and k) {sq.mean().item():.2f}, "
              f"max {sq.max().item():.1f}")
    print()
    for name, qkv in sets:
        rows = {}
        for orth in (True, False):
            for m in MS:
                runs = [approx_errors(qkv, m, orth, s) for s in range(seeds)]
                rows[(orth, m)] = (sum(r[0] for r in runs) / seeds, sum(r[1] for r in runs) / seeds,
                                   torch.tensor([r[0] for r in runs]).std().item() if seeds > 1 else 0.0)
        print(f"| {name}: m | attention err orth | iid | iid/orth | output err orth | iid |")
        print("|---|---|---|---|---|---|")
        for m in MS:
            o, i = rows[(True, m)], rows[(False, m)]
            print(f"| {m} | {o[0]:.4f} ± {o[2]:.4f} | {i[0]:.4f} ± {i[2]:.4f} | {i[0] / o[0]:.2f} | {o[1]:.4f} | "
                  f"{i[1]:.4f} |")
        for orth in (True, False):
            errs = [rows[(orth, m)][0] for m in MS]
            outs = [rows[(orth, m)][1] for m in MS]
            print(f"\nlog-log slope ({'orth' if orth else 'iid'}): attention {slope(MS, errs):.3f}, "
                  f"output {slope(MS, outs):.3f} (1/sqrt(m) is -0.5)")
        print()
    print(f"part approx: {time.time() - t0:.0f} s")


def child_length(method: str, T: int, features: int, repeat: int) -> dict:
    """One (method, T) measurement in this process: peak RSS rise and best-of-`repeat` time."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    causal = method.endswith("causal")
    kernel = PerformerAttention(64, features, causal=causal, seed=0) if method.startswith("performer") else None
    layer = SelfAttention(256, 4, 64, kernel=kernel).eval()
    x = torch.randn(1, T, 256)
    mask = None
    if method == "sdpa causal":  # the additive (1, 1, T, T) mask an "lm" Encoder hands its blocks
        future = ~torch.ones(T, T, dtype=torch.bool).tril()
        mask = torch.zeros(T, T).masked_fill_(future, torch.finfo(torch.float32).min)[None, None]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.no_grad():
        for _ in range(repeat):
            t0 = time.perf_counter()
            layer(x, mask)
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"time": min(times), "peak_mb": (peak - base) / 1024}


def part_length(lengths: list[int], features: int) -> None:
    t0 = time.time()
    methods = ("sdpa", "performer", "sdpa causal", "performer causal")
    print(f"\n(3) one SelfAttention(hidden 256, 4 heads x 64), batch 1, forward, 1 thread; Performer m={features}, "
          "chunk 128; peak = rise of peak RSS in a fresh process (causal SDPA's (1,1,T,T) fp32 mask is made before "
          "the baseline, so not counted: T²·4 bytes more)\n")
    print("| T | " + " | ".join(f"{m} s | {m} MB" for m in methods) + " |")
    print("|---|" + "---|---|" * len(methods))
    for T in lengths:
        cells = []
        for method in methods:
            repeat = 3 if T <= 4096 else 1
            cmd = [sys.executable, __file__, "--child", json.dumps([method, T, features, repeat])]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                cells += ["failed", out.stderr.strip().splitlines()[-1][:40]]
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            cells += [f"{r['time']:.3f}", f"{r['peak_mb']:.0f}"]
        print(f"| {T} | " + " | ".join(cells) + " |", flush=True)
    print(f"\npart length: {time.time() - t0:.0f} s")


def _labelled(split: str, limit: int = 0) -> SimpleNamespace:
    """texts and integer labels of one sentiment split (the first `limit` rows when limit > 0)."""
    ex = read_examples(DATA / f"sentiment.{split}.data")
    n = limit or len(ex)
    return SimpleNamespace(texts=ex.texts[:n], labels=[int(y) for y in ex.labels[:n]])


def _batches(tok, texts, labels, batch_size, max_length):
    for i in range(0, len(texts), batch_size):
        b = tok(texts[i:i + batch_size], max_length=max_length)
        b["labels"] = torch.tensor(labels[i:i + batch_size])
        yield b


def accuracy(model, tok, data, max_length) -> float:
    model.eval()
    order = sorted(range(len(data.texts)), key=lambda i: len(data.texts[i]))
    texts, labels = [data.texts[i] for i in order], [data.labels[i] for i in order]
    right = 0
    with torch.no_grad():
        for b in _batches(tok, texts, labels, 64, max_length):
            out = model(b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=b["attention_mask"])
            right += (out.label_logits.argmax(-1) == b["labels"]).sum().item()
    return right / len(texts)


def train(model, tok, data, seconds: float, lr: float, max_length: int, seed: int) -> int:
    """AdamW, batches of 32 similar-length texts in random order, constant lr after 50 warm-up steps, for
    `seconds` of wall time; returns steps."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))
    model.train()
    steps, t0 = 0, time.time()
    by_length = sorted(range(len(data.texts)), key=lambda i: len(data.texts[i]))
    groups = [by_length[i:i + 32] for i in range(0, len(by_length) - 31, 32)]  # similar lengths: little padding
    while time.time() - t0 < seconds:
        for gi in torch.randperm(len(groups), generator=g).tolist():
            idx = groups[gi]
            b = tok([data.texts[j] for j in idx], max_length=max_length)
            out = model(b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=b["attention_mask"])
            loss = F.cross_entropy(out.label_logits, torch.tensor([data.labels[j] for j in idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
            if time.time() - t0 >= seconds:
                break
    model.eval()
    return steps


def hidden_cosine(model, tok, texts, features, max_length) -> tuple[float, float]:
    """Mean cosine of the real tokens' last hidden states and of the [CLS] state, softmax vs Performer(m)."""
    b = {k: v for k, v in tok(texts, max_length=max_length).items() if k in ("input_ids", "token_type_ids",
                                                                          "attention_mask")}
    with torch.no_grad():
        use_softmax(model)
        h0 = model(**b).last_hidden_state
        use_performer(model, features, seed=0)
        h1 = model(**b).last_hidden_state
        use_softmax(model)
    cos = F.cosine_similarity(h0, h1, dim=-1)  # (B, T)
    real = b["attention_mask"].bool()
    return cos[real].mean().item(), cos[:, 0].mean().item()


def part_swap(first_seconds: float, second_seconds: float, features_ft: int, max_length: int,
              eval_limit: int = 0) -> None:
    t0 = time.time()
    path = embedded_model_dir()
    tok = plmkit.load_tokenizer(path)
    train_set = _labelled("train")
    valid, test = _labelled("valid", eval_limit), _labelled("test", eval_limit)
    probe = [t for t in test.texts[:256]]
    torch.manual_seed(0)
    model = plmkit.from_pretrained(path, num_labels=2)
    print(f"\n(4) embedded model (4 layers, head size 64), max_length {max_length}; Performer orthogonal, "
          "seed 0, features fixed (no redraw)\n")
    print("pretrained encoder (before fine-tuning), 256 test reviews: hidden-state cosine softmax vs Performer")
    print("| m | token cosine | [CLS] cosine |\n|---|---|---|")
    for m in MS:
        tc, cc = hidden_cosine(model, tok, probe, m, max_length)
        print(f"| {m} | {tc:.4f} | {cc:.4f} |", flush=True)
    steps = train(model, tok, train_set, first_seconds, 1e-4, max_length, seed=0)
    base_valid, base_test = accuracy(model, tok, valid, max_length), accuracy(model, tok, test, max_length)
    print(f"\nfine-tuned with softmax: {steps} steps ({first_seconds:.0f} s): valid {base_valid:.4f}, "
          f"test {base_test:.4f}\n")
    print("swapped in without retraining (same weights):")
    print("| m | test acc | token cosine | [CLS] cosine |\n|---|---|---|---|")
    print(f"| softmax | {base_test:.4f} | 1 | 1 |")
    for m in MS:
        use_performer(model, m, seed=0)
        acc = accuracy(model, tok, test, max_length)
        use_softmax(model)
        tc, cc = hidden_cosine(model, tok, probe, m, max_length)
        print(f"| {m} | {acc:.4f} | {tc:.4f} | {cc:.4f} |", flush=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    use_performer(model, features_ft, seed=0)
    steps = train(model, tok, train_set, second_seconds, 5e-5, max_length, seed=1)
    perf_valid, perf_test = accuracy(model, tok, valid, max_length), accuracy(model, tok, test, max_length)
    use_softmax(model)
    back_test = accuracy(model, tok, test, max_length)
    model.load_state_dict(state)
    steps2 = train(model, tok, train_set, second_seconds, 5e-5, max_length, seed=1)
    soft_valid, soft_test = accuracy(model, tok, valid, max_length), accuracy(model, tok, test, max_length)
    print(f"\nthen {second_seconds:.0f} s more fine-tuning (lr 5e-5) from the softmax classifier:")
    print("| continued with | steps | valid | test |\n|---|---|---|---|")
    print(f"| Performer m={features_ft} | {steps} | {perf_valid:.4f} | {perf_test:.4f} |")
    print(f"| softmax (control) | {steps2} | {soft_valid:.4f} | {soft_test:.4f} |")
    print(f"(the Performer-tuned weights read back with softmax attention: test {back_test:.4f})")
    minilm_drift(max_length)
    print(f"\npart swap: {time.time() - t0:.0f} s")


def minilm_drift(max_length: int) -> None:
    from bench_whitening import minilm_dir, minilm_wordnet_missing, read_wordnet_pairs
    from plmkit.sentence import encode_sentences

    wordnet = Path("/usr/share/wordnet")
    why = minilm_wordnet_missing(wordnet)
    if why:
        print(f"\nMiniLM drift skipped: {why}")
        return
    glosses = [d for d, _ in read_wordnet_pairs(wordnet)][:500]
    path = minilm_dir()
    model, tok = plmkit.from_pretrained(path).eval(), plmkit.load_tokenizer(path)
    exact = encode_sentences(model, tok, glosses, pooling="mean", batch_size=64, max_length=max_length,
                             progress=False)
    sim0 = exact @ exact.T
    top0 = sim0.fill_diagonal_(-2).argmax(1)
    print("\nall-MiniLM-L6-v2 (6 layers, 12 heads x 32), 500 WordNet glosses, mean pooling, no retraining:")
    print("| m | embedding cosine to exact | same nearest neighbour |\n|---|---|---|")
    for m in MS:
        use_performer(model, m, seed=0)
        vec = encode_sentences(model, tok, glosses, pooling="mean", batch_size=64, max_length=max_length,
                               progress=False)
        use_softmax(model)
        sim = vec @ vec.T
        same = (sim.fill_diagonal_(-2).argmax(1) == top0).float().mean().item()
        print(f"| {m} | {(vec * exact).sum(-1).mean().item():.4f} | {same:.3f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("approx", "length", "swap"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--texts", type=int, default=8)
    ap.add_argument("--lengths", default="1024,2048,4096,8192,16384")
    ap.add_argument("--features", type=int, default=256)
    ap.add_argument("--first-seconds", type=float, default=300)
    ap.add_argument("--second-seconds", type=float, default=150)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--eval-limit", type=int, default=0, help="score only this many valid/test rows (smoke runs)")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child_length(*json.loads(a.child))))
        return
    torch.set_num_threads(1)
    if a.part == "approx":
        part_approx(a.seeds, a.texts)
    elif a.part == "length":
        part_length([int(t) for t in a.lengths.split(",")], a.features)
    elif a.part == "swap":
        part_swap(a.first_seconds, a.second_seconds, a.features, a.max_length, a.eval_limit)
    else:
        ap.error("give --part approx, length or swap")


if __name__ == "__main__":
    main()
