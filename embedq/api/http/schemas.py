"""What the HTTP API takes and gives, with the limits a request must respect."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from embedq import jobs
from embedq.api.ingest.reader import MAX_TEXT_CHARS

# Collection names: also Qdrant's alias names, and part of the versioned names behind them.
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
OUTPUTS_PATTERN = r"^(dense|sparse|colbert)(,(dense|sparse|colbert)){0,2}$"
MAX_DOCUMENTS_PER_BATCH = 1000
MAX_ID_CHARS = 256
MAX_MODEL_CHARS = 300

JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
# strings that end up in the ledger's text columns, which cannot hold a NUL character
NO_NUL = r"^[^\x00]*$"

CollectionName = Annotated[str, StringConstraints(pattern=COLLECTION_PATTERN)]
ModelName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_MODEL_CHARS, pattern=NO_NUL)
]


class DocumentIn(BaseModel):
    """One document: embedded as ``title + " " + text`` when it has a title."""

    model_config = ConfigDict(extra="forbid")

    id: (
        Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=NO_NUL)]
        | int
    )
    text: Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
    title: Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)] | None = None
    metadata: dict[str, Any] | None = None


Documents = Annotated[list[DocumentIn], Field(max_length=MAX_DOCUMENTS_PER_BATCH)]


class EmbeddingIn(BaseModel):
    """A collection and how to embed into it; what is left out takes its default."""

    model_config = ConfigDict(extra="forbid")

    collection: CollectionName
    model: ModelName | None = None
    outputs: Annotated[str, StringConstraints(pattern=OUTPUTS_PATTERN)] | None = None
    max_length: Annotated[int, Field(ge=8, le=8192)] | None = None
    long_text: Literal["chunk", "truncate"] | None = None


class JobIn(EmbeddingIn):
    """A new ingestion job, optionally with its first documents, optionally sealed at once."""

    batch_size: Annotated[int, Field(ge=1, le=MAX_DOCUMENTS_PER_BATCH)] | None = None
    documents: Documents = Field(default_factory=list)
    seal: bool = False
    # skip documents the collection holds exactly as they would be written
    skip_unchanged: bool = False
    # that, and once every document has landed, delete the collection's documents this
    # job was not given; ``force``: even more than EMBEDQ_SYNC_MAX_DELETE_SHARE of them
    sync: bool = False
    force: bool = False


class RejectedIn(BaseModel):
    """A document the producer could not read (a broken line): recorded as a failure."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NO_NUL)]
    line: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    doc_id: Annotated[str, StringConstraints(max_length=MAX_ID_CHARS, pattern=NO_NUL)] | None = None


class BatchIn(BaseModel):
    """Documents to add, and (optionally) what the producer could not read, for the record."""

    model_config = ConfigDict(extra="forbid")

    documents: Documents = Field(default_factory=list)
    rejected: Annotated[list[RejectedIn], Field(max_length=MAX_DOCUMENTS_PER_BATCH)] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _not_empty(self) -> BatchIn:
        if not self.documents and not self.rejected:
            raise ValueError("a batch needs documents (or rejected lines to record)")
        return self


class SealIn(BaseModel):
    """Sealing a job; with ``intake_error``, its producer stopped part-way and says why."""

    model_config = ConfigDict(extra="forbid")

    intake_error: (
        Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NO_NUL)] | None
    ) = None


class BatchesOut(BaseModel):
    job_id: str
    documents: int
    rejected: int
    batches: int


class FailureOut(BaseModel):
    id: int
    job_id: str
    doc_id: str | None
    line: int | None
    reason: str
    batch_id: str | None
    created_at: datetime


class JobOut(BaseModel):
    """A job as a producer polls it: counts, progress, rate, time left and first errors."""

    id: str
    kind: str
    status: str
    tenant: str | None
    collection: str
    model: str
    options: dict[str, Any]
    sealed: bool
    documents_total: int
    documents_done: int
    documents_failed: int
    documents_unchanged: int
    documents_deleted: int
    chunks_done: int
    tokens_done: int
    batches_total: int
    batches_done: int
    batches_failed: int
    open_batches: int
    splits: int
    progress: float
    docs_per_second: float | None
    eta_seconds: float | None
    error: str | None
    first_errors: list[FailureOut]
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None


class JobPage(BaseModel):
    jobs: list[JobOut]
    limit: int
    offset: int
    next_offset: int | None


class FailurePage(BaseModel):
    failures: list[FailureOut]
    limit: int
    offset: int
    next_offset: int | None


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


def failure_out(failure: jobs.FailureView) -> FailureOut:
    return FailureOut(
        id=failure.id,
        job_id=failure.job_id,
        doc_id=failure.doc_id,
        line=failure.line,
        reason=failure.reason,
        batch_id=failure.batch_id,
        created_at=failure.created_at,
    )
