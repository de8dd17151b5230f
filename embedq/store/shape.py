"""Which vectors a collection holds, how embedq lays them out, and what a job needs of them."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from qdrant_client import models as qm

from embedq.errors import InvalidSettingError
from embedq.store.errors import IncompatibleCollectionError

DENSE, SPARSE, COLBERT = "dense", "sparse", "colbert"


class VectorSizes(Protocol):
    """What a collection's shape needs of a model: its vector sizes (a model description)."""

    @property
    def dense_dim(self) -> int: ...

    @property
    def colbert_dim(self) -> int: ...


@dataclass(frozen=True)
class CollectionShape:
    """The vectors of a collection: dense size, sparse or not, ColBERT size (None: absent)."""

    dense_dim: int | None
    sparse: bool
    colbert_dim: int | None

    def __post_init__(self) -> None:
        if self.dense_dim is None and not self.sparse and self.colbert_dim is None:
            raise InvalidSettingError("a collection needs at least one of dense, sparse, colbert")
        for dim in (self.dense_dim, self.colbert_dim):
            if dim is not None and dim < 1:
                raise InvalidSettingError(f"a vector size must be positive, not {dim}")

    @classmethod
    def for_outputs(cls, model: VectorSizes, outputs: Collection[str]) -> CollectionShape:
        """The shape of a collection holding ``outputs`` of ``model``."""
        return cls(
            dense_dim=model.dense_dim if DENSE in outputs else None,
            sparse=SPARSE in outputs,
            colbert_dim=model.colbert_dim if COLBERT in outputs else None,
        )

    def differences(self, wanted: CollectionShape) -> list[str]:
        """How this (existing) shape differs from ``wanted``, one phrase per vector."""
        found = []
        for label, have, want in (
            (f"'{DENSE}' size", self.dense_dim, wanted.dense_dim),
            (f"'{SPARSE}' vector", self.sparse, wanted.sparse),
            (f"'{COLBERT}' size", self.colbert_dim, wanted.colbert_dim),
        ):
            if have != want:
                found.append(f"{label}: collection has {_say(have)}, job needs {_say(want)}")
        return found


def _say(value: int | bool | None) -> str:
    if value is None or value is False:
        return "none"
    return "one" if value is True else str(value)


def vectors_config(shape: CollectionShape, hnsw_m: int) -> dict[str, qm.VectorParams]:
    """The dense and ColBERT vector parameters of a new collection of this shape."""
    params = {}
    if shape.dense_dim is not None:
        params[DENSE] = qm.VectorParams(
            size=shape.dense_dim,
            distance=qm.Distance.COSINE,
            hnsw_config=qm.HnswConfigDiff(m=hnsw_m),
        )
    if shape.colbert_dim is not None:
        # ColBERT rescores candidates found by dense or sparse search, so it needs no graph
        # of its own (m=0); float16 halves the largest vectors we store.
        params[COLBERT] = qm.VectorParams(
            size=shape.colbert_dim,
            distance=qm.Distance.COSINE,
            datatype=qm.Datatype.FLOAT16,
            hnsw_config=qm.HnswConfigDiff(m=0),
            multivector_config=qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM),
        )
    return params


def sparse_vectors_config(shape: CollectionShape) -> dict[str, qm.SparseVectorParams] | None:
    """The sparse vector parameters of a new collection of this shape (None: no sparse)."""
    return {SPARSE: qm.SparseVectorParams()} if shape.sparse else None


def shape_from_params(physical: str, params: qm.CollectionParams) -> CollectionShape:
    """The shape of an existing collection; raises if it is not laid out as embedq's are."""
    vectors = params.vectors
    if isinstance(vectors, qm.VectorParams):
        raise IncompatibleCollectionError(
            f"collection {physical!r} has one unnamed vector; embedq needs named vectors"
        )
    vectors = vectors or {}
    dense, colbert = vectors.get(DENSE), vectors.get(COLBERT)
    if dense is not None:
        _check_dense(physical, dense)
    if colbert is not None:
        _check_colbert(physical, colbert)
    return CollectionShape(
        dense_dim=dense.size if dense is not None else None,
        sparse=SPARSE in (params.sparse_vectors or {}),
        colbert_dim=colbert.size if colbert is not None else None,
    )


def dense_hnsw_m(config: qm.CollectionConfig) -> int | None:
    """The HNSW m in force for the dense vector (its own, else the collection's); None: none."""
    vectors = config.params.vectors
    if not isinstance(vectors, Mapping) or DENSE not in vectors:
        return None
    own = vectors[DENSE].hnsw_config
    return own.m if own is not None and own.m is not None else config.hnsw_config.m


def _check_dense(physical: str, dense: qm.VectorParams) -> None:
    if dense.distance != qm.Distance.COSINE:
        raise IncompatibleCollectionError(
            f"collection {physical!r}: '{DENSE}' uses {dense.distance.value} distance, "
            "job needs Cosine"
        )
    if dense.multivector_config is not None:
        raise IncompatibleCollectionError(
            f"collection {physical!r}: '{DENSE}' is a multivector, job needs a single vector"
        )


def _check_colbert(physical: str, colbert: qm.VectorParams) -> None:
    comparator = colbert.multivector_config and colbert.multivector_config.comparator
    if comparator != qm.MultiVectorComparator.MAX_SIM:
        raise IncompatibleCollectionError(
            f"collection {physical!r}: '{COLBERT}' must be a multivector compared by max_sim, "
            f"it has comparator {comparator}"
        )
