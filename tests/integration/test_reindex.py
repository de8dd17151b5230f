"""Re-indexing a live collection: a new version behind the alias, swapped only when complete.

On embedded defaults (in-process batches, a local Qdrant folder) and on the real
Postgres and Qdrant server.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter

import numpy as np
import pytest

from embedq import jobs
from embedq.api.client import Client
from embedq.api.reindex.versions import ReindexError
from embedq.errors import ModelLoadError
from embedq.models import GivenModels
from embedq.settings import Settings
from embedq.store import point_id
from embedq.workers.context import WorkerContext
from embedq.workers.lifecycle import process_batch
from embedq.workers.queues import InProcessQueue


def corpus(path, texts: list[str], prefix: str = "d"):
    with path.open("w") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"id": f"{prefix}{i}", "text": text, "metadata": {"n": i}}) + "\n")
    return path


def stored_documents(client: Client, physical: str) -> dict[str, str]:
    return {d["id"]: d["text"] for d in client.store.documents(physical)}


@pytest.fixture
def embedded(tmp_path) -> Client:
    return Client(Settings(home=tmp_path / "home"))


@pytest.fixture
def served(tmp_path, postgres_schema_url, qdrant_url):
    client = Client(
        Settings(home=tmp_path / "home", database_url=postgres_schema_url, qdrant_url=qdrant_url)
    )
    client.migrate()
    names: list[str] = []
    yield client, names
    for name in names:
        for version in client.store.versions(name):
            client.store.delete(version)


def test_reindex_builds_a_new_version_swaps_and_rolls_back(
    embedded: Client, tmp_path, build_model, scifact_texts
):
    small = str(build_model(style="bert", m3_heads=False, shape=None))
    m3 = str(build_model(style="xlm-roberta"))
    texts = scifact_texts[:20]
    embedded.ingest([corpus(tmp_path / "in.jsonl", texts)], collection="papers", model=small)
    assert embedded.store.resolve("papers") == "papers__v1"

    job_id = embedded.reindex("papers", model=m3, outputs="dense,sparse")

    view = embedded.status(job_id)
    assert (view.kind, view.status, view.documents_done) == ("reindex", "succeeded", 20)
    assert embedded.store.resolve("papers") == "papers__v2"
    shape = embedded.store.shape_of("papers__v2")
    assert shape.sparse and shape.dense_dim == embedded.store.shape_of("papers__v1").dense_dim
    expected = {f"d{i}": text for i, text in enumerate(texts)}
    assert stored_documents(embedded, "papers__v2") == expected  # every document, whole
    [record] = embedded.store.client.retrieve("papers", ids=[point_id("d3", 0)], with_payload=True)
    assert record.payload["model"] == m3 and record.payload["metadata"] == {"n": 3}

    assert embedded.rollback("papers") == "papers__v1"
    assert embedded.store.resolve("papers") == "papers__v1"
    assert embedded.collect_garbage("papers") == ["papers__v2"]
    assert embedded.store.versions("papers") == ["papers__v1"]


def test_chunked_documents_come_back_whole(embedded: Client, tmp_path, build_model, pep_texts):
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    texts = [text[:3000] for text in pep_texts[:4]]
    path = corpus(tmp_path / "in.jsonl", texts)
    embedded.ingest([path], collection="peps", model=model, max_length=64, long_text="chunk")
    assert embedded.store.count("peps__v1") > len(texts)  # several chunks each

    job_id = embedded.reindex("peps", max_length=256)

    assert embedded.status(job_id).status == "succeeded"
    assert stored_documents(embedded, "peps__v2") == {f"d{i}": t for i, t in enumerate(texts)}
    # the settings not given stay as the collection was built
    assert embedded.status(job_id).options.embedding.long_text == "chunk"
    assert embedded.status(job_id).model == model


def test_what_cannot_be_reindexed_says_why(embedded: Client, tmp_path, build_model):
    with pytest.raises(ReindexError, match="no collection 'missing'"):
        embedded.reindex("missing")
    with pytest.raises(ReindexError, match="no re-index to roll back"):
        model = str(build_model(style="bert", m3_heads=False, shape=None))
        embedded.ingest([corpus(tmp_path / "in.jsonl", ["a text"])], collection="c", model=model)
        embedded.rollback("c")


def test_a_failed_reindex_leaves_the_alias_and_says_why(
    embedded: Client, tmp_path, build_model, scifact_texts
):
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    embedded.ingest([corpus(tmp_path / "in.jsonl", scifact_texts[:6])], collection="c", model=model)

    class Broken:
        def embed(self, texts, *, on_progress=None):
            raise ModelLoadError("weights are corrupt")

    queue = InProcessQueue(lambda b, publish: process_batch(context, b, publish=publish))
    context = WorkerContext(
        settings=embedded.settings,
        sessions=embedded.sessions,
        store=embedded.store,
        models=GivenModels(Broken()),
        publish_reindex=queue.publish,
    )
    embedded.__dict__["queue"] = queue

    job_id = embedded.reindex("c")

    view = embedded.status(job_id)
    assert view.status == "failed"
    assert "6 documents could not be re-embedded" in str(view.error)
    assert "stays on c__v1" in str(view.error)
    assert embedded.store.resolve("c") == "c__v1"


def test_searches_through_the_alias_never_fail_or_come_back_empty(
    served, tmp_path, build_model, scifact_texts
):
    client, names = served
    names.append(name := f"live_{uuid.uuid4().hex[:8]}")
    first = str(build_model(style="bert", m3_heads=False, shape=None))
    second = str(build_model(style="bert", m3_heads=False, shape=None, seed=1))
    client.ingest(
        [corpus(tmp_path / "in.jsonl", scifact_texts[:200])], collection=name, model=first
    )
    query = np.ones(client.store.shape_of(f"{name}__v1").dense_dim or 0).tolist()
    outcomes: Counter[str] = Counter()
    models_seen: list[str] = []
    stop = threading.Event()

    def search_loop() -> None:
        while not stop.is_set():
            try:
                hits = client.store.client.query_points(
                    name, query=query, using="dense", limit=3, with_payload=True
                ).points
            except Exception as error:  # counted: there must be none
                outcomes[f"error: {type(error).__name__}: {error}"] += 1
                continue
            outcomes["empty" if not hits else "ok"] += 1
            if hits and (not models_seen or models_seen[-1] != hits[0].payload["model"]):
                models_seen.append(hits[0].payload["model"])

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        job_id = client.reindex(name, model=second)
    finally:
        stop.set()
        searcher.join()
    assert client.status(job_id).status == "succeeded"
    assert set(outcomes) == {"ok"}, outcomes
    assert models_seen[0] == first  # the old version, until the swap
    search_after = client.store.client.query_points(name, query=query, using="dense", limit=1)
    assert search_after.points[0].payload["model"] == second


def test_documents_ingested_during_a_reindex_reach_the_new_version(
    served, tmp_path, build_model, scifact_texts
):
    client, names = served
    names.append(name := f"during_{uuid.uuid4().hex[:8]}")
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    client.ingest(
        [corpus(tmp_path / "old.jsonl", scifact_texts[:10])], collection=name, model=model
    )

    # the re-index's batches are recorded, not run yet: an ingestion comes in meanwhile
    held: list[str] = []
    real_queue = client.queue
    client.__dict__["queue"] = HeldQueue(held)
    job_id = client.reindex(name)
    client.__dict__["queue"] = real_queue
    late = corpus(tmp_path / "new.jsonl", scifact_texts[10:15], prefix="late")
    client.ingest([late], collection=name, model=model)
    assert not client.status(job_id).ended
    assert client.store.resolve(name) == f"{name}__v1"  # not swapped: batches are open

    for batch_id in held:  # the re-index's batches run now; its end catches up
        real_queue.publish(batch_id)
    real_queue.drain()

    view = client.status(job_id)
    assert view.status == "succeeded", view
    assert client.store.resolve(name) == f"{name}__v2"
    documents = stored_documents(client, f"{name}__v2")
    assert set(documents) == {f"d{i}" for i in range(10)} | {f"late{i}" for i in range(5)}
    assert view.documents_total == 15  # ten read back, five caught up


def test_a_cancelled_reindex_leaves_the_alias(served, tmp_path, build_model, scifact_texts):
    client, names = served
    names.append(name := f"cancel_{uuid.uuid4().hex[:8]}")
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    client.ingest([corpus(tmp_path / "in.jsonl", scifact_texts[:5])], collection=name, model=model)
    held: list[str] = []
    real_queue = client.queue
    client.__dict__["queue"] = HeldQueue(held)
    job_id = client.reindex(name)
    assert client.cancel(job_id)

    for batch_id in held:  # a worker that gets them now finds the job ended
        real_queue.publish(batch_id)
    real_queue.drain()

    assert client.status(job_id).status == "cancelled"
    assert client.store.resolve(name) == f"{name}__v1"
    assert jobs.reindexing.open_reindex(client.sessions, collection=name) is None


class HeldQueue:
    """A broker with no worker yet: batches wait, published later by the test."""

    def __init__(self, held: list[str]) -> None:
        self.held = held

    def publish(self, batch_id: str) -> None:
        self.held.append(batch_id)

    def depth(self) -> int:
        return 0

    def drain(self) -> None:
        pass


def test_drop_old_removes_the_replaced_version_so_there_is_no_rollback(
    embedded: Client, tmp_path, build_model, scifact_texts
):
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    embedded.ingest([corpus(tmp_path / "in.jsonl", scifact_texts[:5])], collection="c", model=model)
    job_id = embedded.reindex("c", drop_old=True)
    assert embedded.status(job_id).status == "succeeded"
    assert embedded.store.versions("c") == ["c__v2"]
    with pytest.raises(ReindexError, match="c__v1 is gone"):
        embedded.rollback("c")


def test_reindex_batches_have_their_own_queue_and_rate_limit(tmp_path):
    from embedq.workers.celery_app import EMBED_BATCH, REINDEX_BATCH, make_celery
    from embedq.workers.queues import CeleryQueue

    settings = Settings(
        home=tmp_path / "home",
        broker_url="redis://127.0.0.1:6379/0",
        reindex_rate_limit="12/m",
    )
    app = make_celery(settings)
    assert app.tasks[REINDEX_BATCH].rate_limit == "12/m"
    assert app.tasks[EMBED_BATCH].rate_limit is None
    # a worker names the ingestion queue first and Redis serves queues in that order
    assert app.conf.broker_transport_options["queue_order_strategy"] == "priority"
    reindex_queue = CeleryQueue(settings, reindex=True)
    assert (reindex_queue._queue, reindex_queue._task) == ("embedq.reindex", REINDEX_BATCH)
