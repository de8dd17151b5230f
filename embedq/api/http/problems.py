"""Every error the API returns is RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from embedq.api.deletion import UnknownCollectionError
from embedq.errors import PermanentError, RetryableError
from embedq.jobs.errors import CollectionBusyError, JobClosedError, JobNotFoundError
from embedq.store import IncompatibleCollectionError

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_UNAVAILABLE_S = 5


class ApiProblem(Exception):
    """Raised by a route to answer with a problem and, if given, extra headers."""

    def __init__(self, status: int, title: str, detail: str | None = None, **headers: str) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.headers = {name.replace("_", "-"): value for name, value in headers.items()}


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def not_found(job_id: str) -> ApiProblem:
    # the same answer for a job of another tenant: ids must not leak
    return ApiProblem(404, "Not Found", f"no job {job_id}")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RetryableError, _unavailable)
    app.add_exception_handler(PermanentError, _permanent)


async def _api_problem(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiProblem)
    return problem_response(error.status, error.title, error.detail, headers=error.headers)


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {"location": list(map(str, e.get("loc", ()))), "message": e.get("msg", "")}
        for e in error.errors()
    ]
    first = errors[0] if errors else {"location": [], "message": "invalid request"}
    detail = f"{'.'.join(first['location'])}: {first['message']}"
    return problem_response(422, "Unprocessable Content", detail, errors=errors)


async def _http_exception(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    title = {404: "Not Found", 405: "Method Not Allowed", 401: "Unauthorized"}.get(
        error.status_code, "Error"
    )
    return problem_response(
        error.status_code, title, str(error.detail), headers=dict(error.headers or {})
    )


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    logger.warning("%s %s: %s", request.method, request.url.path, error)
    return problem_response(
        503,
        "Service Unavailable",
        str(error),
        headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
    )


async def _permanent(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, JobNotFoundError | UnknownCollectionError):
        return problem_response(404, "Not Found", str(error))
    if isinstance(error, JobClosedError | IncompatibleCollectionError | CollectionBusyError):
        return problem_response(409, "Conflict", str(error))
    return problem_response(422, "Unprocessable Content", str(error))
