"""Documents in a collection: their stored hashes, removing stale and deleted ones, syncing.

A document is the points that share its ``doc_id``, one per chunk. These calls work on
documents through payload filters, on payload indexes (``doc_id``, ``chunk``,
``job_id``, ``seen_by``) so each costs the documents it touches, not the collection's
size: a batch's hash lookup is one scroll, its clean-up one delete.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from embedq.store.errors import translated

DOC_ID = "doc_id"
CHUNK = "chunk"
JOB_ID = "job_id"
CONTENT_HASH = "content_hash"
# the sync job whose input holds the document (set on points the sync did not rewrite)
SEEN_BY = "seen_by"

PAYLOAD_INDEXES: dict[str, qm.PayloadSchemaType] = {
    DOC_ID: qm.PayloadSchemaType.KEYWORD,
    CHUNK: qm.PayloadSchemaType.INTEGER,
    JOB_ID: qm.PayloadSchemaType.KEYWORD,
    SEEN_BY: qm.PayloadSchemaType.KEYWORD,
}
ID_PAGE = 10_000  # document ids read per scroll when listing a whole collection


def ensure_payload_indexes(client: QdrantClient, physical: str) -> None:
    """Index the fields documents are found by (creating an existing index changes nothing)."""
    with translated(f"read collection {physical!r}"):
        existing = client.get_collection(physical).payload_schema
    for field, schema in PAYLOAD_INDEXES.items():
        if field in existing:
            continue
        with translated(f"index payload field {field!r} of {physical!r}"):
            client.create_payload_index(physical, field, field_schema=schema, wait=True)


def stored_hashes(
    client: QdrantClient, physical: str, doc_ids: Sequence[str]
) -> dict[str, str | None]:
    """The content hash each of ``doc_ids`` is stored with (None: stored without one).

    Documents the collection does not hold are left out. One request for the lot.
    """
    if not doc_ids:
        return {}
    records, _ = _scroll(
        client,
        physical,
        qm.Filter(must=[_any(DOC_ID, doc_ids), _first_chunk()]),
        limit=len(doc_ids),
        payload=[DOC_ID, CONTENT_HASH],
    )
    found: dict[str, str | None] = {}
    for record in records:
        payload = record.payload or {}
        found[str(payload[DOC_ID])] = payload.get(CONTENT_HASH)
    return found


def remove_stale(client: QdrantClient, physical: str, chunks: Mapping[str, int]) -> None:
    """Remove each document's chunks past its new last one: what is left of earlier versions.

    ``chunks`` maps each document just written to its number of chunks. The upsert
    overwrote chunks ``0 .. n-1`` (same ids); this removes those from ``n`` on. One
    request for the lot, idempotent, so a re-run after a crash in between finishes it.
    """
    by_count: dict[int, list[str]] = defaultdict(list)
    for doc_id, count in chunks.items():
        by_count[count].append(doc_id)
    clauses: list[qm.Condition] = [
        qm.Filter(must=[_any(DOC_ID, ids), _from_chunk(count)]) for count, ids in by_count.items()
    ]
    if clauses:
        what = f"remove stale chunks of {len(chunks)} documents"
        _delete(client, physical, qm.Filter(should=clauses), what)


def delete_documents(client: QdrantClient, physical: str, doc_ids: Sequence[str]) -> None:
    """Remove every point of ``doc_ids`` (absent ones are fine)."""
    if doc_ids:
        _delete(
            client,
            physical,
            qm.Filter(must=[_any(DOC_ID, doc_ids)]),
            f"delete {len(doc_ids)} documents",
        )


def mark_seen(client: QdrantClient, physical: str, doc_ids: Sequence[str], job_id: str) -> None:
    """Record on stored documents that the sync ``job_id``'s input holds them."""
    if not doc_ids:
        return
    with translated(f"mark {len(doc_ids)} documents of {physical!r} as seen"):
        client.set_payload(
            physical,
            payload={SEEN_BY: job_id},
            points=qm.Filter(must=[_any(DOC_ID, doc_ids)]),
            wait=True,
        )


def not_in_sync(job_id: str) -> qm.Filter:
    """Documents a sync's input does not hold: neither written by it nor marked seen by it."""
    return qm.Filter(must_not=[_is(JOB_ID, job_id), _is(SEEN_BY, job_id)])


def count_documents(client: QdrantClient, physical: str, where: qm.Filter | None = None) -> int:
    """How many documents (first chunks) the collection holds, of those ``where`` selects."""
    first = qm.Filter(must=[_first_chunk(), *([where] if where is not None else [])])
    with translated(f"count documents in {physical!r}"):
        return client.count(physical, count_filter=first, exact=True).count


def delete_where(client: QdrantClient, physical: str, where: qm.Filter, what: str) -> None:
    """Remove every point ``where`` selects."""
    _delete(client, physical, where, what)


def document_ids(client: QdrantClient, physical: str) -> Iterator[str]:
    """Every document id the collection holds, a page at a time."""
    offset: qm.ExtendedPointId | None = None
    while True:
        records, offset = _scroll(
            client,
            physical,
            qm.Filter(must=[_first_chunk()]),
            limit=ID_PAGE,
            payload=[DOC_ID],
            offset=offset,
        )
        for record in records:
            yield str((record.payload or {})[DOC_ID])
        if offset is None:
            return


def _scroll(
    client: QdrantClient,
    physical: str,
    where: qm.Filter,
    *,
    limit: int,
    payload: list[str],
    offset: qm.ExtendedPointId | None = None,
) -> tuple[list[qm.Record], qm.ExtendedPointId | None]:
    with translated(f"read documents of {physical!r}"):
        return client.scroll(
            physical,
            scroll_filter=where,
            limit=limit,
            offset=offset,
            with_payload=payload,
            with_vectors=False,
        )


def _delete(client: QdrantClient, physical: str, where: qm.Filter, what: str) -> None:
    with translated(f"{what} in {physical!r}"):
        client.delete(physical, points_selector=qm.FilterSelector(filter=where), wait=True)


def _any(field: str, values: Sequence[str]) -> qm.FieldCondition:
    return qm.FieldCondition(key=field, match=qm.MatchAny(any=list(values)))


def _is(field: str, value: str) -> qm.FieldCondition:
    return qm.FieldCondition(key=field, match=qm.MatchValue(value=value))


def _from_chunk(first: int) -> qm.FieldCondition:
    return qm.FieldCondition(key=CHUNK, range=qm.Range(gte=first))


def _first_chunk() -> qm.FieldCondition:
    return qm.FieldCondition(key=CHUNK, match=qm.MatchValue(value=0))
