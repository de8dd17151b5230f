"""One benchmark run's shared state: ledger, Qdrant, device, scratch folder, and its Settings."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bench.pipeline.config import LEASE_SECONDS, Services
from bench.pipeline.services import (
    Collections,
    drop_queue,
    ledger_schema,
    ledger_sessions,
    qdrant_collections,
    queue_name,
    run_tag,
    store_for,
)
from embedq.settings import Settings
from embedq.store import QdrantStore


@dataclass(frozen=True)
class BenchSession:
    """Everything the parts of one run share; built and torn down by :func:`bench_session`."""

    services: Services
    tag: str
    device: str
    budget: str
    batch_size: int
    scratch: Path
    schema_url: str
    sessions: sessionmaker[Session]
    store: QdrantStore
    collections: Collections

    @property
    def queue(self) -> str:
        return queue_name(self.tag)

    def settings(self, *, broker: bool = False) -> Settings:
        """Settings for this run; with ``broker``, batches go to Redis for a worker process."""
        return Settings(
            home=self.scratch / "home",
            broker_url=self.services.redis_url if broker else None,
            database_url=self.schema_url,
            qdrant_url=self.services.qdrant_url,
            device=self.device,
            memory_budget=self.budget,
            batch_size=self.batch_size,
            lease_seconds=LEASE_SECONDS,
            queue=self.queue,
        )


@contextlib.contextmanager
def bench_session(
    services: Services, *, device: str, budget: str, batch_size: int
) -> Iterator[BenchSession]:
    """A fresh Postgres schema, tracked collections and a scratch folder; all gone afterwards."""
    tag = run_tag()
    with (
        tempfile.TemporaryDirectory(prefix="embedq-bench-pipeline-") as scratch,
        ledger_schema(services.database_url, tag) as schema_url,
        ledger_sessions(schema_url) as sessions,
        qdrant_collections(services.qdrant_url, tag) as collections,
    ):
        store = store_for(services.qdrant_url)
        try:
            yield BenchSession(
                services,
                tag,
                device,
                budget,
                batch_size,
                Path(scratch),
                schema_url,
                sessions,
                store,
                collections,
            )
        finally:
            store.client.close()
            drop_queue(services.redis_url, queue_name(tag))
