"""Rerank results: written with their batch's completion, in one transaction, and read back.

A rerank batch's scores go in the same guarded transaction that succeeds the batch,
so a task that runs twice finds the batch no longer running and writes nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from embedq.jobs.clock import moment
from embedq.jobs.constants import RESULTS_PAGE
from embedq.jobs.db import transaction
from embedq.jobs.queries import job_of
from embedq.jobs.records import Completion, Failure, RerankResult
from embedq.jobs.schema import RerankResult as ResultRow
from embedq.jobs.steps import complete_running_batch


def complete_rerank_batch(
    sessions: sessionmaker[Session],
    *,
    batch_id: str,
    results: Sequence[RerankResult],
    failures: Sequence[Failure] = (),
) -> Completion:
    """Record a running rerank batch's results and succeed it, as ``complete_batch`` does.

    Every query of the batch is either done (it has results) or among ``failures``.
    Nothing is recorded, and nothing counted, when the batch was not running.
    """
    queries_done = len({result.query_id for result in results})

    def record(s: Session, job_id: str) -> None:
        if results:
            s.execute(insert(ResultRow), [_row(job_id, batch_id, result) for result in results])

    with transaction(sessions) as s:
        return complete_running_batch(
            s, batch_id, moment(), documents_done=queries_done, failures=failures, record=record
        )


def list_results(
    sessions: sessionmaker[Session],
    *,
    job_id: str,
    tenant: str | None = None,
    limit: int = RESULTS_PAGE,
    offset: int = 0,
) -> list[RerankResult]:
    """A rerank job's results by query id, then rank (best first)."""
    query = (
        select(ResultRow)
        .where(ResultRow.job_id == job_id, job_of(tenant, job_id))
        .order_by(ResultRow.query_id, ResultRow.rank, ResultRow.candidate_id)
        .limit(limit)
        .offset(offset)
    )
    with transaction(sessions, read_only=True) as s:
        return [
            RerankResult(
                query_id=row.query_id, candidate_id=row.candidate_id, score=row.score, rank=row.rank
            )
            for row in s.scalars(query)
        ]


def _row(job_id: str, batch_id: str, result: RerankResult) -> dict[str, object]:
    return {
        "job_id": job_id,
        "batch_id": batch_id,
        "query_id": result.query_id,
        "candidate_id": result.candidate_id,
        "score": result.score,
        "rank": result.rank,
    }
