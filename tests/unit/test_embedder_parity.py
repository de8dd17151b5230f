"""The embedder gives FlagEmbedding's vectors, whatever the batching, chunking or OOM splits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from FlagEmbedding import BGEM3FlagModel
from transformers import AutoTokenizer

from embedq.models import Embedder
from embedq.models.packing import PackingLimits

MAX_LENGTH = 96
ALL_OUTPUTS = "dense,sparse,colbert"


@pytest.fixture(scope="module", params=["xlm-roberta", "bert"])
def m3_folder(request, build_model):
    return build_model(style=request.param)


@pytest.fixture(scope="module")
def flag_m3(m3_folder):
    return BGEM3FlagModel(str(m3_folder), use_fp16=False, devices="cpu")


def flag_reference(flag_m3, texts, max_length=MAX_LENGTH):
    return flag_m3.encode(
        texts,
        max_length=max_length,
        return_dense=True,
        return_sparse=True,
        return_colbert_vecs=True,
    )


def assert_chunk_matches(chunk, dense, lexical, colbert):
    cosine = float(np.dot(chunk.dense, dense) / np.linalg.norm(chunk.dense) / np.linalg.norm(dense))
    assert cosine >= 0.9999
    assert chunk.dense.dtype == np.float32
    assert set(chunk.sparse) == {int(token) for token in lexical}
    for token, weight in lexical.items():
        assert chunk.sparse[int(token)] == pytest.approx(float(weight), abs=1e-4)
    assert chunk.colbert.dtype == np.float32
    assert chunk.colbert.shape == colbert.shape
    np.testing.assert_allclose(chunk.colbert, colbert, atol=1e-4)


def assert_results_match(results, reference):
    assert len(results) == len(reference["dense_vecs"])
    for i, result in enumerate(results):
        assert result.ok, result.error
        assert len(result.chunks) == 1
        assert_chunk_matches(
            result.chunks[0],
            reference["dense_vecs"][i],
            reference["lexical_weights"][i],
            reference["colbert_vecs"][i],
        )


@pytest.fixture(scope="module")
def texts(scifact_texts):
    # mixed lengths: whole abstracts, single sentences, a few words
    return scifact_texts[:40] + [t.split(". ")[0] for t in scifact_texts[40:60]] + ["cell death"]


@pytest.fixture(scope="module")
def m3(m3_folder):
    return Embedder.load(
        m3_folder, max_length=MAX_LENGTH, outputs=ALL_OUTPUTS, long_text="truncate"
    )


@pytest.mark.parametrize(
    ("batch_size", "batch_tokens"), [(1, None), (3, None), (7, 400), (64, None), (512, 100_000)]
)
def test_parity_for_every_batch_shape(m3, flag_m3, texts, batch_size, batch_tokens):
    m3.runtime.limits = PackingLimits(
        activation_budget=m3.runtime.limits.activation_budget,
        max_batch_size=batch_size,
        max_batch_tokens=batch_tokens,
    )
    results = m3.embed(texts)
    assert_results_match(results, flag_reference(flag_m3, texts))


def test_parity_after_oom_splits(m3_folder, flag_m3, texts, oom_above):
    embedder = Embedder.load(
        m3_folder, max_length=MAX_LENGTH, outputs=ALL_OUTPUTS, long_text="truncate"
    )
    oom_above(embedder.modules.backbone, max_tokens=700)
    results = embedder.embed(texts)
    assert embedder.stats.oom_events > 0
    assert embedder.stats.failed_sequences == 0
    assert_results_match(results, flag_reference(flag_m3, texts))


def test_parity_after_chunking(m3_folder, flag_m3, scifact_texts):
    # long prose texts (several abstracts each), cut into windows of MAX_LENGTH tokens
    long_texts = [" ".join(scifact_texts[i : i + 6]) for i in range(0, 36, 6)]
    embedder = Embedder.load(m3_folder, max_length=MAX_LENGTH, outputs=ALL_OUTPUTS)
    results = embedder.embed(long_texts)
    tokenizer = AutoTokenizer.from_pretrained(str(m3_folder))
    chunk_texts, chunks = [], []
    for text, result in zip(long_texts, results, strict=True):
        assert result.ok and len(result.chunks) > 3
        for chunk in result.chunks:
            chunk_texts.append(text[chunk.start : chunk.end])
            chunks.append(chunk)
            # the chunk's text stands for exactly the tokens that were embedded
            assert len(tokenizer(chunk_texts[-1])["input_ids"]) == chunk.num_tokens
    reference = flag_reference(flag_m3, chunk_texts, max_length=10 * MAX_LENGTH)
    for i, chunk in enumerate(chunks):
        assert_chunk_matches(
            chunk,
            reference["dense_vecs"][i],
            reference["lexical_weights"][i],
            reference["colbert_vecs"][i],
        )


def test_chunks_overlap_and_cover_the_text(m3_folder, scifact_texts):
    text = " ".join(scifact_texts[:8])
    embedder = Embedder.load(m3_folder, max_length=64, chunk_overlap=8)
    [result] = embedder.embed([text])
    spans = [(c.start, c.end) for c in result.chunks]
    assert spans[0][0] == 0
    assert spans[-1][1] == len(text.rstrip())
    for (_, previous_end), (start, _) in itertools.pairwise(spans):
        assert start < previous_end  # overlapping windows
    assert all(c.num_tokens <= 64 for c in result.chunks)


def test_truncate_gives_exactly_one_chunk(m3_folder, scifact_texts):
    text = " ".join(scifact_texts[:8])
    embedder = Embedder.load(m3_folder, max_length=64, long_text="truncate")
    [result] = embedder.embed([text])
    assert len(result.chunks) == 1
    assert result.chunks[0].num_tokens == 64
    assert result.chunks[0].start == 0


def test_minilm_matches_sentence_transformers(minilm_path, scifact_texts, pep_texts, oom_above):
    from sentence_transformers import SentenceTransformer

    texts = scifact_texts[:48] + [t[:3000] for t in pep_texts[:4]] + ["a", "short query"]
    reference = SentenceTransformer(str(minilm_path), device="cpu").encode(texts)
    embedder = Embedder.load(minilm_path, long_text="truncate", max_batch_tokens=8192)
    assert embedder.settings.max_length == 256
    assert (embedder.settings.pooling, embedder.settings.normalize) == ("mean", True)
    plain = embedder.embed(texts)
    oom_above(embedder.modules.backbone, max_tokens=1500)
    split = embedder.embed(texts)
    assert embedder.stats.oom_events > 0
    for results in (plain, split):
        ours = np.stack([r.chunks[0].dense for r in results])
        cosine = np.sum(ours * reference, axis=1) / np.linalg.norm(reference, axis=1)
        assert cosine.min() >= 0.9999
