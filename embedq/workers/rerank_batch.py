"""A rerank batch: score every (query, candidate) pair of its queries, then rank each query's.

The results go to the ledger with the batch's completion (``jobs.complete_rerank_batch``),
not to Qdrant. A pair that cannot be scored fails its query, with a reason naming the
candidate; every other query of the batch is still scored and ranked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from embedq import jobs
from embedq.workers.context import WorkerContext


@dataclass(frozen=True)
class RankedBatch:
    results: list[jobs.RerankResult]
    failures: list[jobs.Failure]
    queries_done: int


def rerank_claim(context: WorkerContext, claim: jobs.Claim) -> RankedBatch:
    reranker = context.reranker(claim.model)
    queries = claim.documents
    pairs = [(query["query"], c["text"]) for query in queries for c in query["candidates"]]
    scores, reasons = reranker.score_each(pairs)
    return rank(queries, scores, reasons, top_k=claim.options.get("top_k"))


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
