"""For operators: liveness, readiness (which service is unreachable), Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from embedq import jobs
from embedq.api.http.metrics import ApiMetrics
from embedq.api.http.resources import Backend

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a service is unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    """Whether the ledger, the broker and Qdrant are all reachable; which is not, if any."""
    backend: Backend = request.app.state.backend
    problems = {
        "ledger": await backend.run(backend.ledger_problem),
        "broker": await backend.run(backend.broker_problem),
        "qdrant": await backend.run(backend.qdrant_problem),
    }
    checks = {name: problem or "ok" for name, problem in problems.items()}
    ready = not any(problems.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests, latency, queue depth and jobs by status."""
    backend: Backend = request.app.state.backend
    api_metrics: ApiMetrics = request.app.state.metrics
    counts = await backend.run(jobs.count_jobs_by_status, backend.client.sessions)
    for status in jobs.JobStatus:
        api_metrics.jobs.labels(status.value).set(counts.get(status, 0))
    api_metrics.queue_depth.set(await backend.run(backend.client.queue.depth))
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)
