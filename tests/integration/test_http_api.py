"""The HTTP API on the real Postgres, Redis and Qdrant server: every endpoint, keys, tenants,
limits, backpressure, ETag and long-poll. No worker runs here: batches wait in Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from fastapi.testclient import TestClient

from embedq import jobs
from embedq.api.client import Client
from embedq.api.http.app import create_app
from embedq.api.ingest.reader import MAX_TEXT_CHARS
from embedq.errors import InvalidSettingError
from embedq.settings import Settings

HIGH_WATER_MARK = 3


@dataclass
class Api:
    http: TestClient
    client: Client
    settings: Settings
    model: str
    keys: dict[str, str]  # tenant -> secret

    def as_(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    def new_job(self, tenant: str = "acme", *, documents: int = 2, **fields: object) -> dict:
        body = {
            "collection": f"api_{uuid.uuid4().hex[:10]}",
            "model": self.model,
            "batch_size": 2,
            "documents": docs(documents),
            **fields,
        }
        response = self.http.post("/v1/jobs", json=body, headers=self.as_(tenant))
        assert response.status_code == 201, response.text
        return response.json()


def docs(count: int, prefix: str = "d") -> list[dict]:
    return [{"id": f"{prefix}{i}", "text": f"text number {i}"} for i in range(count)]


def settings_for(tmp_path, postgres_schema_url, redis_url, qdrant_url, **extra) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=postgres_schema_url,
        broker_url=redis_url,
        qdrant_url=qdrant_url,
        queue=f"embedq.test.{uuid.uuid4().hex[:8]}",
        high_water_mark=HIGH_WATER_MARK,
        **extra,
    )


@pytest.fixture
def api(tmp_path, postgres_schema_url, redis_url, qdrant_url, build_model) -> Iterator[Api]:
    settings = settings_for(tmp_path, postgres_schema_url, redis_url, qdrant_url)
    client = Client(settings)
    client.migrate()
    keys = {t: client.create_api_key(tenant=t).secret for t in ("acme", "globex")}
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    with TestClient(create_app(settings)) as http:
        yield Api(http, client, settings, model, keys)
    redis.Redis.from_url(redis_url).delete(settings.queue)
    store = client.store
    for collection in store.client.get_collections().collections:
        if collection.name.startswith("api_"):
            store.client.delete_collection(collection.name)


def is_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    return body


# --- creating, appending, sealing -----------------------------------------------------------


def test_create_with_documents_and_seal_in_one_call(api: Api):
    job = api.new_job(documents=5, seal=True)
    assert (job["status"], job["sealed"], job["documents_total"]) == ("pending", True, 5)
    assert job["batches_total"] == 3  # batch_size 2
    view = api.client.status(job["id"])
    assert (view.tenant, view.documents_total) == ("acme", 5)
    assert api.client.store.resolve(job["collection"]) is not None  # the collection exists


def test_location_header_and_get_agree(api: Api):
    body = {"collection": f"api_{uuid.uuid4().hex[:8]}", "model": api.model}
    created = api.http.post("/v1/jobs", json=body, headers=api.as_("acme"))
    assert created.status_code == 201
    fetched = api.http.get(created.headers["location"], headers=api.as_("acme"))
    assert fetched.status_code == 200 and fetched.json()["id"] == created.json()["id"]


def test_append_then_seal_then_append_again_is_a_conflict(api: Api):
    job = api.new_job(documents=0)
    appended = api.http.post(
        f"/v1/jobs/{job['id']}/batches", json={"documents": docs(3)}, headers=api.as_("acme")
    )
    assert appended.status_code == 202
    assert appended.json() == {"job_id": job["id"], "documents": 3, "rejected": 0, "batches": 2}
    sealed = api.http.post(f"/v1/jobs/{job['id']}/seal", headers=api.as_("acme"))
    assert sealed.status_code == 200 and sealed.json()["sealed"] is True
    again = api.http.post(
        f"/v1/jobs/{job['id']}/batches", json={"documents": docs(1)}, headers=api.as_("acme")
    )
    assert "sealed" in is_problem(again, 409)["detail"]


def test_bad_documents_become_failures_and_good_ones_are_taken(api: Api):
    job = api.new_job(documents=0)
    batch = [
        {"id": "a", "text": "fine"},
        {"id": "b", "text": "   "},
        {"id": "a", "text": "the same id again"},
        {"id": 7, "text": "integer ids are fine", "title": "T", "metadata": {"k": 1}},
    ]
    response = api.http.post(
        f"/v1/jobs/{job['id']}/batches", json={"documents": batch}, headers=api.as_("acme")
    )
    assert response.status_code == 202
    assert (response.json()["documents"], response.json()["rejected"]) == (4, 2)
    failures = api.http.get(f"/v1/jobs/{job['id']}/failures", headers=api.as_("acme")).json()
    reasons = sorted(f["reason"] for f in failures["failures"])
    assert reasons == [
        "document 2 of the request: text is empty",
        "document 3 of the request: duplicate id 'a'",
    ]
    status = api.http.get(f"/v1/jobs/{job['id']}", headers=api.as_("acme")).json()
    assert (status["documents_total"], status["documents_failed"]) == (4, 2)
    assert len(status["first_errors"]) == 2


def test_an_unknown_model_or_an_incompatible_collection_fails_before_any_job(
    api: Api, tmp_path, build_model
):
    missing = api.http.post(
        "/v1/jobs",
        json={"collection": "api_x", "model": str(tmp_path / "no-such-model")},
        headers=api.as_("acme"),
    )
    is_problem(missing, 422)
    job = api.new_job(documents=1)
    m3 = str(build_model(style="xlm-roberta"))  # dense and sparse: another shape
    clash = api.http.post(
        "/v1/jobs", json={"collection": job["collection"], "model": m3}, headers=api.as_("acme")
    )
    assert "does not fit" in is_problem(clash, 409)["detail"]
    assert len(jobs.list_jobs(api.client.sessions)) == 1


# --- listing, failures, cancel --------------------------------------------------------------


def test_list_filters_and_pages(api: Api):
    first, second, third = (api.new_job(documents=1) for _ in range(3))
    api.http.post(f"/v1/jobs/{second['id']}/cancel", headers=api.as_("acme"))
    page = api.http.get("/v1/jobs?limit=2", headers=api.as_("acme")).json()
    assert [j["id"] for j in page["jobs"]] == [third["id"], second["id"]]
    assert page["next_offset"] == 2
    rest = api.http.get("/v1/jobs?limit=2&offset=2", headers=api.as_("acme")).json()
    assert [j["id"] for j in rest["jobs"]] == [first["id"]] and rest["next_offset"] is None
    cancelled = api.http.get("/v1/jobs?status=cancelled", headers=api.as_("acme")).json()
    assert [j["id"] for j in cancelled["jobs"]] == [second["id"]]
    by_collection = api.http.get(
        f"/v1/jobs?collection={first['collection']}", headers=api.as_("acme")
    ).json()
    assert [j["id"] for j in by_collection["jobs"]] == [first["id"]]


def test_cancel_then_cancel_again(api: Api):
    job = api.new_job(documents=3)
    cancelled = api.http.post(f"/v1/jobs/{job['id']}/cancel", headers=api.as_("acme"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api.http.post(f"/v1/jobs/{job['id']}/cancel", headers=api.as_("acme"))
    assert "already ended" in is_problem(again, 409)["detail"]


# --- keys and tenants -----------------------------------------------------------------------

JOB_ROUTES = [
    ("GET", "/v1/jobs/{id}", None),
    ("GET", "/v1/jobs/{id}/failures", None),
    ("POST", "/v1/jobs/{id}/batches", {"documents": [{"id": "x", "text": "y"}]}),
    ("POST", "/v1/jobs/{id}/seal", None),
    ("POST", "/v1/jobs/{id}/cancel", None),
]


@pytest.mark.parametrize(("method", "path", "body"), JOB_ROUTES)
def test_another_tenants_job_is_answered_like_a_missing_one(api: Api, method, path, body):
    job = api.new_job("acme", documents=1)
    theirs = api.http.request(
        method, path.format(id=job["id"]), json=body, headers=api.as_("globex")
    )
    missing_id = uuid.uuid4().hex
    missing = api.http.request(
        method, path.format(id=missing_id), json=body, headers=api.as_("globex")
    )
    assert is_problem(theirs, 404)["detail"] == f"no job {job['id']}"
    assert is_problem(missing, 404)["detail"] == f"no job {missing_id}"
    unchanged = api.client.status(job["id"])
    assert (unchanged.status, unchanged.sealed, unchanged.documents_total) == ("pending", False, 1)


def test_listings_show_only_the_tenants_own_jobs(api: Api):
    mine, theirs = api.new_job("acme"), api.new_job("globex")
    for tenant, job in (("acme", mine), ("globex", theirs)):
        listed = api.http.get("/v1/jobs", headers=api.as_(tenant)).json()["jobs"]
        assert [j["id"] for j in listed] == [job["id"]]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [*JOB_ROUTES, ("GET", "/v1/jobs", None), ("POST", "/v1/jobs", {"collection": "c"})],
)
def test_every_v1_route_needs_a_live_key(api: Api, method, path, body):
    job = api.new_job("acme")
    url = path.format(id=job["id"])
    revoked = api.client.create_api_key(tenant="acme")
    api.client.revoke_api_key(revoked.id)
    for headers in (
        {},
        {"Authorization": "Bearer eq_not-a-key"},
        {"Authorization": f"Basic {api.keys['acme']}"},
        {"Authorization": f"Bearer {revoked.secret}"},
    ):
        response = api.http.request(method, url, json=body, headers=headers)
        is_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"


def test_the_api_refuses_to_start_without_keys_unless_in_dev_mode(
    tmp_path, postgres_schema_url, redis_url, qdrant_url
):
    settings = settings_for(tmp_path, postgres_schema_url, redis_url, qdrant_url)
    Client(settings).migrate()
    with pytest.raises(InvalidSettingError, match="embedq keys create"):
        create_app(settings)
    dev = settings.model_copy(update={"api_dev_mode": True})
    with TestClient(create_app(dev)) as http:
        assert http.get("/v1/jobs").status_code == 200  # no key needed


# --- limits and backpressure ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"collection": "no spaces allowed"}, "collection"),
        ({"collection": "-leading-dash"}, "collection"),
        ({"outputs": "dense,everything"}, "outputs"),
        ({"max_length": 3}, "max_length"),
        ({"long_text": "squeeze"}, "long_text"),
        ({"batch_size": 0}, "batch_size"),
        ({"documents": docs(1001)}, "documents"),
        ({"documents": [{"id": "x"}]}, "text"),
        ({"documents": [{"id": "", "text": "t"}]}, "id"),
        ({"documents": [{"id": "x", "text": "t", "extra": 1}]}, "extra"),
        ({"unknown_option": True}, "unknown_option"),
    ],
)
def test_invalid_requests_are_422_problems_that_say_where(api: Api, change, where):
    body = {"collection": "api_valid", "model": api.model, **change}
    response = api.http.post("/v1/jobs", json=body, headers=api.as_("acme"))
    problem = is_problem(response, 422)
    assert where in problem["detail"], problem
    assert jobs.list_jobs(api.client.sessions) == []


def test_a_text_over_the_limit_is_a_422_naming_it(api: Api):
    job = api.new_job(documents=0)
    too_long = [{"id": "big", "text": "x" * (MAX_TEXT_CHARS + 1)}]
    response = api.http.post(
        f"/v1/jobs/{job['id']}/batches", json={"documents": too_long}, headers=api.as_("acme")
    )
    assert "documents.0.text" in is_problem(response, 422)["detail"]
    assert api.client.status(job["id"]).documents_total == 0


def test_a_body_over_the_limit_is_413(tmp_path, postgres_schema_url, redis_url, qdrant_url):
    settings = settings_for(
        tmp_path, postgres_schema_url, redis_url, qdrant_url, api_max_body_bytes=4096
    )
    Client(settings).migrate()
    key = Client(settings).create_api_key(tenant="acme").secret
    with TestClient(create_app(settings)) as http:
        big = {"collection": "api_big", "documents": [{"id": "x", "text": "y" * 5000}]}
        response = http.post("/v1/jobs", json=big, headers={"Authorization": f"Bearer {key}"})
    is_problem(response, 413)


def test_a_full_queue_answers_429_and_takes_nothing(api: Api):
    job = api.new_job(documents=6)  # three batches of two: the high-water mark
    assert api.client.queue.depth() == HIGH_WATER_MARK
    refused = api.http.post(
        f"/v1/jobs/{job['id']}/batches", json={"documents": docs(2, "z")}, headers=api.as_("acme")
    )
    is_problem(refused, 429)
    assert int(refused.headers["retry-after"]) > 0
    assert api.client.status(job["id"]).documents_total == 6  # nothing taken
    assert api.client.queue.depth() == HIGH_WATER_MARK  # and nothing already queued dropped


# --- cheap polling --------------------------------------------------------------------------


def test_etag_answers_304_until_the_job_changes(api: Api):
    job = api.new_job(documents=0)
    url, headers = f"/v1/jobs/{job['id']}", api.as_("acme")
    first = api.http.get(url, headers=headers)
    tag = first.headers["etag"]
    unchanged = api.http.get(url, headers={**headers, "If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == tag
    api.http.post(f"{url}/batches", json={"documents": docs(1)}, headers=headers)
    changed = api.http.get(url, headers={**headers, "If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag


def test_long_poll_waits_for_a_change_and_returns_as_soon_as_it_comes(api: Api):
    job = api.new_job(documents=0)
    url, headers = f"/v1/jobs/{job['id']}", api.as_("acme")
    tag = api.http.get(url, headers=headers).headers["etag"]

    started = time.monotonic()
    quiet = api.http.get(f"{url}?wait=1", headers={**headers, "If-None-Match": tag})
    assert quiet.status_code == 304 and time.monotonic() - started >= 1

    timer = threading.Timer(1.0, lambda: jobs.cancel_job(api.client.sessions, job_id=job["id"]))
    timer.start()
    started = time.monotonic()
    woken = api.http.get(f"{url}?wait=20", headers={**headers, "If-None-Match": tag})
    waited = time.monotonic() - started
    timer.join()
    assert woken.status_code == 200 and woken.json()["status"] == "cancelled"
    assert 0.9 <= waited < 5


# --- operations -----------------------------------------------------------------------------


def test_healthz_readyz_and_metrics(api: Api):
    assert api.http.get("/healthz").json() == {"status": "ok"}
    ready = api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"ledger": "ok", "broker": "ok", "qdrant": "ok"}
    api.new_job(documents=1)
    metrics = api.http.get("/metrics").text
    assert 'embedq_jobs{status="pending"} 1.0' in metrics
    assert "embedq_queue_depth 1.0" in metrics
    assert 'embedq_http_requests_total{method="POST",route="/v1/jobs",status="201"}' in metrics


def test_readyz_names_the_service_that_is_down(
    tmp_path, postgres_schema_url, redis_url, qdrant_url
):
    settings = settings_for(
        tmp_path, postgres_schema_url, redis_url, "http://127.0.0.1:9", api_dev_mode=True
    )
    Client(settings).migrate()
    with TestClient(create_app(settings)) as http:
        response = http.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert (checks["ledger"], checks["broker"]) == ("ok", "ok")
    assert checks["qdrant"] != "ok"


def test_reindex_a_collection_the_tenant_built_and_only_that(api: Api):
    job = api.new_job("acme", documents=2, seal=True)
    body = {"collection": job["collection"], "model": api.model, "long_text": "truncate"}
    theirs = api.http.post("/v1/reindex", json=body, headers=api.as_("globex"))
    assert is_problem(theirs, 404)["detail"] == f"no collection {job['collection']}"
    started = api.http.post("/v1/reindex", json=body, headers=api.as_("acme"))
    assert started.status_code == 202, started.text
    reindex = started.json()
    assert (reindex["kind"], reindex["tenant"]) == ("reindex", "acme")
    assert reindex["options"]["physical_collection"] == f"{job['collection']}__v2"
    # its ingestion is still open (no worker here): the alias stays until it can catch up
    assert api.client.store.resolve(job["collection"]) == f"{job['collection']}__v1"
    again = api.http.post("/v1/reindex", json=body, headers=api.as_("acme"))
    assert "already being re-indexed" in is_problem(again, 422)["detail"]
    for path, payload in (("seal", None), ("batches", {"documents": docs(1)})):
        refused = api.http.post(
            f"/v1/jobs/{reindex['id']}/{path}", json=payload, headers=api.as_("acme")
        )
        assert "reindex job" in is_problem(refused, 409)["detail"]


# --- metadata no store could take ---------------------------------------------------------


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_a_body_nested_too_deep_to_parse_is_a_4xx_problem_and_the_api_goes_on(api: Api):
    body = (
        '{"collection":"api_deep","model":"m",'
        f'"documents":[{{"id":"deep","text":"t","metadata":{nested(3000)}}}]}}'
    )
    headers = {**api.as_("acme"), "content-type": "application/json"}
    response = api.http.post("/v1/jobs", content=body, headers=headers)
    assert response.status_code in (400, 422), response.text
    is_problem(response, response.status_code)
    assert jobs.list_jobs(api.client.sessions) == []
    assert api.http.get("/healthz").status_code == 200
    assert api.new_job(documents=1)["documents_total"] == 1


def test_metadata_past_a_limit_fails_its_document_alone(api: Api):
    job = api.new_job(documents=0)
    documents = [
        '{"id":"ok","text":"fine","metadata":{"n":9223372036854775807}}',
        f'{{"id":"deep","text":"t","metadata":{nested(40)}}}',
        '{"id":"huge","text":"t","metadata":{"a":{"b":1180591620717411303424}}}',
        '{"id":"nan","text":"t","metadata":{"x":NaN}}',
        '{"id":"surrogate","text":"t","metadata":{"k":"\\ud800"}}',
    ]
    body = '{"documents":[' + ",".join(documents) + "]}"
    headers = {**api.as_("acme"), "content-type": "application/json"}
    response = api.http.post(f"/v1/jobs/{job['id']}/batches", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert (response.json()["documents"], response.json()["rejected"]) == (5, 4)
    failures = api.http.get(f"/v1/jobs/{job['id']}/failures", headers=api.as_("acme")).json()
    reasons = sorted(f["reason"] for f in failures["failures"])
    assert reasons == [
        "document 2 of the request: metadata is nested 40 levels deep, more than the 32 allowed",
        "document 3 of the request: metadata.a.b: integer 1180591620717411303424 is outside "
        "the signed 64-bit range",
        "document 4 of the request: metadata.x: nan is not a finite number",
        "document 5 of the request: metadata.k: the string holds a lone surrogate at "
        "character 0, not Unicode",
    ]
