"""Bulk rerank with candidates taken from a hybrid search of an embedq collection."""

from __future__ import annotations

import json
import logging

import pytest
from FlagEmbedding import FlagReranker

from embedq import jobs
from embedq.api.client import Client
from embedq.search.searcher import hybrid_candidates
from embedq.settings import Settings


@pytest.fixture
def indexed(tmp_path, build_model, scifact_texts) -> Client:
    client = Client(Settings(home=tmp_path / "home"))
    with (tmp_path / "corpus.jsonl").open("w") as out:
        for i, text in enumerate(scifact_texts[:30]):
            out.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    client.ingest(
        [tmp_path / "corpus.jsonl"],
        collection="papers",
        model=str(build_model(style="xlm-roberta")),
        outputs="dense,sparse",
        max_length=128,
        long_text="truncate",
    )
    return client


def test_candidates_come_from_the_collection_and_are_scored_like_flag_reranker(
    indexed: Client, tmp_path, build_model, scifact_texts
):
    reranker = str(build_model(style="xlm-roberta", reranker=True))
    queries = {"q1": scifact_texts[3][:300], "q2": scifact_texts[7][:300], "q3": "   "}
    with (tmp_path / "queries.jsonl").open("w") as out:
        for query_id, query in queries.items():
            out.write(json.dumps({"query_id": query_id, "query": query}) + "\n")

    job_id = indexed.rerank(
        [tmp_path / "queries.jsonl"], model=reranker, from_collection="papers", candidates=5
    )

    view = indexed.status(job_id)
    assert (view.status, view.documents_done, view.documents_failed) == ("partial", 2, 1)
    results = indexed.results(job_id)
    flag = FlagReranker(reranker, use_fp16=False, devices="cpu")
    for query_id in ("q1", "q2"):
        mine = [r for r in results if r.query_id == query_id]
        hits = hybrid_candidates(
            indexed.sessions, indexed.store, "papers", queries[query_id], 5, models=indexed.models
        )
        assert {r.candidate_id for r in mine} == {hit.doc_id for hit in hits}
        assert [r.rank for r in mine] == list(range(1, len(mine) + 1))
        texts = {hit.doc_id: hit.text for hit in hits}
        pairs = [(queries[query_id], texts[r.candidate_id]) for r in mine]
        expected = flag.compute_score(pairs, max_length=512)
        assert max(abs(r.score - e) for r, e in zip(mine, expected, strict=True)) <= 1e-4
    # the document a query was cut from is among its candidates
    assert "d3" in {r.candidate_id for r in results if r.query_id == "q1"}
    assert any("query is empty" in f.reason for f in indexed.failures(job_id))
    assert jobs.get_job(indexed.sessions, job_id=job_id) is not None


def test_a_batch_settles_how_its_collection_is_searched_once(
    tmp_path, build_model, scifact_texts, caplog
):
    client = Client(Settings(home=tmp_path / "home"))
    with (tmp_path / "corpus.jsonl").open("w") as out:
        for i, text in enumerate(scifact_texts[:10]):
            out.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    client.ingest(
        [tmp_path / "corpus.jsonl"],
        collection="dense_only",
        model=str(build_model(style="xlm-roberta")),
        outputs="dense",
        max_length=128,
        long_text="truncate",
    )
    with (tmp_path / "queries.jsonl").open("w") as out:
        for i in range(4):
            out.write(json.dumps({"query_id": f"q{i}", "query": scifact_texts[i][:200]}) + "\n")
    reranker = str(build_model(style="xlm-roberta", reranker=True))

    with caplog.at_level(logging.WARNING, logger="embedq.search"):
        job_id = client.rerank(
            [tmp_path / "queries.jsonl"], model=reranker, from_collection="dense_only", candidates=3
        )

    assert client.status(job_id).documents_done == 4
    assert caplog.text.count("hybrid search falls back to dense") == 1  # one batch, one plan
