"""The real services of one run: a fresh Postgres schema, tracked Qdrant collections, Redis keys."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from qdrant_client import QdrantClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from bench.pipeline.config import LOGGER, Services
from embedq import jobs
from embedq.store import VERSION_SEPARATOR, QdrantStore, connect

logger = logging.getLogger(LOGGER)


def run_tag() -> str:
    """A short random tag that names this run's schema, collections and queue."""
    return uuid.uuid4().hex[:8]


def queue_name(tag: str) -> str:
    """The run's own Celery queue, so no other worker takes its batches."""
    return f"embedq.bench.{tag}"


@contextlib.contextmanager
def ledger_schema(base_url: str, tag: str) -> Iterator[str]:
    """A URL into a fresh, migrated Postgres schema, dropped afterwards."""
    schema = f"bench_pipeline_{tag}"
    admin = create_engine(base_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        rendered = url.render_as_string(hide_password=False)
        jobs.migrate(rendered)
        logger.info("ledger in Postgres schema %s", schema)
        yield rendered
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def ledger_sessions(url: str) -> Iterator[sessionmaker[Session]]:
    engine = jobs.make_engine(url)
    try:
        yield jobs.make_sessions(engine)
    finally:
        engine.dispose()


@dataclass
class Collections:
    """Names this run gives to Qdrant collections; every one is deleted on the way out."""

    client: QdrantClient
    tag: str
    names: list[str] = field(default_factory=list)

    def new(self, label: str) -> str:
        name = f"bench_pipeline_{self.tag}_{label}"
        self.names.append(name)
        return name

    def drop(self, name: str) -> None:
        """The collection ``name`` and its versions ``name__v<N>`` (their aliases go with them)."""
        for found in self.client.get_collections().collections:
            if found.name == name or found.name.startswith(name + VERSION_SEPARATOR):
                self.client.delete_collection(found.name)
                logger.info("deleted collection %s", found.name)

    def drop_all(self) -> None:
        for name in self.names:
            self.drop(name)


@contextlib.contextmanager
def qdrant_collections(url: str, tag: str) -> Iterator[Collections]:
    client = QdrantClient(url=url)
    collections = Collections(client, tag)
    try:
        yield collections
    finally:
        collections.drop_all()
        client.close()


def store_for(url: str) -> QdrantStore:
    """A Qdrant writer opened the way a worker opens its own."""
    return QdrantStore(connect(url=url))


def drop_queue(redis_url: str, queue: str) -> None:
    """A Celery queue's Redis list and the binding sets kombu keeps for it (its exchange)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    client.close()


def server_versions(services: Services) -> dict[str, str | None]:
    """The versions of the three servers the pipeline talks to."""
    return {
        "qdrant_server": _qdrant_version(services.qdrant_url),
        "postgres_server": _postgres_version(services.database_url),
        "redis_server": _redis_version(services.redis_url),
    }


def _qdrant_version(url: str) -> str | None:
    with contextlib.closing(QdrantClient(url=url)) as client:
        return client.info().version


def _postgres_version(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


def _redis_version(url: str) -> str | None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server").get("redis_version"))
    finally:
        client.close()
