"""Rules of the job ledger that need no server: endings, progress, UTC times, error kinds."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from embedq import jobs
from embedq.errors import PermanentError, RetryableError
from embedq.jobs import JOB_ENDED, JOB_OPEN, IngestOptions, JobKind, JobStatus, JobView
from embedq.jobs.clock import moment
from embedq.jobs.db import is_transient
from embedq.jobs.errors import LedgerUnavailableError, SchemaOutOfDateError
from embedq.jobs.schema import UTCDateTime
from embedq.jobs.status import BATCH_ENDED, BATCH_OPEN, BatchStatus, ending_status

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("done", "failed", "status"),
    [(5, 0, "succeeded"), (0, 0, "succeeded"), (0, 3, "failed"), (4, 1, "partial")],
)
def test_a_job_ends_by_its_failed_and_done_documents(done: int, failed: int, status: str) -> None:
    assert ending_status(documents_done=done, documents_failed=failed) == status


def test_open_and_ended_states_partition_each_enum() -> None:
    assert set(JobStatus) == JOB_OPEN | JOB_ENDED and not JOB_OPEN & JOB_ENDED
    assert set(BatchStatus) == BATCH_OPEN | BATCH_ENDED and not BATCH_OPEN & BATCH_ENDED
    assert BatchStatus("split") is BatchStatus.split


def view(status: JobStatus, total: int, done: int, failed: int) -> JobView:
    counts = dict.fromkeys(("batches_total", "chunks_done", "tokens_done", "splits"), 0)
    return JobView(
        id="j",
        kind=JobKind.ingest,
        status=status,
        collection="c",
        model="m",
        options=IngestOptions(physical_collection="c"),
        sealed=True,
        documents_total=total,
        documents_done=done,
        documents_failed=failed,
        batches_done=0,
        batches_failed=0,
        error=None,
        created_at=NOW,
        started_at=None,
        updated_at=NOW,
        finished_at=None,
        open_batches=0,
        **counts,
    )


def test_progress_counts_done_and_failed_documents() -> None:
    assert view(JobStatus.running, 10, 6, 2).progress == pytest.approx(0.8)
    assert view(JobStatus.pending, 0, 0, 0).progress == 0.0
    assert view(JobStatus.succeeded, 0, 0, 0).progress == 1.0
    assert asdict(view(JobStatus.running, 4, 1, 0))["progress"] == 0.25


def test_now_must_carry_a_timezone() -> None:
    with pytest.raises(ValueError, match="naive"):
        moment(datetime(2025, 1, 1))
    eastern = datetime(2025, 1, 1, 7, tzinfo=timezone(timedelta(hours=-5)))
    assert moment(eastern) == datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
    assert moment().tzinfo is timezone.utc


def test_times_are_stored_as_utc_and_read_back_aware() -> None:
    column = UTCDateTime()
    eastern = NOW.astimezone(timezone(timedelta(hours=-5)))
    stored = column.process_bind_param(eastern, sqlite.dialect())
    assert stored == NOW.replace(tzinfo=None)
    assert column.process_result_value(stored, sqlite.dialect()) == NOW
    assert column.process_bind_param(eastern, postgresql.dialect()) == NOW
    with pytest.raises(ValueError, match="naive"):
        column.process_bind_param(datetime(2025, 1, 1), sqlite.dialect())


def test_locks_and_lost_connections_are_transient_but_mistakes_are_not() -> None:
    locked = OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))
    missing = OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: jobs"))
    postgres_gone = OperationalError("SELECT", {}, Exception("server closed the connection"))
    duplicate = IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert is_transient(locked) and is_transient(postgres_gone)
    assert not is_transient(missing) and not is_transient(duplicate)


def test_ledger_errors_say_whether_to_retry() -> None:
    assert issubclass(LedgerUnavailableError, RetryableError)
    assert issubclass(SchemaOutOfDateError, PermanentError)


def test_a_ledger_that_cannot_be_reached_raises_a_retryable_error() -> None:
    engine = jobs.make_engine("postgresql+psycopg://embedq@127.0.0.1:9/nowhere")
    with pytest.raises(LedgerUnavailableError):
        jobs.get_job(jobs.make_sessions(engine), job_id="j")
    engine.dispose()


def test_a_sqlite_ledger_locked_too_long_raises_a_retryable_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    jobs.migrate(f"sqlite:///{path}")
    engine = jobs.make_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    sessions = jobs.make_sessions(engine)
    try:
        with pytest.raises(LedgerUnavailableError, match="locked"):
            jobs.create_job(sessions, kind="ingest", collection="c", model="m")
        # readers do not wait for the writer
        assert jobs.list_jobs(sessions) == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()
