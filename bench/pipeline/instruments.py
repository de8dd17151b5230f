"""Stopwatches on the producer's steps and on the queue, for "where the time goes".

The producer is timed as it runs, without changing it: while a pipeline run lasts,
the names ``submit`` calls (its reader, its length bucketing, ``describe_model``, the
job's creation under the collection's guard, the ledger's ``add_batch`` and ``seal_job``,
the store's collection set-up) are replaced by timed wrappers around the very same
functions, and the queue it is given is wrapped to time ``publish``, ``depth`` and ``drain``.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from unittest import mock

from embedq.api.ingest import producer
from embedq.store import QdrantStore
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


def cpu_jiffies() -> tuple[int, int]:
    """Steal and total CPU time of the machine so far (``/proc/stat``; zeros where absent).

    Steal is time the hypervisor gave this machine's virtual CPUs to someone else:
    on a shared host it is what makes the same work take longer from one minute to the next.
    """
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    steal = fields[7] if len(fields) > 7 else 0
    return steal, sum(fields[:8])


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

    def drain(self) -> None:
        with self._watch.timing("drain"):
            self._queue.drain()


@contextlib.contextmanager
def producer_instruments(watch: Stopwatch, store: QdrantStore) -> Iterator[None]:
    """Time the steps of ``producer.submit`` for the block.

    ``read`` is nested inside ``bucketed`` (bucketing pulls documents from the reader).
    ``store`` is the Qdrant writer given to ``submit``: its collection set-up is timed.
    """
    with contextlib.ExitStack() as stack:
        for owner, name, timed in _timed_steps(watch, store):
            stack.enter_context(mock.patch.object(owner, name, timed))
        yield


def _timed_steps(watch: Stopwatch, store: QdrantStore) -> list[tuple[object, str, object]]:
    jobs = producer.jobs
    guard = producer.reindexing.CollectionGuard
    return [
        (producer, "read_documents", watch.iteration("read", producer.read_documents)),
        (producer, "length_bucketed", watch.iteration("bucketed", producer.length_bucketed)),
        (producer, "describe_model", watch.call("describe_model", producer.describe_model)),
        (jobs, "add_batch", watch.call("add_batch", jobs.add_batch)),
        # the job is recorded in the collection's guard transaction (see jobs.reindexing)
        (guard, "create_job", watch.call("create_job", guard.create_job)),
        (jobs, "seal_job", watch.call("seal_job", jobs.seal_job)),
        (store, "ensure_collection", watch.call("collection", store.ensure_collection)),
        (store, "begin_bulk_load", watch.call("collection", store.begin_bulk_load)),
        (store, "finish_bulk_load", watch.call("finish_bulk_load", store.finish_bulk_load)),
    ]
