"""After each batch of a re-index: its next step toward the end (catch up, or swap the alias),
taken once nothing of it is left open (``reindex.finishing.finish_reindex``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from embedq import jobs
from embedq.workers.reindex.finishing import finish_reindex

if TYPE_CHECKING:
    from embedq.workers.outcomes import BatchEnd
    from embedq.workers.running import BatchRun

REINDEXING = frozenset({jobs.JobKind.reindex})


class NextReindexStep:
    def after_batch(self, run: BatchRun, end: BatchEnd) -> None:
        claim, context = run.claim, run.context
        if claim.kind not in REINDEXING:
            return
        finish_reindex(
            context.sessions, context.store, context.publish_reindex_batch, job_id=claim.job_id
        )
