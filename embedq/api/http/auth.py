"""API keys: every request names its key; the key's tenant owns what the request touches."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from embedq import jobs
from embedq.api.http.problems import ApiProblem
from embedq.api.http.resources import Backend

SCHEME = "Bearer"


@dataclass(frozen=True)
class Caller:
    """Who is asking: a tenant, or None in dev mode (no keys; every job is visible)."""

    tenant: str | None


def unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, "Unauthorized", detail, WWW_Authenticate=SCHEME)


async def caller(request: Request) -> Caller:
    """The FastAPI dependency every ``/v1`` route takes."""
    backend: Backend = request.app.state.backend
    if request.app.state.dev_mode:
        return Caller(tenant=None)
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != SCHEME.lower() or not secret.strip():
        raise unauthorized("send an API key as 'Authorization: Bearer <key>'")
    key = await backend.run(jobs.authenticate, backend.client.sessions, secret.strip())
    if key is None:
        raise unauthorized("unknown or revoked API key")
    return Caller(tenant=key.tenant)
