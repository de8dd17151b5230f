"""``/v1/rerank``, ``/v1/jobs/{id}/queries`` and ``/v1/jobs/{id}/results``: bulk rerank.

A rerank job is usually created, filled and sealed in one request; a bigger one is
created with ``seal: false``, filled by appending queries and sealed at
``/v1/jobs/{id}/seal``. Its results are paged by query id, then rank. Tenant-scoped
like every job route: another tenant's job (or collection) is a 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from embedq import jobs
from embedq.api.http.ownership import check_collection_owner
from embedq.api.http.problems import ApiProblem
from embedq.api.http.resources import Backend
from embedq.api.http.routes_jobs import (
    OFFSET_MAX,
    PROBLEMS,
    JobId,
    Who,
    backend_of,
    job_response,
    paged,
    recorded_rejections,
    refuse_when_full,
    seal_rerank_job,
    visible_job,
)
from embedq.api.http.schemas import BatchesOut, JobOut
from embedq.api.http.schemas_rerank import QueriesIn, QueryIn, RerankIn, ResultOut, ResultPage
from embedq.api.ingest.reader import Rejected, once_per_id
from embedq.api.rerank import submission
from embedq.api.rerank.query_reader import query_from
from embedq.jobs.contracts import Query as RerankQuery

router = APIRouter(prefix="/v1", tags=["rerank"])

RESULTS_PAGE_MAX = 5000


@router.post("/rerank", status_code=201, response_model=JobOut, responses=PROBLEMS)
async def create_rerank_job(
    body: RerankIn, request: Request, response: Response, who: Who
) -> JobOut:
    """Score each query's candidates with a cross-encoder; 429 while the queue is full."""
    backend = backend_of(request)
    if body.queries:
        await refuse_when_full(backend)
    if body.from_collection is not None and who.tenant is not None:
        await backend.run(check_collection_owner, backend, body.from_collection, who.tenant)
    rerank = submission.RerankRequest(
        files=[],
        model=body.model,
        top_k=body.top_k,
        from_collection=body.from_collection,
        candidates=body.candidates,
    )
    job_id = await backend.run(
        submission.open_rerank_job, rerank, sessions=backend.client.sessions, tenant=who.tenant
    )
    if body.queries:
        outcomes = _outcomes(body.queries, searched=rerank.searched > 0)
        await backend.run(_add, backend, job_id, outcomes, rerank.searched)
    if body.seal:
        await backend.run(seal_rerank_job, backend, job_id)
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return await job_response(backend, job_id, who)


@router.post(
    "/jobs/{job_id}/queries", status_code=202, response_model=BatchesOut, responses=PROBLEMS
)
async def append_queries(job_id: JobId, body: QueriesIn, request: Request, who: Who) -> BatchesOut:
    """Add queries to an open rerank job (``documents`` counts them in the answer); 429 while
    the queue is full (nothing is taken then)."""
    backend = backend_of(request)
    view = await visible_job(backend, job_id, who)
    if view.kind != jobs.JobKind.rerank:
        raise ApiProblem(409, "Conflict", f"job {job_id} is a {view.kind} job, not a rerank job")
    if view.sealed or view.ended:
        raise ApiProblem(409, "Conflict", f"job {job_id} is {view.status}, sealed: no more queries")
    await refuse_when_full(backend)
    assert isinstance(view.options, jobs.RerankOptions)
    searched = view.options.candidates or 0
    outcomes = [
        *_outcomes(body.queries, searched=searched > 0),
        *recorded_rejections(body.rejected),
    ]
    batches = await backend.run(_add, backend, job_id, outcomes, searched)
    rejected = sum(isinstance(outcome, Rejected) for outcome in outcomes)
    return BatchesOut(
        job_id=job_id, documents=len(body.queries), rejected=rejected, batches=batches
    )


@router.get("/jobs/{job_id}/results", response_model=ResultPage, responses=PROBLEMS)
async def list_results(
    job_id: JobId,
    request: Request,
    who: Who,
    limit: Annotated[int, Query(ge=1, le=RESULTS_PAGE_MAX)] = 1000,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX)] = 0,
) -> ResultPage:
    """A rerank job's scores and ranks, by query id and then rank (1 is the best)."""
    backend = backend_of(request)
    await visible_job(backend, job_id, who)
    results = await backend.run(
        jobs.list_results,
        backend.client.sessions,
        job_id=job_id,
        tenant=who.tenant,
        limit=limit + 1,
        offset=offset,
    )
    page, next_offset = paged(results, limit, offset)
    return ResultPage(
        results=[
            ResultOut(query_id=r.query_id, candidate_id=r.candidate_id, score=r.score, rank=r.rank)
            for r in page
        ],
        limit=limit,
        offset=offset,
        next_offset=next_offset,
    )


def _add(
    backend: Backend, job_id: str, outcomes: Sequence[RerankQuery | Rejected], searched: int
) -> int:
    client = backend.client
    return submission.add_queries(
        job_id,
        outcomes,
        sessions=client.sessions,
        queue=client.queue,
        searched=searched,
        high_water_mark=None,  # checked before the request was taken
    )


def _outcomes(queries: list[QueryIn], *, searched: bool) -> list[RerankQuery | Rejected]:
    """Each query, or why it is rejected (no candidates, or some where a search gives them;
    a query id twice in one request)."""
    seen: set[str] = set()
    outcomes: list[RerankQuery | Rejected] = []
    for number, query in enumerate(queries, start=1):
        where = f"query {number} of the request"
        outcome = query_from(query.model_dump(), number, where=where, searched=searched)
        outcomes.append(once_per_id(outcome, seen, number=number, where=where, label="query_id"))
    return outcomes
