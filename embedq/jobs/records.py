"""The plain, frozen values ledger functions take and return (never ORM objects)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from embedq.jobs.contracts import InvalidJobOptionsError, JobOptions, Payload
from embedq.jobs.status import JOB_ENDED, BatchStatus, JobKind, JobStatus

Documents = Sequence[Payload]
Options = TypeVar("Options", bound=JobOptions)
Item = TypeVar("Item", bound=Payload)


@dataclass(frozen=True, kw_only=True)
class Failure:
    """A document that failed, and why: by id, or by input line when it never got an id."""

    reason: str
    doc_id: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class BatchRef:
    """A batch just recorded: publish one task per ref."""

    id: str
    sequence: int


@dataclass(frozen=True)
class Completion:
    """What completing a batch did: whether it counted, and how the job ended if it did."""

    counted: bool
    job_ended: JobStatus | None = None


@dataclass(frozen=True)
class Claim:
    """A batch a worker now holds, with everything it needs to run it."""

    batch_id: str
    job_id: str
    attempt: int
    documents: list[Payload]
    kind: JobKind
    collection: str
    model: str
    options: JobOptions
    lease_expires_at: datetime
    # None for a batch of documents; "sweep" for a sync's removal of what its input lacks
    role: str | None = None

    def options_as(self, wanted: type[Options]) -> Options:
        """The job's options, which its handler expects to be ``wanted``."""
        if not isinstance(self.options, wanted):
            raise InvalidJobOptionsError(
                f"batch {self.batch_id}: a {self.kind} job's options are not {wanted.__name__}"
            )
        return self.options

    def documents_as(self, wanted: type[Item]) -> list[Item]:
        """The batch's payloads, which its handler expects to be ``wanted`` each."""
        items: list[Item] = [item for item in self.documents if isinstance(item, wanted)]
        if len(items) < len(self.documents):
            raise InvalidJobOptionsError(
                f"batch {self.batch_id}: a {self.kind} job's payloads are not {wanted.__name__}"
            )
        return items


@dataclass(frozen=True)
class JobView:
    """A job as producers poll it."""

    id: str
    kind: JobKind
    status: JobStatus
    collection: str
    model: str
    options: JobOptions
    sealed: bool
    documents_total: int
    batches_total: int
    documents_done: int
    chunks_done: int
    tokens_done: int
    documents_failed: int
    batches_done: int
    batches_failed: int
    splits: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    open_batches: int
    # skipped as already stored (ingest --skip-unchanged), and removed (delete, sync)
    documents_unchanged: int = 0
    documents_deleted: int = 0
    # whose job it is: the tenant of the API key that made it; None when made on the ledger
    tenant: str | None = None
    # share of the documents that have ended, done or failed (0.0 to 1.0)
    progress: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "progress", self._progress())

    @property
    def ended(self) -> bool:
        return self.status in JOB_ENDED

    @property
    def documents_ended(self) -> int:
        """Documents this job is through with: done, failed, or skipped as unchanged."""
        return self.documents_done + self.documents_failed + self.documents_unchanged

    def _progress(self) -> float:
        if self.documents_total == 0:
            return 1.0 if self.ended else 0.0
        return self.documents_ended / self.documents_total


@dataclass(frozen=True)
class BatchView:
    """A batch's state (its documents are not included)."""

    id: str
    job_id: str
    sequence: int
    parent_id: str | None
    status: BatchStatus
    role: str | None
    attempts: int
    documents: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    published_at: datetime | None
    publishes: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class FailureView:
    """One recorded document failure."""

    id: int
    job_id: str
    batch_id: str | None
    doc_id: str | None
    line: int | None
    reason: str
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class RerankResult:
    """One candidate's score for one query, and its rank there (1 is the highest score)."""

    query_id: str
    candidate_id: str
    score: float
    rank: int


@dataclass(frozen=True)
class ApiKeyView:
    """An API key as listed: never its secret, nor the secret's hash."""

    id: str
    tenant: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class NewApiKey:
    """A key just created, with its secret: shown this once, as only its hash is stored."""

    id: str
    tenant: str
    name: str | None
    created_at: datetime
    # kept out of repr so that logging the key does not log its secret
    secret: str = field(repr=False)
