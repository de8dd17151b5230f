"""Fixtures of the end-to-end tests: real Redis, Postgres and Qdrant, real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from qdrant_client import QdrantClient

from embedq.api.client import Client
from embedq.settings import Settings

LEASE_SECONDS = 6


@pytest.fixture
def environment(tmp_path, redis_url, postgres_schema_url, qdrant_url) -> Iterator[dict]:
    queue = f"embedq.test.{uuid.uuid4().hex[:8]}"
    env = {
        "EMBEDQ_HOME": str(tmp_path / "home"),
        "EMBEDQ_BROKER_URL": redis_url,
        "EMBEDQ_DATABASE_URL": postgres_schema_url,
        "EMBEDQ_QDRANT_URL": qdrant_url,
        "EMBEDQ_QUEUE": queue,
        "EMBEDQ_LEASE_SECONDS": str(LEASE_SECONDS),
        "HF_HUB_OFFLINE": "1",
    }
    yield env
    import redis

    redis.Redis.from_url(redis_url).delete(queue)


@pytest.fixture
def client(environment, monkeypatch) -> Client:
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    client = Client(Settings())
    client.migrate()
    return client


@pytest.fixture
def workers(environment, tmp_path) -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def collection(qdrant_url) -> Iterator[str]:
    name = f"e2e_{uuid.uuid4().hex[:8]}"
    yield name
    qdrant = QdrantClient(url=qdrant_url)
    for alias in qdrant.get_aliases().aliases:
        if alias.alias_name == name:
            qdrant.delete_collection(alias.collection_name)  # its alias goes with it
