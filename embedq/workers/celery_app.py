"""The Celery application: JSON only, late acks, one task at a time, no result backend.

Postgres owns status, so no result backend is configured. The visibility
timeout is longer than the task time limit so Redis never redelivers a task
that is still running; a dead worker's batch is recovered sooner through its
lease in the ledger, and a lost message through the ledger's record of what was
published (see ``workers/reaper.py``).
"""

from __future__ import annotations

from celery import Celery

from embedq.settings import Settings
from embedq.workers.broker import TRANSPORT

EMBED_BATCH = "embedq.embed_batch"
REINDEX_BATCH = "embedq.reindex_batch"


def make_celery(settings: Settings) -> Celery:
    app = Celery("embedq", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        # Redis, without restoring unacknowledged messages on a lost connection (see broker)
        broker_transport=TRANSPORT,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        broker_transport_options={
            "visibility_timeout": settings.task_time_limit * 2,
            # queues in the order a worker names them: ingestion first, re-indexing after
            "queue_order_strategy": "priority",
            # a broker that vanished (host cut off, not closed) is noticed in seconds
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 10,
        },
        task_default_queue=settings.queue,
        broker_connection_retry_on_startup=True,
        # a worker waits for a lost broker as long as it takes, instead of exiting after
        # 100 tries; the ledger keeps its batches meanwhile (see jobs.publishing)
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
    )
    from embedq.workers.tasks import register_tasks

    register_tasks(app, settings)
    return app
