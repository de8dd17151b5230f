"""Cutting a stream of documents into batches of similar lengths.

The producer cannot sort a whole corpus it streams, so it sorts a window of a
few batches' worth of documents at a time by text length and cuts the window
into batches. Neighbouring batches then hold similar lengths, and a worker's
micro-batches carry little padding even before its own exact packing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar


class HasText(Protocol):
    @property
    def text(self) -> str: ...


Doc = TypeVar("Doc", bound=HasText)

# Batches' worth of documents sorted together: more gives tighter buckets, and
# holds more documents in the producer's memory before the first batch leaves.
WINDOW_BATCHES = 16


def length_bucketed(
    documents: Iterable[Doc], *, batch_size: int, window_batches: int = WINDOW_BATCHES
) -> Iterator[list[Doc]]:
    """Batches of at most ``batch_size`` documents, each window sorted by length."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    window: list[Doc] = []
    for document in documents:
        window.append(document)
        if len(window) == batch_size * window_batches:
            yield from _cut(window, batch_size)
            window = []
    if window:
        yield from _cut(window, batch_size)


def _cut(window: list[Doc], batch_size: int) -> Iterator[list[Doc]]:
    ordered = sorted(window, key=lambda document: len(document.text))
    for start in range(0, len(ordered), batch_size):
        yield ordered[start : start + batch_size]


Item = TypeVar("Item")


def groups(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """``items`` in consecutive lists of ``size`` (the last may be shorter), as they come."""
    iterator = iter(items)
    while group := list(itertools.islice(iterator, size)):
        yield group
