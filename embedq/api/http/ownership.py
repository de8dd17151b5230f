"""Which collections a tenant may name: those its own jobs built."""

from __future__ import annotations

from embedq import jobs
from embedq.api.http.problems import ApiProblem
from embedq.api.http.resources import Backend


def check_collection_owner(backend: Backend, collection: str, tenant: str) -> None:
    """A tenant uses only collections its own jobs built; others are answered as absent."""
    sessions = backend.client.sessions
    built = [
        jobs.list_jobs(sessions, collection=collection, kind=kind, tenant=tenant, limit=1)
        for kind in (jobs.JobKind.ingest, jobs.JobKind.reindex)
    ]
    if not any(built):
        raise ApiProblem(404, "Not Found", f"no collection {collection}")
