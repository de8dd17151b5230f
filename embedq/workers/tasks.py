"""The thin Celery task: decode the batch id, run the pipeline, let Celery retry what is retryable.

The worker context (ledger, Qdrant, loaded models) is built per process after
the fork, in ``worker_process_init``, so the parent never touches CUDA.
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
        stages = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in outcome.timings.items())
        logger.info("batch %s: %s (%s)", batch_id, outcome.status, stages)

    @worker_process_init.connect(weak=False)
    def _start(**_: object) -> None:
        context = worker_context(settings)
        reaper = Reaper(context, publish=lambda b: embed_batch.apply_async(args=[b]))
        reaper.start()
        _process["reaper"] = reaper

    @worker_process_shutdown.connect(weak=False)
    def _stop(**_: object) -> None:
        reaper = _process.pop("reaper", None)
        if isinstance(reaper, Reaper):
            reaper.stop()


def worker_context(settings: Settings) -> WorkerContext:
    context = _process.get("context")
    if not isinstance(context, WorkerContext):
        context = WorkerContext.create(settings)
        _process["context"] = context
    return context
