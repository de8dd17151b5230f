"""The job ledger against real databases: a SQLite file and Postgres (one fresh schema per test)."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, create_engine, func, inspect, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from embedq import jobs
from embedq.jobs.constants import REAPER_LOCK_KEY, REPUBLISH_PERIOD_SECONDS, VERSION_TABLE
from embedq.jobs.schema import BatchPayload

Sessions = sessionmaker[Session]
T = TypeVar("T")
WORKER = "gpu-0"


@dataclass(frozen=True)
class Database:
    """Where a test's ledger lives: enough to connect to it from another process too."""

    url: str
    connect_args: dict[str, str] = field(default_factory=dict)

    def engine(self) -> Engine:
        return jobs.make_engine(self.url, connect_args=self.connect_args)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty, not yet migrated ledger database of each kind."""
    if request.param == "sqlite":
        # a folder that does not exist yet: make_engine creates it
        yield Database(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
        return
    yield from _postgres_schema(request.getfixturevalue("postgres_url"))


def _postgres_schema(url: str) -> Iterator[Database]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield Database(url, {"options": f"-csearch_path={schema}"})
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def engine(database: Database) -> Iterator[Engine]:
    engine = database.engine()
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> Sessions:
    jobs.migrate(engine)
    return jobs.make_sessions(engine)


def documents(count: int, prefix: str = "d") -> list[jobs.Document]:
    return [jobs.Document(f"{prefix}{i}", f"text of {prefix}{i}") for i in range(count)]


def new_job(sessions: Sessions, options: jobs.IngestOptions | None = None) -> str:
    return jobs.create_job(
        sessions, kind="ingest", collection="papers", model="bge-m3", options=options
    )


def job(sessions: Sessions, job_id: str) -> jobs.JobView:
    view = jobs.get_job(sessions, job_id=job_id)
    assert view is not None
    return view


def claim(sessions: Sessions, batch_id: str, worker: str = WORKER, **options: Any) -> jobs.Claim:
    claimed = jobs.claim_batch(sessions, batch_id=batch_id, worker=worker, **options)
    assert claimed is not None
    return claimed


def complete(sessions: Sessions, batch_id: str, done: int, **options: Any) -> bool:
    """Whether the completion counted."""
    return jobs.complete_batch(
        sessions,
        batch_id=batch_id,
        documents_done=done,
        chunks_done=options.pop("chunks_done", 2 * done),
        tokens_done=options.pop("tokens_done", 100 * done),
        **options,
    ).counted


def payload_count(sessions: Sessions) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(BatchPayload)) or 0


def run_together(count: int, action: Callable[[int], T]) -> list[T]:
    """Run ``action(i)`` for each i in its own thread, all released at the same moment."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = action(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


# --- migrations -------------------------------------------------------------------------


def test_migrate_creates_the_schema_and_a_second_run_is_a_no_op(engine: Engine) -> None:
    assert jobs.current_revision(engine) is None
    jobs.migrate(engine)
    assert jobs.current_revision(engine) == jobs.head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"jobs", "batches", "batch_payloads", "document_failures", VERSION_TABLE} <= tables

    jobs.migrate(engine)
    assert jobs.current_revision(engine) == jobs.head_revision()
    jobs.check_schema(engine)


def test_batch_payloads_are_stored_uncompressed_on_postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a Postgres storage setting")
    jobs.migrate(engine)
    query = text(
        "SELECT attstorage FROM pg_attribute "
        "WHERE attrelid = 'batch_payloads'::regclass AND attname = 'documents'"
    )
    with engine.connect() as connection:
        assert connection.execute(query).scalar_one() == "e"  # EXTERNAL: out of line, as is


def test_the_handwritten_migration_matches_the_schema_module(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from embedq.jobs.schema import Base

    jobs.migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_a_database_that_was_never_migrated_is_refused(engine: Engine) -> None:
    with pytest.raises(jobs.SchemaOutOfDateError, match="run `embedq migrate`"):
        jobs.check_schema(engine)
    jobs.migrate(engine)
    jobs.check_schema(engine)


def test_a_database_migrated_by_a_newer_embedq_is_refused(engine: Engine) -> None:
    jobs.migrate(engine)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff'"))
    with pytest.raises(jobs.SchemaOutOfDateError, match="upgrade embedq"):
        jobs.check_schema(engine)


# --- endings ----------------------------------------------------------------------------


def test_a_job_runs_to_succeeded_with_exact_counts(sessions: Sessions) -> None:
    job_id = new_job(sessions, jobs.IngestOptions(physical_collection="papers__v1"))
    refs = [
        jobs.add_batch(sessions, job_id=job_id, documents=documents(n, f"b{n}-")) for n in (3, 2, 4)
    ]
    assert [ref.sequence for ref in refs] == [0, 1, 2]
    pending = job(sessions, job_id)
    assert (pending.status, pending.documents_total, pending.batches_total) == ("pending", 9, 3)
    assert pending.progress == 0.0 and pending.started_at is None

    first = claim(sessions, refs[0].id)
    assert first.documents == documents(3, "b3-")
    assert (first.job_id, first.attempt, first.kind, first.collection, first.model) == (
        job_id,
        1,
        "ingest",
        "papers",
        "bge-m3",
    )
    assert first.options == jobs.IngestOptions(physical_collection="papers__v1")
    assert job(sessions, job_id).status == jobs.JobStatus.running
    for ref in refs[1:]:
        claim(sessions, ref.id)
    for ref, n in zip(refs, (3, 2, 4), strict=True):
        assert complete(sessions, ref.id, n, chunks_done=n + 1, tokens_done=10 * n)

    unsealed = job(sessions, job_id)
    assert unsealed.status == jobs.JobStatus.running  # more batches may still come
    assert unsealed.progress == 1.0 and unsealed.open_batches == 0

    assert jobs.seal_job(sessions, job_id=job_id) == jobs.JobStatus.succeeded
    done = job(sessions, job_id)
    assert done.status == jobs.JobStatus.succeeded
    assert (done.documents_total, done.documents_done, done.documents_failed) == (9, 9, 0)
    assert (done.chunks_done, done.tokens_done) == (12, 90)
    assert (done.batches_total, done.batches_done, done.batches_failed, done.splits) == (3, 3, 0, 0)
    assert done.finished_at is not None and done.started_at is not None
    assert done.finished_at.tzinfo is not None and done.finished_at.utcoffset() == timedelta(0)
    assert payload_count(sessions) == 0
    batches = jobs.list_batches(sessions, job_id=job_id)
    assert [(b.status, b.attempts, b.lease_owner) for b in batches] == [
        ("succeeded", 1, WORKER)
    ] * 3
    assert jobs.list_failures(sessions, job_id=job_id) == []


def test_some_failed_documents_end_the_job_partial(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ok, mixed = (jobs.add_batch(sessions, job_id=job_id, documents=documents(2, p)) for p in "ab")
    jobs.seal_job(sessions, job_id=job_id)
    for ref in (ok, mixed):
        claim(sessions, ref.id)
    assert complete(sessions, ok.id, 2)
    assert job(sessions, job_id).status == jobs.JobStatus.running
    too_long = jobs.Failure(doc_id="b1", reason="longer than any micro-batch")
    assert complete(sessions, mixed.id, 1, failures=[too_long])

    ended = job(sessions, job_id)
    assert ended.status == jobs.JobStatus.partial
    assert (ended.documents_done, ended.documents_failed, ended.batches_done) == (3, 1, 2)
    [failure] = jobs.list_failures(sessions, job_id=job_id)
    assert (failure.batch_id, failure.doc_id, failure.line, failure.reason) == (
        mixed.id,
        "b1",
        None,
        "longer than any micro-batch",
    )


def test_a_job_whose_every_document_failed_ends_failed(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(3))
    jobs.seal_job(sessions, job_id=job_id)
    claim(sessions, ref.id)

    assert jobs.fail_batch(sessions, batch_id=ref.id, error="qdrant rejected the points")
    assert not jobs.fail_batch(sessions, batch_id=ref.id, error="again")

    ended = job(sessions, job_id)
    assert ended.status == jobs.JobStatus.failed
    assert (ended.documents_done, ended.documents_failed, ended.batches_failed) == (0, 3, 1)
    assert ended.progress == 1.0
    failures = jobs.list_failures(sessions, job_id=job_id)
    assert [f.doc_id for f in failures] == ["d0", "d1", "d2"]
    assert {f.reason for f in failures} == {"qdrant rejected the points"}
    [batch] = jobs.list_batches(sessions, job_id=job_id)
    assert (batch.status, batch.error) == ("failed", "qdrant rejected the points")
    assert payload_count(sessions) == 0


def test_intake_failures_count_as_documents_that_failed(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    rejected = [
        jobs.Failure(line=3, reason="not valid JSON"),
        jobs.Failure(doc_id="d0", line=7, reason="duplicate id"),
    ]
    jobs.record_intake_failures(sessions, job_id=job_id, failures=rejected)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(4))
    intake = job(sessions, job_id)
    assert (intake.documents_total, intake.documents_failed) == (6, 2)
    assert intake.progress == pytest.approx(2 / 6)

    jobs.seal_job(sessions, job_id=job_id)
    with pytest.raises(jobs.JobClosedError):
        jobs.record_intake_failures(sessions, job_id=job_id, failures=rejected)
    claim(sessions, ref.id)
    complete(sessions, ref.id, 4)

    ended = job(sessions, job_id)
    assert (ended.status, ended.documents_done, ended.documents_failed) == ("partial", 4, 2)
    failures = jobs.list_failures(sessions, job_id=job_id)
    assert [(f.batch_id, f.doc_id, f.line, f.reason) for f in failures] == [
        (None, None, 3, "not valid JSON"),
        (None, "d0", 7, "duplicate id"),
    ]
    assert [f.reason for f in jobs.list_failures(sessions, job_id=job_id, offset=1)] == [
        "duplicate id"
    ]


def test_a_job_with_only_rejected_lines_fails_when_sealed(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    jobs.record_intake_failures(
        sessions, job_id=job_id, failures=[jobs.Failure(line=1, reason="empty text")]
    )
    assert jobs.seal_job(sessions, job_id=job_id) == jobs.JobStatus.failed


def test_sealing_an_empty_job_succeeds_it_at_once(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    assert jobs.seal_job(sessions, job_id=job_id) == jobs.JobStatus.succeeded
    assert jobs.seal_job(sessions, job_id=job_id) == jobs.JobStatus.succeeded
    ended = job(sessions, job_id)
    assert (ended.sealed, ended.progress, ended.documents_total) == (True, 1.0, 0)
    assert ended.finished_at is not None
    with pytest.raises(jobs.JobClosedError):
        jobs.add_batch(sessions, job_id=job_id, documents=documents(1))


def test_a_sealed_job_takes_no_more_root_batches(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    assert jobs.seal_job(sessions, job_id=job_id) == jobs.JobStatus.pending
    with pytest.raises(jobs.JobClosedError, match="sealed"):
        jobs.add_batch(sessions, job_id=job_id, documents=documents(1, "late"))
    assert job(sessions, job_id).documents_total == 1
    claim(sessions, ref.id)
    assert complete(sessions, ref.id, 1)
    assert job(sessions, job_id).status == jobs.JobStatus.succeeded


# --- counted once -----------------------------------------------------------------------


def test_a_batch_completed_twice_is_counted_once(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(5))
    claim(sessions, ref.id)
    assert complete(sessions, ref.id, 5)
    assert not complete(sessions, ref.id, 5)
    assert not jobs.fail_batch(sessions, batch_id=ref.id, error="late failure")
    assert jobs.split_batch(sessions, batch_id=ref.id, halves=(documents(2), documents(3))) == []
    assert jobs.claim_batch(sessions, batch_id=ref.id, worker="other") is None
    counted = job(sessions, job_id)
    assert (counted.documents_done, counted.chunks_done, counted.batches_done) == (5, 10, 1)
    assert counted.documents_failed == 0


def test_completing_the_last_batch_reports_how_the_job_ended(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    first, last = (jobs.add_batch(sessions, job_id=job_id, documents=documents(2)) for _ in "ab")
    jobs.seal_job(sessions, job_id=job_id)
    claim(sessions, first.id)
    claim(sessions, last.id)

    done = jobs.complete_batch(sessions, batch_id=first.id, documents_done=2)
    assert (done.counted, done.job_ended) == (True, None)
    done = jobs.complete_batch(sessions, batch_id=last.id, documents_done=2)
    assert (done.counted, done.job_ended) == (True, "succeeded")
    again = jobs.complete_batch(sessions, batch_id=last.id, documents_done=2)
    assert (again.counted, again.job_ended) == (False, None)


def test_two_completions_at_once_count_once(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(5))
    jobs.seal_job(sessions, job_id=job_id)
    claim(sessions, ref.id)

    outcomes = run_together(2, lambda _: complete(sessions, ref.id, 5))

    assert sorted(outcomes) == [False, True]
    ended = job(sessions, job_id)
    assert (ended.status, ended.documents_done, ended.tokens_done, ended.batches_done) == (
        "succeeded",
        5,
        500,
        1,
    )


def test_batches_of_one_job_completed_from_eight_threads_end_it_once(
    sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="embedq.jobs")
    job_id = new_job(sessions)
    sizes = [1 + i % 5 for i in range(40)]
    refs = [
        jobs.add_batch(sessions, job_id=job_id, documents=documents(n, f"b{i}-"))
        for i, n in enumerate(sizes)
    ]
    for ref in refs:
        claim(sessions, ref.id)
    jobs.seal_job(sessions, job_id=job_id)

    def worker(index: int) -> list[bool]:
        mine = range(index, len(refs), 8)
        return [complete(sessions, refs[i].id, sizes[i], tokens_done=7 * sizes[i]) for i in mine]

    outcomes = run_together(8, worker)

    assert all(all(results) for results in outcomes)
    ended = job(sessions, job_id)
    assert ended.status == jobs.JobStatus.succeeded
    assert (ended.documents_done, ended.chunks_done, ended.tokens_done) == (
        sum(sizes),
        2 * sum(sizes),
        7 * sum(sizes),
    )
    assert (ended.batches_done, ended.open_batches, ended.documents_total) == (40, 0, sum(sizes))
    endings = [r for r in caplog.records if r.getMessage().startswith(f"job {job_id} ended")]
    assert len(endings) == 1


def _complete_in_a_process(database: Database, batch_ids: list[str]) -> list[bool]:
    engine = database.engine()
    try:
        sessions = jobs.make_sessions(engine)
        return [complete(sessions, batch_id, 2) for batch_id in batch_ids]
    finally:
        engine.dispose()


def test_worker_processes_share_one_ledger(database: Database, sessions: Sessions) -> None:
    job_id = new_job(sessions)
    refs = [jobs.add_batch(sessions, job_id=job_id, documents=documents(2)) for _ in range(12)]
    for ref in refs:
        claim(sessions, ref.id)
    jobs.seal_job(sessions, job_id=job_id)
    # each batch twice, from different processes: counted once all the same
    shares = [
        [ref.id for ref in refs[i::3]] + [ref.id for ref in refs[(i + 1) % 3 :: 3]]
        for i in range(3)
    ]

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=spawn) as pool:
        outcomes = list(pool.map(_complete_in_a_process, [database] * 3, shares))

    assert sum(sum(results) for results in outcomes) == len(refs)
    ended = job(sessions, job_id)
    assert (ended.status, ended.documents_done, ended.batches_done) == ("succeeded", 24, 12)


def test_reported_counts_must_add_up_to_the_batch(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(3))
    claim(sessions, ref.id)
    with pytest.raises(jobs.InvalidBatchError, match="3 documents"):
        complete(sessions, ref.id, 2)
    [batch] = jobs.list_batches(sessions, job_id=job_id)
    assert batch.status == jobs.BatchStatus.running
    assert job(sessions, job_id).documents_done == 0
    assert complete(sessions, ref.id, 2, failures=[jobs.Failure(doc_id="d2", reason="empty")])


# --- leases -----------------------------------------------------------------------------


def test_a_lease_is_taken_over_only_after_it_expires(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(2))
    t0 = datetime.now(timezone.utc)
    first = claim(sessions, ref.id, "gpu-0", lease_seconds=60, now=t0)
    assert first.lease_expires_at == t0 + timedelta(seconds=60)

    assert (
        jobs.claim_batch(sessions, batch_id=ref.id, worker="gpu-1", now=t0 + timedelta(seconds=59))
        is None
    )
    assert jobs.expired_batches(sessions, now=t0 + timedelta(seconds=59)) == []
    assert jobs.renew_lease(
        sessions, batch_id=ref.id, worker="gpu-0", lease_seconds=60, now=t0 + timedelta(seconds=30)
    )
    # renewed until t0 + 90 s: still not expired at t0 + 61 s
    late = t0 + timedelta(seconds=61)
    assert jobs.claim_batch(sessions, batch_id=ref.id, worker="gpu-1", now=late) is None
    expiry = t0 + timedelta(seconds=91)
    assert jobs.expired_batches(sessions, now=expiry) == [ref.id]

    second = claim(sessions, ref.id, "gpu-1", lease_seconds=60, now=expiry)
    assert (second.attempt, second.documents) == (2, documents(2))
    assert not jobs.renew_lease(sessions, batch_id=ref.id, worker="gpu-0", now=expiry)
    assert jobs.renew_lease(sessions, batch_id=ref.id, worker="gpu-1", now=expiry)
    [batch] = jobs.list_batches(sessions, job_id=job_id)
    assert (batch.lease_owner, batch.attempts) == ("gpu-1", 2)

    # the slow first worker finishes first: counted; the new owner's completion is not
    assert complete(sessions, ref.id, 2)
    assert not complete(sessions, ref.id, 2)
    assert job(sessions, job_id).documents_done == 2


def test_a_lease_is_renewed_only_by_its_owner(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    t0 = datetime.now(timezone.utc)
    claim(sessions, ref.id, "gpu-0", lease_seconds=10, now=t0)
    assert not jobs.renew_lease(sessions, batch_id=ref.id, worker="gpu-1", now=t0)
    assert jobs.renew_lease(sessions, batch_id=ref.id, worker="gpu-0", lease_seconds=100, now=t0)
    [batch] = jobs.list_batches(sessions, job_id=job_id)
    assert batch.lease_expires_at == t0 + timedelta(seconds=100)
    assert complete(sessions, ref.id, 1)
    assert not jobs.renew_lease(sessions, batch_id=ref.id, worker="gpu-0")


def test_a_released_batch_can_be_claimed_again_at_once(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    claim(sessions, ref.id, "gpu-0")
    assert not jobs.release_batch(sessions, batch_id=ref.id, worker="gpu-1")
    assert jobs.release_batch(sessions, batch_id=ref.id, worker="gpu-0")
    assert jobs.queued_batches(sessions, job_id=job_id) == [ref.id]
    # a passing failure is not a lost attempt: a long outage never fails the batch
    assert claim(sessions, ref.id, "gpu-1").attempt == 1


PERIOD = timedelta(seconds=REPUBLISH_PERIOD_SECONDS)
INGEST = frozenset({jobs.JobKind.ingest})


def to_publish(sessions: Sessions, now: datetime, depth: int | None = None) -> list[str]:
    """What a reaper's two rounds in a row would publish, with the ingestion queue holding
    ``depth`` (one beyond the queue's depth is published when it is so in both)."""
    lanes = [jobs.Lane(INGEST, depth)]
    first = jobs.take_batches_to_publish(sessions, lanes=lanes, now=now)
    second = jobs.take_batches_to_publish(sessions, lanes=lanes, suspects=first.suspects, now=now)
    return [t.batch_id for t in first.publish + second.publish]


def test_a_batch_beyond_the_depth_for_one_round_only_is_not_published(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    later = datetime.now(timezone.utc) + PERIOD + timedelta(seconds=1)
    lanes = [jobs.Lane(INGEST, 0)]  # a worker has just taken its message, not claimed it yet

    first = jobs.take_batches_to_publish(sessions, lanes=lanes, now=later)
    assert (first.publish, first.suspects) == ([], frozenset({ref.id}))
    claim(sessions, ref.id, now=later + timedelta(seconds=1))
    second = jobs.take_batches_to_publish(
        sessions, lanes=lanes, suspects=first.suspects, now=later + timedelta(seconds=10)
    )
    assert (second.publish, second.suspects) == ([], frozenset())


def test_a_released_batch_whose_retry_message_was_lost_is_published_once_a_period(
    sessions: Sessions,
) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    t0 = datetime.now(timezone.utc)
    claim(sessions, ref.id, "gpu-0", now=t0)
    # released after a passing failure, its retry due in 30 s; then the message is lost
    assert jobs.release_batch(sessions, batch_id=ref.id, worker="gpu-0", retry_in=30, now=t0)
    due = t0 + timedelta(seconds=30)

    assert to_publish(sessions, due + PERIOD - timedelta(seconds=1), depth=0) == []
    assert to_publish(sessions, due + PERIOD + timedelta(seconds=1), depth=1) == []  # in the queue
    assert to_publish(sessions, due + PERIOD + timedelta(seconds=1), depth=0) == [ref.id]
    # stamped: neither the next round nor another reaper publishes it again this period
    assert to_publish(sessions, due + PERIOD + timedelta(seconds=2), depth=0) == []
    assert to_publish(sessions, due + 2 * PERIOD + timedelta(seconds=2), depth=0) == [ref.id]
    claim(sessions, ref.id, "gpu-1", lease_seconds=60, now=due + 2 * PERIOD + timedelta(seconds=3))
    assert to_publish(sessions, due + 2 * PERIOD + timedelta(seconds=40), depth=0) == []
    [batch] = jobs.list_batches(sessions, job_id=job_id)
    assert batch.publishes == 4  # the producer's, the retry's, and two re-publishes


def test_only_the_oldest_batches_the_broker_has_no_message_for_are_published_again(
    sessions: Sessions,
) -> None:
    job_id = new_job(sessions)
    refs = [jobs.add_batch(sessions, job_id=job_id, documents=documents(1)) for _ in range(5)]
    later = datetime.now(timezone.utc) + PERIOD + timedelta(seconds=1)

    # five waiting, three messages in the queue: the broker lost two, presumably the oldest
    assert to_publish(sessions, later, depth=3) == [refs[0].id, refs[1].id]
    assert to_publish(sessions, later, depth=None) == []  # the broker cannot say: no guess


def test_a_deep_healthy_queue_is_never_published_again(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    refs = [jobs.add_batch(sessions, job_id=job_id, documents=documents(1)) for _ in range(40)]
    t0 = datetime.now(timezone.utc)
    # workers take them in order, one every 3 s, while each waits minutes for its turn
    for i, ref in enumerate(refs):
        now = t0 + timedelta(seconds=3 * i)
        assert to_publish(sessions, now, depth=len(refs) - i) == []
        claim(sessions, ref.id, f"gpu-{i % 2}", now=now + timedelta(seconds=1))
        complete(sessions, ref.id, 1)
    assert all(b.publishes == 1 for b in jobs.list_batches(sessions, job_id=job_id))


def test_a_batch_overtaken_by_a_later_one_lost_its_message(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    lost = jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    t0 = datetime.now(timezone.utc)
    later = jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    # the later batch is published a while after, and taken: the queue is first in, first out
    with jobs.db.transaction(sessions) as s:
        s.execute(
            update(jobs.schema.Batch)
            .where(jobs.schema.Batch.id == later.id)
            .values(published_at=t0 + timedelta(seconds=20))
        )
    claim(sessions, later.id, lease_seconds=60, now=t0 + timedelta(seconds=21))

    # not judged until the overtaking claim is a period old, whatever the broker holds
    assert to_publish(sessions, t0 + timedelta(seconds=21) + PERIOD - timedelta(seconds=1)) == []
    assert to_publish(sessions, t0 + timedelta(seconds=22) + PERIOD) == [lost.id]


def test_an_expired_lease_is_published_once_a_period(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    t0 = datetime.now(timezone.utc)
    claim(sessions, ref.id, lease_seconds=60, now=t0)
    expired = t0 + timedelta(seconds=61)

    assert to_publish(sessions, t0 + timedelta(seconds=59)) == []
    assert to_publish(sessions, expired) == [ref.id]
    assert to_publish(sessions, expired + timedelta(seconds=10)) == []
    assert to_publish(sessions, expired + PERIOD + timedelta(seconds=1)) == [ref.id]


def test_a_batch_of_another_queue_is_not_judged_by_this_queues_depth(sessions: Sessions) -> None:
    reindex = jobs.create_job(sessions, kind="reindex", collection="papers", model="bge-m3")
    ref = jobs.add_batch(sessions, job_id=reindex, documents=documents(1))
    later = datetime.now(timezone.utc) + PERIOD + timedelta(seconds=1)

    assert to_publish(sessions, later, depth=0) == []  # only the ingestion lane was given
    lanes = [jobs.Lane(frozenset({jobs.JobKind.reindex}), 0)]
    first = jobs.take_batches_to_publish(sessions, lanes=lanes, now=later)
    taken = jobs.take_batches_to_publish(sessions, lanes=lanes, suspects=first.suspects, now=later)
    assert [t.batch_id for t in taken.publish] == [ref.id]


def test_one_reaper_judges_at_a_time(sessions: Sessions, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's write lock already makes reapers take turns")
    job_id = new_job(sessions)
    jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    later = datetime.now(timezone.utc) + PERIOD + timedelta(seconds=1)
    with engine.connect() as other, other.begin():
        key = {"key": REAPER_LOCK_KEY}
        assert other.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), key)
        assert to_publish(sessions, later, depth=0) == []  # another reaper is at it
    assert len(to_publish(sessions, later, depth=0)) == 1


def test_a_batch_recorded_twice_under_one_id_is_added_once(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    first = jobs.add_batch(sessions, job_id=job_id, documents=documents(3), batch_id="b" * 32)
    again = jobs.add_batch(sessions, job_id=job_id, documents=documents(3), batch_id="b" * 32)

    assert again == first
    view = job(sessions, job_id)
    assert (view.batches_total, view.documents_total) == (1, 3)
    with pytest.raises(jobs.InvalidBatchError):
        jobs.add_batch(
            sessions, job_id=new_job(sessions), documents=documents(1), batch_id="b" * 32
        )


def test_a_batch_that_keeps_losing_its_worker_fails_after_max_attempts(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    ref = jobs.add_batch(sessions, job_id=job_id, documents=documents(2))
    jobs.seal_job(sessions, job_id=job_id)
    t0 = datetime.now(timezone.utc)
    for attempt in range(2):
        moment = t0 + timedelta(seconds=100 * attempt)
        claim(sessions, ref.id, f"gpu-{attempt}", lease_seconds=60, max_attempts=2, now=moment)
    # the second attempt is running under a live lease: not given up yet
    assert (
        jobs.claim_batch(
            sessions,
            batch_id=ref.id,
            worker="gpu-9",
            max_attempts=2,
            now=t0 + timedelta(seconds=110),
        )
        is None
    )
    assert job(sessions, job_id).status == jobs.JobStatus.running

    gone = t0 + timedelta(seconds=200)
    assert (
        jobs.claim_batch(sessions, batch_id=ref.id, worker="gpu-9", max_attempts=2, now=gone)
        is None
    )
    ended = job(sessions, job_id)
    assert (ended.status, ended.documents_failed, ended.batches_failed) == ("failed", 2, 1)
    assert "abandoned after 2 attempts" in jobs.list_failures(sessions, job_id=job_id)[0].reason


# --- splits -----------------------------------------------------------------------------


def test_a_split_batch_is_replaced_by_two_children(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    parent = jobs.add_batch(sessions, job_id=job_id, documents=documents(5))
    jobs.seal_job(sessions, job_id=job_id)
    docs = claim(sessions, parent.id).documents

    with pytest.raises(jobs.InvalidBatchError):
        jobs.split_batch(sessions, batch_id=parent.id, halves=(docs[:2], docs[2:4]))
    children = jobs.split_batch(sessions, batch_id=parent.id, halves=(docs[:2], docs[2:]))
    assert [child.sequence for child in children] == [1, 2]
    assert jobs.split_batch(sessions, batch_id=parent.id, halves=(docs[:2], docs[2:])) == []

    split = job(sessions, job_id)
    assert (split.splits, split.batches_total, split.documents_total) == (1, 3, 5)
    assert (split.status, split.open_batches) == ("running", 2)
    batches = jobs.list_batches(sessions, job_id=job_id)
    assert [(b.status, b.parent_id, b.documents) for b in batches] == [
        ("split", None, 5),
        ("queued", parent.id, 2),
        ("queued", parent.id, 3),
    ]

    first, second = (claim(sessions, child.id) for child in children)
    assert first.documents + second.documents == docs
    assert complete(sessions, children[0].id, 2)
    assert job(sessions, job_id).status == jobs.JobStatus.running
    assert complete(sessions, children[1].id, 3)
    ended = job(sessions, job_id)
    assert (ended.status, ended.documents_done, ended.documents_total) == ("succeeded", 5, 5)
    assert (ended.batches_done, ended.splits) == (2, 1)
    assert payload_count(sessions) == 0


def test_children_may_be_added_after_sealing_but_only_to_a_split_parent(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    parent = jobs.add_batch(sessions, job_id=job_id, documents=documents(2))
    jobs.seal_job(sessions, job_id=job_id)
    with pytest.raises(jobs.InvalidBatchError, match="not split"):
        jobs.add_batch(sessions, job_id=job_id, documents=documents(1), parent_id=parent.id)
    with pytest.raises(jobs.BatchNotFoundError):
        jobs.add_batch(sessions, job_id=job_id, documents=documents(1), parent_id="nope")


# --- cancel -----------------------------------------------------------------------------


def test_cancelling_a_job_stops_its_batches_from_counting(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    running, queued, other = (
        jobs.add_batch(sessions, job_id=job_id, documents=documents(2, p)) for p in "abc"
    )
    claim(sessions, running.id)
    claim(sessions, other.id)

    assert jobs.cancel_job(sessions, job_id=job_id, reason="user asked")
    assert not jobs.cancel_job(sessions, job_id=job_id)
    cancelled = job(sessions, job_id)
    assert (cancelled.status, cancelled.error) == ("cancelled", "user asked")
    assert cancelled.finished_at is not None
    statuses = {b.id: b.status for b in jobs.list_batches(sessions, job_id=job_id)}
    assert statuses == {running.id: "running", queued.id: "cancelled", other.id: "running"}

    assert not jobs.renew_lease(sessions, batch_id=running.id, worker=WORKER)
    assert not complete(sessions, running.id, 2)
    assert jobs.claim_batch(sessions, batch_id=queued.id, worker=WORKER) is None
    assert jobs.split_batch(sessions, batch_id=other.id, halves=(documents(1), documents(1))) == []
    assert jobs.queued_batches(sessions, job_id=job_id) == []

    after = job(sessions, job_id)
    assert (after.documents_done, after.batches_done, after.open_batches) == (0, 0, 0)
    assert {b.status for b in jobs.list_batches(sessions, job_id=job_id)} == {"cancelled"}
    assert payload_count(sessions) == 0
    with pytest.raises(jobs.JobClosedError):
        jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    assert jobs.seal_job(sessions, job_id=job_id) == jobs.JobStatus.cancelled


def test_a_job_can_be_failed_with_a_reason(sessions: Sessions) -> None:
    job_id = new_job(sessions)
    jobs.add_batch(sessions, job_id=job_id, documents=documents(1))
    assert jobs.fail_job(sessions, job_id=job_id, error="input file vanished")
    ended = job(sessions, job_id)
    assert (ended.status, ended.error, ended.open_batches) == ("failed", "input file vanished", 0)


# --- listings and lookups ---------------------------------------------------------------


def test_jobs_are_listed_newest_first_and_by_status(sessions: Sessions) -> None:
    older, newer = new_job(sessions), new_job(sessions)
    jobs.seal_job(sessions, job_id=older)
    listed = jobs.list_jobs(sessions)
    assert [view.id for view in listed] == [newer, older]
    assert [v.id for v in jobs.list_jobs(sessions, status=jobs.JobStatus.succeeded)] == [older]
    assert [v.id for v in jobs.list_jobs(sessions, limit=1, offset=1)] == [older]
    assert jobs.get_job(sessions, job_id="missing") is None
    with pytest.raises(jobs.JobNotFoundError):
        jobs.add_batch(sessions, job_id="missing", documents=documents(1))
    with pytest.raises(jobs.BatchNotFoundError):
        jobs.claim_batch(sessions, batch_id="missing", worker=WORKER)
    with pytest.raises(ValueError):
        jobs.create_job(sessions, kind="transcode", collection="c", model="m")


def test_queued_batches_can_be_filtered_by_job_and_age(sessions: Sessions, engine: Engine) -> None:
    first, second = new_job(sessions), new_job(sessions)
    a = jobs.add_batch(sessions, job_id=first, documents=documents(1))
    b = jobs.add_batch(sessions, job_id=second, documents=documents(1))
    c = jobs.add_batch(sessions, job_id=second, documents=documents(1))
    claim(sessions, c.id)
    assert jobs.queued_batches(sessions) == [a.id, b.id]
    assert jobs.queued_batches(sessions, job_id=second) == [b.id]
    assert jobs.queued_batches(sessions, limit=1) == [a.id]

    from embedq.jobs.schema import Batch

    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    with jobs.make_sessions(engine).begin() as s:
        s.execute(update(Batch).where(Batch.id == a.id).values(created_at=an_hour_ago))
    cutoff = datetime.now(timezone.utc) - timedelta(minutes=10)
    assert jobs.queued_batches(sessions, older_than=cutoff) == [a.id]
