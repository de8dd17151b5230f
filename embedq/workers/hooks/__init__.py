"""Hooks after a batch: what a batch's end sets off, one concern a module (as dramatiq's
middleware).

A worker context is built with its hooks (``default_hooks()`` unless told otherwise).
After every batch whose end the ledger recorded (succeeded, failed or split; not one
dropped, handed back or interrupted), on whichever thread the batch ended, each hook's
``after_batch(run, end)`` is called in turn (``BatchRun.conclude``):

- ``ingestion_end.IngestionEnded``: the end of a bulk load, when the batch ended its job;
- ``reindex_step.NextReindexStep``: a re-index's next step after each of its batches;
- ``write_ended.WriteEnded``: a callback told of every batch whose write ended (metrics).

A hook raises only what should fail the batch's task: its error goes on up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from embedq.workers.hooks.ingestion_end import IngestionEnded
from embedq.workers.hooks.reindex_step import NextReindexStep

if TYPE_CHECKING:
    from embedq.workers.outcomes import BatchEnd
    from embedq.workers.running import BatchRun


class BatchHook(Protocol):
    """Told of each batch's recorded end, after its lease has stopped."""

    def after_batch(self, run: BatchRun, end: BatchEnd) -> None: ...


def default_hooks() -> tuple[BatchHook, ...]:
    """The hooks every worker needs, in the order they run: yours go after them."""
    return (IngestionEnded(), NextReindexStep())
