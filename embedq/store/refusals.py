"""Upserts that refuse documents, not batches: one bad point fails only its own document.

Points that fail the checks are set aside with every other point of their document before
anything is sent. When Qdrant refuses a request of several documents, each half is sent
again (as a batch that runs out of memory is split in two) until each refused document
stands alone; everything else is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from embedq.store.errors import InvalidPointError, QdrantRejectedError
from embedq.store.points import PointData, checked_size
from embedq.store.shape import COLBERT, DENSE, SPARSE, CollectionShape

logger = logging.getLogger(__name__)

# Statuses with which Qdrant refuses what a request holds (bad input, a body too large, JSON
# it cannot read) rather than the request itself (a missing collection, a read-only key).
POINT_REFUSAL_STATUSES = frozenset({400, 413, 422})

Documents = list[list[PointData]]


@dataclass(frozen=True)
class UpsertReport:
    """What an upsert did: the requests it sent (refused ones included), and the documents
    it did not store, each id with the reason; every other point is durable."""

    requests: int
    refused: dict[str, str] = field(default_factory=dict)


def checked_points(
    points: Sequence[PointData], shape: CollectionShape | None = None
) -> tuple[list[PointData], list[int], dict[str, str]]:
    """The points of documents whose points all pass the checks (and fit ``shape``, when
    given), their estimated sizes, and the reason for each document that does not."""
    sizes: list[int | None] = []
    refused: dict[str, str] = {}
    for point in points:
        try:
            size = checked_size(point)
            if shape is not None:
                check_fits(point, shape)
        except InvalidPointError as error:
            size = None
            refuse(refused, point.doc_id, str(error))
        sizes.append(size)
    kept = [
        (point, size)
        for point, size in zip(points, sizes, strict=True)
        if size is not None and point.doc_id not in refused
    ]
    return [point for point, _ in kept], [size for _, size in kept], refused


def check_fits(point: PointData, shape: CollectionShape) -> None:
    """Raise InvalidPointError unless the point's vectors fit a collection of ``shape``.

    Qdrant checks this itself. Local mode checks dense sizes only once it has taken part
    of the point, which leaves its collection broken, and ColBERT sizes not at all.
    """
    where = f"document {point.doc_id!r} chunk {point.chunk}"
    for name, vector, size in (
        (DENSE, point.dense, shape.dense_dim),
        (COLBERT, point.colbert, shape.colbert_dim),
    ):
        got = None if vector is None else np.shape(vector)[-1]
        if got is not None and got != size:
            raise InvalidPointError(
                f"{where}: '{name}' vectors have {got} dimensions, the collection's {size}"
            )
    if point.sparse is not None and not shape.sparse:
        raise InvalidPointError(f"{where}: the collection has no '{SPARSE}' vector")


def refuse(refused: dict[str, str], doc_id: str, reason: str) -> None:
    """Record a document's first refusal, and log it once."""
    if doc_id not in refused:
        refused[doc_id] = reason
        logger.warning("not stored: %s", reason)


@dataclass
class DocumentWriter:
    """Sends points a request at a time, bisecting refused requests by document."""

    # raises QdrantRejectedError when Qdrant refuses the request
    send: Callable[[list[PointData]], None]
    # whether a refusal is of the points sent, so that fewer of them could succeed
    blames_points: Callable[[QdrantRejectedError], bool]
    refused: dict[str, str]
    requests: int = 0

    def write(self, points: Sequence[PointData]) -> None:
        """Store ``points`` (one request when Qdrant takes them all) but refused documents'."""
        self._write(by_document(points))

    def report(self) -> UpsertReport:
        return UpsertReport(requests=self.requests, refused=dict(self.refused))

    def _write(self, documents: Documents) -> None:
        # A document refused already (by the checks, or in an earlier request) goes no further.
        documents = [points for points in documents if points[0].doc_id not in self.refused]
        if not documents:
            return
        self.requests += 1
        try:
            self.send([point for points in documents for point in points])
        except QdrantRejectedError as error:
            if not self.blames_points(error):
                raise
            self._bisect(documents, error)

    def _bisect(self, documents: Documents, error: QdrantRejectedError) -> None:
        if len(documents) > 1:
            middle = len(documents) // 2
            self._write(documents[:middle])
            self._write(documents[middle:])
            return
        # One document alone is refused as a whole: none of its points is sent again.
        [points] = documents
        refuse(self.refused, points[0].doc_id, refusal(points, error))


def by_document(points: Sequence[PointData]) -> Documents:
    """The points grouped by document, in the order each document first appears."""
    documents: dict[str, list[PointData]] = {}
    for point in points:
        documents.setdefault(point.doc_id, []).append(point)
    return list(documents.values())


def refusal(points: Sequence[PointData], error: QdrantRejectedError) -> str:
    """Why one document's points were refused, in Qdrant's words."""
    chunks = sorted(point.chunk for point in points)
    where = f"chunk {chunks[0]}" if len(chunks) == 1 else f"(chunks {chunks[0]} to {chunks[-1]})"
    return f"Qdrant refused document {points[0].doc_id!r} {where}: {qdrant_reason(error)}"


def qdrant_reason(error: QdrantRejectedError) -> str:
    # ``translated`` writes "Qdrant refused to <action>: <reason>"; the action named the
    # whole request, so only the reason is worth repeating for one document.
    _, separator, reason = str(error).partition(": ")
    return reason if separator else str(error)
