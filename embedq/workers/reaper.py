"""Publishing again the batches whose message was lost, taking over those whose worker
died, and ending jobs whose producer walked away.

Every worker process runs one reaper thread; each round, one of them (whichever takes
the ledger's turn first) asks the ledger which batches need a message (see
``jobs.publishing``): a batch whose lease ran out, one overtaken by later batches, one
the broker's queue has no room for (the broker restarted empty, a retry died with its
worker), one never published. Each is published once a period across all workers; a
duplicate message is harmless anyway, since claims are guarded in the ledger. An open
job nothing was added to for ``abandon_after_seconds`` and never sealed (its producer
was killed, or lost the API) is ended with what it got.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.outages import BROKER, LEDGER, Outage
from embedq.store import QdrantStore
from embedq.workers.context import WorkerContext
from embedq.workers.reindex.finishing import ingestion_ended

logger = logging.getLogger(__name__)

# With leases of 30 s renewed every 10 s, a dead worker's batch is published again
# at most lease + interval = 40 s after its last renewal.
REAP_INTERVAL_S = 10.0

# the job kinds that share the ingestion queue; re-index batches have a queue of their own
REINDEX_LANE = frozenset({jobs.JobKind.reindex})
INGEST_LANE = frozenset(jobs.JobKind) - REINDEX_LANE

# the kinds of job an abandoned one is wound up for: an ingestion deferred its index
WOUND_UP = frozenset({jobs.JobKind.ingest})


class Reaper:
    def __init__(
        self,
        context: WorkerContext,
        *,
        publish: Callable[[str], object],
        depth: Callable[[str], int] | None = None,
        interval: float = REAP_INTERVAL_S,
    ) -> None:
        self._context = context
        self._publish = publish
        self._depth = depth
        self._interval = interval
        self._ledger = Outage(LEDGER, logger)
        self._broker = Outage(BROKER, logger)
        # beyond the queue's depth last round: published if still so this round
        self._suspects: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="embedq-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def reap_once(self) -> list[jobs.Republish]:
        """One round: publish what needs a message, end abandoned jobs; what was published."""
        context = self._context
        settings = context.settings
        lanes = [
            jobs.Lane(INGEST_LANE, self._queue_depth(settings.queue)),
            jobs.Lane(REINDEX_LANE, self._queue_depth(settings.reindex_queue)),
        ]
        judged = jobs.take_batches_to_publish(
            context.sessions, lanes=lanes, suspects=self._suspects
        )
        self._suspects = judged.suspects
        due = judged.publish
        for item in due:
            log = logger.warning if item.lost else logger.info
            log("batch %s: %s: publishing it", item.batch_id, item.reason)
            self._publish(item.batch_id)
        idle = settings.abandon_after_seconds
        end_abandoned(context.sessions, context.store, self._publish, idle_seconds=idle)
        return due

    def _queue_depth(self, queue: str) -> int | None:
        """Messages waiting in ``queue``; None when the broker cannot say right now."""
        if self._depth is None:
            return None
        try:
            depth = self._depth(queue)
        except Exception as error:
            self._broker.failed(error)
            return None
        self._broker.succeeded()
        return depth

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.reap_once()
            except jobs.LedgerUnavailableError as error:
                self._ledger.failed(error)  # logged once; the next round tries again
            except Exception:  # a broker that fails mid-round: what was judged waits a period
                logger.warning("reaper round failed", exc_info=True)
            else:
                self._ledger.succeeded()


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
    if view is None or not view.ended or view.kind not in WOUND_UP:
        return  # its last batch's end does this (see hooks.ingestion_end)
    assert isinstance(view.options, jobs.IngestOptions)
    physical = view.options.physical_collection
    ingestion_ended(sessions, store, publish, physical=physical, collection=view.collection)
