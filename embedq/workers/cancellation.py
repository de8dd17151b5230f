"""Stopping a running batch once its lease is lost: a cancelled job's batch stops embedding.

The lease's renewal thread sets ``LeaseKeeper.lost`` when the ledger refuses a renewal:
the job was cancelled or ended, or the batch was taken over. The models call
``on_progress(done, total)`` after every micro-batch, and what it raises propagates out
of ``embed`` or ``score_each``; the callback made here raises ``BatchCancelledError``
there, so the batch stops within a micro-batch of that renewal and is dropped with
nothing written (a ``LeaseLostError``, which every handler already drops on).
"""

from __future__ import annotations

from embedq import jobs
from embedq.faults import slow_point
from embedq.models.runtime import ProgressCallback
from embedq.workers.leases import LeaseKeeper

# EMBEDQ_SLOW_AT=micro-batch makes every micro-batch slow (embedq.faults): the tests
# cancel a job while its batch is surely mid-way, however fast the machine
MICRO_BATCH = "micro-batch"


class BatchCancelledError(jobs.LeaseLostError):
    """The batch's lease was lost while it ran: its work stops, and nothing of it is written."""


def stop_when_lost(lease: LeaseKeeper, batch_id: str) -> ProgressCallback:
    """A model's ``on_progress`` that stops the work once ``lease`` is lost."""

    def on_progress(done: int, total: int) -> None:
        slow_point(MICRO_BATCH)
        if lease.lost:
            raise BatchCancelledError(
                f"the lease on batch {batch_id} was lost (its job was cancelled or ended, or "
                f"another worker took the batch over): stopped after {done} of {total} inputs"
            )

    return on_progress
