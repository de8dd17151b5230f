"""Writing an embedded batch's points to Qdrant, then completing the batch in the ledger.

The batch is completed only after its points are in Qdrant, and point ids are
deterministic, so running a batch twice (a redelivered task, a lease taken over)
overwrites instead of duplicating, and the ledger counts it once. The lease is
confirmed just before the write: a batch taken over (or cancelled) meanwhile writes
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from embedq import jobs
from embedq.errors import PermanentError, RetryableError
from embedq.faults import fault_point
from embedq.store import PointData, UpsertReport
from embedq.store import documents as stored
from embedq.workers.context import WorkerContext
from embedq.workers.ingest.embedding import BatchSummary
from embedq.workers.ingest.target import physical_collection
from embedq.workers.outcomes import BatchEnd, BatchOutcome
from embedq.workers.recovery import dropped, failed, released_on_retryable
from embedq.workers.running import BatchRun

logger = logging.getLogger(__name__)

# what a write comes to: the summary of what landed, the error that fails the batch, or
# the news that the batch is not this worker's any more
Written = BatchSummary | PermanentError | jobs.LeaseLostError


def write_points(run: BatchRun, summary: BatchSummary) -> Written:
    """Write the batch's points, then remove what is left of its documents' earlier versions."""
    context = run.context
    # a failed background write is published again a lease from now (see tasks.write_retrier)
    retry_in = context.settings.lease_seconds if context.writer is not None else 0.0
    try:
        with released_on_retryable(run, retry_in=retry_in):
            run.lease.confirm()  # taken over while this worker was cut off: write nothing
            with run.clock.stage("upsert"):
                report = upsert(context, physical_collection(run.claim), summary.points)
            with run.clock.stage("clean-up"):
                landed = without_refused(summary, report.refused)
                clean_up(run, landed, refused=report.refused)
    except (PermanentError, jobs.LeaseLostError) as error:
        return error
    return landed


def complete_written(run: BatchRun, written: Written) -> BatchEnd:
    """Mark the written batch done (or failed, with an error), or drop one not ours any more."""
    if isinstance(written, jobs.LeaseLostError):
        return dropped(run, written)
    if isinstance(written, PermanentError):
        outcome, completion = failed(run, written).outcome, None
    else:
        outcome, completion = _complete(run, written)
    logger.info("batch %s: %s (%s)", run.batch_id, outcome.status, outcome.stages())
    return BatchEnd(outcome, completion, written=True)


def _complete(run: BatchRun, summary: BatchSummary) -> tuple[BatchOutcome, jobs.Completion]:
    with run.clock.stage("complete"):
        completion = jobs.complete_batch(
            run.context.sessions,
            batch_id=run.batch_id,
            documents_done=summary.documents_done,
            chunks_done=summary.chunks_done,
            tokens_done=summary.tokens_done,
            failures=summary.failures,
        )
    done, failures = summary.documents_done, len(summary.failures)
    return run.outcome("succeeded", documents_done=done, documents_failed=failures), completion


def upsert(context: WorkerContext, physical: str, points: Sequence[PointData]) -> UpsertReport:
    """The store's upsert, with what it says of Qdrant told to the worker's Qdrant gate."""
    try:
        report = context.store.upsert(physical, points)
    except RetryableError as error:
        context.qdrant_gate.failed(error)
        raise
    context.qdrant_gate.succeeded()
    return report


def clean_up(run: BatchRun, landed: BatchSummary, *, refused: Mapping[str, str]) -> None:
    """Each written document holds its new chunks and nothing else; a refused one, nothing.

    A refused document's other chunks may have landed, beside an earlier version's:
    half of one version and half of another would be neither, so all of it goes.
    """
    client, physical = run.context.store.client, physical_collection(run.claim)
    fault_point("after-upsert")
    stored.remove_stale(client, physical, chunks_per_document(landed.points))
    stored.delete_documents(client, physical, list(refused))


def chunks_per_document(points: Sequence[PointData]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for point in points:
        counts[point.doc_id] = max(counts.get(point.doc_id, 0), point.chunk + 1)
    return counts


def without_refused(summary: BatchSummary, refused: Mapping[str, str]) -> BatchSummary:
    """The summary with each document Qdrant refused moved from done to failed."""
    if not refused:
        return summary
    points = [point for point in summary.points if point.doc_id not in refused]
    lost = [point for point in summary.points if point.doc_id in refused]
    failures = [jobs.Failure(doc_id=doc_id, reason=reason) for doc_id, reason in refused.items()]
    return BatchSummary(
        points,
        summary.documents_done - len(refused),
        summary.chunks_done - len(lost),
        summary.tokens_done,  # embedded all the same
        [*summary.failures, *failures],
    )
