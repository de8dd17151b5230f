"""``POST /v1/reindex``: rebuild a collection the caller's tenant built, in the background."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from embedq.api.http.auth import Caller, caller
from embedq.api.http.ownership import check_collection_owner
from embedq.api.http.resources import Backend
from embedq.api.http.routes_jobs import PROBLEMS, job_response
from embedq.api.http.schemas import EmbeddingIn, JobOut
from embedq.api.reindex.versions import ReindexRequest, start_reindex

router = APIRouter(prefix="/v1", tags=["reindex"])


class ReindexIn(EmbeddingIn):
    """What to rebuild; settings left out stay as the live version was built."""

    drop_old: bool = False


@router.post("/reindex", status_code=202, response_model=JobOut, responses=PROBLEMS)
async def reindex(
    body: ReindexIn, request: Request, who: Annotated[Caller, Depends(caller)]
) -> JobOut:
    """Re-embed every document of the collection into a new version, then swap the alias."""
    backend: Backend = request.app.state.backend
    client = backend.client
    if who.tenant is not None:
        await backend.run(check_collection_owner, backend, body.collection, who.tenant)
    reindex_request = ReindexRequest(
        collection=body.collection,
        model=body.model,
        outputs=body.outputs,
        max_length=body.max_length,
        long_text=body.long_text,
        batch_size=backend.settings.batch_size,
        drop_old=body.drop_old,
    )
    job_id = await backend.run(
        start_reindex,
        reindex_request,
        sessions=client.sessions,
        store=client.store,
        queue=client.reindex_queue,
        high_water_mark=backend.settings.high_water_mark,
        tenant=who.tenant,
    )
    return await job_response(backend, job_id, who)
