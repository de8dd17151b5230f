"""``/v1/jobs``: create, append, seal, poll (ETag and long-poll), list, failures, cancel.

Every route is scoped to the caller's tenant: another tenant's job is answered
exactly like a missing one (404), so job ids reveal nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from embedq import jobs
from embedq.api.http.auth import Caller, caller
from embedq.api.http.ownership import check_collection_owner
from embedq.api.http.problems import ApiProblem, not_found
from embedq.api.http.resources import Backend
from embedq.api.http.schemas import (
    COLLECTION_PATTERN,
    JOB_ID_PATTERN,
    BatchesOut,
    BatchIn,
    DocumentIn,
    FailurePage,
    JobIn,
    JobOut,
    JobPage,
    Problem,
    RejectedIn,
    SealIn,
    failure_out,
)
from embedq.api.http.views import etag_of, job_out
from embedq.api.ingest import producer
from embedq.api.ingest.reader import Rejected, document_from, once_per_id
from embedq.api.rerank import submission
from embedq.jobs.contracts import Document

router = APIRouter(prefix="/v1", tags=["jobs"])

T = TypeVar("T")

FIRST_ERRORS = 5
LONG_POLL_MAX_S = 30.0
LONG_POLL_STEP_S = 0.25
RETRY_AFTER_FULL_S = 5
PAGE_MAX = 500
OFFSET_MAX = 2**31 - 1  # past any real listing, and inside every database's integers

PROBLEMS: dict[int | str, dict[str, object]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (401, 404, 409, 413, 422, 429, 503)
}

Who = Annotated[Caller, Depends(caller)]
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="a job id: 32 hex digits")]


def backend_of(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


@router.post("/jobs", status_code=201, response_model=JobOut, responses=PROBLEMS)
async def create_job(body: JobIn, request: Request, response: Response, who: Who) -> JobOut:
    """Create an ingestion job, with a first batch of documents if given; ``seal`` ends intake."""
    backend = backend_of(request)
    if body.sync and who.tenant is not None:  # a sync deletes: only in the tenant's own
        await backend.run(_check_sync_owner, backend, body.collection, who.tenant)
    if body.documents:
        await refuse_when_full(backend)
    settings = backend.settings
    ingest = producer.IngestRequest(
        files=[],
        collection=body.collection,
        model=body.model or settings.model,
        outputs=body.outputs or settings.outputs,
        max_length=body.max_length or settings.max_length,
        long_text=body.long_text or settings.long_text,
        batch_size=body.batch_size or settings.batch_size,
        skip_unchanged=body.skip_unchanged,
        sync=body.sync,
        max_delete_share=settings.max_delete_share(force=body.force),
    )
    client = backend.client
    opened = await backend.run(
        producer.open_job, ingest, sessions=client.sessions, store=client.store, tenant=who.tenant
    )
    if body.documents:
        outcomes = _outcomes(body.documents)
        await backend.run(_append, backend, opened, outcomes, ingest.batch_size)
    if body.seal:
        await backend.run(seal_opened, backend, opened)
    response.headers["Location"] = f"/v1/jobs/{opened.job_id}"
    return await job_response(backend, opened.job_id, who)


@router.post(
    "/jobs/{job_id}/batches", status_code=202, response_model=BatchesOut, responses=PROBLEMS
)
async def append_batch(job_id: JobId, body: BatchIn, request: Request, who: Who) -> BatchesOut:
    """Add documents to an open job; 429 while the queue is full (nothing is taken then)."""
    backend = backend_of(request)
    view = await visible_job(backend, job_id, who)
    _only_ingestion(view)
    if view.sealed or view.ended:
        raise ApiProblem(409, "Conflict", f"job {job_id} is {view.status}, sealed: no more batches")
    await refuse_when_full(backend)
    assert isinstance(view.options, jobs.IngestOptions)  # only ingestion takes batches
    batch_size = view.options.batch_size or backend.settings.batch_size
    outcomes = [*_outcomes(body.documents), *recorded_rejections(body.rejected)]
    batches, rejected = await backend.run(_append, backend, _opened(view), outcomes, batch_size)
    return BatchesOut(
        job_id=job_id, documents=len(body.documents), rejected=rejected, batches=batches
    )


@router.post("/jobs/{job_id}/seal", response_model=JobOut, responses=PROBLEMS)
async def seal_job(job_id: JobId, request: Request, who: Who, body: SealIn | None = None) -> JobOut:
    """No more batches: the job ends once those it has are done.

    With ``intake_error``, the producer stopped part-way (that is why): the job ends
    partial at best, failed if nothing was done, and keeps the reason as its error.
    """
    backend = backend_of(request)
    view = await visible_job(backend, job_id, who)
    if view.kind not in (jobs.JobKind.rerank, jobs.JobKind.delete):
        _only_ingestion(view)
    if body is not None and body.intake_error is not None:
        await backend.run(_stop_intake, backend, view, body.intake_error)
    elif view.kind == jobs.JobKind.rerank:
        await backend.run(seal_rerank_job, backend, job_id)
    else:
        await backend.run(seal_opened, backend, _opened(view))
    return await job_response(backend, job_id, who)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses={**PROBLEMS, 304: {"description": "Not Modified: the job is as the ETag says"}},
)
async def get_job(
    job_id: JobId,
    request: Request,
    response: Response,
    who: Who,
    wait: Annotated[float, Query(ge=0, le=LONG_POLL_MAX_S)] = 0.0,
) -> JobOut | Response:
    """The job's status and progress. With ``If-None-Match`` an unchanged job answers 304;
    with ``wait`` too, the answer waits up to that many seconds for a change."""
    backend = backend_of(request)
    known = _tags(request.headers.get("if-none-match"))
    deadline = time.monotonic() + wait
    while True:
        view = await visible_job(backend, job_id, who)
        tag = etag_of(view)
        if not (tag in known or "*" in known):
            break
        if time.monotonic() >= deadline:
            return Response(status_code=304, headers={"ETag": tag})
        await asyncio.sleep(LONG_POLL_STEP_S)
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = "no-cache"
    return await job_response(backend, job_id, who, view)


@router.get("/jobs", response_model=JobPage, responses=PROBLEMS)
async def list_jobs(
    request: Request,
    who: Who,
    status: jobs.JobStatus | None = None,
    kind: jobs.JobKind | None = None,
    collection: Annotated[str | None, Query(pattern=COLLECTION_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX)] = 0,
) -> JobPage:
    """Jobs, newest first, with optional filters."""
    backend = backend_of(request)
    views = await backend.run(
        jobs.list_jobs,
        backend.client.sessions,
        status=status,
        kind=kind,
        collection=collection,
        limit=limit + 1,
        offset=offset,
        tenant=who.tenant,
    )
    now = datetime.now(UTC)
    page, next_offset = paged(views, limit, offset)
    return JobPage(
        jobs=[job_out(view, [], now) for view in page],
        limit=limit,
        offset=offset,
        next_offset=next_offset,
    )


@router.get("/jobs/{job_id}/failures", response_model=FailurePage, responses=PROBLEMS)
async def list_failures(
    job_id: JobId,
    request: Request,
    who: Who,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX)] = 0,
) -> FailurePage:
    """A job's per-document failures, in the order they were recorded."""
    backend = backend_of(request)
    await visible_job(backend, job_id, who)
    failures = await backend.run(
        jobs.list_failures,
        backend.client.sessions,
        job_id=job_id,
        limit=limit + 1,
        offset=offset,
        tenant=who.tenant,
    )
    page, next_offset = paged(failures, limit, offset)
    return FailurePage(
        failures=[failure_out(failure) for failure in page],
        limit=limit,
        offset=offset,
        next_offset=next_offset,
    )


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, responses=PROBLEMS)
async def cancel_job(job_id: JobId, request: Request, who: Who) -> JobOut:
    """Cancel a job that has not ended: its open batches are not run."""
    backend = backend_of(request)
    cancelled = await backend.run(
        jobs.cancel_job, backend.client.sessions, job_id=job_id, tenant=who.tenant
    )
    if not cancelled:
        view = await visible_job(backend, job_id, who)  # 404 when it is not the caller's
        raise ApiProblem(409, "Conflict", f"job {job_id} has already ended ({view.status})")
    return await job_response(backend, job_id, who)


# --- helpers ------------------------------------------------------------------------------


async def visible_job(backend: Backend, job_id: str, who: Caller) -> jobs.JobView:
    view = await backend.run(
        jobs.get_job, backend.client.sessions, job_id=job_id, tenant=who.tenant
    )
    if view is None:
        raise not_found(job_id)
    return view


async def job_response(
    backend: Backend, job_id: str, who: Caller, view: jobs.JobView | None = None
) -> JobOut:
    if view is None:
        view = await visible_job(backend, job_id, who)
    first = await backend.run(
        jobs.list_failures, backend.client.sessions, job_id=job_id, limit=FIRST_ERRORS
    )
    return job_out(view, first, datetime.now(UTC))


def paged(rows: Sequence[T], limit: int, offset: int) -> tuple[Sequence[T], int | None]:
    """The page of ``rows`` (asked for with ``limit + 1``: one more means there is a next
    page) and the offset the next page starts at."""
    return rows[:limit], (offset + limit if len(rows) > limit else None)


def _only_ingestion(view: jobs.JobView) -> None:
    if view.kind == jobs.JobKind.rerank:
        raise ApiProblem(
            409,
            "Conflict",
            f"job {view.id} is a rerank job: add queries at /v1/jobs/{view.id}/queries",
        )
    if view.kind != jobs.JobKind.ingest:
        raise ApiProblem(
            409, "Conflict", f"job {view.id} is a {view.kind} job: it was sealed when created"
        )


async def refuse_when_full(backend: Backend) -> None:
    depth = await backend.run(backend.client.queue.depth)
    mark = backend.settings.high_water_mark
    if depth >= mark:
        raise ApiProblem(
            429,
            "Too Many Requests",
            f"the queue holds {depth} batches (high-water mark {mark}): retry later",
            Retry_After=str(RETRY_AFTER_FULL_S),
        )


def _append(
    backend: Backend, job: producer.OpenedJob, outcomes: list[Document | Rejected], batch_size: int
) -> tuple[int, int]:
    """Record and publish the documents (less the unchanged ones, for a job that skips
    them); returns (batches, documents rejected)."""
    batches = producer.add_documents(
        job.job_id,
        outcomes,
        sessions=backend.client.sessions,
        queue=backend.client.queue,
        batch_size=batch_size,
        high_water_mark=None,  # checked before the request was taken
        screen=job.screen(backend.client.store),
    )
    return batches, sum(isinstance(outcome, Rejected) for outcome in outcomes)


def _outcomes(documents: list[DocumentIn]) -> list[Document | Rejected]:
    """Each document, or why it is rejected (empty text, an id twice in one request)."""
    seen: set[str] = set()
    outcomes: list[Document | Rejected] = []
    for number, document in enumerate(documents, start=1):
        where = f"document {number} of the request"
        outcome = document_from(document.model_dump(exclude_none=True), number, where=where)
        outcomes.append(once_per_id(outcome, seen, number=number, where=where))
    return outcomes


def recorded_rejections(rejected: list[RejectedIn]) -> list[Document | Rejected]:
    return [Rejected(r.line, r.reason, r.doc_id) for r in rejected]


def seal_rerank_job(backend: Backend, job_id: str) -> None:
    submission.seal_rerank(job_id, sessions=backend.client.sessions, queue=backend.client.queue)


def seal_opened(backend: Backend, opened: producer.OpenedJob) -> None:
    client = backend.client
    producer.seal(opened, sessions=client.sessions, store=client.store, queue=client.queue)


def _stop_intake(backend: Backend, view: jobs.JobView, reason: str) -> None:
    client = backend.client
    if view.kind == jobs.JobKind.rerank:
        jobs.stop_intake(client.sessions, job_id=view.id, reason=reason)
        return
    opened = _opened(view)
    producer.stop(opened, reason, sessions=client.sessions, store=client.store, queue=client.queue)


def _opened(view: jobs.JobView) -> producer.OpenedJob:
    options = view.options
    assert not isinstance(options, jobs.RerankOptions)  # a rerank's intake stops above
    physical = options.physical_collection
    return producer.OpenedJob(view.id, physical, view.collection, view.model, options)


def _check_sync_owner(backend: Backend, collection: str, tenant: str) -> None:
    """A sync may delete only from a collection of the tenant's own (or a new one)."""
    if backend.client.store.resolve(collection) is not None:
        check_collection_owner(backend, collection, tenant)


def _tags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
