"""``/v1/deletions``: delete documents by id, as a job with status like any other.

``POST /v1/deletions`` creates the job (with a first request of ids if given, sealed
at once if asked), ``POST /v1/jobs/{job_id}/ids`` adds ids, and ``POST
/v1/jobs/{job_id}/seal`` ends intake. Each id's every chunk is removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from embedq import jobs
from embedq.api import deletion
from embedq.api.http.auth import Caller, caller
from embedq.api.http.ownership import check_collection_owner
from embedq.api.http.problems import ApiProblem
from embedq.api.http.resources import Backend
from embedq.api.http.routes_jobs import (
    PROBLEMS,
    JobId,
    backend_of,
    job_response,
    recorded_rejections,
    refuse_when_full,
    seal_opened,
    visible_job,
)
from embedq.api.http.schemas import (
    MAX_DOCUMENTS_PER_BATCH,
    MAX_ID_CHARS,
    NO_NUL,
    BatchesOut,
    CollectionName,
    JobOut,
    RejectedIn,
)
from embedq.api.ingest.reader import Rejected

router = APIRouter(prefix="/v1", tags=["deletions"])

Who = Annotated[Caller, Depends(caller)]
DocumentIdIn = (
    Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=NO_NUL)] | int
)
Ids = Annotated[list[DocumentIdIn], Field(max_length=MAX_DOCUMENTS_PER_BATCH)]


class DeletionIn(BaseModel):
    """A new delete job, optionally with its first ids, optionally sealed at once."""

    model_config = ConfigDict(extra="forbid")

    collection: CollectionName
    ids: Ids = Field(default_factory=list)
    seal: bool = False


class IdsIn(BaseModel):
    """More ids for an open delete job, and lines the producer could not read, for the record."""

    model_config = ConfigDict(extra="forbid")

    ids: Ids = Field(default_factory=list)
    rejected: Annotated[list[RejectedIn], Field(max_length=MAX_DOCUMENTS_PER_BATCH)] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _not_empty(self) -> IdsIn:
        if not self.ids and not self.rejected:
            raise ValueError("a request needs ids (or rejected lines to record)")
        return self


@router.post("/deletions", status_code=201, response_model=JobOut, responses=PROBLEMS)
async def create_deletion(
    body: DeletionIn, request: Request, response: Response, who: Who
) -> JobOut:
    """Create a delete job for a collection the caller's tenant built."""
    backend = backend_of(request)
    client = backend.client
    if who.tenant is not None:
        await backend.run(check_collection_owner, backend, body.collection, who.tenant)
    if body.ids:
        await refuse_when_full(backend)
    opened = await backend.run(
        deletion.open_delete,
        body.collection,
        sessions=client.sessions,
        store=client.store,
        tenant=who.tenant,
    )
    if body.ids:
        await backend.run(_append, backend, opened.job_id, body.ids)
    if body.seal:
        await backend.run(seal_opened, backend, opened)
    response.headers["Location"] = f"/v1/jobs/{opened.job_id}"
    return await job_response(backend, opened.job_id, who)


@router.post("/jobs/{job_id}/ids", status_code=202, response_model=BatchesOut, responses=PROBLEMS)
async def append_ids(job_id: JobId, body: IdsIn, request: Request, who: Who) -> BatchesOut:
    """Add ids to an open delete job; 429 while the queue is full (nothing is taken then)."""
    backend = backend_of(request)
    view = await visible_job(backend, job_id, who)
    if view.kind != jobs.JobKind.delete:
        raise ApiProblem(409, "Conflict", f"job {job_id} is a {view.kind} job, not a delete job")
    if view.sealed or view.ended:
        raise ApiProblem(409, "Conflict", f"job {job_id} is {view.status}, sealed: no more ids")
    await refuse_when_full(backend)
    recorded = recorded_rejections(body.rejected)
    batches, rejected = await backend.run(_append, backend, job_id, body.ids, recorded)
    return BatchesOut(job_id=job_id, documents=len(body.ids), rejected=rejected, batches=batches)


def _append(
    backend: Backend, job_id: str, ids: list[str | int], recorded: Sequence[Rejected] = ()
) -> tuple[int, int]:
    outcomes: list[jobs.DocumentId | Rejected] = [*deletion.ids_from(ids), *recorded]
    batches = deletion.add_ids(
        job_id,
        outcomes,
        sessions=backend.client.sessions,
        queue=backend.client.queue,
        high_water_mark=None,  # checked before the request was taken
    )
    return batches, sum(not isinstance(outcome, jobs.DocumentId) for outcome in outcomes)
