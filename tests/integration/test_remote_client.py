"""The client and the command line over the HTTP API give what they give on the ledger.

A real API (uvicorn, in a thread) on the real Postgres, Redis and Qdrant server; no
worker runs, so jobs stay queued unless cancelled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn
from qdrant_client import models as qm

from embedq import jobs
from embedq.api import cli
from embedq.api import remote as remote_module
from embedq.api.client import Client
from embedq.api.http.app import create_app
from embedq.api.remote import ApiRejectedError, RemoteClient
from embedq.errors import NotFoundError
from embedq.settings import Settings
from embedq.workers.context import WorkerContext
from embedq.workers.lifecycle import process_batch


@dataclass
class Served:
    url: str
    key: str
    local: Client
    settings: Settings
    model: str

    def remote(self) -> RemoteClient:
        return RemoteClient(self.url, self.key)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def served(tmp_path, postgres_schema_url, redis_url, qdrant_url, build_model) -> Iterator[Served]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=postgres_schema_url,
        broker_url=redis_url,
        qdrant_url=qdrant_url,
        queue=f"embedq.test.{uuid.uuid4().hex[:8]}",
        high_water_mark=1000,
    )
    local = Client(settings)
    local.migrate()
    key = local.create_api_key(tenant="acme").secret
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    with serving(settings) as url:
        yield Served(url, key, local, settings, model)
    redis.Redis.from_url(redis_url).delete(settings.queue)
    qdrant = local.store.client
    for collection in qdrant.get_collections().collections:
        if collection.name.startswith("remote_"):
            qdrant.delete_collection(collection.name)


def corpus(path, count: int, *, broken: bool = True):
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"id": f"d{i}", "text": f"text {i}", "title": "T"}) + "\n")
        if broken:
            out.write("{not json\n")
            out.write(json.dumps({"id": "d0", "text": "the same id again"}) + "\n")
    return path


def test_ingest_over_the_api_records_what_a_local_ingest_records(served: Served, tmp_path):
    path = corpus(tmp_path / "in.jsonl", 7)
    collection = f"remote_{uuid.uuid4().hex[:8]}"
    remote = served.remote()
    job_id = remote.ingest(
        [path], collection=collection, model=served.model, batch_size=3, outputs="dense"
    )

    view = served.local.status(job_id)
    assert (view.tenant, view.sealed, view.documents_total) == ("acme", True, 9)
    assert (view.documents_failed, view.batches_total) == (2, 3)
    reasons = {(f.line, f.reason) for f in served.local.failures(job_id)}
    assert reasons == {
        (8, "line 8 is not JSON: Expecting property name enclosed in double quotes at column 2"),
        (9, "line 9 of in.jsonl: duplicate id 'd0'"),
    }
    assert remote.status(job_id) == view  # the same view, field for field
    assert remote.failures(job_id) == served.local.failures(job_id)
    assert remote.jobs() == served.local.jobs()


def test_remote_wait_returns_as_soon_as_the_job_ends(served: Served, tmp_path):
    remote = served.remote()
    job_id = remote.ingest(
        [corpus(tmp_path / "in.jsonl", 3, broken=False)],
        collection=f"remote_{uuid.uuid4().hex[:8]}",
        model=served.model,
    )
    timer = threading.Timer(1.0, served.local.cancel, args=[job_id])
    timer.start()
    started = time.monotonic()
    seen: list[str] = []
    view = remote.wait(job_id, on_progress=lambda v: seen.append(str(v.status)))
    timer.join()
    assert view.status == "cancelled" and seen[-1] == "cancelled"
    assert time.monotonic() - started < 10  # long-polled: no fixed sleep to wait out


def test_remote_cancel_and_errors_read_like_local_ones(served: Served, tmp_path):
    remote = served.remote()
    job_id = remote.ingest(
        [corpus(tmp_path / "in.jsonl", 2, broken=False)],
        collection=f"remote_{uuid.uuid4().hex[:8]}",
        model=served.model,
    )
    assert remote.cancel(job_id) is True
    assert remote.cancel(job_id) is False  # already ended, as the ledger says
    with pytest.raises(jobs.JobNotFoundError, match="no job"):
        remote.status(uuid.uuid4().hex)
    with pytest.raises(ApiRejectedError, match="401"):
        RemoteClient(served.url, "eq_wrong").jobs()


def test_remote_ingest_waits_out_a_full_queue(served: Served, tmp_path, redis_url):
    settings = served.settings.model_copy(update={"high_water_mark": 1})
    broker = redis.Redis.from_url(redis_url)
    stop = threading.Event()

    def worker_stand_in() -> None:  # takes what is queued, now and then, as workers would
        while not stop.wait(0.5):
            broker.delete(settings.queue)

    with serving(settings) as url:
        drainer = threading.Thread(target=worker_stand_in)
        drainer.start()
        try:
            job_id = RemoteClient(url, served.key).ingest(
                [corpus(tmp_path / "in.jsonl", 2500, broken=False)],
                collection=f"remote_{uuid.uuid4().hex[:8]}",
                model=served.model,
            )
        finally:
            stop.set()
            drainer.join()
    view = served.local.status(job_id)
    assert (view.documents_total, view.sealed) == (2500, True)  # every request went through


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def test_the_command_line_prints_the_same_with_api(served: Served, tmp_path, monkeypatch):
    for name, value in {
        "EMBEDQ_HOME": str(served.settings.home),
        "EMBEDQ_DATABASE_URL": served.settings.database_url,
        "EMBEDQ_BROKER_URL": served.settings.broker_url,
        "EMBEDQ_QDRANT_URL": served.settings.qdrant_url,
        "EMBEDQ_QUEUE": served.settings.queue,
        "EMBEDQ_API_KEY": served.key,
    }.items():
        monkeypatch.setenv(name, str(value))
    path = corpus(tmp_path / "in.jsonl", 4)
    code, out = run_cli(
        "--api", served.url, "ingest", str(path), "--collection",
        f"remote_{uuid.uuid4().hex[:8]}", "--model", served.model, "--json",
    )  # fmt: skip
    assert code == 0, out
    job_id = json.loads(out)["id"]
    for command in (["status", job_id, "--json"], ["jobs", "--json"], ["failures", job_id]):
        assert run_cli("--api", served.url, *command) == run_cli(*command)
    assert jobs.get_job(served.local.sessions, job_id=job_id) is not None


# --- rerank jobs over the API -------------------------------------------------------------


def rerank_input(path, texts: list[str], queries: int) -> Path:
    with path.open("w") as out:
        for q in range(queries):
            candidates = [{"id": f"c{i}", "text": texts[q + i]} for i in range(4)]
            out.write(
                json.dumps({"query_id": f"q{q}", "query": texts[q][:80], "candidates": candidates})
                + "\n"
            )
        out.write("{not json\n")
        out.write(
            json.dumps({"query_id": "q0", "query": "the same id", "candidates": candidates}) + "\n"
        )
    return path


def measuring_queries(url: str, sizes: list[int]) -> httpx.Client:
    """An HTTP client that notes the body size of every request that appends queries."""

    def note(request: httpx.Request) -> None:
        if request.url.path.endswith("/queries"):
            sizes.append(len(request.content))

    return httpx.Client(base_url=url, event_hooks={"request": [note]})


def run_queued(settings: Settings, job_id: str) -> None:
    """Run the job's queued batches here, as a worker would."""
    context = WorkerContext.create(settings)
    for batch_id in jobs.queued_batches(context.sessions, job_id=job_id):
        assert process_batch(context, batch_id, publish=lambda _: None).status == "succeeded"


def test_a_rerank_over_the_api_goes_in_bounded_requests_and_reads_back_like_a_local_one(
    served: Served, tmp_path, monkeypatch, build_model, scifact_texts
):
    reranker = str(build_model(style="xlm-roberta", reranker=True))
    path = rerank_input(tmp_path / "queries.jsonl", scifact_texts, 9)
    monkeypatch.setattr(remote_module, "REQUEST_DOCUMENTS", 4)
    sizes: list[int] = []
    remote = RemoteClient(served.url, served.key, http=measuring_queries(served.url, sizes))
    job_id = remote.rerank([path], model=reranker, top_k=2)
    local_id = served.local.rerank([path], model=reranker, top_k=2)

    assert len(sizes) == 3  # 9 queries and 2 unreadable lines, 4 a request
    mine, theirs = served.local.status(job_id), served.local.status(local_id)
    assert (mine.kind, mine.tenant, mine.sealed, mine.options) == (
        "rerank",
        "acme",
        True,
        theirs.options,
    )
    counts = (mine.documents_total, mine.documents_failed)
    assert counts == (theirs.documents_total, theirs.documents_failed) == (11, 2)
    # a request's queries are batched on their own: 2,000 pairs a batch at most, one here
    assert (mine.batches_total, theirs.batches_total) == (3, 1)
    reasons = [(f.line, f.reason) for f in served.local.failures(job_id)]
    assert reasons == [(f.line, f.reason) for f in served.local.failures(local_id)]

    run_queued(served.settings, job_id)
    run_queued(served.settings, local_id)
    results = remote.results(job_id, limit=5)
    assert len(results) == 5 and results == served.local.results(job_id, limit=5)
    assert [r.query_id for r in remote.results(job_id, limit=100)] == [
        f"q{q}" for q in range(9) for _ in (1, 2)
    ]
    # the same pairs scored alike (other batch shapes: fp32 rounding apart)
    scores = {(r.query_id, r.candidate_id): r.score for r in served.local.results(local_id)}
    assert {(r.query_id, r.candidate_id): r.score for r in remote.results(job_id)} == (
        pytest.approx(scores, abs=1e-6)
    )
    with pytest.raises(jobs.JobNotFoundError, match="no job"):
        remote.results(uuid.uuid4().hex)


def test_remote_requests_stay_under_their_byte_bound(
    served: Served, tmp_path, monkeypatch, build_model, scifact_texts
):
    reranker = str(build_model(style="xlm-roberta", reranker=True))
    path = rerank_input(tmp_path / "queries.jsonl", scifact_texts, 12)
    monkeypatch.setattr(remote_module, "REQUEST_BYTES", 8000)
    sizes: list[int] = []
    http = measuring_queries(served.url, sizes)
    job_id = RemoteClient(served.url, served.key, http=http).rerank([path], model=reranker)
    assert len(sizes) > 2 and max(sizes) <= 8000 + 1000  # the bound, plus the envelope's keys
    assert served.local.status(job_id).documents_total == 14


def test_the_command_line_reranks_and_writes_results_through_the_api(
    served: Served, tmp_path, monkeypatch, build_model, scifact_texts
):
    monkeypatch.setenv("EMBEDQ_API_KEY", served.key)
    reranker = str(build_model(style="xlm-roberta", reranker=True))
    path = rerank_input(tmp_path / "queries.jsonl", scifact_texts, 3)
    code, out = run_cli("--api", served.url, "rerank", str(path), "--model", reranker, "--json")
    assert code == 0, out
    job_id = json.loads(out)["id"]
    run_queued(served.settings, job_id)
    code, out = run_cli("--api", served.url, "results", job_id)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 12
    local = [dataclasses.asdict(r) for r in served.local.results(job_id)]
    assert lines == local


# --- skipping unchanged documents, syncing and deleting through the API -----------------


def drain_here(served: Served) -> None:
    """Run every queued batch (a sync's sweep included) as a worker would."""
    local = served.local
    context = WorkerContext(
        settings=local.settings, sessions=local.sessions, store=local.store, models=local.models
    )
    while batch_ids := jobs.queued_batches(local.sessions):
        for batch_id in batch_ids:
            process_batch(context, batch_id, publish=lambda _: None)


def stored_doc_ids(served: Served, collection: str) -> list[str]:
    store = served.local.store
    records, _ = store.client.scroll(
        store.resolve(collection) or collection,
        scroll_filter=qm.Filter(
            must=[qm.FieldCondition(key="chunk", match=qm.MatchValue(value=0))]
        ),
        limit=1000,
        with_payload=["doc_id"],
    )
    return sorted(str((r.payload or {})["doc_id"]) for r in records)


def numbered(path, count: int):
    path.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": f"text {i}"}) + "\n" for i in range(count))
    )
    return path


def test_skip_unchanged_sync_and_delete_through_the_api(served: Served, tmp_path):
    remote = served.remote()
    collection = f"remote_{uuid.uuid4().hex[:8]}"
    options = {"collection": collection, "model": served.model}
    first = remote.ingest([numbered(tmp_path / "a.jsonl", 10)], **options)
    drain_here(served)
    assert remote.status(first).status == "succeeded"

    again = remote.status(remote.ingest([tmp_path / "a.jsonl"], skip_unchanged=True, **options))
    assert (again.status, again.documents_unchanged, again.batches_total) == ("succeeded", 10, 0)

    synced = remote.ingest([numbered(tmp_path / "b.jsonl", 8)], sync=True, force=True, **options)
    drain_here(served)
    view = remote.status(synced)
    assert (view.status, view.documents_unchanged, view.documents_deleted) == ("succeeded", 8, 2)
    assert stored_doc_ids(served, collection) == [f"d{i}" for i in range(8)]

    by_ids = remote.delete(collection, ids=["d0", "absent"])
    (tmp_path / "ids.txt").write_text('d1\n{"id": "d2"}\n')
    by_file = remote.delete(collection, files=[tmp_path / "ids.txt"])
    drain_here(served)
    assert [
        (v.kind, v.status, v.documents_done, v.documents_deleted)
        for v in map(remote.status, (by_ids, by_file))
    ] == [
        ("delete", "succeeded", 2, 1),
        ("delete", "succeeded", 2, 2),
    ]
    assert stored_doc_ids(served, collection) == [f"d{i}" for i in range(3, 8)]


def test_another_tenant_can_neither_delete_from_nor_sync_a_collection(served: Served, tmp_path):
    remote = served.remote()
    collection = f"remote_{uuid.uuid4().hex[:8]}"
    remote.ingest([numbered(tmp_path / "a.jsonl", 3)], collection=collection, model=served.model)
    drain_here(served)
    other = RemoteClient(served.url, served.local.create_api_key(tenant="globex").secret)
    with pytest.raises(NotFoundError, match="no collection"):
        other.delete(collection, ids=["d0"])
    with pytest.raises(NotFoundError, match="no collection"):
        other.ingest([tmp_path / "a.jsonl"], collection=collection, model=served.model, sync=True)
    assert stored_doc_ids(served, collection) == ["d0", "d1", "d2"]


def test_deleting_from_a_collection_that_does_not_exist_is_a_404(served: Served):
    response = httpx.post(
        f"{served.url}/v1/deletions",
        json={"collection": "never_made", "ids": ["x"]},
        headers={"Authorization": f"Bearer {served.key}"},
    )
    assert response.status_code == 404, response.text
    assert "never_made" in response.json()["detail"]
