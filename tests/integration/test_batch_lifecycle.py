"""A batch's lifecycle: the handler of its kind, a lease that stops once (on the writer's
thread when the write was handed over), hooks told of recorded ends only, and a batch
that stops at its next micro-batch once its job is cancelled."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from embedq import jobs
from embedq.api.client import Client
from embedq.errors import ModelLoadError
from embedq.models import Chunk, EmbeddingResult, GivenModels
from embedq.settings import Settings
from embedq.workers.context import WorkerContext
from embedq.workers.handlers import handler_for
from embedq.workers.hooks import default_hooks
from embedq.workers.hooks.write_ended import WriteEnded
from embedq.workers.ingest.ingestion import embed_and_write
from embedq.workers.ingest.removal import delete_ids, sweep_absent
from embedq.workers.ingest.writer import BatchWriter
from embedq.workers.leases import LeaseKeeper
from embedq.workers.lifecycle import process_batch
from embedq.workers.outcomes import BatchEnd
from embedq.workers.queues import InProcessQueue
from embedq.workers.rerank.scoring import score_and_rank
from embedq.workers.running import BatchRun

LEASE_SECONDS = 5  # the shortest the settings allow: a renewal every 1.7 s
MICRO_BATCH_S = 0.05


def claim_of(kind: jobs.JobKind, role: str | None = None) -> jobs.Claim:
    return jobs.Claim(
        batch_id="b",
        job_id="j",
        attempt=1,
        documents=[],
        kind=kind,
        collection="c",
        model="m",
        options={},
        lease_expires_at=datetime.now(timezone.utc),
        role=role,
    )


def test_each_job_kind_and_the_sweep_have_their_handler():
    handlers = {kind: handler_for(claim_of(kind)) for kind in jobs.JobKind}
    assert handlers == {
        jobs.JobKind.ingest: embed_and_write,
        jobs.JobKind.reindex: embed_and_write,
        jobs.JobKind.delete: delete_ids,
        jobs.JobKind.rerank: score_and_rank,
    }
    assert handler_for(claim_of(jobs.JobKind.ingest, role=jobs.SWEEP)) is sweep_absent


def vectors(texts) -> list[EmbeddingResult]:
    rng = np.random.default_rng(7)
    return [
        EmbeddingResult(
            chunks=[Chunk(rng.normal(size=32).astype(np.float32), None, None, 0, len(t), 3)]
        )
        for t in texts
    ]


class MicroBatches:
    """A stand-in model that embeds one text a micro-batch, telling ``on_progress`` after each."""

    def __init__(self) -> None:
        self.done = 0

    def embed(self, texts, *, on_progress=None):
        for done in range(1, len(texts) + 1):
            self.before(done)
            time.sleep(MICRO_BATCH_S)
            self.done = done
            if on_progress is not None:
                on_progress(done, len(texts))
        return vectors(texts)

    def before(self, done: int) -> None:
        pass


class Recorder:
    """A hook after a batch that keeps what it was told."""

    def __init__(self) -> None:
        self.ends: list[tuple[str, bool, bool]] = []

    def after_batch(self, run: BatchRun, end: BatchEnd) -> None:
        counted = end.completion is not None and end.completion.counted
        self.ends.append((end.outcome.status, end.written, counted))


@pytest.fixture
def client(tmp_path) -> Client:
    return Client(Settings(home=tmp_path / "home", lease_seconds=LEASE_SECONDS))


def run_with(client: Client, embedder, *hooks) -> WorkerContext:
    context = WorkerContext(
        settings=client.settings,
        sessions=client.sessions,
        store=client.store,
        models=GivenModels(embedder),
        hooks=(*default_hooks(), *hooks),
    )
    client.__dict__["queue"] = InProcessQueue(
        lambda batch_id, publish: process_batch(context, batch_id, publish=publish)
    )
    return context


def corpus(path, count: int, prefix: str = "doc"):
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"id": f"{prefix}-{i}", "text": f"text number {i}"}) + "\n")
    return path


@pytest.fixture
def model(build_model) -> str:
    return str(build_model(style="bert", m3_heads=False, shape=None))


@pytest.fixture
def stops(monkeypatch) -> list[tuple[str, str]]:
    """Every ``LeaseKeeper.stop`` call: the batch, and the thread it was made on."""
    calls: list[tuple[str, str]] = []
    real = LeaseKeeper.stop

    def stop(self: LeaseKeeper) -> None:
        calls.append((self._batch_id, threading.current_thread().name))
        real(self)

    monkeypatch.setattr(LeaseKeeper, "stop", stop)
    return calls


def lease_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("lease-")]


def test_a_batch_run_here_stops_its_lease_once_on_this_thread(client, model, tmp_path, stops):
    run_with(client, MicroBatches())
    job_id = client.ingest(
        [corpus(tmp_path / "in.jsonl", 6)],
        collection="c",
        model=model,
        batch_size=2,
        outputs="dense",
    )
    batches = {b.id for b in jobs.list_batches(client.sessions, job_id=job_id)}
    assert Counter(batch for batch, _ in stops) == dict.fromkeys(batches, 1)
    assert {thread for _, thread in stops} == {threading.current_thread().name}
    assert not lease_threads()


def test_a_handed_over_write_stops_its_lease_once_on_the_writers_thread(
    tmp_path, model, stops, postgres_schema_url, qdrant_url
):
    settings = Settings(
        home=tmp_path / "home", database_url=postgres_schema_url, qdrant_url=qdrant_url
    )
    client = Client(settings)
    client.migrate()
    written: list[str] = []
    writer = BatchWriter()
    context = WorkerContext(
        settings=settings,
        sessions=client.sessions,
        store=client.store,
        models=GivenModels(MicroBatches()),
        writer=writer,
        hooks=(*default_hooks(), WriteEnded(lambda outcome: written.append(outcome.status))),
    )
    client.__dict__["queue"] = InProcessQueue(
        lambda batch_id, publish: process_batch(context, batch_id, publish=publish), writer
    )
    collection = f"lc_{uuid.uuid4().hex[:8]}"
    try:
        job_id = client.ingest(
            [corpus(tmp_path / "in.jsonl", 6)],
            collection=collection,
            model=model,
            batch_size=2,
            outputs="dense",
        )
        writer.close()
        batches = {b.id for b in jobs.list_batches(client.sessions, job_id=job_id)}
        assert Counter(batch for batch, _ in stops) == dict.fromkeys(batches, 1)
        assert all(thread.startswith("embedq-writer") for _, thread in stops), stops
        assert written == ["succeeded"] * 3
        assert client.status(job_id).status == "succeeded"
        assert not lease_threads()
    finally:
        client.store.client.delete_collection(client.store.resolve(collection))


class TakenOver(MicroBatches):
    """Embeds, but meanwhile the batch's lease ran out and another worker took it."""

    def __init__(self, sessions) -> None:
        super().__init__()
        self.sessions = sessions

    def embed(self, texts, *, on_progress=None):
        [job] = jobs.list_jobs(self.sessions)
        for batch in jobs.list_batches(self.sessions, job_id=job.id):
            if batch.status == "running":
                later = batch.lease_expires_at + timedelta(seconds=1)
                assert jobs.claim_batch(self.sessions, batch_id=batch.id, worker="other", now=later)
        return vectors(texts)  # no micro-batches: it finds out at its write


class Broken:
    def embed(self, texts, *, on_progress=None):
        raise ModelLoadError("weights are corrupt")


@pytest.mark.parametrize(
    ("make", "told"),
    [
        (lambda client: MicroBatches(), [("succeeded", True, True)]),
        (lambda client: Broken(), [("failed", False, False)]),
        (lambda client: TakenOver(client.sessions), []),  # dropped: the ledger recorded nothing
    ],
    ids=["written", "failed", "dropped"],
)
def test_hooks_hear_of_each_end_the_ledger_recorded(client, model, tmp_path, make, told):
    recorder = Recorder()
    run_with(client, make(client), recorder)
    client.ingest([corpus(tmp_path / "in.jsonl", 2)], collection="c", model=model, outputs="dense")
    assert recorder.ends == told


class CancelledAtFirst(MicroBatches):
    """Cancels its own job while it embeds the first of its texts."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self.cancelled_at = 0.0

    def before(self, done: int) -> None:
        if done == 1:
            [job] = jobs.list_jobs(self.client.sessions)
            assert self.client.cancel(job.id)
            self.cancelled_at = time.monotonic()


def test_a_cancelled_jobs_batch_stops_at_its_next_micro_batch_and_writes_nothing(
    client, model, tmp_path, caplog
):
    embedder = CancelledAtFirst(client)
    run_with(client, embedder)
    texts = 200  # 10 s of micro-batches, were it not stopped
    path = corpus(tmp_path / "in.jsonl", texts)
    client.ingest([path], collection="c", model=model, batch_size=texts, outputs="dense")

    stopped = time.monotonic()
    assert stopped - embedder.cancelled_at < LEASE_SECONDS / 3 + 1
    assert 0 < embedder.done < texts
    [job] = jobs.list_jobs(client.sessions)
    view = client.status(job.id)
    assert (view.status, view.documents_done) == ("cancelled", 0)
    assert client.store.count(client.store.resolve("c")) == 0
    assert f"stopped after {embedder.done} of {texts}" in caplog.text
    assert not lease_threads()


class CancellingScorer:
    """A stand-in reranker, one pair a micro-batch, whose job is cancelled at the first pair."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.done = 0

    def score_each(self, pairs, *, on_progress=None):
        [job] = jobs.list_jobs(self.client.sessions)
        assert self.client.cancel(job.id)
        for done in range(1, len(pairs) + 1):
            time.sleep(MICRO_BATCH_S)
            self.done = done
            on_progress(done, len(pairs))
        return [0.0] * len(pairs), {}


def test_a_cancelled_rerank_batch_stops_and_records_no_results(client, tmp_path, build_model):
    scorer = CancellingScorer(client)
    context = WorkerContext(
        settings=client.settings,
        sessions=client.sessions,
        store=client.store,
        models=GivenModels(reranker_model=scorer),
    )
    client.__dict__["queue"] = InProcessQueue(
        lambda batch_id, publish: process_batch(context, batch_id, publish=publish)
    )
    candidates = [{"id": f"c{i}", "text": f"candidate {i}"} for i in range(200)]
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"query_id": "q", "query": "a query", "candidates": candidates}))
    reranker = str(build_model(style="xlm-roberta", reranker=True))

    job_id = client.rerank([path], model=reranker)

    assert 0 < scorer.done < len(candidates)
    assert client.status(job_id).status == "cancelled"
    assert client.results(job_id) == []
