"""After a batch whose write to Qdrant ended (its points landed, or were refused): a callback
is told its outcome and stage times, on the thread the write ended on (metrics go here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedq.workers.outcomes import BatchEnd, BatchOutcome
    from embedq.workers.running import BatchRun


class WriteEnded:
    def __init__(self, callback: Callable[[BatchOutcome], object]) -> None:
        self._callback = callback

    def after_batch(self, run: BatchRun, end: BatchEnd) -> None:
        if end.written:
            self._callback(end.outcome)
