"""Read-only views of the ledger: what producers poll and what a reaper re-publishes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session, sessionmaker

from embedq.jobs.clock import moment
from embedq.jobs.constants import (
    EXPIRED_BATCHES_LIMIT,
    FAILURES_PAGE,
    JOBS_PAGE,
    QUEUED_BATCHES_LIMIT,
)
from embedq.jobs.contracts import JobOptions, read_options
from embedq.jobs.db import transaction
from embedq.jobs.records import BatchView, FailureView, JobView
from embedq.jobs.schema import Batch, DocumentFailure, Job
from embedq.jobs.status import BATCH_OPEN, BatchStatus, JobKind, JobStatus

View = TypeVar("View", JobView, BatchView, FailureView)


# The job queries producers use take an optional ``tenant``: given one, they see only that
# tenant's jobs, and another tenant's job looks exactly like one that does not exist.


def get_job(
    sessions: sessionmaker[Session], *, job_id: str, tenant: str | None = None
) -> JobView | None:
    """The job with this id (of ``tenant``), or None."""
    with transaction(sessions, read_only=True) as s:
        job = s.get(Job, job_id)
        if job is None or (tenant is not None and job.tenant != tenant):
            return None
        return job_view(job, open_batch_count(s, job_id))


def list_jobs(
    sessions: sessionmaker[Session],
    *,
    tenant: str | None = None,
    status: JobStatus | None = None,
    kind: JobKind | str | None = None,
    collection: str | None = None,
    limit: int = JOBS_PAGE,
    offset: int = 0,
) -> list[JobView]:
    """Jobs, newest first, optionally only those of one tenant, status, kind or collection."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    if tenant is not None:
        query = query.where(Job.tenant == tenant)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == JobKind(kind).value)
    if collection is not None:
        query = query.where(Job.collection == collection)
    with transaction(sessions, read_only=True) as s:
        jobs = list(s.scalars(query))
        open_counts = _open_batch_counts(s, [job.id for job in jobs])
        return [job_view(job, open_counts.get(job.id, 0)) for job in jobs]


def count_jobs_by_status(
    sessions: sessionmaker[Session], *, tenant: str | None = None
) -> dict[JobStatus, int]:
    """How many jobs are in each status (statuses with none are left out)."""
    query = select(Job.status, func.count()).group_by(Job.status)
    if tenant is not None:
        query = query.where(Job.tenant == tenant)
    with transaction(sessions, read_only=True) as s:
        return {JobStatus(status): int(count) for status, count in s.execute(query)}


def list_failures(
    sessions: sessionmaker[Session],
    *,
    job_id: str,
    tenant: str | None = None,
    limit: int = FAILURES_PAGE,
    offset: int = 0,
) -> list[FailureView]:
    """A job's document failures in the order they were recorded."""
    query = (
        select(DocumentFailure)
        .where(DocumentFailure.job_id == job_id, job_of(tenant, job_id))
        .order_by(DocumentFailure.id)
        .limit(limit)
        .offset(offset)
    )
    with transaction(sessions, read_only=True) as s:
        return [_failure_view(failure) for failure in s.scalars(query)]


def list_batches(
    sessions: sessionmaker[Session], *, job_id: str, tenant: str | None = None
) -> list[BatchView]:
    """Every batch of a job, split ones and their children included, in creation order."""
    query = (
        select(Batch).where(Batch.job_id == job_id, job_of(tenant, job_id)).order_by(Batch.sequence)
    )
    with transaction(sessions, read_only=True) as s:
        return [batch_view(batch) for batch in s.scalars(query)]


def expired_batches(
    sessions: sessionmaker[Session],
    *,
    now: datetime | None = None,
    limit: int = EXPIRED_BATCHES_LIMIT,
) -> list[str]:
    """Running batches whose lease has run out (their worker is presumably gone), oldest first."""
    query = (
        select(Batch.id)
        .where(Batch.status == BatchStatus.running, Batch.lease_expires_at < moment(now))
        .order_by(Batch.lease_expires_at)
        .limit(limit)
    )
    with transaction(sessions, read_only=True) as s:
        return list(s.scalars(query))


def batch_job_kind(sessions: sessionmaker[Session], *, batch_id: str) -> JobKind | None:
    """The kind of the job the batch belongs to, or None when there is no such batch."""
    query = select(Job.kind).join(Batch, Batch.job_id == Job.id).where(Batch.id == batch_id)
    with transaction(sessions, read_only=True) as s:
        kind = s.scalar(query)
        return None if kind is None else JobKind(kind)


def queued_batches(
    sessions: sessionmaker[Session],
    *,
    job_id: str | None = None,
    older_than: datetime | None = None,
    limit: int = QUEUED_BATCHES_LIMIT,
) -> list[str]:
    """Queued batches (of one job, created before ``older_than``), in creation order."""
    query = select(Batch.id).where(Batch.status == BatchStatus.queued)
    if job_id is not None:
        query = query.where(Batch.job_id == job_id)
    if older_than is not None:
        query = query.where(Batch.created_at < older_than)
    query = query.order_by(Batch.created_at, Batch.sequence).limit(limit)
    with transaction(sessions, read_only=True) as s:
        return list(s.scalars(query))


def unidentified_intake_failures(sessions: sessionmaker[Session], *, job_id: str) -> int:
    """Lines of a job's input that failed before any id could be read from them."""
    query = select(func.count()).where(
        DocumentFailure.job_id == job_id,
        DocumentFailure.batch_id.is_(None),
        DocumentFailure.doc_id.is_(None),
    )
    with transaction(sessions, read_only=True) as s:
        return int(s.scalar(query) or 0)


def job_of(tenant: str | None, job_id: str) -> ColumnElement[bool]:
    """True when the job belongs to ``tenant``; always true without one."""
    if tenant is None:
        return true()
    return select(Job.id).where(Job.id == job_id, Job.tenant == tenant).exists()


def open_batch_count(s: Session, job_id: str) -> int:
    """Batches of the job still queued or running."""
    query = select(func.count()).where(Batch.job_id == job_id, Batch.status.in_(BATCH_OPEN))
    return s.scalar(query) or 0


def _open_batch_counts(s: Session, job_ids: Iterable[str]) -> dict[str, int]:
    query = (
        select(Batch.job_id, func.count())
        .where(Batch.job_id.in_(list(job_ids)), Batch.status.in_(BATCH_OPEN))
        .group_by(Batch.job_id)
    )
    return {job_id: count for job_id, count in s.execute(query)}


def options_of(job: Job) -> JobOptions:
    """The job's stored options, as its kind's type."""
    return read_options(job.kind, job.options, collection=job.collection)


def job_view(job: Job, open_batches: int) -> JobView:
    kind, options = JobKind(job.kind), options_of(job)
    return _view(JobView, job, open_batches=open_batches, kind=kind, options=options)


def batch_view(batch: Batch) -> BatchView:
    return _view(BatchView, batch)


def _failure_view(failure: DocumentFailure) -> FailureView:
    return _view(FailureView, failure)


def _view(cls: type[View], row: object, **extra: Any) -> View:
    # the views name their fields after the columns they copy
    names = [item.name for item in fields(cls) if item.init and item.name not in extra]
    values: dict[str, Any] = {name: getattr(row, name) for name in names}
    return cls(**values, **extra)
