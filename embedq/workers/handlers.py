"""Which handler runs a claimed batch: one per job kind, and one per batch role (a sync's sweep).

Each handler runs a batch of its kind to its end, or hands it to the background writer,
and says how it ended; the lifecycle around it (``lifecycle``) claims, keeps the lease
and tells the hooks. A new kind of job is a new handler here, and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from embedq import jobs
from embedq.workers.ingest.ingestion import embed_and_write
from embedq.workers.ingest.removal import delete_ids, sweep_absent
from embedq.workers.outcomes import BatchEnd
from embedq.workers.recovery import Publish
from embedq.workers.rerank.scoring import score_and_rank
from embedq.workers.running import BatchRun


class BatchHandler(Protocol):
    """Runs a claimed batch; ``publish`` queues the halves of a batch it splits."""

    def __call__(self, run: BatchRun, *, publish: Publish) -> BatchEnd: ...


BY_KIND: Mapping[jobs.JobKind, BatchHandler] = {
    jobs.JobKind.ingest: embed_and_write,
    jobs.JobKind.reindex: embed_and_write,  # the same work, into the new version
    jobs.JobKind.delete: delete_ids,
    jobs.JobKind.rerank: score_and_rank,
}

# a batch's role, where it has one, decides before its job's kind
BY_ROLE: Mapping[str, BatchHandler] = {jobs.SWEEP: sweep_absent}


def handler_for(claim: jobs.Claim) -> BatchHandler:
    by_role = BY_ROLE.get(claim.role or "")
    return by_role if by_role is not None else BY_KIND[jobs.JobKind(claim.kind)]
