"""Re-publishing batches whose worker died, so they are taken over within a minute.

Every worker process runs one reaper thread. A batch whose lease ran out is
published again, and so is a released batch no worker took again in time (the
message meant to re-queue it was lost); whichever worker claims it first runs it
(claims are guarded in the ledger, so several reapers publishing the same batch is
harmless).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from embedq import jobs
from embedq.workers.context import WorkerContext

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
        return expired + stranded

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.reap_once()
            except Exception:  # the ledger may be briefly unreachable; try again next round
                logger.warning("reaper round failed", exc_info=True)
