"""The thin Celery task: decode the batch id, run the pipeline, let Celery retry what is retryable.

The worker context (ledger, Qdrant, loaded models) is built per process after
the fork, in ``worker_process_init``, so the parent never touches CUDA.

With a Qdrant server, a batch's write runs in the background while the next task
embeds (see ``writer``): the task returns, and its message is acknowledged, once
the batch is embedded. The ledger, not the broker, keeps the batch safe from there:
it stays running under a renewed lease until written, and is taken over if the
process dies. A write that fails for a passing reason is queued again after a
lease's length, as Celery's own retry would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.errors import RetryableError
from embedq.jobs import open_ledger
from embedq.settings import Settings
from embedq.workers.celery_app import EMBED_BATCH, REINDEX_BATCH
from embedq.workers.context import WorkerContext
from embedq.workers.ingest.writer import BatchWriter, OnError
from embedq.workers.lifecycle import process_batch
from embedq.workers.queues import queue_depth
from embedq.workers.reaper import Reaper

logger = logging.getLogger(__name__)

RETRY_BACKOFF_MAX_S = 300
MAX_RETRIES = 10

# one per worker process, created after the fork
_process: dict[str, object] = {}


def register_tasks(app: Celery, settings: Settings) -> None:
    retrying = {
        # this app's own tasks: a shared task would keep the first app's settings process-wide
        "shared": False,
        "bind": True,
        "autoretry_for": (RetryableError,),
        "retry_backoff": True,
        "retry_backoff_max": RETRY_BACKOFF_MAX_S,
        "max_retries": MAX_RETRIES,
    }

    def run(batch_id: str, *, queue: str, task_name: str) -> None:
        context = worker_context(app, settings, publish_reindex=publish_reindex)

        def publish(child_id: str) -> None:  # a split's halves go where their parent came from
            app.send_task(task_name, args=[child_id], queue=queue)

        outcome = process_batch(context, str(batch_id), publish=publish)
        if outcome.status != "writing":  # a handed-over batch is logged when its write ends
            logger.info("batch %s: %s (%s)", batch_id, outcome.status, outcome.stages())

    @app.task(name=EMBED_BATCH, **retrying)  # type: ignore[untyped-decorator]
    def embed_batch(task: Task, batch_id: str) -> None:
        run(batch_id, queue=settings.queue, task_name=EMBED_BATCH)

    # re-index batches: their own queue (served after ingestion's) and rate limit
    @app.task(name=REINDEX_BATCH, rate_limit=settings.reindex_rate_limit, **retrying)  # type: ignore[untyped-decorator]
    def reindex_batch(task: Task, batch_id: str) -> None:
        run(batch_id, queue=settings.reindex_queue, task_name=REINDEX_BATCH)

    def publish_reindex(batch_id: str) -> None:
        reindex_batch.apply_async(args=[batch_id], queue=settings.reindex_queue)

    _connect_process_signals(app, settings, publish_reindex=publish_reindex)


Republish = Callable[[str, float | None], None]


def republisher(app: Celery, settings: Settings, sessions: sessionmaker[Session]) -> Republish:
    """``publish_again(batch_id, delay)``, for a retried write or an expired lease.

    The batch goes back to the task and queue of its job's kind: a re-index batch sent
    to ingestion's would jump ahead of ingestion and escape the re-index rate limit.
    """

    def publish_again(batch_id: str, delay: float | None) -> None:
        kind = jobs.batch_job_kind(sessions, batch_id=batch_id)
        if kind is None:
            # its job was deleted: a worker would only fail on it with BatchNotFoundError
            logger.warning("batch %s is no longer in the ledger: not published again", batch_id)
            return
        task, queue = route(settings, jobs.JobKind(kind))
        app.send_task(task, args=[batch_id], queue=queue, countdown=delay)

    return publish_again


def route(settings: Settings, kind: jobs.JobKind) -> tuple[str, str]:
    """The task and queue of a job kind's batches: re-index batches have their own."""
    routes = {jobs.JobKind.reindex: (REINDEX_BATCH, settings.reindex_queue)}
    return routes.get(kind, (EMBED_BATCH, settings.queue))


def write_retrier(settings: Settings, publish_again: Republish) -> OnError:
    """The writer's ``on_error``: a passing failure is queued again after a lease's length."""

    def retry_write(batch_id: str, error: Exception) -> None:
        if not isinstance(error, RetryableError):
            # left running: its lease runs out and the reaper hands it to a worker again
            logger.error("writing batch %s failed", batch_id, exc_info=error)
            return
        delay = settings.lease_seconds
        logger.warning("writing batch %s failed (%s): queued in %.0f s", batch_id, error, delay)
        try:
            publish_again(batch_id, delay)
        except Exception as lost:  # the ledger keeps it queued: a reaper publishes it later
            logger.warning("batch %s was not queued again (%s): left to a reaper", batch_id, lost)

    return retry_write


def _connect_process_signals(
    app: Celery, settings: Settings, *, publish_reindex: Callable[[str], object]
) -> None:
    """Per worker process, after the fork: the context, whole, and the reaper; at exit, stop."""

    @worker_process_init.connect(weak=False)  # type: ignore[untyped-decorator]
    def _start(**_: object) -> None:
        context = worker_context(app, settings, publish_reindex=publish_reindex)
        publish_again = republisher(app, settings, context.sessions)
        reaper = Reaper(
            context,
            publish=lambda batch_id: publish_again(batch_id, None),
            depth=queue_depth(settings),
        )
        reaper.start()
        _process["reaper"] = reaper

    @worker_process_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
    def _stop(**_: object) -> None:
        reaper = _process.pop("reaper", None)
        if isinstance(reaper, Reaper):
            reaper.stop()
        context = _process.get("context")
        if isinstance(context, WorkerContext) and context.writer is not None:
            context.writer.close()


def worker_context(
    app: Celery, settings: Settings, *, publish_reindex: Callable[[str], object]
) -> WorkerContext:
    """This process's context, built whole on first use (in ``worker_process_init``)."""
    context = _process.get("context")
    if not isinstance(context, WorkerContext):
        context = build_context(app, settings, publish_reindex=publish_reindex)
        _process["context"] = context
        # the id its leases carry in the ledger, so a batch's owner can be told from the logs
        logger.info(
            "worker %s is ready: models on %s under a budget of %s",
            context.worker_id,
            settings.device or "the default device",
            settings.memory_budget or "the default",
        )
    return context


def build_context(
    app: Celery, settings: Settings, *, publish_reindex: Callable[[str], object]
) -> WorkerContext:
    """A worker process's context: with a Qdrant server, a background writer whose failed
    writes are queued again; re-index catch-up batches go to their own queue."""
    sessions = open_ledger(settings.ledger_url)  # refuses an unmigrated ledger, clearly
    writer = None
    if settings.qdrant_url is not None:  # a local folder's client keeps to one thread
        publish_again = republisher(app, settings, sessions)
        writer = BatchWriter(on_error=write_retrier(settings, publish_again))
    return WorkerContext.create(
        settings, sessions=sessions, writer=writer, publish_reindex=publish_reindex
    )
