"""Split-on-OOM: run a micro-batch, and when it runs out of memory, halve it.

Only ``torch.OutOfMemoryError`` is handled; every other error propagates
unchanged. The retry happens outside the ``except`` block: the exception's
traceback keeps the failed pass's tensors alive, and the cache can only be
emptied once it is gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

Item = TypeVar("Item")
Output = TypeVar("Output")


@dataclass(frozen=True)
class NoFit:
    """An item that fits the budget nowhere, even alone, and why: it fails by itself."""

    reason: str


@dataclass
class SplitRunner(Generic[Item, Output]):
    """Runs parts of a batch, halving any part that runs out of memory.

    ``forward`` maps a part to one output per item; ``on_oom`` hears every
    out-of-memory event with the part that caused it (to free memory and teach
    the cost model); ``too_big`` words the reason for an item that does not fit
    even alone.
    """

    forward: Callable[[Sequence[Item]], Sequence[Output]]
    on_oom: Callable[[Sequence[Item]], None]
    too_big: Callable[[Item], str]

    def run(self, items: Sequence[Item]) -> list[Output | NoFit]:
        results: list[Output | NoFit | None] = [None] * len(items)
        pending = [(0, len(items))]
        while pending:
            start, stop = pending.pop()
            outputs = self._try(items[start:stop])
            if outputs is not None:
                results[start:stop] = outputs
            elif stop - start == 1:
                results[start] = NoFit(self.too_big(items[start]))
            else:
                middle = (start + stop) // 2
                # second half pushed first so the first half runs first
                pending.extend([(middle, stop), (start, middle)])
        return [result for result in results if result is not None]

    def _try(self, part: Sequence[Item]) -> Sequence[Output] | None:
        with contextlib.suppress(torch.OutOfMemoryError):
            return self.forward(part)
        # only reached after an OOM, with its traceback (and tensors) already released
        self.on_oom(part)
        return None
