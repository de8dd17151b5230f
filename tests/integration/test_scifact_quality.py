"""The whole pipeline reproduces MTEB's published SciFact figure for all-MiniLM-L6-v2."""

from __future__ import annotations

import csv
import math
from collections import defaultdict

import numpy as np
import pytest

from embedq.api.client import Client
from embedq.models import Embedder
from embedq.settings import Settings
from tests.conftest import read_jsonl

# MTEB (embeddings-benchmark/results): nDCG@10 on the SciFact test split
PUBLISHED_NDCG_AT_10 = 0.64508


def ndcg_at_10(ranked: list[str], gains: dict[str, int]) -> float:
    dcg = sum(gains.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sorted(gains.values(), reverse=True)[:10]
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


@pytest.mark.slow
def test_scifact_ndcg_matches_the_published_figure(tmp_path, data_dir, minilm_path):
    scifact = data_dir / "scifact"
    client = Client(Settings(home=tmp_path / "home"))
    job_id = client.ingest(
        [scifact / "corpus.jsonl"],
        collection="scifact",
        model=str(minilm_path),
        max_length=256,
        long_text="truncate",
        batch_size=512,
    )
    view = client.status(job_id)
    assert (view.status, view.documents_done) == ("succeeded", 5183)

    judgments: dict[str, dict[str, int]] = defaultdict(dict)
    with (scifact / "qrels" / "test.tsv").open() as rows:
        for row in csv.DictReader(rows, delimiter="\t"):
            judgments[row["query-id"]][row["corpus-id"]] = int(row["score"])
    queries = {q["_id"]: q["text"] for q in read_jsonl(scifact / "queries.jsonl")}
    query_ids = sorted(judgments)
    embedder = Embedder.load(minilm_path, max_length=256, long_text="truncate")
    vectors = [r.chunks[0].dense for r in embedder.embed([queries[q] for q in query_ids])]

    qdrant, physical = client.store.client, client.store.resolve("scifact")
    scores = []
    for query_id, vector in zip(query_ids, vectors, strict=True):
        hits = qdrant.query_points(
            physical, query=np.asarray(vector).tolist(), using="dense", limit=10, with_payload=True
        ).points
        scores.append(ndcg_at_10([hit.payload["doc_id"] for hit in hits], judgments[query_id]))
    ndcg = sum(scores) / len(scores)
    print(f"SciFact nDCG@10 = {ndcg:.5f} over {len(scores)} queries")
    assert abs(ndcg - PUBLISHED_NDCG_AT_10) <= 0.01, ndcg
