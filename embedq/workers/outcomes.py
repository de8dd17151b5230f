"""What became of a batch: its outcome in this attempt, and its end as the hooks see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from embedq import jobs

Status = Literal["succeeded", "writing", "skipped", "split", "failed"]

# the ends the ledger recorded; a skipped batch was not ours (any more), so nothing of it was
RECORDED: frozenset[Status] = frozenset({"succeeded", "split", "failed"})


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to a batch in this attempt, and where its time went (seconds by stage)."""

    status: Status
    documents_done: int = 0
    documents_failed: int = 0
    children: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def stages(self) -> str:
        return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in self.timings.items())


@dataclass(frozen=True)
class BatchEnd:
    """How a batch's run ended: its outcome, and what the ledger said of it.

    ``completion`` is what completing the batch said (None for a failure, a split or a
    drop); ``written``: its points went to Qdrant (its write ended, landed or refused);
    ``handed_over``: it is not over yet, its write goes on on the background writer.
    """

    outcome: BatchOutcome
    completion: jobs.Completion | None = None
    written: bool = False
    handed_over: bool = False

    @property
    def recorded(self) -> bool:
        """The ledger recorded this end (succeeded, failed or split): hooks hear of it."""
        return not self.handed_over and self.outcome.status in RECORDED
