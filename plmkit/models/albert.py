"""ALBERT: factorised embeddings and Transformer blocks shared across layers.

    ids, segments ─► Embeddings(token + segment + position in E dims ─► LayerNorm ─► project E → H)
                 ─► albert:          the checkpoint's G x I distinct PostNormBlocks, applied L x I times
                    albert_unshared: L x I independent PostNormBlocks, each starting from the block it used
                 ─► [Pooler] [MLMHead: H → E, LayerNorm(E), tied E-dim token table] [SOP head]

ALBERT: arXiv:1909.11942. Loading the shared block into independent layers and fine-tuning
them separately works better than keeping them tied: kexue.fm/archives/7846.

brightmart/albert_zh's early releases factorise differently (token_projection): the E → H
projection (no bias) applies to the token vectors alone, segment and position tables are H
wide and normalised in H, and the MLM head returns through the same projection:

    ids ─► token table (E) ─► project E → H ─► + segment + position (H) ─► LayerNorm(H) ─► blocks
    MLM: dense H → H ─► act ─► LayerNorm(H) ─► (token table · projection)ᵀ + bias

Layer groups (google-research/albert; transformers' AlbertTransformer): L = num_hidden_layers,
G = num_hidden_groups, I = inner_group_num. Each of the G groups holds I blocks applied in
sequence; layer i runs group i // (L / G). So there are G x I distinct blocks and L x I applications:

    L=4, G=2, I=2:  layer 0: g0.0 ─► g0.1   layer 1: g0.0 ─► g0.1   layer 2: g1.0 ─► g1.1   layer 3: g1.0 ─► g1.1

Released checkpoints use G = I = 1. Our names for the block of group g, inner index j:
    G = I = 1 (one shared block)            blocks.block.*             (SharedBlocks)
    G = L (no block runs twice)             blocks.{i * I + j}.*       (one per application, in order)
    otherwise                               blocks.distinct.{g * I + j}.*   (ScheduledBlocks)
A model whose blocks are independent (albert_unshared) has L x I layers and is written with
num_hidden_layers = num_hidden_groups = L x I and inner_group_num = 1, one group per block, which
transformers' AlbertModel loads to the same outputs: no fine-tuned block is thrown away.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, FamilyOptions, ModelConfig, config_from_bert_dict, positive_ints
from ..convert.namemap import Rule
from ..modules.blocks import ScheduledBlocks, SharedBlocks
from ..modules.embeddings import Embeddings
from ..modules.encoder import Encoder
from ..modules.heads import MLMHead, NSPHead, Pooler
from ..modules.linear import Linear
from ..modules.positions import LearnedPositions
from . import Family, Source, model_type_is
from . import bert
from .bert import hf_encoder_fields, init_weights, post_norm_block


def _norm(config: ModelConfig, dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=config.layer_norm_eps)


@dataclass(frozen=True)
class AlbertOptions(FamilyOptions):
    """ALBERT's layer layout (transformers' AlbertConfig names) and albert_zh's factorisation."""

    num_hidden_groups: int = 1  # distinct layer groups; layer i uses group i * groups // num_layers
    inner_group_num: int = 1  # layers in each group, applied in turn
    token_projection: bool = False  # brightmart/albert_zh: the E -> H projection applies to token vectors only

    def check(self) -> None:
        positive_ints(self, "num_hidden_groups", "inner_group_num")


def group_layout(config: ModelConfig) -> tuple[int, int]:
    """(num_hidden_groups, inner_group_num) of `config`, checked: the one place that reads them.

    Only group counts that divide num_hidden_layers are accepted: transformers runs group
    int(i / (L / G)) at layer i, exactly i // (L / G) then; for other counts its float arithmetic
    and Google's int(i / L * G) differ from that and from each other (L=18, G=14). (Google's also
    strays for a few divisors, e.g. L = G = 22, where its checkpoint lacks a group: loading names it.)
    """
    L = config.num_layers
    groups, inner = config.options.num_hidden_groups, config.options.inner_group_num  # positive (AlbertOptions)
    if L % groups:
        raise ConfigError(f"{config.source}: num_hidden_groups is {groups}, which does not divide num_hidden_layers "
                          f"({L}); use a divisor of {L} (transformers' and Google's code assign layers to groups "
                          "differently otherwise)")
    if token_projection(config) and (inner != 1 or groups not in (1, L)):
        raise ConfigError(f"{config.source}: this ALBERT uses brightmart/albert_zh's layout, which holds one shared "
                          f"layer (or one per layer); found num_hidden_groups {groups} and inner_group_num {inner} "
                          f"(supported: num_hidden_groups 1 or {L}, inner_group_num 1)")
    return groups, inner


def _applications(config: ModelConfig) -> list[tuple[int, int]]:
    """(group, inner index) of each block application, in the order transformers' AlbertTransformer runs them."""
    groups, inner = group_layout(config)
    per_group = config.num_layers // groups
    return [(i // per_group, j) for i in range(config.num_layers) for j in range(inner)]


def _block_names(config: ModelConfig, unshared: bool) -> list[tuple[str, int, int]]:
    """(our name prefix, group, inner index) for each of our blocks (see the module docstring).

    `unshared`: one independent block per application, each read from the group's block it ran.
    """
    groups, inner = group_layout(config)
    if not unshared and groups == inner == 1:
        return [("blocks.block.", 0, 0)]
    if unshared or groups == config.num_layers:
        return [(f"blocks.{a}.", g, j) for a, (g, j) in enumerate(_applications(config))]
    return [(f"blocks.distinct.{g * inner + j}.", g, j) for g in range(groups) for j in range(inner)]


class ProjectedTokens(nn.Module):
    """token ids ─► E-wide table ─► E → H projection without bias (brightmart/albert_zh's factorisation).

    `weight` is the effective (V, H) table, so a head tied to it (MLMHead) projects back
    through the same two matrices, as albert_zh's pre-training head does.
    """

    def __init__(self, vocab_size: int, dim: int, hidden_size: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab_size, dim)
        self.project = Linear(dim, hidden_size, bias=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.project(self.table.weight)  # (V, H)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.project(self.table(input_ids))  # (B, T, H)


def token_projection(config: ModelConfig) -> bool:
    """Whether the checkpoint uses albert_zh's layout (projection on the token vectors only)."""
    return config.options.token_projection


def _encoder(config: ModelConfig, blocks: nn.Module, *, with_mlm: bool, with_pool: bool, with_nsp: bool,
             application: str) -> Encoder:
    c = config
    dim = c.embedding_size or c.hidden_size  # ALBERT projects E -> H even when E == H
    if token_projection(c):  # segment, position and norm live in H; the token vectors are projected first
        # one placeholder row: the token module is replaced at once, so no (V, H) table is allocated
        embeddings = Embeddings(1, c.hidden_size, type_vocab_size=c.type_vocab_size,
                                positions=LearnedPositions(c.max_position, c.hidden_size),
                                norm=_norm(c, c.hidden_size), dropout=c.dropout)
        embeddings.token = ProjectedTokens(c.vocab_size, dim, c.hidden_size)
        head_norm = _norm(c, c.hidden_size)
    else:
        embeddings = Embeddings(c.vocab_size, dim, type_vocab_size=c.type_vocab_size,
                                positions=LearnedPositions(c.max_position, dim), norm=_norm(c, dim),
                                dropout=c.dropout, project_to=c.hidden_size)
        head_norm = _norm(c, dim)
    pooler = Pooler(c.hidden_size) if with_pool or with_nsp else None
    mlm = MLMHead(c.hidden_size, embeddings.token, c.hidden_act, head_norm) if with_mlm else None
    sop = NSPHead(c.hidden_size) if with_nsp else None  # sentence-order prediction: same shape as BERT's NSP
    model = Encoder(c, embeddings, blocks, application=application, pooler=pooler, mlm=mlm, nsp=sop)
    return init_weights(model, c.initializer_range)


def build_albert(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False, with_nsp: bool = False,
                 application: str = "encoder") -> Encoder:
    """ALBERT as its checkpoint lays it out: G x I distinct blocks applied L x I times (see group_layout)."""
    c = config
    groups, inner = group_layout(c)
    if groups == inner == 1:
        blocks = SharedBlocks(post_norm_block(c), c.num_layers)
    elif groups == c.num_layers:  # no block runs twice: a plain stack
        blocks = nn.ModuleList(post_norm_block(c) for _ in range(c.num_layers * inner))
    else:
        blocks = ScheduledBlocks([post_norm_block(c) for _ in range(groups * inner)],
                                 [g * inner + j for g, j in _applications(c)])
    return _encoder(c, blocks, with_mlm=with_mlm, with_pool=with_pool, with_nsp=with_nsp, application=application)


def build_albert_unshared(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False,
                          with_nsp: bool = False, application: str = "encoder") -> Encoder:
    """ALBERT with independent blocks, one per application; loading copies each from the block it ran."""
    groups, inner = group_layout(config)
    n = config.num_layers * inner
    # the model's own config records what it now is, n independent layers of one block each, so that saving
    # writes them all (transformers runs n groups of one block as the grouped model: the same outputs)
    c = config.replace(num_layers=n).with_options(num_hidden_groups=n, inner_group_num=1)
    blocks = nn.ModuleList(post_norm_block(c) for _ in range(n))
    return _encoder(c, blocks, with_mlm=with_mlm, with_pool=with_pool, with_nsp=with_nsp, application=application)


# ---- Hugging Face names (data) ---------------------------------------------------------------

def _hf_block_rules(o: str, t: str) -> list[Rule]:
    """One ALBERT layer: ours under `o`, transformers' AlbertLayer under `t`."""
    qkv = [f"{t}attention.{n}" for n in ("query", "key", "value")]
    pairs = [("attn.out", "attention.dense"), ("attn_norm", "attention.LayerNorm"), ("ffn.up", "ffn"),
             ("ffn.down", "ffn_output"), ("ffn_norm", "full_layer_layer_norm")]
    return [Rule(f"{o}attn.qkv.{w}", [f"{n}.{w}" for n in qkv]) for w in ("weight", "bias")] + [
        Rule(f"{o}{ours}.{w}", f"{t}{theirs}.{w}") for ours, theirs in pairs for w in ("weight", "bias")]


def _rules(config: ModelConfig, prefix: str, unshared: bool) -> tuple[list[Rule], set[str]]:
    if token_projection(config):
        raise ConfigError(f"{config.source}: this ALBERT uses brightmart/albert_zh's layout (the projection "
                          "applies to the token vectors only), which transformers' AlbertModel cannot express; "
                          "save it with format='tf'")
    p = prefix
    pairs = [
        ("embeddings.token.weight", f"{p}embeddings.word_embeddings.weight"),
        ("embeddings.segment.weight", f"{p}embeddings.token_type_embeddings.weight"),
        ("embeddings.position.weight", f"{p}embeddings.position_embeddings.weight"),
        ("embeddings.norm.weight", f"{p}embeddings.LayerNorm.weight"),
        ("embeddings.norm.bias", f"{p}embeddings.LayerNorm.bias"),
        ("embeddings.project.weight", f"{p}encoder.embedding_hidden_mapping_in.weight"),
        ("embeddings.project.bias", f"{p}encoder.embedding_hidden_mapping_in.bias"),
        ("pooler.dense.weight", f"{p}pooler.weight"),
        ("pooler.dense.bias", f"{p}pooler.bias"),
        ("mlm.dense.weight", "predictions.dense.weight"),
        ("mlm.dense.bias", "predictions.dense.bias"),
        ("mlm.norm.weight", "predictions.LayerNorm.weight"),
        ("mlm.norm.bias", "predictions.LayerNorm.bias"),
        ("nsp.dense.weight", "sop_classifier.classifier.weight"),
        ("nsp.dense.bias", "sop_classifier.classifier.bias"),
    ]
    rules = [Rule(ours, theirs, vocab_rows=ours == "embeddings.token.weight") for ours, theirs in pairs]
    rules.append(Rule("mlm.bias", "predictions.bias", vocab_rows=True))
    for o, g, j in _block_names(config, unshared):  # a shared group's block is read once per block of ours
        rules += _hf_block_rules(o, f"{p}encoder.albert_layer_groups.{g}.albert_layers.{j}.")
    tied = {"predictions.decoder.weight", "predictions.decoder.bias", f"{p}embeddings.position_ids",
            f"{p}embeddings.token_type_ids"}
    return [e for r in rules for e in r.expand(config.num_layers, {})], tied


def hf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our `albert` names <- transformers' AlbertModel / AlbertForMaskedLM / AlbertForPreTraining names."""
    return _rules(config, prefix, unshared=False)


def unshared_hf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our `albert_unshared` names <- the same files: each group's block is read into every layer that runs it."""
    return _rules(config, prefix, unshared=True)


# ---- original TensorFlow names (data) ------------------------------------------------------------
# Google (google-research/albert modeling.py): embeddings E wide under bert/embeddings, the E → H
# mapping in bert/encoder/embedding_hidden_mapping_in, layer groups under
# bert/encoder/transformer/group_{g}/inner_group_{j}/ (see the module docstring for which layers run them).
# brightmart/albert_zh (modeling.py, run_pretraining.py): BERT's names, word_embeddings_2 for the
# token projection, one scope bert/encoder/layer_shared/ for the shared layer (bert/encoder/layer_{i}/
# when we write independent layers: the names BERT's code, which albert_zh copies, gives them).

_GOOGLE_BLOCK = {"q": "attention_1/self/query", "k": "attention_1/self/key", "v": "attention_1/self/value",
                 "out": "attention_1/output/dense", "attn_norm": "LayerNorm", "up": "ffn_1/intermediate/dense",
                 "down": "ffn_1/intermediate/output/dense", "ffn_norm": "LayerNorm_1"}
_BERT_BLOCK = {"q": "attention/self/query", "k": "attention/self/key", "v": "attention/self/value",
               "out": "attention/output/dense", "attn_norm": "attention/output/LayerNorm",
               "up": "intermediate/dense", "down": "output/dense", "ffn_norm": "output/LayerNorm"}


def _tf_block_rules(o: str, t: str, n: dict[str, str]) -> list[Rule]:
    """One ALBERT layer: ours under `o`, theirs under `t` with sub-scopes `n` (kernels stored [in, out])."""
    qkv = [f"{t}{n[k]}" for k in ("q", "k", "v")]
    rules = [Rule(f"{o}attn.qkv.weight", [f"{x}/kernel" for x in qkv], transpose=True),
             Rule(f"{o}attn.qkv.bias", [f"{x}/bias" for x in qkv])]
    for ours, key in (("attn.out", "out"), ("ffn.up", "up"), ("ffn.down", "down")):
        rules += [Rule(f"{o}{ours}.weight", f"{t}{n[key]}/kernel", transpose=True),
                  Rule(f"{o}{ours}.bias", f"{t}{n[key]}/bias")]
    for ours in ("attn_norm", "ffn_norm"):
        rules += [Rule(f"{o}{ours}.weight", f"{t}{n[ours]}/gamma"), Rule(f"{o}{ours}.bias", f"{t}{n[ours]}/beta")]
    return rules


def _tf_rules(config: ModelConfig, names, unshared: bool) -> tuple[list[Rule], set[str]]:
    groups, _ = group_layout(config)
    brightmart = token_projection(config)
    if names is not None:
        in_file = "bert/embeddings/word_embeddings_2" in names
        if in_file != brightmart:
            layout = "brightmart/albert_zh's (bert/embeddings/word_embeddings_2)" if in_file else "Google's"
            raise ConfigError(
                f"{config.source}: the checkpoint holds {layout} ALBERT layout but the config describes the other; "
                + ("albert_zh configs carry no Google group fields: remove inner_group_num / net_structure_type "
                   "/ down_scale_factor / gap_size / num_memory_blocks" if in_file else
                   'Google configs carry the group fields: add "inner_group_num": 1'))
    E = "bert/embeddings/"
    rules = [
        Rule("embeddings.segment.weight", f"{E}token_type_embeddings"),
        Rule("embeddings.position.weight", f"{E}position_embeddings"),
        Rule("embeddings.norm.weight", f"{E}LayerNorm/gamma"),
        Rule("embeddings.norm.bias", f"{E}LayerNorm/beta"),
    ]
    if brightmart:
        rules += [Rule("embeddings.token.table.weight", f"{E}word_embeddings", vocab_rows=True),
                  Rule("embeddings.token.project.weight", f"{E}word_embeddings_2", transpose=True)]
        for o, g, _ in _block_names(config, unshared):  # one group, or one per layer (group_layout)
            scope = "bert/encoder/layer_shared/" if groups == 1 else f"bert/encoder/layer_{g}/"
            rules += _tf_block_rules(o, scope, _BERT_BLOCK)
    else:
        rules += [Rule("embeddings.token.weight", f"{E}word_embeddings", vocab_rows=True),
                  Rule("embeddings.project.weight", "bert/encoder/embedding_hidden_mapping_in/kernel", transpose=True),
                  Rule("embeddings.project.bias", "bert/encoder/embedding_hidden_mapping_in/bias")]
        for o, g, j in _block_names(config, unshared):
            rules += _tf_block_rules(o, f"bert/encoder/transformer/group_{g}/inner_group_{j}/", _GOOGLE_BLOCK)
    rules += bert.TF_HEAD_RULES  # nsp is the sentence-order head here
    return [e for r in rules for e in r.expand(config.num_layers, {})], set()


def tf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our `albert` names <- Google ALBERT / brightmart albert_zh TensorFlow variable names."""
    return _tf_rules(config, names, unshared=False)


def unshared_tf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our `albert_unshared` names <- the same checkpoints: each group's layer is read into every layer running it."""
    return _tf_rules(config, names, unshared=True)


# Fields only Google's albert_config.json carries; albert_zh's configs are BERT's plus embedding_size.
_GOOGLE_FIELDS = ("inner_group_num", "net_structure_type", "down_scale_factor", "gap_size", "num_memory_blocks")


def _config_from_tf(family: str):
    def convert(d: dict[str, Any], source: str, names=None) -> ModelConfig:
        # Both google-research/albert and albert_zh (a copy of BERT's modeling.py) compute "gelu" with the
        # tanh approximation (transformers' AlbertConfig defaults to "gelu_new" for that reason).
        d = {**d, "hidden_act": {"gelu": "gelu_tanh"}.get(d.get("hidden_act", "gelu"), d.get("hidden_act"))}
        c = _config_from_hf(family)(d, source)
        if not any(k in d for k in _GOOGLE_FIELDS):
            c = c.with_options(token_projection=True)
            group_layout(c)  # albert_zh's layout allows fewer group layouts
        return c
    return convert


def config_to_tf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> albert_config.json: Google's fields, or albert_zh's for its layout."""
    d = {
        "attention_probs_dropout_prob": c.attention_dropout,
        "hidden_act": bert.TF_ACTIVATION_NAMES.get(c.hidden_act, c.hidden_act),  # exact GELU as "gelu_erf"
        "hidden_dropout_prob": c.dropout,
        "embedding_size": c.embedding_size or c.hidden_size,
        "hidden_size": c.hidden_size,
        "initializer_range": c.initializer_range,
        "intermediate_size": c.intermediate_size,
        "max_position_embeddings": c.max_position,
        "num_attention_heads": c.num_heads,
        "num_hidden_layers": c.num_layers,
        "type_vocab_size": c.type_vocab_size,
        "vocab_size": c.vocab_size,
    }
    if c.layer_norm_eps != 1e-12:  # neither release's code reads it (TF's layer_norm uses 1e-12); we do
        d["layer_norm_eps"] = c.layer_norm_eps
    groups, inner = group_layout(c)
    if token_projection(c):
        if groups != 1:
            d["num_hidden_groups"] = groups  # albert_zh's code has no such field; our reader does
        return d
    return d | {"num_hidden_groups": groups, "net_structure_type": 0, "gap_size": 0, "num_memory_blocks": 0,
                "inner_group_num": inner, "down_scale_factor": 1}


def _config_from_hf(family: str):
    def convert(d: dict[str, Any], source: str, names=None) -> ModelConfig:
        c = config_from_bert_dict(d, family, source)
        if "hidden_act" not in d:
            c = c.replace(hidden_act="gelu_new")  # transformers' AlbertConfig default
        if d.get("tie_word_embeddings") is False:
            raise ConfigError(f"{source}: tie_word_embeddings is false; ALBERT's MLM decoder is built tied to "
                              "the token embeddings")
        c = c.with_options(num_hidden_groups=d.get("num_hidden_groups", 1), inner_group_num=d.get("inner_group_num", 1))
        group_layout(c)
        return c
    return convert


def config_to_hf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> an HF AlbertConfig dict."""
    groups, inner = group_layout(c)
    return {"model_type": "albert", "embedding_size": c.embedding_size or c.hidden_size,
            "num_hidden_groups": groups, "inner_group_num": inner} | hf_encoder_fields(c)


def hf_architecture(model: nn.Module) -> str:
    """The transformers class that holds the heads this model has."""
    if model.mlm is not None and model.nsp is not None:
        return "AlbertForPreTraining"
    return "AlbertForMaskedLM" if model.mlm is not None else "AlbertModel"


def tiny_config(family: str = "albert") -> ModelConfig:
    """A tiny ALBERT config for tests (embedding size below the hidden size, as in every release)."""
    return ModelConfig(family=family, vocab_size=50, embedding_size=16, hidden_size=24, num_layers=3, num_heads=3,
                       intermediate_size=37, max_position=40, hidden_act="gelu_new")


# Google's layout (embedding_hidden_mapping_in, transformer/group_{g}) or brightmart's (word_embeddings_2)
def _tf_detect(d: dict[str, Any], names) -> bool:
    return "bert/embeddings/word_embeddings_2" in names or any(
        n.startswith("bert/encoder/transformer/group_") for n in names)


def _family(name: str, build, hf_rules_, tf_rules_, detect: bool) -> Family:
    return Family(
        name=name, build=build, tiny=lambda: tiny_config(name), options=AlbertOptions,
        sources={
            "hf": Source(read_config=_config_from_hf(name), write_config=config_to_hf, rules=hf_rules_,
                         detect=model_type_is("albert") if detect else None, prefixes=("albert.", ""),
                         architecture=hf_architecture),
            "tf": Source(read_config=_config_from_tf(name), write_config=config_to_tf, rules=tf_rules_,
                         detect=_tf_detect if detect else None, config_file="albert_config.json",
                         checkpoint_name="model.ckpt-best"),
        },
    )


# albert_unshared reads albert's checkpoints: only named with model=
FAMILIES = {
    "albert": _family("albert", build_albert, hf_rules, tf_rules, detect=True),
    "albert_unshared": _family("albert_unshared", build_albert_unshared, unshared_hf_rules, unshared_tf_rules,
                               detect=False),
}
