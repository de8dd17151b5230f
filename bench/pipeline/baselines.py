"""The components measured alone: the runtime's ``embed`` and Qdrant's upsert, on the same work."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from qdrant_client import models as qm

from bench.pipeline.config import LOGGER
from bench.pipeline.nullmodel import NullEmbedder
from bench.runtime.measure import now
from embedq.jobs.contracts import Document
from embedq.models import BatchEmbedder
from embedq.store import CollectionShape, PointData, QdrantStore
from embedq.store.points import checked_size, point_struct, request_spans
from embedq.workers.ingest.embedding import summarise

logger = logging.getLogger(LOGGER)


@dataclass(frozen=True)
class AlonePass:
    """One timed pass of a component over every batch."""

    seconds: float
    documents: int
    batch_seconds: list[float]
    requests: int = 0
    points_stored: int | None = None


def runtime_alone(
    embedder: BatchEmbedder, batches: Sequence[Sequence[str]], device: str
) -> AlonePass:
    """``embed`` over each batch in turn, timed per batch; documents with a vector counted."""
    seconds, embedded = [], 0
    for texts in batches:
        started = now(device)
        results = embedder.embed(list(texts))
        seconds.append(now(device) - started)
        embedded += sum(result.ok for result in results)
    logger.info("runtime alone: %d documents in %.1f s", embedded, sum(seconds))
    return AlonePass(sum(seconds), embedded, seconds)


def null_points(
    batches: Sequence[Sequence[Document]], embedder: NullEmbedder, *, job_id: str, model: str
) -> list[list[PointData]]:
    """The points the pipeline builds of each batch (its own ``summarise``), vectors included."""
    points = []
    for batch in batches:
        results = embedder.embed([document.text for document in batch])
        points.append(summarise(batch, results, job_id=job_id, model=model).points)
    return points


def qdrant_http_alone(
    store: QdrantStore, name: str, shape: CollectionShape, batches: Sequence[Sequence[PointData]]
) -> AlonePass:
    """The same points through qdrant-client's generated HTTP API, timed alone.

    qdrant-client's own way of sending them: pydantic models (built before the clock
    starts) encoded as JSON with every float32 widened to float64 text. For comparison
    with ``QdrantStore.upsert``, which writes its own body of shortest float32 text.
    """
    physical = store.ensure_collection(name, shape)
    store.begin_bulk_load(physical)
    seconds, requests = [], 0
    for points in batches:
        for operation in _requests(store, points):
            started = now("cpu")
            store.client.http.points_api.upsert_points(
                collection_name=physical, wait=True, point_insert_operations=operation
            )
            seconds.append(now("cpu") - started)
            requests += 1
    stored = store.count(physical)
    logger.info("Qdrant HTTP alone: %d points in %.1f s", stored, sum(seconds))
    return AlonePass(sum(seconds), sum(map(len, batches)), seconds, requests, stored)


def _requests(store: QdrantStore, points: Sequence[PointData]) -> Iterator[qm.PointsList]:
    """The requests ``QdrantStore.upsert`` would send for ``points``, built one at a time."""
    sizes = [checked_size(point) for point in points]
    for start, stop in request_spans(sizes, store.max_request_bytes):
        yield qm.PointsList(points=[point_struct(point) for point in points[start:stop]])


def qdrant_alone(
    store: QdrantStore, name: str, shape: CollectionShape, batches: Sequence[Sequence[PointData]]
) -> AlonePass:
    """``QdrantStore.upsert`` of each batch's points into a fresh collection, as a worker does.

    The collection is created and put in bulk-load mode the way the producer does it.
    """
    physical = store.ensure_collection(name, shape)
    store.begin_bulk_load(physical)
    seconds, requests = [], 0
    for points in batches:
        started = now("cpu")
        requests += store.upsert(physical, points).requests
        seconds.append(now("cpu") - started)
    stored = store.count(physical)
    logger.info("Qdrant alone: %d points in %.1f s (%d requests)", stored, sum(seconds), requests)
    return AlonePass(sum(seconds), sum(map(len, batches)), seconds, requests, stored)
