"""The handler of ingestion and re-index batches: embed the documents, then write their points.

With a ``context.writer`` the write is handed over once the batch is embedded (status
``writing``): the upsert runs on the writer's thread, the ledger's completion behind it
on another, and the batch's lease goes with them, stopped when the write ends. Without
one, the batch ends here.
"""

from __future__ import annotations

import functools

from embedq.workers.ingest.embedding import BatchSummary, embed_claim
from embedq.workers.ingest.storing import Written, complete_written, write_points
from embedq.workers.ingest.writer import BatchWriter
from embedq.workers.outcomes import BatchEnd, BatchOutcome
from embedq.workers.recovery import Publish, run_or_split
from embedq.workers.running import BatchRun


def embed_and_write(run: BatchRun, *, publish: Publish) -> BatchEnd:
    """Embed the batch (or split or fail it), then write it, here or in the background."""
    embedded = run_or_split(run, "embed", embed_claim, publish=publish)
    if isinstance(embedded, BatchEnd):  # split, failed or dropped: nothing to write
        return embedded
    writer = run.context.writer
    if writer is None:
        return complete_written(run, write_points(run, embedded))
    return hand_over(run, embedded, writer)


def hand_over(run: BatchRun, summary: BatchSummary, writer: BatchWriter) -> BatchEnd:
    """Queue the batch's write on the background writer, its lease with it."""
    run.lease.hand_over()
    write = functools.partial(_write, run, summary)
    writer.submit(run.batch_id, write, then=functools.partial(_complete, run))
    done, failures = summary.documents_done, len(summary.failures)
    outcome = run.outcome("writing", documents_done=done, documents_failed=failures)
    return BatchEnd(outcome, handed_over=True)


def _write(run: BatchRun, summary: BatchSummary) -> Written:
    """On the writer's thread; a write that raises ends the batch's run there."""
    try:
        return write_points(run, summary)
    except BaseException:
        run.lease.stop()  # handed back (a passing failure) or left to run out: not ours any more
        raise


def _complete(run: BatchRun, written: Written) -> BatchOutcome:
    """On the writer's second thread, once the write ended: the batch's end."""
    try:
        end = complete_written(run, written)
    finally:
        run.lease.stop()
    return run.conclude(end)
