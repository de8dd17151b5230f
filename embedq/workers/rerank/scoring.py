"""The handler of rerank batches: score and rank their queries, then record the results.

The results go to the ledger with the batch's completion, not to Qdrant: no writer, no
lease confirmation (the ledger records nothing for a batch that is not running any more).
"""

from __future__ import annotations

import logging

from embedq import jobs
from embedq.workers.outcomes import BatchEnd
from embedq.workers.recovery import Publish, run_or_split
from embedq.workers.rerank.ranking import rerank_claim
from embedq.workers.running import BatchRun

logger = logging.getLogger(__name__)


def score_and_rank(run: BatchRun, *, publish: Publish) -> BatchEnd:
    """Rank the batch's queries (or split or fail it) and complete it with their results."""
    ranked = run_or_split(run, "rerank", rerank_claim, publish=publish)
    if isinstance(ranked, BatchEnd):
        return ranked
    with run.clock.stage("complete"):
        completion = jobs.complete_rerank_batch(
            run.context.sessions,
            batch_id=run.batch_id,
            results=ranked.results,
            failures=ranked.failures,
        )
    done, failures = ranked.queries_done, len(ranked.failures)
    outcome = run.outcome("succeeded", documents_done=done, documents_failed=failures)
    logger.info("batch %s: %s (%s)", run.batch_id, outcome.status, outcome.stages())
    return BatchEnd(outcome, completion)
