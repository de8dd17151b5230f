"""Ending a re-index: catch up with what was ingested meanwhile, then swap the alias.

Called whenever a re-index may have nothing left to run: after each of its
batches, and after each ingestion of its collection ends. Each call does one step:

1. a batch is still open, or an ingestion of the collection is still running
   (it writes to the old version): nothing yet, a later call finishes;
2. ingestions ran since the last look: their documents are read back from the old
   version and queued again as catch-up batches of the re-index (new model, new version);
3. nothing new: under the collection's guard, check once more that nothing was
   ingested since this call began, swap the alias and end the job as succeeded.

A re-index with failed documents never swaps: it ends failed, saying why, and the
alias stays where it was. So do cancelled ones (the cancel ends them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.jobs import reindexing
from embedq.jobs.clock import moment
from embedq.store import QdrantStore

logger = logging.getLogger(__name__)

# Where catch-up batches go; what it returns (an async result, say) is not used.
Publish = Callable[[str], object]

CATCH_UP_BATCH = 256


@dataclass(frozen=True)
class ReindexPlan:
    """Where a re-index reads from and writes to."""

    job_id: str
    collection: str
    source: str  # the version the alias pointed at when it began
    target: str  # the version it builds
    drop_old: bool
    since: datetime  # ingestions changed after this are caught up next

    @classmethod
    def of(cls, view: jobs.JobView) -> ReindexPlan:
        options = view.options
        assert isinstance(options, jobs.ReindexOptions)
        since = options.caught_up_since
        return cls(
            job_id=view.id,
            collection=view.collection,
            source=options.source_collection,
            target=options.physical_collection,
            drop_old=options.drop_old,
            since=datetime.fromisoformat(since) if since else view.created_at,
        )


def finish_reindex(
    sessions: sessionmaker[Session],
    store: QdrantStore,
    publish: Publish,
    *,
    job_id: str,
) -> None:
    """Take the next step toward ending the re-index ``job_id`` (see the module's notes)."""
    view = jobs.get_job(sessions, job_id=job_id)
    if view is None or view.ended or not view.sealed or view.open_batches:
        return
    plan = ReindexPlan.of(view)
    if view.documents_failed:
        _fail(sessions, plan, f"{view.documents_failed} documents could not be re-embedded")
        return
    started = moment()
    active = reindexing.active_ingestions(sessions, collection=plan.collection, since=plan.since)
    if any(still_open for _, still_open in active):
        return  # its end calls again
    if active and _catch_up(sessions, store, publish, plan, [job for job, _ in active], started):
        return
    _swap(sessions, store, plan, started)


def ingestion_ended(
    sessions: sessionmaker[Session],
    store: QdrantStore,
    publish: Publish,
    *,
    physical: str,
    collection: str,
) -> None:
    """What the end of an ingestion sets off, whoever saw it end (its last batch, its
    producer, a reaper): the index deferred while it loaded is built again, and a re-index
    of its collection may catch up with what it wrote."""
    store.finish_bulk_load(physical)
    finish_reindex_of_collection(sessions, store, publish, collection=collection)


def finish_reindex_of_collection(
    sessions: sessionmaker[Session],
    store: QdrantStore,
    publish: Publish,
    *,
    collection: str,
) -> None:
    """After an ingestion of ``collection`` ends: the re-index of it may go on."""
    view = reindexing.open_reindex(sessions, collection=collection)
    if view is not None:
        finish_reindex(sessions, store, publish, job_id=view.id)


def _catch_up(
    sessions: sessionmaker[Session],
    store: QdrantStore,
    publish: Publish,
    plan: ReindexPlan,
    ingestions: list[str],
    started: datetime,
) -> bool:
    """Queue the documents these ingestions wrote again, for the new version; False if none."""
    reindexing.record_catch_up(sessions, job_id=plan.job_id, started=started)
    batches = 0
    for stored in _groups(store.documents(plan.source, job_ids=ingestions), CATCH_UP_BATCH):
        documents = [jobs.Document.from_json(document) for document in stored]
        ref = jobs.add_batch(sessions, job_id=plan.job_id, documents=documents, catch_up=True)
        publish(ref.id)
        batches += 1
    logger.info(
        "re-index %s: %d catch-up batches for %d ingestions", plan.job_id, batches, len(ingestions)
    )
    return batches > 0


def _swap(
    sessions: sessionmaker[Session], store: QdrantStore, plan: ReindexPlan, started: datetime
) -> None:
    with reindexing.collection_guard(sessions, plan.collection) as guard:
        if not reindexing.still_current(
            guard, job_id=plan.job_id, collection=plan.collection, since=started
        ):
            return  # something came in meanwhile: its end calls again
        store.finish_bulk_load(plan.target)
        store.swap_alias(plan.collection, plan.target)
        reindexing.end_reindex(guard, job_id=plan.job_id, status=jobs.JobStatus.succeeded)
    logger.info("re-index %s: %s now points at %s", plan.job_id, plan.collection, plan.target)
    if plan.drop_old:
        store.delete(plan.source)


def _fail(sessions: sessionmaker[Session], plan: ReindexPlan, why: str) -> None:
    error = f"{why}: the alias {plan.collection!r} stays on {plan.source}"
    with reindexing.collection_guard(sessions, plan.collection) as guard:
        reindexing.end_reindex(guard, job_id=plan.job_id, status=jobs.JobStatus.failed, error=error)
    logger.error("re-index %s failed: %s", plan.job_id, error)


def _groups(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    group: list[dict[str, Any]] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group
