"""On a real GPU: 8,000-token documents under a small budget, nothing lost, budget kept."""

from __future__ import annotations

import pytest
import torch

from embedq.models import Embedder, parse_bytes
from embedq.models.synthetic import EncoderShape

BUDGET = "4GiB"


@pytest.fixture(scope="module")
def bge_m3_shaped(tmp_path_factory, scifact_texts):
    from embedq.models.synthetic import build_encoder

    folder = tmp_path_factory.mktemp("bge-m3-shaped")
    return build_encoder(folder, scifact_texts, shape=EncoderShape.bge_m3())


@pytest.fixture(scope="module")
def long_documents(pep_texts):
    return pep_texts[:12]


def test_long_documents_fit_a_small_budget(bge_m3_shaped, long_documents):
    torch.cuda.reset_peak_memory_stats()
    embedder = Embedder.load(
        bge_m3_shaped, device="cuda", memory_budget=BUDGET, max_length=8192, outputs="dense,sparse"
    )
    results = embedder.embed(long_documents)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert max(c.num_tokens for r in results for c in r.chunks) >= 8000
    assert embedder.stats.failed_sequences == 0
    assert torch.cuda.max_memory_allocated() <= parse_bytes(BUDGET)
    assert all(c.dense.dtype.name == "float32" for r in results for c in r.chunks)


def test_a_real_oom_is_split_and_learnt(bge_m3_shaped, long_documents):
    embedder = Embedder.load(
        bge_m3_shaped, device="cuda", memory_budget=BUDGET, max_length=8192, outputs="dense"
    )
    # pretend the calibration was far too optimistic: the first batches must OOM
    embedder.runtime.cost.per_token /= 50
    embedder.runtime.cost.per_token_pair /= 50
    results = embedder.embed(long_documents)
    assert all(r.ok for r in results)
    assert embedder.stats.oom_events > 0
    assert torch.cuda.max_memory_allocated() <= parse_bytes(BUDGET)


def test_bf16_on_gpu_agrees_with_fp32_on_cpu(bge_m3_shaped, scifact_texts):
    texts = scifact_texts[:16]
    gpu = Embedder.load(bge_m3_shaped, device="cuda", max_length=512, outputs="dense")
    cpu = Embedder.load(bge_m3_shaped, device="cpu", max_length=512, outputs="dense")
    for a, b in zip(gpu.embed(texts), cpu.embed(texts), strict=True):
        cosine = float(a.chunks[0].dense @ b.chunks[0].dense)
        assert cosine > 0.99
