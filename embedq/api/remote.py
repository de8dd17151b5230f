"""The Python client over the HTTP API: ``Client``'s operations, answered by an embedq API.

Files are read here, with the same checks as a local ingest or rerank; their
documents (or queries) travel in requests of at most a thousand and at most
``REQUEST_BYTES``, and lines that could not be read are sent along to be recorded
as the job's failures. A full queue (429) is waited
out as its Retry-After says. Views come back as the ledger's own types, so the
command line prints the same either way.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from embedq import jobs as ledger
from embedq.api.deletion import ids_from, read_all_ids
from embedq.api.ingest.producer import check_readable, read_all
from embedq.api.ingest.reader import Rejected
from embedq.api.rerank.submission import read_all_queries
from embedq.api.stopping import stop_reason
from embedq.errors import EmbedqError, NotFoundError, PermanentError, RetryableError
from embedq.jobs import Query
from embedq.jobs.contracts import Document, DocumentId

REQUEST_DOCUMENTS = 1000  # the API's limit per request
REQUEST_BYTES = 16 * 2**20  # half the API's default body limit: room for JSON's escapes
JSON_CONTENT = {"Content-Type": "application/json"}
LONG_POLL_S = 20
DEFAULT_TIMEOUT_S = 120
MAX_BACKPRESSURE_WAIT_S = 60
# a path naming one job: its 404 means "no such job"
JOB_PATH = re.compile(r"^/v1/jobs/[^/]+")

ProgressCallback = Callable[[ledger.JobView], None]


class ApiError(EmbedqError):
    """The API refused a request; the message is its problem's detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{detail} (HTTP {status})")
        self.status = status


class ApiUnavailableError(ApiError, RetryableError):
    """The API or a service behind it is down (5xx): the same request may work later."""


class ApiRejectedError(ApiError, PermanentError):
    """The request is wrong or not allowed (4xx): sending it again will not help."""


class RemoteClient:
    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        http: httpx.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http or httpx.Client(base_url=url, timeout=timeout)
        self._headers = headers

    # --- the operations -------------------------------------------------------------------

    def ingest(
        self,
        files: Sequence[str | Path],
        *,
        collection: str,
        model: str | None = None,
        outputs: str | None = None,
        max_length: int | None = None,
        long_text: ledger.LongText | None = None,
        batch_size: int | None = None,
        skip_unchanged: bool = False,
        sync: bool = False,
        force: bool = False,
        on_batch: Callable[[str], None] | None = None,
    ) -> str:
        """Create a job, send every document of ``files``, seal it; returns the job's id."""
        paths = _readable(files)
        options = {
            "model": model,
            "outputs": outputs,
            "max_length": max_length,
            "long_text": long_text,
            "batch_size": batch_size,
            "skip_unchanged": skip_unchanged or None,
            "sync": sync or None,
            "force": force or None,
        }
        body = {"collection": collection, **{k: v for k, v in options.items() if v is not None}}
        job_id = str(self._call("POST", "/v1/jobs", json=body)["id"])
        documents = _requests(read_all(paths))
        return self._fill_and_seal(job_id, "batches", "documents", documents, on_batch)

    def delete(
        self,
        collection: str,
        *,
        files: Sequence[str | Path] = (),
        ids: Sequence[str | int] = (),
        on_batch: Callable[[str], None] | None = None,
    ) -> str:
        """Create a delete job, send the ids of ``files`` (or ``ids``), seal it; its id."""
        outcomes = ids_from(ids) if ids else read_all_ids(_readable(files))
        job_id = str(self._call("POST", "/v1/deletions", json={"collection": collection})["id"])
        return self._fill_and_seal(job_id, "ids", "ids", _requests(outcomes), on_batch)

    def rerank(
        self,
        files: Sequence[str | Path],
        *,
        model: str,
        top_k: int | None = None,
        from_collection: str | None = None,
        candidates: int = 100,
        on_batch: Callable[[str], None] | None = None,
    ) -> str:
        """Create a rerank job, send every query of ``files``, seal it; returns the job's id."""
        paths = _readable(files)
        body: dict[str, Any] = {"model": model, "top_k": top_k, "seal": False}
        if from_collection is not None:
            body |= {"from_collection": from_collection, "candidates": candidates}
        job_id = str(self._call("POST", "/v1/rerank", json=body)["id"])
        queries = _requests(read_all_queries(paths, searched=from_collection is not None))
        return self._fill_and_seal(job_id, "queries", "queries", queries, on_batch)

    def results(
        self, job_id: str, *, limit: int = 1000, offset: int = 0
    ) -> list[ledger.RerankResult]:
        """A rerank job's scores and ranks, by query id and then rank."""
        page = self._call(
            "GET", f"/v1/jobs/{job_id}/results", params={"limit": limit, "offset": offset}
        )
        return [ledger.RerankResult(**result) for result in page["results"]]

    def status(self, job_id: str) -> ledger.JobView:
        return job_view(self._call("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, *, limit: int = 50) -> list[ledger.JobView]:
        page = self._call("GET", "/v1/jobs", params={"limit": limit})
        return [job_view(job) for job in page["jobs"]]

    def failures(
        self, job_id: str, *, limit: int = 100, offset: int = 0
    ) -> list[ledger.FailureView]:
        page = self._call(
            "GET", f"/v1/jobs/{job_id}/failures", params={"limit": limit, "offset": offset}
        )
        return [failure_view(failure) for failure in page["failures"]]

    def cancel(self, job_id: str) -> bool:
        try:
            self._call("POST", f"/v1/jobs/{job_id}/cancel")
        except ApiRejectedError as error:
            if error.status == 409:  # it had already ended, as a local cancel says False
                return False
            raise
        return True

    def wait(
        self,
        job_id: str,
        *,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ledger.JobView:
        """Long-poll until the job ends (each answer comes as soon as the job changes)."""
        from embedq.api.client import JobTimeoutError

        deadline = None if timeout is None else time.monotonic() + timeout
        view, tag = self._poll(job_id, "", 0)
        while True:
            if on_progress is not None:
                on_progress(view)
            if view.ended:
                return view
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeoutError(f"job {job_id} still {view.status} after {timeout} s")
            wait = (
                LONG_POLL_S if deadline is None else min(LONG_POLL_S, deadline - time.monotonic())
            )
            view, tag = self._poll(job_id, tag, max(wait, poll_seconds), view)

    # --- the wire ---------------------------------------------------------------------------

    def _fill_and_seal(
        self,
        job_id: str,
        route: str,
        field: str,
        requests: Iterable[Request],
        on_batch: Callable[[str], None] | None,
    ) -> str:
        """POST each request's items (as ``field``) and unreadable lines to the job's ``route``,
        waiting out a full queue, then seal the job; returns its id.

        Whatever stops the sending part-way (an error, Ctrl-C, SIGTERM) seals the job with
        why, so it ends with what it got; should the API be gone, its reaper ends the job.
        """
        sent = 0
        try:
            for items, rejected in requests:
                body = orjson.dumps({field: items, "rejected": rejected})
                self._call("POST", f"/v1/jobs/{job_id}/{route}", content=body, backpressure=True)
                sent += len(items) + len(rejected)
                if on_batch is not None:
                    on_batch(job_id)
        except BaseException as error:
            stopped = {"intake_error": stop_reason(error, sent)}
            try:  # best effort, and brief: the connection may be what failed
                _checked(
                    self._http.post(
                        f"/v1/jobs/{job_id}/seal", json=stopped, headers=self._headers, timeout=10
                    )
                )
            except Exception:
                logging.getLogger(__name__).warning(
                    "job %s: could not tell the API why its intake stopped", job_id, exc_info=True
                )
            raise
        self._call("POST", f"/v1/jobs/{job_id}/seal")
        return job_id

    def _poll(
        self, job_id: str, tag: str, wait: float, last: ledger.JobView | None = None
    ) -> tuple[ledger.JobView, str]:
        headers = {**self._headers, "If-None-Match": tag} if tag else self._headers
        response = self._http.get(
            f"/v1/jobs/{job_id}",
            params={"wait": round(wait, 1)} if tag else None,
            headers=headers,
            timeout=wait + DEFAULT_TIMEOUT_S,
        )
        if response.status_code == 304 and last is not None:
            return last, tag
        body = _checked(response)
        return job_view(body), response.headers.get("etag", "")

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        backpressure: bool = False,
    ) -> dict[str, Any]:
        """``json`` to encode, or ``content``: a JSON body already encoded."""
        headers = self._headers if content is None else {**self._headers, **JSON_CONTENT}
        waited = 0.0
        while True:
            response = self._http.request(
                method, path, json=json, content=content, params=params, headers=headers
            )
            if backpressure and response.status_code == 429 and waited < MAX_BACKPRESSURE_WAIT_S:
                pause = float(response.headers.get("retry-after", "1"))
                time.sleep(pause)
                waited += pause
                continue
            return _checked(response)


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code < 400:
        body: dict[str, Any] = response.json()
        return body
    try:
        detail = str(response.json().get("detail") or response.json().get("title"))
    except ValueError:
        detail = response.text[:500] or response.reason_phrase
    if response.status_code >= 500 or response.status_code == 429:
        raise ApiUnavailableError(response.status_code, detail)
    if response.status_code == 404:
        # as the local client answers: an unknown job, or another missing thing
        job_path = JOB_PATH.match(response.request.url.path)
        raise (ledger.JobNotFoundError if job_path else NotFoundError)(detail)
    raise ApiRejectedError(response.status_code, detail)


# what a file's line becomes: an item to send, or a line that could not be read
Outcome = Document | Query | DocumentId | Rejected

# one request's items and rejected lines, each encoded once (its size counted from that)
Request = tuple[list[orjson.Fragment], list[orjson.Fragment]]


def _requests(outcomes: Iterable[Outcome]) -> Iterator[Request]:
    """Outcomes in request-sized groups: at most ``REQUEST_DOCUMENTS`` of them (documents and
    rejections counted together) and about ``REQUEST_BYTES`` of JSON (one item may be more)."""
    items: list[orjson.Fragment] = []
    rejected: list[orjson.Fragment] = []
    size = 0
    for outcome in outcomes:
        encoded = orjson.dumps(_body(outcome))
        full = (
            len(items) + len(rejected) >= REQUEST_DOCUMENTS or size + len(encoded) > REQUEST_BYTES
        )
        if full and (items or rejected):
            yield items, rejected
            items, rejected, size = [], [], 0
        (rejected if isinstance(outcome, Rejected) else items).append(orjson.Fragment(encoded))
        size += len(encoded)
    if items or rejected:
        yield items, rejected


def _body(outcome: Outcome) -> Any:
    """An outcome as the API takes it."""
    if isinstance(outcome, Rejected):
        return {"reason": outcome.reason, "line": outcome.line, "doc_id": outcome.doc_id}
    if isinstance(outcome, Document):
        return outcome.to_json()  # its text already has its title in front
    if isinstance(outcome, DocumentId):
        return outcome.id
    body: dict[str, Any] = {"query_id": outcome.id, "query": outcome.text}
    if outcome.candidates:  # none when the job's collection gives them
        body["candidates"] = [{"id": c.id, "text": c.text} for c in outcome.candidates]
    return body


def _readable(files: Sequence[str | Path]) -> list[Path]:
    paths = [Path(f) for f in files]
    for path in paths:
        check_readable(path)
    return paths


def job_view(body: dict[str, Any]) -> ledger.JobView:
    """The ledger's view of a job, from the API's answer."""
    names = {f.name for f in dataclasses.fields(ledger.JobView) if f.init}
    values: dict[str, Any] = {name: body.get(name) for name in names}
    values["status"] = ledger.JobStatus(body["status"])
    values["kind"] = ledger.JobKind(body["kind"])
    values["options"] = ledger.read_options(
        body["kind"], body.get("options") or {}, collection=body["collection"]
    )
    for name in ("created_at", "started_at", "updated_at", "finished_at"):
        values[name] = _moment(body.get(name))
    return ledger.JobView(**values)


def failure_view(body: dict[str, Any]) -> ledger.FailureView:
    return ledger.FailureView(
        id=body["id"],
        job_id=body["job_id"],
        batch_id=body.get("batch_id"),
        doc_id=body.get("doc_id"),
        line=body.get("line"),
        reason=body["reason"],
        created_at=_moment(body["created_at"]),  # type: ignore[arg-type]
    )


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
