"""A batch while it runs: the worker's context, the claim, its stage clock and its lease, as one.

Every step of a batch takes the one ``BatchRun``; ``conclude`` is the last of them,
on whichever thread the batch ends: the hooks after a batch hear of its end there.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedq import jobs
from embedq.models.runtime import ProgressCallback
from embedq.workers.cancellation import stop_when_lost
from embedq.workers.leases import LeaseKeeper
from embedq.workers.outcomes import BatchEnd, BatchOutcome, Status

if TYPE_CHECKING:
    from embedq.workers.context import WorkerContext


class StageClock:
    """Adds up wall time per named stage of one batch."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


@dataclass(frozen=True)
class BatchRun:
    """A claimed batch, from its claim to its end."""

    context: WorkerContext
    claim: jobs.Claim
    clock: StageClock
    lease: LeaseKeeper

    @property
    def batch_id(self) -> str:
        return self.claim.batch_id

    @property
    def on_progress(self) -> ProgressCallback:
        """For the model: stops the batch at its next micro-batch once its lease is lost."""
        return stop_when_lost(self.lease, self.claim.batch_id)

    def outcome(
        self, status: Status, *, documents_done: int = 0, documents_failed: int = 0
    ) -> BatchOutcome:
        """The outcome ``status``, with the time each stage took (so far: a later stage adds in)."""
        return BatchOutcome(status, documents_done, documents_failed, timings=self.clock.seconds)

    def conclude(self, end: BatchEnd) -> BatchOutcome:
        """The batch has ended (its lease stopped): each hook after a batch hears of it,
        when the ledger recorded the end. Returns its outcome."""
        if end.recorded:
            for hook in self.context.hooks:
                hook.after_batch(self, end)
        return end.outcome
