"""Stopwatches on the producer's steps and on the queue, for "where the time goes".

The producer is timed as it runs, without changing it: while a pipeline run lasts,
the names ``submit`` calls (its reader, its length bucketing and ``jobs.add_batch``)
are replaced by timed wrappers around the very same functions, and the queue it is
given is wrapped to time ``publish`` and ``depth``.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from unittest import mock

from embedq.api import producer
from embedq.workers.queues import BatchQueue

T = TypeVar("T")


class Stopwatch:
    """Seconds added up under names."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def timing(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def call(self, name: str, function: Callable[..., T]) -> Callable[..., T]:
        """``function``, timed under ``name`` on every call."""

        def timed(*args: Any, **kwargs: Any) -> T:
            with self.timing(name):
                return function(*args, **kwargs)

        return timed

    def iteration(self, name: str, function: Callable[..., Iterator[T]]) -> Callable[..., Any]:
        """``function`` returning an iterator, timed under ``name`` while each item is made."""

        def timed(*args: Any, **kwargs: Any) -> Iterator[T]:
            items = iter(function(*args, **kwargs))
            while True:
                with self.timing(name):
                    item = next(items, _END)
                if item is _END:
                    return
                yield item

        return timed


_END: Any = object()


class TimedQueue:
    """A :class:`BatchQueue` whose ``publish`` and ``depth`` calls are timed."""

    def __init__(self, queue: BatchQueue, watch: Stopwatch) -> None:
        self._queue = queue
        self._watch = watch

    def publish(self, batch_id: str) -> None:
        with self._watch.timing("publish"):
            self._queue.publish(batch_id)

    def depth(self) -> int:
        with self._watch.timing("queue_depth"):
            return self._queue.depth()


@contextlib.contextmanager
def producer_instruments(watch: Stopwatch) -> Iterator[None]:
    """Time reading, bucketing and ``add_batch`` inside ``producer.submit`` for the block.

    ``read`` is nested inside ``bucketed`` (bucketing pulls documents from the reader).
    """
    with (
        mock.patch.object(
            producer, "read_documents", watch.iteration("read", producer.read_documents)
        ),
        mock.patch.object(
            producer, "length_bucketed", watch.iteration("bucketed", producer.length_bucketed)
        ),
        mock.patch.object(
            producer.jobs, "add_batch", watch.call("add_batch", producer.jobs.add_batch)
        ),
    ):
        yield
