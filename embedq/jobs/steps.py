"""The steps the ledger's transactions are made of: locks, guarded updates, counters, endings.

Each takes the open session of a transaction in ``ledger``; none commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast
from uuid import uuid4

from sqlalchemy import ColumnElement, CursorResult, and_, delete, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Delete, Update

from embedq.jobs.clock import moment
from embedq.jobs.constants import SWEEP
from embedq.jobs.contracts import (
    IngestOptions,
    JobOptions,
    default_options,
    options_of_kind,
)
from embedq.jobs.errors import BatchNotFoundError, InvalidBatchError, JobNotFoundError
from embedq.jobs.queries import open_batch_count, options_of
from embedq.jobs.records import BatchRef, Completion, Documents, Failure
from embedq.jobs.schema import Batch, BatchPayload, DocumentFailure, Job
from embedq.jobs.status import (
    JOB_ENDED,
    JOB_OPEN,
    BatchStatus,
    JobKind,
    JobStatus,
    ending_status,
)

log = logging.getLogger(__name__)


# --- locks and guards -----------------------------------------------------------------


def apply(s: Session, statement: Update | Delete) -> int:
    """Run an UPDATE or DELETE and return how many rows it changed."""
    result = s.execute(statement, execution_options={"synchronize_session": False})
    return cast(CursorResult[Any], result).rowcount


def lock_job(s: Session, job_id: str) -> Job:
    query = select(Job).where(Job.id == job_id).with_for_update()
    job = s.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if job is None:
        raise JobNotFoundError(f"no job {job_id}")
    return job


def lock_job_of_batch(s: Session, batch_id: str) -> tuple[Job, Batch]:
    """Lock the batch's job row, then read the batch (whose status only changes under it)."""
    query = (
        select(Job)
        .join(Batch, Batch.job_id == Job.id)
        .where(Batch.id == batch_id)
        .with_for_update(of=Job)
    )
    job = s.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if job is None:
        raise BatchNotFoundError(f"no batch {batch_id}")
    batch = s.scalars(
        select(Batch).where(Batch.id == batch_id).execution_options(populate_existing=True)
    ).one()
    return job, batch


def running() -> ColumnElement[bool]:
    return Batch.status == BatchStatus.running


def claimable(now: datetime) -> ColumnElement[bool]:
    expired = and_(Batch.status == BatchStatus.running, Batch.lease_expires_at < now)
    return or_(Batch.status == BatchStatus.queued, expired)


# --- changes --------------------------------------------------------------------------


def insert_job(
    s: Session,
    *,
    kind: JobKind | str,
    collection: str,
    model: str,
    options: JobOptions | None,
    tenant: str | None,
) -> str:
    """Add a pending job to the transaction; returns its new id.

    ``options`` must be the type its ``kind`` takes; None: that type's defaults.
    """
    kind = JobKind(kind)
    if options is None:
        options = default_options(kind, collection=collection)
    options = options_of_kind(kind, options)
    now = moment()
    job_id = uuid4().hex
    s.add(
        Job(
            id=job_id,
            tenant=tenant,
            kind=kind.value,
            status=JobStatus.pending,
            collection=collection,
            model=model,
            options=options.to_json(),
            sealed=False,
            created_at=now,
            updated_at=now,
        )
    )
    return job_id


def insert_batches(
    s: Session,
    job: Job,
    groups: list[Documents],
    *,
    parent_id: str | None,
    now: datetime,
    role: str | None = None,
    published: bool = True,
    ids: Sequence[str] | None = None,
) -> list[BatchRef]:
    """Queue a batch per group; ``published``: its caller sends its message right after.

    ``ids`` are the batches' ids, chosen by a caller that may retry (new ones otherwise).
    """
    ids = ids or [uuid4().hex for _ in groups]
    # job.batches_total was read under the job's lock: the next sequence numbers are ours
    refs = [BatchRef(id=batch_id, sequence=job.batches_total + i) for i, batch_id in enumerate(ids)]
    for ref, documents in zip(refs, groups, strict=True):
        s.execute(
            insert(Batch).values(
                id=ref.id,
                job_id=job.id,
                sequence=ref.sequence,
                parent_id=parent_id,
                status=BatchStatus.queued,
                role=role,
                attempts=0,
                documents=len(documents),
                published_at=now if published else None,
                publishes=1 if published else 0,
                created_at=now,
            )
        )
        payloads = [document.to_json() for document in documents]
        s.execute(insert(BatchPayload).values(batch_id=ref.id, documents=payloads))
    return refs


def add_to_job(s: Session, job_id: str, now: datetime, **increments: int) -> None:
    # x = x + n in SQL, never a value read earlier in Python
    added = {name: getattr(Job, name) + n for name, n in increments.items() if n}
    apply(s, update(Job).where(Job.id == job_id).values(updated_at=now, **added))


def start_job(s: Session, job_id: str, now: datetime) -> None:
    apply(
        s,
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.pending)
        .values(status=JobStatus.running, started_at=now, updated_at=now),
    )


def end_batch(
    s: Session,
    batch_id: str,
    status: BatchStatus,
    *,
    now: datetime,
    guard: ColumnElement[bool] | None = None,
    error: str | None = None,
) -> bool:
    """Move an open batch to an ended status and drop its payload; False if it was not open."""
    ended = apply(
        s,
        update(Batch)
        .where(Batch.id == batch_id, running() if guard is None else guard)
        .values(status=status, error=error, finished_at=now),
    )
    if ended:
        apply(s, delete(BatchPayload).where(BatchPayload.batch_id == batch_id))
    return bool(ended)


def lock_live_batch(s: Session, batch_id: str, now: datetime) -> tuple[Job, Batch] | None:
    """Lock the batch's job; None, with the batch cancelled, if that job has already ended."""
    job, batch = lock_job_of_batch(s, batch_id)
    if job.status in JOB_ENDED:
        cancel_batch(s, batch_id, now)
        return None
    return job, batch


def cancel_batch(s: Session, batch_id: str, now: datetime) -> None:
    open_ = Batch.status.in_([BatchStatus.queued, BatchStatus.running])
    end_batch(s, batch_id, BatchStatus.cancelled, now=now, guard=open_)


def complete_running_batch(
    s: Session,
    batch_id: str,
    now: datetime,
    *,
    documents_done: int,
    chunks_done: int = 0,
    tokens_done: int = 0,
    documents_deleted: int = 0,
    failures: Sequence[Failure] = (),
    record: Callable[[Session, str], None] | None = None,
) -> Completion:
    """Succeed a running batch and count it; ``record(s, job_id)`` writes its results first.

    Nothing is counted or recorded when the batch is not running (the task ran twice)
    or its job has ended.
    """
    live = lock_live_batch(s, batch_id, now)
    if live is None:
        return Completion(counted=False)
    job, batch = live
    if batch.status != BatchStatus.running:
        return Completion(counted=False)
    check_counts(batch, documents_done, chunks_done, tokens_done, failures)
    if not end_batch(s, batch_id, BatchStatus.succeeded, now=now):
        return Completion(counted=False)
    if record is not None:
        record(s, job.id)
    record_failures(s, job_id=job.id, batch_id=batch_id, failures=failures, now=now)
    add_to_job(
        s,
        job.id,
        now,
        documents_done=documents_done,
        chunks_done=chunks_done,
        tokens_done=tokens_done,
        documents_deleted=documents_deleted,
        documents_failed=len(failures),
        batches_done=1,
    )
    return Completion(counted=True, job_ended=finish_if_ended(s, job.id, now))


def check_counts(
    batch: Batch,
    documents_done: int,
    chunks_done: int,
    tokens_done: int,
    failures: Sequence[Failure],
) -> None:
    if min(documents_done, chunks_done, tokens_done) < 0:
        raise InvalidBatchError("counts cannot be negative")
    if documents_done + len(failures) != batch.documents:
        raise InvalidBatchError(
            f"batch {batch.id} has {batch.documents} documents, but {documents_done} done "
            f"and {len(failures)} failed were reported"
        )


def fail_batch_documents(
    s: Session, batch: Batch, *, reason: str, guard: ColumnElement[bool], now: datetime
) -> bool:
    """Fail a batch and each of its documents, if ``guard`` still holds for it."""
    documents = s.scalars(
        select(BatchPayload.documents).where(BatchPayload.batch_id == batch.id)
    ).one_or_none()
    if not end_batch(s, batch.id, BatchStatus.failed, now=now, guard=guard, error=reason):
        return False
    failures = [Failure(doc_id=_doc_id(document), reason=reason) for document in documents or []]
    record_failures(s, job_id=batch.job_id, batch_id=batch.id, failures=failures, now=now)
    add_to_job(s, batch.job_id, now, documents_failed=batch.documents, batches_failed=1)
    finish_if_ended(s, batch.job_id, now)
    return True


def _doc_id(document: dict[str, Any]) -> str | None:
    value = document.get("id")
    return None if value is None else str(value)


def record_failures(
    s: Session,
    *,
    job_id: str,
    batch_id: str | None,
    failures: Sequence[Failure],
    now: datetime,
) -> None:
    if not failures:
        return
    rows = [
        {
            "job_id": job_id,
            "batch_id": batch_id,
            "doc_id": failure.doc_id,
            "line": failure.line,
            "reason": failure.reason,
            "created_at": now,
        }
        for failure in failures
    ]
    s.execute(insert(DocumentFailure), rows)


def needs_sweep(s: Session, job: Job) -> bool:
    """A sync whose documents have all landed, and whose sweep has not been added yet.

    A sync whose intake stopped part-way (``job.error``) sweeps nothing: what its
    input would have held is not known.
    """
    if job.kind != JobKind.ingest.value or job.error:
        return False
    if not cast(IngestOptions, options_of(job)).sync:
        return False
    swept = select(Batch.id).where(Batch.job_id == job.id, Batch.role == SWEEP).exists()
    return not s.scalar(select(swept))


def insert_sweep(s: Session, job: Job, now: datetime) -> None:
    """Queue the sync's sweep, unpublished: its producer, or the next reaper round, sends it."""
    insert_batches(s, job, [[]], parent_id=None, now=now, role=SWEEP, published=False)
    add_to_job(s, job.id, now, batches_total=1)
    log.info("job %s: every document landed; its sweep is queued", job.id)


def finish_if_ended(s: Session, job_id: str, now: datetime) -> JobStatus | None:
    """End a sealed job none of whose batches is open; the caller holds the job's lock."""
    job = s.scalars(
        select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    ).one()
    if not job.sealed or job.status in JOB_ENDED or open_batch_count(s, job_id):
        return None
    if job.kind == JobKind.reindex.value:
        return None  # ended by its finisher, once caught up and swapped (jobs.reindexing)
    if needs_sweep(s, job):
        insert_sweep(s, job, now)
        return None  # ended by its sweep, the sync's last batch
    # skipped documents are as good as done: the collection holds them as they are
    status = ending_status(
        documents_done=job.documents_done + job.documents_unchanged,
        documents_failed=job.documents_failed,
        # an open job has an error only when something of it is missing (ledger.stop_intake)
        intake_stopped=job.error is not None,
    )
    finished = apply(
        s,
        update(Job)
        .where(Job.id == job_id, Job.status.in_(JOB_OPEN), Job.sealed.is_(True))
        .values(status=status, finished_at=now, updated_at=now),
    )
    if not finished:
        return None
    log.info(
        "job %s ended %s: %d documents done, %d failed",
        job_id,
        status.value,
        job.documents_done,
        job.documents_failed,
    )
    return status
