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

from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown

from embedq.errors import RetryableError
from embedq.settings import Settings
from embedq.workers.context import WorkerContext
from embedq.workers.pipeline import process_batch
from embedq.workers.reaper import Reaper
from embedq.workers.writer import BatchWriter

logger = logging.getLogger(__name__)

RETRY_BACKOFF_MAX_S = 300
MAX_RETRIES = 10

# one per worker process, created after the fork
_process: dict[str, object] = {}


def register_tasks(app: Celery, settings: Settings) -> None:
    @app.task(
        name="embedq.embed_batch",
        bind=True,
        autoretry_for=(RetryableError,),
        retry_backoff=True,
        retry_backoff_max=RETRY_BACKOFF_MAX_S,
        max_retries=MAX_RETRIES,
    )
    def embed_batch(task: Task, batch_id: str) -> None:
        context = worker_context(settings)

        def publish(child_id: str) -> None:
            task.app.send_task("embedq.embed_batch", args=[child_id], queue=settings.queue)

        outcome = process_batch(context, str(batch_id), publish=publish)
        if outcome.status != "writing":  # a handed-over batch is logged when its write ends
            logger.info("batch %s: %s (%s)", batch_id, outcome.status, outcome.stages())

    def retry_write(batch_id: str, error: Exception) -> None:
        if not isinstance(error, RetryableError):
            # left running: its lease runs out and the reaper hands it to a worker again
            logger.error("writing batch %s failed", batch_id, exc_info=error)
            return
        delay = settings.lease_seconds
        logger.warning("writing batch %s failed (%s): queued in %.0f s", batch_id, error, delay)
        embed_batch.apply_async(args=[batch_id], countdown=delay)

    @worker_process_init.connect(weak=False)
    def _start(**_: object) -> None:
        context = worker_context(settings)
        if settings.qdrant_url is not None:  # a local folder's client keeps to one thread
            context.writer = BatchWriter(on_error=retry_write)
        reaper = Reaper(context, publish=lambda b: embed_batch.apply_async(args=[b]))
        reaper.start()
        _process["reaper"] = reaper

    @worker_process_shutdown.connect(weak=False)
    def _stop(**_: object) -> None:
        reaper = _process.pop("reaper", None)
        if isinstance(reaper, Reaper):
            reaper.stop()
        context = _process.get("context")
        if isinstance(context, WorkerContext) and context.writer is not None:
            context.writer.close()


def worker_context(settings: Settings) -> WorkerContext:
    context = _process.get("context")
    if not isinstance(context, WorkerContext):
        context = WorkerContext.create(settings)
        _process["context"] = context
    return context
