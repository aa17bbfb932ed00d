"""Sentence VAEs on review clauses: Gaussian latent (KL can collapse) vs vMF latent with a fixed kappa (constant KL).

    OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python benchmarks/bench_vmf_vae.py [--minutes 6] [--kappa 50]

Data: ../shared/data/sentiment (bert4keras's review set), each review split into clauses at punctuation,
clauses of 6-20 characters kept; characters seen fewer than --min-count (10) times in training become <unk>.
Both models share the encoder / decoder shape (bi-GRU --hidden ─► latent d=32 ─► GRU --hidden, z at
every step) and the training budget (--minutes each, batch 64, Adam 1e-3, no KL annealing, no word dropout:
the setting where Bowman et al. 2016 saw the Gaussian KL collapse). Logged over training: the
per-sentence reconstruction NLL and KL (nats), and how much the decoder uses z: the NLL of each
validation clause under its own posterior mean minus under another clause's (shuffled z) — zero
means z is ignored. At the end: held-out NLL/KL and greedy decodes along interpolations between
two clauses' posterior means (linear for the Gaussian, slerp on the sphere for vMF).
"""
from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plmkit.models.sentence_vae import GaussianLatent, VMFLatent, build_sentence_vae  # noqa: E402
from plmkit.modules.vmf import slerp  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "sentiment"
SPLIT = re.compile(r"[，。！？、；：,.!?;:~～\s…]+")
PAD, BOS, EOS, UNK = 0, 1, 2, 3


def clauses(path: Path) -> list[str]:
    """The 6-20 character clauses of every review in a `text<TAB>label` file."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.rsplit("\t", 1)[0]
        out += [c for c in SPLIT.split(text) if 6 <= len(c) <= 20]
    return out


def padded(ids: list[list[int]]) -> torch.Tensor:
    """bos + ids + eos for each row, right-padded: (B, T)."""
    rows = [[BOS] + row + [EOS] for row in ids]
    t = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for r, row in enumerate(rows):
        t[r, :len(row)] = torch.tensor(row)
    return t


def batches(ids: list[list[int]], size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled, right-padded batches of bos + ids + eos."""
    order = torch.randperm(len(ids), generator=generator).tolist()
    return [padded([ids[j] for j in order[i:i + size]]) for i in range(0, len(order) - size + 1, size)]


@torch.no_grad()
def evaluate(vae, data: list[torch.Tensor]) -> dict[str, float]:
    """Held-out NLL and KL per clause with a sampled z, and the z-usage gap (shuffled mean minus own mean NLL)."""
    vae.eval()
    nll = kl = own = other = n = 0.0
    for ids in data:
        out = vae(ids)
        nll += float(out.reconstruction.sum())
        kl += float(out.kl.sum())
        mean = vae.encode(ids, sample=False).mean
        for z, acc in ((mean, "own"), (mean.roll(1, 0), "other")):
            logits, _ = vae.decoder(ids[:, :-1], z)
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], ignore_index=PAD,
                                                     reduction="sum")
            if acc == "own":
                own += float(loss)
            else:
                other += float(loss)
        n += ids.shape[0]
    vae.train()
    return {"nll": nll / n, "kl": kl / n, "z_gap": (other - own) / n}


def train(name: str, vae, train_ids, valid, minutes: float, log) -> list[dict[str, float]]:
    """Train for `minutes` of wall time; return the log rows."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    rows, step, start, epoch = [], 0, time.time(), 0
    run_nll = run_kl = 0.0
    next_eval = 0.0
    while True:
        for ids in batches(train_ids, 64, gen):
            out = vae(ids)
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 5.0)
            opt.step()
            step += 1
            run_nll += float(out.reconstruction.detach().mean())
            run_kl += float(out.kl.detach().mean())
            elapsed = (time.time() - start) / 60
            if elapsed >= next_eval or elapsed >= minutes:
                ev = evaluate(vae, valid[:4])
                k = max(1, step if not rows else step - rows[-1]["step"])
                row = {"step": step, "minutes": elapsed, "train_nll": run_nll / k, "train_kl": run_kl / k,
                       "valid_nll": ev["nll"], "valid_kl": ev["kl"], "z_gap": ev["z_gap"]}
                rows.append(row)
                log(f"{name} step {step} ({elapsed:.1f} min, epoch {epoch}): train NLL {row['train_nll']:.2f} "
                    f"KL {row['train_kl']:.3f} | valid NLL {ev['nll']:.2f} KL {ev['kl']:.3f} z-gap {ev['z_gap']:.3f}")
                run_nll = run_kl = 0.0
                next_eval = elapsed + (0.25 if elapsed < 1 else 1.0)
            if elapsed >= minutes:
                return rows
        epoch += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=6.0, help="training wall time per model")
    ap.add_argument("--kappa", type=float, default=50.0)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--min-count", type=int, default=10, help="rarer characters become <unk>")
    ap.add_argument("--eval-batches", type=int, default=24, help="validation batches of 64 for the final figures")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not DATA.exists():
        print(f"error: {DATA} not found (shared data beside the checkout)", file=sys.stderr)
        return 1
    train_text, valid_text = clauses(DATA / "sentiment.train.data"), clauses(DATA / "sentiment.valid.data")
    counts = collections.Counter("".join(train_text))
    vocab = ["<pad>", "<s>", "</s>", "<unk>"] + sorted(c for c, n in counts.items() if n >= args.min_count)
    index = {c: i for i, c in enumerate(vocab)}
    encode = lambda s: [index.get(c, UNK) for c in s]  # noqa: E731
    train_ids = [encode(s) for s in train_text]
    valid = batches([encode(s) for s in valid_text], 64, torch.Generator().manual_seed(1))
    print(f"{len(train_text)} training clauses, {len(valid_text)} validation clauses, vocabulary {len(vocab)}; "
          f"{args.minutes} min per model, {torch.get_num_threads()} thread(s)", flush=True)

    results = {}
    for name, latent in (("gaussian", GaussianLatent(2 * args.hidden, args.latent)),
                         (f"vmf(kappa={args.kappa:g})", VMFLatent(2 * args.hidden, args.latent, kappa=args.kappa))):
        torch.manual_seed(0)
        vae = build_sentence_vae(len(vocab), latent, embed_size=96, hidden_size=args.hidden)
        t0 = time.time()
        rows = train(name, vae, train_ids, valid, args.minutes, lambda s: print(s, flush=True))
        ev = evaluate(vae, valid[:args.eval_batches])
        results[name] = (vae, rows, ev, time.time() - t0)
        print(f"{name} final on {args.eval_batches * 64} validation clauses: NLL {ev['nll']:.2f} KL {ev['kl']:.3f} "
              f"(ELBO bound {ev['nll'] + ev['kl']:.2f} nats/clause) z-gap {ev['z_gap']:.3f}; "
              f"{rows[-1]['step']} steps in {time.time() - t0:.0f} s", flush=True)

    decode = lambda vae, z: ["".join(vocab[i] for i in row) for row in vae.decode(z, max_length=24)]  # noqa: E731
    pairs = [(valid_text[3], valid_text[40]), (valid_text[100], valid_text[257])]
    for name, (vae, *_rest) in results.items():
        vae.eval()
        for a, b in pairs:
            ma, mb = vae.encode(padded([encode(a), encode(b)]), sample=False).mean
            ts = [i / 4 for i in range(5)]
            zs = torch.stack([slerp(ma, mb, t) if name.startswith("vmf") else (1 - t) * ma + t * mb for t in ts])
            print(f"\n{name}: {a} -> {b}")
            for t, text in zip(ts, decode(vae, zs)):
                print(f"  t={t:.2f}  {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
