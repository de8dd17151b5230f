"""After a batch that ended its job's load of a collection (an ingestion, a sync, a delete):
the collection's index, deferred while it loaded, is built again, and a re-index of the
collection waiting for the load may go on (``reindex.finishing.ingestion_ended``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from embedq import jobs
from embedq.workers.ingest.target import physical_collection
from embedq.workers.reindex.finishing import ingestion_ended

if TYPE_CHECKING:
    from embedq.workers.outcomes import BatchEnd
    from embedq.workers.running import BatchRun

# the kinds of job that write to (or remove from) a collection's current version
LOADING = frozenset({jobs.JobKind.ingest, jobs.JobKind.delete})


class IngestionEnded:
    def after_batch(self, run: BatchRun, end: BatchEnd) -> None:
        claim, context = run.claim, run.context
        if claim.kind not in LOADING or not job_ended(run, end.completion):
            return
        ingestion_ended(
            context.sessions,
            context.store,
            context.publish_reindex_batch,
            physical=physical_collection(claim),
            collection=claim.collection,
        )


def job_ended(run: BatchRun, completion: jobs.Completion | None) -> bool:
    """Whether the batch's job has ended: as completing the batch said, or as the ledger says."""
    if completion is not None and completion.counted:
        return completion.job_ended is not None
    # a failure or a split, or the job ended otherwise meanwhile (cancelled): ask
    view = jobs.get_job(run.context.sessions, job_id=run.claim.job_id)
    return view is not None and view.ended
