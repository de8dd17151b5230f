"""What a worker process holds for its whole life: settings, ledger, Qdrant, loaded models.

Built once per process, after the fork (Celery's ``worker_process_init``), so
nothing touches CUDA in the parent; models load on first use and stay loaded.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from embedq.jobs import open_ledger
from embedq.models import Embedder, EmbeddingResult, Reranker
from embedq.outages import ServiceGate
from embedq.settings import Settings
from embedq.store import QdrantStore, connect
from embedq.workers.ingest.writer import BatchWriter

if TYPE_CHECKING:
    from embedq.workers.pipeline import BatchOutcome

logger = logging.getLogger(__name__)

# Job options that decide how a model is loaded (and so which loaded model serves a job).
MODEL_OPTIONS = ("outputs", "max_length", "long_text")


class BatchEmbedder(Protocol):
    """What the pipeline needs of a model: the runtime's ``Embedder`` or a stand-in."""

    def embed(self, texts: Sequence[object]) -> list[EmbeddingResult]: ...


EmbedderLoader = Callable[[Settings, str, dict[str, Any]], BatchEmbedder]


class PairScorer(Protocol):
    """What a rerank batch needs of a model: the runtime's ``Reranker`` or a stand-in."""

    def score_each(
        self, pairs: Sequence[tuple[str, str]]
    ) -> tuple[list[float | None], dict[int, str]]: ...


RerankerLoader = Callable[[Settings, str], PairScorer]


def load_embedder(settings: Settings, model: str, options: dict[str, Any]) -> BatchEmbedder:
    return Embedder.load(
        model,
        device=settings.device,
        memory_budget=settings.memory_budget,
        max_length=options.get("max_length"),
        long_text=options.get("long_text") or "chunk",
        outputs=options.get("outputs"),
    )


def load_reranker(settings: Settings, model: str) -> PairScorer:
    return Reranker.load(model, device=settings.device, memory_budget=settings.memory_budget)


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    store: QdrantStore
    worker_id: str = field(default_factory=lambda: new_worker_id())
    loader: EmbedderLoader = load_embedder
    # Set, batches are written in the background while the next one embeds (see writer).
    writer: BatchWriter | None = None
    # Told of every batch write that ended, with its outcome and stage times.
    on_written: Callable[[BatchOutcome], None] | None = None
    # Where a re-index's catch-up batches go (its own queue under Celery).
    publish_reindex: Callable[[str], None] | None = None
    reranker_loader: RerankerLoader = load_reranker
    # closed by a write Qdrant could not take: claims wait until Qdrant answers again
    qdrant_gate: ServiceGate = field(init=False)
    _embedders: dict[tuple, BatchEmbedder] = field(default_factory=dict)
    _rerankers: dict[str, PairScorer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.qdrant_gate = ServiceGate("Qdrant", self.store.ping, logger)

    @classmethod
    def create(cls, settings: Settings) -> WorkerContext:
        client = connect(
            url=settings.qdrant_url, path=settings.qdrant_path, api_key=settings.qdrant_api_key
        )
        sessions = open_ledger(settings.ledger_url)  # refuses an unmigrated ledger, clearly
        return cls(settings=settings, sessions=sessions, store=QdrantStore(client))

    def embedder(self, model: str, options: dict[str, Any]) -> BatchEmbedder:
        """The loaded embedder for a job's model and options, loading it on first use."""
        key = (model, *(str(options.get(name)) for name in MODEL_OPTIONS))
        if key not in self._embedders:
            logger.info("worker %s loads %s %s", self.worker_id, model, options)
            self._embedders[key] = self.loader(self.settings, model, options)
        return self._embedders[key]

    def reranker(self, model: str) -> PairScorer:
        """The loaded reranker for a rerank job's model, loading it on first use."""
        if model not in self._rerankers:
            logger.info("worker %s loads reranker %s", self.worker_id, model)
            self._rerankers[model] = self.reranker_loader(self.settings, model)
        return self._rerankers[model]


def new_worker_id() -> str:
    """Unique per process, readable in the ledger: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
