"""Where batch ids go to be run: Celery over Redis, or this very process.

Both offer ``publish(batch_id)`` and ``depth()``; producers and the lease
reaper use them without knowing which one they have.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from embedq.settings import Settings
from embedq.workers.qdrant_store import QdrantStore

logger = logging.getLogger(__name__)


class BatchQueue(Protocol):
    def publish(self, batch_id: str) -> None: ...

    def depth(self) -> int: ...


class InProcessQueue:
    """Runs each published batch at once, here; splits are run before returning.

    The embedded default: the same pipeline as a worker's, without a broker.
    """

    def __init__(self, run: Callable[[str, Callable[[str], None]], object]) -> None:
        self._run = run
        self._pending: deque[str] = deque()
        self._running = False

    def publish(self, batch_id: str) -> None:
        self._pending.append(batch_id)
        if self._running:  # a split published from inside a run: picked up by the loop below
            return
        self._running = True
        try:
            while self._pending:
                self._run(self._pending.popleft(), self.publish)
        finally:
            self._running = False

    def depth(self) -> int:
        return len(self._pending)


class CeleryQueue:
    """Sends one Celery task per batch; depth is the Redis list behind the queue."""

    def __init__(self, settings: Settings) -> None:
        import redis

        from embedq.workers.celery_app import make_celery

        self._app = make_celery(settings)
        self._queue = settings.queue
        self._redis = redis.Redis.from_url(str(settings.broker_url))

    def publish(self, batch_id: str) -> None:
        from embedq.workers.celery_app import EMBED_BATCH

        self._app.send_task(EMBED_BATCH, args=[batch_id], queue=self._queue)

    def depth(self) -> int:
        return int(self._redis.llen(self._queue))


def make_queue(
    settings: Settings, *, sessions: sessionmaker[Session], store: QdrantStore
) -> BatchQueue:
    """Celery when a broker is configured, else batches run in this process.

    In-process runs share the caller's ledger sessions and Qdrant client: a
    local-mode Qdrant folder admits one client per process.
    """
    if settings.broker_url:
        return CeleryQueue(settings)
    from embedq.workers.context import WorkerContext
    from embedq.workers.pipeline import process_batch

    context = WorkerContext(settings=settings, sessions=sessions, store=store)
    return InProcessQueue(
        lambda batch_id, publish: process_batch(context, batch_id, publish=publish)
    )
