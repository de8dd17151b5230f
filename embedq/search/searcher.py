"""Search a collection as it was built: ledger settings → query vectors → Qdrant → rerank."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session, sessionmaker

from embedq.errors import InvalidSettingError
from embedq.models import EmbedderSpec, RerankError
from embedq.models.protocols import BatchEmbedder, ModelSource, PairScorer
from embedq.search.errors import InvalidQueryError, NotIndexedError, RerankFailedError
from embedq.search.index import IndexSettings, index_settings
from embedq.search.query import Hit, QueryVectors, chosen_mode, run_query, searchable
from embedq.store import QdrantStore

# With a reranker, it rescores at least this many first-stage hits and keeps the best
# ``top_k``: reranking only the hits that would be shown anyway could only reorder them.
RERANK_POOL = 50

# scores (query, passage) pairs, as ``Reranker.score`` does
Scorer = Callable[[Sequence[tuple[str, str]]], list[float]]


@dataclass(frozen=True)
class QueryPlan:
    """How queries of one collection are searched: the mode and the model, settled once."""

    collection: str
    mode: str
    embedder: BatchEmbedder

    def hits(self, store: QdrantStore, query: str, limit: int) -> list[Hit]:
        """The ``limit`` best chunks for ``query``, best first."""
        return run_query(
            store, self.collection, self.mode, _query_vectors(self.embedder, query), limit
        )


def plan_search(
    sessions: sessionmaker[Session],
    store: QdrantStore,
    collection: str,
    *,
    models: ModelSource,
    mode: str = "hybrid",
    embedder: BatchEmbedder | None = None,
) -> QueryPlan:
    """Settle how ``collection`` is searched, for any number of queries.

    Queries are embedded with the model and settings the ledger recorded for the
    collection, taken from ``models`` (the process's registry; ``embedder`` replaces
    that model, for callers that hold one), and searched through the collection's
    alias, so they follow re-index swaps.
    """
    physical = store.resolve(collection)
    index = index_settings(sessions, collection, physical=physical)
    if physical is None:
        raise NotIndexedError(
            f"collection {collection!r} is in the ledger but not in Qdrant (was it deleted?)"
        )
    available = searchable(store.shape_of(physical), index.outputs)
    mode = chosen_mode(mode, available, collection)
    if embedder is None:
        embedder = models.embedder(index.model, query_spec(index, available))
    return QueryPlan(collection, mode, embedder)


def query_spec(index: IndexSettings, outputs: frozenset[str]) -> EmbedderSpec:
    """How queries of ``index`` are embedded, for ``outputs``: as its documents were.

    A query is one chunk (truncated), whatever the collection did with long texts:
    a document's chunks are embedded alike either way, so vectors still compare.
    """
    max_length = None if index.embedding is None else index.embedding.max_length
    return EmbedderSpec(max_length=max_length, long_text="truncate", outputs=outputs)


def search(
    sessions: sessionmaker[Session],
    store: QdrantStore,
    collection: str,
    query: str,
    *,
    models: ModelSource,
    top_k: int = 10,
    mode: str = "hybrid",
    rerank_model: str | None = None,
    embedder: BatchEmbedder | None = None,
) -> list[Hit]:
    """The ``top_k`` best chunks of ``collection`` for ``query``, best first (see
    ``plan_search``), rescored by ``rerank_model`` if given."""
    if top_k < 1:
        raise InvalidSettingError(f"top_k must be at least 1, not {top_k}")
    plan = plan_search(sessions, store, collection, models=models, mode=mode, embedder=embedder)
    limit = top_k if rerank_model is None else max(top_k, RERANK_POOL)
    hits = plan.hits(store, query, limit)
    if rerank_model is None:
        return hits
    return reranked(hits, every_score(models.reranker(rerank_model)), query, top_k)


def hybrid_candidates(
    sessions: sessionmaker[Session],
    store: QdrantStore,
    collection: str,
    query: str,
    n: int,
    *,
    models: ModelSource,
) -> list[Hit]:
    """The ``n`` best chunks by hybrid search (dense alone where there is no sparse)."""
    return search(sessions, store, collection, query, models=models, top_k=n, mode="hybrid")


def every_score(scorer: PairScorer) -> Scorer:
    """``scorer`` as a ``Scorer``: every pair's score, or ``RerankError`` saying which failed."""

    def score(pairs: Sequence[tuple[str, str]]) -> list[float]:
        scores, reasons = scorer.score_each(pairs)
        if reasons:
            raise RerankError(reasons)
        return [score for score in scores if score is not None]

    return score


def reranked(hits: Sequence[Hit], score: Scorer, query: str, top_k: int) -> list[Hit]:
    """The ``top_k`` hits best by ``score(pairs)``, re-ranked, with its scores."""
    try:
        scores = score([(query, hit.text) for hit in hits])
    except RerankError as error:
        raise RerankFailedError(f"the reranker could not score the hits: {error}") from error
    # sorted() is stable: hits the reranker ties keep their first-stage order
    order = sorted(range(len(hits)), key=lambda i: -scores[i])[:top_k]
    return [
        replace(hits[i], rank=rank, score=float(scores[i])) for rank, i in enumerate(order, start=1)
    ]


def _query_vectors(embedder: BatchEmbedder, query: str) -> QueryVectors:
    (result,) = embedder.embed([query])
    if not result.ok or not result.chunks:
        raise InvalidQueryError(f"the query cannot be searched: {result.error}")
    chunk = result.chunks[0]  # the only one: queries are truncated, never chunked
    return QueryVectors(dense=chunk.dense, sparse=chunk.sparse)
