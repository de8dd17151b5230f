"""Where batch ids go to be run: Celery over Redis, or this very process.

Both offer ``publish(batch_id)``, ``depth()`` and ``drain()``; producers and
the lease reaper use them without knowing which one they have.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session, sessionmaker

from embedq.outages import BROKER, ride_out
from embedq.settings import Settings
from embedq.store import QdrantStore
from embedq.workers.ingest.writer import BatchWriter, on_writer_thread

if TYPE_CHECKING:
    from embedq.models import ModelSource

logger = logging.getLogger(__name__)

# a cut-off connection fails in seconds instead of hanging on the kernel's timeouts
REDIS_TIMEOUTS = {"socket_timeout": 10, "socket_connect_timeout": 5, "socket_keepalive": True}


class BatchQueue(Protocol):
    def publish(self, batch_id: str) -> None: ...

    def depth(self) -> int: ...

    def drain(self) -> None:
        """Return once every batch this process runs itself has ended (a broker's: at once)."""


class InProcessQueue:
    """Runs each published batch at once, here; splits are run before returning.

    The embedded default: the same pipeline as a worker's, without a broker. With a
    ``writer``, batch writes run in the background and ``drain`` waits for them. A
    batch published from the writer's thread (a re-index's catch-up) is only queued:
    the caller's next ``publish`` or ``drain`` runs it.
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
        if self._running or on_writer_thread():
            return  # picked up by the loop under way, or by the caller's next call
        self._run_pending()

    def depth(self) -> int:
        return len(self._pending)

    def drain(self) -> None:
        while True:
            if self._writer is not None:
                self._writer.drain()
            if not self._pending:
                return
            self._run_pending()

    def _run_pending(self) -> None:
        self._running = True
        try:
            while self._pending:
                self._run(self._pending.popleft(), self.publish)
        finally:
            self._running = False


class CeleryQueue:
    """Sends one Celery task per batch; depth is the Redis list behind the queue.

    Re-index batches go to their own queue and task (rate-limited, served after ingestion).
    """

    def __init__(self, settings: Settings, *, reindex: bool = False) -> None:
        from embedq.workers.celery_app import EMBED_BATCH, REINDEX_BATCH, make_celery

        self._app = make_celery(settings)
        self._queue = settings.reindex_queue if reindex else settings.queue
        self._task = REINDEX_BATCH if reindex else EMBED_BATCH
        self._depth = queue_depth(settings)

    def publish(self, batch_id: str) -> None:
        """Send the batch's message, waiting out a broker that is briefly out of reach."""
        send = functools.partial(
            self._app.send_task, self._task, args=[batch_id], queue=self._queue
        )
        ride_out(send, service=BROKER)

    def depth(self) -> int:
        return ride_out(functools.partial(self._depth, self._queue), service=BROKER)

    def drain(self) -> None:
        pass  # the workers run the batches, on their own time


def queue_depth(settings: Settings) -> Callable[[str], int]:
    """How many messages wait in one of the broker's queues (a Redis list), asked at once:
    a broker out of reach raises, in seconds."""
    import redis

    client = redis.Redis.from_url(str(settings.broker_url), **REDIS_TIMEOUTS)
    return lambda queue: int(client.llen(queue))


def make_queue(
    settings: Settings,
    *,
    sessions: sessionmaker[Session],
    store: QdrantStore,
    models: ModelSource | None = None,
    reindex: bool = False,
) -> BatchQueue:
    """Celery when a broker is configured, else batches run in this process.

    In-process runs share the caller's ledger sessions, Qdrant client and ``models``
    (the process's registry; one is made from ``settings`` if none is given): a
    local-mode Qdrant folder admits one client per process, used from one thread,
    so only writes to a Qdrant server go to a background writer.
    """
    if settings.broker_url:
        return CeleryQueue(settings, reindex=reindex)
    from embedq.models import ModelRegistry
    from embedq.workers.context import WorkerContext
    from embedq.workers.lifecycle import process_batch

    writer = BatchWriter() if settings.qdrant_url is not None else None
    queue = InProcessQueue(
        lambda batch_id, publish: process_batch(context, batch_id, publish=publish), writer
    )
    context = WorkerContext(
        settings=settings,
        sessions=sessions,
        store=store,
        models=models or ModelRegistry(settings.device, settings.memory_budget),
        writer=writer,
        publish_reindex=queue.publish,  # one queue here: re-index batches run in turn
    )
    return queue
