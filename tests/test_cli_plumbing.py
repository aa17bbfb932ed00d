"""The command line's plumbing: every recipe default lives in the recipe's config (a command given only its
required arguments hands the recipe its config's defaults), options generated from configs read what the
annotations say, and --device reaches the recipe or fails as one line."""
import inspect
import json
import subprocess
import sys

import pytest
import torch

import plmkit
import plmkit.hardware
import plmkit.recipes.clue
import plmkit.recipes.demo
import plmkit.recipes.fewshot
import plmkit.recipes.finetune
import plmkit.recipes.pretrain
import plmkit.recipes.seq2seq
import plmkit.export
import plmkit.serve.app
import plmkit.recipes.simbert
import plmkit.recipes.xiangqi
import plmkit.sentence
import plmkit.similarity.retrieval
from plmkit.cli import build_parser, main
from plmkit.config import ModelConfig
from plmkit.data import build_char_vocab
from plmkit.models import build_model
from plmkit.recipes.clue import ClueConfig
from plmkit.recipes.demo import DemoConfig
from plmkit.recipes.fewshot import FewShotConfig, run_fewshot
from plmkit.recipes.finetune import FinetuneConfig
from plmkit.recipes.pretrain import PretrainConfig
from plmkit.recipes.seq2seq import Seq2SeqConfig
from plmkit.export import ExportConfig
from plmkit.serve.config import ServeConfig
from plmkit.recipes.xiangqi import XiangqiConfig
from plmkit.recipes.simbert import SimBertConfig, SimBertPairsConfig, build_simbert, train_simbert
from plmkit.tokenizers import WordPieceTokenizer

# command -> (required arguments, the recipe's module and function, its config, fields the command fixes)
RECIPES = {
    "pretrain": (["--corpus", "c.txt", "--out", "o"], plmkit.recipes.pretrain, "pretrain", PretrainConfig, {}),
    "finetune": (["--model", "m", "--train", "t", "--valid", "v", "--out", "o"], plmkit.recipes.finetune,
                 "finetune", FinetuneConfig, {}),
    "pet": (["--out", "o", "--model", "m"], plmkit.recipes.fewshot, "run_fewshot", FewShotConfig,
            {"prompt_tuning": False}),
    "ptune": (["--out", "o", "--model", "m", "--train", "t"], plmkit.recipes.fewshot, "run_fewshot", FewShotConfig,
              {"prompt_tuning": True}),
    "clue": (["afqmc", "--model", "m", "--data", "d", "--out", "o"], plmkit.recipes.clue, "run_clue", ClueConfig, {}),
    "seq2seq": (["--model", "m", "--train", "t", "--valid", "v", "--out", "o"], plmkit.recipes.seq2seq, "seq2seq",
                Seq2SeqConfig, {}),
    "serve": (["--model", "m"], plmkit.serve.app, "serve", ServeConfig, {}),
    "demo": ([], plmkit.recipes.demo, "run_demo", DemoConfig, {}),
    "simbert": (["--train", "t", "--out", "o"], plmkit.recipes.simbert, "finetune_simbert", SimBertPairsConfig, {}),
    "xiangqi": (["train", "--games", "g", "--out", "o"], plmkit.recipes.xiangqi, "train_xiangqi", XiangqiConfig, {}),
}
# what each recipe function's stand-in returns: enough for the command to print its summary
REPORTS = {
    "pretrain": "o/model",
    "finetune": {"valid_accuracy": 0.5, "out_dir": "o", "curves": "o/curves.png"},
    "seq2seq": {"mode": "unilm", "valid": {"rouge-l": 0.5}, "out_dir": "o", "curves": "o/curves.png"},
    "serve": None,
    "export_onnx": {"max_abs_diff": None, "file": "model.onnx", "task": "encoder", "inputs": [], "outputs": []},
    "run_fewshot": {"train_examples": 0, "patterns": {}, "ensemble": {}, "out_dir": "o"},
    "run_clue": {"task": "afqmc"},
    "finetune_simbert": {"before": {}, "after": {}, "out_dir": "o"},
    "train_xiangqi": {"valid": {"agreement": .5, "agreement_unconstrained": .4, "legal_rate": .9, "positions": 1},
                      "model": "o/model", "curves": "o/curves.png"},
    "run_demo": {"epochs_run": 1, "test_accuracy": 0.5, "test_examples": 2, "valid_accuracy": 0.5,
                 "precision": "fp32", "device": "cpu", "seconds": 1.0, "curves": "c.png", "examples": []},
}


def _config_received(monkeypatch, command, *extra):
    """The config the recipe function receives when `plmkit COMMAND <required> EXTRA` runs (the recipe stubbed)."""
    required, module, function, config_class, _ = RECIPES[command]
    seen = {}

    def stand_in(*args, **kwargs):
        if function == "run_clue":  # ClueConfig fields arrive as keyword options
            kwargs.pop("overwrite")
            seen["cfg"] = config_class(**kwargs)
        elif function == "pretrain":
            seen["cfg"] = args[2]
        elif function in ("run_demo", "serve"):
            seen["cfg"] = args[1]
        elif function == "export_onnx":
            seen["cfg"] = args[2]
        else:
            seen["cfg"] = kwargs["cfg"]
        return REPORTS[function]

    monkeypatch.setattr(module, function, stand_in)
    assert main([command, *required, *extra]) == 0
    return seen["cfg"]


@pytest.mark.parametrize("command", sorted(RECIPES))
def test_a_command_hands_its_recipe_the_config_defaults(monkeypatch, capsys, command):
    fixed = RECIPES[command][4]
    assert _config_received(monkeypatch, command) == RECIPES[command][3](**fixed)


@pytest.mark.parametrize("command", sorted(RECIPES))
def test_every_config_field_is_an_option_whose_parser_default_is_the_configs(command):
    """Each field the command does not fix is an option, and its parser default is None: the config's own."""
    required, _, _, config_class, fixed = RECIPES[command]
    args = vars(build_parser().parse_args([command, *required]))
    skipped = {"clue": {"progress"}, "pet": {"trainable_lm"}}.get(command, set())
    for name in inspect.signature(config_class).parameters:
        if name in fixed or name in skipped:
            assert name not in args, name
        else:
            assert args[name] is None, (name, args[name])


# options of commands without a config: their parser default is the default of the function they feed,
# except these two, which are the command's own display choices
CLI_ONLY = {("embed", "max_length"): (256, None), ("similar", "k"): (5, 10)}
FED = {
    "predict": (["--model", "m", "--input", "i", "--out", "o"], plmkit.recipes.finetune.predict_file,
                ["text_col", "pair_col", "label_col", "batch_size", "max_length", "precision", "device"]),
    "similar": (["--index", "x"], plmkit.similarity.retrieval.build_sentence_index,
                ["pooling", "whiten_dim", "device"]),
    "embed": ([], plmkit.sentence.encode_sentences, ["pooling", "max_length"]),
    "demo": ([], plmkit.recipes.demo.run_demo, ["out"]),
    "generate": (["--model", "m", "--input", "i", "--out", "o"], plmkit.recipes.seq2seq.generate_file,
                 ["source_col", "target_col", "batch_size", "precision", "device"]),
}


@pytest.mark.parametrize("command", sorted(FED))
def test_plain_options_default_to_what_the_function_they_feed_defaults_to(command):
    required, function, names = FED[command]
    args = vars(build_parser().parse_args([command, *required]))
    defaults = inspect.signature(function).parameters
    for name in names:
        if (command, name) in CLI_ONLY:
            assert (args[name], defaults[name].default) == CLI_ONLY[command, name]
        else:
            assert args[name] == defaults[name].default, name


def test_similar_k_is_the_one_query_default_of_its_own():
    assert inspect.signature(plmkit.similarity.retrieval.query_sentence_index).parameters["k"].default \
        == CLI_ONLY["similar", "k"][1]


def test_ptune_and_the_recipe_resolve_the_same_defaults():
    """P-tuning with a frozen LM takes lr 1e-2 and the nine-slot pattern; PET and a trainable LM lr 1e-4."""
    ptune = FewShotConfig(prompt_tuning=True).resolved()
    assert ptune.lr == 1e-2 and ptune.patterns == ["{p}{p}{p}{p}{mask}{p}{p}{p}{p}{text}"]
    assert FewShotConfig(prompt_tuning=True, trainable_lm=True).resolved().lr == 1e-4
    pet = FewShotConfig().resolved()
    assert pet.lr == 1e-4
    assert pet.patterns == ["{mask}满意。{text}", "{text}总之很{mask}满意。", "感觉{mask}好。{text}"]
    assert FewShotConfig(lr=3e-3, patterns=["{mask}{text}"]).resolved().lr == 3e-3  # a given value stays


def test_fewshot_options_keep_their_spellings(monkeypatch, capsys):
    cfg = _config_received(monkeypatch, "ptune", "--pattern", "{p}{mask}{text}", "--pattern", "{text}{p}{mask}",
                           "--words", "1=好", "0=差", "--combine", "mean", "--calibrate", "--trainable-lm",
                           "--lr", "3e-4", "--max-length", "40", "--pair-col", "q", "--loss", "label")
    assert cfg == FewShotConfig(patterns=["{p}{mask}{text}", "{text}{p}{mask}"], words={"1": "好", "0": "差"},
                                combine="mean", calibrate=True, trainable_lm=True, lr=3e-4, max_length=40,
                                pair_col="q", loss="label", prompt_tuning=True)


@pytest.mark.parametrize("words", [["1=好", "0"], ["1=好", "1=差"], ["=好", "0=差"]])
def test_a_malformed_verbalizer_is_one_line(monkeypatch, capsys, words):
    monkeypatch.setattr(plmkit.recipes.fewshot, "run_fewshot", lambda *a, **k: pytest.fail("ran"))
    assert main(["pet", "--out", "o", "--words", *words]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plmkit pet: error: --words: "), err


def test_a_choice_outside_the_configs_literal_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["pet", "--out", "o", "--combine", "max"])
    assert e.value.code == 2 and "invalid choice: 'max'" in capsys.readouterr().err


def test_export_hands_its_function_the_config_defaults(monkeypatch, capsys):
    """export runs on the CPU (tracing), so it is left out of the --device tests; its defaults are checked here."""
    RECIPES["export"] = (["--model", "m", "--out", "o"], plmkit.export, "export_onnx", ExportConfig, {})
    try:
        assert _config_received(monkeypatch, "export") == ExportConfig()
        args = vars(build_parser().parse_args(["export", "--model", "m", "--out", "o"]))
        assert all(args[name] is None for name in inspect.signature(ExportConfig).parameters)
    finally:
        del RECIPES["export"]


# ---- --device ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", sorted(RECIPES))
def test_device_reaches_the_recipe(monkeypatch, capsys, command):
    assert _config_received(monkeypatch, command, "--device", "cpu").device == "cpu"


def _tiny(path, texts, **heads):
    vocab = build_char_vocab(texts, min_count=1)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=16, num_layers=1, num_heads=2,
                      intermediate_size=24, max_position=32)
    plmkit.save_pretrained(build_model(cfg, **heads), path, tokenizer=WordPieceTokenizer(vocab))
    return path


def test_embed_runs_on_the_device_asked_for(monkeypatch, tmp_path, capsys):
    model = _tiny(tmp_path / "m", ["今天天气很好", "我喜欢吃苹果"])
    asked, places = [], []
    resolve = plmkit.hardware.resolve_device
    monkeypatch.setattr(plmkit.hardware, "resolve_device", lambda d=None: asked.append(d) or resolve(d))
    encode = plmkit.sentence.encode_sentences
    monkeypatch.setattr(plmkit.sentence, "encode_sentences",
                        lambda m, *a, **k: places.append(next(m.parameters()).device) or encode(m, *a, **k))
    assert main(["embed", "今天天气很好", "我喜欢吃苹果", "--model", str(model), "--device", "cpu"]) == 0
    assert asked == ["cpu"] and places == [torch.device("cpu")]
    assert "most similar pair: [0] and [1]" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["embed", "predict"])
def test_int8_refuses_a_gpu(tmp_path, capsys, command):
    """int8 is CPU-only: a GPU asked for is one line saying so, whether or not this machine has one."""
    required = {"embed": ["好", "--model", str(tmp_path)],
                "predict": ["--model", str(tmp_path), "--input", "i", "--out", "o"]}[command]
    assert main([command, *required, "--precision", "int8", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"plmkit {command}: error: precision int8 (dynamic quantisation) runs on the CPU, "
                   "found device 'cuda'"], err


def _missing_device():
    """A device name torch knows that this machine lacks."""
    return f"cuda:{torch.cuda.device_count()}"


# commands without a recipe config: their arguments name files that do not exist, so a device error must come
# before anything is read
PLAIN = {"embed": ["好"], "predict": ["--model", "m", "--input", "i", "--out", "o"],
         "similar": ["--index", "x", "--index-from", "s.txt", "--model", "m", "--query", "q"]}


@pytest.mark.parametrize("command", [*sorted(PLAIN), *sorted(RECIPES)])
@pytest.mark.parametrize("device", ["bogus", "cuda:x", _missing_device()])
def test_a_device_that_is_not_here_is_one_line(monkeypatch, capsys, command, device):
    if command in RECIPES:  # the recipe must not start
        monkeypatch.setattr(RECIPES[command][1], RECIPES[command][2], lambda *a, **k: pytest.fail("ran"))
    required = RECIPES[command][0] if command in RECIPES else PLAIN[command]
    assert main([command, *required, "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"plmkit {command}: error: device {device!r}: "), err


def test_a_bad_device_from_the_real_command_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "plmkit.cli", "ptune", "--train", str(tmp_path / "t.tsv"),
                        "--out", str(tmp_path / "out"), "--device", "bogus"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plmkit ptune: error: device 'bogus': "), lines
    assert "cpu, cuda" in lines[0]  # torch's list of device types
    assert list(tmp_path.iterdir()) == []


def test_info_reports_on_a_device_this_machine_lacks(capsys):
    """info --hardware --device cuda answers what plmkit would choose there, GPU or not."""
    assert main(["info", "--hardware", "--device", "cuda"]) == 0
    assert ["device:", "cuda"] in [line.split() for line in capsys.readouterr().out.splitlines()]
    assert main(["info", "--hardware", "--device", "bogus"]) == 2


# ---- the command and the recipe do the same thing ------------------------------------------------------

POS = ["这本书很好看", "电影真的好", "质量好很满意"]
NEG = ["质量太差了", "电影不好看", "很失望不满意"]


def test_ptune_command_equals_the_recipe_with_the_configs_defaults(tmp_path, capsys):
    rows = [(t, "1") for t in POS] + [(t, "0") for t in NEG]
    (tmp_path / "train.tsv").write_text("".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    torch.manual_seed(0)
    base = _tiny(tmp_path / "base", POS + NEG + ["满意很不"], with_mlm=True)
    assert main(["ptune", "--model", str(base), "--train", str(tmp_path / "train.tsv"), "--valid",
                 str(tmp_path / "train.tsv"), "--out", str(tmp_path / "cli"), "--steps", "3"]) == 0
    report = run_fewshot(base, tmp_path / "lib", train=tmp_path / "train.tsv", valid=tmp_path / "train.tsv",
                         cfg=FewShotConfig(prompt_tuning=True, steps=3), progress=False)
    cli = json.loads((tmp_path / "cli" / "fewshot.json").read_text(encoding="utf-8"))
    assert cli["config"] == report["config"]
    assert cli["config"]["lr"] == 1e-2 and cli["config"]["patterns"] == ["{p}{p}{p}{p}{mask}{p}{p}{p}{p}{text}"]
    assert cli["patterns"] == report["patterns"]
    from safetensors.torch import load_file
    trained = [load_file(tmp_path / d / "member0" / "prompts.safetensors")["prompts"] for d in ("cli", "lib")]
    assert torch.equal(*trained)


# ---- SimBERT ---------------------------------------------------------------------------------------------

def test_simbert_trains_and_loads_on_the_configs_device(monkeypatch, tmp_path):
    asked = []
    resolve = plmkit.recipes.simbert.resolve_device
    monkeypatch.setattr(plmkit.recipes.simbert, "resolve_device", lambda d=None: asked.append(d) or resolve(d))
    chars = [chr(0x4E00 + i) for i in range(12)]
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars)
    cfg = ModelConfig(family="bert", vocab_size=tok.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                      intermediate_size=24, max_position=32)
    model = build_simbert(cfg)
    train_simbert(model, tok, [(chars[0] + chars[1], chars[2]), (chars[3], chars[4] + chars[5])],
                  SimBertConfig(steps=1, batch_size=2, precision="fp32", device="cpu"))
    assert asked == ["cpu"]
    plmkit.save_pretrained(model, tmp_path / "sim")
    plmkit.recipes.simbert.load_simbert(tmp_path / "sim", device="cpu")
    assert asked == ["cpu", "cpu"]
