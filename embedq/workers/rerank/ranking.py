"""A rerank batch: score every (query, candidate) pair of its queries, then rank each query's.

The results go to the ledger with the batch's completion (``jobs.complete_rerank_batch``),
not to Qdrant. A pair that cannot be scored fails its query, with a reason naming the
candidate; every other query of the batch is still scored and ranked.

A job ``from_collection`` brings bare queries: each one's candidates are first found
by a hybrid search of that collection (a document's best chunk stands for it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from embedq import jobs
from embedq.errors import PermanentError
from embedq.search.query import Hit
from embedq.search.searcher import plan_search
from embedq.workers.context import WorkerContext
from embedq.workers.running import BatchRun


@dataclass(frozen=True)
class RankedBatch:
    results: list[jobs.RerankResult]
    failures: list[jobs.Failure]
    queries_done: int


def rerank_claim(run: BatchRun) -> RankedBatch:
    """Score and rank the batch's queries; the model stops once the batch's lease is lost."""
    context, claim = run.context, run.claim
    options = claim.options_as(jobs.RerankOptions)
    reranker = context.models.reranker(claim.model)
    queries, not_found = with_candidates(context, claim, options)
    pairs = [(query.text, c.text) for query in queries for c in query.candidates]
    scores, reasons = reranker.score_each(pairs, on_progress=run.on_progress)
    ranked = rank(queries, scores, reasons, top_k=options.top_k)
    return RankedBatch(ranked.results, not_found + ranked.failures, ranked.queries_done)


def with_candidates(
    context: WorkerContext, claim: jobs.Claim, options: jobs.RerankOptions
) -> tuple[list[jobs.Query], list[jobs.Failure]]:
    """The batch's queries with their candidates, searched for where the job says so.

    How the collection is searched (its mode and model) is settled once for the batch.
    A query whose search cannot run (or finds nothing) fails alone; a passing error
    (Qdrant unreachable) propagates, so the whole batch is tried again.
    """
    given = claim.documents_as(jobs.Query)
    collection, wanted = options.from_collection, options.candidates
    if collection is None or wanted is None:
        return given, []
    try:
        plan = plan_search(
            context.sessions, context.store, collection, models=context.models, mode="hybrid"
        )
    except PermanentError as error:  # the collection cannot be searched: no query can
        return [], [_not_searched(query, collection, str(error)) for query in given]
    queries, failures = [], []
    for query in given:
        try:
            hits = plan.hits(context.store, query.text, wanted)
        except PermanentError as error:
            failures.append(_not_searched(query, collection, str(error)))
            continue
        if not hits:
            failures.append(_not_searched(query, collection, "the search found no documents"))
            continue
        queries.append(dataclasses.replace(query, candidates=one_per_document(hits)))
    return queries, failures


def one_per_document(hits: Sequence[Hit]) -> tuple[jobs.Candidate, ...]:
    """The candidates the hits give: a document's best chunk stands for it."""
    best: dict[str, jobs.Candidate] = {}
    for hit in hits:
        best.setdefault(hit.doc_id, jobs.Candidate(hit.doc_id, hit.text))
    return tuple(best.values())


def rank(
    queries: Sequence[jobs.Query],
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
        candidates = query.candidates
        span = range(start, start + len(candidates))
        start = span.stop
        scored = [score for score in scores[span.start : span.stop] if score is not None]
        if len(scored) < len(candidates):
            failed = [i for i in span if scores[i] is None]
            failures.append(
                _failure(query, [candidates[i - span.start] for i in failed], reasons[failed[0]])
            )
            continue
        results.extend(_ranked(query.id, candidates, scored, top_k))
    return RankedBatch(results, failures, queries_done=len(queries) - len(failures))


def _ranked(
    query_id: str, candidates: Sequence[jobs.Candidate], scores: list[float], top_k: int | None
) -> list[jobs.RerankResult]:
    # a stable sort: equal scores keep the candidates' input order
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:top_k]
    return [
        jobs.RerankResult(
            query_id=query_id, candidate_id=candidates[i].id, score=scores[i], rank=rank
        )
        for rank, i in enumerate(order, start=1)
    ]


def _failure(query: jobs.Query, failed: list[jobs.Candidate], reason: str) -> jobs.Failure:
    more = f" (and {len(failed) - 1} more candidates)" if len(failed) > 1 else ""
    return jobs.Failure(
        doc_id=query.id,
        reason=f"candidate {failed[0].id!r} could not be scored: {reason}{more}",
    )


def _not_searched(query: jobs.Query, collection: str, reason: str) -> jobs.Failure:
    return jobs.Failure(
        doc_id=query.id, reason=f"no candidates from collection {collection!r}: {reason}"
    )
