"""The FastAPI application: ``create_app()`` wires settings, routes, limits and errors.

Serve it with ``embedq api`` (uvicorn). Without API keys in the ledger it refuses
to start, unless ``EMBEDQ_API_DEV_MODE`` is set: a local, unauthenticated API
that sees every job. While it runs, it ends jobs whose producers walked away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from embedq import __version__, jobs
from embedq.api.http import (
    routes_deletes,
    routes_jobs,
    routes_ops,
    routes_reindex,
    routes_rerank,
)
from embedq.api.http.limits import BodyLimit
from embedq.api.http.metrics import ApiMetrics
from embedq.api.http.problems import install_problem_handlers
from embedq.api.http.resources import Backend
from embedq.errors import InvalidSettingError
from embedq.settings import Settings, get_settings

logger = logging.getLogger(__name__)

# How often the API looks for jobs their producers abandoned (see Backend.end_abandoned_jobs).
ABANDONED_CHECK_S = 60.0

NO_KEYS = (
    "no live API keys in the ledger: create one with `embedq keys create --tenant NAME`, "
    "or set EMBEDQ_API_DEV_MODE=1 for a local API without keys"
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    backend = Backend(settings)
    if not settings.api_dev_mode and not _has_live_key(backend):
        backend.close()
        raise InvalidSettingError(NO_KEYS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reaping = asyncio.create_task(_end_abandoned_jobs(backend))
        yield
        reaping.cancel()
        backend.close()

    app = FastAPI(
        title="embedq",
        version=__version__,
        description="Submit embedding jobs in bulk and poll them.",
        lifespan=lifespan,
    )
    app.state.backend = backend
    app.state.dev_mode = settings.api_dev_mode
    app.state.metrics = metrics = ApiMetrics()
    app.middleware("http")(metrics.middleware)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    install_problem_handlers(app)
    app.include_router(routes_jobs.router)
    app.include_router(routes_rerank.router)
    app.include_router(routes_reindex.router)
    app.include_router(routes_deletes.router)
    app.include_router(routes_ops.router)
    return app


async def _end_abandoned_jobs(backend: Backend) -> None:
    """An API whose batches run in its own process has no worker, and so no other reaper;
    beside workers, one more is harmless (each job is ended once)."""
    while True:
        await asyncio.sleep(ABANDONED_CHECK_S)
        try:
            await backend.run(backend.end_abandoned_jobs)
        except Exception:  # the ledger may be briefly unreachable; try again next time
            logger.warning("could not end abandoned jobs", exc_info=True)


def _has_live_key(backend: Backend) -> bool:
    return any(key.revoked_at is None for key in jobs.list_api_keys(backend.client.sessions))
