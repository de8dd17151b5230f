"""Which model and settings built a collection, read from the ledger.

Queries must be embedded exactly as the collection's documents were, so the
settings come from the job that wrote it, never from a flag a user could get wrong.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.search.errors import NotIndexedError

# Jobs that write a collection's vectors (rerank jobs only read them).
BUILDING_KINDS = (jobs.JobKind.ingest, jobs.JobKind.reindex)
_WROTE = frozenset({jobs.JobStatus.succeeded, jobs.JobStatus.partial})
_PAGE = 50


@dataclass(frozen=True)
class IndexSettings:
    """The model a collection was built with, how it embedded texts, and into which version.

    ``embedding`` and ``physical_collection`` are None where no job has built it yet.
    """

    model: str
    embedding: jobs.Embedding | None = None
    physical_collection: str | None = None

    @property
    def outputs(self) -> frozenset[str]:
        return frozenset() if self.embedding is None else self.embedding.outputs


def index_settings(
    sessions: sessionmaker[Session], collection: str, *, physical: str | None = None
) -> IndexSettings:
    """The settings of the newest ingest or re-index job that wrote ``collection``.

    A job counts once it succeeded or ended partial, or has written any points.
    Given ``physical`` (the versioned collection the alias points at now), only jobs
    that wrote that one count: a re-index still filling the next version, perhaps
    with another model, does not decide how the live version is searched.
    """
    for view in _newest_first(sessions, collection):
        options = view.options
        assert isinstance(options, (jobs.IngestOptions, jobs.ReindexOptions))  # BUILDING_KINDS
        if physical is not None and options.physical_collection != physical:
            continue
        if view.status in _WROTE or view.chunks_done > 0:
            return IndexSettings(view.model, options.embedding, options.physical_collection)
    where = f" (as {physical})" if physical is not None else ""
    raise NotIndexedError(
        f"no ingest or re-index job has written collection {collection!r}{where}, "
        "so there is no model to search it with: ingest documents into it first"
    )


def _newest_first(sessions: sessionmaker[Session], collection: str) -> Iterator[jobs.JobView]:
    """Building jobs for the collection, newest first (each kind is listed newest first)."""
    listings = [_paged(sessions, collection, kind) for kind in BUILDING_KINDS]
    return heapq.merge(*listings, key=lambda view: view.created_at, reverse=True)


def _paged(
    sessions: sessionmaker[Session], collection: str, kind: jobs.JobKind
) -> Iterator[jobs.JobView]:
    offset = 0
    while True:
        page = jobs.list_jobs(
            sessions, collection=collection, kind=kind, limit=_PAGE, offset=offset
        )
        yield from page
        if len(page) < _PAGE:
            return
        offset += _PAGE
