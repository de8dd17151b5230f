"""The states of jobs and batches, and the rule that decides how a finished job ended."""

from __future__ import annotations

from enum import Enum


class _Named(str, Enum):
    """Prints as its value ("succeeded", not "JobStatus.succeeded") in messages and f-strings."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class JobKind(_Named):
    """What a job does with its documents."""

    ingest = "ingest"
    reindex = "reindex"
    rerank = "rerank"
    delete = "delete"


class JobStatus(_Named):
    """pending → running → succeeded | partial | failed; cancelled from any open state."""

    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    partial = "partial"
    failed = "failed"
    cancelled = "cancelled"


class BatchStatus(_Named):
    """queued → running → succeeded | failed | split; cancelled when its job is."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    # shadows str.split on members; the state's name matters more than that method
    split = "split"  # type: ignore[assignment]
    cancelled = "cancelled"


JOB_OPEN = frozenset({JobStatus.pending, JobStatus.running})
JOB_ENDED = frozenset(JobStatus) - JOB_OPEN
BATCH_OPEN = frozenset({BatchStatus.queued, BatchStatus.running})
BATCH_ENDED = frozenset(BatchStatus) - BATCH_OPEN


def ending_status(
    *, documents_done: int, documents_failed: int, intake_stopped: bool = False
) -> JobStatus:
    """How a sealed job whose batches have all ended ends.

    A job whose intake stopped part-way never got all of its input: partial at best,
    however well the documents it did get went, and failed when nothing was done.
    """
    if documents_done == 0 and (documents_failed or intake_stopped):
        return JobStatus.failed
    if documents_failed == 0 and not intake_stopped:
        return JobStatus.succeeded
    return JobStatus.partial
