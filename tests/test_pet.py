"""PET patterns / verbalizers and P-tuning prompts on tiny models, against scores computed by hand
from the model's full output (no slot gathering, no batching, inputs written out token by token)."""
import math

import pytest
import torch

from plmkit.config import ModelConfig
from plmkit.models import build_model
from plmkit.tasks.pet import (
    Pattern,
    PromptClassifier,
    PromptEmbeddings,
    Verbalizer,
    load_prompts,
    prompt_loss,
    save_prompts,
)
from plmkit.tokenizers import WordPieceTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("很不好差满意总之。电影真的书一般")


def _spread(model):
    """Weights of std 0.3 instead of 0.02: a random tiny model whose outputs depend on its inputs."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(std=0.3)
    return model.eval()


def _ids(tok, chars):
    return [tok.token_to_id(c) for c in chars]


@pytest.fixture
def bert():
    torch.manual_seed(0)
    cfg = ModelConfig(family="bert", vocab_size=len(VOCAB), hidden_size=24, num_layers=2, num_heads=2,
                      intermediate_size=40, max_position=64)
    return _spread(build_model(cfg, with_mlm=True)), WordPieceTokenizer(VOCAB)


def _full_logp(model, ids, embeds=None):
    """log-softmax of the model's logits at every position of one unpadded row."""
    x = torch.tensor([ids])
    return model(x, inputs_embeds=embeds).logits[0].log_softmax(-1)


def test_prefix_pattern_multi_token_words_product_and_mean(bert):
    model, tok = bert
    words = {"pos": "很好", "neg": "不好"}
    for combine in ("product", "mean"):
        clf = PromptClassifier(model, tok, "{mask}满意。{text}", Verbalizer(words, combine))
        batch = clf.encode(["电影真好", "书"])
        g = batch["groups"][0]
        want_row0 = _ids(tok, ["[CLS]", "[MASK]", "[MASK]", "满", "意", "。", "电", "影", "真", "好", "[SEP]"])
        assert g["input_ids"][0].tolist() == want_row0
        assert g["slots"].tolist() == [[1, 2], [1, 2]]
        scores, word_logp = clf(batch)
        for row, text in enumerate(["电影真好", "书"]):
            ids = _ids(tok, ["[CLS]", "[MASK]", "[MASK]", "满", "意", "。", *text, "[SEP]"])
            logp = _full_logp(model, ids)
            for j, word in enumerate(words.values()):
                a, b = logp[1, tok.token_to_id(word[0])].item(), logp[2, tok.token_to_id(word[1])].item()
                want = a + b if combine == "product" else math.log((math.exp(a) + math.exp(b)) / 2)
                assert scores[row, j].item() == pytest.approx(want, abs=1e-5)
                assert word_logp[row, j].item() == pytest.approx(a + b, abs=1e-5)


def test_suffix_pattern_truncates_the_text_not_the_pattern(bert):
    model, tok = bert
    clf = PromptClassifier(model, tok, "{text}总之很{mask}。", Verbalizer({"1": "好", "0": "差"}), max_length=10)
    g = clf.encode(["电影真的一般电影真的一般"])["groups"][0]
    # 10 = [CLS] + 4 text chars + 总 之 很 [MASK] 。 ... no: [CLS] + text + 5 pattern tokens + [SEP] -> 3 text chars
    want = _ids(tok, ["[CLS]", "电", "影", "真", "总", "之", "很", "[MASK]", "。", "[SEP]"])
    assert g["input_ids"][0].tolist() == want and g["slots"].tolist() == [[7]]
    scores, _ = clf(clf.encode(["电影真的一般电影真的一般"]))
    logp = _full_logp(model, want)
    assert scores[0].tolist() == pytest.approx([logp[7, tok.token_to_id("好")].item(),
                                                logp[7, tok.token_to_id("差")].item()], abs=1e-5)
    probs = clf.predict_proba(["电影真的一般电影真的一般"])
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_words_of_different_lengths_are_scored_in_one_pass_per_length(bert):
    model, tok = bert
    clf = PromptClassifier(model, tok, "{text}{mask}", Verbalizer({"a": "好", "b": "不好", "c": "差"}))
    batch = clf.encode(["书"])
    assert [g["labels"] for g in batch["groups"]] == [[0, 2], [1]]
    scores, _ = clf(batch)
    one = _full_logp(model, _ids(tok, ["[CLS]", "书", "[MASK]", "[SEP]"]))
    two = _full_logp(model, _ids(tok, ["[CLS]", "书", "[MASK]", "[MASK]", "[SEP]"]))
    want = [one[2, tok.token_to_id("好")].item(),
            two[2, tok.token_to_id("不")].item() + two[3, tok.token_to_id("好")].item(),
            one[2, tok.token_to_id("差")].item()]
    assert scores[0].tolist() == pytest.approx(want, abs=1e-5)
    first = clf.encode(["书"], first_group_only=True)["groups"]  # what masked-LM batches of unlabeled text use
    assert len(first) == 1 and first[0]["labels"] == [0, 2]
    assert torch.equal(first[0]["input_ids"], batch["groups"][0]["input_ids"])


def test_pair_pattern_and_padding(bert):
    model, tok = bert
    with pytest.raises(ValueError, match="lacks"):  # 是 is not in the vocabulary
        PromptClassifier(model, tok, "{text}{mask}{pair}", Verbalizer({"y": "是", "n": "不"}))
    clf = PromptClassifier(model, tok, "{text}{mask}{pair}", Verbalizer({"y": "好", "n": "不"}))
    batch = clf.encode(["书", "电影真的"], ["一般", "好"])
    scores, _ = clf(batch)
    ids = _ids(tok, ["[CLS]", "书", "[MASK]", "一", "般", "[SEP]"])  # row 0 is padded in the batch
    logp = _full_logp(model, ids)
    assert scores[0].tolist() == pytest.approx([logp[2, tok.token_to_id("好")].item(),
                                                logp[2, tok.token_to_id("不")].item()], abs=1e-5)


def test_prompt_slots_are_spliced_into_the_embeddings(bert):
    model, tok = bert
    torch.manual_seed(3)
    prompts = PromptEmbeddings(3, 24, init=torch.randn(3, 24))  # far from the token table: they must show
    clf = PromptClassifier(model, tok, "{p}{p}{mask}{p}{text}", Verbalizer({"1": "好", "0": "差"}), prompts=prompts)
    batch = clf.encode(["电影", "书"])
    g = batch["groups"][0]
    assert g["prompts"].tolist() == [[1, 2, 4], [1, 2, 4]] and g["slots"].tolist() == [[3], [3]]
    scores, _ = clf(batch)
    ids = _ids(tok, ["[CLS]", "[UNK]", "[UNK]", "[MASK]", "[UNK]", "电", "影", "[SEP]"])
    embeds = model.embeddings.token(torch.tensor([ids])).clone()
    for j, pos in enumerate([1, 2, 4]):
        embeds[0, pos] = prompts.weight[j]
    logp = _full_logp(model, ids, embeds)
    want = [logp[3, tok.token_to_id("好")].item(), logp[3, tok.token_to_id("差")].item()]
    assert scores[0].tolist() == pytest.approx(want, abs=1e-5)
    # the prompts matter: the placeholder token's own embedding gives other scores
    plain = _full_logp(model, ids)
    assert (plain[3] - logp[3]).abs().max().item() > 1e-2


def test_causal_lm_scores_the_appended_word_token_by_token():
    torch.manual_seed(1)
    cfg = ModelConfig(family="gpt2", vocab_size=len(VOCAB), hidden_size=24, num_layers=2, num_heads=2,
                      intermediate_size=40, max_position=64)
    model = _spread(build_model(cfg))
    tok = WordPieceTokenizer(VOCAB)
    with pytest.raises(ValueError, match="must end it"):
        PromptClassifier(model, tok, "{mask}{text}", Verbalizer({"1": "好", "0": "差"}))
    clf = PromptClassifier(model, tok, "{text}总之{mask}", Verbalizer({"1": "很好", "0": "差"}))
    scores, _ = clf(clf.encode(["电影真的", "书"]))
    for row, text in enumerate(["电影真的", "书"]):
        prefix = _ids(tok, ["[CLS]", *text, "总", "之"])
        for j, word in enumerate(["很好", "差"]):
            total, seq = 0.0, list(prefix)
            for ch in word:  # one token at a time, from the last position's logits
                total += model(torch.tensor([seq])).logits[0, -1].log_softmax(-1)[tok.token_to_id(ch)].item()
                seq.append(tok.token_to_id(ch))
            assert scores[row, j].item() == pytest.approx(total, abs=1e-5)


def test_losses_match_their_definitions(bert):
    model, tok = bert
    clf = PromptClassifier(model, tok, "{mask}满意。{text}", Verbalizer({"pos": "很好", "neg": "不好"}))
    batch = clf.encode(["电影真好", "书"], labels=[0, 1])
    scores, word_logp = clf(batch)
    loss, count = prompt_loss(clf, batch, "vocab")
    assert count.item() == 2
    assert loss.item() == pytest.approx(-(word_logp[0, 0] + word_logp[1, 1]).item(), abs=1e-5)
    label_loss, _ = prompt_loss(clf, batch, "label")
    want = -(scores[0].log_softmax(-1)[0] + scores[1].log_softmax(-1)[1]).item()
    assert label_loss.item() == pytest.approx(want, abs=1e-5)


def test_bad_patterns_and_verbalizers_fail_clearly(bert):
    model, tok = bert
    for template, message in (("{text}", "mask"), ("{mask}{mask}{text}", "mask"), ("{mask}", "text"),
                              ("{text}{mask}{label}", "unknown slot")):
        with pytest.raises(ValueError, match=message):
            Pattern(template)
    with pytest.raises(ValueError, match="at least 2"):
        Verbalizer({"a": "好"})
    with pytest.raises(ValueError, match="label=word"):
        Verbalizer.parse(["a好"])
    with pytest.raises(ValueError, match="prompts=PromptEmbeddings"):
        PromptClassifier(model, tok, "{p}{mask}{text}", Verbalizer({"1": "好", "0": "差"}))
    with pytest.raises(ValueError, match="no room"):
        PromptClassifier(model, tok, "{mask}满意。{text}", Verbalizer({"1": "好", "0": "差"}), max_length=6).encode(["书"])


def test_prompt_only_checkpoint_reproduces_predictions_on_a_fresh_base(bert, tmp_path):
    model, tok = bert
    base = {k: v.clone() for k, v in model.state_dict().items()}
    model.requires_grad_(False)
    clf = PromptClassifier(model, tok, "{p}{p}{mask}{text}", Verbalizer({"1": "好", "0": "差"}),
                           prompts=PromptEmbeddings(2, 24))
    optimizer = torch.optim.Adam([p for p in clf.parameters() if p.requires_grad], lr=0.1)
    assert [n for n, p in clf.named_parameters() if p.requires_grad] == ["prompts.weight"]
    batch = clf.encode(["电影真好", "书一般"], labels=[0, 1])
    before = prompt_loss(clf, batch)[0].item()
    for _ in range(5):
        optimizer.zero_grad()
        prompt_loss(clf, batch)[0].backward()
        optimizer.step()
    assert prompt_loss(clf, batch)[0].item() < before
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in base.items())  # the LM stayed frozen
    save_prompts(clf, tmp_path / "p")
    texts = ["电影真好", "书一般", "很差"]
    want = clf.predict_proba(texts)

    fresh = build_model(model.config, with_mlm=True).eval()
    fresh.load_state_dict(base)
    again = load_prompts(tmp_path / "p", fresh, tok)
    assert torch.equal(again.predict_proba(texts), want)

    other = build_model(model.config, with_mlm=True).eval()  # another random base
    with pytest.raises(ValueError, match="base_fingerprint"):
        load_prompts(tmp_path / "p", other, tok)


def test_logits_at_equals_the_full_logits_at_those_positions(bert):
    model, _ = bert
    ids = torch.randint(5, len(VOCAB), (2, 7))
    at = torch.tensor([[0, 3], [6, 2]])
    full = model(ids).logits
    assert torch.allclose(model(ids, logits_at=at).logits, torch.stack([full[0, [0, 3]], full[1, [6, 2]]]))


def test_calibration_divides_out_the_mean_label_distribution(bert):
    model, tok = bert
    clf = PromptClassifier(model, tok, "{mask}满意。{text}", Verbalizer({"pos": "很", "neg": "不"}))
    texts = ["电影真好", "书一般", "很差"]
    raw = clf.predict_proba(texts)
    clf.calibrate(texts)
    prior = raw.mean(0)
    want = raw / prior
    want = want / want.sum(-1, keepdim=True)  # p(label | x) / prior(label), renormalised
    assert torch.allclose(clf.predict_proba(texts), want, atol=1e-6)
    # calibrated on the same texts, the mean prediction is closer to uniform than before
    assert (clf.predict_proba(texts).mean(0) - 0.5).abs().max() <= (prior - 0.5).abs().max() + 1e-6
