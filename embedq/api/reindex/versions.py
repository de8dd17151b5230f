"""Re-indexing a live collection, rolling it back, and dropping versions nobody uses.

A re-index reads every document back from the version the alias points at, embeds
it into a new version (a new model, or new outputs or length), and swaps the alias
once every batch has succeeded and what was ingested meanwhile has been caught up
(see ``embedq.workers.reindex.finishing``). Searches through the alias see the old version
until that one atomic swap, and the old version stays for ``rollback``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.api.ingest import producer
from embedq.errors import PermanentError
from embedq.jobs import reindexing
from embedq.jobs.contracts import Document
from embedq.models.describe import ModelDescription, describe_model
from embedq.search.errors import NotIndexedError
from embedq.search.index import IndexSettings, index_settings
from embedq.store import CollectionShape, QdrantStore
from embedq.workers.queues import BatchQueue
from embedq.workers.reindex.finishing import finish_reindex

logger = logging.getLogger(__name__)


class ReindexError(PermanentError):
    """A re-index, rollback or clean-up that cannot be done as asked."""


@dataclass(frozen=True)
class ReindexRequest:
    """What to rebuild; settings left None stay as the live version was built."""

    collection: str
    model: str | None = None
    outputs: str | None = None
    max_length: int | None = None
    long_text: jobs.LongText | None = None
    batch_size: int = jobs.DEFAULT_BATCH_SIZE
    drop_old: bool = False


def start_reindex(
    request: ReindexRequest,
    *,
    sessions: sessionmaker[Session],
    store: QdrantStore,
    queue: BatchQueue,
    high_water_mark: int,
    tenant: str | None = None,
    on_batch: Callable[[str], None] | None = None,
) -> str:
    """Create the re-index job, queue every document of the live version, seal; its id."""
    name = request.collection
    source = _live_version(store, name)
    running = reindexing.open_reindex(sessions, collection=name)
    if running is not None:
        raise ReindexError(f"collection {name!r} is already being re-indexed (job {running.id})")
    built = _built_with(sessions, request, source)
    model = request.model or built.model
    description = describe_model(model)
    embedding = _embedding(request, built, description)
    shape = CollectionShape.for_outputs(description, embedding.outputs)
    with reindexing.collection_guard(sessions, name) as guard:
        target = store.create_version(name, shape)
        options = jobs.ReindexOptions(
            physical_collection=target,
            source_collection=source,
            embedding=embedding,
            batch_size=request.batch_size,
            drop_old=request.drop_old,
        )
        job_id = guard.create_job(
            kind="reindex", collection=name, model=model, options=options, tenant=tenant
        )
    store.begin_bulk_load(target)
    logger.info("job %s: re-indexing %s from %s into %s", job_id, name, source, target)
    producer.add_documents(
        job_id,
        _documents(store, source),
        sessions=sessions,
        queue=queue,
        batch_size=request.batch_size,
        high_water_mark=high_water_mark,
        on_batch=on_batch,
    )
    queue.drain()
    jobs.seal_job(sessions, job_id=job_id)
    settle(job_id, sessions=sessions, store=store, queue=queue)
    return job_id


def settle(
    job_id: str, *, sessions: sessionmaker[Session], store: QdrantStore, queue: BatchQueue
) -> None:
    """Take the re-index as far as it goes here: all of it when batches run in-process."""
    finish_reindex(sessions, store, queue.publish, job_id=job_id)  # e.g. nothing to embed
    queue.drain()


def rollback(sessions: sessionmaker[Session], store: QdrantStore, *, collection: str) -> str:
    """Point the alias back at the version the last re-index replaced; returns that version."""
    last = reindexing.last_reindex(sessions, collection=collection)
    if last is None:
        raise ReindexError(f"collection {collection!r} has no re-index to roll back")
    assert isinstance(last.options, jobs.ReindexOptions)
    previous = last.options.source_collection
    if store.resolve(collection) == previous:
        raise ReindexError(f"{collection!r} already points at {previous}: rolled back already")
    if store.resolve(previous) != previous:
        raise ReindexError(f"the version {previous} is gone (dropped): nothing to roll back to")
    with reindexing.collection_guard(sessions, collection):
        store.swap_alias(collection, previous)
    logger.info("%s points at %s again", collection, previous)
    return previous


def collect_garbage(
    sessions: sessionmaker[Session], store: QdrantStore, *, collection: str
) -> list[str]:
    """Drop the versions of ``collection`` the alias does not point at and no job writes to."""
    live = store.resolve(collection)
    in_use = reindexing.writing_collections(sessions)
    dropped = [v for v in store.versions(collection) if v != live and v not in in_use]
    for version in dropped:
        store.delete(version)
    return dropped


def _built_with(
    sessions: sessionmaker[Session], request: ReindexRequest, source: str
) -> IndexSettings:
    """How the live version was built: the defaults for what the request leaves out."""
    try:
        return index_settings(sessions, request.collection, physical=source)
    except NotIndexedError:
        if request.model is None:
            raise ReindexError(
                f"nothing has been written to {request.collection!r} yet, so there is no model "
                "to keep: name one"
            ) from None
        return IndexSettings(model=request.model)


def _embedding(
    request: ReindexRequest, built: IndexSettings, description: ModelDescription
) -> jobs.Embedding:
    """The new version's embedding settings: the request's, else the live version's."""
    was = built.embedding or jobs.Embedding()
    outputs = description.choose(request.outputs or (sorted(built.outputs) or None))
    return jobs.Embedding(
        outputs=outputs,
        max_length=request.max_length or was.max_length,
        long_text=request.long_text or was.long_text,
    )


def _live_version(store: QdrantStore, name: str) -> str:
    source = store.resolve(name)
    if source is None:
        raise ReindexError(f"there is no collection {name!r} to re-index")
    if source == name:
        raise ReindexError(
            f"{name!r} is a plain collection, not an embedq alias: it has no versions"
        )
    return source


def _documents(store: QdrantStore, source: str) -> Iterator[Document]:
    for stored in store.documents(source):
        yield Document(stored["id"], stored["text"], stored.get("metadata"))
