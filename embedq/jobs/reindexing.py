"""What the ledger knows of re-indexes: which one is open, which ingestions ran beside it,
and the lock under which an alias may move.

A re-index is not ended by its last batch (see ``steps.finish_if_ended``): its finisher
first re-embeds what was ingested into the collection meanwhile, then swaps the alias
under ``collection_guard`` and ends the job with ``end_reindex``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import cast

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from embedq.jobs.clock import moment
from embedq.jobs.contracts import JobOptions, ReindexOptions, RerankOptions
from embedq.jobs.db import transaction
from embedq.jobs.errors import CollectionBusyError
from embedq.jobs.queries import job_view, open_batch_count, options_of
from embedq.jobs.records import JobView
from embedq.jobs.schema import Job
from embedq.jobs.status import JOB_OPEN, JobKind, JobStatus
from embedq.jobs.steps import apply, insert_job, lock_job


@dataclass(frozen=True)
class CollectionGuard:
    """An open transaction holding a collection's lock."""

    session: Session

    def create_job(
        self,
        *,
        kind: JobKind | str,
        collection: str,
        model: str,
        options: JobOptions | None = None,
        tenant: str | None = None,
    ) -> str:
        """Record a pending job in this transaction (so no alias moves meanwhile)."""
        return insert_job(
            self.session,
            kind=kind,
            collection=collection,
            model=model,
            options=options,
            tenant=tenant,
        )

    def refuse_while_reindexed(self, collection: str, what: str) -> None:
        """Raise ``CollectionBusyError`` while a re-index of ``collection`` is open.

        A re-index copies documents out of the live version; one removed from it meanwhile
        would still be in the new version swapped in at the end.
        """
        query = select(Job.id).where(
            Job.collection == collection,
            Job.kind == JobKind.reindex.value,
            Job.status.in_(JOB_OPEN),
        )
        job_id = self.session.scalars(query.limit(1)).first()
        if job_id is not None:
            raise CollectionBusyError(
                f"collection {collection!r} is being re-indexed (job {job_id}): "
                f"{what} once it has ended"
            )


@contextlib.contextmanager
def collection_guard(sessions: sessionmaker[Session], collection: str) -> Iterator[CollectionGuard]:
    """A transaction holding the collection's lock: creating a job that writes to the
    collection and moving its alias take turns, so no job writes to a version that
    stopped being current while it was created.

    On Postgres an advisory lock on the name; on SQLite every write transaction
    already holds the whole file. Nothing inside may open another ledger transaction.
    """
    with transaction(sessions) as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": collection})
        yield CollectionGuard(s)


def open_reindex(sessions: sessionmaker[Session], *, collection: str) -> JobView | None:
    """The re-index of ``collection`` that has not ended, if there is one."""
    query = select(Job).where(
        Job.collection == collection,
        Job.kind == JobKind.reindex.value,
        Job.status.in_(JOB_OPEN),
    )
    with transaction(sessions, read_only=True) as s:
        job = s.scalars(query.order_by(Job.created_at.desc())).first()
        return None if job is None else job_view(job, open_batch_count(s, job.id))


def ingest_jobs_active_since(
    s: Session, *, collection: str, since: datetime
) -> list[tuple[str, bool]]:
    """Ingestions of ``collection`` open now or changed since ``since``: (id, still open)."""
    query = select(Job.id, Job.status).where(
        Job.collection == collection,
        Job.kind == JobKind.ingest.value,
        or_(Job.status.in_(JOB_OPEN), Job.updated_at >= since),
    )
    return [(job_id, status in JOB_OPEN) for job_id, status in s.execute(query)]


def still_current(guard: CollectionGuard, *, job_id: str, collection: str, since: datetime) -> bool:
    """Under the guard: the re-index has no open batch and nothing was ingested since ``since``."""
    s = guard.session
    job = s.get(Job, job_id)
    if job is None or job.status not in JOB_OPEN or open_batch_count(s, job_id):
        return False
    return not ingest_jobs_active_since(s, collection=collection, since=since)


def active_ingestions(
    sessions: sessionmaker[Session], *, collection: str, since: datetime
) -> list[tuple[str, bool]]:
    with transaction(sessions, read_only=True) as s:
        return ingest_jobs_active_since(s, collection=collection, since=since)


def record_catch_up(sessions: sessionmaker[Session], *, job_id: str, started: datetime) -> None:
    """Remember when the last catch-up round began: the next looks only at what came after."""
    with transaction(sessions) as s:
        job = lock_job(s, job_id)
        options = replace(
            cast(ReindexOptions, options_of(job)), caught_up_since=started.isoformat()
        )
        values = {"options": options.to_json(), "updated_at": moment()}
        apply(s, update(Job).where(Job.id == job_id).values(**values))


def end_reindex(
    guard: CollectionGuard, *, job_id: str, status: JobStatus, error: str | None = None
) -> bool:
    """End an open re-index, in the transaction of its collection's guard."""
    s = guard.session
    now = moment()
    return bool(
        apply(
            s,
            update(Job)
            .where(Job.id == job_id, Job.status.in_(JOB_OPEN))
            .values(status=status, error=error, finished_at=now, updated_at=now),
        )
    )


def last_reindex(sessions: sessionmaker[Session], *, collection: str) -> JobView | None:
    """The newest re-index of ``collection`` that swapped its alias (for a rollback)."""
    query = (
        select(Job)
        .where(
            Job.collection == collection,
            Job.kind == JobKind.reindex.value,
            Job.status == JobStatus.succeeded,
        )
        .order_by(Job.finished_at.desc())
    )
    with transaction(sessions, read_only=True) as s:
        job = s.scalars(query).first()
        return None if job is None else job_view(job, 0)


def writing_collections(sessions: sessionmaker[Session]) -> set[str]:
    """Physical collections an open job still writes to (never garbage)."""
    query = select(Job).where(Job.status.in_(JOB_OPEN))
    with transaction(sessions, read_only=True) as s:
        return {
            options.physical_collection
            for options in map(options_of, s.scalars(query))
            if not isinstance(options, RerankOptions)
        }
