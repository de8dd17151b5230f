"""QdrantStore: versioned collections behind aliases, bulk-load HNSW switching, and upserts."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.api_client import ApiClient
from qdrant_client.http.exceptions import UnexpectedResponse

from embedq.errors import InvalidSettingError
from embedq.store.documents import ensure_payload_indexes
from embedq.store.errors import (
    IncompatibleCollectionError,
    InvalidPointError,
    QdrantRejectedError,
    QdrantUnavailableError,
    translated,
)
from embedq.store.points import (
    PointData,
    point_struct,
    request_body,
    request_spans,
)
from embedq.store.refusals import (
    POINT_REFUSAL_STATUSES,
    DocumentWriter,
    UpsertReport,
    checked_points,
)
from embedq.store.shape import (
    DENSE,
    CollectionShape,
    dense_hnsw_m,
    shape_from_params,
    sparse_vectors_config,
    vectors_config,
)

VERSION_SEPARATOR = "__v"
DEFAULT_MAX_REQUEST_BYTES = 16 * 2**20  # Qdrant refuses REST bodies over 32 MiB
DEFAULT_HNSW_M = 16


class QdrantStore:
    """Collections, aliases and writes through one client (a server or local mode)."""

    def __init__(
        self,
        client: QdrantClient,
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        hnsw_m: int = DEFAULT_HNSW_M,
    ) -> None:
        if max_request_bytes < 1 or hnsw_m < 1:
            raise InvalidSettingError("max_request_bytes and hnsw_m must be positive")
        self.client = client
        self.max_request_bytes = max_request_bytes
        self.hnsw_m = hnsw_m
        self._rest = _rest_api(client)

    def resolve(self, name: str) -> str | None:
        """The physical collection behind ``name`` (an alias or a plain collection), or None."""
        target = self._alias_target(name)
        if target is not None:
            return target
        with translated(f"look up collection {name!r}"):
            return name if self.client.collection_exists(name) else None

    def ensure_collection(self, name: str, shape: CollectionShape) -> str:
        """The physical collection behind ``name``; creates ``name__v1`` and the alias if absent.

        Raises ``IncompatibleCollectionError`` when one exists with another shape.
        """
        physical = self.resolve(name)
        if physical is not None:
            self._check_shape(name, physical, shape)
            self._ensure_indexes(physical)  # a collection made before they were
            return physical
        physical = _versioned(name, 1)
        self._create_or_adopt(physical, shape)
        self.swap_alias(name, physical)
        return physical

    def create_version(self, name: str, shape: CollectionShape) -> str:
        """A new, empty ``name__v<N+1>`` for a re-index; the alias keeps its old target."""
        versions = self.versions(name)
        prefix = len(name + VERSION_SEPARATOR)
        latest = max((int(version[prefix:]) for version in versions), default=0)
        physical = _versioned(name, latest + 1)
        self._create(physical, shape)
        return physical

    def swap_alias(self, name: str, physical: str) -> None:
        """Point the alias ``name`` at ``physical`` (creating the alias if absent)."""
        if self.resolve(name) == name:
            raise IncompatibleCollectionError(f"{name!r} is a collection, so it cannot be an alias")
        # One request, so readers see the old target or the new one, never neither.
        operations: list[qm.AliasOperations] = [
            qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=name)),
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name=physical, alias_name=name)
            ),
        ]
        with translated(f"point alias {name!r} at {physical!r}"):
            self.client.update_collection_aliases(change_aliases_operations=operations)

    def shape_of(self, physical: str) -> CollectionShape:
        """The shape of a collection; raises if its vectors are not laid out as embedq's are."""
        with translated(f"read collection {physical!r}"):
            params = self.client.get_collection(physical).config.params
        return shape_from_params(physical, params)

    def ping(self) -> None:
        """Raise ``QdrantUnavailableError`` unless Qdrant answers a trivial request."""
        with translated("list collections"):
            self.client.get_collections()

    def count(self, physical: str) -> int:
        """The exact number of points in a collection."""
        with translated(f"count points in {physical!r}"):
            return self.client.count(physical, exact=True).count

    def documents(
        self, physical: str, *, job_ids: Sequence[str] | None = None, page: int = 256
    ) -> Iterator[dict[str, Any]]:
        """Every document stored in ``physical`` (or only those written by ``job_ids``),
        as a batch holds them: ``id``, ``text`` (the whole of it) and ``metadata``."""
        conditions: list[qm.Condition] = [
            qm.FieldCondition(key="chunk", match=qm.MatchValue(value=0))
        ]
        if job_ids is not None:
            conditions.append(qm.FieldCondition(key="job_id", match=qm.MatchAny(any=list(job_ids))))
        offset: qm.ExtendedPointId | None = None
        while True:
            with translated(f"read documents of {physical!r}"):
                records, offset = self.client.scroll(
                    physical,
                    scroll_filter=qm.Filter(must=conditions),
                    limit=page,
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                )
            for record in records:
                yield document_of(record.payload or {})
            if offset is None:
                return

    def delete(self, physical: str) -> None:
        """Drop a collection (its aliases go with it)."""
        with translated(f"delete collection {physical!r}"):
            self.client.delete_collection(physical)

    def versions(self, name: str) -> list[str]:
        """The versioned collections behind ``name`` (``name__v1``, ...), oldest first."""
        with translated("list collections"):
            existing = [c.name for c in self.client.get_collections().collections]
        pattern = re.compile(re.escape(name + VERSION_SEPARATOR) + r"(\d+)")
        found = [(int(m.group(1)), c) for c in existing if (m := pattern.fullmatch(c))]
        return [c for _, c in sorted(found)]

    def begin_bulk_load(self, physical: str) -> None:
        """Stop building the dense HNSW graph while loading (m=0); undone by finish."""
        self._set_dense_m(physical, 0)

    def finish_bulk_load(self, physical: str) -> None:
        """Build the dense HNSW graph again, with the configured m."""
        self._set_dense_m(physical, self.hnsw_m)

    def upsert(self, physical: str, points: Sequence[PointData]) -> UpsertReport:
        """Write ``points``, overwriting those with the same ids; reports the requests sent
        and the documents not stored.

        A document is refused as a whole, and the others written, when one of its points
        fails the checks (then none of them is sent) or Qdrant refuses it (found by sending
        halves of the request again; its points Qdrant took before refusing stay). Requests
        stay under ``max_request_bytes`` by estimate (a larger single point goes alone), and
        each returns only once its points are durable. Raises only what fails every point:
        QdrantUnavailableError, or QdrantRejectedError for a refused request (no collection).
        """
        # Local mode takes a vector of the wrong size in part, breaking its collection.
        shape = self.shape_of(physical) if self._rest is None else None
        kept, sizes, refused = checked_points(points, shape)
        writer = DocumentWriter(
            send=functools.partial(self._send, physical),
            blames_points=functools.partial(self._blames_points, physical),
            refused=refused,
        )
        for start, stop in request_spans(sizes, self.max_request_bytes):
            writer.write(kept[start:stop])
        return writer.report()

    def _send(self, physical: str, batch: Sequence[PointData]) -> None:
        with translated(f"upsert {len(batch)} points into {physical!r}", InvalidPointError):
            if self._rest is None:
                self.client.upsert(physical, points=[point_struct(p) for p in batch], wait=True)
            else:
                _rest_upsert(self._rest, physical, request_body(batch))

    def _blames_points(self, physical: str, error: QdrantRejectedError) -> bool:
        """Whether Qdrant refused points the request held, not the request itself."""
        cause = error.__cause__
        if isinstance(cause, UnexpectedResponse):
            return cause.status_code in POINT_REFUSAL_STATUSES
        # Local mode refuses a bad point and a missing collection alike, with ValueError.
        return self.resolve(physical) is not None

    def _alias_target(self, name: str) -> str | None:
        # Qdrant has no "get one alias" call; the list is small (one alias per user collection).
        with translated(f"look up alias {name!r}"):
            aliases = self.client.get_aliases().aliases
        return next((a.collection_name for a in aliases if a.alias_name == name), None)

    def _check_shape(self, name: str, physical: str, wanted: CollectionShape) -> None:
        differences = self.shape_of(physical).differences(wanted)
        if differences:
            raise IncompatibleCollectionError(
                f"collection {name!r} ({physical}) does not fit this job: " + "; ".join(differences)
            )

    def _create_or_adopt(self, physical: str, shape: CollectionShape) -> None:
        # Another job may create the same collection at the same moment (or a crash may have
        # left it without its alias): if it is there after all, check its shape and use it.
        try:
            self._create(physical, shape)
        except (QdrantRejectedError, QdrantUnavailableError):
            if self.resolve(physical) != physical:
                raise
            self._check_shape(physical, physical, shape)

    def _create(self, physical: str, shape: CollectionShape) -> None:
        with translated(f"create collection {physical!r}"):
            self.client.create_collection(
                physical,
                vectors_config=vectors_config(shape, self.hnsw_m),
                sparse_vectors_config=sparse_vectors_config(shape),
            )
        self._ensure_indexes(physical)

    def _ensure_indexes(self, physical: str) -> None:
        if self._rest is not None:  # local mode keeps no payload index (it scans)
            ensure_payload_indexes(self.client, physical)

    def _set_dense_m(self, physical: str, m: int) -> None:
        # Read first so repeated calls send nothing. Local mode has no index: it accepts the
        # update and changes nothing, so there every call sends one harmless update.
        with translated(f"read collection {physical!r}"):
            config = self.client.get_collection(physical).config
        current = dense_hnsw_m(config)
        if current is None or current == m:
            return
        diff = {DENSE: qm.VectorParamsDiff(hnsw_config=qm.HnswConfigDiff(m=m))}
        with translated(f"set the '{DENSE}' HNSW m to {m} on {physical!r}"):
            self.client.update_collection(physical, vectors_config=diff)


def _versioned(name: str, version: int) -> str:
    return f"{name}{VERSION_SEPARATOR}{version}"


def _rest_api(client: QdrantClient) -> ApiClient | None:
    """The REST client of a Qdrant server's client; None in local mode, which has none.

    Upserts to a server are sent through it with a body embedq encodes itself: the
    body ``QdrantClient.upsert`` builds from pydantic models costs four times as
    much, on the worker's CPU, for vectors twice the size.
    """
    try:
        return client.http.points_api.api_client
    except NotImplementedError:
        return None


def _rest_upsert(rest: ApiClient, physical: str, body: bytes) -> None:
    # qdrant-client's own REST plumbing (address, api key, timeout, errors), embedq's body
    rest.request(
        type_=qm.InlineResponse2007,
        method="PUT",
        url="/collections/{collection_name}/points",
        path_params={"collection_name": physical},
        params={"wait": "true"},
        headers={"Content-Type": "application/json"},
        content=body,
    )


def document_of(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored document as a batch holds it; the whole text where chunks held only part."""
    document: dict[str, Any] = {
        "id": str(payload["doc_id"]),
        "text": payload.get("document") or payload.get("text") or "",
    }
    if payload.get("metadata") is not None:
        document["metadata"] = payload["metadata"]
    return document
