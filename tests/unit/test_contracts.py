"""Typed job contracts: options and payloads per kind, stored as earlier versions wrote them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.jobs.contracts import default_options
from embedq.jobs.fingerprint import content_hash, embedding_settings

EMBEDDING = jobs.Embedding(frozenset({"sparse", "dense"}), max_length=512, long_text="truncate")

EXAMPLES: list[tuple[jobs.JobKind, jobs.JobOptions]] = [
    (
        jobs.JobKind.ingest,
        jobs.IngestOptions(
            physical_collection="papers__v1",
            embedding=EMBEDDING,
            batch_size=64,
            skip_unchanged=True,
            sync=True,
            max_delete_share=0.25,
        ),
    ),
    (
        jobs.JobKind.reindex,
        jobs.ReindexOptions(
            physical_collection="papers__v2",
            source_collection="papers__v1",
            embedding=EMBEDDING,
            drop_old=True,
            caught_up_since="2026-12-06T05:00:00+00:00",
        ),
    ),
    (jobs.JobKind.rerank, jobs.RerankOptions(top_k=10, from_collection="papers", candidates=50)),
    (jobs.JobKind.delete, jobs.DeleteOptions(physical_collection="papers__v1", batch_size=500)),
]


@pytest.mark.parametrize(("kind", "options"), EXAMPLES, ids=lambda value: str(value)[:20])
def test_options_come_back_as_they_were_stored(kind: jobs.JobKind, options: jobs.JobOptions):
    assert jobs.read_options(kind, options.to_json(), collection="papers") == options


def test_options_an_earlier_version_stored_read_the_same():
    # the dict producers wrote before the options had types
    stored = {
        "outputs": "dense,sparse",
        "max_length": 512,
        "long_text": "truncate",
        "batch_size": 64,
        "physical_collection": "papers__v1",
        "skip_unchanged": True,
        "sync": True,
        "max_delete_share": 0.25,
    }
    options = jobs.read_options("ingest", stored, collection="papers")
    assert options == EXAMPLES[0][1]
    assert options.to_json() == stored


def test_what_a_job_leaves_out_takes_its_default_into_the_named_collection():
    options = default_options(jobs.JobKind.ingest, collection="papers")
    assert options == jobs.IngestOptions(physical_collection="papers")
    assert options.embedding == jobs.Embedding(frozenset({"dense"}), None, "chunk")


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: jobs.Embedding(frozenset({"dense", "pixels"})), "outputs must be"),
        (lambda: jobs.Embedding(frozenset()), "outputs must be"),
        (lambda: jobs.Embedding(max_length=0), "max_length"),
        (lambda: jobs.Embedding(long_text="squeeze"), "long_text"),  # type: ignore[arg-type]
        (lambda: jobs.IngestOptions("c", batch_size=0), "batch_size"),
        (lambda: jobs.IngestOptions("c", max_delete_share=1.5), "max_delete_share"),
        (lambda: jobs.IngestOptions("c", sync=True), "skip_unchanged"),
        (lambda: jobs.RerankOptions(top_k=0), "top_k"),
        (lambda: jobs.RerankOptions(from_collection="c"), "go together"),
        (lambda: jobs.RerankOptions(from_collection="c", candidates=0), "candidates"),
        (lambda: jobs.DeleteOptions("c", batch_size=-1), "batch_size"),
    ],
)
def test_options_that_break_their_contract_are_refused_where_they_are_built(build, reason):
    with pytest.raises(jobs.InvalidJobOptionsError, match=reason):
        build()


def test_stored_options_that_cannot_be_read_say_which_kind():
    with pytest.raises(jobs.InvalidJobOptionsError, match="rerank job"):
        jobs.read_options("rerank", {"top_k": "ten"}, collection="")


@pytest.fixture
def sqlite_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    jobs.migrate(url)
    engine = jobs.make_engine(url)
    yield jobs.make_sessions(engine)
    engine.dispose()


def test_a_job_takes_only_its_own_kind_of_options(sqlite_sessions):
    with pytest.raises(jobs.InvalidJobOptionsError, match="ingest job takes IngestOptions"):
        jobs.create_job(
            sqlite_sessions,
            kind="ingest",
            collection="c",
            model="m",
            options=jobs.RerankOptions(),
        )
    job_id = jobs.create_job(
        sqlite_sessions, kind="ingest", collection="c", model="m", options=EXAMPLES[0][1]
    )
    view = jobs.get_job(sqlite_sessions, job_id=job_id)
    assert view is not None and view.kind is jobs.JobKind.ingest
    assert view.options == EXAMPLES[0][1]


def test_content_hashes_use_the_settings_they_always_did():
    # a change here re-embeds every stored document under --skip-unchanged
    assert embedding_settings("bge", EMBEDDING) == ["bge", "dense,sparse", 512, "truncate"]
    document = jobs.Document("d", "a text", {"year": 2024})
    # the hash 0.1.0 stored for this document under these settings (computed by that code)
    expected = "5645a820c8c7350f51b966bbcd23e6d4c2f96a12236eab540f7343ab2ebc0f65"
    assert content_hash(document, embedding_settings("bge", EMBEDDING)) == expected


@pytest.mark.parametrize(
    ("kind", "raw", "typed"),
    [
        (
            "ingest",
            {"id": "d1", "text": "x", "metadata": {"a": 1}},
            jobs.Document("d1", "x", {"a": 1}),
        ),
        ("reindex", {"id": "d1", "text": "x"}, jobs.Document("d1", "x")),
        ("delete", {"id": "d1"}, jobs.DocumentId("d1")),
        (
            "rerank",
            {"id": "q", "query": "why", "candidates": [{"id": "c", "text": "because"}]},
            jobs.Query("q", "why", (jobs.Candidate("c", "because"),)),
        ),
        ("rerank", {"id": "q", "query": "why", "candidates": []}, jobs.Query("q", "why")),
    ],
)
def test_payloads_come_back_typed_by_job_kind(kind: str, raw: dict[str, Any], typed: object):
    [read] = jobs.read_payloads(kind, [raw])
    assert read == typed
    assert read.to_json() == raw
