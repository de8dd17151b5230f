"""Measuring one method: peak memory, timed passes over tasks, and its common report entry."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bench.runtime.config import RSS_SAMPLE_S
from bench.runtime.corpus import Bucket, Task
from bench.runtime.models import release_memory


class PeakMemory:
    """Peak memory over a block.

    On a GPU, the caching allocator's peak (weights included, as they count against the
    budget); on the CPU, the rise of resident memory above its level at entry, sampled.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.bytes = 0
        self._baseline = 0
        self._highest = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            # hand freed heap back first, or a pass after a bigger one would show no rise
            release_memory(self.device)
            self._baseline = self._highest = _rss()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            self._highest = max(self._highest, _rss())

    def __exit__(self, *exc_info: object) -> None:
        if self._sampler is None:
            import torch

            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)
            return
        self._stop.set()
        self._sampler.join()
        self.bytes = max(self._highest, _rss()) - self._baseline


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def now(device: str) -> float:
    """Wall-clock seconds, after the GPU has finished what it was given."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
    return time.perf_counter()


class Runner(Protocol):
    """One way of embedding a task; ``encode`` returns how many documents got no vector."""

    def encode(self, texts: list[str]) -> int: ...
    def reset_counters(self) -> None: ...
    def counters(self, real_tokens: int) -> dict[str, Any]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Timing:
    seconds: float
    task_seconds: list[float]
    documents_lost: int
    peak_memory_bytes: int


def timed_pass(runner: Runner, tasks: Sequence[Task], device: str) -> Timing:
    """Run every task, one at a time, timing each."""
    runner.reset_counters()
    lost, task_seconds = 0, []
    with PeakMemory(device) as peak:
        for task in tasks:
            started = now(device)
            lost += runner.encode(task.texts)
            task_seconds.append(now(device) - started)
    return Timing(sum(task_seconds), task_seconds, lost, peak.bytes)


def method_entry(runner: Runner, timing: Timing, tasks: Sequence[Task]) -> dict[str, Any]:
    """The common report of one method; ``ratio`` is filled in once all methods ran."""
    documents = sum(len(task.texts) for task in tasks)
    real_tokens = sum(task.real_tokens for task in tasks)
    counters = runner.counters(real_tokens)
    return {
        "seconds": round(timing.seconds, 3),
        "documents": documents,
        "real_tokens": real_tokens,
        "tokens_per_s": round(real_tokens / timing.seconds, 1),
        "docs_per_s": round(documents / timing.seconds, 2),
        "ratio": None,
        "padding_fraction": rounded(counters.pop("padding_fraction"), 4),
        "peak_memory_bytes": timing.peak_memory_bytes,
        "oom_events": counters.pop("oom_events"),
        "documents_lost": timing.documents_lost,
        "task_seconds": [round(s, 3) for s in timing.task_seconds],
        **counters,
    }


def bucket_throughput(runner: Runner, buckets: Sequence[Bucket], device: str) -> list[float]:
    """Tokens per second over each length bucket's documents."""
    rates = []
    for bucket in buckets:
        timing = timed_pass(runner, bucket.tasks, device)
        rates.append(sum(task.real_tokens for task in bucket.tasks) / timing.seconds)
    return rates


def finite_rows(vectors: Any, count: int) -> np.ndarray:
    """Which of ``count`` documents got a vector with only finite numbers."""
    array = None if vectors is None else np.asarray(vectors)
    if array is None or array.ndim != 2 or len(array) != count:
        return np.zeros(count, dtype=bool)
    return np.isfinite(array).all(axis=1)


def rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
