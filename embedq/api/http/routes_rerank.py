"""``/v1/rerank`` and ``/v1/jobs/{id}/results``: bulk rerank jobs and their scores.

A rerank job is created, filled and sealed in one request; its results are paged by
query id, then rank. Tenant-scoped like every job route: another tenant's job is a 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from embedq import jobs
from embedq.api import rerank_producer
from embedq.api.http.backend import Backend
from embedq.api.http.routes_jobs import (
    OFFSET_MAX,
    PROBLEMS,
    JobId,
    Who,
    backend_of,
    job_response,
    paged,
    refuse_when_full,
    visible_job,
)
from embedq.api.http.schemas import JobOut
from embedq.api.http.schemas_rerank import QueryIn, RerankIn, ResultOut, ResultPage
from embedq.api.reader import Rejected, once_per_id
from embedq.api.rerank_input import Query as RerankQuery
from embedq.api.rerank_input import query_from

router = APIRouter(prefix="/v1", tags=["rerank"])

RESULTS_PAGE_MAX = 5000


@router.post("/rerank", status_code=201, response_model=JobOut, responses=PROBLEMS)
async def create_rerank_job(
    body: RerankIn, request: Request, response: Response, who: Who
) -> JobOut:
    """Score each query's candidates with a cross-encoder; 429 while the queue is full."""
    backend = backend_of(request)
    await refuse_when_full(backend)
    rerank = rerank_producer.RerankRequest(files=[], model=body.model, top_k=body.top_k)
    job_id = await backend.run(
        rerank_producer.open_rerank_job, rerank, sessions=backend.client.sessions, tenant=who.tenant
    )
    await backend.run(_fill_and_seal, backend, job_id, _outcomes(body.queries))
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return await job_response(backend, job_id, who)


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


def _fill_and_seal(backend: Backend, job_id: str, outcomes: list[RerankQuery | Rejected]) -> None:
    client = backend.client
    rerank_producer.add_queries(
        job_id,
        outcomes,
        sessions=client.sessions,
        queue=client.queue,
        high_water_mark=None,  # checked before the request was taken
    )
    rerank_producer.seal_rerank(job_id, sessions=client.sessions, queue=client.queue)


def _outcomes(queries: list[QueryIn]) -> list[RerankQuery | Rejected]:
    """Each query, or why it is rejected (a query id twice in one request)."""
    seen: set[str] = set()
    outcomes: list[RerankQuery | Rejected] = []
    for number, query in enumerate(queries, start=1):
        where = f"query {number} of the request"
        outcome = query_from(query.model_dump(), number, where=where)
        outcomes.append(once_per_id(outcome, seen, number=number, where=where, label="query_id"))
    return outcomes
