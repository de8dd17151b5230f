"""Searching a collection with the model the ledger says built it, embedded and on servers."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from embedq.api import cli
from embedq.api.client import Client
from embedq.models import EmbedderSpec, Reranker
from embedq.models.embedder import EmbeddingModel
from embedq.search import (
    MODES,
    RERANK_POOL,
    NotIndexedError,
    UnsupportedModeError,
    hybrid_candidates,
)
from embedq.settings import Settings

# Ingested truncated to 128 tokens: a query of a document's whole text is truncated the same
# way only if search takes max_length from the ledger, and then its vectors are identical.
MAX_LENGTH = 128
PROBES = (0, 13, 29)


@pytest.fixture
def rows(scifact_texts):
    return [{"id": f"d{i}", "text": text} for i, text in enumerate(scifact_texts[:30])]


@pytest.fixture
def corpus(tmp_path, rows):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def model(build_model):
    return str(build_model(style="xlm-roberta"))


@pytest.fixture(params=["embedded", "servers"])
def client(request, tmp_path):
    """A client on embedded defaults, or on Postgres and the Qdrant test server."""
    if request.param == "embedded":
        yield Client(Settings(home=tmp_path / "home"))
        return
    settings = Settings(
        home=tmp_path / "home",
        database_url=request.getfixturevalue("postgres_schema_url"),
        qdrant_url=request.getfixturevalue("qdrant_url"),
    )
    client = Client(settings)
    client.migrate()
    yield client
    for view in client.jobs():  # each test's collections are its own: drop them
        client.store.client.delete_collection(view.options.physical_collection)


def ingest(client, corpus, model, *, outputs="dense,sparse", collection=None) -> str:
    collection = collection or f"papers_{uuid.uuid4().hex[:8]}"
    job_id = client.ingest(
        [corpus],
        collection=collection,
        model=model,
        outputs=outputs,
        max_length=MAX_LENGTH,
        long_text="truncate",
    )
    assert client.status(job_id).status == "succeeded"
    return collection


@pytest.fixture
def load_calls(monkeypatch):
    """Every model search reads from disk (the real read runs)."""
    calls = []
    real = EmbeddingModel.read.__func__

    def spy(cls, model, **kwargs):
        calls.append(str(model))
        return real(cls, model, **kwargs)

    monkeypatch.setattr(EmbeddingModel, "read", classmethod(spy))
    return calls


def test_a_documents_own_text_finds_it_first_in_every_mode(client, corpus, model, rows):
    collection = ingest(client, corpus, model)
    for mode in MODES:
        for probe in PROBES:
            hits = client.search(collection, rows[probe]["text"], top_k=5, mode=mode)
            assert hits[0].doc_id == rows[probe]["id"], mode
            assert [hit.rank for hit in hits] == [1, 2, 3, 4, 5]
            scores = [hit.score for hit in hits]
            assert scores == sorted(scores, reverse=True)
            assert len({hit.point_id for hit in hits}) == 5
            if mode == "dense":  # identical vectors, cosine 1
                assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    top = client.search(collection, rows[0]["text"], top_k=30, mode="dense")
    assert sorted(hit.doc_id for hit in top) == sorted(row["id"] for row in rows)
    assert hits[0].payload["model"] == model and hits[0].chunk == 0


def test_hybrid_candidates_are_a_hybrid_search(client, corpus, model, rows):
    collection = ingest(client, corpus, model)
    candidates = hybrid_candidates(
        client.sessions, client.store, collection, rows[7]["text"], 12, models=client.models
    )
    assert len(candidates) == 12 and candidates[0].doc_id == rows[7]["id"]
    assert candidates[0].score == pytest.approx(1.0)  # fused: first in both lists
    # the tiny model's dense scores tie (all near 1.0), so only the sparse order is stable
    sparse = client.search(collection, rows[7]["text"], top_k=3, mode="sparse")
    assert {hit.doc_id for hit in sparse} <= {hit.doc_id for hit in candidates}


def test_the_model_recorded_in_the_ledger_embeds_the_query(
    tmp_path, corpus, build_model, rows, load_calls
):
    client = Client(Settings(home=tmp_path / "home"))
    model_a = str(build_model(style="xlm-roberta"))
    model_b = str(build_model(style="xlm-roberta", seed=1))
    built_with = {
        ingest(client, corpus, model_a): model_a,
        ingest(client, corpus, model_b): model_b,
    }
    asked = []
    real_embedder = client.models.embedder

    def embedder(model, spec):
        asked.append((model, spec))
        return real_embedder(model, spec)

    client.models.embedder = embedder
    query_spec = EmbedderSpec(MAX_LENGTH, "truncate", frozenset({"dense", "sparse"}))
    for collection, model in built_with.items():
        hits = client.search(collection, rows[3]["text"], mode="dense")
        assert hits[0].doc_id == "d3" and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert asked[-1] == (model, query_spec)
    client.search(next(iter(built_with)), "again", mode="sparse")
    # each model read once per process (its ingest's batches ran here too), whatever the mode
    assert load_calls == [model_a, model_b]
    assert [held.model for held in client.models.resident()] == [model_b, model_a]

    with pytest.raises(NotIndexedError, match="'nobody-ingested'"):
        client.search("nobody-ingested", "anything")


def test_sparse_on_a_dense_only_collection_is_an_error_and_hybrid_falls_back(
    client, corpus, model, rows, caplog
):
    collection = ingest(client, corpus, model, outputs="dense")
    with pytest.raises(UnsupportedModeError, match=f"'{collection}'.*sparse.*holds dense"):
        client.search(collection, rows[1]["text"], mode="sparse")
    with caplog.at_level(logging.WARNING, logger="embedq.search"):
        hybrid = client.search(collection, rows[1]["text"], mode="hybrid")
    assert "falls back to dense" in caplog.text
    dense = client.search(collection, rows[1]["text"], mode="dense")
    # the same dense search: the tiny model's near-equal scores (1e-7 apart) come in any order
    assert [hit.score for hit in hybrid] == pytest.approx([hit.score for hit in dense], abs=1e-6)
    assert hybrid[0].doc_id == dense[0].doc_id == "d1"


def test_rerank_orders_by_the_rerankers_scores(tmp_path, corpus, model, build_model):
    client = Client(Settings(home=tmp_path / "home"))
    collection = ingest(client, corpus, model)
    reranker = str(build_model(style="xlm-roberta", reranker=True))
    query = "vitamin D deficiency and bone density in older adults"
    pool = client.search(collection, query, top_k=RERANK_POOL)  # every document: 30 < pool
    scores = Reranker.load(reranker).score([(query, hit.text) for hit in pool])
    expected = sorted(zip(scores, [hit.doc_id for hit in pool], strict=True), reverse=True)[:5]

    hits = client.search(collection, query, top_k=5, rerank_model=reranker)
    assert [hit.doc_id for hit in hits] == [doc_id for _, doc_id in expected]
    assert [hit.score for hit in hits] == pytest.approx([score for score, _ in expected], abs=1e-5)
    assert [hit.rank for hit in hits] == [1, 2, 3, 4, 5]


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDQ_HOME", str(tmp_path / "home"))
    for name in ("EMBEDQ_BROKER_URL", "EMBEDQ_DATABASE_URL", "EMBEDQ_QDRANT_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def test_the_command_prints_a_table_and_json(cli_home, corpus, model, rows, capsys):
    client = Client(Settings(home=cli_home))
    collection = ingest(client, corpus, model, collection="papers")
    client.store.client.close()  # one client per local Qdrant folder: the command opens its own

    assert cli.main(["search", collection, rows[5]["text"], "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "doc_id", "chunk", "text"]
    assert len(lines) == 4
    assert lines[1].split()[:4] == ["1", "1.0000", "d5", "0"]
    assert rows[5]["text"][:20] in lines[1]

    assert cli.main(["search", collection, rows[5]["text"], "--mode", "sparse", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 10 and hits[0]["doc_id"] == "d5" and hits[0]["rank"] == 1
    assert rows[5]["text"].startswith(hits[0]["payload"]["text"])  # the chunk's (truncated) span
    assert hits[0]["payload"]["model"] == model and hits[0]["payload"]["job_id"]


def test_the_command_names_a_collection_nobody_ingested(cli_home, capsys):
    assert cli.main(["search", "ghost", "anything"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("embedq: ") and "'ghost'" in error and "ingest" in error
