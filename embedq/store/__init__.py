"""Qdrant: versioned collections behind an alias, idempotent size-bounded upserts.

The name a user gives is an alias for a physical collection ``<name>__v<N>``, so a re-index
can fill ``__v<N+1>`` and swap the alias without downtime. Point ids are derived from the
document id and chunk number, so a redelivered batch overwrites its points instead of
duplicating them. Works the same against a Qdrant server and local mode (a folder).

Import from here; the modules beside this one are its parts.
"""

from embedq.store.collections import (
    DEFAULT_HNSW_M,
    DEFAULT_MAX_REQUEST_BYTES,
    VERSION_SEPARATOR,
    QdrantStore,
)
from embedq.store.connection import connect
from embedq.store.errors import (
    IncompatibleCollectionError,
    InvalidPointError,
    QdrantRejectedError,
    QdrantUnavailableError,
)
from embedq.store.points import POINT_NAMESPACE, PointData, point_id
from embedq.store.refusals import UpsertReport
from embedq.store.shape import COLBERT, DENSE, SPARSE, CollectionShape

__all__ = [
    "COLBERT",
    "DEFAULT_HNSW_M",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DENSE",
    "POINT_NAMESPACE",
    "SPARSE",
    "VERSION_SEPARATOR",
    "CollectionShape",
    "IncompatibleCollectionError",
    "InvalidPointError",
    "PointData",
    "QdrantRejectedError",
    "QdrantStore",
    "QdrantUnavailableError",
    "UpsertReport",
    "connect",
    "point_id",
]
