"""The reranker scores as FlagReranker.compute_score does, whatever the batching or OOM splits."""

from __future__ import annotations

import random

import pytest
from FlagEmbedding import FlagReranker
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from embedq.models import Reranker, RerankError


@pytest.fixture(scope="module")
def minilm_vocab_reranker(tmp_path_factory, minilm_path):
    """A random BERT cross-encoder on MiniLM's real WordPiece tokenizer (token types matter)."""
    folder = tmp_path_factory.mktemp("bert-reranker")
    AutoTokenizer.from_pretrained(str(minilm_path)).save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module", params=["xlm-roberta", "minilm-vocab"])
def reranker_folder(request, build_model, minilm_vocab_reranker):
    if request.param == "minilm-vocab":
        return minilm_vocab_reranker
    return build_model(style="xlm-roberta", reranker=True)


@pytest.fixture(scope="module")
def pairs(scifact_texts):
    rng = random.Random(0)
    queries = ["what causes cell death", "vitamin D and bone density", "a"]
    queries.append(" ".join(scifact_texts[5].split()[:300]))  # longer than the query cap
    return [(rng.choice(queries), text) for text in scifact_texts[:50]] + [("q", "tiny passage")]


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize(("batch_size", "max_length"), [(1, 512), (5, 512), (64, 512), (16, 64)])
def test_scores_match_flag_reranker(reranker_folder, pairs, batch_size, max_length, normalize):
    reference = FlagReranker(str(reranker_folder), use_fp16=False, devices="cpu").compute_score(
        pairs, max_length=max_length, normalize=normalize
    )
    reranker = Reranker.load(reranker_folder, max_length=max_length, max_batch_size=batch_size)
    scores = reranker.score(pairs, normalize=normalize)
    assert scores == pytest.approx(reference, abs=1e-4)


def test_scores_match_after_oom_splits(reranker_folder, pairs, oom_above):
    reference = FlagReranker(str(reranker_folder), use_fp16=False, devices="cpu").compute_score(
        pairs
    )
    reranker = Reranker.load(reranker_folder, max_batch_tokens=8192)
    oom_above(reranker.modules.backbone, max_tokens=3000)
    assert reranker.score(pairs) == pytest.approx(reference, abs=1e-4)
    assert reranker.stats.oom_events > 0


def test_a_thousand_candidates_under_a_tight_budget_never_fail(build_model, scifact_texts):
    folder = build_model(style="xlm-roberta", reranker=True)
    reranker = Reranker.load(folder, memory_budget="24MiB")
    budget = reranker.runtime.limits.activation_budget
    pairs = [("does aspirin prevent heart attacks", t) for t in scifact_texts[:600] * 2]
    scores = reranker.score(pairs)
    assert len(scores) == 1200
    assert reranker.stats.failed_sequences == 0
    # the budget, not the batch-size cap, decided the micro-batches
    longest_fit = reranker.runtime.cost.max_batch(reranker.max_length, budget)
    assert longest_fit < reranker.runtime.limits.max_batch_size
    assert reranker.stats.forward_passes > 1200 / reranker.runtime.limits.max_batch_size


def test_bad_pairs_are_named_and_good_pairs_still_scored(build_model):
    reranker = Reranker.load(build_model(style="xlm-roberta", reranker=True))
    pairs = [("q", "passage"), ("q", None), "not a pair", ("q", "another passage")]
    scores, reasons = reranker.score_each(pairs)
    assert scores[0] is not None and scores[3] is not None
    assert scores[1] is None and "passage must be a string" in reasons[1]
    assert scores[2] is None and "(query, passage)" in reasons[2]
    with pytest.raises(RerankError, match="2 pair"):
        reranker.score(pairs)


def test_max_batch_size_caps_micro_batches(build_model):
    reranker = Reranker.load(build_model(style="xlm-roberta", reranker=True), max_batch_size=3)
    reranker.score([("q", "p")] * 10)
    assert reranker.stats.forward_passes == 4
