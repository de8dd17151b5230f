"""Where batch ids go to be run: Celery over Redis, or this very process.

Both offer ``publish(batch_id)``, ``depth()`` and ``drain()``; producers and
the lease reaper use them without knowing which one they have.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from embedq.settings import Settings
from embedq.workers.qdrant_store import QdrantStore
from embedq.workers.writer import BatchWriter

logger = logging.getLogger(__name__)


class BatchQueue(Protocol):
    def publish(self, batch_id: str) -> None: ...

    def depth(self) -> int: ...

    def drain(self) -> None:
        """Return once every batch this process runs itself has ended (a broker's: at once)."""


class InProcessQueue:
    """Runs each published batch at once, here; splits are run before returning.

    The embedded default: the same pipeline as a worker's, without a broker. With a
    ``writer``, batch writes run in the background and ``drain`` waits for them.
    """

    def __init__(
        self,
        run: Callable[[str, Callable[[str], None]], object],
        writer: BatchWriter | None = None,
    ) -> None:
        self._run = run
        self._writer = writer
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

    def drain(self) -> None:
        if self._writer is not None:
            self._writer.drain()


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

    def drain(self) -> None:
        pass  # the workers run the batches, on their own time


def make_queue(
    settings: Settings, *, sessions: sessionmaker[Session], store: QdrantStore
) -> BatchQueue:
    """Celery when a broker is configured, else batches run in this process.

    In-process runs share the caller's ledger sessions and Qdrant client: a
    local-mode Qdrant folder admits one client per process, used from one thread,
    so only writes to a Qdrant server go to a background writer.
    """
    if settings.broker_url:
        return CeleryQueue(settings)
    from embedq.workers.context import WorkerContext
    from embedq.workers.pipeline import process_batch

    writer = BatchWriter() if settings.qdrant_url is not None else None
    context = WorkerContext(settings=settings, sessions=sessions, store=store, writer=writer)
    return InProcessQueue(
        lambda batch_id, publish: process_batch(context, batch_id, publish=publish), writer
    )
