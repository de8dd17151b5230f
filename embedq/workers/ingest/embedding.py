"""Turning a batch's documents into points: embed them, then one point per chunk.

The model is told to stop at its next micro-batch once the batch's lease is lost
(``BatchRun.on_progress``): a cancelled job's batch embeds no further.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from embedq import jobs
from embedq.jobs.fingerprint import content_hash, embedding_settings
from embedq.models import EmbedderSpec, EmbeddingResult
from embedq.store import PointData
from embedq.workers.running import BatchRun


@dataclass(frozen=True)
class BatchSummary:
    points: list[PointData]
    documents_done: int
    chunks_done: int
    tokens_done: int
    failures: list[jobs.Failure]


def embed_claim(run: BatchRun) -> BatchSummary:
    context, claim = run.context, run.claim
    embedding = jobs.embedding_of(claim.options)
    embedder = context.models.embedder(claim.model, embedder_spec(embedding))
    documents = claim.documents_as(jobs.Document)
    texts = [document.text for document in documents]
    results = embedder.embed(texts, on_progress=run.on_progress)
    settings = embedding_settings(claim.model, embedding)
    return summarise(documents, results, job_id=claim.job_id, model=claim.model, settings=settings)


def embedder_spec(embedding: jobs.Embedding) -> EmbedderSpec:
    """What the model registry needs of a job's embedding settings."""
    return EmbedderSpec(embedding.max_length, embedding.long_text, embedding.outputs)


def summarise(
    documents: Sequence[jobs.Document],
    results: Sequence[EmbeddingResult],
    *,
    job_id: str,
    model: str,
    settings: list[Any] | None = None,
) -> BatchSummary:
    """The points of the documents that embedded, and a failure for each that did not.

    With ``settings`` (the job's embedding settings), each point carries its
    document's content hash.
    """
    points: list[PointData] = []
    failures: list[jobs.Failure] = []
    tokens = 0
    for document, result in zip(documents, results, strict=True):
        if not result.ok:
            failures.append(jobs.Failure(doc_id=document.id, reason=str(result.error)))
            continue
        digest = None if settings is None else content_hash(document, settings)
        points.extend(document_points(document, result, job_id=job_id, model=model, digest=digest))
        tokens += sum(chunk.num_tokens for chunk in result.chunks)
    done = len(documents) - len(failures)
    return BatchSummary(points, done, len(points), tokens, failures)


def document_points(
    document: jobs.Document,
    result: EmbeddingResult,
    *,
    job_id: str,
    model: str,
    digest: str | None,
) -> list[PointData]:
    """One point per chunk of an embedded document; the first carries the whole text when
    its chunk holds only part of it."""
    whole = document.text
    points = []
    for index, chunk in enumerate(result.chunks):
        text = whole if chunk.start is None or chunk.end is None else whole[chunk.start : chunk.end]
        points.append(
            PointData(
                doc_id=document.id,
                chunk=index,
                text=text,
                metadata=document.metadata,
                job_id=job_id,
                model=model,
                dense=chunk.dense,
                sparse=chunk.sparse,
                colbert=chunk.colbert,
                document=whole if index == 0 and text != whole else None,
                content_hash=digest,
            )
        )
    return points
