"""Creating an ingestion job: check everything up front, then stream batches into the queue.

Up front (before the job exists): the files open, the model is known, and the
collection exists with a compatible shape or is created. Then documents stream
from the files into length-bucketed batches, each recorded in the ledger and
published, waiting while the queue is above its high-water mark so the broker
never holds a whole corpus.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from uuid import uuid4

from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.api.ingest.batching import length_bucketed
from embedq.api.ingest.reader import Rejected, UnreadableInputError, read_documents
from embedq.api.ingest.screening import Screen
from embedq.api.stopping import stop_reason
from embedq.jobs import reindexing
from embedq.jobs.contracts import Document, Embedding, IngestOptions, JobOptions
from embedq.models.describe import describe_model
from embedq.outages import LEDGER, ride_out
from embedq.store import CollectionShape, QdrantStore
from embedq.workers.queues import BatchQueue, InProcessQueue
from embedq.workers.reindex.finishing import ingestion_ended

logger = logging.getLogger(__name__)

# Rejected lines are written to the ledger in groups of this many.
FAILURE_FLUSH = 500
BACKPRESSURE_POLL_S = 0.5
# While held back by a full queue, a producer shows the ledger it is alive this often,
# so its job is not taken for abandoned (settings.abandon_after_seconds).
HEARTBEAT_S = 30.0

Item = TypeVar("Item")


@dataclass(frozen=True)
class IngestRequest:
    files: Sequence[Path]
    collection: str
    model: str
    outputs: str | None = None
    max_length: int | None = None
    long_text: jobs.LongText = "chunk"
    batch_size: int = jobs.DEFAULT_BATCH_SIZE
    # skip documents the collection holds exactly as they would be written now
    skip_unchanged: bool = False
    # that (whatever ``skip_unchanged`` says), and once every document has landed, remove
    # those the input no longer holds, unless they are more than ``max_delete_share`` of it
    sync: bool = False
    max_delete_share: float = 1.0


@dataclass(frozen=True)
class OpenedJob:
    """A job ready for batches: its id, and the versioned collection its workers write to."""

    job_id: str
    physical: str
    collection: str
    model: str
    options: JobOptions

    def screen(self, store: QdrantStore) -> Screen | None:
        """What skips this job's unchanged documents (None: it embeds them all)."""
        if not isinstance(self.options, IngestOptions):
            return None
        return Screen.of(store.client, job_id=self.job_id, model=self.model, options=self.options)


def submit(
    request: IngestRequest,
    *,
    sessions: sessionmaker[Session],
    store: QdrantStore,
    queue: BatchQueue,
    high_water_mark: int,
    on_batch: Callable[[str], None] | None = None,
) -> str:
    """Create, fill and seal an ingestion job; returns its id."""
    for path in request.files:
        check_readable(path)
    job = open_job(request, sessions=sessions, store=store)
    fill = functools.partial(
        add_documents,
        job.job_id,
        read_all(request.files),
        sessions=sessions,
        queue=queue,
        batch_size=request.batch_size,
        high_water_mark=high_water_mark,
        on_batch=on_batch,
        screen=job.screen(store),
    )
    return fill_and_seal(job, fill, sessions=sessions, store=store, queue=queue)


def fill_and_seal(
    job: OpenedJob,
    fill: Callable[[], object],
    *,
    sessions: sessionmaker[Session],
    store: QdrantStore,
    queue: BatchQueue,
) -> str:
    """Run ``fill`` (read the job's input into batches), then seal the job; returns its id.

    Whatever stops either is recorded on the job, which then ends with what it got.
    """
    ended = functools.partial(wind_up, job, sessions=sessions, store=store, queue=queue)
    with stops_recorded(job.job_id, sessions=sessions, queue=queue, ended=ended):
        fill()
        seal(job, sessions=sessions, store=store, queue=queue)
    return job.job_id


def open_job(
    request: IngestRequest,
    *,
    sessions: sessionmaker[Session],
    store: QdrantStore,
    tenant: str | None = None,
) -> OpenedJob:
    """Check the model, create or check the collection, and record a pending job.

    An unknown model or an incompatible collection raises before the job exists.
    """
    description = describe_model(request.model)
    outputs = description.choose(request.outputs)
    shape = CollectionShape.for_outputs(description, outputs)
    # under the collection's guard, so a re-index cannot move the alias in between
    with reindexing.collection_guard(sessions, request.collection) as guard:
        if request.sync:
            guard.refuse_while_reindexed(request.collection, "sync it")
        physical = store.ensure_collection(request.collection, shape)
        options = job_options(request, outputs, physical)
        job_id = guard.create_job(
            kind="ingest",
            collection=request.collection,
            model=request.model,
            options=options,
            tenant=tenant,
        )
    store.begin_bulk_load(physical)
    logger.info("job %s: ingesting into %s (%s)", job_id, request.collection, physical)
    return OpenedJob(job_id, physical, request.collection, request.model, options)


def add_documents(
    job_id: str,
    outcomes: Iterable[Document | Rejected],
    *,
    sessions: sessionmaker[Session],
    queue: BatchQueue,
    batch_size: int,
    high_water_mark: int | None,
    on_batch: Callable[[str], None] | None = None,
    screen: Screen | None = None,
) -> int:
    """Record and publish the documents in length-bucketed batches; returns the batches.

    Rejected outcomes become the job's failures. Waits while the queue is above
    ``high_water_mark``, so the broker never holds a whole corpus (None: never
    waits, for a caller that checked the queue before taking the documents). With a
    ``screen``, documents the collection holds as they are are counted unchanged instead.
    """
    if screen is not None:
        outcomes = screen.changed(
            outcomes,
            on_unchanged=lambda n: ride_out(
                lambda: jobs.record_unchanged(sessions, job_id=job_id, count=n), service=LEDGER
            ),
        )
    documents = accepted(outcomes, sessions=sessions, job_id=job_id)
    return publish_batches(
        job_id,
        length_bucketed(documents, batch_size=batch_size),
        sessions=sessions,
        queue=queue,
        high_water_mark=high_water_mark,
        on_batch=on_batch,
    )


def publish_batches(
    job_id: str,
    batches: Iterable[Sequence[jobs.Payload]],
    *,
    sessions: sessionmaker[Session],
    queue: BatchQueue,
    high_water_mark: int | None,
    on_batch: Callable[[str], None] | None = None,
) -> int:
    """Record each batch in the ledger and publish it (after the backpressure wait).

    A ledger or broker out of reach for a moment is waited for (``outages.ride_out``);
    the batch's id is chosen first, so recording it again after a lost answer adds nothing.
    """
    published = 0
    for batch in batches:
        if high_water_mark is not None:
            wait_below(queue, high_water_mark, job_id=job_id, sessions=sessions)
        batch_id = uuid4().hex
        record = functools.partial(
            jobs.add_batch, sessions, job_id=job_id, documents=batch, batch_id=batch_id
        )
        ride_out(record, service=LEDGER)
        queue.publish(batch_id)
        published += 1
        if on_batch is not None:
            on_batch(job_id)
    return published


def seal(
    job: OpenedJob, *, sessions: sessionmaker[Session], store: QdrantStore, queue: BatchQueue
) -> jobs.JobStatus:
    """No more batches: the job ends once they have (at once if they already have)."""
    queue.drain()
    status = ride_out(lambda: jobs.seal_job(sessions, job_id=job.job_id), service=LEDGER)
    if status not in jobs.JOB_ENDED:
        status = publish_due(job.job_id, sessions=sessions, queue=queue)
    if status in jobs.JOB_ENDED:  # every batch already ran (in-process, or none)
        wind_up(job, sessions=sessions, store=store, queue=queue)
    return status


def publish_due(
    job_id: str, *, sessions: sessionmaker[Session], queue: BatchQueue
) -> jobs.JobStatus:
    """Publish the job's batches nothing published yet (a sync's sweep, queued as it was
    sealed) rather than leave them to a reaper's next round; the job's status afterwards."""
    for batch_id in jobs.take_unpublished(sessions, job_id=job_id):
        queue.publish(batch_id)
    queue.drain()
    view = jobs.get_job(sessions, job_id=job_id)
    if view is None:
        raise jobs.JobNotFoundError(f"no job {job_id}")
    return view.status


def job_options(request: IngestRequest, outputs: frozenset[str], physical: str) -> IngestOptions:
    embedding = Embedding(outputs, request.max_length, request.long_text)
    return IngestOptions(
        physical_collection=physical,
        embedding=embedding,
        batch_size=request.batch_size,
        skip_unchanged=request.skip_unchanged or request.sync,
        sync=request.sync,
        max_delete_share=request.max_delete_share,
    )


def check_readable(path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise UnreadableInputError(f"cannot read {path}: {error.strerror or error}") from error


def read_all(files: Iterable[Path]) -> Iterator[Document | Rejected]:
    """Every file's outcomes; ids must be unique across the whole job, not just one file."""
    seen: set[str] = set()
    for path in files:
        yield from read_documents(path, seen=seen)


def accepted(
    outcomes: Iterable[Item | Rejected], *, sessions: sessionmaker[Session], job_id: str
) -> Iterator[Item]:
    """The documents (or queries); rejected lines go to the ledger as failures along the way."""
    rejected: list[jobs.Failure] = []
    for outcome in outcomes:
        if not isinstance(outcome, Rejected):
            yield outcome
            continue
        rejected.append(
            jobs.Failure(doc_id=outcome.doc_id, line=outcome.line, reason=outcome.reason)
        )
        if len(rejected) >= FAILURE_FLUSH:
            _record_rejected(sessions, job_id, rejected)
            rejected = []
    if rejected:
        _record_rejected(sessions, job_id, rejected)


def _record_rejected(
    sessions: sessionmaker[Session], job_id: str, rejected: Sequence[jobs.Failure]
) -> None:
    record = functools.partial(
        jobs.record_intake_failures, sessions, job_id=job_id, failures=rejected
    )
    ride_out(record, service=LEDGER)


def wait_below(
    queue: BatchQueue, high_water_mark: int, *, job_id: str, sessions: sessionmaker[Session]
) -> None:
    """Backpressure: hold the next batch while the broker already has plenty queued.

    Meanwhile the job is touched every ``HEARTBEAT_S``: it is waiting, not abandoned.
    """
    waited = False
    beat = time.monotonic()
    while queue.depth() >= high_water_mark:
        if not waited:
            logger.info("queue above %d batches: waiting", high_water_mark)
            waited = True
        if time.monotonic() - beat >= HEARTBEAT_S:
            ride_out(lambda: jobs.touch_job(sessions, job_id=job_id), service=LEDGER)
            beat = time.monotonic()
        time.sleep(BACKPRESSURE_POLL_S)


# --- a producer stopped part-way ----------------------------------------------------------


@contextlib.contextmanager
def stops_recorded(
    job_id: str,
    *,
    sessions: sessionmaker[Session],
    queue: BatchQueue,
    ended: Callable[[], object] | None = None,
) -> Iterator[None]:
    """Whatever stops the block (an error, Ctrl-C, SIGTERM) is recorded on the job, which
    then ends with what it got instead of staying open; the error goes on.

    Documents already published still land. ``ended`` runs if the job ends at once.
    """
    try:
        yield
    except BaseException as error:
        _record_stop(job_id, error, sessions=sessions, queue=queue, ended=ended)
        raise


def stop(
    job: OpenedJob,
    reason: str,
    *,
    sessions: sessionmaker[Session],
    store: QdrantStore,
    queue: BatchQueue,
) -> jobs.JobStatus:
    """Seal a job whose producer stopped part-way, with ``reason``: it ends with what it got
    (partial at best, see ``jobs.stop_intake``), at once if its batches already have."""
    status = jobs.stop_intake(sessions, job_id=job.job_id, reason=reason)
    if status in jobs.JOB_ENDED:
        wind_up(job, sessions=sessions, store=store, queue=queue)
    return status


def wind_up(
    job: OpenedJob, *, sessions: sessionmaker[Session], store: QdrantStore, queue: BatchQueue
) -> None:
    """What follows the end of an ingestion that ended here, not with a batch of it."""
    ingestion_ended(
        sessions, store, queue.publish, physical=job.physical, collection=job.collection
    )
    queue.drain()


def end_abandoned_here(sessions: sessionmaker[Session], *, idle_seconds: float) -> list[str]:
    """Where batches run in the producer's own process, no reaper runs: end the jobs an
    earlier producer left open (it was killed), failing the batches it would have run."""
    try:
        ended = jobs.end_abandoned_jobs(sessions, idle_seconds=idle_seconds)
        for job_id in ended:
            view = jobs.get_job(sessions, job_id=job_id)
            reason = (view.error if view else None) or "abandoned by its producer"
            jobs.fail_open_batches(sessions, job_id=job_id, reason=reason)
            logger.warning("job %s was abandoned by its producer: ended", job_id)
    except Exception:  # this command goes on; the next one tries again
        logger.warning("could not end abandoned jobs", exc_info=True)
        return []
    return ended


def _record_stop(
    job_id: str,
    error: BaseException,
    *,
    sessions: sessionmaker[Session],
    queue: BatchQueue,
    ended: Callable[[], object] | None,
) -> None:
    """Best effort: should the ledger be out of reach too, a reaper ends the job later."""
    try:
        view = jobs.get_job(sessions, job_id=job_id)
        reason = stop_reason(error, view.documents_total if view else 0)
        logger.info("job %s: %s", job_id, reason)
        if isinstance(queue, InProcessQueue):
            _settle_here(job_id, reason, error, sessions=sessions, queue=queue)
        if jobs.stop_intake(sessions, job_id=job_id, reason=reason) in jobs.JOB_ENDED and ended:
            ended()
    except Exception:
        logger.warning(
            "job %s: could not record why its intake stopped; a reaper ends it if still open",
            job_id,
            exc_info=True,
        )


def _settle_here(
    job_id: str,
    reason: str,
    error: BaseException,
    *,
    sessions: sessionmaker[Session],
    queue: InProcessQueue,
) -> None:
    """Batches this process runs itself: nothing else ever will. After an error, those
    already published are run; after an interrupt, none. What is left open fails."""
    if isinstance(error, Exception):
        try:
            queue.drain()
        except Exception:
            logger.warning("job %s: its published batches did not all run", job_id, exc_info=True)
    jobs.fail_open_batches(sessions, job_id=job_id, reason=reason)
