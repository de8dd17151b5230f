"""One batch, end to end: claim → embed → write to Qdrant → mark done in the ledger.

Plain code with no Celery in it: the Celery task and the in-process runner both
call :func:`process_batch`. The batch is marked done only after its vectors are
in Qdrant, and point ids are deterministic, so running a batch twice (a
redelivered task, a lease taken over) overwrites instead of duplicating, and
the ledger counts it once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import torch

from embedq import jobs
from embedq.errors import PermanentError, RetryableError
from embedq.faults import fault_point
from embedq.jobs.fingerprint import content_hash, embedding_settings
from embedq.models import EmbeddingResult
from embedq.store import PointData, UpsertReport
from embedq.store import documents as stored
from embedq.workers.context import WorkerContext
from embedq.workers.leases import LeaseKeeper
from embedq.workers.reindex.finishing import finish_reindex, ingestion_ended
from embedq.workers.rerank.ranking import rerank_claim

logger = logging.getLogger(__name__)

Publish = Callable[[str], None]
Done = TypeVar("Done")


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to a batch in this attempt, and where its time went (seconds by stage)."""

    status: Literal["succeeded", "writing", "skipped", "split", "failed"]
    documents_done: int = 0
    documents_failed: int = 0
    children: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def stages(self) -> str:
        return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in self.timings.items())


@dataclass(frozen=True)
class BatchSummary:
    points: list[PointData]
    documents_done: int
    chunks_done: int
    tokens_done: int
    failures: list[jobs.Failure]


class StageClock:
    """Adds up wall time per named stage of one batch."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def process_batch(context: WorkerContext, batch_id: str, *, publish: Publish) -> BatchOutcome:
    """Run one batch if it is ours to run; split it in two if it cannot finish in memory.

    With a ``context.writer`` the batch is handed over once embedded (status
    ``writing``) and its write runs in the background; without one it ends here.
    """
    clock = StageClock()
    with clock.stage("claim"):
        context.qdrant_gate.wait()  # Qdrant is away: embedding now would be for nothing
        claim = jobs.claim_batch(
            context.sessions,
            batch_id=batch_id,
            worker=context.worker_id,
            lease_seconds=context.settings.lease_seconds,
        )
    if claim is None:
        logger.info("batch %s is not ours to run (done, cancelled or leased)", batch_id)
        return BatchOutcome("skipped", timings=clock.seconds)
    lease = LeaseKeeper(context, claim.batch_id).start()
    if claim.kind == jobs.JobKind.rerank:  # results go to the ledger: no Qdrant, no writer
        return _rerank(context, claim, clock, lease, publish=publish)
    if claim.kind == jobs.JobKind.delete or claim.role == jobs.SWEEP:  # removes, embeds nothing
        return _remove(context, claim, clock, lease)
    try:
        embedded = _embed_or_split(context, claim, clock, publish=publish)
    except BaseException:
        lease.stop()
        raise
    if isinstance(embedded, BatchOutcome):  # split or failed: nothing to write
        lease.stop()
        after_batch(context, claim, None)
        return embedded
    if context.writer is None:
        return write_batch(context, claim, embedded, clock, lease)
    # the upsert on the writer's thread; marking the batch done behind it, on another
    write = functools.partial(upsert_batch, context, claim, embedded, clock, lease)
    finish = functools.partial(finish_batch, context, claim, clock, lease)
    context.writer.submit(claim.batch_id, write, then=finish)
    return BatchOutcome(
        "writing", embedded.documents_done, len(embedded.failures), timings=clock.seconds
    )


def _embed_or_split(
    context: WorkerContext, claim: jobs.Claim, clock: StageClock, *, publish: Publish
) -> BatchSummary | BatchOutcome:
    """The batch's points, or the outcome of a batch that cannot be embedded as it is."""
    return _run_or_split(context, claim, clock, "embed", embed_claim, publish=publish)


def _run_or_split(
    context: WorkerContext,
    claim: jobs.Claim,
    clock: StageClock,
    stage: str,
    work: Callable[[WorkerContext, jobs.Claim], Done],
    *,
    publish: Publish,
) -> Done | BatchOutcome:
    """What ``work`` makes of the batch, or the outcome of a batch it cannot finish as it is."""
    try:
        with _released_on_retryable(context, claim.batch_id), clock.stage(stage):
            return work(context, claim)
    except (torch.OutOfMemoryError, MemoryError):
        pass  # split below, outside the except block, so the failed pass's memory is released
    except PermanentError as error:  # the same batch would fail the same way on any worker
        return _failed(context, claim, error, clock)
    outcome = split_or_fail(context, claim, publish=publish)
    return dataclasses.replace(outcome, timings=clock.seconds)


def _rerank(
    context: WorkerContext,
    claim: jobs.Claim,
    clock: StageClock,
    lease: LeaseKeeper,
    *,
    publish: Publish,
) -> BatchOutcome:
    """Score and rank the batch's queries; their results are recorded as the batch completes."""
    try:
        ranked = _run_or_split(context, claim, clock, "rerank", rerank_claim, publish=publish)
        if isinstance(ranked, BatchOutcome):
            return ranked
        with clock.stage("complete"):
            jobs.complete_rerank_batch(
                context.sessions,
                batch_id=claim.batch_id,
                results=ranked.results,
                failures=ranked.failures,
            )
    finally:
        lease.stop()
    outcome = BatchOutcome(
        "succeeded", ranked.queries_done, len(ranked.failures), timings=clock.seconds
    )
    logger.info("batch %s: %s (%s)", claim.batch_id, outcome.status, outcome.stages())
    return outcome


def _remove(
    context: WorkerContext, claim: jobs.Claim, clock: StageClock, lease: LeaseKeeper
) -> BatchOutcome:
    """Run a delete job's batch of ids, or a sync's sweep; nothing is embedded."""
    try:
        with _released_on_retryable(context, claim.batch_id), clock.stage("remove"):
            lease.confirm()  # a late removal could take away what a later job wrote
            if claim.role == jobs.SWEEP:
                deleted, refusal = sweep(context, claim)
                completion = jobs.complete_sweep(
                    context.sessions, batch_id=claim.batch_id, deleted=deleted, refusal=refusal
                )
            else:
                ids, deleted = delete_claim(context, claim)
                completion = jobs.complete_batch(
                    context.sessions,
                    batch_id=claim.batch_id,
                    documents_done=ids,
                    documents_deleted=deleted,
                )
    except PermanentError as error:
        return _failed(context, claim, error, clock)
    except jobs.LeaseLostError as error:
        return _dropped(claim, error, clock)
    finally:
        lease.stop()
    after_batch(context, claim, completion)
    outcome = BatchOutcome("succeeded", documents_done=deleted, timings=clock.seconds)
    logger.info("batch %s: %d documents deleted (%s)", claim.batch_id, deleted, outcome.stages())
    return outcome


def delete_claim(context: WorkerContext, claim: jobs.Claim) -> tuple[int, int]:
    """Remove the batch's documents; how many ids it held, and how many were stored."""
    client, physical = context.store.client, physical_collection(claim)
    ids = [str(document["id"]) for document in claim.documents]
    present = stored.stored_hashes(client, physical, ids)
    stored.delete_documents(client, physical, ids)
    return len(ids), len(present)


def sweep(context: WorkerContext, claim: jobs.Claim) -> tuple[int, str | None]:
    """Remove what a sync's input did not hold; how many documents, or why none."""
    client, physical = context.store.client, physical_collection(claim)
    unreadable = jobs.unidentified_intake_failures(context.sessions, job_id=claim.job_id)
    if unreadable:
        return 0, (
            f"the sync deleted nothing: {unreadable:,} line(s) of its input could not be read, "
            "and any of them may have been a document the collection holds"
        )
    doomed = stored.not_in_sync(claim.job_id)
    count = stored.count_documents(client, physical, doomed)
    total = stored.count_documents(client, physical)
    limit = float(claim.options.get("max_delete_share", 1.0))
    if count and count > limit * total:
        return 0, (
            f"the sync deleted nothing: it would delete {count:,} of the collection's "
            f"{total:,} documents ({count / total:.0%}), more than the {limit:.0%} allowed; "
            "run it again with --force to delete them"
        )
    if count:
        stored.delete_where(client, physical, doomed, f"sweep {count} documents")
    return count, None


def write_batch(
    context: WorkerContext,
    claim: jobs.Claim,
    summary: BatchSummary,
    clock: StageClock,
    lease: LeaseKeeper,
) -> BatchOutcome:
    """Upsert the batch's points, then mark it done; the lease is kept until then."""
    written = upsert_batch(context, claim, summary, clock, lease)
    return finish_batch(context, claim, clock, lease, written)


def upsert_batch(
    context: WorkerContext,
    claim: jobs.Claim,
    summary: BatchSummary,
    clock: StageClock,
    lease: LeaseKeeper,
) -> BatchSummary | PermanentError | jobs.LeaseLostError:
    """Write the batch's points, then remove what is left of its documents' earlier
    versions; the summary of what landed, the error that fails the batch, or the news
    that the batch is another worker's now."""
    # a failed write is published again a lease from now (see tasks.write_retrier)
    retry_in = context.settings.lease_seconds if context.writer is not None else 0.0
    try:
        with _released_on_retryable(context, claim.batch_id, retry_in=retry_in):
            lease.confirm()  # taken over while this worker was cut off: write nothing
            with clock.stage("upsert"):
                report = _upsert(context, physical_collection(claim), summary.points)
            with clock.stage("clean-up"):
                landed = without_refused(summary, report.refused)
                clean_up(context, claim, landed, refused=report.refused)
    except (PermanentError, jobs.LeaseLostError) as error:
        return error
    except BaseException:
        lease.stop()  # released (a passing failure) or left to run out: not ours any more
        raise
    return landed


def _upsert(context: WorkerContext, physical: str, points: Sequence[PointData]) -> UpsertReport:
    """The store's upsert, with what it says of Qdrant told to the worker's Qdrant gate."""
    try:
        report = context.store.upsert(physical, points)
    except RetryableError as error:
        context.qdrant_gate.failed(error)
        raise
    context.qdrant_gate.succeeded()
    return report


def clean_up(
    context: WorkerContext, claim: jobs.Claim, landed: BatchSummary, *, refused: Mapping[str, str]
) -> None:
    """Each written document holds its new chunks and nothing else; a refused one, nothing.

    A refused document's other chunks may have landed, beside an earlier version's:
    half of one version and half of another would be neither, so all of it goes.
    """
    client, physical = context.store.client, physical_collection(claim)
    fault_point("after-upsert")
    stored.remove_stale(client, physical, chunks_per_document(landed.points))
    stored.delete_documents(client, physical, list(refused))


def chunks_per_document(points: Sequence[PointData]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for point in points:
        counts[point.doc_id] = max(counts.get(point.doc_id, 0), point.chunk + 1)
    return counts


def without_refused(summary: BatchSummary, refused: Mapping[str, str]) -> BatchSummary:
    """The summary with each document Qdrant refused moved from done to failed."""
    if not refused:
        return summary
    points = [point for point in summary.points if point.doc_id not in refused]
    lost = [point for point in summary.points if point.doc_id in refused]
    failures = [jobs.Failure(doc_id=doc_id, reason=reason) for doc_id, reason in refused.items()]
    return BatchSummary(
        points,
        summary.documents_done - len(refused),
        summary.chunks_done - len(lost),
        summary.tokens_done,  # embedded all the same
        [*summary.failures, *failures],
    )


def finish_batch(
    context: WorkerContext,
    claim: jobs.Claim,
    clock: StageClock,
    lease: LeaseKeeper,
    written: BatchSummary | PermanentError | jobs.LeaseLostError,
) -> BatchOutcome:
    """Mark the written batch done (or failed, with an error) and take what follows."""
    if isinstance(written, jobs.LeaseLostError):
        lease.stop()
        return _dropped(claim, written, clock)
    try:
        if isinstance(written, PermanentError):
            outcome, completion = _failed(context, claim, written, clock), None
        else:
            summary = written
            with clock.stage("complete"):
                completion = jobs.complete_batch(
                    context.sessions,
                    batch_id=claim.batch_id,
                    documents_done=summary.documents_done,
                    chunks_done=summary.chunks_done,
                    tokens_done=summary.tokens_done,
                    failures=summary.failures,
                )
            outcome = BatchOutcome(
                "succeeded", summary.documents_done, len(summary.failures), timings=clock.seconds
            )
    finally:
        lease.stop()
    after_batch(context, claim, completion)
    logger.info("batch %s: %s (%s)", claim.batch_id, outcome.status, outcome.stages())
    if context.on_written is not None:
        context.on_written(outcome)
    return outcome


def _dropped(claim: jobs.Claim, error: jobs.LeaseLostError, clock: StageClock) -> BatchOutcome:
    logger.warning("batch %s dropped, nothing written: %s", claim.batch_id, error)
    return BatchOutcome("skipped", timings=clock.seconds)


def _failed(
    context: WorkerContext, claim: jobs.Claim, error: PermanentError, clock: StageClock
) -> BatchOutcome:
    logger.error("batch %s failed: %s", claim.batch_id, error)
    jobs.fail_batch(context.sessions, batch_id=claim.batch_id, error=str(error))
    return BatchOutcome("failed", documents_failed=len(claim.documents), timings=clock.seconds)


def physical_collection(claim: jobs.Claim) -> str:
    """Workers write to the versioned collection the job was created with, not the alias."""
    return str(claim.options["physical_collection"])


def after_batch(
    context: WorkerContext, claim: jobs.Claim, completion: jobs.Completion | None
) -> None:
    """What a batch's end sets off: a re-index's next step, or the end of its job's load.

    ``completion`` is what completing it said (None for a failure or a split).
    """
    if claim.kind == jobs.JobKind.reindex:
        finish_reindex(
            context.sessions, context.store, _reindex_publisher(context), job_id=claim.job_id
        )
        return
    if completion is not None and completion.counted:  # the ledger told whether the job ended
        ended = completion.job_ended is not None
    else:  # a failure, or the job ended otherwise meanwhile (cancelled): ask
        view = jobs.get_job(context.sessions, job_id=claim.job_id)
        ended = view is not None and view.ended
    if ended:
        ingestion_ended(
            context.sessions,
            context.store,
            _reindex_publisher(context),
            physical=physical_collection(claim),
            collection=claim.collection,
        )


def _reindex_publisher(context: WorkerContext) -> Publish:
    def publish(batch_id: str) -> None:
        if context.publish_reindex is None:
            raise RuntimeError("this worker context cannot queue re-index batches")
        context.publish_reindex(batch_id)

    return publish


@contextlib.contextmanager
def _released_on_retryable(
    context: WorkerContext, batch_id: str, *, retry_in: float = 0.0
) -> Iterator[None]:
    """Hand the batch back on a passing failure, so a retry need not wait out the lease;
    ``retry_in``: when the retry's message is due."""
    try:
        yield
    except RetryableError:
        worker = context.worker_id
        jobs.release_batch(context.sessions, batch_id=batch_id, worker=worker, retry_in=retry_in)
        raise


def embed_claim(context: WorkerContext, claim: jobs.Claim) -> BatchSummary:
    embedder = context.embedder(claim.model, claim.options)
    documents = claim.documents
    results = embedder.embed([document["text"] for document in documents])
    settings = embedding_settings(claim.model, claim.options)
    return summarise(documents, results, job_id=claim.job_id, model=claim.model, settings=settings)


def summarise(
    documents: Sequence[dict[str, Any]],
    results: Sequence[EmbeddingResult],
    *,
    job_id: str,
    model: str,
    settings: list[Any] | None = None,
) -> BatchSummary:
    """The points of the documents that embedded, and a failure for each that did not.

    With ``settings`` (the job's embedding settings), each point carries its
    document's content hash.
    """
    points, failures = [], []
    chunks = tokens = 0
    for document, result in zip(documents, results, strict=True):
        digest = None if settings is None else content_hash(document, settings)
        if not result.ok:
            failures.append(
                jobs.Failure(doc_id=document["id"], line=None, reason=str(result.error))
            )
            continue
        for index, chunk in enumerate(result.chunks):
            text = document["text"]
            if chunk.start is not None and chunk.end is not None:
                text = text[chunk.start : chunk.end]
            points.append(
                PointData(
                    doc_id=document["id"],
                    chunk=index,
                    text=text,
                    metadata=document.get("metadata"),
                    job_id=job_id,
                    model=model,
                    dense=chunk.dense,
                    sparse=chunk.sparse,
                    colbert=chunk.colbert,
                    document=document["text"] if index == 0 and text != document["text"] else None,
                    content_hash=digest,
                )
            )
            chunks += 1
            tokens += chunk.num_tokens
    done = len(documents) - len(failures)
    return BatchSummary(points, done, chunks, tokens, failures)


def split_or_fail(context: WorkerContext, claim: jobs.Claim, *, publish: Publish) -> BatchOutcome:
    """Replace a batch that ran out of memory by two halves, or fail a single document."""
    documents = claim.documents
    if len(documents) == 1:
        reason = "out of memory even as a batch of one document"
        jobs.fail_batch(context.sessions, batch_id=claim.batch_id, error=reason)
        return BatchOutcome("failed", documents_failed=1)
    middle = len(documents) // 2
    children = jobs.split_batch(
        context.sessions, batch_id=claim.batch_id, halves=(documents[:middle], documents[middle:])
    )
    for child in children:
        publish(child.id)
    logger.warning("batch %s ran out of memory: split into %d", claim.batch_id, len(children))
    return BatchOutcome("split", children=[child.id for child in children])
