"""Fixtures of the fault tests: private servers, started for one test and gone after it.

A server whose program is not installed skips the test on a laptop and fails it in CI
(``tests.conftest.service_unavailable``); one that is installed but does not start is an error.
A test that needs a server reachable from a ``netns.Host`` creates the host first and then the
server itself, with the host's ``service_address`` among its ``hosts``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.conftest import service_unavailable
from tests.faults.servers import MissingServerError, PostgresServer, QdrantServer, RedisServer

Server = TypeVar("Server", PostgresServer, RedisServer, QdrantServer)


def started(what: str, make: Callable[[], Server]) -> Iterator[Server]:
    try:
        server = make()
    except MissingServerError as error:
        service_unavailable(what, str(error))
        raise  # not reached: service_unavailable skips or fails
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    yield from started("a private Postgres", lambda: PostgresServer(tmp_path / "postgres"))


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    yield from started("a private Redis", lambda: RedisServer(tmp_path / "redis"))


@pytest.fixture
def private_qdrant(tmp_path: Path) -> Iterator[QdrantServer]:
    yield from started("a private Qdrant", lambda: QdrantServer(tmp_path / "qdrant"))
