"""One query against Qdrant: which vectors a mode uses, the request, and hits from points."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import models as qm

from embedq.search.errors import UnsupportedModeError
from embedq.store import DENSE, SPARSE, CollectionShape, QdrantStore
from embedq.store.errors import translated

FloatArray = npt.NDArray[np.floating[Any]]

logger = logging.getLogger(__name__)

MODES = ("dense", "sparse", "hybrid")
# Each side of a hybrid search brings at least this many candidates (or twice the hits
# asked for) to the fusion, so a document ranked high by only one side can still win.
HYBRID_PREFETCH_MIN = 20


@dataclass(frozen=True)
class Hit:
    """One ranked chunk: where it ranks, its score and what its point holds."""

    rank: int
    score: float
    doc_id: str
    chunk: int
    text: str
    metadata: dict[str, Any] | None
    point_id: str
    # the whole stored payload (adds job_id and model to the fields above)
    payload: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class QueryVectors:
    dense: FloatArray | None
    sparse: dict[int, float] | None


def searchable(shape: CollectionShape, outputs: frozenset[str]) -> frozenset[str]:
    """The vectors a search may use: held by the collection and produced by its model."""
    held = {name for name, present in ((DENSE, shape.dense_dim), (SPARSE, shape.sparse)) if present}
    return frozenset(held & outputs if outputs else held)


def chosen_mode(mode: str, available: frozenset[str], collection: str) -> str:
    """The mode to run: ``mode`` itself, or for hybrid the one side the collection has."""
    if mode not in MODES:
        raise UnsupportedModeError(f"search mode must be one of {', '.join(MODES)}, not {mode!r}")
    holds = ", ".join(sorted(available)) or "neither dense nor sparse vectors"
    if mode == "hybrid":
        if available == {DENSE, SPARSE}:
            return mode
        if len(available) == 1:
            (only,) = available
            logger.warning(
                "collection %r holds only %s vectors: hybrid search falls back to %s",
                collection,
                only,
                only,
            )
            return only
    elif mode in available:
        return mode
    raise UnsupportedModeError(
        f"collection {collection!r} cannot be searched in {mode} mode: it holds {holds}"
    )


def run_query(
    store: QdrantStore, collection: str, mode: str, vectors: QueryVectors, limit: int
) -> list[Hit]:
    """The ``limit`` best chunks of ``collection`` (an alias or a collection) for a mode."""
    request: dict[str, Any]
    if mode == "hybrid":
        prefetch = max(2 * limit, HYBRID_PREFETCH_MIN)
        request = {
            "prefetch": [
                qm.Prefetch(query=_dense(vectors), using=DENSE, limit=prefetch),
                qm.Prefetch(query=_sparse(vectors), using=SPARSE, limit=prefetch),
            ],
            "query": qm.FusionQuery(fusion=qm.Fusion.RRF),
        }
    elif mode == DENSE:
        request = {"query": _dense(vectors), "using": DENSE}
    else:
        request = {"query": _sparse(vectors), "using": SPARSE}
    with translated(f"search collection {collection!r} ({mode})"):
        points = store.client.query_points(
            collection, limit=limit, with_payload=True, **request
        ).points
    return [_hit(rank, point) for rank, point in enumerate(points, start=1)]


def _dense(vectors: QueryVectors) -> list[float]:
    if vectors.dense is None:
        raise UnsupportedModeError("the query has no dense vector")
    return [float(x) for x in np.asarray(vectors.dense, dtype=np.float32)]


def _sparse(vectors: QueryVectors) -> qm.SparseVector:
    if vectors.sparse is None:
        raise UnsupportedModeError("the query has no sparse vector")
    return qm.SparseVector(
        indices=[int(index) for index in vectors.sparse],
        values=[float(weight) for weight in vectors.sparse.values()],
    )


def _hit(rank: int, point: qm.ScoredPoint) -> Hit:
    payload = dict(point.payload or {})
    return Hit(
        rank=rank,
        score=float(point.score),
        doc_id=str(payload.get("doc_id")),
        chunk=int(payload.get("chunk") or 0),
        text=str(payload.get("text") or ""),
        metadata=payload.get("metadata"),
        point_id=str(point.id),
        payload=payload,
    )
