"""What a worker process holds for its whole life: settings, ledger, Qdrant, its models,
its background writer, where re-index batches go, and the hooks after a batch.

Built once per process, whole, after the fork (Celery's ``worker_process_init``), so
nothing touches CUDA in the parent. Its models come from one registry per process
(``embedq.models.ModelRegistry``), which loads each on first use under the process's
memory budget and evicts the least recently used when a new one does not fit.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from embedq.jobs import open_ledger
from embedq.models import ModelRegistry, ModelSource
from embedq.outages import ServiceGate
from embedq.settings import Settings
from embedq.store import QdrantStore, connect
from embedq.workers.hooks import BatchHook, default_hooks
from embedq.workers.ingest.writer import BatchWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class WorkerContext:
    """Built whole, never changed: what each batch of the process runs with."""

    settings: Settings
    sessions: sessionmaker[Session]
    store: QdrantStore
    # the process's registry; or models a caller built itself (``embedq.models.GivenModels``)
    models: ModelSource
    worker_id: str = field(default_factory=lambda: new_worker_id())
    # Set, batches are written in the background while the next one embeds (see writer).
    writer: BatchWriter | None = None
    # Where a re-index's catch-up batches go (its own queue under Celery).
    publish_reindex: Callable[[str], object] | None = None
    # Told of each batch's recorded end, in turn (see hooks); add yours after the defaults.
    hooks: Sequence[BatchHook] = field(default_factory=default_hooks)
    # closed by a write Qdrant could not take: claims wait until Qdrant answers again
    qdrant_gate: ServiceGate = field(init=False)

    def __post_init__(self) -> None:
        # frozen: the gate depends on the store, so it is set here, once
        object.__setattr__(self, "qdrant_gate", ServiceGate("Qdrant", self.store.ping, logger))

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        sessions: sessionmaker[Session] | None = None,
        writer: BatchWriter | None = None,
        publish_reindex: Callable[[str], object] | None = None,
    ) -> WorkerContext:
        """The context of a worker process, on the ledger and Qdrant its settings name
        (or on ``sessions`` already opened to that ledger)."""
        client = connect(
            url=settings.qdrant_url, path=settings.qdrant_path, api_key=settings.qdrant_api_key
        )
        if sessions is None:
            sessions = open_ledger(settings.ledger_url)  # refuses an unmigrated ledger, clearly
        return cls(
            settings=settings,
            sessions=sessions,
            store=QdrantStore(client),
            models=ModelRegistry(settings.device, settings.memory_budget),
            writer=writer,
            publish_reindex=publish_reindex,
        )

    def publish_reindex_batch(self, batch_id: str) -> None:
        """Queue a re-index's catch-up batch; a context built without a publisher cannot."""
        if self.publish_reindex is None:
            raise RuntimeError("this worker context cannot queue re-index batches")
        self.publish_reindex(batch_id)


def new_worker_id() -> str:
    """Unique per process, readable in the ledger: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
