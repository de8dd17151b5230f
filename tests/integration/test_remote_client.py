"""The client and the command line over the HTTP API give what they give on the ledger.

A real API (uvicorn, in a thread) on the real Postgres, Redis and Qdrant server; no
worker runs, so jobs stay queued unless cancelled.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import uvicorn

from embedq import jobs
from embedq.api import cli
from embedq.api.client import Client
from embedq.api.http.app import create_app
from embedq.api.remote import ApiRejectedError, RemoteClient
from embedq.settings import Settings


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
    with pytest.raises(KeyError, match="no job"):
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
