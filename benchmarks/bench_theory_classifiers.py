"""Theory posts, part A, on real data: the analytic (Gaussian) classifier, Taylor-softmax and Mitchell's multiplication.

All three use the same frozen features: the embedded model's (plmkit/pretrained_models/tiny-zh-char-bert,
pretrained only, not fine-tuned) mean-pooled last-layer vectors of bert4keras' sentiment set
(../shared/data/sentiment, train 16,883 / valid 2,111 / test 2,111), whitened (kexue.fm/archives/8069)
with a transform fitted on the training texts without their labels. Features are cached in
runs/theory_features.pt (git-ignored) so the parts can be rerun without re-encoding.

    PYTHONPATH=. nice python benchmarks/bench_theory_classifiers.py --part analytic taylor mitchell

- analytic: plmkit.theory.analytic_classifier (closed form, no iterations) against scikit-learn's
  LogisticRegression (L-BFGS, C chosen on valid) with all training labels and with 16 / 64 / 256
  labels (balanced random draws, 5 seeds each); test accuracy.
- taylor: a linear head on the frozen whitened features trained with cross-entropy through softmax
  or through Taylor-softmax (n = 2, 4 plain and monotone; 6), full training set; test accuracy and ECE.
- mitchell: a 2-layer MLP on the frozen features; test accuracy with exact linear layers, with
  Mitchell linear layers swapped in after exact training, and trained with Mitchell forward passes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plmkit.hardware import detect  # noqa: E402
from plmkit.pretrained import from_pretrained  # noqa: E402
from plmkit.sentence import encode_sentences  # noqa: E402
from plmkit.similarity.whitening import fit_whitening  # noqa: E402
from plmkit.tokenizers import load_tokenizer  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402

SPLITS = ("train", "valid", "test")


def read_split(path: Path) -> tuple[list[str], np.ndarray]:
    """Texts and 0/1 labels of one `text<TAB>label` file."""
    texts, labels = [], []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition("\t")
        if not sep or label not in ("0", "1"):
            raise ValueError(f"{path}:{line_no}: expected 'text<TAB>0|1', found {line[:60]!r}")
        texts.append(text)
        labels.append(int(label))
    return texts, np.asarray(labels)


def sentiment_features(data: Path, cache: Path, max_length: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (raw pooled features (N, 256) float64, labels)}, from the cache when it is there."""
    if cache.exists():
        blob = torch.load(cache, weights_only=True)
        return {s: (blob[s + "_x"].numpy(), blob[s + "_y"].numpy()) for s in SPLITS}
    model_dir = embedded_model_dir()
    model, tokenizer = from_pretrained(model_dir), load_tokenizer(model_dir)
    out, blob = {}, {}
    for s in SPLITS:
        texts, labels = read_split(data / f"sentiment.{s}.data")
        t0 = time.perf_counter()
        x = encode_sentences(model, tokenizer, texts, pooling="mean", normalize=False, batch_size=64,
                             max_length=max_length).double()
        print(f"encoded {s}: {len(texts)} texts in {time.perf_counter() - t0:.0f} s", flush=True)
        out[s] = (x.numpy(), labels)
        blob[s + "_x"], blob[s + "_y"] = x, torch.from_numpy(labels)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, cache)
    return out


def whitened(feats):
    """The features whitened by a transform fitted on the training vectors (no labels)."""
    w = fit_whitening(feats["train"][0])
    return {s: (w(torch.from_numpy(x)).numpy(), y) for s, (x, y) in feats.items()}


def _accuracy(pred, y) -> float:
    return float((np.asarray(pred) == np.asarray(y)).mean())


def _balanced_draw(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of n/2 random rows of each class."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), n // 2, replace=False) for c in (0, 1)])


def _ledoit_wolf(x: np.ndarray, y: np.ndarray) -> float:
    """Ledoit-Wolf shrinkage of the pooled within-class covariance (scikit-learn's estimate; no labels of valid used)."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    centred = x.copy()
    for c in np.unique(y):
        centred[y == c] -= x[y == c].mean(0)
    return float(ledoit_wolf_shrinkage(centred, assume_centered=True))


def run_analytic(white) -> None:
    """Closed-form Gaussian classifier vs scikit-learn logistic regression, full and few labels."""
    from sklearn.linear_model import LogisticRegression

    from plmkit.theory.analytic_classifier import gaussian_softmax_classifier

    (xtr, ytr), (xva, yva), (xte, yte) = white["train"], white["valid"], white["test"]

    def analytic(x, y, covariance, shrinkage=0.0):
        return _accuracy(gaussian_softmax_classifier(x, y, covariance=covariance, shrinkage=shrinkage).predict(xte), yte)

    def sklearn_lr(x, y, c):
        return _accuracy(LogisticRegression(C=c, max_iter=5000).fit(x, y).predict(xte), yte)

    print("\n## analytic classifier vs logistic regression (test accuracy, whitened pooled features)")
    t0 = time.perf_counter()
    rows = {"analytic, within-class covariance": analytic(xtr, ytr, "within"),
            "analytic, identity covariance (class means only)": analytic(xtr, ytr, "identity")}
    t_analytic = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = {c: _accuracy(LogisticRegression(C=c, max_iter=5000).fit(xtr, ytr).predict(xva), yva)
              for c in (0.01, 0.1, 1.0, 10.0)}
    best_c = max(scores, key=scores.get)
    rows[f"scikit-learn LogisticRegression, C={best_c} (chosen on valid from 0.01..10)"] = sklearn_lr(xtr, ytr, best_c)
    rows["scikit-learn LogisticRegression, C=1"] = sklearn_lr(xtr, ytr, 1.0)
    t_lr = time.perf_counter() - t0
    print(f"full training set ({len(ytr)} labels); analytic fits {t_analytic:.2f} s for both, "
          f"logistic regression {t_lr:.1f} s for its 5 fits")
    for name, acc in rows.items():
        print(f"| {name} | {acc:.4f} |")
    print("\n| labels | analytic, identity covariance | analytic, within-class + Ledoit-Wolf shrinkage | "
          "logistic regression C=1 |\n|---|---|---|---|")
    for n in (16, 64, 256):
        res = {"identity": [], "within": [], "lr": []}
        shrinks = []
        for seed in range(5):
            idx = _balanced_draw(ytr, n, seed)
            x, y = xtr[idx], ytr[idx]
            res["identity"].append(analytic(x, y, "identity"))
            shrinks.append(_ledoit_wolf(x, y))
            res["within"].append(analytic(x, y, "within", shrinks[-1]))
            res["lr"].append(sklearn_lr(x, y, 1.0))
        cells = " | ".join(f"{np.mean(v):.4f} ± {np.std(v):.4f}" for v in res.values())
        print(f"| {n} | {cells} |  (Ledoit-Wolf shrinkage {np.mean(shrinks):.2f})", flush=True)


def _train_head(model, loss_fn, x, y, epochs: int, lr: float, seed: int, batch_size: int = 256):
    """Adam on minibatches of the frozen features; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch_size):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def run_taylor(white) -> None:
    """A linear head trained through softmax or Taylor-softmax: test accuracy and ECE."""
    import torch.nn.functional as F

    from plmkit.theory.taylor_softmax import expected_calibration_error, taylor_log_softmax

    (xtr, ytr), (xte, yte) = white["train"], white["test"]
    xtr, xte = torch.tensor(xtr, dtype=torch.float32), torch.tensor(xte, dtype=torch.float32)
    ytr, yte = torch.tensor(ytr), torch.tensor(yte)
    outputs = {"softmax": lambda z: F.log_softmax(z, -1)}
    for n in (2, 4):
        outputs[f"Taylor-softmax n={n}"] = lambda z, n=n: taylor_log_softmax(z, n)
        outputs[f"Taylor-softmax n={n}, monotone"] = lambda z, n=n: taylor_log_softmax(z, n, monotone=True)
    outputs["Taylor-softmax n=6"] = lambda z: taylor_log_softmax(z, 6)
    print("\n## Taylor-softmax vs softmax: linear head on frozen whitened features, 300 full-batch Adam steps "
          "lr 1e-2, seed 0 (full-batch: a second seed moved softmax by 0); test accuracy and ECE (15 bins) of the output's own probabilities")
    print("| output | test accuracy | ECE | NLL |\n|---|---|---|---|")
    for name, log_probs in outputs.items():
        accs, eces, nlls = [], [], []
        for seed in range(1):
            torch.manual_seed(seed)
            head = torch.nn.Linear(xtr.shape[1], 2)
            _train_head(head, lambda z, y: F.nll_loss(log_probs(z), y), xtr, ytr, 300, 1e-2, seed,
                        batch_size=len(ytr))  # full-batch: 300 Adam steps
            with torch.no_grad():
                lp = log_probs(head(xte)).double()
            accs.append(_accuracy(lp.argmax(-1), yte))
            eces.append(expected_calibration_error(lp.exp(), yte))
            nlls.append(float(F.nll_loss(lp, yte)))
        print(f"| {name} | {np.mean(accs):.4f} | {np.mean(eces):.4f} | {np.mean(nlls):.4f} |", flush=True)


HIDDEN, EPOCHS = 32, 5  # Mitchell products are materialised (rows, out, in): kept small on 2 cores


def run_mitchell(white) -> None:
    """A 2-layer MLP with exact or Mitchell linear layers: test accuracy, output error, speed."""
    import torch.nn.functional as F

    from plmkit.theory.mitchell import MitchellLinear, mitchell_linear

    (xtr, ytr), (xte, yte) = white["train"], white["test"]
    xtr, xte = torch.tensor(xtr, dtype=torch.float32), torch.tensor(xte, dtype=torch.float32)
    ytr, yte = torch.tensor(ytr), torch.tensor(yte)

    def mlp(linear_cls):
        torch.manual_seed(0)
        return torch.nn.Sequential(linear_cls(xtr.shape[1], HIDDEN), torch.nn.GELU(), linear_cls(HIDDEN, 2))

    def as_mitchell(model):
        return torch.nn.Sequential(*[MitchellLinear.from_linear(m) if isinstance(m, torch.nn.Linear) else m
                                     for m in model])

    def as_exact(model):
        out = mlp(torch.nn.Linear)
        out.load_state_dict(model.state_dict())
        return out.eval()

    def test_acc(model):
        with torch.no_grad():
            return _accuracy(model(xte).argmax(-1), yte)

    print(f"\n## Mitchell multiplication: MLP 256-{HIDDEN}-2 (GELU) on frozen whitened features, {EPOCHS} epochs "
          "Adam lr 1e-3, batch 256, seed 0; test accuracy")
    loss = F.cross_entropy
    t0 = time.perf_counter()
    exact = _train_head(mlp(torch.nn.Linear), loss, xtr, ytr, EPOCHS, 1e-3, 0)
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    approx = _train_head(mlp(MitchellLinear), loss, xtr, ytr, EPOCHS, 1e-3, 0)
    t_approx = time.perf_counter() - t0
    print("| trained with | evaluated with exact products | evaluated with Mitchell products |\n|---|---|---|")
    print(f"| exact products ({t_exact:.0f} s) | {test_acc(exact):.4f} | {test_acc(as_mitchell(exact)):.4f} |")
    print(f"| Mitchell forward, exact (straight-through) backward ({t_approx:.0f} s) | {test_acc(as_exact(approx)):.4f} "
          f"| {test_acc(approx):.4f} |")
    with torch.no_grad():
        w, b = exact[0].weight, exact[0].bias
        ref, got = F.linear(xte, w, b), mitchell_linear(xte, w, b)
        rel = float((got - ref).norm() / ref.norm())
        flips = float((exact(xte).argmax(-1) != as_mitchell(exact)(xte).argmax(-1)).float().mean())
        x = xte[:256]
        t0 = time.perf_counter()
        for _ in range(5):
            F.linear(x, w, b)
        t_f = (time.perf_counter() - t0) / 5
        t0 = time.perf_counter()
        mitchell_linear(x, w, b)
        t_m = time.perf_counter() - t0
    print(f"first layer on the test set: relative error of its output {rel:.4f} (Frobenius); predictions changed by "
          f"the swap: {flips:.4f}; batch 256 x 256 -> {HIDDEN}: torch.nn.functional.linear {t_f * 1e3:.2f} ms, "
          f"mitchell_linear {t_m * 1e3:.0f} ms (integer adds emulated in torch, not a kernel)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sentiment"))
    ap.add_argument("--cache", default=str(ROOT / "runs" / "theory_features.pt"))
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--part", nargs="+", default=["analytic", "taylor", "mitchell"],
                    choices=["features", "analytic", "taylor", "mitchell"])
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        print(f"skipped: {data} not found (bert4keras' sentiment set, ../shared/data/sentiment)")
        return
    print(f"machine: {detect().cpu_model}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    feats = sentiment_features(data, Path(args.cache), args.max_length)
    white = whitened(feats)
    for part in args.part:
        if part != "features":
            t0 = time.perf_counter()
            globals()["run_" + part](white)
            print(f"({part}: {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
