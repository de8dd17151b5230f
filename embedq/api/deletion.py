"""Deleting documents: a job of batches of ids, each batch removing every chunk of its ids.

The ids come from files, one a line: a bare id, or a JSON object with ``id`` (or
``_id``), so the corpus file a document came from can name it. Gzip is read as in
an ingest; a line that yields no id is a failure of its own, as in an ingest.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.api.ingest.batching import groups
from embedq.api.ingest.producer import (
    OpenedJob,
    accepted,
    check_readable,
    fill_and_seal,
    publish_batches,
)
from embedq.api.ingest.reader import Rejected, document_from, once_per_id, parse_row, readable_lines
from embedq.errors import NotFoundError
from embedq.jobs import reindexing
from embedq.jobs.contracts import DocumentId
from embedq.store import QdrantStore
from embedq.workers.queues import BatchQueue

logger = logging.getLogger(__name__)

DELETE_BATCH = 1000  # ids per batch: one lookup and one delete request each


class UnknownCollectionError(NotFoundError):
    """The collection to delete from does not exist."""


@dataclass(frozen=True)
class DeleteRequest:
    files: Sequence[Path]
    collection: str


def submit_delete(
    request: DeleteRequest,
    *,
    sessions: sessionmaker[Session],
    store: QdrantStore,
    queue: BatchQueue,
    high_water_mark: int,
    on_batch: Callable[[str], None] | None = None,
) -> str:
    """Create, fill and seal a delete job for the ids in ``request.files``; returns its id."""
    for path in request.files:
        check_readable(path)
    return delete_ids(
        request.collection,
        read_all_ids(request.files),
        sessions=sessions,
        store=store,
        queue=queue,
        high_water_mark=high_water_mark,
        on_batch=on_batch,
    )


def delete_ids(
    collection: str,
    outcomes: Iterable[DocumentId | Rejected],
    *,
    sessions: sessionmaker[Session],
    store: QdrantStore,
    queue: BatchQueue,
    high_water_mark: int,
    on_batch: Callable[[str], None] | None = None,
) -> str:
    """Create, fill and seal a delete job for ``outcomes``; returns its id."""
    job = open_delete(collection, sessions=sessions, store=store)
    fill = functools.partial(
        add_ids,
        job.job_id,
        outcomes,
        sessions=sessions,
        queue=queue,
        high_water_mark=high_water_mark,
        on_batch=on_batch,
    )
    return fill_and_seal(job, fill, sessions=sessions, store=store, queue=queue)


def open_delete(
    collection: str,
    *,
    sessions: sessionmaker[Session],
    store: QdrantStore,
    tenant: str | None = None,
) -> OpenedJob:
    """Record a pending delete job on the version the collection's alias points at now."""
    with reindexing.collection_guard(sessions, collection) as guard:
        guard.refuse_while_reindexed(collection, "delete from it")
        physical = store.resolve(collection)
        if physical is None:
            raise UnknownCollectionError(f"there is no collection {collection!r}")
        options = jobs.DeleteOptions(physical_collection=physical, batch_size=DELETE_BATCH)
        job_id = guard.create_job(
            kind=jobs.JobKind.delete,
            collection=collection,
            model="",
            options=options,
            tenant=tenant,
        )
    logger.info("job %s: deleting from %s (%s)", job_id, collection, physical)
    return OpenedJob(job_id, physical, collection, "", options)


def add_ids(
    job_id: str,
    outcomes: Iterable[DocumentId | Rejected],
    *,
    sessions: sessionmaker[Session],
    queue: BatchQueue,
    high_water_mark: int | None,
    on_batch: Callable[[str], None] | None = None,
) -> int:
    """Record and publish the ids in batches; returns the batches."""
    ids = accepted(outcomes, sessions=sessions, job_id=job_id)
    return publish_batches(
        job_id,
        groups(ids, DELETE_BATCH),
        sessions=sessions,
        queue=queue,
        high_water_mark=high_water_mark,
        on_batch=on_batch,
    )


def read_all_ids(files: Iterable[Path]) -> Iterator[DocumentId | Rejected]:
    """Every file's ids (each once across all of them) and unreadable lines."""
    seen: set[str] = set()
    for path in files:
        for line in readable_lines(path):
            if isinstance(line, Rejected):  # the file broke off here: the ids before stand
                yield line
                continue
            number, raw = line
            where = f"line {number} of {path.name}"
            yield once_per_id(parse_id(raw, number, where), seen, number=number, where=where)


def parse_id(raw: bytes, number: int, where: str) -> DocumentId | Rejected:
    """The id on one line: the whole line, or a JSON object's ``id``/``_id``."""
    if raw.lstrip().startswith(b"{"):
        row = parse_row(raw, number)
        if isinstance(row, Rejected):
            return row
        found = document_from({"text": "-", **row}, number, where=where)  # its id rules
        return found if isinstance(found, Rejected) else DocumentId(found.id)
    try:
        doc_id = raw.decode("utf-8").strip()
    except UnicodeDecodeError as error:
        return Rejected(number, f"{where} is not valid UTF-8 (byte {error.start})")
    if "\x00" in doc_id:
        return Rejected(number, f"{where}: the id holds a NUL character")
    return DocumentId(doc_id)


def ids_from(values: Iterable[str | int]) -> Iterator[DocumentId | Rejected]:
    """Ids given directly (the Python client, the HTTP API), each once."""
    seen: set[str] = set()
    for number, value in enumerate(values, start=1):
        where = f"id {number}"
        outcome: DocumentId | Rejected = DocumentId(str(value))
        if isinstance(value, bool) or not isinstance(value, str | int) or not str(value):
            outcome = Rejected(number, f"{where} is not a string or an integer")
        yield once_per_id(outcome, seen, number=number, where=where)
