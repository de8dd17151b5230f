"""A ledger job as the API shows it: rate, time left, and an ETag for cheap polling."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from embedq import jobs
from embedq.api.http.schemas import JobOut, failure_out

# ledger fields whose change is a change of the job; derived figures (rate, ETA) are not
ETAG_FIELDS = (
    "status",
    "sealed",
    "documents_total",
    "documents_done",
    "documents_failed",
    "documents_unchanged",
    "documents_deleted",
    "batches_total",
    "batches_done",
    "batches_failed",
    "splits",
    "error",
    "updated_at",
    "finished_at",
)


def etag_of(view: jobs.JobView) -> str:
    """A strong validator that changes whenever the job does, and only then."""
    state = "|".join(f"{name}={getattr(view, name)}" for name in ETAG_FIELDS)
    return '"' + hashlib.sha256(f"{view.id}|{state}".encode()).hexdigest()[:32] + '"'


def rate(view: jobs.JobView, now: datetime) -> float | None:
    """Documents ended (done or failed) per second since the first batch started."""
    if view.started_at is None:
        return None
    seconds = ((view.finished_at or now) - view.started_at).total_seconds()
    ended = view.documents_ended
    return round(ended / seconds, 3) if seconds > 0 and ended else None


def eta_seconds(view: jobs.JobView, docs_per_second: float | None) -> float | None:
    """Seconds left at the current rate, for the documents known so far; 0 once ended."""
    if view.ended:
        return 0.0
    if not docs_per_second:
        return None
    left = view.documents_total - view.documents_ended
    return round(max(left, 0) / docs_per_second, 1)


def job_out(view: jobs.JobView, first_errors: Sequence[jobs.FailureView], now: datetime) -> JobOut:
    per_second = rate(view, now)
    return JobOut(
        id=view.id,
        kind=view.kind,
        status=str(view.status),
        tenant=view.tenant,
        collection=view.collection,
        model=view.model,
        options=view.options.to_json(),
        sealed=view.sealed,
        documents_total=view.documents_total,
        documents_done=view.documents_done,
        documents_failed=view.documents_failed,
        documents_unchanged=view.documents_unchanged,
        documents_deleted=view.documents_deleted,
        chunks_done=view.chunks_done,
        tokens_done=view.tokens_done,
        batches_total=view.batches_total,
        batches_done=view.batches_done,
        batches_failed=view.batches_failed,
        open_batches=view.open_batches,
        splits=view.splits,
        progress=round(view.progress, 4),
        docs_per_second=per_second,
        eta_seconds=eta_seconds(view, per_second),
        error=view.error,
        first_errors=[failure_out(failure) for failure in first_errors],
        created_at=view.created_at,
        started_at=view.started_at,
        updated_at=view.updated_at,
        finished_at=view.finished_at,
    )
