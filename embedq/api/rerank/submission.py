"""Creating a rerank job: check the model up front, then stream queries into the queue.

A rerank job is a job of kind ``rerank`` on the same ledger and queue as ingestion;
its batches' documents are queries with their candidates, cut so that no batch holds
more than ``MAX_PAIRS_PER_BATCH`` (query, candidate) pairs, except a query with more
candidates than that, which travels alone. Workers write scores and ranks to the
ledger (``jobs.list_results``), not to Qdrant.

A job ``from_collection`` takes bare queries: the worker that scores a query first
finds its candidates by a hybrid search of that collection, embedding the query on
the worker's device, so producers and the API never load an embedding model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.api.ingest.producer import accepted, check_readable, publish_batches, stops_recorded
from embedq.api.ingest.reader import Rejected
from embedq.api.rerank.query_reader import MAX_CANDIDATES_PER_QUERY, pair_bounded, read_queries
from embedq.errors import InvalidSettingError
from embedq.jobs.contracts import Query
from embedq.models.describe import check_reranker
from embedq.search.index import index_settings
from embedq.workers.queues import BatchQueue

logger = logging.getLogger(__name__)

# (query, candidate) pairs per batch (one task): big enough to keep a GPU busy, small
# enough that a lost worker's batch is quick to redo.
MAX_PAIRS_PER_BATCH = 2000


@dataclass(frozen=True)
class RerankRequest:
    files: Sequence[Path]
    model: str
    top_k: int | None = None  # keep only each query's k best candidates; None: all
    max_pairs: int = MAX_PAIRS_PER_BATCH
    # lines are {"query_id", "query"}: their candidates come from a hybrid search of this
    from_collection: str | None = None
    candidates: int = 100

    @property
    def searched(self) -> int:
        """Candidates a worker finds per query (0: the queries bring their own)."""
        return 0 if self.from_collection is None else self.candidates

    def job_options(self) -> jobs.RerankOptions:
        return jobs.RerankOptions(
            top_k=self.top_k, from_collection=self.from_collection, candidates=self.searched or None
        )


def submit_rerank(
    request: RerankRequest,
    *,
    sessions: sessionmaker[Session],
    queue: BatchQueue,
    high_water_mark: int,
    on_batch: Callable[[str], None] | None = None,
) -> str:
    """Create, fill and seal a rerank job; returns its id."""
    for path in request.files:
        check_readable(path)
    job_id = open_rerank_job(request, sessions=sessions)
    with stops_recorded(job_id, sessions=sessions, queue=queue):
        add_queries(
            job_id,
            read_all_queries(request.files, searched=request.from_collection is not None),
            sessions=sessions,
            queue=queue,
            max_pairs=request.max_pairs,
            searched=request.searched,
            high_water_mark=high_water_mark,
            on_batch=on_batch,
        )
        seal_rerank(job_id, sessions=sessions, queue=queue)
    return job_id


def open_rerank_job(
    request: RerankRequest, *, sessions: sessionmaker[Session], tenant: str | None = None
) -> str:
    """Check the model is a reranker and the options make sense, then record a pending job.

    Candidates from a collection need one the ledger knows how to search (it has been
    written): checked here, so a wrong name fails the request, not every query.
    """
    if request.top_k is not None and request.top_k < 1:
        raise InvalidSettingError(f"top_k must be at least 1, got {request.top_k}")
    if request.from_collection is not None:
        if not 1 <= request.candidates <= MAX_CANDIDATES_PER_QUERY:
            raise InvalidSettingError(
                f"candidates must be between 1 and {MAX_CANDIDATES_PER_QUERY:,}, "
                f"got {request.candidates}"
            )
        index_settings(sessions, request.from_collection)  # NotIndexedError if never written
    check_reranker(request.model)
    job_id = jobs.create_job(
        sessions,
        kind=jobs.JobKind.rerank,
        collection=request.from_collection or "",
        model=request.model,
        options=request.job_options(),
        tenant=tenant,
    )
    logger.info("job %s: reranking with %s", job_id, request.model)
    return job_id


def add_queries(
    job_id: str,
    outcomes: Iterable[Query | Rejected],
    *,
    sessions: sessionmaker[Session],
    queue: BatchQueue,
    max_pairs: int = MAX_PAIRS_PER_BATCH,
    searched: int = 0,
    high_water_mark: int | None,
    on_batch: Callable[[str], None] | None = None,
) -> int:
    """Record and publish the queries in pair-bounded batches; returns the batches.

    ``searched``: the candidates a worker will find for each query that has none.

    Rejected outcomes become the job's failures. Waits while the queue is above
    ``high_water_mark`` (None: never, for a caller that checked it already).
    """
    queries = accepted(outcomes, sessions=sessions, job_id=job_id)
    return publish_batches(
        job_id,
        pair_bounded(queries, max_pairs=max_pairs, searched=searched),
        sessions=sessions,
        queue=queue,
        high_water_mark=high_water_mark,
        on_batch=on_batch,
    )


def seal_rerank(
    job_id: str, *, sessions: sessionmaker[Session], queue: BatchQueue
) -> jobs.JobStatus:
    """No more batches: the job ends once they have (at once if they already have)."""
    queue.drain()
    return jobs.seal_job(sessions, job_id=job_id)


def read_all_queries(
    files: Iterable[Path], *, searched: bool = False
) -> Iterator[Query | Rejected]:
    """Every file's outcomes; query ids must be unique across the whole job."""
    seen: set[str] = set()
    for path in files:
        yield from read_queries(path, seen=seen, searched=searched)
