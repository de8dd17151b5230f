"""The document is the unit of truth: exact updates, skipping what is unchanged, deletes, sync.

Each runs the whole producer and pipeline in-process, on embedded defaults and on the
real Postgres and Qdrant servers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models as qm

from embedq import jobs
from embedq.api.client import Client
from embedq.models import Chunk, EmbeddingResult, GivenModels
from embedq.settings import Settings
from embedq.store import documents as stored
from embedq.workers.context import WorkerContext
from embedq.workers.lifecycle import process_batch
from embedq.workers.queues import InProcessQueue

MAX_LENGTH = 32  # tokens per chunk: a few hundred words make dozens of chunks


@pytest.fixture(params=["embedded", "servers"])
def client(request, tmp_path) -> Iterator[Client]:
    """The same checks on embedded defaults (Qdrant's local mode) and on the servers."""
    yield from make_client(request, tmp_path, request.param)


@pytest.fixture
def server_client(request, tmp_path) -> Iterator[Client]:
    """For what takes no other path in local mode: the servers only."""
    yield from make_client(request, tmp_path, "servers")


def make_client(request, tmp_path, mode: str) -> Iterator[Client]:
    if mode == "embedded":
        yield Client(Settings(home=tmp_path / "home"))
        return
    database = request.getfixturevalue("postgres_schema_url")
    qdrant = request.getfixturevalue("qdrant_url")
    client = Client(Settings(home=tmp_path / "home", database_url=database, qdrant_url=qdrant))
    client.migrate()
    yield client
    for version in client.store.versions(COLLECTION):
        client.store.delete(version)


COLLECTION = f"truth_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def model(build_model) -> str:
    return str(build_model(style="xlm-roberta"))


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def ingest(client: Client, path: Path, model: str, **options: object) -> str:
    return client.ingest(
        [path], collection=COLLECTION, model=model, max_length=MAX_LENGTH, batch_size=4, **options
    )


def chunks_of(client: Client, doc_id: str) -> list[dict]:
    """Every point the collection holds for ``doc_id``, by chunk."""
    physical = client.store.resolve(COLLECTION)
    records, _ = client.store.client.scroll(
        physical,
        scroll_filter=qm.Filter(
            must=[qm.FieldCondition(key="doc_id", match=qm.MatchValue(value=doc_id))]
        ),
        limit=1000,
        with_payload=True,
    )
    return sorted((r.payload or {} for r in records), key=lambda p: p["chunk"])


def test_a_shorter_version_leaves_exactly_its_own_chunks(client, model, tmp_path, pep_texts):
    long_text = " ".join(pep_texts[0].split()[:600])
    ingest(client, write(tmp_path / "v1.jsonl", [{"id": "pep", "text": long_text}]), model)
    assert len(chunks_of(client, "pep")) > 10
    job = ingest(client, write(tmp_path / "v2.jsonl", [{"id": "pep", "text": "Short now."}]), model)
    points = chunks_of(client, "pep")
    assert [(p["chunk"], p["text"], p["job_id"]) for p in points] == [(0, "Short now.", job)]


def test_an_unchanged_corpus_is_skipped_and_a_changed_document_is_not(
    client, model, tmp_path, scifact_texts
):
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate(scifact_texts[:12])]
    first = ingest(client, write(tmp_path / "a.jsonl", rows), model)
    again = ingest(client, write(tmp_path / "b.jsonl", rows), model, skip_unchanged=True)
    view = client.status(again)
    assert (view.status, view.documents_total, view.documents_unchanged) == ("succeeded", 12, 12)
    assert (view.documents_done, view.batches_total, view.progress) == (0, 0, 1.0)
    assert {p["job_id"] for p in chunks_of(client, "d3")} == {first}
    rows[3] = {**rows[3], "text": rows[3]["text"] + " Revised."}
    rows[5] = {**rows[5], "metadata": {"source": "new"}}  # a point holds its metadata too
    changed = ingest(client, write(tmp_path / "c.jsonl", rows), model, skip_unchanged=True)
    view = client.status(changed)
    assert (view.documents_done, view.documents_unchanged) == (2, 10)
    rewritten = {p["doc_id"] for p in _all_payloads(client) if p["job_id"] == changed}
    assert rewritten == {"d3", "d5"}


def test_other_embedding_settings_are_a_change(server_client, model, tmp_path, scifact_texts):
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate(scifact_texts[:4])]
    path = write(tmp_path / "a.jsonl", rows)
    ingest(server_client, path, model)
    job = server_client.ingest(
        [path], collection=COLLECTION, model=model, max_length=64, skip_unchanged=True
    )
    view = server_client.status(job)
    assert (view.documents_done, view.documents_unchanged) == (4, 0)


def test_deleting_by_ids_removes_every_chunk(client, model, tmp_path, scifact_texts, pep_texts):
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate(scifact_texts[:6])]
    rows.append({"id": "long", "text": " ".join(pep_texts[1].split()[:400])})
    ingest(client, write(tmp_path / "a.jsonl", rows), model)
    ids = tmp_path / "ids.txt"
    ids.write_text('d1\n{"id": "long"}\n\nabsent\n{broken\nd1\n')
    job = client.delete(COLLECTION, files=[ids])
    view = client.status(job)
    assert (view.kind, view.status) == ("delete", "partial")  # the broken line fails alone
    assert (view.documents_total, view.documents_done, view.documents_failed) == (5, 3, 2)
    assert view.documents_deleted == 2  # d1 and long; "absent" was not there
    assert chunks_of(client, "long") == [] and chunks_of(client, "d1") == []
    assert sorted(p["doc_id"] for p in _all_payloads(client)) == ["d0", "d2", "d3", "d4", "d5"]


def test_sync_deletes_what_the_input_no_longer_holds_after_the_rest_landed(
    client, model, tmp_path, scifact_texts
):
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate(scifact_texts[:10])]
    ingest(client, write(tmp_path / "a.jsonl", rows), model)
    kept = [*rows[:8], {"id": "new", "text": "A document that was not there."}]
    path = write(tmp_path / "b.jsonl", kept)
    plan = client.plan_ingest(
        [path], collection=COLLECTION, model=model, max_length=MAX_LENGTH, sync=True
    )
    assert (sorted(plan.delete), plan.embed, len(plan.skip)) == (["d8", "d9"], ["new"], 8)
    assert plan.refusal is None and len(_all_payloads(client)) == 10  # a plan writes nothing
    job = ingest(client, path, model, sync=True)
    view = client.status(job)
    assert (view.status, view.documents_unchanged, view.documents_done) == ("succeeded", 8, 1)
    assert view.documents_deleted == 2
    held = sorted(p["doc_id"] for p in _all_payloads(client))
    assert held == sorted([f"d{i}" for i in range(8)] + ["new"])


def test_a_sync_that_would_delete_most_of_the_collection_refuses_unless_forced(
    client, model, tmp_path, scifact_texts
):
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate(scifact_texts[:10])]
    ingest(client, write(tmp_path / "a.jsonl", rows), model)
    path = write(tmp_path / "b.jsonl", rows[:2])
    plan = client.plan_ingest(
        [path], collection=COLLECTION, model=model, max_length=MAX_LENGTH, sync=True
    )
    assert plan.refusal and len(plan.delete) == 8
    refused = client.status(ingest(client, path, model, sync=True))
    assert (refused.status, refused.documents_deleted) == ("partial", 0)
    assert "8 of the collection's 10 documents" in (refused.error or "")
    assert len(_all_payloads(client)) == 10
    forced = client.status(ingest(client, path, model, sync=True, force=True))
    assert (forced.status, forced.documents_deleted) == ("succeeded", 8)
    assert sorted(p["doc_id"] for p in _all_payloads(client)) == ["d0", "d1"]


def test_a_sync_with_an_unreadable_line_deletes_nothing(
    server_client, model, tmp_path, scifact_texts
):
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate(scifact_texts[:6])]
    ingest(server_client, write(tmp_path / "a.jsonl", rows), model)
    path = write(tmp_path / "b.jsonl", rows[:4])
    with path.open("a") as out:
        out.write("{this line lost its id\n")
    view = server_client.status(ingest(server_client, path, model, sync=True, force=True))
    assert (view.status, view.documents_deleted) == ("partial", 0)
    assert "could not be read" in (view.error or "")
    assert len(_all_payloads(server_client)) == 6


def test_a_sync_keeps_a_document_whose_new_version_failed(client, model, tmp_path, scifact_texts):
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate(scifact_texts[:4])]
    ingest(client, write(tmp_path / "a.jsonl", rows), model)
    path = write(tmp_path / "b.jsonl", [*rows[:3], {"id": "d3", "text": ""}])
    view = client.status(ingest(client, path, model, sync=True, force=True))
    assert (view.status, view.documents_failed, view.documents_deleted) == ("partial", 1, 0)
    assert len(_all_payloads(client)) == 4


def _all_payloads(client: Client) -> list[dict]:
    physical = client.store.resolve(COLLECTION)
    records, _ = client.store.client.scroll(
        physical,
        scroll_filter=qm.Filter(
            must=[qm.FieldCondition(key="chunk", match=qm.MatchValue(value=0))]
        ),
        limit=10_000,
        with_payload=True,
    )
    return [r.payload or {} for r in records]


def test_payload_indexes_cover_the_fields_documents_are_found_by(server_client, model, tmp_path):
    ingest(server_client, write(tmp_path / "a.jsonl", [{"id": "x", "text": "indexed"}]), model)
    physical = server_client.store.resolve(COLLECTION)
    schema = server_client.store.client.get_collection(physical).payload_schema
    assert set(stored.PAYLOAD_INDEXES) <= set(schema)


class OneBadVector:
    """A stand-in model whose vector for the text "poison" has the wrong size."""

    def embed(self, texts, *, on_progress=None):
        return [EmbeddingResult(chunks=[_chunk(text)]) for text in texts]


def _chunk(text: str) -> Chunk:
    size = 16 if text == "poison" else 32  # the tiny models' hidden size is 32
    return Chunk(
        dense=np.random.default_rng(len(text)).normal(size=size).astype(np.float32),
        sparse=None,
        colbert=None,
        start=0,
        end=len(text),
        num_tokens=len(text.split()),
    )


def test_a_point_qdrant_refuses_fails_its_document_alone(tmp_path, build_model, request):
    client = Client(
        Settings(
            home=tmp_path / "home",
            database_url=request.getfixturevalue("postgres_schema_url"),
            qdrant_url=request.getfixturevalue("qdrant_url"),
        )
    )
    client.migrate()
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    rows = [{"id": f"d{i}", "text": f"document {i}"} for i in range(12)]
    ingest(client, write(tmp_path / "a.jsonl", rows), model, outputs="dense")
    context = WorkerContext(
        settings=client.settings,
        sessions=client.sessions,
        store=client.store,
        models=GivenModels(OneBadVector()),
    )
    client.__dict__["queue"] = InProcessQueue(
        lambda batch_id, publish: process_batch(context, batch_id, publish=publish)
    )
    rows[5] = {"id": "d5", "text": "poison"}  # Qdrant refuses its 16-d vector
    try:
        job = ingest(client, write(tmp_path / "b.jsonl", rows), model, outputs="dense")
        view = client.status(job)
        assert (view.status, view.documents_done, view.documents_failed) == ("partial", 11, 1)
        [failure] = client.failures(job)
        assert failure.doc_id == "d5" and "dimension" in failure.reason.lower()
        # neither the refused version nor half of the earlier one: the document is gone
        assert chunks_of(client, "d5") == []
        assert len(_all_payloads(client)) == 11
    finally:
        for version in client.store.versions(COLLECTION):
            client.store.delete(version)


def test_deletes_and_syncs_wait_for_a_reindex_of_the_collection(server_client, model, tmp_path):
    path = write(tmp_path / "a.jsonl", [{"id": "x", "text": "kept while re-indexed"}])
    ingest(server_client, path, model)
    # a re-index copies the live version: what a delete removed from it would come back
    jobs.create_job(server_client.sessions, kind="reindex", collection=COLLECTION, model=model)
    ids = tmp_path / "ids.txt"
    ids.write_text("x\n")
    with pytest.raises(jobs.CollectionBusyError, match="being re-indexed"):
        server_client.delete(COLLECTION, files=[ids])
    with pytest.raises(jobs.CollectionBusyError, match="sync it once it has ended"):
        ingest(server_client, path, model, sync=True)
    assert (
        server_client.status(ingest(server_client, path, model, skip_unchanged=True)).status
        == "succeeded"
    )
    assert [p["doc_id"] for p in _all_payloads(server_client)] == ["x"]
