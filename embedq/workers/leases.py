"""Keeping a running batch's lease alive while its worker is busy with it.

A thread renews the lease every third of its length. If the process dies, the
renewals stop, the lease runs out, and another worker takes the batch over. A worker
cut off from the ledger for longer than a lease may find, once back, that its batch
was taken over: ``confirm`` before each write makes it drop the batch then instead
of writing over what the new owner (or a later job) wrote.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from embedq import jobs

if TYPE_CHECKING:
    from embedq.workers.context import WorkerContext

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the lease on ``batch_id`` from ``start`` to ``stop`` (or over a ``with`` block)."""

    def __init__(self, context: WorkerContext, batch_id: str) -> None:
        self._context = context
        self._batch_id = batch_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{batch_id}", daemon=True)
        self.lost = False

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def confirm(self) -> None:
        """Renew the lease now, before a write: a full lease from here is this worker's.

        Raises ``LeaseLostError`` when it was taken over (or its job ended), and the
        ledger's own error when the ledger cannot say.
        """
        if not self.lost and self._renew_once():
            return
        self.lost = True
        raise jobs.LeaseLostError(f"the lease on batch {self._batch_id} was taken over")

    def __enter__(self) -> LeaseKeeper:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _renew(self) -> None:
        seconds = self._context.settings.lease_seconds
        while not self._stop.wait(seconds / 3):
            try:
                renewed = self._renew_once()
            except Exception as error:  # a ledger hiccup must not kill the batch; try again
                logger.warning("could not renew the lease on %s: %s", self._batch_id, error)
                continue
            if not renewed:
                # taken over (or ended): confirm() stops the batch before its next write
                self.lost = True
                logger.warning("lease on batch %s was taken over", self._batch_id)
                return

    def _renew_once(self) -> bool:
        return jobs.renew_lease(
            self._context.sessions,
            batch_id=self._batch_id,
            worker=self._context.worker_id,
            lease_seconds=self._context.settings.lease_seconds,
        )
