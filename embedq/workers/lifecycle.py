"""One batch's life: gate, claim, run under a lease by its kind's handler, end, hooks.

Plain code with no Celery in it: the Celery task and the in-process queue both call
:func:`process_batch`. The lease starts with the claim and stops once, whichever way
the batch ends: here, or on the background writer's thread when its write was handed
over. Hooks after a batch hear of each end the ledger recorded, once the lease stopped.
"""

from __future__ import annotations

import logging

from embedq import jobs
from embedq.workers.context import WorkerContext
from embedq.workers.handlers import handler_for
from embedq.workers.leases import LeaseKeeper
from embedq.workers.outcomes import BatchOutcome
from embedq.workers.recovery import Publish
from embedq.workers.running import BatchRun, StageClock

logger = logging.getLogger(__name__)


def process_batch(context: WorkerContext, batch_id: str, *, publish: Publish) -> BatchOutcome:
    """Run one batch if it is ours to run; ``publish`` queues the halves of one split in two.

    With a ``context.writer`` the batch is handed over once embedded (status
    ``writing``) and its write runs in the background; without one it ends here.
    """
    clock = StageClock()
    claim = claim_if_ours(context, batch_id, clock)
    if claim is None:
        logger.info("batch %s is not ours to run (done, cancelled or leased)", batch_id)
        return BatchOutcome("skipped", timings=clock.seconds)
    handler = handler_for(claim)
    # the lease stops on the way out of the block, however the batch ends, unless handed over
    with LeaseKeeper(context, claim.batch_id) as lease:
        run = BatchRun(context, claim, clock, lease)
        end = handler(run, publish=publish)
    if end.handed_over:  # the writer's thread ends it
        return end.outcome
    return run.conclude(end)


def claim_if_ours(context: WorkerContext, batch_id: str, clock: StageClock) -> jobs.Claim | None:
    """The batch under a new lease, or None when it is not ours to run."""
    with clock.stage("claim"):
        context.qdrant_gate.wait()  # Qdrant is away: embedding now would be for nothing
        return jobs.claim_batch(
            context.sessions,
            batch_id=batch_id,
            worker=context.worker_id,
            lease_seconds=context.settings.lease_seconds,
        )
