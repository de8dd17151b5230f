"""Batches published again (an expired lease, a retried write) go back to their own queue.

The real Postgres ledger and a real Redis broker; no worker runs, so the messages stay
in Redis to be read back.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import redis
from celery import Celery
from sqlalchemy import update

from embedq import jobs
from embedq.jobs.constants import REPUBLISH_PERIOD_SECONDS
from embedq.jobs.schema import Batch
from embedq.settings import Settings
from embedq.workers.celery_app import EMBED_BATCH, REINDEX_BATCH, make_celery
from embedq.workers.context import WorkerContext
from embedq.workers.queues import queue_depth
from embedq.workers.reaper import Reaper
from embedq.workers.tasks import Republish, republisher


@dataclass
class Broker:
    settings: Settings
    app: Celery
    redis: redis.Redis
    context: WorkerContext
    publish_again: Republish

    def reaper(self) -> Reaper:
        """A reaper wired as a worker process wires its own (tasks._connect_process_signals)."""
        return Reaper(
            self.context,
            publish=lambda batch_id: self.publish_again(batch_id, None),
            depth=queue_depth(self.settings),
        )

    def messages(self, queue: str) -> list[dict]:
        """The messages waiting in a queue, oldest first (kombu pushes on the left)."""
        return [json.loads(raw) for raw in reversed(self.redis.lrange(queue, 0, -1))]


@pytest.fixture
def broker(tmp_path, postgres_schema_url, redis_url) -> Iterator[Broker]:
    test = uuid.uuid4().hex[:8]
    settings = Settings(
        home=tmp_path / "home",
        database_url=postgres_schema_url,
        broker_url=redis_url,
        queue=f"embedq.test.{test}.ingest",
        reindex_queue=f"embedq.test.{test}.reindex",
    )
    jobs.migrate(settings.ledger_url)
    app = make_celery(settings)
    context = WorkerContext.create(settings)
    client = redis.Redis.from_url(redis_url)
    yield Broker(settings, app, client, context, republisher(app, settings, context.sessions))
    for queue in (settings.queue, settings.reindex_queue):  # kombu keeps its bindings beside
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    client.close()
    app.close()
    context.sessions.kw["bind"].dispose()


def batch_of(sessions, kind: jobs.JobKind, *, expired: bool = False) -> str:
    job_id = jobs.create_job(sessions, kind=kind, collection="c", model="m")
    batch_id = jobs.add_batch(sessions, job_id=job_id, documents=[jobs.Document("d", "t")]).id
    if expired:  # published and claimed by a worker that died two minutes ago
        then = datetime.now(timezone.utc) - timedelta(minutes=2)
        with jobs.db.transaction(sessions) as s:
            s.execute(update(Batch).where(Batch.id == batch_id).values(published_at=then))
        claim = jobs.claim_batch(sessions, batch_id=batch_id, worker="gone", now=then)
        assert claim is not None
    return batch_id


def task_and_args(message: dict) -> tuple[str, list]:
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], args


def test_the_reaper_sends_each_expired_batch_to_its_kinds_queue(broker: Broker):
    sessions = broker.context.sessions
    reindexed = batch_of(sessions, jobs.JobKind.reindex, expired=True)
    ingested = batch_of(sessions, jobs.JobKind.ingest, expired=True)
    reaper = broker.reaper()

    assert sorted(t.batch_id for t in reaper.reap_once()) == sorted([reindexed, ingested])

    [on_reindex] = broker.messages(broker.settings.reindex_queue)
    [on_ingest] = broker.messages(broker.settings.queue)
    assert task_and_args(on_reindex) == (REINDEX_BATCH, [reindexed])
    assert task_and_args(on_ingest) == (EMBED_BATCH, [ingested])
    assert on_reindex["headers"]["eta"] is None


def test_the_reaper_rescues_a_released_batch_whose_message_was_lost(broker: Broker):
    sessions = broker.context.sessions
    batch_id = batch_of(sessions, jobs.JobKind.reindex)
    long_ago = datetime.now(timezone.utc) - timedelta(seconds=REPUBLISH_PERIOD_SECONDS + 60)
    assert jobs.claim_batch(sessions, batch_id=batch_id, worker="w", now=long_ago) is not None
    # released after a passing failure; the message meant to bring it back was never sent
    assert jobs.release_batch(sessions, batch_id=batch_id, worker="w", now=long_ago)
    reaper = broker.reaper()

    # missing from the queue in two rounds in a row: its message was lost
    assert reaper.reap_once() == []
    assert [t.batch_id for t in reaper.reap_once()] == [batch_id]
    assert reaper.reap_once() == []  # once a period, not once a round

    [message] = broker.messages(broker.settings.reindex_queue)
    assert task_and_args(message) == (REINDEX_BATCH, [batch_id])


def test_a_retried_reindex_write_waits_its_delay_on_the_reindex_queue(broker: Broker):
    batch_id = batch_of(broker.context.sessions, jobs.JobKind.reindex)
    before = time.time()

    broker.publish_again(batch_id, 30.0)

    assert broker.messages(broker.settings.queue) == []
    [message] = broker.messages(broker.settings.reindex_queue)
    assert task_and_args(message) == (REINDEX_BATCH, [batch_id])
    eta = datetime.fromisoformat(message["headers"]["eta"]).timestamp()
    assert before + 29 <= eta <= time.time() + 31


def test_a_batch_no_longer_in_the_ledger_is_not_published(broker: Broker):
    broker.publish_again(uuid.uuid4().hex, None)

    assert broker.messages(broker.settings.queue) == []
    assert broker.messages(broker.settings.reindex_queue) == []
