"""Keeping a running batch's lease alive while its worker is busy with it.

A thread renews the lease every third of its length. If the process dies, the
renewals stop, the lease runs out, and another worker takes the batch over. A worker
cut off from the ledger for longer than a lease may find, once back, that its batch
was taken over: ``confirm`` before each write makes it drop the batch then instead
of writing over what the new owner (or a later job) wrote.

A renewal the ledger refuses (the job was cancelled or ended, or the batch taken
over) sets ``lost``: the running batch reads it after each micro-batch and stops
(see ``cancellation``).

The lease's scope is the batch's: a ``with`` block from the claim stops it on the way
out, however the batch ended, unless the batch was handed over to another thread
(the background writer), whose end of the batch stops it instead. It stops once.
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
        self._stopping = threading.Lock()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{batch_id}", daemon=True)
        self._handed_over = False
        self.lost = False

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the renewals; the first call ends them, any later one has nothing to do."""
        with self._stopping:  # the writer's threads and the caller's may both get here
            if self._stop.is_set():
                return
            self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def hand_over(self) -> None:
        """The batch goes on on another thread, which stops the lease when the batch ends:
        leaving the ``with`` block no longer does."""
        self._handed_over = True

    def confirm(self) -> None:
        """Renew the lease now, before a write: a full lease from here is this worker's.

        Raises ``LeaseLostError`` when it was taken over (or its job ended), and the
        ledger's own error when the ledger cannot say.
        """
        if not self.lost and self._renew_once():
            return
        self.lost = True
        raise jobs.LeaseLostError(
            f"the lease on batch {self._batch_id} was lost (its job ended, or another "
            "worker took the batch over)"
        )

    def __enter__(self) -> LeaseKeeper:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._handed_over:
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
                # cancelled, ended or taken over: the batch stops at its next micro-batch,
                # and confirm() keeps anything of it from being written
                self.lost = True
                logger.warning(
                    "lease on batch %s was lost (its job ended, or another worker took it "
                    "over): stopping it",
                    self._batch_id,
                )
                return

    def _renew_once(self) -> bool:
        return jobs.renew_lease(
            self._context.sessions,
            batch_id=self._batch_id,
            worker=self._context.worker_id,
            lease_seconds=self._context.settings.lease_seconds,
        )
