"""A rerank batch: score every (query, candidate) pair of its queries, then rank each query's.

The results go to the ledger with the batch's completion (``jobs.complete_rerank_batch``),
not to Qdrant. A pair that cannot be scored fails its query, with a reason naming the
candidate; every other query of the batch is still scored and ranked.

A job ``from_collection`` brings bare queries: each one's candidates are first found
by a hybrid search of that collection (a document's best chunk stands for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from embedq import jobs
from embedq.errors import PermanentError
from embedq.search.query import Hit
from embedq.search.searcher import plan_search
from embedq.workers.context import WorkerContext


@dataclass(frozen=True)
class RankedBatch:
    results: list[jobs.RerankResult]
    failures: list[jobs.Failure]
    queries_done: int


def rerank_claim(context: WorkerContext, claim: jobs.Claim) -> RankedBatch:
    reranker = context.reranker(claim.model)
    queries, not_found = with_candidates(context, claim)
    pairs = [(query["query"], c["text"]) for query in queries for c in query["candidates"]]
    scores, reasons = reranker.score_each(pairs)
    ranked = rank(queries, scores, reasons, top_k=claim.options.get("top_k"))
    return RankedBatch(ranked.results, not_found + ranked.failures, ranked.queries_done)


def with_candidates(
    context: WorkerContext, claim: jobs.Claim
) -> tuple[list[dict[str, Any]], list[jobs.Failure]]:
    """The batch's queries with their candidates, searched for where the job says so.

    How the collection is searched (its mode and model) is settled once for the batch.
    A query whose search cannot run (or finds nothing) fails alone; a passing error
    (Qdrant unreachable) propagates, so the whole batch is tried again.
    """
    collection = claim.options.get("from_collection")
    if not collection:
        return list(claim.documents), []
    settings = context.settings
    try:
        plan = plan_search(
            context.sessions,
            context.store,
            collection,
            mode="hybrid",
            device=settings.device,
            memory_budget=settings.memory_budget,
        )
    except PermanentError as error:  # the collection cannot be searched: no query can
        return [], [_not_searched(query, collection, str(error)) for query in claim.documents]
    queries, failures = [], []
    for query in claim.documents:
        try:
            hits = plan.hits(context.store, query["query"], int(claim.options["candidates"]))
        except PermanentError as error:
            failures.append(_not_searched(query, collection, str(error)))
            continue
        if not hits:
            failures.append(_not_searched(query, collection, "the search found no documents"))
            continue
        queries.append({**query, "candidates": one_per_document(hits)})
    return queries, failures


def one_per_document(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """The candidates the hits give: a document's best chunk stands for it."""
    best: dict[str, dict[str, Any]] = {}
    for hit in hits:
        best.setdefault(hit.doc_id, {"id": hit.doc_id, "text": hit.text})
    return list(best.values())


def rank(
    queries: Sequence[dict[str, Any]],
    scores: Sequence[float | None],
    reasons: dict[int, str],
    *,
    top_k: int | None = None,
) -> RankedBatch:
    """Each query's candidates ranked 1..n by descending score (the best ``top_k`` only).

    ``scores`` and ``reasons`` are by pair, the queries' candidates one after another.
    """
    results: list[jobs.RerankResult] = []
    failures: list[jobs.Failure] = []
    start = 0
    for query in queries:
        candidates = query["candidates"]
        span = range(start, start + len(candidates))
        start = span.stop
        scored = [score for score in scores[span.start : span.stop] if score is not None]
        if len(scored) < len(candidates):
            failed = [i for i in span if scores[i] is None]
            failures.append(
                _failure(query, [candidates[i - span.start] for i in failed], reasons[failed[0]])
            )
            continue
        results.extend(_ranked(str(query["id"]), candidates, scored, top_k))
    return RankedBatch(results, failures, queries_done=len(queries) - len(failures))


def _ranked(
    query_id: str, candidates: list[dict[str, Any]], scores: list[float], top_k: int | None
) -> list[jobs.RerankResult]:
    # a stable sort: equal scores keep the candidates' input order
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:top_k]
    return [
        jobs.RerankResult(
            query_id=query_id, candidate_id=str(candidates[i]["id"]), score=scores[i], rank=rank
        )
        for rank, i in enumerate(order, start=1)
    ]


def _failure(query: dict[str, Any], failed: list[dict[str, Any]], reason: str) -> jobs.Failure:
    more = f" (and {len(failed) - 1} more candidates)" if len(failed) > 1 else ""
    return jobs.Failure(
        doc_id=str(query["id"]),
        reason=f"candidate {failed[0]['id']!r} could not be scored: {reason}{more}",
    )


def _not_searched(query: dict[str, Any], collection: str, reason: str) -> jobs.Failure:
    return jobs.Failure(
        doc_id=str(query["id"]), reason=f"no candidates from collection {collection!r}: {reason}"
    )
