"""What a batch does when its work cannot finish as it is, by the kind of error.

- a passing failure (``RetryableError``: Qdrant, the ledger): the batch is handed back
  to the queue, so a retry need not wait out the lease, and the error goes on up;
- out of memory: the batch is replaced by two halves (a single document fails);
- a permanent error: the batch fails, with the error as its reason;
- a lost lease (cancelled, ended, taken over): the batch is dropped, nothing written.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

from embedq import jobs
from embedq.errors import PermanentError, RetryableError
from embedq.workers.outcomes import BatchEnd, BatchOutcome
from embedq.workers.running import BatchRun

logger = logging.getLogger(__name__)

Publish = Callable[[str], None]
Done = TypeVar("Done")


def run_or_split(
    run: BatchRun, stage: str, work: Callable[[BatchRun], Done], *, publish: Publish
) -> Done | BatchEnd:
    """What ``work`` makes of the batch, or how the batch ended when it could not finish."""
    try:
        with released_on_retryable(run), run.clock.stage(stage):
            return work(run)
    except (torch.OutOfMemoryError, MemoryError):
        pass  # split below, outside the except block, so the failed pass's memory is released
    except PermanentError as error:  # the same batch would fail the same way on any worker
        return failed(run, error)
    except jobs.LeaseLostError as error:
        return dropped(run, error)
    return split_or_fail(run, publish=publish)


@contextlib.contextmanager
def released_on_retryable(run: BatchRun, *, retry_in: float = 0.0) -> Iterator[None]:
    """Hand the batch back on a passing failure, so a retry need not wait out the lease;
    ``retry_in``: when the retry's message is due."""
    try:
        yield
    except RetryableError:
        context = run.context
        jobs.release_batch(
            context.sessions, batch_id=run.batch_id, worker=context.worker_id, retry_in=retry_in
        )
        raise


def split_or_fail(run: BatchRun, *, publish: Publish) -> BatchEnd:
    """Replace a batch that ran out of memory by two halves, or fail a single document."""
    documents, sessions = run.claim.documents, run.context.sessions
    if len(documents) == 1:
        reason = "out of memory even as a batch of one document"
        jobs.fail_batch(sessions, batch_id=run.batch_id, error=reason)
        return BatchEnd(run.outcome("failed", documents_failed=1))
    middle = len(documents) // 2
    halves = (documents[:middle], documents[middle:])
    children = jobs.split_batch(sessions, batch_id=run.batch_id, halves=halves)
    for child in children:
        publish(child.id)
    logger.warning("batch %s ran out of memory: split into %d", run.batch_id, len(children))
    ids = [child.id for child in children]
    return BatchEnd(BatchOutcome("split", children=ids, timings=run.clock.seconds))


def failed(run: BatchRun, error: PermanentError) -> BatchEnd:
    logger.error("batch %s failed: %s", run.batch_id, error)
    jobs.fail_batch(run.context.sessions, batch_id=run.batch_id, error=str(error))
    return BatchEnd(run.outcome("failed", documents_failed=len(run.claim.documents)))


def dropped(run: BatchRun, error: jobs.LeaseLostError) -> BatchEnd:
    logger.warning("batch %s dropped, nothing written: %s", run.batch_id, error)
    return BatchEnd(run.outcome("skipped"))
