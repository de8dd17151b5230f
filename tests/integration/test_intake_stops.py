"""Producers stopped part-way: their jobs end with what they got and say why, never stay open.

The ledger's rules on Postgres (one fresh schema per test); producers on an embedded
Qdrant folder with batches run in-process; the HTTP API on the real services.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs, outages
from embedq.api import cli
from embedq.api.client import Client
from embedq.api.http.app import create_app
from embedq.api.ingest import producer
from embedq.api.remote import RemoteClient
from embedq.jobs.clock import moment
from embedq.jobs.contracts import Document
from embedq.jobs.schema import Job
from embedq.models import Chunk, EmbeddingResult, GivenModels
from embedq.settings import Settings
from embedq.workers.context import WorkerContext
from embedq.workers.lifecycle import process_batch
from embedq.workers.queues import InProcessQueue

Sessions = sessionmaker[Session]
IDLE = 3600
ABANDONED = f"abandoned: no documents were added for {IDLE} s and the producer never sealed it"


@pytest.fixture
def sessions(postgres_schema_url: str) -> Iterator[Sessions]:
    jobs.migrate(postgres_schema_url)
    sessions = jobs.open_ledger(postgres_schema_url)
    yield sessions
    sessions.kw["bind"].dispose()


def new_job(sessions: Sessions, kind: str = "ingest") -> str:
    return jobs.create_job(sessions, kind=kind, collection="c", model="m")


def documents(count: int, prefix: str = "d") -> list[jobs.Document]:
    return [jobs.Document(f"{prefix}{i}", f"text of {prefix}{i}") for i in range(count)]


def run_batch(sessions: Sessions, batch_id: str) -> None:
    claim = jobs.claim_batch(sessions, batch_id=batch_id, worker="w")
    assert claim is not None
    jobs.complete_batch(sessions, batch_id=batch_id, documents_done=len(claim.documents))


# --- the ledger ------------------------------------------------------------------------------


def test_a_stopped_intake_ends_partial_even_when_all_it_got_succeeded(sessions: Sessions):
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(3))

    status = jobs.stop_intake(sessions, job_id=job_id, reason="intake stopped by SIGTERM")

    assert status == jobs.JobStatus.pending  # its batch has not run yet: it still will
    run_batch(sessions, ref.id)
    view = jobs.get_job(sessions, job_id=job_id)
    assert (view.status, view.documents_done, view.sealed) == ("partial", 3, True)
    assert view.error == "intake stopped by SIGTERM"


def test_a_stopped_intake_with_nothing_done_fails_at_once(sessions: Sessions):
    job_id = new_job(sessions)
    assert jobs.stop_intake(sessions, job_id=job_id, reason="why") == jobs.JobStatus.failed
    assert jobs.get_job(sessions, job_id=job_id).error == "why"


def test_stopping_a_sealed_or_ended_job_changes_nothing(sessions: Sessions):
    sealed = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=sealed, documents=documents(1))
    jobs.seal_job(sessions, job_id=sealed)
    cancelled = new_job(sessions)
    jobs.cancel_job(sessions, job_id=cancelled)

    assert jobs.stop_intake(sessions, job_id=sealed, reason="late") == jobs.JobStatus.pending
    assert jobs.stop_intake(sessions, job_id=cancelled, reason="late") == "cancelled"
    run_batch(sessions, ref.id)
    assert jobs.get_job(sessions, job_id=sealed).status == "succeeded"
    assert jobs.get_job(sessions, job_id=cancelled).error is None


def test_a_reindex_whose_intake_stopped_fails_rather_than_swap(sessions: Sessions):
    job_id = new_job(sessions, kind="reindex")
    jobs.add_batch(sessions, job_id=job_id, documents=documents(2))

    assert jobs.stop_intake(sessions, job_id=job_id, reason="why") == jobs.JobStatus.failed
    [batch] = jobs.list_batches(sessions, job_id=job_id)
    assert batch.status == "cancelled"


def test_jobs_nobody_fed_for_too_long_are_ended_as_abandoned(sessions: Sessions):
    fed = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=fed, documents=documents(2))
    empty = new_job(sessions)
    sealed = new_job(sessions)
    jobs.add_batch(sessions, job_id=sealed, documents=documents(1))
    jobs.seal_job(sessions, job_id=sealed)  # open until its batch runs, and not abandoned
    fresh = new_job(sessions)
    later = moment() + timedelta(seconds=IDLE + 1)
    jobs.touch_job(sessions, job_id=fresh, now=later - timedelta(seconds=10))

    ended = jobs.end_abandoned_jobs(sessions, idle_seconds=IDLE, now=later)

    assert sorted(ended) == sorted([fed, empty])
    assert jobs.get_job(sessions, job_id=empty).status == "failed"  # nothing was done
    run_batch(sessions, ref.id)  # what the abandoned job got still lands
    view = jobs.get_job(sessions, job_id=fed)
    assert (view.status, view.documents_done, view.error) == ("partial", 2, ABANDONED)
    for untouched in (sealed, fresh):
        view = jobs.get_job(sessions, job_id=untouched)
        assert (view.status, view.error) == ("pending", None)
    assert jobs.end_abandoned_jobs(sessions, idle_seconds=IDLE, now=later) == []


def test_touching_a_job_keeps_it_from_being_taken_for_abandoned(sessions: Sessions):
    job_id = new_job(sessions)
    start = moment()
    for minutes in (30, 60, 90):  # a producer waiting out a full queue for 90 minutes
        assert jobs.touch_job(sessions, job_id=job_id, now=start + timedelta(minutes=minutes))
        now = start + timedelta(minutes=minutes, seconds=30)
        assert jobs.end_abandoned_jobs(sessions, idle_seconds=IDLE, now=now) == []
    assert jobs.end_abandoned_jobs(
        sessions, idle_seconds=IDLE, now=start + timedelta(minutes=151)
    ) == [job_id]
    assert not jobs.touch_job(sessions, job_id=job_id)  # it has ended


def test_a_producer_held_back_by_a_full_queue_keeps_its_job_alive(sessions: Sessions, monkeypatch):
    class FullThenDrained:
        looks = 0

        def depth(self) -> int:
            self.looks += 1
            return 10 if self.looks <= 3 else 0

    monkeypatch.setattr(producer, "HEARTBEAT_S", 0.0)
    monkeypatch.setattr(producer, "BACKPRESSURE_POLL_S", 0.01)
    job_id = new_job(sessions)
    before = jobs.get_job(sessions, job_id=job_id).updated_at

    producer.wait_below(FullThenDrained(), 5, job_id=job_id, sessions=sessions)

    assert jobs.get_job(sessions, job_id=job_id).updated_at > before


def test_a_job_another_reaper_holds_is_skipped(sessions: Sessions):
    job_id = new_job(sessions)
    later = moment() + timedelta(seconds=IDLE + 1)
    with sessions.begin() as other:
        other.execute(select(Job).where(Job.id == job_id).with_for_update())
        assert jobs.end_abandoned_jobs(sessions, idle_seconds=IDLE, now=later) == []
    assert jobs.end_abandoned_jobs(sessions, idle_seconds=IDLE, now=later) == [job_id]


# --- producers -------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path, postgres_schema_url) -> Client:
    client = Client(Settings(home=tmp_path / "home", database_url=postgres_schema_url))
    client.migrate()
    return client


@pytest.fixture
def model(build_model) -> str:
    return str(build_model(style="bert", m3_heads=False, shape=None))


def reading(count: int, then: BaseException) -> Iterator[Document]:
    for i in range(count):
        yield Document(f"doc-{i}", f"document number {i} " * (i % 5 + 1))
    raise then


def the_job(client: Client) -> jobs.JobView:
    [view] = client.jobs()
    return view


def test_an_error_part_way_through_the_input_ends_the_job_with_what_was_read(
    client, model, tmp_path, monkeypatch
):
    # batches of 2 leave in windows of 32 (batching.WINDOW_BATCHES): the 33rd never does
    monkeypatch.setattr(
        producer, "read_all", lambda files: reading(33, OSError(5, "Input/output error"))
    )
    path = tmp_path / "in.jsonl"
    path.write_text("")

    with pytest.raises(OSError, match="Input/output error"):
        client.ingest([path], collection="c", model=model, batch_size=2, outputs="dense")

    view = the_job(client)
    assert (view.status, view.documents_total, view.documents_done) == ("partial", 32, 32)
    assert view.error == "intake stopped after 32 documents: OSError: [Errno 5] Input/output error"
    assert client.store.count(client.store.resolve("c")) == 32


class InterruptedEmbedder:
    """Random vectors of the model's width; Ctrl-C arrives during the ``at``-th batch."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.calls = 0

    def embed(self, texts, *, on_progress=None):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return [EmbeddingResult(chunks=[chunk(text)]) for text in texts]


def chunk(text: str) -> Chunk:
    vector = np.random.default_rng(len(text)).normal(size=32).astype(np.float32)
    return Chunk(dense=vector, sparse=None, colbert=None, start=0, end=len(text), num_tokens=3)


def test_ctrl_c_during_a_batch_run_here_fails_that_batch_and_ends_the_job(client, model, tmp_path):
    context = WorkerContext(
        settings=client.settings,
        sessions=client.sessions,
        store=client.store,
        models=GivenModels(InterruptedEmbedder(at=3)),
    )
    client.__dict__["queue"] = InProcessQueue(
        lambda batch_id, publish: process_batch(context, batch_id, publish=publish)
    )
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"id": "d{i}", "text": "text {i}"}}\n' for i in range(40)))

    with pytest.raises(KeyboardInterrupt):
        client.ingest([path], collection="c", model=model, batch_size=2, outputs="dense")

    view = the_job(client)
    reason = "intake stopped by Ctrl-C after 6 documents"
    assert (view.status, view.error, view.open_batches) == ("partial", reason, 0)
    assert (view.documents_done, view.documents_failed) == (4, 2)
    assert {f.reason for f in client.failures(view.id)} == {reason}


# --- the HTTP API ----------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path, postgres_schema_url, redis_url, qdrant_url, model) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=postgres_schema_url,
        broker_url=redis_url,
        qdrant_url=qdrant_url,
        queue=f"embedq.test.{uuid.uuid4().hex[:8]}",
        model=model,
        api_dev_mode=True,
    )
    Client(settings).migrate()
    with TestClient(create_app(settings)) as http:
        yield http
    redis.Redis.from_url(redis_url).delete(settings.queue)
    store = Client(settings).store
    for collection in store.client.get_collections().collections:
        if collection.name.startswith("stops_"):
            store.client.delete_collection(collection.name)


def new_api_job(http: TestClient, count: int) -> dict:
    body = {
        "collection": f"stops_{uuid.uuid4().hex[:10]}",
        "batch_size": 2,
        "documents": [document.to_json() for document in documents(count)],
    }
    response = http.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_sealing_with_an_intake_error_keeps_the_reason(api: TestClient):
    job = new_api_job(api, 3)
    reason = "intake stopped by SIGTERM after 3 documents"

    sealed = api.post(f"/v1/jobs/{job['id']}/seal", json={"intake_error": reason})

    assert sealed.status_code == 200, sealed.text
    body = sealed.json()
    assert (body["status"], body["sealed"], body["error"]) == ("pending", True, reason)
    empty = new_api_job(api, 0)
    ended = api.post(f"/v1/jobs/{empty['id']}/seal", json={"intake_error": reason}).json()
    assert (ended["status"], ended["error"]) == ("failed", reason)
    assert api.post(f"/v1/jobs/{job['id']}/seal", json={"intake_error": ""}).status_code == 422


def test_the_http_client_seals_with_the_reason_when_sending_stops(api, tmp_path, monkeypatch):
    from embedq.api import remote

    # the first request (1,000 documents) goes out; the input fails while filling the second
    monkeypatch.setattr(remote, "read_all", lambda files: reading(1500, OSError("disk gone")))
    path = tmp_path / "in.jsonl"
    path.write_text("")
    client = RemoteClient("http://testserver", None, http=api)

    with pytest.raises(OSError, match="disk gone"):
        client.ingest([path], collection=f"stops_{uuid.uuid4().hex[:10]}")

    [view] = client.jobs()
    assert (view.sealed, view.documents_total) == (True, 1000)
    assert view.error == "intake stopped after 1,000 documents: OSError: disk gone"


# --- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "code", "message"),
    [
        (lambda: os.kill(os.getpid(), signal.SIGTERM), 143, "embedq: stopped by SIGTERM"),
        (lambda: os.kill(os.getpid(), signal.SIGINT), 130, "embedq: stopped by Ctrl-C"),
    ],
)
def test_a_signal_ends_a_command_with_one_line_and_its_exit_code(
    stop, code, message, monkeypatch, capsys
):
    def stopped_while_running(args) -> int:
        stop()
        time.sleep(5)  # the signal's exception arrives before this ends
        return 0

    monkeypatch.setattr(cli, "run_jobs", stopped_while_running)
    before = signal.getsignal(signal.SIGTERM)

    assert cli.main(["jobs"]) == code

    assert capsys.readouterr().err == message + "\n"
    assert signal.getsignal(signal.SIGTERM) == before  # the command's handler is gone


def test_status_shows_why_a_job_stopped_short(sessions: Sessions, capsys):
    job_id = new_job(sessions)
    jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    jobs.stop_intake(sessions, job_id=job_id, reason="intake stopped by SIGTERM after 1 document")

    cli.print_job(jobs.get_job(sessions, job_id=job_id), as_json=False)

    assert "\n  stopped: intake stopped by SIGTERM after 1 document\n" in capsys.readouterr().out


def test_on_embedded_defaults_the_next_command_ends_an_abandoned_job(tmp_path):
    settings = Settings(home=tmp_path / "home", abandon_after_seconds=600)
    killed = Client(settings)  # a producer killed (SIGKILL) with a batch it would have run
    job_id = jobs.create_job(killed.sessions, kind="ingest", collection="c", model="m")
    jobs.add_batch(killed.sessions, job_id=job_id, documents=[jobs.Document("a", "t")])
    with killed.sessions.begin() as s:
        s.get(Job, job_id).updated_at = moment() - timedelta(hours=1)  # type: ignore[union-attr]

    later = Client(settings)  # no reaper runs here: the next command's ledger does its work
    view = later.status(job_id)
    assert (view.status, view.sealed, view.open_batches) == ("failed", True, 0)
    assert view.error == (
        "abandoned: no documents were added for 600 s and the producer never sealed it"
    )
    assert [f.reason for f in later.failures(job_id)] == [view.error]
    fresh = jobs.create_job(later.sessions, kind="ingest", collection="c", model="m")
    assert Client(settings).status(fresh).status == "pending"  # a live one is left alone


def test_a_broker_that_stays_away_fails_the_job_with_the_reason(
    tmp_path, postgres_schema_url, model, monkeypatch
):
    monkeypatch.setattr(outages, "SERVICE_WAIT_S", 2.0)
    with socket.socket() as probe:  # a port nothing listens on: a broker that is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        home=tmp_path / "home",
        database_url=postgres_schema_url,
        broker_url=f"redis://127.0.0.1:{port}/0",
    )
    client = Client(settings)
    client.migrate()
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"id": "d{i}", "text": "text {i}"}}\n' for i in range(5)))

    with pytest.raises(outages.ServiceOutageError, match="the broker \\(Redis\\) was out of reach"):
        client.ingest([path], collection="c", model=model, batch_size=2, outputs="dense")

    view = the_job(client)
    assert view.status == "failed"  # nothing was recorded, so nothing is lost silently
    assert view.error.startswith("intake stopped after 0 documents: ServiceOutageError: ")
    assert "the broker (Redis) was out of reach for" in view.error
