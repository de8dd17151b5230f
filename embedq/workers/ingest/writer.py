"""Writing finished batches on a thread of their own, so the next batch embeds meanwhile.

A worker's model sits idle while a batch's points travel to Qdrant and the ledger
records the batch. The writer takes that tail off the model's path: ``submit``
hands it a batch's write and returns, and the write runs on the writer's thread
while the next batch is claimed and embedded.

One write runs at a time, and ``submit`` first waits for the one before: at most
two batches' points are held, and a slow Qdrant slows the worker down instead of
piling work up in memory.

No work can be lost in the hand-over: the batch stays ``running`` under its lease,
renewed until its write ends, and is completed in the ledger only once Qdrant holds
its points. If the process dies meanwhile, the lease runs out and another worker
takes the batch over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Called on the writer's thread with the batch id and what its write raised. Without
# one, the error is raised in the caller's thread by the next ``submit`` or ``drain``.
OnError = Callable[[str, Exception], None]

THREAD_PREFIX = "embedq-writer"


def on_writer_thread() -> bool:
    """Whether this code runs on a writer's thread (which must not run batches itself)."""
    return threading.current_thread().name.startswith(THREAD_PREFIX)


class BatchWriter:
    """Runs one batch write at a time on a background thread; each write's follow-up
    (marking the batch done) runs on a second one, so the next write need not wait for it."""

    def __init__(self, *, on_error: OnError | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_PREFIX)
        self._finisher = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{THREAD_PREFIX}-finish"
        )
        self._on_error = on_error
        self._last: Future[object] | None = None
        self._last_finish: Future[object] | None = None

    def submit(
        self,
        batch_id: str,
        write: Callable[[], T],
        then: Callable[[T], object] | None = None,
    ) -> None:
        """Queue ``write`` (and ``then`` of its result) and return once the write before it
        has ended.

        If that one failed, its error is raised here, after this write has ended
        too: nothing is left running behind the caller's back.
        """
        previous = self._last
        self._last = self._executor.submit(self._write, batch_id, write, then)
        if previous is None:
            return
        try:
            previous.result()
        except Exception:
            self._wait_quietly()
            raise

    def _wait_quietly(self) -> None:
        last, self._last = self._last, None
        if last is not None and last.exception() is not None:
            logger.error("a later batch write failed too", exc_info=last.exception())

    def drain(self) -> None:
        """Wait until every submitted write and follow-up has ended; re-raises an error."""
        last, self._last = self._last, None
        if last is not None:
            last.result()
        finish, self._last_finish = self._last_finish, None
        if finish is not None:
            finish.result()

    def close(self) -> None:
        """Finish the writes under way and stop the threads."""
        try:
            self.drain()
        finally:
            self._executor.shutdown(wait=True)
            self._finisher.shutdown(wait=True)

    def _write(
        self, batch_id: str, write: Callable[[], T], then: Callable[[T], object] | None
    ) -> None:
        done = self._guarded(batch_id, write)
        if then is not None and done is not _FAILED:
            # in order (one thread), behind the follow-ups of the writes before
            self._last_finish = self._finisher.submit(self._guarded, batch_id, then, done)

    def _guarded(self, batch_id: str, work: Callable[..., T], *args: object) -> T | object:
        try:
            return work(*args)
        except Exception as error:
            if self._on_error is None:
                raise
            self._on_error(batch_id, error)
            return _FAILED


_FAILED = object()  # a write whose error went to ``on_error``: no follow-up
