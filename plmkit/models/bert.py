"""BERT and RoBERTa: post-norm encoders with learned absolute positions.

    ids, segments ─► Embeddings(token + segment + position ─► LayerNorm)
                 ─► L × PostNormBlock(SelfAttention, FeedForward)
                 ─► [Pooler] [MLMHead tied to token embeddings] [NSPHead]

BERT: arXiv:1810.04805. RoBERTa (arXiv:1907.11692) differs only in its position module
(positions count from pad_token_id + 1, pads sit at pad_token_id).
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from ..config import ConfigError, ModelConfig, config_from_bert_dict
from ..convert.namemap import Rule
from ..modules.attention import SelfAttention
from ..modules.blocks import PostNormBlock
from ..modules.embeddings import Embeddings
from ..modules.encoder import Encoder
from ..modules.feedforward import FeedForward
from ..modules.heads import Classifier, MLMHead, NSPHead, Pooler
from ..modules.positions import LearnedPositions, PaddingAwarePositions
from . import Family, Source, holds, model_type_is


def layer_norm(config: ModelConfig, dim: int | None = None) -> nn.LayerNorm:
    """The LayerNorm of a BERT-like model over `dim` features (default hidden_size), with the config's epsilon."""
    return nn.LayerNorm(dim or config.hidden_size, eps=config.layer_norm_eps)


def post_norm_block(config: ModelConfig, attn: nn.Module | None = None) -> PostNormBlock:
    """One BERT block; `attn` replaces the default attention (rotary, relative positions)."""
    c = config
    attn = attn or SelfAttention(c.hidden_size, c.num_heads, c.head_size, dropout=c.attention_dropout)
    return PostNormBlock(attn, FeedForward(c.hidden_size, c.intermediate_size, c.hidden_act),
                         layer_norm(c), layer_norm(c), c.dropout)


def init_weights(model: nn.Module, std: float) -> nn.Module:
    """BERT's initialisation: normal(0, std) weights, zero biases, unit norms."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for name, p in model.named_parameters():
        if name.endswith("position.weight"):
            nn.init.normal_(p, std=std)
        elif name == "mlm.bias":
            nn.init.zeros_(p)
    return model


def build_bert(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False, with_nsp: bool = False,
               application: str = "encoder", positions: nn.Module | None = None,
               num_labels: int | None = None) -> Encoder:
    """BERT encoder with the heads asked for (bert4keras' build_transformer_model options).

    `num_labels` adds a classifier on the pooled output (as BertForSequenceClassification).
    """
    c = config
    dim = c.embedding_size or c.hidden_size
    if positions is None:
        positions = LearnedPositions(c.max_position, dim)
    embeddings = Embeddings(c.vocab_size, dim, type_vocab_size=c.type_vocab_size, positions=positions,
                            norm=layer_norm(c, dim), dropout=c.dropout,
                            project_to=c.hidden_size if c.embedding_size else None)
    blocks = nn.ModuleList(post_norm_block(c) for _ in range(c.num_layers))
    pooler = Pooler(c.hidden_size) if with_pool or with_nsp or num_labels else None
    mlm = MLMHead(c.hidden_size, embeddings.token, c.hidden_act, layer_norm(c, dim)) if with_mlm else None
    nsp = NSPHead(c.hidden_size) if with_nsp else None
    classifier = Classifier(c.hidden_size, num_labels, c.dropout) if num_labels else None
    model = Encoder(c, embeddings, blocks, application=application, pooler=pooler, mlm=mlm, nsp=nsp,
                    classifier=classifier)
    return init_weights(model, c.initializer_range)


def build_roberta(config: ModelConfig, **options: Any) -> Encoder:
    """RoBERTa: BERT with padding-aware positions."""
    if config.pad_token_id is None:
        raise ConfigError(f"{config.source}: RoBERTa counts positions from pad_token_id + 1; the config names no pad id")
    dim = config.embedding_size or config.hidden_size
    return build_bert(config, positions=PaddingAwarePositions(config.max_position, dim, config.pad_token_id), **options)


# ---- Hugging Face names (data) ---------------------------------------------------------------

def _qkv(p: str, part: str) -> list[str]:
    return [f"{p}encoder.layer.{{i}}.attention.self.{n}.{part}" for n in ("query", "key", "value")]


def hf_rules(config: ModelConfig, prefix: str = "", names=None, head_prefix: str = "cls.predictions.",
             mlm_names: dict[str, str] | None = None) -> tuple[list[Rule], set[str]]:
    """Our names <- transformers' BertModel / BertForPreTraining names (base model under `prefix`)."""
    p = prefix
    L = "encoder.layer.{i}."
    rules = [
        Rule("embeddings.token.weight", f"{p}embeddings.word_embeddings.weight", vocab_rows=True),
        Rule("embeddings.segment.weight", f"{p}embeddings.token_type_embeddings.weight"),
        Rule("embeddings.position.weight", f"{p}embeddings.position_embeddings.weight"),
        Rule("embeddings.norm.weight", f"{p}embeddings.LayerNorm.weight"),
        Rule("embeddings.norm.bias", f"{p}embeddings.LayerNorm.bias"),
        Rule("blocks.{i}.attn.qkv.weight", _qkv(p, "weight")),
        Rule("blocks.{i}.attn.qkv.bias", _qkv(p, "bias")),
        Rule("blocks.{i}.attn.out.weight", f"{p}{L}attention.output.dense.weight"),
        Rule("blocks.{i}.attn.out.bias", f"{p}{L}attention.output.dense.bias"),
        Rule("blocks.{i}.attn_norm.weight", f"{p}{L}attention.output.LayerNorm.weight"),
        Rule("blocks.{i}.attn_norm.bias", f"{p}{L}attention.output.LayerNorm.bias"),
        Rule("blocks.{i}.ffn.up.weight", f"{p}{L}intermediate.dense.weight"),
        Rule("blocks.{i}.ffn.up.bias", f"{p}{L}intermediate.dense.bias"),
        Rule("blocks.{i}.ffn.down.weight", f"{p}{L}output.dense.weight"),
        Rule("blocks.{i}.ffn.down.bias", f"{p}{L}output.dense.bias"),
        Rule("blocks.{i}.ffn_norm.weight", f"{p}{L}output.LayerNorm.weight"),
        Rule("blocks.{i}.ffn_norm.bias", f"{p}{L}output.LayerNorm.bias"),
        Rule("pooler.dense.weight", f"{p}pooler.dense.weight"),
        Rule("pooler.dense.bias", f"{p}pooler.dense.bias"),
    ]
    h = head_prefix
    m = mlm_names or {"dense": "transform.dense", "norm": "transform.LayerNorm", "bias": "bias", "decoder": "decoder"}
    rules += [
        Rule("mlm.dense.weight", f"{h}{m['dense']}.weight"),
        Rule("mlm.dense.bias", f"{h}{m['dense']}.bias"),
        Rule("mlm.norm.weight", f"{h}{m['norm']}.weight"),
        Rule("mlm.norm.bias", f"{h}{m['norm']}.bias"),
        Rule("mlm.bias", f"{h}{m['bias']}", vocab_rows=True),
        Rule("nsp.dense.weight", "cls.seq_relationship.weight"),
        Rule("nsp.dense.bias", "cls.seq_relationship.bias"),
        # a classification head is task-specific: absent from pretrained checkpoints, initialised fresh
        Rule("classifier.dense.weight", "classifier.weight", optional=True),
        Rule("classifier.dense.bias", "classifier.bias", optional=True),
    ]
    tied = {f"{h}{m['decoder']}.weight", f"{h}{m['decoder']}.bias", f"{p}embeddings.position_ids"}
    expanded = [e for r in rules for e in r.expand(config.num_layers, {})]
    return expanded, tied


# ---- original TensorFlow names (google-research/bert; also chinese_roberta_wwm_ext, SimBERT, WoBERT) -----

def tf_layer_rules(L: str) -> list[Rule]:
    """One google-research/bert layer under the prefix `L` (with {i}): fused qkv from query/key/value,
    the output, intermediate and LayerNorm variables. BERT, ELECTRA and CDial-GPT store layers so."""
    qkv = [f"{L}attention/self/{n}" for n in ("query", "key", "value")]
    rules = [Rule("blocks.{i}.attn.qkv.weight", [f"{q}/kernel" for q in qkv], transpose=True),
             Rule("blocks.{i}.attn.qkv.bias", [f"{q}/bias" for q in qkv])]
    for ours, theirs in (("attn.out", "attention/output/dense"), ("ffn.up", "intermediate/dense"),
                         ("ffn.down", "output/dense")):
        rules += [Rule(f"blocks.{{i}}.{ours}.weight", f"{L}{theirs}/kernel", transpose=True),
                  Rule(f"blocks.{{i}}.{ours}.bias", f"{L}{theirs}/bias")]
    for ours, theirs in (("attn_norm", "attention/output/LayerNorm"), ("ffn_norm", "output/LayerNorm")):
        rules += [Rule(f"blocks.{{i}}.{ours}.weight", f"{L}{theirs}/gamma"),
                  Rule(f"blocks.{{i}}.{ours}.bias", f"{L}{theirs}/beta")]
    return rules


# pooler, MLM head and NSP (ALBERT: sentence-order) head, as BERT and ALBERT releases name them
TF_HEAD_RULES = [
    Rule("pooler.dense.weight", "bert/pooler/dense/kernel", transpose=True),
    Rule("pooler.dense.bias", "bert/pooler/dense/bias"),
    Rule("mlm.dense.weight", "cls/predictions/transform/dense/kernel", transpose=True),
    Rule("mlm.dense.bias", "cls/predictions/transform/dense/bias"),
    Rule("mlm.norm.weight", "cls/predictions/transform/LayerNorm/gamma"),
    Rule("mlm.norm.bias", "cls/predictions/transform/LayerNorm/beta"),
    Rule("mlm.bias", "cls/predictions/output_bias", vocab_rows=True),
    Rule("nsp.dense.weight", "cls/seq_relationship/output_weights"),  # stored [2, H] already
    Rule("nsp.dense.bias", "cls/seq_relationship/output_bias"),
]


def tf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our names <- google-research/bert variable names (kernels are stored [in, out]: transposed)."""
    rules = [
        Rule("embeddings.token.weight", "bert/embeddings/word_embeddings", vocab_rows=True),
        Rule("embeddings.segment.weight", "bert/embeddings/token_type_embeddings"),
        Rule("embeddings.position.weight", "bert/embeddings/position_embeddings"),
        Rule("embeddings.norm.weight", "bert/embeddings/LayerNorm/gamma"),
        Rule("embeddings.norm.bias", "bert/embeddings/LayerNorm/beta"),
        *tf_layer_rules("bert/encoder/layer_{i}/"),
        *TF_HEAD_RULES,
        Rule("classifier.dense.weight", "output_weights", optional=True),  # run_classifier.py's head
        Rule("classifier.dense.bias", "output_bias", optional=True),
    ]
    return [e for r in rules for e in r.expand(config.num_layers, {})], set()


def config_from_tf(d: dict[str, Any], source: str, names=None, family: str = "bert") -> ModelConfig:
    """bert_config.json -> ModelConfig. google-research/bert's `gelu` is the tanh approximation; `gelu_erf` is exact."""
    d = dict(d)
    if d.get("hidden_act") == "gelu":
        d["hidden_act"] = "gelu_tanh"
    return config_from_bert_dict(d, family, source)


# Our activation -> its name in a bert_config.json. google-research/bert's "gelu" is the tanh
# approximation, so exact GELU cannot be written "gelu": it is written "gelu_erf", bert4keras' name for
# it (bert4keras/backend.py custom_objects: 'gelu_erf': gelu_erf); google-research/bert's
# get_activation refuses that name rather than silently computing another function.
TF_ACTIVATION_NAMES = {"gelu_tanh": "gelu", "gelu_new": "gelu", "gelu": "gelu_erf"}


def config_to_tf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> bert_config.json (the inverse of config_from_tf)."""
    d = hf_config_writer("bert", [])(c)
    for key in ("model_type", "architectures", "layer_norm_eps", "pad_token_id", "id2label", "label2id"):
        d.pop(key, None)
    d["hidden_act"] = TF_ACTIVATION_NAMES.get(c.hidden_act, c.hidden_act)
    return d


def roberta_hf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """RoBERTa names: BERT's base model, with the MLM head under lm_head."""
    return hf_rules(config, prefix, head_prefix="lm_head.",
                    mlm_names={"dense": "dense", "norm": "layer_norm", "bias": "bias", "decoder": "decoder"})


def hf_encoder_fields(c: ModelConfig) -> dict[str, Any]:
    """The config.json fields every BERT-like transformers config shares (activation in transformers' spelling)."""
    return {
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "intermediate_size": c.intermediate_size,
        "hidden_act": {"gelu_tanh": "gelu_new"}.get(c.hidden_act, c.hidden_act),
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attention_dropout,
        "max_position_embeddings": c.max_position,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "pad_token_id": c.pad_token_id,
        "initializer_range": c.initializer_range,
    }


def hf_config_writer(model_type: str, architectures: list[str]) -> Callable[[ModelConfig], dict[str, Any]]:
    """The writer of a BERT-like transformers config.json of `model_type` (class labels included)."""
    def convert(c: ModelConfig) -> dict[str, Any]:
        labels = c.labels
        label_fields = {"id2label": {str(i): n for i, n in enumerate(labels)},
                        "label2id": {n: i for i, n in enumerate(labels)}} if labels else {}
        return label_fields | {"model_type": model_type, "architectures": architectures} | hf_encoder_fields(c)
    return convert


def hf_architecture_namer(base: str) -> Callable[[nn.Module], str]:
    """The transformers class name for an encoder's heads: {base}ForSequenceClassification / ForPreTraining / ..."""
    def name(model: nn.Module) -> str:
        if model.classifier is not None:
            return f"{base}ForSequenceClassification"
        if model.mlm is not None and model.nsp is not None:
            return f"{base}ForPreTraining"
        return f"{base}ForMaskedLM" if model.mlm is not None else f"{base}Model"
    return name


def tiny_config(family: str = "bert") -> ModelConfig:
    """A tiny BERT-shaped config for tests."""
    return ModelConfig(family=family, vocab_size=50, hidden_size=24, num_layers=2, num_heads=3, intermediate_size=37,
                       max_position=40, pad_token_id=1 if family == "roberta" else 0)


def config_reader(family: str) -> Callable[..., ModelConfig]:
    """The reader of a BERT-like config.json (transformers' keys) for `family`."""
    return lambda d, source, names=None: config_from_bert_dict(d, family, source)


# google-research/bert's layout: absolute positions and layer_{i} scopes (not ALBERT's, which adds
# word_embeddings_2 in albert_zh; NEZHA and RoFormer have no position table)
TF_LAYER0 = "bert/encoder/layer_0/attention/self/query/kernel"
TF_BERT_LAYOUT = holds(TF_LAYER0, "bert/embeddings/position_embeddings", absent=("bert/embeddings/word_embeddings_2",))

FAMILIES = {
    "bert": Family(
        name="bert", build=build_bert, tiny=tiny_config,
        sources={
            "hf": Source(read_config=config_reader("bert"), write_config=hf_config_writer("bert", ["BertForPreTraining"]),
                         rules=hf_rules, detect=model_type_is("bert"), prefixes=("bert.", ""),
                         architecture=hf_architecture_namer("Bert")),
            # also chinese_roberta_wwm_ext, SimBERT and WoBERT, released in BERT's format
            "tf": Source(read_config=config_from_tf, write_config=config_to_tf, rules=tf_rules, detect=TF_BERT_LAYOUT,
                         config_file="bert_config.json", checkpoint_name="bert_model.ckpt"),
        },
    ),
    "roberta": Family(
        name="roberta", build=build_roberta, tiny=lambda: tiny_config("roberta"),
        sources={
            "hf": Source(read_config=config_reader("roberta"),
                         write_config=hf_config_writer("roberta", ["RobertaForMaskedLM"]), rules=roberta_hf_rules,
                         detect=model_type_is("roberta", "xlm-roberta"), prefixes=("roberta.", ""),
                         architecture=hf_architecture_namer("Roberta")),
            # chinese_roberta_wwm_ext ships BERT-format TF checkpoints: they load as bert
        },
    ),
}
