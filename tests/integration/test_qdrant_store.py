"""The Qdrant writer against a real Qdrant server and local mode (a folder), side by side."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from embedq.errors import InvalidSettingError, PermanentError, RetryableError
from embedq.store import (
    CollectionShape,
    IncompatibleCollectionError,
    InvalidPointError,
    PointData,
    QdrantRejectedError,
    QdrantStore,
    QdrantUnavailableError,
    connect,
    point_id,
)
from embedq.store.points import (
    checked_size,
    payload_of,
    request_body,
    request_spans,
)
from embedq.store.refusals import DocumentWriter

# The test server may be older than the client allows without a warning; every call still works.
pytestmark = pytest.mark.filterwarnings("ignore:Qdrant client version:UserWarning")

SHAPE = CollectionShape(dense_dim=8, sparse=True, colbert_dim=4)
SPARSE_ONLY = CollectionShape(dense_dim=None, sparse=True, colbert_dim=None)
QDRANT_REST_LIMIT = 32 * 2**20


def make_points(
    count: int,
    shape: CollectionShape = SHAPE,
    *,
    seed: int = 0,
    colbert_rows: int = 3,
    text: str = "some text",
) -> list[PointData]:
    rng = np.random.default_rng(seed)

    def unit(*dims: int) -> np.ndarray:
        vectors = rng.standard_normal(dims).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)

    return [
        PointData(
            doc_id=f"doc-{index}",
            chunk=index % 2,
            text=f"{text} {index}",
            metadata={"lang": "en", "n": index},
            job_id="job-1",
            model="tiny-m3",
            dense=unit(shape.dense_dim) if shape.dense_dim else None,
            sparse={index: 1.0, 1000 + index: 0.25} if shape.sparse else None,
            colbert=unit(colbert_rows, shape.colbert_dim) if shape.colbert_dim else None,
        )
        for index in range(count)
    ]


def client_for(kind: str, request: pytest.FixtureRequest, folder: Path) -> QdrantClient:
    """A client for the test server (skips when it is down, fails in CI) or a local folder."""
    if kind == "server":
        return connect(url=request.getfixturevalue("qdrant_url"))
    return connect(path=folder / "qdrant")


@pytest.fixture(params=["server", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantStore]:
    client = client_for(request.param, request, tmp_path)
    yield QdrantStore(client)
    client.close()


@pytest.fixture
def server_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantStore]:
    client = client_for("server", request, tmp_path)
    yield QdrantStore(client)
    client.close()


def cleanup(store: QdrantStore, name: str) -> None:
    """Delete the collection ``name`` and its versions (their aliases go with them)."""
    for collection in store.client.get_collections().collections:
        if collection.name == name or collection.name.startswith(f"{name}__v"):
            store.client.delete_collection(collection.name)


@pytest.fixture
def name(store: QdrantStore) -> Iterator[str]:
    name = f"embedq_test_{uuid.uuid4().hex[:12]}"
    yield name
    cleanup(store, name)


@pytest.fixture
def server_name(server_store: QdrantStore) -> Iterator[str]:
    name = f"embedq_test_{uuid.uuid4().hex[:12]}"
    yield name
    cleanup(server_store, name)


def collections_named(store: QdrantStore, name: str) -> list[str]:
    return sorted(c.name for c in store.client.get_collections().collections if name in c.name)


# -- collections and aliases ---------------------------------------------------------------------


def test_ensure_creates_v1_behind_an_alias(store: QdrantStore, name: str) -> None:
    physical = store.ensure_collection(name, SHAPE)

    assert physical == f"{name}__v1"
    assert store.resolve(name) == physical
    aliases = {a.alias_name: a.collection_name for a in store.client.get_aliases().aliases}
    assert aliases[name] == physical
    assert store.shape_of(physical) == SHAPE
    vectors = store.client.get_collection(physical).config.params.vectors
    assert isinstance(vectors, dict)
    assert vectors["dense"].distance == qm.Distance.COSINE
    colbert = vectors["colbert"]
    assert colbert.multivector_config is not None
    assert colbert.multivector_config.comparator == qm.MultiVectorComparator.MAX_SIM
    assert colbert.datatype == qm.Datatype.FLOAT16
    assert colbert.hnsw_config is not None and colbert.hnsw_config.m == 0


def test_ensure_twice_is_idempotent(store: QdrantStore, name: str) -> None:
    first = store.ensure_collection(name, SHAPE)
    second = store.ensure_collection(name, SHAPE)

    assert first == second == f"{name}__v1"
    assert collections_named(store, name) == [first]


def test_resolve_unknown_name_is_none(store: QdrantStore, name: str) -> None:
    assert store.resolve(name) is None


@pytest.mark.parametrize(
    ("existing", "wanted", "difference"),
    [
        (SHAPE, CollectionShape(16, True, 4), "'dense' size: collection has 8, job needs 16"),
        (
            CollectionShape(8, False, None),
            CollectionShape(8, True, None),
            "'sparse' vector: collection has none, job needs one",
        ),
        (
            CollectionShape(8, True, None),
            CollectionShape(8, True, 4),
            "'colbert' size: collection has none, job needs 4",
        ),
    ],
    ids=["dense-dim", "missing-sparse", "colbert-added"],
)
def test_incompatible_shape_is_rejected_naming_the_difference(
    store: QdrantStore,
    name: str,
    existing: CollectionShape,
    wanted: CollectionShape,
    difference: str,
) -> None:
    physical = store.ensure_collection(name, existing)

    with pytest.raises(IncompatibleCollectionError, match=difference) as raised:
        store.ensure_collection(name, wanted)

    assert isinstance(raised.value, PermanentError)
    assert collections_named(store, name) == [physical]


def test_plain_collection_with_a_compatible_shape_is_used_as_is(
    store: QdrantStore, name: str
) -> None:
    store.client.create_collection(
        name,
        vectors_config={"dense": qm.VectorParams(size=8, distance=qm.Distance.COSINE)},
        sparse_vectors_config={"sparse": qm.SparseVectorParams()},
    )
    shape = CollectionShape(dense_dim=8, sparse=True, colbert_dim=None)

    assert store.ensure_collection(name, shape) == name
    assert store.resolve(name) == name
    assert store.upsert(name, make_points(2, shape)).requests == 1
    assert store.count(name) == 2


def test_plain_collection_with_another_distance_is_rejected(store: QdrantStore, name: str) -> None:
    store.client.create_collection(
        name, vectors_config={"dense": qm.VectorParams(size=8, distance=qm.Distance.DOT)}
    )

    with pytest.raises(IncompatibleCollectionError, match="Dot distance"):
        store.ensure_collection(name, CollectionShape(8, False, None))


def test_swap_alias_moves_the_alias_to_a_new_version(store: QdrantStore, name: str) -> None:
    first = store.ensure_collection(name, SHAPE)
    store.upsert(first, make_points(3))

    second = store.create_version(name, SHAPE)
    assert second == f"{name}__v2"
    assert store.resolve(name) == first  # not aliased until swapped
    store.upsert(second, make_points(5))

    store.swap_alias(name, second)

    assert store.resolve(name) == second
    assert store.count(name) == 5
    assert store.create_version(name, SHAPE) == f"{name}__v3"


def test_swap_alias_refuses_a_plain_collection_name(store: QdrantStore, name: str) -> None:
    store.client.create_collection(
        name, vectors_config={"dense": qm.VectorParams(size=8, distance=qm.Distance.COSINE)}
    )
    version = store.create_version(name, CollectionShape(8, False, None))

    with pytest.raises(IncompatibleCollectionError, match="cannot be an alias"):
        store.swap_alias(name, version)


# -- writes and reads ----------------------------------------------------------------------------


def test_upsert_twice_keeps_one_point_per_chunk(store: QdrantStore, name: str) -> None:
    physical = store.ensure_collection(name, SHAPE)
    points = make_points(6)

    assert store.upsert(physical, points).requests == 1
    assert store.upsert(physical, points).requests == 1

    assert store.count(physical) == 6
    [record] = store.client.retrieve(physical, ids=[point_id("doc-3", 1)], with_payload=True)
    assert record.payload == {
        "doc_id": "doc-3",
        "chunk": 1,
        "text": "some text 3",
        "metadata": {"lang": "en", "n": 3},
        "job_id": "job-1",
        "model": "tiny-m3",
    }


def test_point_ids_are_deterministic_and_unambiguous() -> None:
    # Pinned: a changed id would duplicate every point on the next re-run of a job.
    assert point_id("doc-1", 0) == "ec88dac0-9403-54c7-a3ac-628a091a8929"
    assert uuid.UUID(point_id("doc", 1)).version == 5
    assert point_id("doc", 1) != point_id("doc", 2)
    assert point_id("a,1", 2) != point_id("a", 12) != point_id("a,", 12)


def test_dense_search_finds_the_point(store: QdrantStore, name: str) -> None:
    physical = store.ensure_collection(name, SHAPE)
    points = make_points(20)
    store.upsert(physical, points)

    hits = store.client.query_points(name, query=points[7].dense, using="dense", limit=1).points

    assert [hit.id for hit in hits] == [point_id("doc-7", 1)]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_sparse_and_colbert_vectors_are_stored_and_queryable(store: QdrantStore, name: str) -> None:
    physical = store.ensure_collection(name, SHAPE)
    points = make_points(10, colbert_rows=5)
    store.upsert(physical, points)
    target = point_id("doc-4", 0)

    sparse = qm.SparseVector(indices=[4, 1004], values=[1.0, 0.25])
    by_sparse = store.client.query_points(name, query=sparse, using="sparse", limit=1).points
    colbert = points[4].colbert.tolist()  # type: ignore[union-attr]
    by_colbert = store.client.query_points(name, query=colbert, using="colbert", limit=1).points

    assert [hit.id for hit in by_sparse] == [target]
    assert [hit.id for hit in by_colbert] == [target]
    [record] = store.client.retrieve(physical, ids=[target], with_vectors=True)
    assert isinstance(record.vector, dict)
    assert record.vector["sparse"] == sparse
    stored = np.array(record.vector["colbert"], dtype=np.float32)
    assert np.allclose(stored, colbert, atol=1e-3)  # stored as float16


def test_the_rest_body_holds_every_float32_exactly() -> None:
    points = make_points(5, CollectionShape(64, True, 16), colbert_rows=4)
    sent = json.loads(request_body(points))["points"]
    for point, body in zip(points, sent, strict=True):
        assert body["id"] == point_id(point.doc_id, point.chunk)
        assert np.array_equal(np.array(body["vector"]["dense"], dtype=np.float32), point.dense)
        assert np.array_equal(np.array(body["vector"]["colbert"], dtype=np.float32), point.colbert)
        assert dict(zip(*body["vector"]["sparse"].values(), strict=True)) == point.sparse
        assert body["payload"] == payload_of(point)


def test_points_read_back_from_a_server_as_written(
    server_store: QdrantStore, server_name: str
) -> None:
    physical = server_store.ensure_collection(server_name, SHAPE)
    points = make_points(5)
    server_store.upsert(physical, points)
    for point in points:
        [record] = server_store.client.retrieve(
            physical, ids=[point_id(point.doc_id, point.chunk)], with_vectors=True
        )
        assert isinstance(record.vector, dict)
        stored = np.array(record.vector["dense"], dtype=np.float32)
        assert np.allclose(stored, point.dense, rtol=0, atol=1e-7)  # cosine: re-normalised
        assert record.vector["sparse"] == qm.SparseVector(
            indices=list(point.sparse or {}), values=list((point.sparse or {}).values())
        )
        assert record.payload == payload_of(point)


def test_empty_sparse_vector_is_accepted(store: QdrantStore, name: str) -> None:
    physical = store.ensure_collection(
        name, CollectionShape(dense_dim=None, sparse=True, colbert_dim=None)
    )
    [point] = make_points(1, SPARSE_ONLY)
    empty = PointData(**{**point.__dict__, "sparse": {}})

    store.upsert(physical, [empty])

    assert store.count(physical) == 1
    [record] = store.client.retrieve(physical, ids=[point_id("doc-0", 0)], with_vectors=True)
    assert isinstance(record.vector, dict)
    assert record.vector["sparse"] == qm.SparseVector(indices=[], values=[])


def test_batch_over_qdrants_request_limit_is_split(store: QdrantStore, name: str) -> None:
    # 24 chunks of 120 ColBERT rows of 1,024 floats: ~34 MiB of JSON, over Qdrant's 32 MiB
    shape = CollectionShape(dense_dim=8, sparse=False, colbert_dim=1024)
    physical = store.ensure_collection(name, shape)
    points = make_points(24, shape, colbert_rows=120)
    assert len(request_body(points)) > QDRANT_REST_LIMIT

    requests = store.upsert(physical, points).requests

    assert requests > 1
    assert store.count(physical) == 24


def test_a_point_over_the_limit_is_sent_alone(store: QdrantStore, name: str) -> None:
    small = QdrantStore(store.client, max_request_bytes=64 * 2**10)
    physical = small.ensure_collection(name, SHAPE)
    points = make_points(4)
    points[1] = replace(points[1], text="x" * 200_000)

    # [0] | [1] alone, over the limit | [2, 3]
    assert small.upsert(physical, points).requests == 3
    assert small.count(physical) == 4


def test_size_estimates_bound_the_json_sent() -> None:
    limit = 2**20
    points = make_points(40, CollectionShape(1024, True, 128), colbert_rows=50, text="é" * 500)
    sizes = [checked_size(point) for point in points]
    spans = list(request_spans(sizes, limit))

    assert len(spans) > 1
    for start, stop in spans:
        sent = len(request_body(points[start:stop]))
        assert sent <= sum(sizes[start:stop]) <= limit


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"dense": np.array([np.nan] * 8, dtype=np.float32)}, "NaN"),
        ({"dense": np.zeros((2, 4), dtype=np.float32)}, "1-d"),
        ({"colbert": np.zeros((0, 4), dtype=np.float32)}, "non-empty"),
        ({"dense": None, "sparse": None, "colbert": None}, "no vectors"),
        ({"chunk": -1}, "non-negative"),
    ],
    ids=["nan", "matrix-as-dense", "empty-colbert", "no-vectors", "negative-chunk"],
)
def test_bad_points_are_refused_before_they_are_sent(
    store: QdrantStore, name: str, change: dict, error: str
) -> None:
    physical = store.ensure_collection(name, SHAPE)
    good, bad = make_points(2)
    bad = replace(bad, **change)

    report = store.upsert(physical, [good, bad])

    assert list(report.refused) == ["doc-1"]
    assert re.search(error, report.refused["doc-1"])
    assert report.requests == 1
    assert store.count(physical) == 1
    with pytest.raises(InvalidPointError, match=error) as raised:
        checked_size(bad)
    assert isinstance(raised.value, PermanentError)


def test_a_point_qdrant_refuses_is_reported_with_its_reason(store: QdrantStore, name: str) -> None:
    physical = store.ensure_collection(name, SHAPE)
    [bad] = make_points(1)
    bad = replace(bad, dense=np.ones(5, dtype=np.float32))

    report = store.upsert(physical, [bad])

    assert list(report.refused) == ["doc-0"]
    assert "document 'doc-0' chunk 0: " in report.refused["doc-0"]
    assert store.count(physical) == 0


# -- bulk loading --------------------------------------------------------------------------------


def dense_m(store: QdrantStore, physical: str) -> int | None:
    vectors = store.client.get_collection(physical).config.params.vectors
    assert isinstance(vectors, dict)
    hnsw = vectors["dense"].hnsw_config
    return hnsw.m if hnsw is not None else None


def colbert_m(store: QdrantStore, physical: str) -> int | None:
    vectors = store.client.get_collection(physical).config.params.vectors
    assert isinstance(vectors, dict)
    hnsw = vectors["colbert"].hnsw_config
    return hnsw.m if hnsw is not None else None


def test_bulk_load_switches_dense_hnsw_off_and_back(
    server_store: QdrantStore, server_name: str
) -> None:
    store = QdrantStore(server_store.client, hnsw_m=24)
    physical = store.ensure_collection(server_name, SHAPE)
    assert dense_m(store, physical) == 24

    store.begin_bulk_load(physical)
    store.begin_bulk_load(physical)
    assert dense_m(store, physical) == 0

    store.finish_bulk_load(physical)
    store.finish_bulk_load(physical)
    assert dense_m(store, physical) == 24
    assert colbert_m(store, physical) == 0


def test_bulk_load_is_repeatable_and_keeps_search_working(store: QdrantStore, name: str) -> None:
    physical = store.ensure_collection(name, SHAPE)
    points = make_points(5)

    store.begin_bulk_load(physical)
    store.begin_bulk_load(physical)
    store.upsert(physical, points)
    store.finish_bulk_load(physical)
    store.finish_bulk_load(physical)

    hits = store.client.query_points(name, query=points[2].dense, using="dense", limit=1).points
    assert [hit.id for hit in hits] == [point_id("doc-2", 0)]
    assert colbert_m(store, physical) == 0


def test_bulk_load_on_a_sparse_only_collection_does_nothing(store: QdrantStore, name: str) -> None:
    physical = store.ensure_collection(name, SPARSE_ONLY)

    store.begin_bulk_load(physical)
    store.finish_bulk_load(physical)

    assert store.shape_of(physical) == SPARSE_ONLY


# -- connecting ----------------------------------------------------------------------------------


def test_connect_needs_exactly_one_of_url_and_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettingError):
        connect()
    with pytest.raises(InvalidSettingError):
        connect(url="http://127.0.0.1:6343", path=tmp_path)


def test_a_local_folder_serves_one_client_at_a_time(tmp_path: Path) -> None:
    first = connect(path=tmp_path)
    try:
        with pytest.raises(QdrantUnavailableError, match="in use"):
            connect(path=tmp_path)
    finally:
        first.close()


def test_an_unreachable_server_is_a_retryable_error() -> None:
    # No version check: the client runs it in a thread, whose warning would land in a later test.
    client = QdrantClient(url="http://127.0.0.1:9", timeout=2, check_compatibility=False)
    store = QdrantStore(client)

    with pytest.raises(QdrantUnavailableError) as raised:
        store.upsert("anything", make_points(1))
    assert isinstance(raised.value, RetryableError)
    assert isinstance(raised.value.__cause__, Exception)


# -- refusing documents, not batches -------------------------------------------------------------


class RecordingStore(QdrantStore):
    """The real store, keeping the document ids of every request it sends."""

    def __init__(self, client: QdrantClient) -> None:
        super().__init__(client)
        self.sent: list[list[str]] = []

    def _send(self, physical: str, batch: Sequence[PointData]) -> None:
        self.sent.append([point.doc_id for point in batch])
        super()._send(physical, batch)


def stored_ids(store: QdrantStore, physical: str, points: Sequence[PointData]) -> set[str]:
    ids = [point_id(point.doc_id, point.chunk) for point in points]
    return {str(record.id) for record in store.client.retrieve(physical, ids=ids)}


def with_wrong_dense(points: list[PointData], *indices: int) -> list[PointData]:
    for index in indices:
        points[index] = replace(points[index], dense=np.ones(4, dtype=np.float32))
    return points


def test_a_point_qdrant_refuses_fails_only_its_document(
    server_store: QdrantStore, server_name: str
) -> None:
    physical = server_store.ensure_collection(server_name, SHAPE)
    points = with_wrong_dense(make_points(40), 7)

    report = server_store.upsert(physical, points)

    assert report.refused == {
        "doc-7": "Qdrant refused document 'doc-7' chunk 1: "
        "Wrong input: Vector dimension error: expected dim: 8, got 4"
    }
    assert server_store.count(physical) == 39
    assert stored_ids(server_store, physical, points[7:8]) == set()


def test_a_vector_of_the_wrong_size_fails_only_its_document(store: QdrantStore, name: str) -> None:
    physical = store.ensure_collection(name, SHAPE)

    report = store.upsert(physical, with_wrong_dense(make_points(40), 7))

    assert list(report.refused) == ["doc-7"]
    assert re.search(r"\b8\b.*\b4\b|\b4\b.*\b8\b", report.refused["doc-7"])
    assert store.count(physical) == 39


def test_two_refused_points_fail_their_two_documents(
    server_store: QdrantStore, server_name: str
) -> None:
    physical = server_store.ensure_collection(server_name, SHAPE)
    points = with_wrong_dense(make_points(40), 3)
    points[30] = replace(points[30], colbert=np.ones((2, 3), dtype=np.float32))

    report = server_store.upsert(physical, points)

    assert sorted(report.refused) == ["doc-3", "doc-30"]
    assert "expected dim: 8, got 4" in report.refused["doc-3"]
    assert "expected dim: 4, got 3" in report.refused["doc-30"]
    assert server_store.count(physical) == 38


def chunked_document(doc_id: str, chunks: int) -> list[PointData]:
    [point] = make_points(1)
    return [replace(point, doc_id=doc_id, chunk=chunk) for chunk in range(chunks)]


def test_a_refused_chunk_fails_its_whole_document_and_no_more_of_it_is_sent(
    request: pytest.FixtureRequest, server_name: str
) -> None:
    store = RecordingStore(connect(url=request.getfixturevalue("qdrant_url")))
    physical = store.ensure_collection(server_name, SHAPE)
    others = make_points(10)
    long = chunked_document("long", 3)
    long[1] = replace(long[1], dense=np.ones(4, dtype=np.float32))

    report = store.upsert(physical, others[:4] + long + others[4:])

    assert report.refused == {
        "long": "Qdrant refused document 'long' (chunks 0 to 2): "
        "Wrong input: Vector dimension error: expected dim: 8, got 4"
    }
    assert len(stored_ids(store, physical, others)) == 10
    holding = [index for index, sent in enumerate(store.sent) if "long" in sent]
    assert store.sent[holding[-1]] == ["long"] * 3  # refused alone, then never sent again
    assert report.requests == len(store.sent)
    store.client.close()


def test_a_chunk_that_fails_the_checks_keeps_its_whole_document_back(
    store: QdrantStore, name: str
) -> None:
    physical = store.ensure_collection(name, SHAPE)
    others = make_points(4)
    long = chunked_document("long", 3)
    long[1] = replace(long[1], dense=np.full(8, np.nan, dtype=np.float32))

    report = store.upsert(physical, others + long)

    assert report.refused == {"long": "document 'long' chunk 1: dense holds NaN or infinite values"}
    assert report.requests == 1
    assert store.count(physical) == 4  # no chunk of "long" was sent


def test_a_payload_int_beyond_64_bits_fails_only_its_document(
    store: QdrantStore, name: str
) -> None:
    physical = store.ensure_collection(name, SHAPE)
    points = make_points(5)
    points[2] = replace(points[2], metadata={"big": 2**70})

    report = store.upsert(physical, points)

    assert list(report.refused) == ["doc-2"]
    assert "document 'doc-2' chunk 0" in report.refused["doc-2"]
    assert "Integer exceeds 64-bit range" in report.refused["doc-2"]
    assert report.requests == 1
    assert store.count(physical) == 4


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"metadata": {"big": -(2**70)}}, "64-bit range"),
        ({"text": "half a pair \ud800"}, "surrogates"),
        ({"metadata": {(1, 2): "tuple key"}}, "key"),
        ({"sparse": {7: 1.0, "7": 0.5}}, "unique"),
        ({"sparse": {"seven": 1.0}}, "not numbers"),
        ({"dense": np.array(["a"] * 8, dtype=object)}, "not numbers"),
    ],
    ids=["negative-int", "lone-surrogate", "tuple-key", "duplicate-token", "str-token", "objects"],
)
def test_what_cannot_be_encoded_is_an_invalid_point_naming_it(change: dict, error: str) -> None:
    [point] = make_points(1)
    point = replace(point, **change)

    with pytest.raises(InvalidPointError, match=error) as raised:
        checked_size(point)

    assert "document 'doc-0' chunk 0" in str(raised.value)


def test_the_rest_body_refuses_a_payload_it_cannot_encode_naming_the_point() -> None:
    points = make_points(3)
    points[1] = replace(points[1], metadata={"big": 2**70})

    with pytest.raises(InvalidPointError, match=r"document 'doc-1' chunk 1: .*64-bit range"):
        request_body(points)


def test_one_refused_point_in_256_costs_about_two_requests_per_halving(
    server_store: QdrantStore, server_name: str
) -> None:
    physical = server_store.ensure_collection(server_name, SHAPE)
    points = with_wrong_dense(make_points(256), 137)

    report = server_store.upsert(physical, points)

    assert list(report.refused) == ["doc-137"]
    assert report.requests <= 2 * 8 + 2  # the whole, then both halves at each of 8 levels
    assert server_store.count(physical) == 255


def test_a_missing_collection_fails_the_batch_rather_than_each_document(
    store: QdrantStore, name: str
) -> None:
    with pytest.raises(QdrantRejectedError) as raised:
        store.upsert(f"{name}__missing", make_points(4))
    assert not isinstance(raised.value, RetryableError)


def test_a_retryable_failure_still_fails_the_whole_upsert() -> None:
    client = QdrantClient(url="http://127.0.0.1:9", timeout=2, check_compatibility=False)
    points = with_wrong_dense(make_points(3), 1)
    points[2] = replace(points[2], metadata={"big": 2**70})

    with pytest.raises(QdrantUnavailableError):
        QdrantStore(client).upsert("anything", points)


def test_a_retryable_failure_while_bisecting_propagates() -> None:
    calls: list[list[str]] = []

    def send(points: list[PointData]) -> None:
        calls.append([point.doc_id for point in points])
        if len(calls) == 1:
            raise InvalidPointError("Qdrant refused to upsert: Wrong input")
        raise QdrantUnavailableError("Qdrant failed to upsert: timed out")

    writer = DocumentWriter(send=send, blames_points=lambda error: True, refused={})
    with pytest.raises(QdrantUnavailableError, match="timed out"):
        writer.write(make_points(4))
    assert calls == [["doc-0", "doc-1", "doc-2", "doc-3"], ["doc-0", "doc-1"]]


def test_a_refusal_that_does_not_blame_the_points_is_raised_as_it_is() -> None:
    def send(points: list[PointData]) -> None:
        raise QdrantRejectedError("Qdrant refused to upsert: forbidden")

    writer = DocumentWriter(send=send, blames_points=lambda error: False, refused={})
    with pytest.raises(QdrantRejectedError, match="forbidden"):
        writer.write(make_points(4))
    assert writer.requests == 1
