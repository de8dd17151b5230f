"""Ingestion through the real pipeline, on embedded defaults and on the real servers."""

from __future__ import annotations

import json
import uuid

import pytest
from qdrant_client import QdrantClient

from embedq.api.client import Client
from embedq.settings import Settings
from embedq.store import point_id


def write_jsonl(path, rows: list[dict | bytes]):
    with path.open("wb") as out:
        for row in rows:
            out.write(row if isinstance(row, bytes) else json.dumps(row).encode())
            out.write(b"\n")
    return path


@pytest.fixture
def corpus(tmp_path, scifact_texts):
    good = [
        {"id": f"d{i}", "title": f"T{i}", "text": text} for i, text in enumerate(scifact_texts[:40])
    ]
    bad = [
        b"{broken",
        {"id": "d0", "text": "duplicate"},
        {"id": "e", "text": ""},
        {"text": "no id"},
    ]
    return write_jsonl(tmp_path / "corpus.jsonl", good[:20] + bad + good[20:]), good


def check_points(qdrant: QdrantClient, collection: str, good: list[dict], job_id: str) -> None:
    records = qdrant.retrieve(
        collection, ids=[point_id(d["id"], 0) for d in good], with_payload=True
    )
    assert len(records) == len(good)
    by_doc = {r.payload["doc_id"]: r.payload for r in records}
    for document in good:
        payload = by_doc[document["id"]]
        assert payload["chunk"] == 0 and payload["job_id"] == job_id
        assert payload["text"] in f"{document['title']} {document['text']}"


def test_embedded_defaults_ingest_everything_valid_and_report_the_rest(
    tmp_path, corpus, build_model
):
    path, good = corpus
    model = str(build_model(style="xlm-roberta"))
    client = Client(Settings(home=tmp_path / "home"))
    job_id = client.ingest([path], collection="papers", model=model, max_length=128, batch_size=8)
    view = client.status(job_id)
    assert view.status == "partial"
    assert (view.documents_total, view.documents_done, view.documents_failed) == (44, 40, 4)
    reasons = [f.reason for f in client.failures(job_id)]
    assert any("not JSON" in r for r in reasons) and any("duplicate id 'd0'" in r for r in reasons)
    qdrant = client.store.client
    check_points(qdrant, "papers", good, job_id)
    count = client.store.count(client.store.resolve("papers"))
    # the same corpus again: deterministic ids overwrite, nothing is duplicated
    client.ingest([path], collection="papers", model=model, max_length=128, batch_size=8)
    assert client.store.count(client.store.resolve("papers")) == count


def test_servers_ingest_with_postgres_and_qdrant(
    tmp_path, corpus, build_model, postgres_schema_url, qdrant_url
):
    path, good = corpus
    collection = f"papers_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        home=tmp_path / "home", database_url=postgres_schema_url, qdrant_url=qdrant_url
    )
    client = Client(settings)
    client.migrate()
    model = str(build_model(style="xlm-roberta"))
    job_id = client.ingest(
        [path], collection=collection, model=model, outputs="dense,sparse,colbert", batch_size=16
    )
    assert client.status(job_id).status == "partial"
    qdrant = QdrantClient(url=qdrant_url)
    try:
        check_points(qdrant, collection, good, job_id)
    finally:
        physical = client.store.resolve(collection)
        qdrant.delete_collection(physical)  # its alias goes with it


def test_an_unknown_model_or_unreadable_file_fails_up_front(tmp_path, corpus):
    path, _ = corpus
    client = Client(Settings(home=tmp_path / "home"))
    from embedq.errors import PermanentError

    with pytest.raises(PermanentError, match="cannot read"):
        client.ingest([tmp_path / "missing.jsonl"], collection="c", model=str(tmp_path))
    with pytest.raises(PermanentError):
        client.ingest([path], collection="c", model=str(tmp_path / "no-model"))
    assert client.jobs() == []
