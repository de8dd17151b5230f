"""Keeping a running batch's lease alive while its worker is busy with it.

A thread renews the lease every third of its length. If the process dies, the
renewals stop, the lease runs out, and another worker takes the batch over.
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
                renewed = jobs.renew_lease(
                    self._context.sessions,
                    batch_id=self._batch_id,
                    worker=self._context.worker_id,
                    lease_seconds=seconds,
                )
            except Exception:  # a ledger hiccup must not kill the batch; the next try may work
                logger.warning("could not renew the lease on %s", self._batch_id, exc_info=True)
                continue
            if not renewed:
                # taken over (or ended): finish anyway, the writes are idempotent
                self.lost = True
                logger.warning("lease on batch %s was taken over", self._batch_id)
                return
