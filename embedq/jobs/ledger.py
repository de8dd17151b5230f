"""The ledger's state changes: one transaction each, guarded so that each counts once.

Every status change is an ``UPDATE ... WHERE status = ...`` whose row count says whether
it happened; a task that runs twice finds the batch no longer running and changes nothing.
Transactions that change a batch's status or a job's counters first lock the job's row,
so two batches ending at once cannot both see the other still open and leave the job
unfinished. (On SQLite, ``BEGIN IMMEDIATE`` locks the whole file instead.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from embedq.faults import stall_point
from embedq.jobs.clock import moment
from embedq.jobs.constants import (
    ABANDONED_JOBS_LIMIT,
    LEASE_SECONDS,
    MAX_ATTEMPTS,
)
from embedq.jobs.contracts import JobOptions, read_payloads
from embedq.jobs.db import transaction
from embedq.jobs.errors import (
    BatchNotFoundError,
    InvalidBatchError,
    JobClosedError,
    JobNotFoundError,
)
from embedq.jobs.queries import options_of
from embedq.jobs.records import BatchRef, Claim, Completion, Documents, Failure
from embedq.jobs.schema import Batch, BatchPayload, Job
from embedq.jobs.status import (
    BATCH_OPEN,
    JOB_ENDED,
    JOB_OPEN,
    BatchStatus,
    JobKind,
    JobStatus,
)
from embedq.jobs.steps import (
    add_to_job,
    apply,
    claimable,
    complete_running_batch,
    end_batch,
    fail_batch_documents,
    finish_if_ended,
    insert_batches,
    insert_job,
    lock_job,
    lock_live_batch,
    record_failures,
    running,
    start_job,
)

log = logging.getLogger(__name__)


# --- jobs -------------------------------------------------------------------------------


def create_job(
    sessions: sessionmaker[Session],
    *,
    kind: JobKind | str,
    collection: str,
    model: str,
    options: JobOptions | None = None,
    tenant: str | None = None,
) -> str:
    """Record a new, pending job and return its id.

    ``options`` are the type ``kind`` takes (``IngestOptions`` for an ingest...);
    None: that type's defaults.

    ``tenant`` is the tenant of the API key the job was submitted with; only that
    tenant sees the job through a tenant-scoped query. None for jobs of the ledger's own
    users (the command line), which only unscoped queries see.
    """
    with transaction(sessions) as s:
        return insert_job(
            s, kind=kind, collection=collection, model=model, options=options, tenant=tenant
        )


def add_batch(
    sessions: sessionmaker[Session],
    *,
    job_id: str,
    documents: Documents,
    parent_id: str | None = None,
    catch_up: bool = False,
    batch_id: str | None = None,
) -> BatchRef:
    """Record a queued batch and its documents; a root batch adds them to the job's total.

    ``catch_up`` batches may join a sealed re-index that has not ended: documents
    ingested into its collection while it ran. The caller publishes the batch next.

    With a ``batch_id`` of the caller's choosing, a retry of a call whose answer was
    lost (the connection broke as it committed) finds the batch there and adds nothing.
    """
    if not documents:
        raise InvalidBatchError("a batch needs at least one document")
    now = moment()
    with transaction(sessions) as s:
        job = lock_job(s, job_id)
        if batch_id is not None and (known := s.get(Batch, batch_id)) is not None:
            if known.job_id != job_id:
                raise InvalidBatchError(f"batch {batch_id} belongs to another job")
            return BatchRef(id=known.id, sequence=known.sequence)
        if catch_up and job.kind != JobKind.reindex.value:
            raise InvalidBatchError("only a re-index takes catch-up batches")
        _check_open(job, root=parent_id is None and not catch_up)
        if parent_id is not None:
            _check_parent(s, job_id=job_id, parent_id=parent_id)
        ids = None if batch_id is None else [batch_id]
        [ref] = insert_batches(s, job, [documents], parent_id=parent_id, now=now, ids=ids)
        added = len(documents) if parent_id is None else 0
        add_to_job(s, job_id, now, batches_total=1, documents_total=added)
    return ref


def record_intake_failures(
    sessions: sessionmaker[Session], *, job_id: str, failures: Sequence[Failure]
) -> None:
    """Count documents rejected before any batch (unparsable line, no id, duplicate id)."""
    if not failures:
        return
    now = moment()
    with transaction(sessions) as s:
        _check_open(lock_job(s, job_id), root=True)
        record_failures(s, job_id=job_id, batch_id=None, failures=failures, now=now)
        add_to_job(s, job_id, now, documents_total=len(failures), documents_failed=len(failures))


def seal_job(sessions: sessionmaker[Session], *, job_id: str) -> JobStatus:
    """Declare that no more root batches will come; the job ends now if its batches have.

    Returns the job's status afterwards. Sealing twice, or an ended job, changes nothing.
    """
    now = moment()
    with transaction(sessions) as s:
        job = lock_job(s, job_id)
        if job.status in JOB_ENDED:
            return job.status
        apply(
            s,
            update(Job)
            .where(Job.id == job_id, Job.sealed.is_(False))
            .values(sealed=True, updated_at=now),
        )
        return finish_if_ended(s, job_id, now) or job.status


def cancel_job(
    sessions: sessionmaker[Session],
    *,
    job_id: str,
    reason: str | None = None,
    tenant: str | None = None,
) -> bool:
    """Cancel a job that has not ended, and its queued batches; False if it had ended.

    Running batches are left to their workers, whose next claim, renewal or completion
    finds the job cancelled and counts nothing. With ``tenant``, another tenant's job is
    not found, exactly like a job that does not exist (``JobNotFoundError``).
    """
    return _close_job(
        sessions, job_id=job_id, status=JobStatus.cancelled, error=reason, tenant=tenant
    )


def fail_job(sessions: sessionmaker[Session], *, job_id: str, error: str) -> bool:
    """End a job that cannot go on (its input became unreadable) as failed, like a cancel."""
    return _close_job(sessions, job_id=job_id, status=JobStatus.failed, error=error)


def stop_intake(sessions: sessionmaker[Session], *, job_id: str, reason: str) -> JobStatus:
    """Seal a job whose producer stopped part-way, keeping ``reason`` as its error.

    The documents it got still land, and it ends once its batches have: partial at best,
    since something of its input never arrived, or failed when nothing was done. A
    re-index fails at once instead: one that lacks part of its source is never swapped
    in. A sealed or ended job is left as it is. Returns the job's status afterwards.
    """
    now = moment()
    with transaction(sessions) as s:
        return _stop_intake(s, lock_job(s, job_id), reason=reason, now=now)


def end_abandoned_jobs(
    sessions: sessionmaker[Session],
    *,
    idle_seconds: float,
    now: datetime | None = None,
    limit: int = ABANDONED_JOBS_LIMIT,
) -> list[str]:
    """Stop the intake of open, unsealed jobs unchanged for ``idle_seconds``; their ids.

    Their producers are gone (killed, or cut off from the API) and will never seal them.
    Each ends as ``stop_intake`` ends a job, with a reason saying it was abandoned, oldest
    first; rows another reaper holds are skipped.
    """
    now = moment(now)
    idle = (
        select(Job)
        .where(
            Job.status.in_(JOB_OPEN),
            Job.sealed.is_(False),
            Job.updated_at < now - timedelta(seconds=idle_seconds),
        )
        .order_by(Job.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    reason = (
        f"abandoned: no documents were added for {idle_seconds:.0f} s "
        "and the producer never sealed it"
    )
    with transaction(sessions) as s:
        abandoned = list(s.scalars(idle.execution_options(populate_existing=True)))
        for job in abandoned:
            _stop_intake(s, job, reason=reason, now=now)
        return [job.id for job in abandoned]


def touch_job(sessions: sessionmaker[Session], *, job_id: str, now: datetime | None = None) -> bool:
    """Mark an open job as still fed though nothing was added lately (its producer waits
    out a full queue), so it is not taken for abandoned; False if it has ended."""
    with transaction(sessions) as s:
        touched = apply(
            s,
            update(Job)
            .where(Job.id == job_id, Job.status.in_(JOB_OPEN))
            .values(updated_at=moment(now)),
        )
    return bool(touched)


def fail_open_batches(sessions: sessionmaker[Session], *, job_id: str, reason: str) -> int:
    """Fail each open batch of a job, every document with ``reason``: batches nothing will
    run, such as those a producer ran in its own process when it stopped. Returns how many.
    """
    now = moment()
    open_ = Batch.status.in_(BATCH_OPEN)
    with transaction(sessions) as s:
        if lock_job(s, job_id).status in JOB_ENDED:
            return 0
        batches = s.scalars(select(Batch).where(Batch.job_id == job_id, open_)).all()
        return sum(
            fail_batch_documents(s, batch, reason=reason, guard=open_, now=now) for batch in batches
        )


# --- batches ----------------------------------------------------------------------------


def claim_batch(
    sessions: sessionmaker[Session],
    *,
    batch_id: str,
    worker: str,
    lease_seconds: float = LEASE_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
    now: datetime | None = None,
) -> Claim | None:
    """Take a queued batch, or a running one whose lease has expired, under a new lease.

    None when someone else holds a live lease, the batch has ended, or its job has
    (the batch is then cancelled). A batch already claimed ``max_attempts`` times by
    workers that never finished it fails instead of being run again.
    """
    now = moment(now)
    with transaction(sessions) as s:
        live = lock_live_batch(s, batch_id, now)
        stall_point("claim-holds-job-lock")  # the fault tests cut a host off here
        if live is None:
            return None
        job, batch = live
        if batch.attempts >= max_attempts:
            reason = f"abandoned after {batch.attempts} attempts that never finished"
            fail_batch_documents(s, batch, reason=reason, guard=claimable(now), now=now)
            return None
        expires = now + timedelta(seconds=lease_seconds)
        claimed = apply(
            s,
            update(Batch)
            .where(Batch.id == batch_id, claimable(now))
            .values(
                status=BatchStatus.running,
                attempts=Batch.attempts + 1,
                lease_owner=worker,
                lease_expires_at=expires,
                started_at=now,
            ),
        )
        if not claimed:
            return None
        start_job(s, job.id, now)
        documents = s.scalars(
            select(BatchPayload.documents).where(BatchPayload.batch_id == batch_id)
        ).one()
        return Claim(
            batch_id=batch_id,
            job_id=job.id,
            attempt=batch.attempts + 1,
            documents=read_payloads(job.kind, documents),
            kind=JobKind(job.kind),
            collection=job.collection,
            model=job.model,
            options=options_of(job),
            lease_expires_at=expires,
            role=batch.role,
        )


def renew_lease(
    sessions: sessionmaker[Session],
    *,
    batch_id: str,
    worker: str,
    lease_seconds: float = LEASE_SECONDS,
    now: datetime | None = None,
) -> bool:
    """Extend the lease of a running batch; False if ``worker`` no longer holds it.

    Also False once the job has ended (cancelled): the worker may stop early.
    """
    now = moment(now)
    job_open = select(Job.id).where(Job.id == Batch.job_id, Job.status.in_(JOB_OPEN)).exists()
    with transaction(sessions) as s:
        return bool(
            apply(
                s,
                update(Batch)
                .where(
                    Batch.id == batch_id,
                    Batch.status == BatchStatus.running,
                    Batch.lease_owner == worker,
                    job_open,
                )
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds)),
            )
        )


def release_batch(
    sessions: sessionmaker[Session],
    *,
    batch_id: str,
    worker: str,
    retry_in: float = 0.0,
    now: datetime | None = None,
) -> bool:
    """Give a running batch back to the queue (a retryable error) so any worker may retry it.

    False if ``worker`` does not hold it. The attempt is given back too: ``max_attempts``
    stops a batch that kills its workers, and a passing failure (Qdrant restarting, say)
    is not one, however long it lasts. The caller publishes the batch again, due in
    ``retry_in`` seconds; should that message be lost, a reaper finds the batch
    (``jobs.publishing``).
    """
    now = moment(now)
    with transaction(sessions) as s:
        live = lock_live_batch(s, batch_id, now)
        if live is None:
            return False
        released = apply(
            s,
            update(Batch)
            .where(
                Batch.id == batch_id,
                Batch.status == BatchStatus.running,
                Batch.lease_owner == worker,
            )
            .values(
                status=BatchStatus.queued,
                attempts=Batch.attempts - 1,
                lease_owner=None,
                lease_expires_at=None,
                published_at=now + timedelta(seconds=retry_in),
                publishes=Batch.publishes + 1,
            ),
        )
        return bool(released)


def complete_batch(
    sessions: sessionmaker[Session],
    *,
    batch_id: str,
    documents_done: int,
    chunks_done: int = 0,
    tokens_done: int = 0,
    documents_deleted: int = 0,
    failures: Sequence[Failure] = (),
) -> Completion:
    """Mark a running batch succeeded and add its numbers to the job, which may then end.

    Any worker may complete it, also one whose lease was taken over (its writes are
    idempotent). Not counted, and nothing changed, when the batch was not running: the
    task ran twice, or the job was cancelled. ``documents_done`` plus the failures must
    equal the batch's documents. ``job_ended`` is the job's status if it ended with this.
    """
    with transaction(sessions) as s:
        return complete_running_batch(
            s,
            batch_id,
            moment(),
            documents_done=documents_done,
            chunks_done=chunks_done,
            tokens_done=tokens_done,
            documents_deleted=documents_deleted,
            failures=failures,
        )


def complete_sweep(
    sessions: sessionmaker[Session], *, batch_id: str, deleted: int, refusal: str | None = None
) -> Completion:
    """End a sync's sweep: ``deleted`` documents removed, or why it removed none.

    A refusal is kept as the job's error, so the job ends partial and says why.
    """
    now = moment()
    with transaction(sessions) as s:
        live = lock_live_batch(s, batch_id, now)
        if live is None or live[1].status != BatchStatus.running:
            return Completion(counted=False)
        job, _ = live
        if not end_batch(s, batch_id, BatchStatus.succeeded, now=now):
            return Completion(counted=False)
        if refusal is not None:
            apply(s, update(Job).where(Job.id == job.id).values(error=refusal))
        add_to_job(s, job.id, now, documents_deleted=deleted, batches_done=1)
        return Completion(counted=True, job_ended=finish_if_ended(s, job.id, now))


def record_unchanged(sessions: sessionmaker[Session], *, job_id: str, count: int) -> None:
    """Count documents skipped because the collection already holds them as they are."""
    if count <= 0:
        return
    now = moment()
    with transaction(sessions) as s:
        _check_open(lock_job(s, job_id), root=True)
        add_to_job(s, job_id, now, documents_total=count, documents_unchanged=count)


def fail_batch(sessions: sessionmaker[Session], *, batch_id: str, error: str) -> bool:
    """Mark a running batch failed: each of its documents fails with ``error``.

    False, and nothing counted, when the batch was not running.
    """
    now = moment()
    with transaction(sessions) as s:
        live = lock_live_batch(s, batch_id, now)
        if live is None:
            return False
        _, batch = live
        return fail_batch_documents(s, batch, reason=error, guard=running(), now=now)


def split_batch(
    sessions: sessionmaker[Session], *, batch_id: str, halves: tuple[Documents, Documents]
) -> list[BatchRef]:
    """Replace a running batch (too big to finish) by two queued children, one per half.

    Returns the children to publish; an empty list when the batch was not running
    (someone already ended or split it) or its job has ended.
    """
    if len(halves) != 2 or not all(halves):
        raise InvalidBatchError("a split needs two halves, each with at least one document")
    now = moment()
    with transaction(sessions) as s:
        live = lock_live_batch(s, batch_id, now)
        if live is None:
            return []
        job, batch = live
        if batch.status != BatchStatus.running:
            return []
        if sum(map(len, halves)) != batch.documents:
            raise InvalidBatchError(
                f"halves hold {sum(map(len, halves))} documents, batch {batch_id} has "
                f"{batch.documents}"
            )
        if not end_batch(s, batch_id, BatchStatus.split, now=now):
            return []
        children = insert_batches(s, job, list(halves), parent_id=batch_id, now=now)
        # the children's documents are already in documents_total, through the parent
        add_to_job(s, job.id, now, splits=1, batches_total=len(children))
        return children


def _check_open(job: Job, *, root: bool) -> None:
    if job.status in JOB_ENDED:
        raise JobClosedError(f"job {job.id} has ended ({job.status.value})")
    if root and job.sealed:
        raise JobClosedError(f"job {job.id} is sealed: it takes no new documents")


def _check_parent(s: Session, *, job_id: str, parent_id: str) -> None:
    parent = s.get(Batch, parent_id)
    if parent is None or parent.job_id != job_id:
        raise BatchNotFoundError(f"no batch {parent_id} in job {job_id}")
    if parent.status != BatchStatus.split:
        # a child's documents count through its parent, which must therefore not count them
        raise InvalidBatchError(f"batch {parent_id} is {parent.status.value}, not split")


def _close_job(
    sessions: sessionmaker[Session],
    *,
    job_id: str,
    status: JobStatus,
    error: str | None,
    tenant: str | None = None,
) -> bool:
    now = moment()
    with transaction(sessions) as s:
        job = lock_job(s, job_id)
        if tenant is not None and job.tenant != tenant:
            # the same error as for a missing job: another tenant's ids are not revealed
            raise JobNotFoundError(f"no job {job_id}")
        return _end_job(s, job_id, status=status, error=error, now=now)


def _end_job(
    s: Session, job_id: str, *, status: JobStatus, error: str | None, now: datetime
) -> bool:
    """End an open job and cancel its queued batches; False if it had ended."""
    closed = apply(
        s,
        update(Job)
        .where(Job.id == job_id, Job.status.in_(JOB_OPEN))
        .values(status=status, error=error, finished_at=now, updated_at=now),
    )
    if not closed:
        return False
    queued = select(Batch.id).where(Batch.job_id == job_id, Batch.status == BatchStatus.queued)
    apply(s, delete(BatchPayload).where(BatchPayload.batch_id.in_(queued)))
    apply(
        s,
        update(Batch)
        .where(Batch.job_id == job_id, Batch.status == BatchStatus.queued)
        .values(status=BatchStatus.cancelled, finished_at=now),
    )
    log.info("job %s %s", job_id, status.value)
    return True


def _stop_intake(s: Session, job: Job, *, reason: str, now: datetime) -> JobStatus:
    """``stop_intake`` on a job whose row the transaction holds."""
    if job.status in JOB_ENDED or job.sealed:
        return job.status  # it ended, or got all of its input: nothing stopped short
    if job.kind == JobKind.reindex.value:
        # the alias stays on the live version, whole, rather than move to a partial one
        _end_job(s, job.id, status=JobStatus.failed, error=reason, now=now)
        return JobStatus.failed
    apply(s, update(Job).where(Job.id == job.id).values(sealed=True, error=reason, updated_at=now))
    log.info("job %s: %s", job.id, reason)
    return finish_if_ended(s, job.id, now) or job.status
