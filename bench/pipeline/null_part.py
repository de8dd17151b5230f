"""Part 2: the pipeline around a null model with BGE-M3's output sizes against Qdrant alone.

The same points (the pipeline's own ``summarise`` of the same batches, the same seeded
vectors) are upserted through ``QdrantStore.upsert`` into a fresh collection before and
after the pipeline runs, in the same batches and so the same requests; the target is
set against that. The same points sent through qdrant-client's generated HTTP API
(its pydantic models and JSON) are timed too, for comparison.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from bench.pipeline.baselines import AlonePass, null_points, qdrant_alone, qdrant_http_alone
from bench.pipeline.breakdown import compared, in_process_breakdown, pipeline_entry, rate
from bench.pipeline.config import LOGGER, NULL_DENSE_DIM, NULL_OUTPUTS, NULL_SEED, NULL_TARGET
from bench.pipeline.corpus import null_texts, producer_batches, write_jsonl
from bench.pipeline.inprocess import run_in_process
from bench.pipeline.nullmodel import NullEmbedder, null_model_folder
from bench.pipeline.session import BenchSession
from embedq.api.ingest.producer import IngestRequest
from embedq.store import CollectionShape, PointData

logger = logging.getLogger(LOGGER)

NULL_SHAPE = CollectionShape(dense_dim=NULL_DENSE_DIM, sparse=True, colbert_dim=None)
HTTP_NOTE = (
    "informational, no target: the same points through qdrant-client's generated HTTP API "
    "(pydantic models built before the clock; JSON with float32 widened to float64 text), "
    "where QdrantStore.upsert sends its own body of shortest float32 text"
)


def alone_pass(
    session: BenchSession, label: str, points: list[list[PointData]], http: bool = False
) -> AlonePass:
    """One pass of the points into a fresh collection, dropped afterwards."""
    name = session.collections.new(label)
    measure = qdrant_http_alone if http else qdrant_alone
    try:
        return measure(session.store, name, NULL_SHAPE, points)
    finally:
        session.collections.drop(name)


def qdrant_entry(before: AlonePass, after: AlonePass) -> dict[str, Any]:
    """The reference: the mean of the passes before and after the pipeline."""
    return {
        **rate((before.seconds + after.seconds) / 2, before.documents),
        "requests": before.requests,
        "passes": [
            {**rate(p.seconds, p.documents), "points_stored": p.points_stored}
            for p in (before, after)
        ],
    }


def measure_null(session: BenchSession, docs: int) -> dict[str, Any]:
    path = write_jsonl(session.scratch / "null.jsonl", null_texts(docs), "null")
    batches = producer_batches(path, session.batch_size)
    logger.info("null part: %d documents in %d batches", docs, len(batches))
    with null_model_folder() as folder:
        reference_model = NullEmbedder(NULL_SEED)
        points = null_points(batches, reference_model, job_id=uuid.uuid4().hex, model=str(folder))
        before = alone_pass(session, "null_alone_before", points)
        http_before = alone_pass(session, "null_http_before", points, http=True)
        embedder = NullEmbedder(NULL_SEED)
        pipeline = in_process_entry(session, str(folder), path, embedder)
        http_after = alone_pass(session, "null_http_after", points, http=True)
        after = alone_pass(session, "null_alone_after", points)
    qdrant, http = qdrant_entry(before, after), qdrant_entry(http_before, http_after)
    return {
        "documents": docs,
        "batches": len(batches),
        "same_batches_and_vectors": embedder.calls == reference_model.calls,
        "qdrant_upsert_alone": qdrant,
        "qdrant_http_alone": {**http, "note": HTTP_NOTE},
        "pipeline_in_process": {
            **compared(pipeline, qdrant["docs_per_s"], NULL_TARGET),
            "ratio_to_qdrant_http_alone": round(pipeline["docs_per_s"] / http["docs_per_s"], 3),
        },
    }


def in_process_entry(
    session: BenchSession, model: str, path: Path, embedder: NullEmbedder
) -> dict[str, Any]:
    name = session.collections.new("null_in_process")
    request = IngestRequest(
        files=[path],
        collection=name,
        model=model,
        outputs=NULL_OUTPUTS,
        batch_size=session.batch_size,
    )
    run = run_in_process(session, request, embedder)
    physical = run.job.options.physical_collection
    entry = {
        **pipeline_entry([run]),
        "points_stored": session.store.count(physical),
        "same_collection_shape": session.store.shape_of(physical) == NULL_SHAPE,
        "where_time_goes": in_process_breakdown([run]),
    }
    # dropped at once: its HNSW graph, restored at the job's end, would load the next pass
    session.collections.drop(name)
    return entry
