"""The served OpenAPI schema: generated requests never get a 5xx, and docs/ holds it as served."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import huggingface_hub.constants
import pytest
import redis
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from embedq.api.client import Client
from embedq.api.http.app import create_app
from embedq.api.http.openapi import openapi_schema
from embedq.settings import Settings

EXAMPLES = 30  # per operation
# the same cases every run (CI stays stable); EMBEDQ_FUZZ_RANDOM=1 explores new ones
FIXED = os.environ.get("EMBEDQ_FUZZ_RANDOM") != "1"
DOCS_SCHEMA = Path(__file__).parents[2] / "docs" / "openapi.json"


@pytest.fixture
def served(tmp_path, postgres_schema_url, redis_url, qdrant_url, monkeypatch):
    # model names the cases make up must not reach for the hub (read at import: patch it too)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    settings = Settings(
        home=tmp_path / "home",
        database_url=postgres_schema_url,
        broker_url=redis_url,
        qdrant_url=qdrant_url,
        queue=f"embedq.test.schema.{tmp_path.name}",
    )
    client = Client(settings)
    client.migrate()
    key = client.create_api_key(tenant="fuzz").secret
    created: set[str] = set()  # collections the cases made (others' tests run beside)
    yield create_app(settings), key, created
    for name in created:
        for version in client.store.versions(name):
            client.store.delete(version)
    redis.Redis.from_url(redis_url).delete(settings.queue)


def test_no_request_the_schema_allows_gets_a_server_error(served, build_model):
    app, key, created = served
    created.add("fuzz_base")
    headers = {"Authorization": f"Bearer {key}"}
    model = str(build_model(style="bert", m3_heads=False, shape=None))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # one real job, so half the cases reach past the 404 (no lifespan: the app stays up)
    job = (
        TestClient(app)
        .post("/v1/jobs", json={"collection": "fuzz_base", "model": model}, headers=headers)
        .json()
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    statuses: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        _fuzz(operation, headers, statuses, created, job_id=job["id"], model=model)
    # the generated cases got past validation and lookups, not only refusals
    assert any(s < 300 for (label, s) in statuses if "{job_id}" in label), statuses
    assert statuses[("POST /v1/jobs", 201)] > 0, statuses


def _fuzz(
    operation,
    headers: dict[str, str],
    statuses: Counter,
    created: set[str],
    *,
    job_id: str,
    model: str,
) -> None:
    calls = 0

    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=FIXED,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def call(case) -> None:
        nonlocal calls
        calls += 1
        if calls % 2:  # every other case on the real job, or with a model that loads
            if "job_id" in (case.path_parameters or {}):
                case.path_parameters["job_id"] = job_id
            if operation.label == "POST /v1/jobs" and isinstance(case.body, dict):
                case.body["model"] = model
        response = case.call(headers=headers)
        statuses[(operation.label, response.status_code)] += 1
        if response.status_code == 201:
            created.add(response.json()["collection"])
        assert response.status_code < 500, (operation.label, response.status_code, response.text)

    call()


def test_the_schema_in_docs_is_the_one_served():
    assert json.loads(DOCS_SCHEMA.read_text(encoding="utf-8")) == openapi_schema(), (
        "regenerate it: python -m embedq.api.http.openapi > docs/openapi.json"
    )
