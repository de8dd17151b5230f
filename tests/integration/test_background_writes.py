"""Writes to a Qdrant server run in the background while the next batch embeds.

On the real Postgres and Qdrant server, through the embedded queue that
``make_queue`` builds when ``EMBEDQ_QDRANT_URL`` is set.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Sequence

import pytest

from embedq import jobs
from embedq.api.client import Client
from embedq.settings import Settings
from embedq.store import PointData, QdrantStore, UpsertReport, connect
from embedq.store.errors import QdrantUnavailableError

SLOW_UPSERT_S = 0.3


class SlowStore(QdrantStore):
    """The real store, with every upsert taking at least ``SLOW_UPSERT_S`` (a busy server)."""

    def upsert(self, physical: str, points: Sequence[PointData]) -> UpsertReport:
        started = time.monotonic()
        report = super().upsert(physical, points)
        time.sleep(max(0.0, SLOW_UPSERT_S - (time.monotonic() - started)))
        return report


class UnreachableStore(QdrantStore):
    """The real store, except that upserts go to a port where no Qdrant listens."""

    def upsert(self, physical: str, points: Sequence[PointData]) -> UpsertReport:
        return QdrantStore(connect(url="http://127.0.0.1:9", timeout=2)).upsert(physical, points)


@pytest.fixture
def server_client(tmp_path, postgres_schema_url, qdrant_url):
    settings = Settings(
        home=tmp_path / "home", database_url=postgres_schema_url, qdrant_url=qdrant_url
    )
    client = Client(settings)
    client.migrate()
    names: list[str] = []
    yield client, names
    for name in names:
        physical = client.store.resolve(name)
        if physical is not None:
            client.store.client.delete_collection(physical)


def corpus(path, count: int):
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"id": f"doc-{i}", "text": f"text {i} " * (i % 5 + 1)}) + "\n")
    return path


def with_store(client: Client, store_type: type[QdrantStore]) -> None:
    client.__dict__["store"] = store_type(client.store.client)


def test_the_next_batch_is_claimed_while_the_one_before_is_written(
    server_client, tmp_path, build_model
):
    client, names = server_client
    with_store(client, SlowStore)
    names.append(collection := f"bg_{uuid.uuid4().hex[:8]}")
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    path = corpus(tmp_path / "in.jsonl", 40)
    job_id = client.ingest([path], collection=collection, model=model, batch_size=8)

    view = client.status(job_id)
    assert (view.status, view.documents_done, view.batches_done) == ("succeeded", 40, 5)
    assert client.store.count(client.store.resolve(collection)) == 40
    batches = sorted(jobs.list_batches(client.sessions, job_id=job_id), key=lambda b: b.sequence)
    overlapped = [
        later.started_at < earlier.finished_at for earlier, later in itertools.pairwise(batches)
    ]
    assert all(overlapped), [(b.started_at, b.finished_at) for b in batches]
    assert all(b.lease_owner is None or b.status == "succeeded" for b in batches)


def test_a_write_that_cannot_reach_qdrant_stops_the_ingest_and_leaves_no_batch_running(
    server_client, tmp_path, build_model
):
    client, names = server_client
    with_store(client, UnreachableStore)
    names.append(collection := f"bg_{uuid.uuid4().hex[:8]}")
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    path = corpus(tmp_path / "in.jsonl", 40)

    with pytest.raises(QdrantUnavailableError, match="upsert"):
        client.ingest([path], collection=collection, model=model, batch_size=8)

    # nothing else would run its batches (no broker): the job ends, saying why, none left open
    [job] = client.jobs()
    batches = jobs.list_batches(client.sessions, job_id=job.id)
    assert batches and not {b.status for b in batches} & {"queued", "running"}
    view = client.status(job.id)
    assert (view.status, view.documents_done) == ("failed", 0)
    assert "QdrantUnavailableError" in (view.error or "")
