"""Re-publishing batches whose worker died, so they are taken over within a minute, and
ending jobs whose producer walked away.

Every worker process runs one reaper thread. A batch whose lease ran out is
published again, and so is a released batch no worker took again in time (the
message meant to re-queue it was lost); whichever worker claims it first runs it
(claims are guarded in the ledger, so several reapers publishing the same batch is
harmless). An open job nothing was added to for ``abandon_after_seconds`` and never
sealed (its producer was killed, or lost the API) is ended with what it got.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.workers.context import WorkerContext
from embedq.workers.qdrant_store import QdrantStore
from embedq.workers.reindex import ingestion_ended

logger = logging.getLogger(__name__)

# With leases of 30 s renewed every 10 s, a dead worker's batch is published again
# at most lease + interval = 40 s after its last renewal.
REAP_INTERVAL_S = 10.0


class Reaper:
    def __init__(
        self,
        context: WorkerContext,
        *,
        publish: Callable[[str], object],
        interval: float = REAP_INTERVAL_S,
    ) -> None:
        self._context = context
        self._publish = publish
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="embedq-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def reap_once(self) -> list[str]:
        sessions = self._context.sessions
        expired = jobs.expired_batches(sessions)
        for batch_id in expired:
            logger.warning("lease on batch %s expired: publishing it again", batch_id)
            self._publish(batch_id)
        stranded = jobs.take_stranded_batches(sessions)
        for batch_id in stranded:
            logger.warning("released batch %s was not taken again: publishing it again", batch_id)
            self._publish(batch_id)
        context = self._context
        idle = context.settings.abandon_after_seconds
        end_abandoned(sessions, context.store, self._publish, idle_seconds=idle)
        return expired + stranded

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.reap_once()
            except Exception:  # the ledger may be briefly unreachable; try again next round
                logger.warning("reaper round failed", exc_info=True)


def end_abandoned(
    sessions: sessionmaker[Session],
    store: QdrantStore,
    publish: Callable[[str], object],
    *,
    idle_seconds: float,
) -> list[str]:
    """End the jobs abandoned by their producers; returns their ids.

    One that ends at once (no batch of it is open) gets what the end of its last batch
    would have given it: its collection's index back, and a re-index of that collection
    waiting for it may go on.
    """
    abandoned = jobs.end_abandoned_jobs(sessions, idle_seconds=idle_seconds)
    for job_id in abandoned:
        logger.warning("job %s was abandoned by its producer: ended with what it got", job_id)
        try:
            _wind_up(sessions, store, publish, job_id=job_id)
        except Exception:  # the job has ended regardless; only its index stays deferred
            logger.warning("could not wind up abandoned job %s", job_id, exc_info=True)
    return abandoned


def _wind_up(
    sessions: sessionmaker[Session],
    store: QdrantStore,
    publish: Callable[[str], object],
    *,
    job_id: str,
) -> None:
    view = jobs.get_job(sessions, job_id=job_id)
    if view is None or not view.ended or view.kind != jobs.JobKind.ingest:
        return  # its last batch's end does this (see pipeline.after_batch)
    physical = str(view.options.get("physical_collection", view.collection))
    ingestion_ended(sessions, store, publish, physical=physical, collection=view.collection)
