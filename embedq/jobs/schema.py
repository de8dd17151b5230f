"""The ledger's tables, as SQLAlchemy 2 typed declarative classes (Postgres and SQLite).

``migrations/versions`` creates the same tables by hand; a test compares the two.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from embedq.jobs.status import BatchStatus, JobStatus

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
ID_LENGTH = 32  # uuid4 hex
NAME_LENGTH = 255
STATUS_LENGTH = 16
TENANT_LENGTH = 64
KEY_NAME_LENGTH = 200
SECRET_HASH_LENGTH = 64  # sha256 hex


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    Postgres keeps the zone (timestamptz); SQLite keeps none, so values are stored
    as naive UTC, which also keeps its text comparisons (lease expiry) correct.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the ledger stores UTC times only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _status(enum: type[JobStatus] | type[BatchStatus]) -> Enum:
    # stored as a plain string (no database enum type to migrate when a state is added)
    return Enum(enum, native_enum=False, length=STATUS_LENGTH, validate_strings=True)


def _counter() -> Mapped[int]:
    return mapped_column(BigInteger, nullable=False, default=0, server_default="0")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


class Job(Base):
    """One ingestion, re-index or rerank request and its running totals."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index(None, "status", "created_at"),
        Index(None, "created_at"),
        # a tenant lists its own jobs, newest first
        Index(None, "tenant", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    # the API key's tenant that created it; null for jobs made on the ledger directly (CLI)
    tenant: Mapped[str | None] = mapped_column(String(TENANT_LENGTH))
    kind: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    status: Mapped[JobStatus] = mapped_column(_status(JobStatus))
    collection: Mapped[str] = mapped_column(String(NAME_LENGTH))
    model: Mapped[str] = mapped_column(String(NAME_LENGTH))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    # no more root batches will be added; the job may end once its batches have
    sealed: Mapped[bool] = mapped_column(default=False, server_default=false())
    documents_total: Mapped[int] = _counter()
    batches_total: Mapped[int] = _counter()
    documents_done: Mapped[int] = _counter()
    chunks_done: Mapped[int] = _counter()
    tokens_done: Mapped[int] = _counter()
    documents_failed: Mapped[int] = _counter()
    # skipped: the collection already held them as they are (ingest --skip-unchanged)
    documents_unchanged: Mapped[int] = _counter()
    # points of these documents were removed (a delete job, or a sync's sweep)
    documents_deleted: Mapped[int] = _counter()
    batches_done: Mapped[int] = _counter()
    batches_failed: Mapped[int] = _counter()
    splits: Mapped[int] = _counter()
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class Batch(Base):
    """A slice of a job's documents, processed (and counted) as one unit."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("job_id", "sequence"),
        # finishing a job asks "any open batch left?" after every batch: keep it an index probe
        Index(None, "job_id", "status"),
        Index(None, "status", "lease_expires_at"),
        Index(None, "status", "published_at"),
        # which batches a worker took lately (jobs.publishing: is a queued one overtaken?)
        Index(None, "started_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    status: Mapped[BatchStatus] = mapped_column(_status(BatchStatus))
    # what the batch does: None for documents, "sweep" for a sync's final removal step
    role: Mapped[str | None] = mapped_column(String(STATUS_LENGTH))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    documents: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    lease_expires_at: Mapped[datetime | None]
    # when its latest message was sent, or is due (a retry's countdown); null: never sent
    published_at: Mapped[datetime | None]
    # messages sent for it: more than one means a retry, a take-over or a lost message
    publishes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class BatchPayload(Base):
    """A batch's documents, kept until the batch ends so any worker can (re)run it."""

    __tablename__ = "batch_payloads"

    batch_id: Mapped[str] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    documents: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class DocumentFailure(Base):
    """One document that could not be embedded (or parsed), and why."""

    __tablename__ = "document_failures"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    # a log row, not a reference: null for documents rejected before any batch
    batch_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    doc_id: Mapped[str | None] = mapped_column(Text)
    # input line number, for lines that could not be parsed into a document
    line: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class RerankResult(Base):
    """One candidate's score for one query of a rerank job, and its rank among the query's."""

    __tablename__ = "rerank_results"
    __table_args__ = (
        # results are read a query at a time, best first
        Index(None, "job_id", "query_id", "rank"),
    )

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    query_id: Mapped[str] = mapped_column(Text, primary_key=True)
    candidate_id: Mapped[str] = mapped_column(Text, primary_key=True)
    # a log of which batch wrote it, not a reference (like a failure's)
    batch_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)


class ApiKey(Base):
    """A secret that lets its holder act for one tenant; only the secret's hash is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_LENGTH))
    name: Mapped[str | None] = mapped_column(String(KEY_NAME_LENGTH))
    secret_hash: Mapped[str] = mapped_column(String(SECRET_HASH_LENGTH), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
