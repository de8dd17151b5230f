"""The handlers of batches that remove documents and embed nothing: a delete job's batch of
ids, and a sync's sweep of what its input no longer holds.

The lease is confirmed first: a late removal could take away what a later job wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from embedq import jobs
from embedq.errors import PermanentError
from embedq.store import documents as stored
from embedq.workers.ingest.target import physical_collection
from embedq.workers.outcomes import BatchEnd
from embedq.workers.recovery import Publish, dropped, failed, released_on_retryable
from embedq.workers.running import BatchRun

logger = logging.getLogger(__name__)

# removes what the batch says and completes it: how many documents went, and the completion
Removal = Callable[[BatchRun], tuple[int, jobs.Completion]]


def delete_ids(run: BatchRun, *, publish: Publish) -> BatchEnd:
    """A delete job's batch: remove the documents it names."""
    return _remove(run, _delete_and_complete)


def sweep_absent(run: BatchRun, *, publish: Publish) -> BatchEnd:
    """A sync's sweep: remove the collection's documents its input did not hold."""
    return _remove(run, _sweep_and_complete)


def _remove(run: BatchRun, removal: Removal) -> BatchEnd:
    try:
        with released_on_retryable(run), run.clock.stage("remove"):
            run.lease.confirm()
            deleted, completion = removal(run)
    except PermanentError as error:
        return failed(run, error)
    except jobs.LeaseLostError as error:
        return dropped(run, error)
    outcome = run.outcome("succeeded", documents_done=deleted)
    logger.info("batch %s: %d documents deleted (%s)", run.batch_id, deleted, outcome.stages())
    return BatchEnd(outcome, completion)


def _delete_and_complete(run: BatchRun) -> tuple[int, jobs.Completion]:
    ids, deleted = delete_claim(run)
    completion = jobs.complete_batch(
        run.context.sessions, batch_id=run.batch_id, documents_done=ids, documents_deleted=deleted
    )
    return deleted, completion


def _sweep_and_complete(run: BatchRun) -> tuple[int, jobs.Completion]:
    deleted, refusal = sweep(run)
    completion = jobs.complete_sweep(
        run.context.sessions, batch_id=run.batch_id, deleted=deleted, refusal=refusal
    )
    return deleted, completion


def delete_claim(run: BatchRun) -> tuple[int, int]:
    """Remove the batch's documents; how many ids it held, and how many were stored."""
    client, physical = run.context.store.client, physical_collection(run.claim)
    ids = [document.id for document in run.claim.documents_as(jobs.DocumentId)]
    present = stored.stored_hashes(client, physical, ids)
    stored.delete_documents(client, physical, ids)
    return len(ids), len(present)


def sweep(run: BatchRun) -> tuple[int, str | None]:
    """Remove what a sync's input did not hold; how many documents, or why none."""
    context, claim = run.context, run.claim
    client, physical = context.store.client, physical_collection(claim)
    unreadable = jobs.unidentified_intake_failures(context.sessions, job_id=claim.job_id)
    if unreadable:
        return 0, (
            f"the sync deleted nothing: {unreadable:,} line(s) of its input could not be read, "
            "and any of them may have been a document the collection holds"
        )
    doomed = stored.not_in_sync(claim.job_id)
    count = stored.count_documents(client, physical, doomed)
    total = stored.count_documents(client, physical)
    limit = claim.options_as(jobs.IngestOptions).max_delete_share
    if count and count > limit * total:
        return 0, (
            f"the sync deleted nothing: it would delete {count:,} of the collection's "
            f"{total:,} documents ({count / total:.0%}), more than the {limit:.0%} allowed; "
            "run it again with --force to delete them"
        )
    if count:
        stored.delete_where(client, physical, doomed, f"sweep {count} documents")
    return count, None
